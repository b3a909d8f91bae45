"""Testing support: in-memory streams and a small client that drive ``accept`` without sockets.

Raw bytes in, raw bytes out::

    from tophat.testing import AsyncTestClient

    client = AsyncTestClient(app)
    out = await client.raw(b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
    assert out.startswith(b"HTTP/1.1 200 OK\\r\\n")

Or a request API with parsed responses::

    resp = await client.get("/hello", headers={"accept": "text/plain"})
    assert resp.status == 200 and resp.text == "Hello, world!"

Works under asyncio and trio: nothing here starts a task or reads a clock.
"""

from __future__ import annotations

import collections
import json as _json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import h11

from tophat._asynclib import new_event
from tophat.http.charset import charset
from tophat.http.endpoint import Endpoint
from tophat.http.headers import Headers
from tophat.server.connection import accept
from tophat.server.opts import ServerOpts
from tophat.server.stream import StreamClosed

__all__ = [
    "AsyncTestClient",
    "MemoryStream",
    "TestResponse",
    "memory_stream_pair",
    "parse_responses",
]


class _Pipe:
    """One direction of an in-memory stream: pieces are delivered as they were written."""

    def __init__(self) -> None:
        self.pieces: collections.deque[bytes] = collections.deque()
        self.closed = False
        self._waiter: Any = None

    def _wake(self) -> None:
        if self._waiter is not None:
            self._waiter.set()
            self._waiter = None

    def write(self, data: bytes) -> None:
        if self.closed:
            raise StreamClosed("the other side closed the stream")
        if data:
            self.pieces.append(bytes(data))
            self._wake()

    def close(self) -> None:
        self.closed = True
        self._wake()

    async def read(self, max_bytes: int | None) -> bytes:
        while not self.pieces:
            if self.closed:
                return b""
            self._waiter = new_event()
            await self._waiter.wait()
        data = self.pieces.popleft()
        if max_bytes is not None and len(data) > max_bytes:
            self.pieces.appendleft(data[max_bytes:])
            data = data[:max_bytes]
        return data


