"""A minimal HTTP/1.1 client on h11: send requests over any stream, or to host:port.

The core, :class:`ClientConnection`, speaks HTTP over anything with the three
:class:`~tophat.Stream` methods and never touches a runtime or a clock (like ``accept`` on the
server side). :func:`connect` opens a TCP (or TLS) connection on whichever library is running,
asyncio or trio, and wraps it as a stream; the runtime that owns the clock applies the timeouts
there and raises :class:`ClientTimeout`. :class:`Client` keeps one idle connection per origin::

    async with Client("http://127.0.0.1:8000") as client:
        resp = await client.get("/hello")
        assert resp.status == 200 and await resp.text() == "hello"
        async with client.stream("GET", "/big") as resp:
            async for chunk in resp.stream():
                ...

Or over a stream you already have (one connection, requests one after another)::

    conn = ClientConnection(stream, host="example")
    resp = await conn.request("POST", "/echo", body=b"hi")
    data = await resp.body()   # the connection is free for the next request once it is read
"""

from __future__ import annotations

import contextlib
import json as _json
import select
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import h11

from ._headers import Headers
from ._stream import Stream, StreamClosed

if TYPE_CHECKING:
    import asyncio
    from ssl import SSLContext

__all__ = [
    "Client",
    "ClientConnection",
    "ClientConnectionError",
    "ClientError",
    "ClientProtocolError",
    "ClientResponse",
    "ClientTimeout",
    "Timeout",
    "connect",
]

Body = bytes | bytearray | memoryview | AsyncIterable[bytes]
HeadersLike = Headers | Mapping[str, str] | Iterable[tuple[str, str]]
TimeoutPhase = Literal["connect", "read", "write"]

_READ_SIZE = 64 * 1024
_HIGH_WATER = 256 * 1024  # asyncio adapter: pause reading above this much unread input
_CLOSE_GRACE = 1.0  # trio adapter: how long a TLS close_notify may take
# RFC 9110 §8.6: a user agent SHOULD send Content-Length when the method defines a meaning for
# enclosed content (even 0), and SHOULD NOT send it when there is no content and the method does
# not define one.
_CONTENT_METHODS = frozenset({"POST", "PUT", "PATCH"})
# RFC 9112 §9.3.1: a user agent MUST NOT automatically retry a request with a non-idempotent
# method (RFC 9110 §9.2.2 lists the idempotent ones).
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


class ClientError(Exception):
    """Base class of every error the client raises."""


class ClientTimeout(ClientError, TimeoutError):
    """Connecting, or one read or write, took longer than its :class:`Timeout`."""

    def __init__(self, phase: TimeoutPhase, seconds: float | None = None) -> None:
        after = "" if seconds is None else f" after {seconds:g}s"
        super().__init__(f"{phase} timed out{after}")
        self.phase = phase
        self.seconds = seconds


class ClientConnectionError(ClientError, ConnectionError):
    """The connection could not be made, broke, or can no longer carry a request."""


class ClientProtocolError(ClientError):
    """The server's bytes are not a valid HTTP/1.1 response (h11 refused them)."""


@dataclass(frozen=True, slots=True)
class Timeout:
    """Seconds allowed to connect, and for each single read and write (``None``: no limit).

    ``Timeout(5)`` applies 5 seconds to all three.
    """

    connect: float | None = None
    read: float | None = None
    write: float | None = None

    @classmethod
    def of(cls, value: Timeout | float | None) -> Timeout:
        if isinstance(value, Timeout):
            return value
        return cls(value, value, value)


# -- the HTTP core: h11 over a Stream, no runtime ----------------------------------------------


