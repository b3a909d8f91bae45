"""What every route of the notes app shares, reached as ``req.data(Context)``.

One per app (per worker process): the settings, the login identity, the database (set by the
lifespan once it is open) and the change feed the note routes publish to.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Literal

from examples.notes.config import Settings
from examples.notes.db import Database, User
from tophat import Glitch, Request
from tophat.middleware.identity import Identity

__all__ = ["Change", "Context", "current_user"]


@dataclass(frozen=True, slots=True)
class Change:
    """One change to a user's notes, published after it is committed."""

    user_id: int
    username: str
    kind: Literal["created", "updated", "deleted"]
    note_id: int


async def _no_feed(change: Change) -> None:
    return None


@dataclass(slots=True, eq=False)
class Context:
    """The app's shared state.

    Attributes:
        publish: called once per committed change (``events.py`` replaces it with its feed).
        on_start: async context managers entered by the lifespan after the database opened,
            left (in reverse) before it closes: what ``events.py`` and ``files.py`` run while
            the app serves (a LISTEN connection, a cleanup task).
    """

    settings: Settings
    identity: Identity
    db_: Database | None = None
    publish: Callable[[Change], Awaitable[None]] = _no_feed
    on_start: list[Callable[[Context], AbstractAsyncContextManager[object]]] = field(
        default_factory=list
    )

    @property
    def db(self) -> Database:
        if self.db_ is None:  # (only between import and the lifespan's setup)
            raise Glitch(503, "the database is not open yet")
        return self.db_


async def current_user(req: Request) -> User:
    """The logged-in user, or a 401 problem.

    Raises:
        Glitch: 401 (with ``WWW-Authenticate``, RFC 9110 §15.5.2) when nobody is logged in or
            the account is gone.
    """
    ctx = req.data(Context)
    name = ctx.identity.authorized_user(req)
    user = await ctx.db.user_by_name(name) if name is not None else None
    if user is None:
        raise Glitch(
            401,
            "Not logged in",
            headers={"www-authenticate": f'Cookie realm="{ctx.identity.cookie_name}"'},
        )
    return user
