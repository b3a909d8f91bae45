"""Servers under test on every runtime, and a raw client that works on each.

``running(runtime, endpoint, **opts)`` serves on 127.0.0.1 (or a Unix socket) with the runtime
the test runs on: ``tophat.start_server`` on the running asyncio loop (plain or uvloop), or
``tophat.runtime.trio.server.serve`` in a nursery. Either way it yields the server object,
whose surface is the same (``port``, ``sockets``, ``stopping``, ``await shutdown(grace)``).

``Client`` speaks raw bytes over a non-blocking socket, waiting with ``anyio.wait_readable`` /
``wait_writable``, so one client serves every backend; ``StreamClient`` is the same over any
anyio byte stream (TLS).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from ssl import SSLContext
from typing import Any, Literal

import anyio
import anyio.abc
import h11

import tophat
from tophat import ServerOpts

__all__ = [
    "HOST",
    "RUNTIMES",
    "Background",
    "CliServer",
    "Client",
    "Runtime",
    "ServeTask",
    "StreamClient",
    "answer_when_stopping",
    "cli",
    "connected",
    "free_port",
    "never_answer",
    "refused",
    "running",
    "runtime_of",
    "serve_function",
    "serve_task",
    "spawn",
    "stops_cleanly",
]

HOST = "127.0.0.1"
Runtime = Literal["asyncio", "uvloop", "trio"]
RUNTIMES: tuple[Runtime, ...] = ("asyncio", "uvloop", "trio")


def runtime_of(anyio_backend: object) -> Runtime:
    """The tophat runtime matching a conftest ``anyio_backend`` parameter."""
    if anyio_backend == "trio":
        return "trio"
    if isinstance(anyio_backend, tuple) and anyio_backend[1].get("use_uvloop"):
        return "uvloop"
    return "asyncio"


def serve_function(runtime: Runtime) -> Callable[..., Any]:
    """The runtime's ``serve`` coroutine function (``handle_signals``, ``ready`` and all)."""
    if runtime == "trio":
        from tophat.runtime.trio import server as _trio

        return _trio.serve
    return tophat.serve_asyncio


@contextlib.asynccontextmanager
async def running(
    runtime: Runtime,
    endpoint: tophat.Endpoint,
    *,
    ssl: SSLContext | None = None,
    uds: str | None = None,
    sock: socket.socket | None = None,
    grace: float = 0.5,
    **opts: Any,
) -> AsyncIterator[Any]:
    """Serve ``endpoint`` on ``runtime`` (which must be the one running); yield the server.

    On the way out the server shuts down with ``grace``, bounded in time.
    """
    options = ServerOpts(**opts)
    if runtime != "trio":
        import asyncio

        if runtime == "uvloop":
            import uvloop

            assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
        server = await tophat.start_server(
            endpoint, HOST, 0, opts=options, ssl=ssl, uds=uds, sock=sock
        )
        try:
            yield server
        finally:
            with anyio.fail_after(5):
                await server.shutdown(grace)
        return

    import trio

    serve = functools.partial(
        serve_function("trio"),
        endpoint,
        HOST,
        0,
        opts=options,
        ssl=ssl,
        uds=uds,
        sock=sock,
        handle_signals=False,
    )
    # Errors are raised below, outside the nursery: no ExceptionGroup around them.
    error: Exception | None = None
    async with trio.open_nursery() as nursery:
        try:
            server = await nursery.start(serve)
        except Exception as exc:
            error = exc
        else:
            try:
                yield server
            except Exception as exc:
                error = exc
            finally:
                with anyio.fail_after(5):
                    await server.shutdown(grace)
    if error is not None:
        raise error


class ServeTask:
    """``serve()`` running as a task of its own: its server, and native cancellation."""

    def __init__(
        self,
        server: Any,
        cancel: Callable[[], object],
        ended: anyio.Event,
        cancelled: Callable[[], bool],
    ) -> None:
        self.server = server
        self._cancel = cancel
        self._ended = ended
        self._cancelled = cancelled

    @property
    def cancelled(self) -> bool:
        """serve() ended by propagating its cancellation (as it should when cancelled)."""
        return self._cancelled()

    def cancel(self) -> None:
        """Cancel the task the way its runtime does (asyncio: task.cancel(); trio: its scope)."""
        self._cancel()

    async def wait(self) -> None:
        """Until serve() has returned (or raised its cancellation)."""
        await self._ended.wait()


