"""Waiting on whichever library runs the app, asyncio (uvloop) or trio: the few primitives the
change feed needs (``events.py``), so that it runs on both."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

__all__ = ["Wakeup", "background", "first", "sleep"]


def _on_asyncio() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def sleep(seconds: float) -> None:
    if _on_asyncio():
        await asyncio.sleep(seconds)
    else:
        import trio

        await trio.sleep(seconds)


class Wakeup:
    """A signal a stream sleeps on; set when events wait in its queue."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = self._new()

    @staticmethod
    def _new() -> Any:
        if _on_asyncio():
            return asyncio.Event()
        import trio

        return trio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()
        # A fresh event for the next wait (trio's cannot be cleared); whatever is set from
        # here on is in the queue the stream drains next, so nothing is lost.
        self._event = self._new()


async def _signal(wait: Callable[[], Awaitable[object]]) -> None:
    """``wait()``; a request with no such signal (its ``wait`` raises) waits forever."""
    try:
        await wait()
    except RuntimeError:
        await sleep(1e9)


async def first(timeout: float, *waits: Callable[[], Awaitable[object]]) -> int | None:
    """The index of the first of ``waits`` to return, or None after ``timeout`` seconds."""
    if _on_asyncio():
        tasks = [asyncio.ensure_future(_signal(w)) for w in waits]
        try:
            done, _ = await asyncio.wait(tasks, timeout=timeout, return_when="FIRST_COMPLETED")
        finally:
            for task in tasks:
                task.cancel()
        return next((i for i, t in enumerate(tasks) if t in done), None)
    import trio

    first: list[int] = []
    async with trio.open_nursery() as nursery:
        nursery.cancel_scope.deadline = trio.current_time() + timeout

        async def run(i: int, wait: Callable[[], Awaitable[object]]) -> None:
            await _signal(wait)
            first.append(i)
            nursery.cancel_scope.cancel()

        for i, wait in enumerate(waits):
            nursery.start_soon(run, i, wait)
    return first[0] if first else None


@contextlib.asynccontextmanager
async def background(run: Callable[[], Awaitable[None]]) -> AsyncIterator[None]:
    """``run()`` as a task beside the body; cancelled when the body ends."""
    if _on_asyncio():
        task = asyncio.ensure_future(run())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return
    import trio

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        yield
        nursery.cancel_scope.cancel()
