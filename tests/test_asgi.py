"""tophat.asgi: the same endpoints under tophat's own server, uvicorn, hypercorn and gunicorn.

Four layers:

* In memory (every backend): the exact ASGI messages the adapter sends for a scope; its
  answers to errors equal what ``tophat.accept`` answers (through ``tophat.testing``);
  backpressure, limits, disconnects, lifespan.
* Across servers, on the wire (httpx): each request of ``CASES`` goes to tophat's server and to
  every ASGI server running the adapter on the same loop (asyncio: uvicorn with h11, uvicorn with
  httptools, hypercorn; uvloop: the same; trio: hypercorn), and the status, the header fields
  and the body must be equal. The one documented difference: ``Date`` and ``Server`` are the
  ASGI server's (the adapter adds none: uvicorn would send two), so they are compared only for
  presence (exactly one Date everywhere). Framing is compared exactly: every server sends
  ``content-length`` for fixed bodies and ``transfer-encoding: chunked`` for streamed ones.
* Behaviours per server: ``bytes_written`` reported, 5 MB uploads streamed, a body echoed as it
  arrives, client disconnects surfacing to the handler, 413, an error after the head.
* gunicorn with uvicorn workers, in a subprocess (a smoke test).

Tests of servers run on asyncio, uvloop and trio; uvicorn runs on asyncio only, so its tests
are skipped on trio.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import h11
import httpx
import pytest
import servers
import sniffio
from asgi_app import REPORTS, make_app, router, upload
from servers import Runtime

from tophat import Glitch, Request, ResponseWriter, ResponseWritten, ServerOpts, StreamClosed
from tophat.asgi import ClientDisconnected, Message, to_asgi
from tophat.testing import AsyncTestClient, parse_responses

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
KiB, MiB = 1024, 1024 * 1024

ASGI_SERVERS = ("uvicorn-h11", "uvicorn-httptools", "hypercorn")
SERVERS = ("tophat", *ASGI_SERVERS)
ON_TRIO = ("tophat", "hypercorn")  # uvicorn runs on asyncio only


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("asyncio", id="asyncio"),
        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
        pytest.param("trio", id="trio"),
    ],
)
def anyio_backend(request: pytest.FixtureRequest) -> object:
    return request.param


def _on_trio() -> bool:
    return sniffio.current_async_library() == "trio"


# -- servers ----------------------------------------------------------------------------------


def _runtime() -> Runtime:
    """The tophat runtime of the running loop."""
    if _on_trio():
        return "trio"
    import asyncio

    import uvloop

    return "uvloop" if isinstance(asyncio.get_running_loop(), uvloop.Loop) else "asyncio"


@contextlib.asynccontextmanager
async def _tophat(opts: dict[str, Any]) -> AsyncIterator[int]:
    async with servers.running(_runtime(), router, **opts) as server:
        yield server.port


@contextlib.asynccontextmanager
async def _uvicorn(app: Any, http: str, **kw: Any) -> AsyncIterator[int]:
    import asyncio

    import uvicorn

    config = uvicorn.Config(
        app,
        host=HOST,
        port=0,
        http=http,
        ws="none",
        lifespan="on",
        log_level="warning",
        log_config=None,  # leave the test process's logging alone
        timeout_graceful_shutdown=1,
        **kw,
    )
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve())
    try:
        with anyio.fail_after(5):
            while not server.started:
                if task.done():
                    await task
                    raise RuntimeError("uvicorn did not start")
                await anyio.sleep(0.005)
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        with anyio.fail_after(5):
            await asyncio.wait([task])


@contextlib.asynccontextmanager
async def _hypercorn(app: Any, **kw: Any) -> AsyncIterator[int]:
    from hypercorn.config import Config

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    port = sock.getsockname()[1]
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]  # hypercorn owns the socket now
    config.graceful_timeout = 1
    config.errorlog = logging.getLogger("hypercorn.test")  # propagates to caplog
    for name, value in kw.items():
        setattr(config, name, value)
    if _on_trio():
        from hypercorn.trio import serve
    else:
        from hypercorn.asyncio import serve  # type: ignore[assignment]
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(functools.partial(serve, app, config, shutdown_trigger=stop.wait))
        try:
            await _wait_listening(port)
            yield port
        finally:
            stop.set()


async def _wait_listening(port: int) -> None:
    with anyio.fail_after(5):
        while True:
            try:
                stream = await anyio.connect_tcp(HOST, port)
            except OSError:
                await anyio.sleep(0.005)
                continue
            await stream.aclose()
            return


@contextlib.asynccontextmanager
async def running(kind: str, opts: dict[str, Any] | None = None, **kw: Any) -> AsyncIterator[str]:
    """Serve the endpoints of asgi_app with server ``kind`` (``opts``: ServerOpts fields, ``kw``:
    the ASGI server's settings); yield the base URL."""
    opts = opts or {}
    if kind == "tophat":
        server = _tophat(opts)
    elif kind.startswith("uvicorn-"):
        server = _uvicorn(make_app(ServerOpts(**opts)), kind.removeprefix("uvicorn-"), **kw)
    else:
        server = _hypercorn(make_app(ServerOpts(**opts)), **kw)
    async with server as port:
        yield f"http://{HOST}:{port}"


def _kinds(kinds: tuple[str, ...] = SERVERS) -> tuple[str, ...]:
    return tuple(k for k in kinds if k in ON_TRIO) if _on_trio() else kinds


@pytest.fixture(scope="module")
async def urls(anyio_backend: object) -> AsyncIterator[dict[str, str]]:
    """Every server of this backend, serving the endpoints of asgi_app, by name."""
    async with contextlib.AsyncExitStack() as stack:
        found = {kind: await stack.enter_async_context(running(kind)) for kind in _kinds()}
        for url in found.values():
            client = httpx.AsyncClient(base_url=url, timeout=10)
            _CLIENTS[url] = await stack.enter_async_context(client)
        try:
            yield found
        finally:
            _CLIENTS.clear()


@pytest.fixture(scope="module", params=SERVERS)
def server(request: pytest.FixtureRequest, anyio_backend: object) -> str:
    kind: str = request.param
    if anyio_backend == "trio" and kind not in ON_TRIO:
        pytest.skip("uvicorn runs on asyncio only")
    return kind


@pytest.fixture(autouse=True)
def clear_reports() -> Iterator[None]:
    REPORTS.clear()
    yield
    REPORTS.clear()


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


#: Keep-alive clients of the servers of ``urls``: requests reuse connections through the adapter.
_CLIENTS: dict[str, httpx.AsyncClient] = {}


async def fetch(url: str, method: str, path: str, **kw: Any) -> httpx.Response:
    client = _CLIENTS.get(url)
    if client is not None:
        return await client.request(method, path, **kw)
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        return await client.request(method, path, **kw)


IGNORED = frozenset(("date", "server"))


def shape(
    resp: httpx.Response, ignored: frozenset[str] = IGNORED
) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, header fields (minus Date and Server) as a sorted multiset, and body."""
    fields = sorted(
        (n.lower(), v) for n, v in resp.headers.multi_items() if n.lower() not in ignored
    )
    return resp.status_code, fields, resp.content


def _messages(exc: BaseException) -> list[str]:
    """The messages of an exception, or of every exception in a (nested) group."""
    inner = getattr(exc, "exceptions", None)
    return [m for e in inner for m in _messages(e)] if inner else [str(exc)]


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR]


async def _reported(label: str) -> Any:
    """What a handler reported under ``label`` (waits for it: handlers report after sending)."""
    with anyio.fail_after(5):
        while True:
            for key, value in REPORTS:
                if key == label:
                    return value
            await anyio.sleep(0.005)


# -- the same response under every server -----------------------------------------------------

CASES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "hello": ("GET", "/hello", {}),
    "head": ("HEAD", "/hello", {}),
    "json": ("GET", "/json?a=1&a=2&b=%20x", {"headers": [("X-Test", "1"), ("x-test", "2")]}),
    "percent-encoded path": ("GET", "/path/caf%C3%A9/a%2Fb", {}),
    "glitch keeps headers set before": ("GET", "/glitch", {}),
    "exception is a 500": ("GET", "/boom", {}),
    "returned without sending": ("GET", "/nosend", {}),
    "stream failing before its first piece": ("GET", "/early-error", {}),
    "not found": ("GET", "/nowhere", {}),
    "method not allowed": ("DELETE", "/hello", {}),
    "204": ("GET", "/empty", {}),
    "304": ("GET", "/notmod", {}),
    "user framing dropped": ("GET", "/framing", {}),
    "streamed (chunked)": ("GET", "/stream", {}),
    "streamed, HEAD": ("HEAD", "/stream", {}),
    "streamed with a length": ("GET", "/stream-length", {}),
    "bytes_written": ("GET", "/written", {}),
    "echo": ("POST", "/echo", {"content": b"x" * 100_000, "headers": {"content-type": "a/b"}}),
    "upload": ("POST", "/upload", {"content": bytes(range(256)) * 400}),
}


# The differences allowed beyond Date and Server, by (server, case), each with its reason.
ALLOWED: dict[tuple[str, str], frozenset[str]] = {
    # A HEAD response without a length: tophat and h11 announce the framing a GET would get
    # (chunked); uvicorn's httptools protocol sends none, which RFC 9110 §9.3.2 allows ("a server
    # MAY omit header fields for which a value is determined only while generating the content").
    ("uvicorn-httptools", "streamed, HEAD"): frozenset(("transfer-encoding",)),
}


@pytest.mark.parametrize("case", CASES)
async def test_same_response_under_every_server(
    urls: dict[str, str], case: str, caplog: pytest.LogCaptureFixture
) -> None:
    method, path, kw = CASES[case]
    responses = {kind: await fetch(url, method, path, **kw) for kind, url in urls.items()}
    for kind, resp in responses.items():
        ignored = IGNORED | ALLOWED.get((kind, case), frozenset())
        assert shape(resp, ignored) == shape(responses["tophat"], ignored), kind
        assert len(resp.headers.get_list("date")) == 1, kind  # RFC 9110 §6.6.1, and only one
        assert len(resp.headers.get_list("server")) <= 1, kind
    # Errors are logged once per server, by tophat; no ASGI server ever sees an exception.
    errors = _errors(caplog)
    if case in (
        "exception is a 500",
        "returned without sending",
        "stream failing before its first piece",
    ):
        assert len(errors) == len(urls), errors
        assert all(e.startswith("tophat.error: ") for e in errors), errors
    else:
        assert errors == []


async def test_the_shared_responses_are_the_expected_ones(urls: dict[str, str]) -> None:
    """Pins a few of the compared responses, so the comparison is not between equal mistakes."""
    url = urls["tophat"]
    glitch = await fetch(url, "GET", "/glitch")
    assert (glitch.status_code, glitch.text) == (403, "no entry")
    assert glitch.headers["x-before"] == "kept" and glitch.headers["x-glitch"] == "yes"
    assert "content-language" not in glitch.headers
    boom = await fetch(url, "GET", "/boom")
    assert (boom.status_code, boom.text) == (500, "Internal Server Error")
    stream = await fetch(url, "GET", "/stream")
    assert stream.headers["transfer-encoding"] == "chunked"
    head = await fetch(url, "HEAD", "/hello")
    assert (head.headers["content-length"], head.content) == ("13", b"")
    path = (await fetch(url, "GET", "/path/caf%C3%A9/a%2Fb")).json()
    assert path == {
        "path": "/path/café/a/b",
        "raw_path": "/path/caf%C3%A9/a%2Fb",
        "rest": "café/a/b",
    }


# -- behaviours, per server -------------------------------------------------------------------


async def test_bytes_written_are_reported_after_sending(urls: dict[str, str], server: str) -> None:
    url = urls[server]
    resp = await fetch(url, "GET", "/written")
    assert resp.headers["x-hook"] == "1000"  # the before_send hook ran
    assert await _reported("written") == ("GET", 200, 1000)
    assert await _reported("headers") == "1000"  # ResponseWritten.headers: what was sent
    REPORTS.clear()
    await fetch(url, "HEAD", "/written")
    assert await _reported("written") == ("HEAD", 200, 0)
    REPORTS.clear()
    await fetch(url, "GET", "/written-stream")
    assert await _reported("written") == ("GET", 200, 32)


async def test_a_5_mb_upload_is_read_piece_by_piece(urls: dict[str, str], server: str) -> None:
    payload = bytes(range(256)) * (5 * MiB // 256)

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(payload), 64 * KiB):
            yield payload[i : i + 64 * KiB]

    expected = {"size": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
    for content in (chunks(), payload):  # chunked, then with a Content-Length
        resp = await fetch(urls[server], "POST", "/upload", content=content)
        assert (resp.status_code, resp.json()) == (200, expected)
        size, count = await _reported("upload")
        assert size == len(payload) and count >= 5 * MiB // (256 * KiB), count  # never whole
        REPORTS.clear()


async def test_echo_streams_the_body_back_as_it_arrives(urls: dict[str, str], server: str) -> None:
    """Each of the first pieces comes back before the next is sent; then 5 MB both ways."""
    payload = bytes(range(256)) * (5 * MiB // 256)
    piece = 16 * KiB
    conn = h11.Connection(h11.CLIENT)
    echoed = bytearray()

    async def next_event(stream: Any) -> Any:
        while (event := conn.next_event()) is h11.NEED_DATA:
            conn.receive_data(await stream.receive())
        return event

    with anyio.fail_after(20):
        async with await anyio.connect_tcp(HOST, _port(urls[server])) as stream:
            headers = [("host", "t"), ("transfer-encoding", "chunked"), ("content-type", "a/b")]
            await stream.send(
                conn.send(h11.Request(method="POST", target="/echo", headers=headers))
            )
            # Ping-pong: the server cannot be buffering the request body.
            for i in range(4):
                await stream.send(conn.send(h11.Data(data=payload[i * piece : (i + 1) * piece])))
                while len(echoed) < (i + 1) * piece:
                    event = await next_event(stream)
                    if isinstance(event, h11.Response):
                        assert event.status_code == 200
                        assert (b"transfer-encoding", b"chunked") in event.headers
                        assert (b"content-type", b"a/b") in event.headers
                    else:
                        echoed += event.data

            async def upload() -> None:
                for i in range(4 * piece, len(payload), 4 * piece):
                    await stream.send(conn.send(h11.Data(data=payload[i : i + 4 * piece])))
                await stream.send(conn.send(h11.EndOfMessage()))

            async with anyio.create_task_group() as tg:
                tg.start_soon(upload)  # while we read: neither side waits for the other's end
                while not isinstance(event := await next_event(stream), h11.EndOfMessage):
                    echoed += event.data
    assert len(echoed) == len(payload)
    assert echoed == payload


async def test_a_client_leaving_mid_stream_surfaces_to_the_handler(
    urls: dict[str, str], server: str, caplog: pytest.LogCaptureFixture
) -> None:
    with anyio.fail_after(5):
        async with await anyio.connect_tcp(HOST, _port(urls[server])) as stream:
            await stream.send(b"GET /forever HTTP/1.1\r\nHost: t\r\n\r\n")
            received = 0
            while received < 16 * KiB:
                received += len(await stream.receive())
    exc = await _reported("forever")  # what the handler's `await w.send()` raised
    assert isinstance(exc, OSError)
    if server != "tophat":
        assert isinstance(exc, ClientDisconnected)
    assert await _reported("closed") == "forever"  # and the body's generator was closed
    assert _errors(caplog) == []  # a client leaving is nobody's error


async def test_a_client_leaving_mid_upload_surfaces_to_the_handler(
    urls: dict[str, str], server: str, caplog: pytest.LogCaptureFixture
) -> None:
    with anyio.fail_after(5):
        async with await anyio.connect_tcp(HOST, _port(urls[server])) as stream:
            await stream.send(b"POST /read HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n")
            await stream.send(b"only the start")
            await anyio.sleep(0.05)  # the handler is waiting for the rest now
    exc = await _reported("read")
    if server == "tophat":
        # The native server still answers a half-closed client: the body is incomplete.
        assert isinstance(exc, Glitch) and exc.status == 400, exc
    else:
        # An ASGI server only says the client is gone.
        assert isinstance(exc, ClientDisconnected), exc
    assert _errors(caplog) == []


async def test_an_error_after_the_head_closes_the_connection(
    urls: dict[str, str], server: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The client gets the head and the first piece, then the connection ends unfinished."""
    data = b""
    with anyio.fail_after(5):
        async with await anyio.connect_tcp(HOST, _port(urls[server])) as stream:
            await stream.send(b"GET /late-error HTTP/1.1\r\nHost: t\r\n\r\n")
            with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
                while True:
                    data += await stream.receive()
    assert data.startswith(b"HTTP/1.1 200 ")
    assert b"first piece\n" in data
    assert not data.endswith(b"0\r\n\r\n")  # no last chunk: the client knows it is incomplete
    with pytest.raises(h11.RemoteProtocolError):
        parse_responses(data)
    # Logged once by tophat; uvicorn adds its own line for a response left unfinished.
    tophat_errors = [e for e in _errors(caplog) if e.startswith("tophat.error")]
    assert len(tophat_errors) == 1, tophat_errors
    assert "raised after its response started" in tophat_errors[0]


# -- limits, root_path, lifespan under real servers -------------------------------------------


async def test_max_body_size_is_a_413_on_every_server(caplog: pytest.LogCaptureFixture) -> None:
    opts = {"max_body_size": 1000}
    for kind in _kinds():
        async with running(kind, opts) as url:
            # Declared too large: refused before the endpoint runs.
            head = b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 2000\r\n\r\n"
            declared = await _closing_exchange(_port(url), head)
            assert (declared.status, declared.body) == (413, b"Content Too Large"), kind
            assert declared.headers.get("connection") == "close", kind
            # Chunked past the limit: the handler's read raises Glitch(413).
            chunks = b"".join(b"258\r\n" + b"x" * 600 + b"\r\n" for _ in range(3)) + b"0\r\n\r\n"
            head = b"POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            chunked = await _closing_exchange(_port(url), head + chunks)
            assert (chunked.status, chunked.body) == (413, b"Content Too Large"), kind
            assert chunked.headers.get("connection") == "close", kind
            # Within the limit: fine.
            ok = await fetch(url, "POST", "/upload", content=b"x" * 1000)
            assert ok.json()["size"] == 1000, kind
    assert [label for label, _ in REPORTS] == ["upload"] * len(_kinds())  # only the last ones
    assert _errors(caplog) == []


async def _closing_exchange(port: int, request: bytes) -> Any:
    """Send raw request bytes; read the one response up to the server's close.

    Reading to the close (rather than closing first) also proves the server closes. It also
    keeps clear of a hypercorn-on-trio race: a client closing while a request body is unread
    makes hypercorn's reader call ``send_eof`` while the app's last ``send`` is in flight, and
    trio raises BusyResourceError into the app (the client has its response by then).
    """
    data = b""
    with anyio.fail_after(5):
        async with await anyio.connect_tcp(HOST, port) as stream:
            await stream.send(request)
            with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
                while True:
                    data += await stream.receive()
    [resp] = parse_responses(data, ["POST"])
    return resp


async def test_root_path_moves_to_req_root_path(anyio_backend: object) -> None:
    """uvicorn puts root_path in front of path, hypercorn does not: the handler sees the same."""
    for kind in _kinds(ASGI_SERVERS):
        async with running(kind, root_path="/api") as url:
            got = (await fetch(url, "GET", "/json")).json()
            assert (got["path"], got["raw_path"], got["root_path"]) == ("/json", "/json", "/api")


async def test_lifespan_hooks_run_under_every_asgi_server(anyio_backend: object) -> None:
    for kind in _kinds(ASGI_SERVERS):
        calls: list[str] = []

        async def started(calls: list[str] = calls) -> None:
            calls.append("startup")

        def stopped(calls: list[str] = calls) -> None:
            calls.append("shutdown")

        app = make_app(on_startup=[started], on_shutdown=[stopped])
        server = (
            _uvicorn(app, kind.removeprefix("uvicorn-"))
            if kind.startswith("uvicorn")
            else _hypercorn(app)
        )
        async with server as port:
            assert calls == ["startup"], kind
            resp = await fetch(f"http://{HOST}:{port}", "GET", "/hello")
            assert resp.status_code == 200
        assert calls == ["startup", "shutdown"], kind


async def test_a_failed_startup_stops_the_asgi_server(
    anyio_backend: object, caplog: pytest.LogCaptureFixture
) -> None:
    async def no_database() -> None:
        raise RuntimeError("no database")

    app = make_app(on_startup=[no_database])
    if not _on_trio():
        import uvicorn

        config = uvicorn.Config(app, host=HOST, port=0, lifespan="on", log_config=None, ws="none")
        server = uvicorn.Server(config)
        with pytest.raises(SystemExit) as exited, anyio.fail_after(5):
            await server.serve()
        assert exited.value.code == 3 and not server.started  # uvicorn's STARTUP_FAILURE
        uvicorn_said = [r.getMessage() for r in caplog.records if r.name == "uvicorn.error"]
        assert "RuntimeError: no database" in uvicorn_said
    with pytest.raises(BaseException) as failed, anyio.fail_after(5):
        async with _hypercorn(app):
            pass  # pragma: no cover - never serves
    assert "no database" in " ".join(_messages(failed.value))
    tophat_said = [r.getMessage() for r in caplog.records if r.name == "tophat.error"]
    assert tophat_said[0].endswith("no_database failed")


# -- gunicorn with uvicorn workers ------------------------------------------------------------


def _worker_class() -> str:
    import importlib.util

    if importlib.util.find_spec("uvicorn_worker") is not None:
        return "uvicorn_worker.UvicornWorker"  # the maintained successor of uvicorn.workers
    if importlib.util.find_spec("uvicorn.workers") is None:  # pragma: no cover
        pytest.skip("neither uvicorn-worker nor uvicorn.workers is installed")
    return "uvicorn.workers.UvicornWorker"


@pytest.mark.slow
def test_gunicorn_with_a_uvicorn_worker_serves_the_app() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    port = sock.getsockname()[1]
    cmd = [
        sys.executable, "-m", "gunicorn",
        "-k", _worker_class(), "-w", "1", "-b", f"fd://{sock.fileno()}",
        "--graceful-timeout", "2", "--log-level", "warning",
        "tests.asgi_app:app",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONWARNINGS": "ignore::DeprecationWarning"}  # uvicorn.workers warns
    proc = subprocess.Popen(
        cmd, cwd=ROOT, pass_fds=[sock.fileno()], stderr=subprocess.PIPE, env=env
    )
    sock.close()
    try:
        url = f"http://{HOST}:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                hello = httpx.get(url + "/hello", timeout=5)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        assert (hello.status_code, hello.text) == (200, "Hello, world!")
        assert httpx.get(url + "/lifespan", timeout=5).json() == ["startup"]
        stream = httpx.get(url + "/stream", timeout=5)
        assert stream.headers["transfer-encoding"] == "chunked"
        assert stream.text == "".join(f"piece {i}\n" for i in range(5))
        glitch = httpx.get(url + "/glitch", timeout=5)
        assert (glitch.status_code, glitch.text, glitch.headers["x-before"]) == (
            403,
            "no entry",
            "kept",
        )
        upload = httpx.post(url + "/upload", content=b"x" * MiB, timeout=5)
        assert upload.json()["size"] == MiB
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, stderr = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()
            _, stderr = proc.communicate()
    assert proc.returncode == 0, stderr.decode(errors="replace")


# -- in memory: the exact messages ------------------------------------------------------------


def http_scope(
    method: str = "GET",
    path: str = "/",
    *,
    query: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    raw_path: bytes | None = None,
    root_path: str = "",
    http_version: str = "1.1",
) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": http_version,
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": raw_path if raw_path is not None else path.encode(),
        "query_string": query,
        "root_path": root_path,
        "headers": headers or [(b"host", b"testserver")],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 9999),
    }