class ClientConnection:
    """One HTTP/1.1 connection over ``stream``: requests go one after another.

    A new request may start once the previous response's body was read to the end (or the
    response was closed, which drains what is already buffered or else closes the connection).
    After a response that ends the connection (``Connection: close``, or a body delimited by the
    close), the connection is closed and a further request raises
    :class:`ClientConnectionError`.

    Args:
        stream: the byte stream (see :mod:`tophat._stream`). Timeouts are the stream's business:
            it raises :class:`ClientTimeout` (or :class:`~tophat.StreamTimeout`).
        host: the ``Host`` header to send when a request gives none.
    """

    def __init__(self, stream: Stream, *, host: str | None = None) -> None:
        self._stream = stream
        self._host = host
        self._h11 = h11.Connection(h11.CLIENT)
        self._active: ClientResponse | None = None
        self._closed_why: str | None = None
        self._stream_closed = False

    @property
    def reusable(self) -> bool:
        """Whether a request can start now without knowing anything broke."""
        return (
            self._closed_why is None
            and self._active is None
            and self._h11.our_state is h11.IDLE
            and self._h11.their_state is h11.IDLE
        )

    def peer_closed(self) -> bool:
        """Whether the idle connection has input (end of input, or stray bytes): don't reuse it.

        Asks the stream's optional ``peer_closed()``; streams without one report False.
        """
        check = getattr(self._stream, "peer_closed", None)
        return bool(check()) if check is not None else False

    async def request(
        self,
        method: str,
        target: str,
        *,
        headers: HeadersLike | None = None,
        body: Body = b"",
        host: str | None = None,
    ) -> ClientResponse:
        """Send a request; return the response once its head arrived (1xx responses skipped).

        A bytes body is sent with ``Content-Length``; an async iterable of bytes is sent with
        ``Transfer-Encoding: chunked`` unless ``headers`` declare a ``Content-Length``. With
        ``Expect: 100-continue`` the body is sent without waiting for the 100, as RFC 9110
        §10.1.1 allows; an iterable body is pulled only after the head went out.

        Raises:
            ClientConnectionError: the connection is closed or broke, or the server closed it
                without answering.
            ClientProtocolError: the response is malformed.
            ClientTimeout: from the stream.
            ClientError: the previous response is not finished, or the request is invalid.
        """
        if self._closed_why is not None:
            raise ClientConnectionError(f"connection cannot be reused: {self._closed_why}")
        if self._active is None and self._h11.our_state is not h11.IDLE:
            raise ClientError("another request is being sent on this connection")
        if self._active is not None:
            raise ClientError(
                "the previous response on this connection is not finished: read its body "
                "(await resp.body()) or close it (await resp.aclose()) first"
            )
        h = _request_headers(method, headers, body, host or self._host)
        try:
            head = self._out(h11.Request(method=method, target=target, headers=h.items()))
            if isinstance(body, bytes | bytearray | memoryview):
                # One write for head and body: no extra packet, no Nagle/delayed-ACK stall.
                data = head + (self._out(h11.Data(data=bytes(body))) if body else b"")
                await self._send(data + self._out(h11.EndOfMessage()))
            else:
                await self._send(head)
                async for chunk in body:
                    if chunk:
                        await self._send(self._out(h11.Data(data=chunk)))
                await self._send(self._out(h11.EndOfMessage()))
            informational: list[int] = []
            while True:
                event = await self._next_event(head=True)
                if isinstance(event, h11.InformationalResponse):
                    informational.append(event.status_code)  # e.g. 100 Continue: skipped
                elif isinstance(event, h11.Response):
                    break
                else:  # pragma: no cover - h11 yields nothing else before a response
                    raise ClientProtocolError(f"unexpected {type(event).__name__}")
        except BaseException as exc:
            await self._fail(exc)
            raise
        resp = ClientResponse(self, event, method, informational)
        self._active = resp
        # Complete, without I/O, what is already here: a HEAD, 204 or short response then
        # leaves the connection free at once.
        await resp._pull(only_buffered=True)
        return resp

    async def aclose(self) -> None:
        """Close the connection (a response still being read ends with an error)."""
        if self._closed_why is None:
            self._closed_why = "closed by the client"
        await self._close_stream()

    async def __aenter__(self) -> ClientConnection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- internals ------------------------------------------------------------------------

    def _out(self, event: h11.Event) -> bytes:
        try:
            return self._h11.send(event) or b""
        except h11.LocalProtocolError as exc:
            raise ClientError(f"invalid request: {exc}") from exc

    async def _send(self, data: bytes) -> None:
        if data:
            try:
                await self._stream.send_all(data)
            except ClientError:
                raise
            except TimeoutError as exc:  # a StreamTimeout from a foreign adapter
                raise ClientTimeout("write") from exc
            except OSError as exc:  # StreamClosed included
                raise ClientConnectionError(f"connection broke while sending: {exc}") from exc

    async def _receive(self) -> bytes:
        try:
            return await self._stream.receive_some(_READ_SIZE)
        except ClientError:
            raise
        except TimeoutError as exc:
            raise ClientTimeout("read") from exc
        except OSError as exc:
            raise ClientConnectionError(f"connection broke while receiving: {exc}") from exc

    async def _next_event(self, *, head: bool = False, only_buffered: bool = False) -> Any:
        """The next h11 event, reading when needed (``None`` if ``only_buffered`` and none)."""
        conn = self._h11
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise ClientProtocolError(f"malformed response: {exc}") from exc
            if event is not h11.NEED_DATA:
                return event
            if only_buffered:
                return None
            data = await self._receive()
            if not data and head and not conn.trailing_data[0]:
                raise ClientConnectionError("the server closed the connection without responding")
            conn.receive_data(data)

    def _finished(self) -> None:
        """The active response ended: ready the next cycle, or note why there is none."""
        self._active = None
        conn = self._h11
        # A body delimited by the close (RFC 9112 §6.3, rule 8) ends DONE/DONE in h11 too:
        # the end of input seen is what says the connection is over.
        if (
            conn.our_state is h11.DONE
            and conn.their_state is h11.DONE
            and not conn.trailing_data[1]
        ):
            conn.start_next_cycle()
        elif self._closed_why is None:
            self._closed_why = "the last response ended the connection (Connection: close)"

    async def _fail(self, exc: BaseException) -> None:
        self._active = None
        if self._closed_why is None:
            self._closed_why = f"an earlier request failed ({type(exc).__name__})"
        if isinstance(exc, Exception):  # never await while being cancelled
            await self._close_stream()

    async def _close_stream(self) -> None:
        if not self._stream_closed:
            self._stream_closed = True
            with contextlib.suppress(Exception):
                await self._stream.aclose()


