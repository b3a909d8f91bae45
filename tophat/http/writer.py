"""ResponseWriter, the response it builds, and ResponseWritten, the proof it was sent."""

from __future__ import annotations

import json as _json
import os
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO, TYPE_CHECKING, Any, Protocol

from tophat.http import cookies as _cookies
from tophat.http import files as _files
from tophat.http.headers import Field, Headers

if TYPE_CHECKING:
    from tophat.http.request import Request

__all__ = ["Response", "ResponseWriter", "ResponseWritten", "ServerSentEvent"]

Body = bytes | AsyncIterable[bytes]

_TEXT = "text/plain; charset=utf-8"
_TEXT_FIELD = Field("content-type", _TEXT)  # checked once, here


class Response:
    """A response being built: status, headers and body.

    ``body`` is ``bytes`` or an async iterable of ``bytes``; ``length`` is the declared length
    of an iterable body (``None``: unknown, so it is sent chunked on HTTP/1.1 and
    close-delimited on HTTP/1.0). Framing headers (Content-Length, Transfer-Encoding) set by
    hand are never trusted: the server computes them from the body.
    """

    __slots__ = ("body", "headers", "length", "status")

    def __init__(self, status: int = 200, headers: Headers | None = None, body: Body = b"") -> None:
        self.status = status
        self.headers = headers if headers is not None else Headers()
        self.body: Body = body
        self.length: int | None = len(body) if isinstance(body, bytes) else None

    def __repr__(self) -> str:
        kind = f"{len(self.body)} bytes" if isinstance(self.body, bytes) else "stream"
        return f"<Response {self.status} {kind}>"


class _Sink(Protocol):
    """What the connection offers a writer: put a response on the wire."""

    async def send_response(self, response: Response) -> tuple[int, list[tuple[str, str]], int]:
        """Send it; return ``(status, header fields sent, body bytes written)``."""
        ...


_TOKEN = object()


class ResponseWritten:
    """Proof that a response was sent. Only :meth:`ResponseWriter.send` can make one.

    Attributes:
        status: the status code sent.
        headers: the header fields sent, framing and Date included.
        bytes_written: body bytes put on the wire (without chunked framing; 0 for HEAD).
    """

    __slots__ = ("_headers", "_raw_headers", "bytes_written", "status")

    def __init__(
        self, _token: object, status: int, headers: list[tuple[str, str]], bytes_written: int
    ) -> None:
        if _token is not _TOKEN:
            raise TypeError("ResponseWritten is made only by ResponseWriter.send()")
        self.status = status
        self._raw_headers = headers
        self._headers: Headers | None = None
        self.bytes_written = bytes_written

    @property
    def headers(self) -> Headers:
        if self._headers is None:  # built on first use: most handlers never look
            self._headers = Headers.from_sent(self._raw_headers)
        return self._headers

    def __repr__(self) -> str:
        return f"<ResponseWritten {self.status} {self.bytes_written} bytes>"