class Peer:
    """The ASGI server side: queued messages for receive(), then a wait for disconnect()."""

    def __init__(self, *body: bytes, more: bool = False) -> None:
        self.inbox: list[Message] = [
            {"type": "http.request", "body": piece, "more_body": True} for piece in body
        ]
        if not more:
            self.inbox.append({"type": "http.request", "body": b"", "more_body": False})
        self.sent: list[Message] = []
        self.receives = 0
        self._gone = anyio.Event()
        self._arrived = anyio.Event()

    def push(self, message: Message) -> None:
        self.inbox.append(message)
        self._arrived.set()

    def disconnect(self) -> None:
        self._gone.set()
        self._arrived.set()

    async def receive(self) -> Message:
        while not self.inbox:
            if self._gone.is_set():
                return {"type": "http.disconnect"}
            self._arrived = anyio.Event()
            await self._arrived.wait()
        self.receives += 1
        return self.inbox.pop(0)

    async def send(self, message: Message) -> None:
        self.sent.append(message)
        await anyio.sleep(0)  # a checkpoint, as a real server's send has


async def call(app: Any, scope: dict[str, Any], peer: Peer) -> list[Message]:
    with anyio.fail_after(5):
        await app(scope, peer.receive, peer.send)
    return peer.sent


async def test_the_scope_becomes_the_request() -> None:
    seen: list[Request] = []

    async def look(req: Request, w: ResponseWriter) -> ResponseWritten:
        seen.append(req)
        return await w.send()

    scope = http_scope(
        "PATCH",
        "/a b/café",
        raw_path=b"/a%20b/caf%C3%A9",
        query=b"x=1&x=2",
        headers=[(b"host", b"h"), (b"X-Thing", b"1"), (b"x-thing", b"\xe9")],
        http_version="1.0",
    )
    await call(to_asgi(look), scope, Peer())
    [req] = seen
    assert (req.method, req.target, req.version) == ("PATCH", "/a%20b/caf%C3%A9?x=1&x=2", "1.0")
    assert (req.path, req.raw_path, req.query.get_all("x")) == (
        "/a b/café",
        "/a%20b/caf%C3%A9",
        ["1", "2"],
    )
    assert req.headers.get_all("x-thing") == ["1", "é"]  # names lower-cased, values Latin-1
    assert list(req.headers)[1] == ("x-thing", "1")
    assert (req.client, req.server, req.scheme, req.host) == (
        ("127.0.0.1", 40000),
        ("127.0.0.1", 9999),
        "http",
        "h",
    )
    assert not req.stopping.is_set()