def _request_headers(
    method: str, given: HeadersLike | None, body: Body, host: str | None
) -> Headers:
    h = given.copy() if isinstance(given, Headers) else Headers(given)
    if "host" not in h:
        if host is None:
            raise ClientError("no Host: pass host= to ClientConnection or request(), or a header")
        h.add("Host", host)
    framed = "content-length" in h or "transfer-encoding" in h
    if isinstance(body, bytes | bytearray | memoryview):
        if not framed and (body or method in _CONTENT_METHODS):
            h.add("Content-Length", str(len(body)))
    elif not framed:
        h.add("Transfer-Encoding", "chunked")
    return h


class ClientResponse:
    """A response: status and headers at once; the body read on demand, at most once.

    Attributes:
        status, reason, http_version: from the status line.
        headers: :class:`~tophat.Headers`.
        informational: the 1xx status codes received before this response.
        trailers: the trailer fields of a chunked body, once it was read (else ``None``).
    """

    __slots__ = (
        "_body",
        "_conn",
        "_done",
        "_pending",
        "_streamed",
        "headers",
        "http_version",
        "informational",
        "method",
        "reason",
        "status",
        "trailers",
    )

    def __init__(
        self, conn: ClientConnection, event: h11.Response, method: str, informational: list[int]
    ) -> None:
        self._conn = conn
        self.method = method
        self.status: int = event.status_code
        self.reason = event.reason.decode("latin-1")
        self.http_version = event.http_version.decode()
        self.headers = Headers._trusted(
            [(n.decode(), n.decode(), v.decode("latin-1")) for n, v in event.headers]
        )
        self.informational = informational
        self.trailers: Headers | None = None
        self._pending: list[bytes] = []
        self._done = False
        self._streamed = False
        self._body: bytes | None = None

    def stream(self) -> AsyncIterator[bytes]:
        """The body, piece by piece as it arrives (once; ``body()`` keeps it instead)."""
        if self._body is not None:
            return _Chunks(self, [self._body] if self._body else [])
        return self._take()

    async def body(self) -> bytes:
        """The whole body (read once, then kept)."""
        if self._body is None:
            self._body = b"".join([piece async for piece in self._take()])
        return self._body

    def _take(self) -> _Chunks:
        if self._streamed:
            raise ClientError("the response body was already streamed")
        self._streamed = True
        return _Chunks(self, None)

    async def text(self) -> str:
        """The body decoded with the ``Content-Type`` charset (UTF-8 when none is given)."""
        return (await self.body()).decode(_charset(self.headers.get("content-type")), "replace")

    async def json(self) -> Any:
        return _json.loads(await self.body())

    async def aclose(self) -> None:
        """Done with this response: keep the connection if the rest is already here, else close.

        Never waits for the network: an unread body still to come closes the connection.
        """
        if not self._done:
            await self._pull(only_buffered=True, keep=False)
        if not self._done:
            self._done = True
            await self._conn._fail(ClientError("response closed before its end"))

    async def __aenter__(self) -> ClientResponse:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<ClientResponse {self.status} {self.reason}>"

    async def _pull(self, *, only_buffered: bool = False, keep: bool = True) -> bytes | None:
        """The next body piece (``None`` at the end); with ``only_buffered``, no I/O at all."""
        conn = self._conn
        while not self._done:
            try:
                event = await conn._next_event(only_buffered=only_buffered)
            except BaseException as exc:
                self._done = True
                await conn._fail(exc)
                raise
            if event is None:
                return None
            if isinstance(event, h11.Data):
                if not only_buffered:
                    return bytes(event.data)
                if keep:
                    self._pending.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                if event.headers:
                    self.trailers = Headers._trusted(
                        [(n.decode(), n.decode(), v.decode("latin-1")) for n, v in event.headers]
                    )
                self._done = True
                conn._finished()
                if conn._closed_why is not None:
                    await conn._close_stream()
            else:  # pragma: no cover - h11 yields only Data then EndOfMessage in a body
                raise ClientProtocolError(f"unexpected {type(event).__name__} in a body")
        return None