class ResponseWriter:
    """Builds the one response to a request and sends it.

    It starts as ``200`` with an empty body. Set what you need, then ``await send()``, which
    puts the response on the wire and returns :class:`ResponseWritten`::

        async def hello(req: Request, w: ResponseWriter) -> ResponseWritten:
            w.set_text("Hello, world!")
            return await w.send()

    Header names go out as you spell them (``insert_header("X-Total", ...)`` sends
    ``X-Total``); every field tophat adds itself (``content-type`` from ``set_text``, ``date``,
    ``content-length``, ``transfer-encoding``, ``connection``, and those of the router, Glitch
    and the middleware) is named in lower case. Names are case-insensitive (RFC 9110 §5.1).
    """

    __slots__ = ("_before_send", "_request", "_sink", "_written", "response")

    def __init__(self, sink: _Sink, request: Request | None = None) -> None:
        self._sink = sink
        self._request = request  # the request answered (set_file reads its conditions, Range)
        self.response = Response()
        self._written: ResponseWritten | None = None
        self._before_send: list[Callable[[Response], None]] | None = None

    def before_send(self, hook: Callable[[Response], None]) -> None:
        """Run ``hook(response)`` just before the response is sent (last added runs first).

        For middleware that must set a header from what happened inside the endpoint, such as
        a ``Server-Timing`` duration. A hook that raises fails the ``send()``.
        """
        if self._before_send is None:
            self._before_send = []
        self._before_send.append(hook)

    @property
    def sent(self) -> bool:
        """Whether ``send()`` was called (the response is on the wire, or failed on the way)."""
        return self._written is not None

    def run_before_send(self) -> None:
        """Run the ``before_send`` hooks now, once (``send()`` does; so does the server before
        it sends an error response in place of this writer's)."""
        hooks, self._before_send = self._before_send, None  # each hook runs once
        if hooks:
            for hook in reversed(hooks):
                hook(self.response)

    # -- status and headers -------------------------------------------------------------------

    def set_status(self, status: int) -> None:
        """Set the final status code (200-599; informational 1xx codes are not final)."""
        if not isinstance(status, int) or not 200 <= status <= 599:
            raise ValueError(f"status must be an int in 200-599, got {status!r}")
        self.response.status = int(status)

    def insert_header(self, name: str, value: str) -> None:
        """Set a header, replacing any values it had.

        Raises:
            HeaderError: if the name is not a token or the value contains CR, LF or NUL.
        """
        self.response.headers.set(name, value)

    def append_header(self, name: str, value: str) -> None:
        """Add a header value, keeping existing ones (e.g. several ``Set-Cookie``)."""
        self.response.headers.add(name, value)

    # -- cookies (tophat/http/cookies.py builds and checks them) ------------------------------

    def set_cookie(
        self,
        name: str,
        value: str,
        *,
        max_age: int | timedelta | None = None,
        expires: datetime | float | None = None,
        path: str = "/",
        domain: str | None = None,
        secure: bool = True,
        httponly: bool = True,
        samesite: _cookies.SameSite | None = "lax",
        partitioned: bool = False,
    ) -> None:
        """Set a cookie: one ``Set-Cookie`` field line, replacing one this response already
        sets under ``name`` (RFC 6265bis §4.1.1). Secure by default: ``Secure``, ``HttpOnly``,
        ``SameSite=Lax``, ``Path=/``; turning one off is explicit.

        Args:
            name: an RFC 9110 token. ``__Host-`` names need ``secure``, ``path="/"`` and no
                ``domain``; ``__Secure-`` names need ``secure`` (RFC 6265bis §4.1.3).
            value: printable US-ASCII without space, ``"``, ``,``, ``;`` and ``\\``
                (optionally wrapped in one pair of ``"``); encode anything else first.
            max_age: lifetime in seconds (or a timedelta); ``None`` for a session cookie.
            expires: an aware datetime or epoch seconds, sent as an IMF-fixdate.
            path, domain: scope. ``domain=None`` makes a host-only cookie (the safest).
            secure, httponly, samesite, partitioned: the attributes of those names;
                ``samesite=None`` sends no SameSite attribute.

        Raises:
            ValueError: naming the rule broken: the name, the value's characters, name and
                value over 4096 bytes, path or domain over 1024 bytes or with characters
                they cannot hold, ``samesite="none"`` or ``partitioned`` without ``secure``,
                a prefix whose attributes are missing, a naive datetime, a negative max_age.
        """
        line = _cookies.set_cookie_line(
            name,
            value,
            max_age=max_age,
            expires=expires,
            path=path,
            domain=domain,
            secure=secure,
            httponly=httponly,
            samesite=samesite,
            partitioned=partitioned,
        )
        _cookies.put_set_cookie(self.response.headers, name, line)

    def delete_cookie(
        self,
        name: str,
        *,
        path: str = "/",
        domain: str | None = None,
        secure: bool = True,
        httponly: bool = True,
        samesite: _cookies.SameSite | None = "lax",
        partitioned: bool = False,
    ) -> None:
        """Remove a cookie from the browser: empty value, ``Max-Age=0``, ``Expires`` at the
        epoch. Pass the ``path``, ``domain`` and ``partitioned`` it was set with (the browser
        replaces only the cookie they match) and keep ``secure`` for prefixed names.

        Raises:
            ValueError: as :meth:`set_cookie`.
        """
        line = _cookies.delete_cookie_line(
            name,
            path=path,
            domain=domain,
            secure=secure,
            httponly=httponly,
            samesite=samesite,
            partitioned=partitioned,
        )
        _cookies.put_set_cookie(self.response.headers, name, line)

    # -- body ---------------------------------------------------------------------------------

    def set_body(
        self, body: bytes | bytearray | str | AsyncIterable[bytes], *, length: int | None = None
    ) -> None:
        """Set the body: bytes, str (sent as UTF-8), or an async iterable of bytes.

        Args:
            body: the content. An async iterable is pulled only as fast as the client reads.
            length: for an iterable, its exact length if known (sent as Content-Length; the
                server checks the iterable yields exactly that much).
        """
        r = self.response
        if isinstance(body, str):
            body = body.encode()
            r.headers.setdefault("content-type", "text/plain; charset=utf-8")
        if isinstance(body, bytes | bytearray):
            if length is not None and length != len(body):
                raise ValueError("length does not match the body")
            r.body = bytes(body)
            r.length = len(body)
        elif hasattr(body, "__aiter__"):
            if length is not None and length < 0:
                raise ValueError("length must be >= 0")
            r.body = body
            r.length = length
        else:
            raise TypeError(
                f"body must be bytes, str or an async iterable of bytes, not {type(body).__name__}"
            )

    def set_text(self, text: str, content_type: str = _TEXT) -> None:
        body = text.encode()
        r = self.response
        r.body = body
        r.length = len(body)
        if content_type is _TEXT:
            r.headers.set_field(_TEXT_FIELD)  # the default type: no per-call check
        else:
            r.headers.set("content-type", content_type)

    def set_json(self, obj: Any, *, dumps: Callable[[Any], str] = _json.dumps) -> None:
        self.set_body(dumps(obj).encode())
        self.response.headers.set("content-type", "application/json")

    def set_sse(self, events: AsyncIterable[ServerSentEvent | str]) -> None:
        """Stream server-sent events (``text/event-stream``), one write per event.

        A ``str`` item is sent as an event with that data. The stream opens with a comment
        line (``: stream open``), which clients ignore, so the head is sent immediately.
        """
        self.set_body(_encode_events(events))
        h = self.response.headers
        h.set("content-type", "text/event-stream; charset=utf-8")
        h.set("cache-control", "no-cache")

    def set_file(
        self,
        file: str | os.PathLike[str] | IO[bytes],
        *,
        content_type: str | None = None,
        filename: str | None = None,
        inline: bool = False,
        chunk_size: int = 64 * 1024,
    ) -> None:
        """Send a file: a path, or a binary file open for reading (closed when sent).

        Sets Content-Length, Content-Type, Last-Modified, ETag and Accept-Ranges, and answers
        the request's conditions and ranges (RFC 9110 §13, §14): the status becomes 304, 412,
        206 (one range, or several as ``multipart/byteranges``) or 416, else stays 200. With
        another status set first (a custom 404 page), the file is sent whole with it. Streamed
        in pieces of ``chunk_size`` (zero-copy ``sendfile`` where the connection allows); a
        HEAD, 304, 412 or 416 never opens it. See ``tophat/http/files.py`` for the details.

        Args:
            file: a path (opened when the body is sent) or an open binary file (sent whole;
                an in-memory one such as ``io.BytesIO`` gets no validators).
            content_type: by default one already set, else guessed from ``filename`` or the
                path (``mimetypes``; ``charset=utf-8`` for text; else octet-stream).
            filename: adds ``Content-Disposition: attachment`` (``inline`` with ``inline``),
                with an RFC 8187 ``filename*`` for a non-ASCII name.

        Raises:
            OSError: as ``os.stat`` (FileNotFoundError, IsADirectoryError, ...).
            ValueError: for a FIFO, a device or another file that is not a regular one.
        """
        _files.set_file(
            self.response,
            file,
            self._request,
            content_type=content_type,
            filename=filename,
            inline=inline,
            chunk_size=chunk_size,
        )

    # -- sending ------------------------------------------------------------------------------

    async def send(self) -> ResponseWritten:
        """Put the response on the wire; return the proof.

        Raises:
            RuntimeError: on a second call.
            OSError: when the connection breaks while sending.
        """
        if self._written is not None:
            raise RuntimeError("send() was already called for this response")
        self._written = _PENDING  # a send() in progress: a second send() must fail too
        if self._before_send:
            self.run_before_send()
        status, headers, n = await self._sink.send_response(self.response)
        self._written = ResponseWritten(_TOKEN, status, headers, n)
        return self._written


