"""Blocking work off the event loop, on whichever library runs it (asyncio, uvloop or trio).

sqlite3 and ``hashlib.scrypt`` block: run on the loop they would stall every other request
of the worker for their duration.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TypeVar

__all__ = ["run_sync"]

T = TypeVar("T")


def _asyncio_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def run_sync(fn: Callable[[], T], executor: Executor | None = None) -> T:
    """``fn()`` in a thread (of ``executor``, if given), awaited without blocking the loop.

    A cancelled caller stops waiting; a call already running finishes in its thread (Python
    cannot stop a thread), which is harmless for the short calls this app makes.
    """
    if _asyncio_running():
        return await asyncio.get_running_loop().run_in_executor(executor, fn)
    import trio

    if executor is None:
        return await trio.to_thread.run_sync(fn)
    future = executor.submit(fn)
    return await trio.to_thread.run_sync(future.result)
