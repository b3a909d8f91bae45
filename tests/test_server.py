"""Each runtime (asyncio, uvloop, trio) over real sockets on 127.0.0.1: timeouts, limits, shutdown.

Every async test runs once per runtime (the ``anyio_backend`` parameter of conftest picks it;
``serving`` starts the matching server). Every test starts its own server on an ephemeral port,
talks to it with raw bytes, and bounds every wait. The CLI tests at the end run
``python -m tophat`` in a subprocess, on each runtime.
"""

from __future__ import annotations

import contextlib
import http.client
import re
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import h11
import pytest
from servers import (
    HOST,
    RUNTIMES,
    Client,
    CliServer,
    Runtime,
    Serving,
    cli,
    connected,
    free_port,
    refused,
    serve_task,
    spawn,
    stops_cleanly,
)

from tophat import Request, ResponseWriter, ResponseWritten
from tophat.testing import parse_responses

ROOT = Path(__file__).resolve().parent.parent


# Fixtures ``runtime``, ``serving`` and ``no_error_logs`` come from conftest.py.
pytestmark = pytest.mark.usefixtures("no_error_logs")


# -- endpoints ------------------------------------------------------------------------------------


async def hello(req: Request, w: ResponseWriter) -> ResponseWritten:
    w.set_text("hello " + req.path)
    return await w.send()


async def echo(req: Request, w: ResponseWriter) -> ResponseWritten:
    """Reads the whole body and sends it back, after the path."""
    body = await req.body()
    w.set_body(req.path.encode() + b" " + body)
    return await w.send()


async def ignore_body(req: Request, w: ResponseWriter) -> ResponseWritten:
    w.set_text("ignored")
    return await w.send()


# -- helpers --------------------------------------------------------------------------------------


GET = b"GET /%s HTTP/1.1\r\nHost: t\r\n\r\n"


def get(path: str = "") -> bytes:
    return GET % path.encode()


# -- timeouts -------------------------------------------------------------------------------------


async def test_partial_head_that_stalls_gets_408_and_close(serving: Serving) -> None:
    async with serving(hello, head_timeout=0.3) as server, connected(server.port) as c:
        start = time.monotonic()
        await c.send(b"GET / HTTP/1.1\r\nHost: t\r\n")
        with anyio.fail_after(3):
            status, headers, body = await c.response()
            await c.expect_eof()
        assert time.monotonic() - start >= 0.25
        assert status == 408
        assert headers["connection"] == "close"
        assert body == b"Request Timeout"


@pytest.mark.parametrize("partial", [b"HEAD / HTTP/1.1\r\nHost: t\r\n", b"HEAD /x"])
async def test_partial_head_of_a_head_request_gets_408_without_content(
    serving: Serving, partial: bytes
) -> None:
    # RFC 9110 §9.3.2: no content in a response to HEAD, the refusal of a stalled one included.
    async with serving(hello, head_timeout=0.3) as server, connected(server.port) as c:
        await c.send(partial)
        with anyio.fail_after(3):
            out = await c.read_all()
    head, sep, content = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 Request Timeout\r\n") and sep
    assert b"\r\ncontent-length: 15\r\n" in head  # what a GET would get, as for HEAD
    assert content == b""


async def test_head_timeout_counts_from_the_first_byte_not_from_the_last(serving: Serving) -> None:
    # Slow loris: a byte every 50 ms keeps the connection busy, never idle for head_timeout.
    async with serving(hello, head_timeout=0.4) as server, connected(server.port) as c:

        async def drip() -> None:
            with contextlib.suppress(OSError):
                for byte in b"GET / HTTP/1.1\r\nX-Slow: " + b"a" * 1000:
                    await c.send(bytes([byte]))
                    await anyio.sleep(0.05)

        async with anyio.create_task_group() as tg:
            tg.start_soon(drip)
            with anyio.fail_after(3):
                status, headers, _ = await c.response()
            tg.cancel_scope.cancel()
        assert status == 408
        assert headers["connection"] == "close"


async def test_stalled_body_while_the_handler_reads_gets_408_and_close(serving: Serving) -> None:
    async with serving(echo, body_timeout=0.3) as server, connected(server.port) as c:
        await c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
        with anyio.fail_after(3):
            status, headers, _ = await c.response()
            await c.expect_eof()
        assert (status, headers["connection"]) == (408, "close")


