"""tophat.client: exact wire bytes over an in-memory stream, then real sockets on every runtime.

In-memory tests script the server side by hand (bytes in, bytes out), or run ``tophat.accept``
on the other end. Socket tests serve on 127.0.0.1 with tophat's asyncio server (asyncio and
uvloop) or ``trio.serve_tcp`` + ``accept`` (trio); misbehaving servers are plain blocking
sockets in a thread, so they work under every runtime. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import h11
import httpx
import pytest
import sniffio

import tophat
from tophat import Request, ResponseWriter, ResponseWritten, ServerOpts, StreamClosed
from tophat.client import (
    Client,
    ClientConnection,
    ClientConnectionError,
    ClientError,
    ClientProtocolError,
    ClientTimeout,
    Timeout,
    connect,
)
from tophat.router import Router
from tophat.testing import MemoryStream, memory_stream_pair

HOST = "127.0.0.1"
BOUND = 5.0  # no test waits longer than this for anything


# -- endpoints ------------------------------------------------------------------------------------


async def hello(req: Request, w: ResponseWriter) -> ResponseWritten:
    w.set_text("hello")
    return await w.send()


async def echo(req: Request, w: ResponseWriter) -> ResponseWritten:
    body = await req.body()
    w.insert_header("x-method", req.method)
    w.insert_header("x-framing", "chunked" if "transfer-encoding" in req.headers else "length")
    w.set_body(body)
    return await w.send()


async def client_port(req: Request, w: ResponseWriter) -> ResponseWritten:
    assert req.client is not None
    w.set_text(str(req.client[1]))
    return await w.send()


async def closing(req: Request, w: ResponseWriter) -> ResponseWritten:
    assert req.client is not None
    w.insert_header("connection", "close")
    w.set_text(str(req.client[1]))
    return await w.send()


async def chunks(req: Request, w: ResponseWriter) -> ResponseWritten:
    async def pieces() -> AsyncIterator[bytes]:
        for i in range(5):
            yield f"piece {i};".encode()
            await anyio.sleep(0.01)  # separate writes: the client sees them arrive one by one

    w.set_body(pieces())
    return await w.send()


async def no_content(req: Request, w: ResponseWriter) -> ResponseWritten:
    w.set_status(204)
    return await w.send()


async def as_json(req: Request, w: ResponseWriter) -> ResponseWritten:
    w.set_json({"got": await req.json(), "ok": True})
    return await w.send()


async def latin(req: Request, w: ResponseWriter) -> ResponseWritten:
    w.set_body("café".encode("latin-1"))
    w.insert_header("content-type", "text/plain; charset=iso-8859-1")
    return await w.send()


def make_app() -> Router:
    app = Router()
    app.get("/hello", hello)
    app.at("HEAD", "/hello", hello)
    app.post("/echo", echo)
    app.put("/echo", echo)
    app.get("/port", client_port)
    app.get("/close", closing)
    app.get("/chunks", chunks)
    app.get("/empty", no_content)
    app.post("/json", as_json)
    app.get("/latin", latin)
    return app


# -- servers --------------------------------------------------------------------------------------


class _TrioServerStream:
    """trio's SocketStream for ``accept``: its broken-connection errors as ``StreamClosed``."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        import trio

        try:
            data: bytes = await self._stream.receive_some(max_bytes)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise StreamClosed(str(exc)) from exc
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        import trio

        try:
            await self._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise StreamClosed(str(exc)) from exc

    async def aclose(self) -> None:
        await self._stream.aclose()


@contextlib.asynccontextmanager
async def serving(endpoint: tophat.Endpoint | None = None, **opts: Any) -> AsyncIterator[int]:
    """Serve ``endpoint`` (default: the test app) on 127.0.0.1; yield the port."""
    endpoint = endpoint or make_app()
    server_opts = ServerOpts(**opts)
    if sniffio.current_async_library() == "asyncio":
        server = await tophat.start_server(endpoint, HOST, 0, opts=server_opts)
        try:
            yield server.port
        finally:
            with anyio.fail_after(BOUND):
                await server.shutdown(0.5)
        return
    import trio

    async def handle(stream: Any) -> None:
        peer = stream.socket.getpeername()
        await tophat.accept(_TrioServerStream(stream), endpoint, server_opts, client=peer[:2])

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, handle, 0, host=HOST))
        try:
            yield listeners[0].socket.getsockname()[1]
        finally:
            nursery.cancel_scope.cancel()