async def test_a_path_without_raw_path_is_percent_encoded() -> None:
    seen: list[Request] = []

    async def look(req: Request, w: ResponseWriter) -> ResponseWritten:
        seen.append(req)
        return await w.send()

    scope = http_scope("GET", "/a b/café;x=1@:")
    scope["raw_path"] = None  # allowed by the spec
    await call(to_asgi(look), scope, Peer())
    assert (seen[0].raw_path, seen[0].path) == ("/a%20b/caf%C3%A9;x=1@:", "/a b/café;x=1@:")


@pytest.mark.parametrize(
    ("path", "raw_path", "root_path", "expected"),
    [
        ("/api/items", b"/api/items", "/api", ("/items", "/api")),  # uvicorn's convention
        ("/items", b"/items", "/api", ("/items", "/api")),  # hypercorn's
        ("/api", b"/api", "/api", ("/", "/api")),
        ("/apix", b"/apix", "/api", ("/apix", "/api")),  # not a path-segment prefix
    ],
)
async def test_root_path_is_taken_off_the_path(
    path: str, raw_path: bytes, root_path: str, expected: tuple[str, str]
) -> None:
    seen: list[Request] = []

    async def look(req: Request, w: ResponseWriter) -> ResponseWritten:
        seen.append(req)
        return await w.send()

    scope = http_scope("GET", path, raw_path=raw_path, root_path=root_path)
    await call(to_asgi(look), scope, Peer())
    assert (seen[0].path, seen[0].root_path) == expected