@contextlib.asynccontextmanager
async def serve_task(
    runtime: Runtime, endpoint: tophat.Endpoint, **kw: Any
) -> AsyncIterator[ServeTask]:
    """Run the runtime's ``serve(endpoint, HOST, 0, handle_signals=False, **kw)`` in a task."""
    serve = functools.partial(
        serve_function(runtime), endpoint, HOST, 0, handle_signals=False, **kw
    )
    ended = anyio.Event()
    if runtime != "trio":
        import asyncio

        ready: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(serve(ready=ready.set_result))
        task.add_done_callback(lambda _: ended.set())
        try:
            with anyio.fail_after(5):
                yield ServeTask(await ready, task.cancel, ended, task.cancelled)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError), anyio.fail_after(5):
                await task
        return

    import trio

    scope = trio.CancelScope()

    async def run(*, task_status: Any) -> None:
        try:
            with scope:
                await serve(task_status=task_status)
        finally:
            ended.set()

    async with trio.open_nursery() as nursery:
        server = await nursery.start(run)
        try:
            yield ServeTask(server, scope.cancel, ended, lambda: scope.cancelled_caught)
        finally:
            scope.cancel()


class Background:
    """A coroutine running in a task group; ``done`` tells whether it returned."""

    def __init__(self) -> None:
        self.done = False
        self._event = anyio.Event()

    async def wait(self) -> None:
        await self._event.wait()


def spawn(tg: anyio.abc.TaskGroup, fn: Callable[..., Any], *args: Any) -> Background:
    """Start ``fn(*args)`` in ``tg``; return its :class:`Background`."""
    bg = Background()

    async def run() -> None:
        try:
            await fn(*args)
        finally:
            bg.done = True
            bg._event.set()

    tg.start_soon(run)
    return bg


class Client:
    """A raw connection, with an h11 client to read responses off it."""

    def __init__(self) -> None:
        self.h11 = h11.Connection(h11.CLIENT)
        self._unread = b""  # read past the end of read_until()

    # -- the transport: a non-blocking socket -------------------------------------------------

    sock: socket.socket

    @classmethod
    async def connect(
        cls, port: int | None = None, *, uds: str | None = None, rcvbuf: int | None = None
    ) -> Client:
        """Connect to 127.0.0.1:``port``, or to the Unix socket ``uds``."""
        client = cls()
        family = socket.AF_UNIX if uds is not None else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            if rcvbuf is not None:  # before connecting: it sets the TCP window we announce
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.setblocking(False)
            err = sock.connect_ex(uds if uds is not None else (HOST, port))
            if err in (errno.EINPROGRESS, errno.EAGAIN):
                await anyio.wait_writable(sock)
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise OSError(err, os.strerror(err))
        except BaseException:
            sock.close()
            raise
        client.sock = sock
        return client

    async def _recv(self, size: int) -> bytes:
        while True:
            try:
                return self.sock.recv(size)
            except BlockingIOError:
                await anyio.wait_readable(self.sock)

    async def _send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[self.sock.send(view) :]
            except BlockingIOError:
                await anyio.wait_writable(self.sock)

    async def reset(self) -> None:
        """Close with a TCP reset (SO_LINGER 0): the way a crashing client goes away."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await self.close()

    async def close(self) -> None:
        if self.sock.fileno() != -1:
            anyio.notify_closing(self.sock)
            self.sock.close()
        await anyio.sleep(0)

    # -- HTTP on top ----------------------------------------------------------------------------

    async def recv(self, size: int = 65536) -> bytes:
        """The next bytes from the server (b"" at the end)."""
        if self._unread:
            data, self._unread = self._unread, b""
            return data
        return await self._recv(size)

    async def send(self, data: bytes) -> None:
        await self._send(data)

    async def read_until(self, separator: bytes) -> bytes:
        """Raw bytes up to and including ``separator`` (for interim responses)."""
        data = b""
        while separator not in data:
            piece = await self.recv()
            assert piece, f"connection closed before {separator!r}: {data!r}"
            data += piece
        end = data.index(separator) + len(separator)
        self._unread = data[end:]
        return data[:end]

    async def _event(self) -> Any:
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            self.h11.receive_data(await self.recv())

    async def head(self, method: str = "GET") -> h11.Response:
        """Read up to the next final response head (1xx responses are skipped)."""
        self.h11.send(h11.Request(method=method, target="/", headers=[("host", "t")]))
        self.h11.send(h11.EndOfMessage())
        while True:
            event = await self._event()
            if isinstance(event, h11.Response):
                return event
            assert isinstance(event, h11.InformationalResponse), event

    async def piece(self) -> bytes | None:
        """The next piece of the response body, or None at its end."""
        event = await self._event()
        if isinstance(event, h11.EndOfMessage):
            if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
                self.h11.start_next_cycle()
            return None
        assert isinstance(event, h11.Data), event
        return bytes(event.data)

    async def response(self, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
        """Read one whole response: status, headers (lower-case names), body."""
        head = await self.head(method)
        chunks = []
        while (chunk := await self.piece()) is not None:
            chunks.append(chunk)
        headers = {n.decode(): v.decode("latin-1") for n, v in head.headers}
        return head.status_code, headers, b"".join(chunks)

    async def expect_eof(self) -> None:
        """The server closes without sending another byte."""
        assert self.h11.trailing_data == (b"", False)
        assert await self.recv() == b""

    async def read_all(self) -> bytes:
        """Everything up to the end of the connection (a reset counts as the end)."""
        out = []
        with contextlib.suppress(ConnectionResetError, anyio.BrokenResourceError):
            while data := await self.recv(1 << 20):
                out.append(data)
        return b"".join(out)


class StreamClient(Client):
    """A :class:`Client` over an anyio byte stream (a TLS stream, say)."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        super().__init__()
        self.stream = stream

    async def _recv(self, size: int) -> bytes:
        try:
            return await self.stream.receive(size)
        except anyio.EndOfStream:
            return b""

    async def _send(self, data: bytes) -> None:
        await self.stream.send(data)

    async def reset(self) -> None:  # pragma: no cover - not needed over TLS
        raise NotImplementedError

    async def close(self) -> None:
        with contextlib.suppress(anyio.BrokenResourceError, OSError):
            await self.stream.aclose()


