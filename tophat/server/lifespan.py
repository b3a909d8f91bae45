"""A lifespan: async setup before serving and teardown after it, for the runtimes and ASGI.

A lifespan is a function of no arguments returning an async context manager: what
``contextlib.asynccontextmanager`` makes of an async generator function. Everything before its
``yield`` is the setup, run on the serving loop before a connection is accepted; everything
after it is the teardown, run after the graceful drain::

    router = Router()

    @contextlib.asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        pool = await open_pool(DSN)
        router.data(pool)            # handlers: req.data(Pool)
        try:
            yield
        finally:
            await pool.close()

What the setup makes reaches handlers through ``Router.data``: registered once, it costs a
request nothing more than the router's shared data already does. (Registering the yielded
value for every request would add a step to every request for what one call does once.)

Each worker process runs its own setup and teardown (a pool per process). ``LifespanScope`` is
what the servers enter: it logs a failure once, with its traceback, and raises
:class:`LifespanFailed` so that the caller can exit non-zero without logging it again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Literal

from tophat.server.exchange import name_of

__all__ = ["Lifespan", "LifespanFailed", "LifespanScope"]

Lifespan = Callable[[], AbstractAsyncContextManager[object]]
"""A zero-argument factory of an async context manager: setup on entry, teardown on exit."""

log = logging.getLogger("tophat.lifespan")


class LifespanFailed(Exception):
    """A lifespan's setup or teardown raised; its error is the ``__cause__``, already logged."""

    def __init__(self, phase: Literal["setup", "teardown"], name: str) -> None:
        super().__init__(f"the {phase} of lifespan {name} failed (logged above)")
        self.phase: Literal["setup", "teardown"] = phase

    @property
    def reason(self) -> str:
        """The failure as one line, ``"RuntimeError: no database"`` (for ASGI's message)."""
        cause = self.__cause__
        return f"{type(cause).__name__}: {cause}" if cause is not None else str(self)


class LifespanScope:
    """Enters ``lifespan`` (if any) on ``async with`` and leaves it on the way out.

    A setup that raises is logged and becomes :class:`LifespanFailed` (the body never runs).
    A teardown that raises is logged; it becomes :class:`LifespanFailed` when the body ended
    normally, and leaves the body's own error to propagate otherwise. A lifespan never
    suppresses the body's error, cancellation included.

    Args:
        lifespan: the factory, or None for nothing to do.

    The teardown runs in the cancel scopes the setup opened (a trio nursery or an anyio task
    group around the ``yield`` closes where it opened), so it is shielded from nothing: a
    teardown that must finish while serving is cancelled shields its own awaits.
    """

    __slots__ = ("_entered", "_lifespan", "_name")

    def __init__(self, lifespan: Lifespan | None) -> None:
        if lifespan is not None and not callable(lifespan):
            raise TypeError(
                "lifespan must be a function returning an async context manager "
                f"(e.g. made with contextlib.asynccontextmanager), not {type(lifespan).__name__}"
            )
        self._lifespan = lifespan
        self._name = name_of(lifespan)
        self._entered: AbstractAsyncContextManager[object] | None = None

    async def __aenter__(self) -> None:
        if self._lifespan is None:
            return
        try:
            manager = self._lifespan()
            await manager.__aenter__()
        except Exception as exc:
            log.error("lifespan %s: setup failed", self._name, exc_info=True)
            raise LifespanFailed("setup", self._name) from exc
        self._entered = manager

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        manager, self._entered = self._entered, None
        if manager is None:
            return
        try:
            # (its return value is ignored: a lifespan does not hide a server's failure)
            await manager.__aexit__(exc_type, exc, tb)
        except Exception as failure:
            if failure is exc:
                return  # it let the body's error through: that goes on as it is
            log.error("lifespan %s: teardown failed", self._name, exc_info=True)
            if exc is None:
                raise LifespanFailed("teardown", self._name) from failure