async def hello(req: Request, w: ResponseWriter) -> ResponseWritten:
    w.set_text("Hello, world!")
    return await w.send()


async def test_a_fixed_body_is_one_message_with_its_length() -> None:
    sent = await call(to_asgi(hello), http_scope(), Peer())
    assert sent == [
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", b"13"),
            ],
        },
        {"type": "http.response.body", "body": b"Hello, world!", "more_body": False},
    ]


async def test_head_gets_the_length_but_no_body() -> None:
    sent = await call(to_asgi(hello), http_scope("HEAD"), Peer())
    assert (b"content-length", b"13") in sent[0]["headers"]
    assert sent[1:] == [{"type": "http.response.body", "body": b"", "more_body": False}]


@pytest.mark.parametrize("status", [204, 304])
async def test_204_and_304_have_no_length_and_no_body(status: int) -> None:
    async def nothing(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.set_status(status)
        w.set_body(b"dropped")
        return await w.send()

    sent = await call(to_asgi(nothing), http_scope(), Peer())
    assert sent[0]["headers"] == []
    assert sent[1:] == [{"type": "http.response.body", "body": b"", "more_body": False}]


async def pieces(*items: bytes) -> AsyncIterator[bytes]:
    for item in items:
        yield item


async def test_a_streamed_body_is_one_message_per_piece() -> None:
    async def stream(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.set_body(pieces(b"a", b"", b"bc"))  # empty pieces are skipped
        return await w.send()

    sent = await call(to_asgi(stream), http_scope(), Peer())
    assert sent == [
        {"type": "http.response.start", "status": 200, "headers": []},  # the server frames it
        {"type": "http.response.body", "body": b"a", "more_body": True},
        {"type": "http.response.body", "body": b"bc", "more_body": True},
        {"type": "http.response.body", "body": b"", "more_body": False},
    ]


async def test_a_stream_longer_than_declared_is_cut_off_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def liar(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.set_body(pieces(b"abc", b"def"), length=4)
        return await w.send()

    sent = await call(to_asgi(liar), http_scope(), Peer())
    assert (b"content-length", b"4") in sent[0]["headers"]
    # The first piece went out, the second would pass the length: the response stays
    # unfinished, which makes the server close the connection.
    assert [m.get("body") for m in sent[1:]] == [b"abc"]
    assert [m.get("more_body") for m in sent[1:]] == [True]
    assert len(_errors(caplog)) == 1 and "declared length" in _errors(caplog)[0]


async def test_date_is_added_only_when_asked() -> None:
    sent = await call(to_asgi(hello, date_header=True), http_scope(), Peer())
    [date] = [v for n, v in sent[0]["headers"] if n == b"date"]
    assert date.endswith(b" GMT")

    async def dated(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.insert_header("Date", "Thu, 01 Jan 1970 00:00:00 GMT")
        return await w.send()

    sent = await call(to_asgi(dated, date_header=True), http_scope(), Peer())
    assert [v for n, v in sent[0]["headers"] if n == b"date"] == [b"Thu, 01 Jan 1970 00:00:00 GMT"]


async def test_response_written_reports_what_the_adapter_sent() -> None:
    done: list[ResponseWritten] = []

    async def report(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.insert_header("X-Mixed-Case", "yes")
        w.set_body(b"12345")
        done.append(await w.send())
        return done[0]

    sent = await call(to_asgi(report), http_scope(), Peer())
    assert (done[0].status, done[0].bytes_written) == (200, 5)
    assert list(done[0].headers) == [("x-mixed-case", "yes"), ("content-length", "5")]
    assert sent[0]["headers"] == [(b"x-mixed-case", b"yes"), (b"content-length", b"5")]


# -- in memory: errors answered as tophat.accept answers them ---------------------------------

PARITY = {
    "glitch": "/glitch",
    "500": "/boom",
    "no send": "/nosend",
    "early stream error": "/early-error",
    "framing": "/framing",
    "204": "/empty",
    "304": "/notmod",
    "404": "/missing",
    "json": "/json?q=1",
}


@pytest.mark.parametrize("case", PARITY)
async def test_the_same_answer_as_tophat_accept(case: str) -> None:
    path = PARITY[case]
    native = await AsyncTestClient(router).get(path, headers={"host": "testserver"})
    raw_path, _, query = path.partition("?")
    sent = await call(make_app(), http_scope("GET", raw_path, query=query.encode()), Peer())
    body = b"".join(m.get("body", b"") for m in sent[1:])
    ours = (
        sent[0]["status"],
        sorted((n.decode(), v.decode()) for n, v in sent[0]["headers"]),
        body,
    )
    # The native server adds Date, and frames and closes itself; under ASGI the server does.
    skip = {"date", "transfer-encoding", "connection"}
    theirs = (
        native.status,
        sorted((n.lower(), v) for n, v in native.headers if n.lower() not in skip),
        native.body,
    )
    assert ours == theirs


async def test_an_exception_is_logged_once_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    await call(make_app(), http_scope("GET", "/boom"), Peer())
    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.name == "tophat.error" and record.exc_info is not None
    assert "unhandled error in endpoint" in record.getMessage()


async def test_an_oserror_before_the_response_is_a_500_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def db_down(req: Request, w: ResponseWriter) -> ResponseWritten:
        raise ConnectionRefusedError("database unreachable")

    sent = await call(to_asgi(db_down), http_scope(), Peer())
    assert (sent[0]["status"], sent[1]["body"]) == (500, b"Internal Server Error")
    assert len(_errors(caplog)) == 1


# -- in memory: the request body --------------------------------------------------------------


async def test_the_body_is_read_as_it_arrives() -> None:
    got: list[bytes] = []

    async def consume(req: Request, w: ResponseWriter) -> ResponseWritten:
        async for piece in req.stream():
            got.append(piece)
        w.set_text(str(req.trailers))
        return await w.send()

    sent = await call(to_asgi(consume), http_scope("POST"), Peer(b"ab", b"", b"c"))
    assert got == [b"ab", b"c"]
    assert sent[1]["body"] == b"None"  # no request trailers under ASGI


async def test_a_declared_length_over_the_limit_is_refused_before_the_endpoint() -> None:
    called: list[bool] = []

    async def never(req: Request, w: ResponseWriter) -> ResponseWritten:
        called.append(True)
        return await w.send()

    app = to_asgi(never, opts=ServerOpts(max_body_size=10))
    scope = http_scope("POST", headers=[(b"content-length", b"11")])
    sent = await call(app, scope, Peer(b"x" * 11))
    assert called == []
    assert sent == [
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", b"17"),
                (b"connection", b"close"),
            ],
        },
        {"type": "http.response.body", "body": b"Content Too Large", "more_body": False},
    ]


async def test_a_declared_length_that_is_not_ascii_digits_does_not_crash_the_check() -> None:
    # A lenient ASGI server may pass "Content-Length: ²" through: the early check skips it (the
    # body's own size is still limited) instead of failing on int("²").
    app = to_asgi(upload, opts=ServerOpts(max_body_size=10))
    scope = http_scope("POST", headers=[(b"content-length", "²".encode("latin-1"))])
    sent = await call(app, scope, Peer(b"x" * 6, b"x" * 6))
    assert (sent[0]["status"], sent[1]["body"]) == (413, b"Content Too Large")


async def test_a_body_growing_over_the_limit_is_a_413_glitch() -> None:
    app = to_asgi(upload, opts=ServerOpts(max_body_size=10))
    sent = await call(app, http_scope("POST"), Peer(b"x" * 6, b"x" * 6))
    assert (sent[0]["status"], sent[1]["body"]) == (413, b"Content Too Large")
    assert (b"connection", b"close") in sent[0]["headers"]  # the rest stays unread


async def test_a_disconnect_while_reading_raises_client_disconnected(
    caplog: pytest.LogCaptureFixture,
) -> None:
    raised: list[BaseException] = []

    async def read(req: Request, w: ResponseWriter) -> ResponseWritten:
        try:
            await req.body()
        except OSError as exc:
            raised.append(exc)
            raise
        return await w.send()  # pragma: no cover

    peer = Peer(b"start", more=True)
    peer.disconnect()
    sent = await call(to_asgi(read), http_scope("POST"), peer)
    assert isinstance(raised[0], ClientDisconnected)
    assert isinstance(raised[0], StreamClosed) and isinstance(raised[0], ConnectionError)
    assert sent == []  # nobody to answer
    assert _errors(caplog) == []


async def test_a_disconnect_while_streaming_surfaces_at_the_next_send() -> None:
    raised: list[BaseException] = []
    closed: list[bool] = []

    async def forever() -> AsyncIterator[bytes]:
        try:
            while True:
                yield b"tick"
                await anyio.sleep(0)
        finally:
            closed.append(True)

    async def ticker(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.set_body(forever())
        try:
            return await w.send()
        except OSError as exc:
            raised.append(exc)
            raise

    peer = Peer()
    async with anyio.create_task_group() as tg:
        tg.start_soon(call, to_asgi(ticker), http_scope(), peer)
        with anyio.fail_after(5):
            while len(peer.sent) < 5:
                await anyio.sleep(0)
        peer.disconnect()
    assert isinstance(raised[0], ClientDisconnected) and closed == [True]
    assert peer.sent[-1]["more_body"] is True  # never finished: nobody is listening


async def test_the_watcher_reads_ahead_at_most_max_drain_size() -> None:
    """A handler streaming its body back keeps the backpressure: the watcher reads ahead of it
    (to see a disconnect behind the body) only up to max_drain_size bytes."""
    peer = Peer(*[bytes([65 + i]) * 100 for i in range(10)])
    receives_at_send: list[int] = []
    send = peer.send

    async def counting_send(message: Message) -> None:
        if message.get("more_body"):
            receives_at_send.append(peer.receives)
        await send(message)

    peer.send = counting_send  # type: ignore[method-assign]

    async def echo(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.set_body(req.stream())
        return await w.send()

    sent = await call(to_asgi(echo, opts=ServerOpts(max_drain_size=250)), http_scope("POST"), peer)
    assert b"".join(m["body"] for m in sent[1:]) == b"".join(
        bytes([65 + i]) * 100 for i in range(10)
    )
    for i, receives in enumerate(receives_at_send):
        # piece i, plus at most 3 read ahead (reading stops once 250 bytes or more wait)
        assert receives <= i + 4, receives_at_send
    assert max(r - i for i, r in enumerate(receives_at_send)) > 2  # it did read ahead


async def test_a_send_that_raises_oserror_surfaces_to_the_handler(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """ASGI spec 2.4: send() raises an OSError once the client is gone."""
    raised: list[BaseException] = []
    peer = Peer()

    async def broken_send(message: Message) -> None:
        if message["type"] == "http.response.body":
            raise ConnectionResetError("gone")
        peer.sent.append(message)

    async def stream(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.set_body(pieces(b"a", b"b"))
        try:
            return await w.send()
        except OSError as exc:
            raised.append(exc)
            raise

    with anyio.fail_after(5):
        await to_asgi(stream)(http_scope(), peer.receive, broken_send)
    assert isinstance(raised[0], ConnectionResetError)
    assert _errors(caplog) == []


# -- in memory: lifespan and other scopes -----------------------------------------------------


class LifespanPeer:
    def __init__(self, *messages: str) -> None:
        self.inbox = [{"type": m} for m in messages]
        self.sent: list[Message] = []

    async def receive(self) -> Message:
        return self.inbox.pop(0)

    async def send(self, message: Message) -> None:
        self.sent.append(message)


async def test_lifespan_runs_hooks_in_order() -> None:
    calls: list[str] = []

    async def a() -> None:
        calls.append("a")

    def b() -> None:
        calls.append("b")

    async def c() -> None:
        calls.append("c")

    app = to_asgi(hello, on_startup=[a, b], on_shutdown=[c])
    peer = LifespanPeer("lifespan.startup", "lifespan.shutdown")
    with anyio.fail_after(5):
        await app({"type": "lifespan", "asgi": {"version": "3.0"}}, peer.receive, peer.send)
    assert calls == ["a", "b", "c"]
    assert peer.sent == [
        {"type": "lifespan.startup.complete"},
        {"type": "lifespan.shutdown.complete"},
    ]


async def test_lifespan_without_hooks_completes() -> None:
    peer = LifespanPeer("lifespan.startup", "lifespan.shutdown")
    with anyio.fail_after(5):
        await to_asgi(hello)({"type": "lifespan"}, peer.receive, peer.send)
    assert [m["type"] for m in peer.sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]


async def test_lifespan_failures_are_reported_with_their_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[str] = []

    async def fail() -> None:
        raise RuntimeError("no database")

    def never() -> None:  # pragma: no cover - startup stops at the first failure
        calls.append("never")

    peer = LifespanPeer("lifespan.startup")
    with anyio.fail_after(5):
        await to_asgi(hello, on_startup=[fail, never])(
            {"type": "lifespan"}, peer.receive, peer.send
        )
    assert peer.sent == [
        {"type": "lifespan.startup.failed", "message": "RuntimeError: no database"}
    ]

    def last() -> None:
        calls.append("last")

    peer = LifespanPeer("lifespan.startup", "lifespan.shutdown")
    app = to_asgi(hello, on_shutdown=[fail, last])
    with anyio.fail_after(5):
        await app({"type": "lifespan"}, peer.receive, peer.send)
    assert peer.sent[1] == {
        "type": "lifespan.shutdown.failed",
        "message": "RuntimeError: no database",
    }
    assert calls == ["last"]  # every shutdown hook runs
    assert len(_errors(caplog)) == 2  # each failure logged, with its traceback


async def test_a_websocket_is_refused_cleanly() -> None:
    peer = LifespanPeer("websocket.connect")
    with anyio.fail_after(5):
        await to_asgi(hello)({"type": "websocket"}, peer.receive, peer.send)
    assert peer.sent == [{"type": "websocket.close", "code": 1000}]


async def test_an_unknown_scope_type_is_an_error() -> None:
    peer = LifespanPeer()
    with pytest.raises(ValueError, match="unsupported ASGI scope type 'telepathy'"):
        await to_asgi(hello)({"type": "telepathy"}, peer.receive, peer.send)


def test_to_asgi_refuses_what_cannot_be_called() -> None:
    with pytest.raises(TypeError, match="endpoint must be an async callable"):
        to_asgi("app")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="lifespan hooks must be callables"):
        to_asgi(hello, on_startup=["connect"])  # type: ignore[list-item]


async def test_a_disconnect_while_echoing_surfaces_from_the_body_read() -> None:
    """The watcher sees the disconnect the handler's body stream was waiting for."""
    raised: list[BaseException] = []

    async def echo(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.set_body(req.stream())
        try:
            return await w.send()
        except OSError as exc:
            raised.append(exc)
            raise

    peer = Peer(b"first", more=True)
    async with anyio.create_task_group() as tg:
        tg.start_soon(call, to_asgi(echo), http_scope("POST"), peer)
        with anyio.fail_after(5):
            while len(peer.sent) < 2:
                await anyio.sleep(0)
        peer.disconnect()
    assert [m.get("body") for m in peer.sent[1:]] == [b"first"]
    assert isinstance(raised[0], ClientDisconnected)