@contextlib.asynccontextmanager
async def connected(
    port: int | None = None, *, uds: str | None = None, rcvbuf: int | None = None
) -> AsyncIterator[Client]:
    client = await Client.connect(port, uds=uds, rcvbuf=rcvbuf)
    try:
        yield client
    finally:
        await client.close()


async def refused(port: int) -> bool:
    """Whether a connection to 127.0.0.1:``port`` is refused."""
    try:
        client = await Client.connect(port)
    except ConnectionRefusedError:
        return True
    await client.close()
    return False


# -- the CLI in a subprocess ---------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class CliServer:
    """``python -m tophat`` in a subprocess, and what it logged so far."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.port = 0  # when it serves TCP
        self.stderr = b""

    def wait_for(self, text: bytes, timeout: float = 10) -> None:
        """Read the server's log until ``text`` shows up in it."""
        assert self.proc.stderr is not None
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stderr, selectors.EVENT_READ)
            while text not in self.stderr:
                left = deadline - time.monotonic()
                assert left > 0, f"{text!r} not logged: {self.stderr!r}"
                if sel.select(left):
                    data = os.read(self.proc.stderr.fileno(), 65536)
                    assert data, f"server exited before logging {text!r}: {self.stderr!r}"
                    self.stderr += data

    def rest_of_stderr(self) -> str:
        assert self.proc.stderr is not None
        return (self.stderr + self.proc.stderr.read()).decode(errors="replace")


@contextlib.contextmanager
def cli(
    *args: str,
    app: str = "examples.hello:app",
    cwd: Path = ROOT,
    command: Sequence[str] = (sys.executable, "-m", "tophat"),
) -> Iterator[CliServer]:
    """``COMMAND APP ARGS`` in ``cwd`` (``python -m tophat`` in the repository by default), once
    it logged that it listens; killed at the end."""
    proc = subprocess.Popen(
        [*command, app, *args],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stderr is not None
    try:
        server = CliServer(proc)
        server.wait_for(b"listening on")
        yield server
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        proc.stderr.close()


def stops_cleanly(server: CliServer, sig: signal.Signals = signal.SIGINT) -> None:
    """``sig`` makes the server exit 0 within a second, logging no error."""
    server.proc.send_signal(sig)
    assert server.proc.wait(timeout=1) == 0
    stderr = server.rest_of_stderr()
    assert "Traceback" not in stderr
    assert " ERROR " not in stderr


# Endpoints for the CLI tests (``tests.servers:NAME``): they log when a request is in, so the
# test knows when to send its signal.
cli_log = logging.getLogger("tests.cli")


async def answer_when_stopping(req: tophat.Request, w: tophat.ResponseWriter) -> Any:
    cli_log.warning("request in")
    await req.stopping.wait()
    w.set_text("stopped")
    return await w.send()


async def never_answer(req: tophat.Request, w: tophat.ResponseWriter) -> Any:
    cli_log.warning("request in")
    await anyio.sleep(3600)
    raise AssertionError("unreachable")  # pragma: no cover


Serving = Callable[..., contextlib.AbstractAsyncContextManager[Any]]


async def asgi_messages(
    app: Any,
    method: str,
    path: str,
    headers: Sequence[tuple[bytes, bytes]] = (),
    *,
    query: bytes = b"",
    host: bytes = b"testserver",
) -> list[Any]:
    """Call an ASGI ``app`` with one bodiless HTTP request; return the messages it sent."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", host), *headers],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 9999),
    }
    sent: list[Any] = []
    inbox = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> Any:
        if inbox:
            return inbox.pop()
        await anyio.sleep_forever()

    async def send(message: Any) -> None:
        sent.append(message)

    with anyio.fail_after(5):
        await app(scope, receive, send)
    return sent
