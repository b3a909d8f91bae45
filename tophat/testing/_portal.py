"""A portal: synchronous code runs coroutines to completion on one event loop that it keeps.

asyncio (or uvloop): the portal's loop runs in the calling thread, request by request, when no
event loop is running there (a plain ``def`` test); when one is (an ``async def`` test, which
must not be blocked into a nested loop), the same loop runs in a worker thread while the caller
waits. Trio cannot pause a run between calls and resume it later in the same thread, so the
trio portal runs ``trio.run`` in a thread of its own for the portal's life, and hands it each
coroutine through its ``TrioToken``.

``close()`` cancels what the app left running, closes the loop and joins the threads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Literal, TypeVar

from typing_extensions import ParamSpec

from tophat._asynclib import MissingExtra

__all__ = ["Portal", "Runtime", "loop_running_here"]

Runtime = Literal["asyncio", "uvloop", "trio"]
_EXTRAS = {"uvloop": ("uvloop", "fast"), "trio": ("trio", "trio")}

T = TypeVar("T")
P = ParamSpec("P")


def loop_running_here() -> bool:
    """Does an event loop (asyncio's or trio's) run in this thread?"""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        return True
    trio: Any = sys.modules.get("trio")  # not imported: no trio run can be going on
    if trio is None:
        return False
    try:
        trio.lowlevel.current_trio_token()
    except RuntimeError:
        return False
    return True


async def _finish_tasks() -> None:
    """What ``asyncio.run`` does before closing its loop: cancel the tasks left, finish the
    async generators and the default executor (so no thread is left behind)."""
    me = asyncio.current_task()
    left = [t for t in asyncio.all_tasks() if t is not me]
    for task in left:
        task.cancel()
    await asyncio.gather(*left, return_exceptions=True)
    loop = asyncio.get_running_loop()
    await loop.shutdown_asyncgens()
    await loop.shutdown_default_executor()


class _TrioThread:
    """``trio.run`` in a thread of its own; ``call`` runs a coroutine there and waits."""

    def __init__(self) -> None:
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self._token: Any = None
        self._nursery: Any = None
        self._stop: Any = None
        self.thread = threading.Thread(target=self._main, name="tophat-testclient-trio")
        self.thread.daemon = True  # a client never closed must not keep the interpreter alive
        self.thread.start()
        self._ready.wait()
        if self._failed is not None:
            raise RuntimeError("the test client's trio thread failed to start") from self._failed

    def _main(self) -> None:
        import trio

        try:
            trio.run(self._serve)
        except BaseException as exc:  # reported to the thread that started us
            self._failed = exc
            self._ready.set()

    async def _serve(self) -> None:
        import trio

        self._stop = trio.Event()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._token = trio.lowlevel.current_trio_token()
            self._ready.set()
            await self._stop.wait()
            nursery.cancel_scope.cancel()  # what the app left running

    def start_soon(self, fn: Callable[[], Awaitable[None]]) -> None:
        """Start ``fn()`` in the portal's nursery (from a task the portal runs)."""
        self._nursery.start_soon(fn)

    def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        async def job() -> None:
            try:
                future.set_result(await fn())
            except Exception as exc:  # the caller's to see; the portal keeps running
                future.set_exception(exc)
            except BaseException as exc:  # cancellation (close()): trio needs it back
                future.set_exception(exc)
                raise

        self._token.run_sync_soon(self._nursery.start_soon, job)
        return future.result()

    def stop(self) -> None:
        self._token.run_sync_soon(self._stop.set)
        self.thread.join()


class Portal:
    """Run coroutines from synchronous code, on one event loop of ``runtime`` kept until
    :meth:`close`.

    Raises:
        MissingExtra: ``runtime`` is uvloop or trio and it is not installed.
    """

    def __init__(self, runtime: Runtime = "asyncio") -> None:
        if runtime not in ("asyncio", "uvloop", "trio"):
            raise ValueError(f"runtime must be 'asyncio', 'uvloop' or 'trio', not {runtime!r}")
        if runtime in _EXTRAS:
            module, extra = _EXTRAS[runtime]
            try:
                __import__(module)
            except ImportError:
                raise MissingExtra(
                    f"runtime {runtime!r} needs {module}: pip install 'tophat[{extra}]'"
                ) from None
        self.runtime: Runtime = runtime
        self._lock = threading.Lock()
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._worker: concurrent.futures.ThreadPoolExecutor | None = None
        self._trio: _TrioThread | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # spawned: asyncio keeps weak references

    def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """``await fn(*args, **kwargs)`` on the portal's loop; its result, or its exception.

        Raises:
            RuntimeError: the portal is closed, or called from the app it runs (an endpoint
                cannot wait for a response it is itself producing: use ``AsyncTestClient``).
        """
        job = functools.partial(fn, *args, **kwargs)
        if self._inside():
            raise RuntimeError(
                "TestClient called from inside the app it runs: it would wait for itself; "
                "use AsyncTestClient with await there"
            )
        with self._lock:
            if self._closed:
                raise RuntimeError("this TestClient is closed")
            if self.runtime == "trio":
                if self._trio is None:
                    self._trio = _TrioThread()
                return self._trio.call(job)
            return self._run_asyncio(job)

    def spawn(self, fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Start ``fn()`` as a task of its own on the portal's loop, to run across calls until
        it returns or :meth:`close` cancels it. Call it from a coroutine the portal runs."""
        if self._trio is not None:
            self._trio.start_soon(fn)
            return
        task = asyncio.get_running_loop().create_task(fn())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _inside(self) -> bool:
        if self._trio is not None and threading.current_thread() is self._trio.thread:
            return True
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    def _run_asyncio(self, job: Callable[[], Awaitable[T]]) -> T:
        if self._loop is None:
            if self.runtime == "uvloop":
                import uvloop

                self._loop = uvloop.new_event_loop()
            else:
                self._loop = asyncio.new_event_loop()
        return self._on_loop(self._loop, job)

    def _on_loop(self, loop: asyncio.AbstractEventLoop, main: Callable[[], Awaitable[T]]) -> T:
        """Run ``main()`` on ``loop``: here, or in the worker thread when a loop runs here."""

        async def run() -> T:
            return await main()

        if not loop_running_here():
            return loop.run_until_complete(run())
        if self._worker is None:
            self._worker = concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix="tophat-testclient"
            )
        return self._worker.submit(lambda: loop.run_until_complete(run())).result()

    def close(self) -> None:
        """Cancel what the app left running, close the loop, join the threads. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._loop is not None:
                loop, self._loop = self._loop, None
                try:
                    self._on_loop(loop, _finish_tasks)
                finally:
                    loop.close()
            if self._worker is not None:
                self._worker.shutdown(wait=True)
                self._worker = None
            if self._trio is not None:
                self._trio.stop()
                self._trio = None
