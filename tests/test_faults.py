"""Fault injection on every runtime and parser: clients that reset, leave or break writes.

A client that resets (SO_LINGER 0) during the request head, the body, a large or slow response
or a server-sent-event stream; writes that fail because the client left; a handler raising
after ``send()``; 1000 pipelined requests and a reset. After each, once every client is gone:

* the server holds exactly the descriptors (``/proc/self/fd``) and tasks it held before the
  first connection (asyncio: ``asyncio.all_tasks()``; trio: every task under the root task),
  allowing a bounded time for closes to settle;
* a keep-alive client served *during* the faults got every response right, and a new client is
  served *after* them;
* nothing was logged at ERROR, and no log record carries a traceback, for a client that
  simply left (``no_error_logs``, and ``quiet`` below).

Every test runs on asyncio, uvloop and trio, with h11 and with httptools (conftest.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import anyio
import pytest
import sniffio
from servers import Client, Serving, connected

from tophat import Endpoint, Request, ResponseWriter, ResponseWritten, ServerSentEvent
from tophat.testing import parse_responses

# Bounds: every test finishes in a few seconds or fails.
SETTLE = 5.0  # for closes to settle (above LINGER, 2 s, the longest a close may take)
STEP = 5.0  # for any one step of a test

Fault = Callable[[int, int], Coroutine[Any, Any, None]]


# -- what the server holds -------------------------------------------------------------------------


def _descriptors() -> dict[int, str]:
    fds: dict[int, str] = {}
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the directory's own descriptor is gone already
            fds[int(name)] = os.readlink(f"/proc/self/fd/{name}")
    return fds


def _tasks() -> list[str]:
    if sniffio.current_async_library() == "trio":
        import trio

        root = trio.lowlevel.current_root_task()
        assert root is not None
        names = []
        todo = [root]
        while todo:
            task = todo.pop()
            names.append(task.name)
            for nursery in task.child_nurseries:
                todo.extend(nursery.child_tasks)
        return sorted(names)
    import asyncio

    return sorted(repr(t.get_coro()) for t in asyncio.all_tasks())


async def _settled(fds: dict[int, str], tasks: list[str]) -> None:
    """Wait (bounded) until the process holds as many descriptors and tasks as before."""
    with anyio.move_on_after(SETTLE):
        while len(_descriptors()) != len(fds) or len(_tasks()) != len(tasks):
            await anyio.sleep(0.02)
    now = _descriptors()
    leaked = {fd: target for fd, target in now.items() if fds.get(fd) != target}
    assert len(now) == len(fds), f"descriptors leaked: {leaked}"
    assert len(_tasks()) == len(tasks), f"tasks leaked: {_tasks()} (before: {tasks})"


@contextlib.asynccontextmanager
async def watched(serving: Serving, app: Any, **opts: Any) -> AsyncIterator[Any]:
    """Serve ``app``; once the block is over (every client closed), the process holds no more
    descriptors or tasks than it did before the first connection."""
    async with serving(app, **opts) as server:
        fds, tasks = _descriptors(), _tasks()
        yield server
        await _settled(fds, tasks)


@pytest.fixture
def quiet(caplog: pytest.LogCaptureFixture, no_error_logs: None) -> Any:
    """Nothing logged at ERROR, and at every level no log record carries a traceback: a client
    leaving is not a crash."""
    caplog.set_level(logging.DEBUG, logger="tophat")
    caplog.set_level(logging.DEBUG, logger="asyncio")
    yield
    tracebacks = [
        f"{r.name}: {r.getMessage()}"
        for when in ("setup", "call", "teardown")
        for r in caplog.get_records(when)
        if r.exc_info is not None
    ]
    assert tracebacks == []


# -- the endpoints the faults hit ------------------------------------------------------------------

BIG = 4 * 1024 * 1024  # far more than the socket buffers hold
PIECE = b"s" * 16384


class App:
    """Endpoints by path, and what they saw."""

    def __init__(self) -> None:
        self.started: dict[str, int] = {}
        self.ended: dict[str, int] = {}  # streams (generators) closed, endpoints returned
        self.cancelled: dict[str, int] = {}
        self.saw_disconnect: list[bool] = []
        self.produced = 0  # pieces pulled from /late-stream
        self.release = anyio.Event()  # lets the /late-* endpoints write
        self.changed = anyio.Event()  # set (and replaced) whenever a count above changes

    def _count(self, counts: dict[str, int], name: str) -> None:
        counts[name] = counts.get(name, 0) + 1
        self.changed.set()
        self.changed = anyio.Event()

    async def until(self, counts: dict[str, int], name: str, n: int) -> None:
        """Wait until ``counts[name]`` reaches ``n``."""
        while counts.get(name, 0) < n:
            await self.changed.wait()

    @contextlib.contextmanager
    def tracked(self, name: str) -> Any:
        self._count(self.started, name)
        try:
            yield
        except anyio.get_cancelled_exc_class():
            self._count(self.cancelled, name)
            raise
        finally:
            self._count(self.ended, name)

    async def __call__(self, req: Request, w: ResponseWriter) -> ResponseWritten:
        endpoint: Endpoint = getattr(self, req.path.split("/")[1].replace("-", "_"))
        return await endpoint(req, w)

    async def hello(self, req: Request, w: ResponseWriter) -> ResponseWritten:
        w.set_text("hello " + req.path)
        return await w.send()

    async def nap(self, req: Request, w: ResponseWriter) -> ResponseWritten:
        await anyio.sleep(0.15)  # long enough for trio to watch the connection (3 sweep ticks)
        w.set_text("nap " + req.path)
        return await w.send()

    async def echo(self, req: Request, w: ResponseWriter) -> ResponseWritten:
        with self.tracked("echo"):
            w.set_body(await req.body())
            return await w.send()

    async def big(self, req: Request, w: ResponseWriter) -> ResponseWritten:
        with self.tracked("big"):
            w.set_body(b"b" * BIG)
            return await w.send()

    async def slow(self, req: Request, w: ResponseWriter) -> ResponseWritten:
        async def pieces() -> AsyncIterator[bytes]:
            with self.tracked("slow"):
                for _ in range(2000):  # bounded: 32 MiB over 10 s at least
                    yield PIECE
                    await anyio.sleep(0.005)

        w.set_body(pieces())
        return await w.send()

    async def sse_polite(self, req: Request, w: ResponseWriter) -> ResponseWritten:
        """Sends one event, then waits for the client to leave (and ends the stream)."""

        async def events() -> AsyncIterator[ServerSentEvent]:
            with self.tracked("sse-polite"):
                yield ServerSentEvent("hello")
                await req.disconnected.wait()
                self.saw_disconnect.append(req.disconnected.is_set())

        w.set_sse(events())
        return await w.send()

    async def sse_stubborn(self, req: Request, w: ResponseWriter) -> ResponseWritten:
        """Sends one event, then waits for a message that never comes (ignoring everything)."""

        async def events() -> AsyncIterator[ServerSentEvent]:
            with self.tracked("sse-stubborn"):
                yield ServerSentEvent("hello")
                await anyio.sleep(3600)

        w.set_sse(events())
        return await w.send()

    async def late_stream(self, req: Request, w: ResponseWriter) -> ResponseWritten:
        """One piece; once released, 4 MiB more in 64 KiB pieces."""

        async def pieces() -> AsyncIterator[bytes]:
            with self.tracked("late-stream"):
                yield b"start"
                await self.release.wait()
                for _ in range(64):
                    self.produced += 1
                    yield b"l" * 65536

        w.set_body(pieces())
        return await w.send()

    async def late_bytes(self, req: Request, w: ResponseWriter) -> ResponseWritten:
        """Once released, a 4 MiB response."""
        with self.tracked("late-bytes"):
            await self.release.wait()
            w.set_body(b"l" * (4 * 1024 * 1024))
            return await w.send()

    async def raise_after_send(self, req: Request, w: ResponseWriter) -> ResponseWritten:
        w.set_text("sent")
        await w.send()
        raise RuntimeError("a bug after send()")


GET = b"GET /%s HTTP/1.1\r\nHost: t\r\n\r\n"


def get(path: str) -> bytes:
    return GET % path.encode()


async def keeps_serving(port: int, faults: Fault, rounds: int, *, overlap: bool = True) -> None:
    """Run ``faults(port, i)`` for each round, concurrently with requests on one keep-alive
    connection, which must all be answered right; then a new client must be served.

    With ``overlap`` the rounds run concurrently too; without, one after the other.
    """
    async with connected(port) as good:
        with anyio.fail_after(STEP * 2):
            async with anyio.create_task_group() as tg:
                for i in range(rounds):
                    if overlap:
                        tg.start_soon(faults, port, i)
                    else:
                        await faults(port, i)
                    await good.send(get(f"hello/during/{i}"))
                    status, _, body = await good.response()
                    assert (status, body) == (200, b"hello /hello/during/%d" % i)
    async with connected(port) as fresh:
        with anyio.fail_after(STEP):
            await fresh.send(get("hello/after"))
            status, _, body = await fresh.response()
            assert (status, body) == (200, b"hello /hello/after")


async def read_some(c: Client, at_least: int) -> bytes:
    data = b""
    while len(data) < at_least:
        piece = await c.recv()
        assert piece, f"closed after {len(data)} bytes: {data[:200]!r}"
        data += piece
    return data


# -- resets ---------------------------------------------------------------------------------------


@pytest.mark.usefixtures("quiet")
async def test_resets_during_the_request_head_leak_nothing(serving: Serving) -> None:
    async def reset_mid_head(port: int, i: int) -> None:
        c = await Client.connect(port)
        await c.send(b"GET /hello/%d HTTP/1.1\r\nHost: t\r\nX-Long: " % i + b"h" * (i * 100))
        await anyio.sleep(0.01)  # let the server read it
        await c.reset()

    async with watched(serving, App()) as server:
        await keeps_serving(server.port, reset_mid_head, 20)


@pytest.mark.usefixtures("quiet")
@pytest.mark.parametrize("framing", ["length", "chunked"])
async def test_resets_during_the_request_body_leak_nothing(serving: Serving, framing: str) -> None:
    head = {
        "length": b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n",
        "chunked": b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n",
    }[framing]
    part = {"length": b"a" * 5000, "chunked": b"1388\r\n" + b"a" * 5000 + b"\r\n1000\r\naa"}[
        framing
    ]
    app = App()

    async def reset_mid_body(port: int, i: int) -> None:
        c = await Client.connect(port)
        await c.send(head + part)
        await app.until(app.started, "echo", i + 1)  # the endpoint is reading the body
        await c.reset()

    async with watched(serving, app) as server:
        await keeps_serving(server.port, reset_mid_body, 10)
    assert app.ended.get("echo") == 10


@pytest.mark.usefixtures("quiet")
@pytest.mark.parametrize("path", ["big", "slow"])
async def test_resets_during_the_response_leak_nothing(serving: Serving, path: str) -> None:
    # /big: one 4 MiB response, far from all written when the client resets; /slow: a stream.
    app = App()

    async def reset_mid_response(port: int, i: int) -> None:
        c = await Client.connect(port, rcvbuf=65536)
        await c.send(get(path))
        assert (await read_some(c, 20000)).startswith(b"HTTP/1.1 200 OK\r\n")
        await c.reset()

    async with watched(serving, app) as server:
        await keeps_serving(server.port, reset_mid_response, 10)
        # Every response was abandoned (nothing runs on, producing for nobody).
        with anyio.fail_after(STEP):
            await app.until(app.ended, path, 10)


@pytest.mark.usefixtures("quiet")
async def test_resets_during_an_event_stream_tell_the_handler_and_free_the_place(
    serving: Serving,
) -> None:
    # Finding 3 of issue 11: a handler waiting without writing must learn that its client
    # left (req.disconnected), and the connection must free its place under max_connections at
    # once; a handler that ignores it is cancelled after disconnect_grace.
    app = App()

    async def subscribe(port: int, path: str) -> Client:
        c = await Client.connect(port)
        await c.send(get(path))
        assert (await c.head()).status_code == 200
        assert await c.piece() == b": stream open\n\n"
        return c

    async def polite(port: int, i: int) -> None:
        c = await subscribe(port, "sse-polite")
        assert await c.piece() == b"data: hello\n\n"
        await c.reset()
        await app.until(app.ended, "sse-polite", i + 1)  # long before the grace (30 s)

    # A place of the 3 is the keep-alive client's: the subscribers get one at a time, each
    # after the one before left (with its handler still running, the place would be taken).
    async with watched(serving, app, max_connections=3, disconnect_grace=30) as server:
        await keeps_serving(server.port, polite, 10, overlap=False)
    assert app.saw_disconnect == [True] * 10
    assert app.cancelled == {}

    stubborn = App()
    async with watched(serving, stubborn, max_connections=3, disconnect_grace=1.0) as server:
        with anyio.fail_after(STEP):
            clients = [await subscribe(server.port, "sse-stubborn") for _ in range(3)]
            for c in clients:
                await c.reset()
            # Their handlers still run (for the grace), but their places are free: a new
            # client is served (not 503) before the grace is over.
            while True:
                async with connected(server.port) as c:
                    await c.send(get("hello/next"))
                    status, _, body = await c.response()
                if status == 200:
                    break
                assert status == 503  # the server has not processed the resets yet
                await anyio.sleep(0.05)
            assert (body, stubborn.ended) == (b"hello /hello/next", {})
            # Then they are cancelled.
            await stubborn.until(stubborn.cancelled, "sse-stubborn", 3)
            assert stubborn.ended == {"sse-stubborn": 3}


@pytest.mark.usefixtures("quiet")
async def test_a_thousand_pipelined_requests_then_a_reset_leak_nothing(serving: Serving) -> None:
    pipeline = b"".join(get(f"hello/{n}") for n in range(1000))

    async def pipelined_then_reset(port: int, i: int) -> None:
        c = await Client.connect(port, rcvbuf=65536)
        await c.send(pipeline)
        if i % 2:  # half of them read some responses first, half none
            await read_some(c, 10000)
        await c.reset()

    async with watched(serving, App()) as server:
        await keeps_serving(server.port, pipelined_then_reset, 6)


@pytest.mark.usefixtures("quiet")
@pytest.mark.parametrize(("path", "count"), [("hello", 1000), ("nap", 3)])
async def test_pipelined_requests_then_a_half_close_are_all_answered(
    serving: Serving, path: str, count: int
) -> None:
    # A client that half-closes after pipelining has not left: it reads every response (the
    # disconnect signal of finding 3 must not cut it short), whether the endpoints are quick
    # or take long enough for the runtime to watch the connection while they run (/nap).
    pipeline = b"".join(get(f"{path}/{n}") for n in range(count))
    async with watched(serving, App()) as server, connected(server.port) as c:
        with anyio.fail_after(STEP):
            await c.send(pipeline)
            c.sock.shutdown(socket.SHUT_WR)
            responses = parse_responses(await c.read_all())
    assert [(r.status, r.body) for r in responses] == [
        (200, b"%s /%s/%d" % (path.encode(), path.encode(), n)) for n in range(count)
    ]


# -- failing writes -------------------------------------------------------------------------------


@pytest.mark.usefixtures("quiet")
@pytest.mark.parametrize("path", ["late-stream", "late-bytes"])
async def test_writes_failing_after_the_client_left_leak_nothing(
    serving: Serving, path: str
) -> None:
    # The client closes (FIN, nothing unread) while the endpoint waits; then the endpoint
    # writes 4 MiB: the first write draws a reset from the client's kernel, the next fail.
    app = App()
    rounds = 6

    async def close_before_the_write(port: int, i: int) -> None:
        c = await Client.connect(port)
        await c.send(get(path))
        if path == "late-stream":
            assert (await c.head()).status_code == 200
            assert await c.piece() == b"start"
        else:
            await app.until(app.started, path, i + 1)
        await c.close()

    async with watched(serving, app) as server:
        await keeps_serving(server.port, close_before_the_write, rounds)
        app.release.set()
        with anyio.fail_after(STEP):
            await app.until(app.ended, path, rounds)
    # Streams stopped being pulled once writing failed (or the client was known gone).
    assert app.produced < rounds * 64


# -- a handler raising after send() ---------------------------------------------------------------


async def test_a_handler_raising_after_send_is_logged_once_and_the_connection_closed(
    serving: Serving, caplog: pytest.LogCaptureFixture
) -> None:
    # A bug in the handler (not a client leaving): the one ERROR line, with its traceback.
    async def raise_after_send(port: int, i: int) -> None:
        async with connected(port) as c:
            await c.send(get("raise-after-send") + get("hello/never"))
            status, _, body = await c.response()
            assert (status, body) == (200, b"sent")
            await c.expect_eof()  # the pipelined request is not served: the connection closes

    async with watched(serving, App()) as server:
        await keeps_serving(server.port, raise_after_send, 5)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.name for r in errors] == ["tophat.error"] * 5
    for r in errors:
        assert "raised after its response started" in r.getMessage()
        assert r.exc_info is not None and r.exc_info[0] is RuntimeError
