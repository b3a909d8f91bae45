"""The database interface the routes use: one Protocol, two implementations
(``sqlite.py``: the standard library's sqlite3 in a thread; ``postgres.py``: psycopg 3 with
a pool). Every statement is parametrized; nothing a client sends is ever formatted into SQL.

Times are ``datetime`` in UTC, stored to the microsecond. A note's ``version`` starts at 1 and
grows by one on each change: it is the note's ETag, and an update names the version it read
(``If-Match``), so two clients editing at once cannot overwrite each other unseen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal, Protocol

__all__ = [
    "Conflict",
    "Database",
    "Note",
    "NoteKey",
    "Stale",
    "User",
    "escape_like",
    "now",
]


def now() -> datetime:
    """The current time in UTC, to the microsecond (what both databases keep)."""
    return datetime.now(timezone.utc)


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    password_hash: str


@dataclass(frozen=True, slots=True)
class Note:
    id: int
    user_id: int
    title: str
    body: str
    created_at: datetime
    updated_at: datetime
    version: int


#: Where a page of notes ends: (created_at, id) of its last note, newest first.
NoteKey = tuple[datetime, int]


class Conflict(Exception):
    """The username is taken."""


class Stale(Exception):
    """The note changed since the version the update named."""


def escape_like(text: str) -> str:
    """``text`` as a literal inside a LIKE pattern (with ``ESCAPE '\\'``)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class Database(Protocol):
    """What the routes need from storage. Implementations are per worker (one per process)."""

    #: For the startup line: ``"SQLite /path/notes.db"``, ``"PostgreSQL host/db"``.
    description: str
    backend: Literal["sqlite", "postgresql"]

    async def close(self) -> None: ...

    # -- users and sessions ---------------------------------------------------------------------

    async def create_user(self, username: str, password_hash: str) -> User:
        """Raises Conflict when the username is taken."""
        ...

    async def user_by_name(self, username: str) -> User | None: ...

    async def set_password_hash(self, user_id: int, password_hash: str) -> None: ...

    async def create_session(self, token_hash: str, user_id: int, expires_at: datetime) -> None: ...

    async def session_valid(self, token_hash: str, username: str) -> bool:
        """Whether the session exists, is the user's and has not expired."""
        ...

    async def delete_session(self, token_hash: str) -> None: ...

    # -- login rate limits ----------------------------------------------------------------------

    async def count_failure(self, key: str, window: float) -> None:
        """Count one failed login for ``key`` in the current fixed window of ``window``
        seconds (a new window starts when the last one ended)."""
        ...

    async def failures(self, key: str) -> tuple[int, datetime] | None:
        """The failures counted for ``key`` and when its window ends, or None."""
        ...

    async def clear_failures(self, key: str) -> None: ...

    # -- notes ----------------------------------------------------------------------------------

    async def create_note(self, user_id: int, title: str, body: str) -> Note: ...

    async def get_note(self, user_id: int, note_id: int) -> Note | None:
        """The note, or None when it is missing *or another user's* (the same answer)."""
        ...

    async def list_notes(
        self, user_id: int, limit: int, after: NoteKey | None = None, q: str | None = None
    ) -> Sequence[Note]:
        """Up to ``limit`` notes, newest first, strictly after ``after``; ``q`` matches title
        or body (case-insensitive substring)."""
        ...

    async def update_note(
        self, user_id: int, note_id: int, version: int | None, title: str, body: str
    ) -> Note | None:
        """Update if ``version`` is current (None: any); None when missing.

        Raises:
            Stale: the note's version is not ``version``.
        """
        ...

    async def delete_note(self, user_id: int, note_id: int) -> bool:
        """Whether there was such a note."""
        ...