_PENDING: Any = object()


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One server-sent event (HTML Living Standard §9.2)."""

    data: str = ""
    event: str | None = None
    id: str | None = None
    retry: int | None = None
    comment: str | None = None

    def __post_init__(self) -> None:
        for field in ("event", "id"):
            value = getattr(self, field)
            if value is not None and any(c in value for c in "\r\n\0"):
                raise ValueError(f"SSE {field} must not contain CR, LF or NUL")

    def encode(self) -> bytes:
        lines: list[str] = []
        if self.comment is not None:
            lines.extend(": " + line for line in _split_lines(self.comment))
        if self.event is not None:
            lines.append("event: " + self.event)
        if self.id is not None:
            lines.append("id: " + self.id)
        if self.retry is not None:
            lines.append(f"retry: {int(self.retry)}")
        if self.data or self.comment is None:
            lines.extend("data: " + line for line in _split_lines(self.data))
        return ("\n".join(lines) + "\n\n").encode()


def _split_lines(text: str) -> list[str]:
    # A field value cannot hold a line break; each line of data is its own "data:" field.
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


async def _encode_events(events: AsyncIterable[ServerSentEvent | str]) -> AsyncIterator[bytes]:
    # A comment first, so the head goes out at once (a streamed body's head waits for its first
    # piece) and the client knows the stream is open before the first event exists.
    yield b": stream open\n\n"
    async for ev in events:
        yield (ServerSentEvent(ev) if isinstance(ev, str) else ev).encode()