class _Chunks:
    """The async iterator ``ClientResponse.stream()`` returns (a class, not an async generator,
    so that abandoning it half-way needs no finalizer)."""

    __slots__ = ("_given", "_resp")

    def __init__(self, resp: ClientResponse, given: list[bytes] | None) -> None:
        self._resp = resp
        self._given = given

    def __aiter__(self) -> _Chunks:
        return self

    async def __anext__(self) -> bytes:
        resp = self._resp
        if self._given is not None:
            if self._given:
                return self._given.pop()
            raise StopAsyncIteration
        while resp._pending:
            pending = resp._pending.pop(0)
            if pending:
                return pending
        while (piece := await resp._pull()) is not None:
            if piece:
                return piece
        raise StopAsyncIteration


def _charset(content_type: str | None) -> str:
    for param in (content_type or "").split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip():
            return value.strip().strip('"')
    return "utf-8"


# -- runtime adapters: the clock, the sockets ---------------------------------------------------


def _running_library() -> Literal["asyncio", "trio"]:
    """asyncio when an asyncio loop runs in this thread, else trio (as ``testing._Event``)."""
    try:
        import asyncio

        asyncio.get_running_loop()
        return "asyncio"
    except RuntimeError:
        return "trio"


async def connect(
    host: str,
    port: int,
    *,
    ssl: SSLContext | None = None,
    timeout: Timeout | float | None = None,
) -> ClientConnection:
    """Open a connection on the running library (asyncio, uvloop or trio).

    Args:
        host, port: where to connect; ``host`` (with a non-default port) is the ``Host`` header.
        ssl: speak TLS with this context (the server name checked is ``host``).
        timeout: seconds to connect and for each read and write, or a :class:`Timeout`.

    Raises:
        ClientTimeout: connecting took too long.
        ClientConnectionError: the connection was refused or failed.
    """
    limits = Timeout.of(timeout)
    if _running_library() == "asyncio":
        stream: Stream = await _AsyncioStream.open(host, port, ssl, limits)
    else:
        stream = await _TrioStream.open(host, port, ssl, limits)
    default = _DEFAULT_PORTS["https" if ssl is not None else "http"]
    name = f"[{host}]" if ":" in host else host
    return ClientConnection(stream, host=name if port == default else f"{name}:{port}")


