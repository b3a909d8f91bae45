"""Which async library runs the current task, for the edges that serve either (the ASGI adapter,
the client, the in-memory test streams). The server itself never asks: its runtime tells it.

A module of its own at the top of the package, beside no layer, so that ``tophat.asgi``,
``tophat.client`` and ``tophat.testing`` share one answer without importing each other. It
imports neither library at module level: trio is optional.
"""

from __future__ import annotations

import math
from types import TracebackType
from typing import Any, Literal, Protocol

from tophat._extras import MissingExtra

__all__ = [
    "AsyncioDeadline",
    "Event",
    "MissingExtra",
    "TrioDeadline",
    "current",
    "new_deadline",
    "new_event",
]


class Event(Protocol):
    """A one-shot event: ``asyncio.Event`` and ``trio.Event`` both fit."""

    def set(self) -> None: ...
    def is_set(self) -> bool: ...
    async def wait(self) -> object: ...


def current() -> Literal["asyncio", "trio"]:
    """``"asyncio"`` when an asyncio loop runs in this thread (uvloop included), else
    ``"trio"``, the only other library tophat runs on."""
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return "trio"
    return "asyncio"


def new_event() -> Event:
    """A one-shot event (``set()``, ``is_set()``, ``await wait()``) of the running library."""
    if current() == "asyncio":
        import asyncio

        return asyncio.Event()
    import trio

    return trio.Event()


# -- deadlines: cancel what runs inside after a time, unless stopped first -----------------------
#
# ``ServerOpts.handler_timeout``: the exchange (tophat.server.exchange, which may import no
# runtime) runs an endpoint inside one of these, made by whoever carries the exchange: the
# runtime's stream adapter, the in-memory test stream or the ASGI adapter. Both kinds are
# synchronous context managers (no coroutine per request) that swallow only their own
# cancellation: a shutdown or a departed client's cancellation going on at the same time still
# propagates.


class AsyncioDeadline:
    """Cancel the current asyncio task ``seconds`` after entering, unless ``stop()`` came first.

    What ``asyncio.timeout`` does (3.11+, hence our own), as a plain ``with``: one timer handle;
    on exit after it fired, the task's cancellation is taken back (``Task.uncancel``, 3.11+) and
    the ``CancelledError`` swallowed, unless someone else cancelled the task too.
    """

    __slots__ = ("_task", "_timer", "expired", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._task: Any = None
        self._timer: Any = None
        self.expired = False  # it fired (and cancelled what ran inside)

    def __enter__(self) -> AsyncioDeadline:
        import asyncio

        self._task = asyncio.current_task()
        self._timer = asyncio.get_running_loop().call_later(self.seconds, self._fire)
        return self

    def _fire(self) -> None:
        self._timer = None
        self.expired = True
        self._task.cancel()

    def stop(self) -> None:
        """Never fire (the response started)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        self.stop()
        if not self.expired:
            return False
        import asyncio

        uncancel = getattr(self._task, "uncancel", None)  # (3.11+; on 3.10 ours is the one)
        others = uncancel() if uncancel is not None else 0
        return others == 0 and kind is not None and issubclass(kind, asyncio.CancelledError)


class TrioDeadline:
    """A ``trio.CancelScope`` with a deadline ``seconds`` after it is made; ``stop()`` lifts it."""

    __slots__ = ("_scope", "seconds")

    def __init__(self, seconds: float) -> None:
        import trio

        self.seconds = seconds
        self._scope = trio.CancelScope(deadline=trio.current_time() + seconds)

    def __enter__(self) -> TrioDeadline:
        self._scope.__enter__()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        return self._scope.__exit__(kind, exc, tb)

    def stop(self) -> None:
        """Never fire (the response started)."""
        self._scope.deadline = math.inf

    @property
    def expired(self) -> bool:
        """It fired (and cancelled what ran inside)."""
        return self._scope.cancel_called


def new_deadline(seconds: float | None) -> AsyncioDeadline | TrioDeadline | None:
    """A deadline of the running library (``None`` for ``None``: no deadline)."""
    if seconds is None:
        return None
    return AsyncioDeadline(seconds) if current() == "asyncio" else TrioDeadline(seconds)