async def test_stalled_body_after_the_response_started_closes_without_408(serving: Serving) -> None:
    async def stream_back(req: Request, w: ResponseWriter) -> ResponseWritten:
        async def pieces() -> AsyncIterator[bytes]:
            yield b"start;"
            async for piece in req.stream():
                yield piece

        w.set_body(pieces())
        return await w.send()

    async with serving(stream_back, body_timeout=0.3) as server, connected(server.port) as c:
        await c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
        with anyio.fail_after(3):
            head = await c.head()
            assert head.status_code == 200
            got = b""
            with pytest.raises(h11.RemoteProtocolError):  # the chunked body never ends
                while (piece := await c.piece()) is not None:
                    got += piece
        assert got == b"start;abc"


async def test_unread_body_that_stalls_closes_the_connection_after_the_response(
    serving: Serving,
) -> None:
    async with serving(ignore_body, body_timeout=0.3) as server, connected(server.port) as c:
        await c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
        with anyio.fail_after(3):
            status, _, body = await c.response()
            assert (status, body) == (200, b"ignored")
            await c.expect_eof()


@pytest.mark.parametrize("requests", [0, 2], ids=["fresh", "after-two-requests"])
async def test_idle_keep_alive_connection_is_closed_quietly(
    requests: int, serving: Serving
) -> None:
    async with serving(hello, keep_alive_timeout=0.3) as server, connected(server.port) as c:
        for i in range(requests):
            await c.send(get(str(i)))
            with anyio.fail_after(2):
                status, _, body = await c.response()
                assert (status, body) == (200, b"hello /%d" % i)
        start = time.monotonic()
        with anyio.fail_after(3):
            await c.expect_eof()
        assert time.monotonic() - start >= 0.25


async def test_client_that_does_not_read_is_closed_after_the_write_timeout(
    serving: Serving,
) -> None:
    produced = 0
    closed = anyio.Event()
    chunk = b"x" * 65536

    async def firehose(req: Request, w: ResponseWriter) -> ResponseWritten:
        async def pieces() -> AsyncIterator[bytes]:
            nonlocal produced
            try:
                while True:
                    produced += 1
                    yield chunk
            finally:
                closed.set()

        w.set_body(pieces())
        return await w.send()

    async with (
        serving(firehose, write_timeout=0.3) as server,
        connected(server.port, rcvbuf=65536) as c,
    ):
        await c.send(get())
        with anyio.fail_after(5):
            await closed.wait()  # the handler's stream was abandoned
            out = await c.read_all()  # and the connection ends: what was sent, then nothing
        assert out.startswith(b"HTTP/1.1 200 OK\r\n")
        assert not out.endswith(b"\r\n0\r\n\r\n")  # the chunked body was cut short
        assert len(out) <= produced * (len(chunk) + 16) + 1024


# -- connection limit -----------------------------------------------------------------------------


async def test_connections_beyond_the_limit_get_503_and_are_closed(serving: Serving) -> None:
    async with (
        serving(hello, max_connections=2) as server,
        connected(server.port) as a,
        connected(server.port) as b,
    ):
        with anyio.fail_after(3):
            for c, name in ((a, "a"), (b, "b")):
                await c.send(get(name))
                assert (await c.response())[2] == b"hello /" + name.encode()
            async with connected(server.port) as extra:
                await extra.send(get("extra"))
                out = await extra.read_all()
            [resp] = parse_responses(out)
            assert resp.status == 503
            assert resp.headers["connection"] == "close"
            # The connections that were in are unaffected.
            for c, name in ((a, "a2"), (b, "b2")):
                await c.send(get(name))
                assert (await c.response())[:1] == (200,)
            assert a.h11.trailing_data == (b"", False)


async def test_a_burst_past_the_limit_logs_one_warning_with_a_count(
    serving: Serving, caplog: pytest.LogCaptureFixture
) -> None:
    """Each refused connection used to log its own WARNING: a burst of clients flooded the log."""
    async with (
        serving(hello, max_connections=1) as server,
        connected(server.port) as a,
    ):
        with anyio.fail_after(5):
            await a.send(get("a"))
            assert (await a.response())[0] == 200
            for _ in range(20):
                async with connected(server.port) as extra:
                    await extra.send(get("extra"))
                    [resp] = parse_responses(await extra.read_all())
                    assert resp.status == 503
    lines = [r.getMessage() for r in caplog.records if "connection limit" in r.getMessage()]
    assert lines == ["connection limit (1) reached: answering 503; 1 connection(s) refused "
                     "since the last warning"]  # fmt: skip