class RawServer:
    """A blocking-socket server in a thread; ``handle(conn)`` runs once per connection.

    Runtime-independent, for servers that misbehave on purpose. ``connections`` counts accepts;
    ``handle`` gets the event set when the test ends, to stop waiting.
    """

    def __init__(
        self, handle: Callable[[socket.socket, threading.Event], None], host: str = HOST
    ) -> None:
        self._handle = handle
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.create_server((host, 0), family=family)
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self.stop = threading.Event()
        self.connections = 0
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> RawServer:
        self._threads.append(threading.Thread(target=self._accept_loop, daemon=True))
        self._threads[0].start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in list(self._threads):
            thread.join(BOUND)
        self._listener.close()

    def _accept_loop(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(BOUND)
        with conn, contextlib.suppress(OSError):
            self._handle(conn, self.stop)


def read_head(conn: socket.socket) -> bytes:
    """Read up to the end of a request head (the tests' requests have no body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = conn.recv(65536)
        if not piece:
            break
        data += piece
    return data


OK_HELLO = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"


# -- in-memory: exact wire bytes, scripted server ------------------------------------------------


async def read_request(server: MemoryStream) -> bytes:
    """Everything the client sent, up to the end of one request (head, and body if framed)."""
    conn = h11.Connection(h11.SERVER)
    data = b""
    with anyio.fail_after(BOUND):
        while True:
            event = conn.next_event()
            if isinstance(event, h11.EndOfMessage):
                return data
            if isinstance(event, h11.ConnectionClosed):  # (else: a busy loop, no await)
                raise AssertionError(f"the client closed after {data!r}")
            if event is h11.NEED_DATA:
                piece = await server.receive_some()
                data += piece
                conn.receive_data(piece)


async def exchange(
    request: Callable[[ClientConnection], Any], *responses: bytes
) -> tuple[list[bytes], Any]:
    """Run ``request(conn)`` against a scripted server that answers each request with the next
    of ``responses``; return the raw requests and what ``request`` returned."""
    client, server = memory_stream_pair()
    conn = ClientConnection(client, host="t")
    seen: list[bytes] = []
    result: Any = None

    async def script() -> None:
        for response in responses:
            seen.append(await read_request(server))
            await server.send_all(response)

    async def run() -> None:
        nonlocal result
        result = await request(conn)

    with anyio.fail_after(BOUND):
        async with anyio.create_task_group() as tg:
            tg.start_soon(script)
            tg.start_soon(run)
    return seen, result


async def test_fixed_body_request_is_one_exact_write() -> None:
    async def go(conn: ClientConnection) -> Any:
        resp = await conn.request("POST", "/echo", body=b"hi", headers={"X-A": "1"})
        return resp, await resp.body()

    seen, (resp, body) = await exchange(go, OK_HELLO)
    assert seen == [b"POST /echo HTTP/1.1\r\nHost: t\r\nX-A: 1\r\nContent-Length: 2\r\n\r\nhi"]
    assert (resp.status, resp.reason, resp.http_version, body) == (200, "OK", "1.1", b"hello")
    assert resp.headers.get("Content-Length") == "5"


async def test_get_sends_no_content_length_but_empty_post_sends_zero() -> None:
    async def go(conn: ClientConnection) -> None:
        await (await conn.request("GET", "/")).body()
        await (await conn.request("POST", "/")).body()

    seen, _ = await exchange(go, OK_HELLO, OK_HELLO)
    assert seen == [
        b"GET / HTTP/1.1\r\nHost: t\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n",
    ]


async def test_async_iterable_body_is_sent_chunked() -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"abc"
        yield b""  # an empty piece must not end the body early
        yield b"defgh"

    async def go(conn: ClientConnection) -> Any:
        return await (await conn.request("PUT", "/up", body=body())).body()

    seen, _ = await exchange(go, OK_HELLO)
    assert seen == [
        b"PUT /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n5\r\ndefgh\r\n0\r\n\r\n"
    ]


async def test_async_iterable_with_declared_length_is_not_chunked() -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"ab"
        yield b"c"

    async def go(conn: ClientConnection) -> Any:
        resp = await conn.request("POST", "/", body=body(), headers={"content-length": "3"})
        return await resp.body()

    seen, _ = await exchange(go, OK_HELLO)
    assert seen == [b"POST / HTTP/1.1\r\nHost: t\r\ncontent-length: 3\r\n\r\nabc"]


async def test_chunked_response_streams_and_keeps_trailers() -> None:
    response = (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-sum\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\nx-sum: 5\r\n\r\n"
    )

    async def go(conn: ClientConnection) -> Any:
        resp = await conn.request("GET", "/")
        pieces = [piece async for piece in resp.stream()]
        return resp, pieces, conn.reusable

    _, (resp, pieces, reusable) = await exchange(go, response)
    assert b"".join(pieces) == b"abcde"
    assert resp.trailers is not None and resp.trailers.get("X-Sum") == "5"
    assert reusable


async def test_interim_100_continue_is_skipped() -> None:
    response = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n"

    async def go(conn: ClientConnection) -> Any:
        return await conn.request("POST", "/", body=b"x", headers={"expect": "100-continue"})

    _, resp = await exchange(go, response)
    assert (resp.status, resp.informational, await resp.body()) == (201, [100], b"")


async def test_head_and_204_responses_end_at_the_head() -> None:
    head = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"  # the length of the GET body
    empty = b"HTTP/1.1 204 No Content\r\n\r\n"

    async def go(conn: ClientConnection) -> Any:
        first = await conn.request("HEAD", "/")
        assert conn.reusable  # done without reading: nothing more comes for a HEAD
        second = await conn.request("DELETE", "/")
        assert conn.reusable
        return first, second

    _, (first, second) = await exchange(go, head, empty)
    assert (first.status, first.headers["content-length"], await first.body()) == (200, "5", b"")
    assert (second.status, await second.body()) == (204, b"")


async def test_a_new_request_waits_for_the_previous_body() -> None:
    client, _server = memory_stream_pair()
    conn = ClientConnection(client, host="t")
    await _server.send_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhello")
    resp = await conn.request("GET", "/")
    with pytest.raises(ClientError, match="previous response"):
        await conn.request("GET", "/again")
    await resp.aclose()  # half the body is still to come: the connection cannot be reused
    assert not conn.reusable
    with pytest.raises(ClientConnectionError, match="cannot be reused"):
        await conn.request("GET", "/again")


async def test_closing_a_response_whose_rest_is_buffered_keeps_the_connection() -> None:
    async def go(conn: ClientConnection) -> Any:
        resp = await conn.request("GET", "/")
        await resp.aclose()
        return conn.reusable

    _, reusable = await exchange(go, OK_HELLO)
    assert reusable


async def test_connection_close_response_ends_the_connection() -> None:
    response = b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok"

    async def go(conn: ClientConnection) -> Any:
        assert await (await conn.request("GET", "/")).body() == b"ok"
        with pytest.raises(ClientConnectionError, match="ended the connection"):
            await conn.request("GET", "/")

    await exchange(go, response)


async def test_body_delimited_by_close_is_read_to_the_end() -> None:
    client, server = memory_stream_pair()
    conn = ClientConnection(client, host="t")
    await server.send_all(b"HTTP/1.1 200 OK\r\n\r\nall of ")
    await server.send_all(b"this")
    server.send_eof()
    resp = await conn.request("GET", "/")
    assert await resp.body() == b"all of this"
    assert not conn.reusable


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 200 OK\r\ncontent-length: nope\r\n\r\n",
        b"NOT HTTP AT ALL\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort",  # then end of input
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
    ],
)
async def test_malformed_response_is_a_protocol_error(reply: bytes) -> None:
    client, server = memory_stream_pair()
    conn = ClientConnection(client, host="t")
    await server.send_all(reply)
    server.send_eof()
    with pytest.raises(ClientProtocolError):
        resp = await conn.request("GET", "/")
        await resp.body()
    assert not conn.reusable


async def test_server_closing_without_a_response_is_a_connection_error() -> None:
    client, server = memory_stream_pair()
    server.send_eof()
    with pytest.raises(ClientConnectionError, match="without responding"):
        await ClientConnection(client, host="t").request("GET", "/")


async def test_a_request_needs_a_host() -> None:
    client, _ = memory_stream_pair()
    with pytest.raises(ClientError, match="no Host"):
        await ClientConnection(client).request("GET", "/")
    resp_conn = ClientConnection(client)
    with pytest.raises(tophat.HeaderError):
        await resp_conn.request("GET", "/", host="bad\r\nhost")


async def test_text_uses_the_charset_and_json_parses() -> None:
    client, server = memory_stream_pair()
    conn = ClientConnection(client, host="t")
    await server.send_all(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=latin-1\r\n"
        b"content-length: 4\r\n\r\ncaf\xe9"
    )
    resp = await conn.request("GET", "/")
    with pytest.raises(ClientError, match="not read yet"):
        resp.text  # noqa: B018 - the property raises
    await resp.body()
    assert resp.text == "café"
    assert [piece async for piece in resp.stream()] == [b"caf\xe9"]  # kept: read again
    # (Sent after the first response was read: bytes after a response are never the next.)
    await server.send_all(b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\n[1,true]")
    resp = await conn.request("GET", "/")
    assert [piece async for piece in resp.stream()] == [b"[1,true]"]
    with pytest.raises(ClientError, match="already streamed"):
        await resp.body()


async def test_text_falls_back_to_utf8_for_an_unknown_charset() -> None:
    # As Request.text(): a charset Python does not know is no LookupError, but UTF-8.
    client, server = memory_stream_pair()
    conn = ClientConnection(client, host="t")
    await server.send_all(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=bogus\r\n"
        b"content-length: 5\r\n\r\ncaf\xc3\xa9"
    )
    resp = await conn.request("GET", "/")
    await resp.body()
    assert resp.text == "café"


class TimingOut:
    """A stream from another adapter: it signals its timeout with tophat.StreamTimeout."""

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        raise tophat.StreamTimeout("head")

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        pass

    async def aclose(self) -> None:
        pass


async def test_a_stream_timeout_from_any_adapter_is_a_client_timeout() -> None:
    conn = ClientConnection(TimingOut(), host="t")
    with pytest.raises(ClientTimeout, match="read timed out") as info:
        await conn.request("GET", "/")
    assert info.value.phase == "read"
    assert not conn.reusable


async def test_concurrent_requests_on_one_connection_are_refused() -> None:
    client, server = memory_stream_pair()
    conn = ClientConnection(client, host="t")
    gate = anyio.Event()

    async def slow() -> AsyncIterator[bytes]:
        await gate.wait()
        yield b"x"

    with anyio.fail_after(BOUND):
        async with anyio.create_task_group() as tg:
            tg.start_soon(functools.partial(conn.request, "POST", "/", body=slow()))
            await anyio.sleep(0.01)
            with pytest.raises(ClientError, match="another request"):
                await conn.request("GET", "/")
            gate.set()
            await server.send_all(OK_HELLO)
    assert (await read_request(server)).endswith(b"1\r\nx\r\n0\r\n\r\n")


async def test_keep_alive_against_accept_in_memory() -> None:
    """The client and tophat's own connection handler, over one in-memory stream."""
    client, server = memory_stream_pair()
    conn = ClientConnection(client, host="t")
    with anyio.fail_after(BOUND):
        async with anyio.create_task_group() as tg:
            tg.start_soon(tophat.accept, server, make_app())
            bodies = []
            for i in range(3):
                resp = await conn.request("POST", "/echo", body=f"n{i}".encode())
                bodies.append(await resp.body())
            await conn.aclose()  # accept() sees end of input and returns
    assert bodies == [b"n0", b"n1", b"n2"]


# -- real sockets, every runtime ------------------------------------------------------------------


async def test_get_and_post_fixed_bodies() -> None:
    async with serving() as port, Client(f"http://{HOST}:{port}", timeout=BOUND) as c:
        resp = await c.get("/hello")
        assert (resp.status, resp.text) == (200, "hello")
        assert resp.headers["content-type"] == "text/plain; charset=utf-8"
        resp = await c.post("/echo", body=b"x" * 100_000)
        assert (resp.status, resp.headers["x-framing"], len(await resp.body())) == (
            200,
            "length",
            100_000,
        )
        resp = await c.post("/json", json={"a": [1, 2]})
        assert resp.json() == {"got": {"a": [1, 2]}, "ok": True}
        assert (await c.get("/latin")).text == "café"


async def test_chunked_upload_and_streamed_chunked_download() -> None:
    async def upload() -> AsyncIterator[bytes]:
        for i in range(50):
            yield bytes([65 + i % 26]) * 1000

    async with serving() as port, Client(f"http://{HOST}:{port}", timeout=BOUND) as c:
        resp = await c.put("/echo", body=upload())
        assert resp.headers["x-framing"] == "chunked"
        assert await resp.body() == b"".join([bytes([65 + i % 26]) * 1000 for i in range(50)])

        async with c.stream("GET", "/chunks") as streamed:
            assert streamed.headers["transfer-encoding"] == "chunked"
            pieces = [piece async for piece in streamed.stream()]
        assert b"".join(pieces) == b"".join(f"piece {i};".encode() for i in range(5))
        assert len(pieces) > 1  # it arrived piece by piece, not all at the end


async def test_absolute_urls_need_no_base_url() -> None:
    async with serving() as port, Client(timeout=BOUND) as c:
        assert (await c.get(f"http://{HOST}:{port}/hello?x=1")).text == "hello"
        with pytest.raises(ValueError, match="no base_url"):
            await c.get("/hello")


async def test_keep_alive_serves_three_requests_on_one_connection() -> None:
    async with serving() as port, Client(host=HOST, port=port, timeout=BOUND) as c:
        ports = {(await c.get("/port")).text for _ in range(3)}
        assert len(ports) == 1


async def test_connection_close_from_the_server_makes_the_client_reconnect() -> None:
    async with serving() as port, Client(f"http://{HOST}:{port}", timeout=BOUND) as c:
        ports = [(await c.get("/close")).text for _ in range(3)]
        assert len(set(ports)) == 3  # each response closed its connection
        assert (await c.get("/hello")).text == "hello"


def answer_once_then_close(conn: socket.socket, stop: threading.Event) -> None:
    """Answer one request as if keeping the connection alive, then close it anyway (as a
    server whose keep-alive timeout ran out does)."""
    read_head(conn)
    conn.sendall(OK_HELLO)


@pytest.mark.parametrize("notice", ["seen-idle", "retried"])
async def test_an_idle_connection_the_server_closed_is_replaced(
    notice: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if notice == "retried":
        # The close arrives after the idle check: the request fails and is sent again.
        monkeypatch.setattr(ClientConnection, "peer_closed", lambda self: False)
    calls = 0
    request = ClientConnection.request

    async def counting(self: ClientConnection, *args: Any, **kw: Any) -> Any:
        nonlocal calls
        calls += 1
        return await request(self, *args, **kw)

    monkeypatch.setattr(ClientConnection, "request", counting)
    with RawServer(answer_once_then_close) as server:
        async with Client(f"http://{HOST}:{server.port}", timeout=BOUND) as c:
            for _ in range(3):
                assert (await c.get("/")).text == "hello"
                await anyio.sleep(0.05)  # let the server's close arrive
        assert server.connections == 3
    assert calls == (3 if notice == "seen-idle" else 5)  # two failed tries on a dead connection


async def test_a_post_is_not_retried_on_a_closed_idle_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # RFC 9112 §9.3.1: no automatic retry of a non-idempotent request.
    monkeypatch.setattr(ClientConnection, "peer_closed", lambda self: False)
    with RawServer(answer_once_then_close) as server:
        async with Client(f"http://{HOST}:{server.port}", timeout=BOUND) as c:
            assert (await c.get("/")).text == "hello"
            await anyio.sleep(0.05)
            with pytest.raises(ClientConnectionError):
                await c.post("/", body=b"once")
            assert (await c.get("/")).text == "hello"  # a fresh connection again
        assert server.connections == 2


def recording(heads: list[bytes]) -> Callable[[socket.socket, threading.Event], None]:
    def record(conn: socket.socket, stop: threading.Event) -> None:
        heads.append(read_head(conn))
        conn.sendall(OK_HELLO)

    return record


async def test_request_headers_from_a_one_shot_iterable_replace_the_defaults() -> None:
    heads: list[bytes] = []

    def given() -> Iterator[tuple[str, str]]:  # consumed by the first pass over it
        yield ("X-Mode", "asked")
        yield ("X-Extra", "1")

    with RawServer(recording(heads)) as server:
        url = f"http://{HOST}:{server.port}"
        async with Client(url, headers={"x-mode": "default"}, timeout=BOUND) as c:
            assert (await c.get("/", headers=given())).status == 200
    fields = heads[0].lower().split(b"\r\n")
    assert b"x-mode: asked" in fields and b"x-extra: 1" in fields
    assert b"x-mode: default" not in fields


async def test_a_path_without_its_slash_stays_under_the_base_path() -> None:
    heads: list[bytes] = []
    with RawServer(recording(heads)) as server:
        async with Client(f"http://{HOST}:{server.port}/api/", timeout=BOUND) as c:
            for path in ("users", "/users", "users?page=2"):
                assert (await c.get(path)).status == 200
    lines = [head.split(b"\r\n", 1)[0] for head in heads]
    assert lines == [
        b"GET /api/users HTTP/1.1",
        b"GET /api/users HTTP/1.1",
        b"GET /api/users?page=2 HTTP/1.1",
    ]


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6")
async def test_client_host_may_be_an_ipv6_address() -> None:
    heads: list[bytes] = []
    try:
        server = RawServer(recording(heads), host="::1")
    except OSError:
        pytest.skip("no IPv6 loopback")
    with server:
        async with Client(host="::1", port=server.port, timeout=BOUND) as c:
            assert (await c.get("/")).text == "hello"
    assert f"\r\nhost: [::1]:{server.port}\r\n".encode() in heads[0].lower()


async def test_head_and_204_against_the_server() -> None:
    async with serving() as port, Client(f"http://{HOST}:{port}", timeout=BOUND) as c:
        head = await c.head("/hello")
        assert (head.status, head.headers["content-length"], await head.body()) == (200, "5", b"")
        empty = await c.get("/empty")
        assert (empty.status, await empty.body()) == (204, b"")
        ports = {(await c.get("/port")).text for _ in range(2)}
        assert len(ports) == 1


async def test_expect_100_continue_against_the_server() -> None:
    async def later() -> AsyncIterator[bytes]:
        await anyio.sleep(0.1)  # the server reads the body before it is here: it says 100
        yield b"payload"

    async with serving() as port:
        conn = await connect(HOST, port, timeout=BOUND)
        async with conn:
            headers = {"expect": "100-continue"}
            resp = await conn.request("POST", "/echo", body=later(), headers=headers)
            assert (resp.status, await resp.body()) == (200, b"payload")
            assert resp.informational == [100]


def never_answer(conn: socket.socket, stop: threading.Event) -> None:
    read_head(conn)
    stop.wait(BOUND)


async def test_a_server_that_never_answers_times_out() -> None:
    with RawServer(never_answer) as server:
        async with Client(f"http://{HOST}:{server.port}", timeout=Timeout(read=0.3)) as c:
            started = time.monotonic()
            with pytest.raises(ClientTimeout, match=r"read timed out after 0\.3s") as info:
                await c.get("/")
            assert 0.25 < time.monotonic() - started < 2.0
            assert info.value.phase == "read"


async def test_a_server_that_never_reads_times_out_the_write() -> None:
    async def endless() -> AsyncIterator[bytes]:
        piece = b"x" * (1 << 20)
        for _ in range(1024):
            yield piece

    def never_read(conn: socket.socket, stop: threading.Event) -> None:
        read_head(conn)
        stop.wait(BOUND)

    with RawServer(never_read) as server:
        async with Client(f"http://{HOST}:{server.port}", timeout=Timeout(write=0.3)) as c:
            with pytest.raises(ClientTimeout) as info:
                await c.post("/", body=endless())
            assert info.value.phase == "write"


async def test_connect_timeout_and_refused() -> None:
    with RawServer(answer_once_then_close) as server:
        with pytest.raises(ClientTimeout) as info:
            await connect(HOST, server.port, timeout=Timeout(connect=0))
        assert info.value.phase == "connect"
    probe = socket.socket()
    probe.bind((HOST, 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    with pytest.raises(ClientConnectionError, match="cannot connect"):
        await connect(HOST, port, timeout=BOUND)


def malformed(conn: socket.socket, stop: threading.Event) -> None:
    read_head(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nbad header line\r\n\r\n")


async def test_malformed_response_bytes_from_a_socket_are_a_protocol_error() -> None:
    with RawServer(malformed) as server:
        async with Client(f"http://{HOST}:{server.port}", timeout=BOUND) as c:
            with pytest.raises(ClientProtocolError, match="malformed response"):
                await c.get("/")


# -- cross-check with an independent client (asyncio only: httpx) --------------------------------


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [("GET", "/hello", b""), ("POST", "/echo", b"some bytes"), ("GET", "/chunks", b"")],
)
async def test_same_answers_as_httpx(method: str, path: str, body: bytes) -> None:
    async with serving() as port:
        url = f"http://{HOST}:{port}"
        async with Client(url, timeout=BOUND) as ours, httpx.AsyncClient(timeout=BOUND) as theirs:
            mine = await ours.request(method, path, body=body)
            other = await theirs.request(method, url + path, content=body)
    assert mine.status == other.status_code
    assert await mine.body() == other.content
    skip = {"date"}
    assert [(n, v) for n, v in mine.headers if n not in skip] == [
        (n, v) for n, v in other.headers.items() if n not in skip
    ]