class _AsyncioStream:
    """An ``asyncio.Protocol`` as a :class:`~tophat.Stream` (cf. the server's ``_Conn``).

    A Protocol rather than StreamReader/Writer: we own the buffer, so ``peer_closed`` can see
    stray input or end of input without a private attribute.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, limits: Timeout) -> None:
        import asyncio

        self._asyncio = asyncio
        self._loop = loop
        self._limits = limits
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._eof = False
        self._lost = False
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._drain: asyncio.Future[None] | None = None

    @classmethod
    async def open(
        cls, host: str, port: int, ssl: SSLContext | None, limits: Timeout
    ) -> _AsyncioStream:
        import asyncio

        loop = asyncio.get_running_loop()
        self = cls(loop, limits)
        protocol: Any = self  # an asyncio.Protocol by duck typing (asyncio is imported late)
        opening = loop.create_connection(
            lambda: protocol, host, port, ssl=ssl, server_hostname=host if ssl else None
        )
        try:
            await asyncio.wait_for(opening, limits.connect)
        except asyncio.TimeoutError:
            raise ClientTimeout("connect", limits.connect) from None
        except OSError as exc:
            raise ClientConnectionError(f"cannot connect to {host}:{port}: {exc}") from exc
        return self

    # protocol callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) > _HIGH_WATER and not self._paused and self._transport:
            self._paused = True
            self._transport.pause_reading()
        self._wake(self._waiter)

    def eof_received(self) -> bool:
        self._eof = True
        self._wake(self._waiter)
        return False  # let the transport close: we never write after the server's FIN

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = self._eof = True
        self._wake(self._waiter)
        self._wake(self._drain)  # send_all sees _lost once woken

    def pause_writing(self) -> None:
        self._drain = self._loop.create_future()

    def resume_writing(self) -> None:
        self._wake(self._drain)
        self._drain = None

    @staticmethod
    def _wake(fut: asyncio.Future[None] | None) -> None:
        if fut is not None and not fut.done():
            fut.set_result(None)

    # the Stream
    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        while not self._buffer:
            if self._eof:
                return b""
            self._waiter = self._loop.create_future()
            try:
                await self._wait(self._waiter, "read", self._limits.read)
            finally:
                self._waiter = None
        size = len(self._buffer) if max_bytes is None else max_bytes
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        if self._paused and len(self._buffer) < _HIGH_WATER // 4 and self._transport:
            self._paused = False
            self._transport.resume_reading()
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        transport = self._transport
        if self._lost or transport is None or transport.is_closing():
            raise StreamClosed("connection closed")
        transport.write(data)
        if self._drain is not None:
            await self._wait(self._drain, "write", self._limits.write)
            if self._lost:
                raise StreamClosed("connection lost while sending")

    async def _wait(
        self, fut: asyncio.Future[None], phase: TimeoutPhase, limit: float | None
    ) -> None:
        try:
            # shield: a timeout must not cancel the shared drain future
            await self._asyncio.wait_for(self._asyncio.shield(fut), limit)
        except self._asyncio.TimeoutError:
            raise ClientTimeout(phase, limit) from None

    async def aclose(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    def peer_closed(self) -> bool:
        return self._eof or bool(self._buffer)


class _TrioStream:
    """A trio stream with per-call deadlines, trio's errors turned into ``StreamClosed``."""

    def __init__(self, stream: Any, limits: Timeout, sock: Any) -> None:
        import trio

        self._trio = trio
        self._stream = stream
        self._limits = limits
        self._sock = sock  # the plain TCP socket to poll, or None under TLS

    @classmethod
    async def open(
        cls, host: str, port: int, ssl: SSLContext | None, limits: Timeout
    ) -> _TrioStream:
        try:
            import trio
        except ImportError:
            from ._serve import MissingExtra

            raise MissingExtra(
                "the client on trio needs trio: pip install 'tophat[trio]'"
            ) from None
        try:
            with _deadline(trio, "connect", limits.connect):
                stream: Any = await trio.open_tcp_stream(host, port)
                sock = stream.socket
                if ssl is not None:
                    stream = trio.SSLStream(
                        stream, ssl, server_hostname=host, https_compatible=True
                    )
                    await stream.do_handshake()
                    sock = None  # TLS records (e.g. session tickets) make the socket readable
        except ClientError:
            raise
        except OSError as exc:
            raise ClientConnectionError(f"cannot connect to {host}:{port}: {exc}") from exc
        except trio.BrokenResourceError as exc:
            raise ClientConnectionError(f"TLS handshake with {host}:{port} failed: {exc}") from exc
        return cls(stream, limits, sock)

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        trio = self._trio
        with _deadline(trio, "read", self._limits.read):
            try:
                data: bytes = await self._stream.receive_some(max_bytes)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise StreamClosed(str(exc)) from exc
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        trio = self._trio
        with _deadline(trio, "write", self._limits.write):
            try:
                await self._stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise StreamClosed(str(exc)) from exc

    async def aclose(self) -> None:
        trio = self._trio
        with trio.move_on_after(_CLOSE_GRACE), contextlib.suppress(trio.BrokenResourceError):
            await self._stream.aclose()

    def peer_closed(self) -> bool:
        if self._sock is None:
            return False
        readable, _, _ = select.select([self._sock.fileno()], [], [], 0)
        return bool(readable)


