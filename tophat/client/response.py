"""The client's response: :class:`ClientResponse`, its body read from the connection on demand.

Also the ``stream()`` iterator. Re-exported by
:mod:`tophat.client`.
"""

from __future__ import annotations

import json as _json
from collections.abc import AsyncIterator
from typing import Any, Protocol

import h11

from tophat.client.errors import ClientError, ClientProtocolError
from tophat.http.charset import charset
from tophat.http.headers import Headers

__all__ = ["Channel", "ClientResponse", "open_response"]


class Channel(Protocol):
    """What a response reads its body through: its connection's side of the exchange."""

    async def next_event(self, *, only_buffered: bool) -> Any:
        """The next h11 event of the body, reading when needed (``None`` when
        ``only_buffered`` and nothing is buffered)."""
        ...

    async def fail(self, exc: BaseException) -> None:
        """The body cannot be read to its end: the connection will not be reused."""
        ...

    async def end(self) -> None:
        """The body was read to its end: the connection is free for the next request (or
        closes, when this response ended it)."""
        ...


async def open_response(
    channel: Channel, event: h11.Response, method: str, informational: list[int]
) -> ClientResponse:
    """The response whose head is ``event``, with what of its body is already buffered taken
    in (no I/O): a HEAD, 204 or short response then leaves the connection free at once."""
    resp = ClientResponse(channel, event, method, informational)
    await resp._pull(only_buffered=True)
    return resp


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
        self, conn: Channel, event: h11.Response, method: str, informational: list[int]
    ) -> None:
        self._conn = conn
        self.method = method
        self.status: int = event.status_code
        self.reason = event.reason.decode("latin-1")
        self.http_version = event.http_version.decode()
        self.headers = Headers.from_wire(list(event.headers))
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

    @property
    def text(self) -> str:
        """The body decoded with the ``Content-Type`` charset (UTF-8 when none is given, or one
        Python does not know), read as ``TestResponse.text`` is. The body must have been read:
        ``Client.get()`` and the other one-shot methods do; after ``conn.request()`` or inside
        ``Client.stream()``, ``await resp.body()`` first."""
        return self._read().decode(charset(self.headers.get("content-type")), "replace")

    def json(self) -> Any:
        """The body parsed as JSON (read first, as for :attr:`text`)."""
        return _json.loads(self._read())

    def _read(self) -> bytes:
        if self._body is None:
            raise ClientError("the response body is not read yet: await resp.body() first")
        return self._body

    async def aclose(self) -> None:
        """Done with this response: keep the connection if the rest is already here, else close.

        Never waits for the network: an unread body still to come closes the connection.
        """
        if not self._done:
            await self._pull(only_buffered=True, keep=False)
        if not self._done:
            self._done = True
            await self._conn.fail(ClientError("response closed before its end"))

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
                event = await conn.next_event(only_buffered=only_buffered)
            except BaseException as exc:
                self._done = True
                await conn.fail(exc)
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
                    self.trailers = Headers.from_wire(list(event.headers))
                self._done = True
                await conn.end()
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
