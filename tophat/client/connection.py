"""The client's HTTP core: :class:`ClientConnection`, h11 over a Stream, no runtime, no clock.

Also the request head it sends (``Host`` and body framing). Re-exported by :mod:`tophat.client`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterable, Iterable, Mapping
from typing import Any

import h11

from tophat.client.errors import (
    ClientConnectionError,
    ClientError,
    ClientProtocolError,
    ClientTimeout,
)
from tophat.client.response import ClientResponse, open_response
from tophat.http.headers import Headers
from tophat.server.stream import Stream

Body = bytes | bytearray | memoryview | AsyncIterable[bytes]
HeadersLike = Headers | Mapping[str, str] | Iterable[tuple[str, str]]

_READ_SIZE = 64 * 1024
# RFC 9110 §8.6: a user agent SHOULD send Content-Length when the method defines a meaning for
# enclosed content (even 0), and SHOULD NOT send it when there is no content and the method does
# not define one.
_CONTENT_METHODS = frozenset({"POST", "PUT", "PATCH"})
# RFC 9110 §15.2: a client MUST be able to parse one or more 1xx responses before the final
# one, but the RFC sets no upper bound, and each 1xx resets the read timeout: a server sending
# "102 Processing" forever would keep the client reading (and its list of codes growing) for
# ever. Real servers send a 100 and a few 103s; past this many the response is refused.
MAX_INFORMATIONAL = 32


# -- the HTTP core: h11 over a Stream, no runtime ----------------------------------------------


class ClientConnection:
    """One HTTP/1.1 connection over ``stream``: requests go one after another.

    A new request may start once the previous response's body was read to the end (or the
    response was closed, which drains what is already buffered or else closes the connection).
    After a response that ends the connection (``Connection: close``, or a body delimited by the
    close), the connection is closed and a further request raises
    :class:`ClientConnectionError`.

    Args:
        stream: the byte stream (see :mod:`tophat.server.stream`). Timeouts are the stream's
            business: it raises :class:`ClientTimeout` (or :class:`~tophat.StreamTimeout`).
        host: the ``Host`` header to send when a request gives none.
    """

    def __init__(self, stream: Stream, *, host: str | None = None) -> None:
        self._stream = stream
        self._host = host
        self._h11 = h11.Connection(h11.CLIENT)
        self._busy = False  # a response is open (its body not read to the end, not closed)
        self._channel = _Channel(self)
        self._closed_why: str | None = None
        self._stream_closed = False

    @property
    def reusable(self) -> bool:
        """Whether a request can start now without knowing anything broke."""
        return (
            self._closed_why is None
            and not self._busy
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
        """Send a request; return the response once its head arrived (1xx responses skipped,
        at most :data:`MAX_INFORMATIONAL` of them).

        A bytes body is sent with ``Content-Length``; an async iterable of bytes is sent with
        ``Transfer-Encoding: chunked`` unless ``headers`` declare a ``Content-Length``. With
        ``Expect: 100-continue`` the body is sent without waiting for the 100, as RFC 9110
        §10.1.1 allows; an iterable body is pulled only after the head went out.

        Raises:
            ClientConnectionError: the connection is closed or broke, or the server closed it
                without answering.
            ClientProtocolError: the response is malformed, or more than
                :data:`MAX_INFORMATIONAL` interim (1xx) responses came before it.
            ClientTimeout: from the stream.
            ClientError: the previous response is not finished, or the request is invalid.
        """
        if self._closed_why is not None:
            raise ClientConnectionError(f"connection cannot be reused: {self._closed_why}")
        if not self._busy and self._h11.our_state is not h11.IDLE:
            raise ClientError("another request is being sent on this connection")
        if self._busy:
            raise ClientError(
                "the previous response on this connection is not finished: read its body "
                "(await resp.body()) or close it (await resp.aclose()) first"
            )
        h = _request_headers(method, headers, body, host or self._host)
        try:  # (the caller's input, checked before anything is sent)
            request = h11.Request(method=method, target=target, headers=h.items())
        except (h11.LocalProtocolError, UnicodeError) as exc:
            raise ClientError(f"invalid request: {exc}") from exc
        try:
            head = self._out(request)
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
                    if len(informational) == MAX_INFORMATIONAL:
                        raise ClientProtocolError(
                            f"{MAX_INFORMATIONAL + 1} interim (1xx) responses before a final "
                            f"one; at most {MAX_INFORMATIONAL} are accepted"
                        )
                    informational.append(event.status_code)  # e.g. 100 Continue: skipped
                elif isinstance(event, h11.Response):
                    break
                else:  # pragma: no cover - h11 yields nothing else before a response
                    raise ClientProtocolError(f"unexpected {type(event).__name__}")
        except BaseException as exc:
            await self._fail(exc)
            raise
        self._busy = True
        return await open_response(self._channel, event, method, informational)

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
        self._busy = False
        conn = self._h11
        # A body delimited by the close (RFC 9112 §6.3, rule 8) ends DONE/DONE in h11 too:
        # the end of input seen is what says the connection is over.
        rest, closed = conn.trailing_data
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE and not closed and not rest:
            conn.start_next_cycle()
        elif self._closed_why is None:
            # RFC 9112 §6.3: bytes after a complete response MUST NOT be taken as the next
            # response (cache poisoning): such a connection is not used again.
            self._closed_why = (
                "the server sent more than its response"
                if rest
                else "the last response ended the connection (Connection: close)"
            )

    async def _fail(self, exc: BaseException) -> None:
        self._busy = False
        if self._closed_why is None:
            self._closed_why = f"an earlier request failed ({type(exc).__name__})"
        if isinstance(exc, Exception):  # never await while being cancelled
            await self._close_stream()

    async def _close_stream(self) -> None:
        if not self._stream_closed:
            self._stream_closed = True
            with contextlib.suppress(Exception):
                await self._stream.aclose()


class _Channel:
    """The connection as its response sees it (a :class:`~tophat.client.response.Channel`)."""

    __slots__ = ("_conn",)

    def __init__(self, conn: ClientConnection) -> None:
        self._conn = conn

    async def next_event(self, *, only_buffered: bool) -> Any:
        return await self._conn._next_event(only_buffered=only_buffered)

    async def fail(self, exc: BaseException) -> None:
        await self._conn._fail(exc)

    async def end(self) -> None:
        conn = self._conn
        conn._finished()
        if conn._closed_why is not None:
            await conn._close_stream()


def _request_headers(
    method: str, given: HeadersLike | None, body: Body, host: str | None
) -> Headers:
    h = given.copy() if isinstance(given, Headers) else Headers(given)
    if "host" not in h:
        if host is None:
            raise ClientError("no Host: pass host= to ClientConnection or request(), or a header")
        h.add("Host", host)
    if "content-length" in h and "transfer-encoding" in h:
        # RFC 9112 §6.2: a sender MUST NOT send both (the request-smuggling shape, §11.2).
        raise ClientError("Content-Length and Transfer-Encoding given together; give one")
    framed = "content-length" in h or "transfer-encoding" in h
    if isinstance(body, bytes | bytearray | memoryview):
        if not framed and (body or method in _CONTENT_METHODS):
            h.add("Content-Length", str(len(body)))
    elif not framed:
        h.add("Transfer-Encoding", "chunked")
    return h