@contextlib.contextmanager
def _deadline(trio: Any, phase: TimeoutPhase, limit: float | None) -> Iterator[None]:
    if limit is None:
        yield
        return
    try:
        with trio.fail_after(limit):
            yield
    except trio.TooSlowError:
        raise ClientTimeout(phase, limit) from None


# -- Client: one idle connection per origin -----------------------------------------------------


class Client:
    """Requests to one or more origins, reusing one idle keep-alive connection per origin.

    ``url`` arguments are paths joined to ``base_url`` (or ``host``/``port``), or absolute
    ``http://`` / ``https://`` URLs. ``request()`` and the method shortcuts read the whole body
    (so the connection is free again); ``stream()`` gives the body piece by piece.

    A request that fails on a reused connection before any response arrived (the server
    closed it while idle) is sent again on a new connection if its method is idempotent and its
    body is bytes.

    Args:
        base_url: e.g. ``"http://127.0.0.1:8000"`` (a path in it prefixes every request path).
        host, port: instead of ``base_url`` (plain HTTP).
        headers: sent with every request (a request's own headers of the same name win).
        timeout: seconds to connect and for each read and write, or a :class:`Timeout`.
        ssl: the TLS context for ``https`` (default: ``ssl.create_default_context()``).
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        host: str | None = None,
        port: int | None = None,
        headers: HeadersLike | None = None,
        timeout: Timeout | float | None = None,
        ssl: SSLContext | None = None,
    ) -> None:
        if base_url is not None and host is not None:
            raise ValueError("give base_url or host/port, not both")
        if base_url is None and host is not None:
            base_url = f"http://{host}:{port or 80}"
        self._base = _Origin.parse(base_url) if base_url is not None else None
        self._headers = Headers(headers)
        self._timeout = Timeout.of(timeout)
        self._ssl = ssl
        self._idle: dict[tuple[str, str, int], ClientConnection] = {}

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: HeadersLike | None = None,
        body: Body = b"",
        json: Any = None,
    ) -> ClientResponse:
        """Send a request and read the whole response body before returning."""
        async with self.stream(method, url, headers=headers, body=body, json=json) as resp:
            await resp.body()
        return resp

    async def get(self, url: str, **kw: Any) -> ClientResponse:
        return await self.request("GET", url, **kw)

    async def head(self, url: str, **kw: Any) -> ClientResponse:
        return await self.request("HEAD", url, **kw)

    async def post(self, url: str, **kw: Any) -> ClientResponse:
        return await self.request("POST", url, **kw)

    async def put(self, url: str, **kw: Any) -> ClientResponse:
        return await self.request("PUT", url, **kw)

    async def patch(self, url: str, **kw: Any) -> ClientResponse:
        return await self.request("PATCH", url, **kw)

    async def delete(self, url: str, **kw: Any) -> ClientResponse:
        return await self.request("DELETE", url, **kw)

    @contextlib.asynccontextmanager
    async def stream(
        self,
        method: str,
        url: str,
        *,
        headers: HeadersLike | None = None,
        body: Body = b"",
        json: Any = None,
    ) -> AsyncIterator[ClientResponse]:
        """Send a request; the response's body is read inside the ``async with`` block."""
        origin, target = self._resolve(url)
        h = self._headers.copy()
        for name in {name.lower() for name, _ in Headers(headers)}:
            h.remove(name)
        for name, value in Headers(headers):
            h.add(name, value)
        if json is not None:
            body = _json.dumps(json, separators=(",", ":")).encode()
            h.setdefault("Content-Type", "application/json")
        conn, resp = await self._send(origin, method, target, h, body)
        try:
            yield resp
        finally:
            await resp.aclose()
            await self._release(origin, conn)

    async def aclose(self) -> None:
        """Close every idle connection."""
        idle, self._idle = self._idle, {}
        for conn in idle.values():
            await conn.aclose()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _resolve(self, url: str) -> tuple[_Origin, str]:
        if url.startswith(("http://", "https://")):
            origin = _Origin.parse(url)
            parts = urlsplit(url)
            return origin, (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if self._base is None:
            raise ValueError(f"{url!r} is not an absolute URL and the client has no base_url")
        return self._base, self._base.prefix + url

    async def _send(
        self, origin: _Origin, method: str, target: str, h: Headers, body: Body
    ) -> tuple[ClientConnection, ClientResponse]:
        conn = self._idle.pop(origin.key, None)
        if conn is not None and (not conn.reusable or conn.peer_closed()):
            await conn.aclose()
            conn = None
        if conn is not None:
            try:
                return conn, await conn.request(method, target, headers=h, body=body)
            except ClientConnectionError:
                replayable = isinstance(body, bytes | bytearray | memoryview)
                if not (replayable and method in _IDEMPOTENT):
                    raise
        ssl = self._ssl if self._ssl is not None else origin.default_ssl()
        conn = await connect(origin.host, origin.port, ssl=ssl, timeout=self._timeout)
        try:
            return conn, await conn.request(method, target, headers=h, body=body)
        except BaseException:
            with contextlib.suppress(Exception):
                await conn.aclose()
            raise

    async def _release(self, origin: _Origin, conn: ClientConnection) -> None:
        if conn.reusable and origin.key not in self._idle:
            self._idle[origin.key] = conn
        else:
            await conn.aclose()


@dataclass(frozen=True, slots=True)
class _Origin:
    scheme: str
    host: str
    port: int
    prefix: str  # the base URL's path, without a trailing slash

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.scheme, self.host, self.port)

    @classmethod
    def parse(cls, url: str) -> _Origin:
        parts = urlsplit(url)
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise ValueError(f"{url!r}: expected http://host[:port][/path] or https://...")
        port = parts.port or _DEFAULT_PORTS[parts.scheme]
        return cls(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))

    def default_ssl(self) -> SSLContext | None:
        if self.scheme != "https":
            return None
        import ssl

        return ssl.create_default_context()
