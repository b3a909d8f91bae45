"""A test client's lifespan: set up once before the first request, torn down once at close.

The same ``Lifespan`` that ``serve``, the CLI and the ASGI adapter run (a function returning an
async context manager), entered through the same ``LifespanScope``: a setup that raises is
logged once and becomes ``LifespanFailed`` with the original error as its ``__cause__``, and so
does a teardown that raises at close. The client raises it as it is, rather than the original:
it is what ``serve`` raises, its ``phase`` tells a setup from a teardown, and a request that
raised the app's own error type would read as the handler failing when it never ran.

Where it runs: on the loop the requests run on, so what the setup opens (a pool bound to that
loop) works in the handlers. ``AsyncTestClient`` enters it in the task that asks first (its
``async with``, or its first request) and leaves it in the task that closes it; ``TestClient``
runs each request in a task of its own, so it gives the lifespan a task of its own too
(``spawn``): setup and teardown then run in one task, as a task group or a cancel scope
opened around the ``yield`` requires.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from tophat._asynclib import Event, new_event
from tophat.server.lifespan import Lifespan, LifespanScope

__all__ = ["ClientLifespan", "Spawn"]

Spawn = Callable[[Callable[[], Coroutine[Any, Any, None]]], None]
"""Start a coroutine function as a task of its own on the running loop."""


class ClientLifespan:
    """One lifespan of one client: :meth:`start` sets it up (once, however many requests ask
    at the same time), :meth:`stop` tears it down. A setup that failed is tried again by the
    next request: nothing was started.

    Raises:
        TypeError: ``lifespan`` is not callable (at construction, not at the first request).
    """

    __slots__ = ("_done", "_error", "_lifespan", "_scope", "_starting", "_stop", "closed")

    def __init__(self, lifespan: Lifespan) -> None:
        LifespanScope(lifespan)  # (checks it now, with the message serve gives)
        self._lifespan = lifespan
        self._scope: LifespanScope | None = None  # while it runs
        self._starting: Event | None = None
        self._stop: Event | None = None  # spawned: set to end the lifespan's task
        self._done: Event | None = None  # spawned: set when that task ended
        self._error: Exception | None = None  # spawned: what its setup or teardown raised
        self.closed = False

    @property
    def running(self) -> bool:
        return self._scope is not None

    async def start(self, spawn: Spawn | None = None) -> None:
        """Run the setup, unless it ran: in this task, or in a task ``spawn`` starts.

        Raises:
            LifespanFailed: the setup raised (logged once; the error is the ``__cause__``).
            RuntimeError: the lifespan was stopped: the client is closed.
        """
        while self._scope is None:
            if self.closed:
                raise RuntimeError("this test client is closed: its lifespan has ended")
            if self._starting is not None:  # another request is setting it up: wait for it
                await self._starting.wait()
                continue
            self._starting = starting = new_event()
            try:
                # No shielding guard (the trio server's): a teardown entered in a shielded
                # cancel scope cannot close a nursery its setup opened around the ``yield``
                # (trio: "cancel scope stack corrupted"). TestClient never cancels it: close()
                # and its finalizer stop the lifespan before they cancel anything.
                scope = LifespanScope(self._lifespan)
                await (self._host(scope, spawn) if spawn is not None else scope.__aenter__())
                self._scope = scope
            finally:
                self._starting = None
                starting.set()

    async def _host(self, scope: LifespanScope, spawn: Spawn) -> None:
        started, self._stop, self._done = new_event(), new_event(), new_event()
        stop, done = self._stop, self._done

        async def run() -> None:
            try:
                async with scope:
                    started.set()
                    await stop.wait()
            except Exception as exc:  # LifespanFailed: for start() or stop() to raise
                self._error = exc
            finally:
                started.set()
                done.set()

        spawn(run)
        await started.wait()
        if done.is_set():
            self._raise_error()

    async def stop(
        self, exc_type: type[BaseException] | None = None, exc: BaseException | None = None
    ) -> None:
        """Run the teardown, if the setup ran; the lifespan cannot start again. ``exc``: the
        error the client's block ended with (a teardown's own failure is then only logged,
        and that error goes on).

        Raises:
            LifespanFailed: the teardown raised (logged once), and ``exc`` is None.
        """
        self.closed = True
        scope, self._scope = self._scope, None
        if scope is None:
            return
        if self._stop is None or self._done is None:
            await scope.__aexit__(exc_type, exc, None if exc is None else exc.__traceback__)
            return
        self._stop.set()
        await self._done.wait()
        if exc is None:
            self._raise_error()

    def _raise_error(self) -> None:
        error, self._error = self._error, None
        if error is not None:
            raise error