class MemoryStream:
    """One end of an in-memory byte stream; satisfies the :class:`~tophat.Stream` protocol."""

    def __init__(self, incoming: _Pipe, outgoing: _Pipe) -> None:
        self._in = incoming
        self._out = outgoing

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        return await self._in.read(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self._out.write(bytes(data))

    def send_eof(self) -> None:
        """Half-close: the other side reads end of input; we can still receive."""
        self._out.close()

    async def aclose(self) -> None:
        self._out.close()
        self._in.closed = True
        self._in.pieces.clear()
        self._in._wake()

    def new_event(self) -> Any:
        """An event of the running async library (for ``req.disconnected.wait()``; an
        in-memory client never leaves while a request is handled, so it is never set)."""
        return new_event()

    def take_all(self) -> bytes:
        """Everything received and not yet read (no waiting)."""
        data = b"".join(self._in.pieces)
        self._in.pieces.clear()
        return data


def memory_stream_pair() -> tuple[MemoryStream, MemoryStream]:
    """Two connected in-memory streams: ``(client_end, server_end)``."""
    a, b = _Pipe(), _Pipe()
    return MemoryStream(a, b), MemoryStream(b, a)


class TestResponse:
    """A parsed response: status, headers, body."""

    __test__ = False  # not a pytest test class

    def __init__(
        self, status: int, reason: str, headers: Headers, body: bytes, version: str
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.version = version
        self.informational: list[int] = []

    @property
    def text(self) -> str:
        """The body decoded with the ``Content-Type`` charset, as ``Request.text()`` does."""
        return self.body.decode(charset(self.headers.get("content-type")))

    def json(self) -> Any:
        return _json.loads(self.body)

    def __repr__(self) -> str:
        return f"<TestResponse {self.status} {self.body[:40]!r}>"


def parse_responses(data: bytes, methods: Sequence[str] = ("GET",)) -> list[TestResponse]:
    """Parse the responses in ``data`` (as a client that sent requests with ``methods``).

    The last method repeats for any further response. Raises ``h11.RemoteProtocolError`` when
    the bytes are not a well-formed sequence of responses.
    """
    out: list[TestResponse] = []
    conn = h11.Connection(h11.CLIENT)
    conn.receive_data(data)
    conn.receive_data(b"")
    i = 0
    while True:
        if not conn.trailing_data[0]:
            return out
        method = methods[min(i, len(methods) - 1)]
        conn.send(h11.Request(method=method, target="/", headers=[("host", "t")]))
        conn.send(h11.EndOfMessage())
        resp: TestResponse | None = None
        informational: list[int] = []
        chunks: list[bytes] = []
        while True:
            event = conn.next_event()
            if isinstance(event, h11.InformationalResponse):
                informational.append(event.status_code)
            elif isinstance(event, h11.Response):
                resp = TestResponse(
                    event.status_code,
                    event.reason.decode("latin-1"),
                    Headers.from_wire(list(event.headers)),
                    b"",
                    event.http_version.decode(),
                )
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                assert resp is not None
                resp.body = b"".join(chunks)
                resp.informational = informational
                out.append(resp)
                break
            else:
                raise h11.RemoteProtocolError("response ended early", error_status_hint=400)
        if conn.our_state is h11.MUST_CLOSE or conn.their_state is not h11.DONE:
            rest = conn.next_event()
            if not isinstance(rest, h11.ConnectionClosed) and rest is not h11.NEED_DATA:
                raise h11.RemoteProtocolError(
                    "bytes after a closing response", error_status_hint=400
                )
            return out
        conn.start_next_cycle()
        i += 1


class AsyncTestClient:
    """Drive an endpoint through ``accept`` over an in-memory stream.

    Each call serves one fresh connection: the request bytes are queued, the client side is
    half-closed (unless ``close=False``), and ``accept`` runs until it returns.
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        endpoint: Endpoint,
        opts: ServerOpts | None = None,
        *,
        client: tuple[str, int] | None = ("127.0.0.1", 40000),
        server: tuple[str, int] | None = ("127.0.0.1", 9999),
        scheme: str = "http",
    ) -> None:
        self.endpoint = endpoint
        self.opts = opts or ServerOpts()
        self.client = client
        self.server = server
        self.scheme = scheme

    async def raw(self, data: bytes | Iterable[bytes], *, close: bool = True) -> bytes:
        """Send raw request bytes (one piece, or several pieces delivered one read each)."""
        client, server = memory_stream_pair()
        for piece in [data] if isinstance(data, bytes | bytearray) else data:
            await client.send_all(piece)
        if close:
            client.send_eof()
        await accept(
            server,
            self.endpoint,
            self.opts,
            client=self.client,
            server=self.server,
            scheme=self.scheme,
        )
        return client.take_all()

    async def request(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        body: bytes | str = b"",
        version: str = "1.1",
    ) -> TestResponse:
        """Send one request, return its parsed response."""
        if isinstance(body, str):
            body = body.encode()
        h = Headers(headers)
        if "host" not in h:
            h.add("host", "testserver")
        if body and "content-length" not in h and "transfer-encoding" not in h:
            h.add("content-length", str(len(body)))
        head = (
            f"{method} {path} HTTP/{version}\r\n" + "".join(f"{n}: {v}\r\n" for n, v in h) + "\r\n"
        )
        out = await self.raw(head.encode("latin-1") + body)
        responses = parse_responses(out, [method])
        if len(responses) != 1:
            raise AssertionError(f"expected one response, got {len(responses)}: {out!r}")
        return responses[0]

    async def get(self, path: str, **kw: Any) -> TestResponse:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, **kw: Any) -> TestResponse:
        return await self.request("POST", path, **kw)