async def test_a_closed_connection_frees_its_place_under_the_limit(serving: Serving) -> None:
    async with serving(hello, max_connections=1) as server:
        with anyio.fail_after(5):
            async with connected(server.port) as a:
                await a.send(get("a"))
                assert (await a.response())[0] == 200
            # The server notices the close a moment later; until then, 503 is right.
            while True:
                async with connected(server.port) as b:
                    await b.send(b"GET /b HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                    [resp] = parse_responses(await b.read_all())
                if resp.status == 200:
                    break
                assert resp.status == 503
                await anyio.sleep(0.05)


# -- graceful shutdown ----------------------------------------------------------------------------


class Gate:
    """A handler that waits for the test to let it answer."""

    def __init__(self) -> None:
        self.entered = anyio.Event()
        self.release = anyio.Event()
        self.cancelled = False

    async def __call__(self, req: Request, w: ResponseWriter) -> ResponseWritten:
        self.entered.set()
        try:
            await self.release.wait()
        except anyio.get_cancelled_exc_class():
            self.cancelled = True
            raise
        body = await req.body()
        w.set_body(b"done " + body)
        return await w.send()


async def test_shutdown_stops_accepting_and_lets_in_flight_requests_finish(
    serving: Serving,
) -> None:
    gate = Gate()
    async with serving(gate) as server, connected(server.port) as c:
        port = server.port
        with anyio.fail_after(5):
            await c.send(get())
            await gate.entered.wait()
            async with anyio.create_task_group() as tg:
                shutdown = spawn(tg, server.shutdown, 5.0)
                await server.stopping.wait()
                assert await refused(port)
                gate.release.set()
                status, headers, body = await c.response()
                assert (status, body) == (200, b"done ")
                assert headers["connection"] == "close"
                await c.expect_eof()
                await shutdown.wait()  # well within the grace period
        assert not gate.cancelled


async def test_request_whose_body_arrives_during_shutdown_still_completes(
    serving: Serving,
) -> None:
    # The head came in one read and the handler has not read the body yet when shutdown begins.
    gate = Gate()
    async with serving(gate) as server, connected(server.port) as c:
        with anyio.fail_after(5):
            await c.send(b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\n")
            await gate.entered.wait()
            async with anyio.create_task_group() as tg:
                shutdown = spawn(tg, server.shutdown, 5.0)
                await server.stopping.wait()
                await c.send(b"hello")
                gate.release.set()
                status, headers, body = await c.response()
                await shutdown.wait()
        assert (status, body) == (200, b"done hello")
        assert headers["connection"] == "close"


async def test_shutdown_closes_idle_keep_alive_connections_at_once(serving: Serving) -> None:
    gate = Gate()

    async def app(req: Request, w: ResponseWriter) -> ResponseWritten:
        return await (gate(req, w) if req.path == "/slow" else hello(req, w))

    async with (
        serving(app, keep_alive_timeout=30) as server,
        connected(server.port) as idle,
        connected(server.port) as busy,
    ):
        with anyio.fail_after(5):
            await idle.send(get("fast"))
            assert (await idle.response())[0] == 200
            await busy.send(get("slow"))
            await gate.entered.wait()
            async with anyio.create_task_group() as tg:
                shutdown = spawn(tg, server.shutdown, 5.0)
                # The idle connection goes now, not after the grace period or keep-alive time.
                with anyio.fail_after(1):
                    await idle.expect_eof()
                assert not shutdown.done  # the busy one still runs
                gate.release.set()
                status, headers, _ = await busy.response()
                assert (status, headers["connection"]) == (200, "close")
                await busy.expect_eof()
                await shutdown.wait()


async def test_streaming_handler_is_told_the_server_is_stopping(serving: Serving) -> None:
    seen: list[bool] = []

    async def ticker(req: Request, w: ResponseWriter) -> ResponseWritten:
        async def pieces() -> AsyncIterator[bytes]:
            seen.append(req.stopping.is_set())
            yield b"tick;"
            await req.stopping.wait()
            seen.append(req.stopping.is_set())
            yield b"bye"

        w.set_body(pieces())
        return await w.send()

    async with serving(ticker) as server, connected(server.port) as c:
        with anyio.fail_after(5):
            await c.send(get())
            assert (await c.head()).status_code == 200
            assert await c.piece() == b"tick;"
            async with anyio.create_task_group() as tg:
                shutdown = spawn(tg, server.shutdown, 5.0)
                rest = b""
                while (piece := await c.piece()) is not None:
                    rest += piece
                assert rest == b"bye"
                await c.expect_eof()
                await shutdown.wait()
    assert seen == [False, True]


async def test_handlers_still_running_after_the_grace_period_are_cancelled(
    serving: Serving,
) -> None:
    gate = Gate()
    async with serving(gate) as server, connected(server.port) as c:
        with anyio.fail_after(5):
            await c.send(get())
            await gate.entered.wait()
            start = time.monotonic()
            await server.shutdown(0.3)
            elapsed = time.monotonic() - start
            assert gate.cancelled
            assert await c.read_all() == b""  # no response, and the connection is gone
    assert 0.25 <= elapsed < 1.5


async def test_cancelling_serve_shuts_down_gracefully(runtime: Runtime) -> None:
    # Cancelling the serve() task is a shutdown like SIGINT: in-flight requests finish.
    gate = Gate()
    async with serve_task(runtime, gate) as task:
        port = task.server.port
        async with connected(port) as c:
            with anyio.fail_after(5):
                await c.send(get())
                await gate.entered.wait()
                task.cancel()
                await task.server.stopping.wait()
                gate.release.set()
                status, headers, body = await c.response()
                await c.expect_eof()
                await task.wait()
        assert (status, body, headers["connection"]) == (200, b"done ", "close")
        assert not gate.cancelled
        assert await refused(port)


# -- backpressure ---------------------------------------------------------------------------------


async def test_streaming_to_a_client_that_does_not_read_stops_pulling_the_generator(
    serving: Serving,
) -> None:
    chunk = b"z" * 32768
    total = 2048  # 64 MiB
    produced = 0

    async def big(req: Request, w: ResponseWriter) -> ResponseWritten:
        async def pieces() -> AsyncIterator[bytes]:
            nonlocal produced
            for _ in range(total):
                produced += 1
                yield chunk

        w.set_body(pieces(), length=total * len(chunk))
        return await w.send()

    async with serving(big) as server, connected(server.port, rcvbuf=65536) as c:
        await c.send(get())
        with anyio.fail_after(10):
            # Wait until the producer has stalled (no progress for 0.2 s) ...
            last = -1
            while produced != last:
                last = produced
                await anyio.sleep(0.2)
            stalled_at = produced
            # ... then read everything: reading resumes it.
            head = await c.head()
            received = 0
            while (piece := await c.piece()) is not None:
                received += len(piece)
        assert stalled_at < total // 4, f"{stalled_at} of {total} chunks produced unread"
        assert head.status_code == 200
        assert received == total * len(chunk)
        assert produced == total


# -- Expect: 100-continue -------------------------------------------------------------------------


async def test_expect_100_continue_over_a_socket(serving: Serving) -> None:
    async with serving(echo) as server, connected(server.port) as c:
        with anyio.fail_after(3):
            await c.send(
                b"POST /up HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
            )
            interim = await c.read_until(b"\r\n\r\n")
            assert re.fullmatch(rb"HTTP/1\.1 100 [^\r\n]*\r\n\r\n", interim), interim
            await c.send(b"hello")
            status, headers, body = await c.response()
            assert (status, body) == (200, b"/up hello")
            assert "connection" not in headers
            # The connection is still good for the next request.
            await c.send(get("next"))
            assert (await c.response())[2] == b"/next "


async def test_expect_100_continue_refused_without_reading_sends_no_100_and_closes(
    serving: Serving,
) -> None:
    async with serving(ignore_body) as server, connected(server.port) as c:
        with anyio.fail_after(3):
            await c.send(
                b"POST /up HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
            )
            out = await c.read_all()
        [resp] = parse_responses(out, ["POST"])
        assert (resp.status, resp.informational) == (200, [])
        assert resp.headers["connection"] == "close"


# -- bad input and disconnects --------------------------------------------------------------------


async def test_bad_clients_do_not_disturb_a_keep_alive_connection(serving: Serving) -> None:
    async def garbage(port: int) -> None:
        async with connected(port) as c:
            await c.send(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n")
            assert parse_responses(await c.read_all())[0].status == 400

    async def reset_mid_head(port: int) -> None:
        c = await Client.connect(port)
        await c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Le")
        await c.reset()

    async def reset_mid_body(port: int) -> None:
        c = await Client.connect(port)
        await c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n" + b"a" * 999)
        await c.reset()

    async def bad_chunked(port: int) -> None:
        async with connected(port) as c:
            await c.send(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
            assert parse_responses(await c.read_all(), ["POST"])[0].status == 400

    async def smuggle(port: int) -> None:
        async with connected(port) as c:
            await c.send(
                b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: t\r\n\r\n"
            )
            [resp] = parse_responses(await c.read_all(), ["POST"])
            assert resp.status == 400

    async with serving(echo, head_timeout=1, body_timeout=1) as server:
        port = server.port
        async with connected(port) as good:
            with anyio.fail_after(10):
                for i in range(5):
                    async with anyio.create_task_group() as tg:
                        for bad in (garbage, reset_mid_head, reset_mid_body, bad_chunked, smuggle):
                            tg.start_soon(bad, port)
                        body = b"body %d " % i * 100
                        await good.send(
                            b"POST /good/%d HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n"
                            % (i, len(body))
                            + body
                        )
                        status, _, got = await good.response()
                        assert (status, got) == (200, b"/good/%d " % i + body)
                # And new clients are still served.
                async with connected(port) as fresh:
                    await fresh.send(get("fresh"))
                    assert (await fresh.response())[2] == b"/fresh "


@pytest.mark.parametrize("how", ["reset", "close"])
async def test_client_gone_mid_response_ends_the_stream_quietly(how: str, serving: Serving) -> None:
    closed = anyio.Event()

    async def endless(req: Request, w: ResponseWriter) -> ResponseWritten:
        async def pieces() -> AsyncIterator[bytes]:
            try:
                while True:
                    yield b"y" * 16384
                    await anyio.sleep(0)
            finally:
                closed.set()

        w.set_body(pieces())
        return await w.send()

    async def big_bytes(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.set_body(b"b" * (32 * 1024 * 1024))
        return await w.send()

    async def app(req: Request, w: ResponseWriter) -> ResponseWritten:
        return await (big_bytes(req, w) if req.path == "/bytes" else endless(req, w))

    async with serving(app) as server:
        with anyio.fail_after(5):
            for path in ("/stream", "/bytes"):
                c = await Client.connect(server.port)
                await c.send(get(path[1:]))
                assert (await c.head()).status_code == 200
                assert await c.piece()
                if how == "reset":
                    await c.reset()
                else:
                    await c.close()
            await closed.wait()
            async with connected(server.port) as after:
                await after.send(get("stream"))
                assert (await after.head()).status_code == 200


async def test_refusal_closes_gracefully_while_the_client_is_still_sending(
    serving: Serving,
) -> None:
    # RFC 9112 §9.6: close in stages (half-close, keep reading a while) so that a client still
    # sending gets the final response instead of a reset that may erase it.
    async with serving(hello, max_body_size=1000) as server, connected(server.port) as c:
        with anyio.fail_after(5):
            await c.send(  # a reset would make this raise
                b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4000000\r\n\r\n" + b"x" * 4_000_000
            )
            status, headers, _ = await c.response("POST")
        assert (status, headers["connection"]) == (413, "close")


# -- serve() and the CLI --------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["tcp", "unix"])
async def test_serving_a_socket_bound_beforehand(
    serving: Serving, family: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    if family == "tcp":
        sock = socket.create_server((HOST, 0))
        where: dict[str, Any] = {"port": sock.getsockname()[1]}
    else:
        path = str(tmp_path_factory.mktemp("s", numbered=True) / "s")
        if len(path) > 100:  # pragma: no cover - sun_path is ~107 bytes
            pytest.skip("temporary path too long for a Unix socket")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        where = {"uds": path}
    async with serving(hello, sock=sock) as server:
        assert server.sockets[0].getsockname() == sock.getsockname()
        with anyio.fail_after(5):
            async with connected(**where) as c:
                await c.send(get("given"))
                assert (await c.response())[2] == b"hello /given"
    assert sock.fileno() == -1  # the server owned it, and closed it


async def test_serve_without_signal_handlers_stops_when_cancelled(runtime: Runtime) -> None:
    async with serve_task(runtime, hello) as task:
        port = task.server.port
        with anyio.fail_after(5):
            async with connected(port) as c:
                await c.send(get("x"))
                assert (await c.response())[2] == b"hello /x"
                task.cancel()
                await task.wait()
                assert task.cancelled  # the cancellation propagates, after the shutdown
                await c.expect_eof()
            assert await refused(port)


@pytest.fixture(params=RUNTIMES)
def cli_server(request: pytest.FixtureRequest) -> Iterator[CliServer]:
    """The CLI serving examples.hello:app on a free port, on each runtime."""
    port = free_port()
    with cli("--port", str(port), "--runtime", request.param) as server:
        server.port = port
        yield server


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_cli_stops_cleanly_on_signal(cli_server: CliServer, sig: signal.Signals) -> None:
    conn = http.client.HTTPConnection(HOST, cli_server.port, timeout=5)
    try:
        conn.request("GET", "/")
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (200, b"Hello, world!")
    finally:
        conn.close()
    stops_cleanly(cli_server, sig)


@pytest.mark.slow
def test_cli_answers_pipelined_requests_in_order(cli_server: CliServer) -> None:
    with socket.create_connection((HOST, cli_server.port), timeout=5) as s:
        s.sendall(
            b"GET /1 HTTP/1.1\r\nHost: t\r\n\r\n"
            b"HEAD /2 HTTP/1.1\r\nHost: t\r\n\r\n"
            b"GET /3 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        out = b""
        while data := s.recv(65536):
            out += data
    responses = parse_responses(out, ["GET", "HEAD", "GET"])
    assert [(r.status, r.body) for r in responses] == [
        (200, b"Hello, world!"),
        (200, b""),
        (200, b"Hello, world!"),
    ]
    assert responses[1].headers["content-length"] == "13"
    assert responses[2].headers["connection"] == "close"


def read_to_end(s: socket.socket) -> bytes:
    out = b""
    while data := s.recv(65536):
        out += data
    return out


def exited(server: CliServer, code: int) -> None:
    """The server exited with ``code`` within two seconds, with no traceback or error."""
    assert server.proc.wait(timeout=2) == code
    stderr = server.rest_of_stderr()
    assert "Traceback" not in stderr
    assert " ERROR " not in stderr


@pytest.mark.slow
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_cli_lets_the_request_in_flight_finish_on_sigint(runtime: str) -> None:
    port = free_port()
    args = ("--port", str(port), "--runtime", runtime)
    with (
        cli(*args, app="tests.servers:answer_when_stopping") as server,
        socket.create_connection((HOST, port), timeout=5) as s,
    ):
        s.sendall(get())
        server.wait_for(b"request in")
        server.proc.send_signal(signal.SIGINT)
        [resp] = parse_responses(read_to_end(s))
        assert (resp.status, resp.body, resp.headers["connection"]) == (200, b"stopped", "close")
        exited(server, 0)


@pytest.mark.slow
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_cli_second_sigint_stops_at_once(runtime: str) -> None:
    port = free_port()
    args = ("--port", str(port), "--runtime", runtime)
    with (
        cli(*args, app="tests.servers:never_answer") as server,
        socket.create_connection((HOST, port), timeout=5) as s,
    ):
        s.sendall(get())
        server.wait_for(b"request in")
        server.proc.send_signal(signal.SIGINT)
        server.wait_for(b"shutting down")
        # Not waiting for the grace period (10 s). The asyncio runtime logs "shutting down"
        # just before it removes its signal handlers, and a signal in between is swallowed:
        # send again until one lands (each wait is bounded).
        for _ in range(10):
            server.proc.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.proc.wait(timeout=0.2)
                break
        assert server.proc.wait(timeout=2) == 130
        assert read_to_end(s) == b""
