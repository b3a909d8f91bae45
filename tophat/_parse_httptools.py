"""httptools (llhttp) behind the parser interface of ``_parse`` (the ``fast`` extra).

llhttp parses everything it is fed and calls us back; we turn the callbacks into the same
events h11 gives (Head, body bytes, End) and queue them. ``accept`` feeds more bytes only when
the queue is empty, so the queue never holds more than one read's worth of events.

Where llhttp and h11 differ, the strict layer (``_validate``) and the statuses below keep the
answers the same; what remains different is listed in ``docs/parsers.md``.
"""

from __future__ import annotations

import re

import httptools

from ._parse import _END_NO_TRAILERS, CLOSED, NEED_DATA, End, Event, Head, ParseError

__all__ = ["HttptoolsParser"]


# The versions every request has, as bytes (saves an encode per request).
_VERSIONS = {"1.1": b"1.1", "1.0": b"1.0"}


class _Stop(Exception):
    """Raised from a callback to stop llhttp: a limit was crossed."""


# A request-line whose version is well-formed (RFC 9112 §2.3: HTTP-version = "HTTP/" DIGIT "."
# DIGIT) although llhttp refused it.
_VERSIONED_LINE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+ [^ \r\n]+ HTTP/[0-9]\.[0-9]\r?\n")


def _error_status(exc: Exception, data: bytes) -> int:
    # llhttp cannot tell a request-line that is not HTTP at all ("hello world", a TLS hello)
    # from one with a method it does not know: 400 is right for the first and safe for the
    # second (501 is what a server SHOULD send, RFC 9110 §9.1). A version llhttp refuses gets
    # 505 when the line is otherwise well-formed (as h11 + the strict layer answer), else 400.
    # (Not llhttp's "Expected CRLF after version": a bare LF there is a malformed line, 400
    # as RFC 9112 §2.2 says, while HTTP/1.1 itself is supported.)
    if str(exc) == "Invalid HTTP version" and _VERSIONED_LINE.match(data.lstrip(b"\r\n")):
        return 505
    return 400


class HttptoolsParser:
    __slots__ = (
        "_data",
        "_eof",
        "_events",
        "_failed",
        "_head_done",
        "_headers",
        "_in_message",
        "_max",
        "_parser",
        "_pending",
        "_size",
        "_trailers",
        "_url",
    )

    values_checked = True  # llhttp refuses control characters (but HTAB) in field values

    def __init__(self, max_head_size: int) -> None:
        self._max = max_head_size
        self._events: list[Event | ParseError] = []
        # Made on the first byte of a request and dropped between requests: an idle keep-alive
        # connection holds no parser.
        self._parser: httptools.HttpRequestParser | None = None
        self._eof = False
        self._data = b""  # the bytes being fed (to classify llhttp's errors)
        self._failed = False
        self._in_message = False
        self._head_done = False
        self._pending = 0  # bytes fed since the current head began (a memory guard)
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._trailers: list[tuple[bytes, bytes]] = []
        self._size = 0

    # -- llhttp callbacks ---------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._in_message = True
        self._head_done = False
        self._url = b""
        self._headers = []
        self._trailers = []
        self._size = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._size += len(url)
        if self._size > self._max:
            raise _Stop(414)

    def on_header(self, name: bytes, value: bytes | None) -> None:
        raw = value or b""
        # RFC 9112 §5.1 / RFC 9110 §5.5: whitespace around a field value is not part of it;
        # llhttp drops the leading whitespace but keeps the trailing (h11 drops both).
        field = (name.lower(), raw.rstrip(b" \t"))
        if self._head_done:
            self._trailers.append(field)
            return
        self._headers.append(field)
        self._size += len(name) + len(raw) + 4
        if self._size > self._max:
            raise _Stop(431)

    def on_headers_complete(self) -> None:
        parser = self._parser
        assert parser is not None
        self._head_done = True
        self._pending = 0
        method = parser.get_method()
        text = parser.get_http_version()
        version = _VERSIONS.get(text) or text.encode()
        if version == b"0.9" and b" HTTP/0.9" not in self._data:
            # llhttp takes a request-line without a version ("GET /") for HTTP/0.9; h11 refuses
            # it as malformed, and so do we: 400. (An explicit "HTTP/0.9" gets 505 below.)
            raise _Stop(400)
        # The size as h11 counts it: request line and header lines, CRLFs included
        # (``_size`` holds the target and the header lines already).
        size = len(method) + len(version) + 9 + self._size + 2
        self._events.append(Head(method, self._url, version, self._headers, size))

    def on_body(self, body: bytes) -> None:
        self._events.append(body)

    def on_message_complete(self) -> None:
        self._in_message = False
        self._events.append(End(self._trailers) if self._trailers else _END_NO_TRAILERS)

    # -- the parser interface -----------------------------------------------------------------

    @property
    def at_eof(self) -> bool:
        return self._eof

    def feed(self, data: bytes) -> None:
        if self._failed:
            return
        if not data:
            self._eof = True
            return
        parser = self._parser
        if parser is None:
            parser = self._parser = httptools.HttpRequestParser(self)
        self._data = data
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            # An Upgrade (or CONNECT) request: llhttp ends it at its head, leaving what follows
            # to the new protocol. We never switch protocols (RFC 9110 §7.8 lets a server ignore
            # Upgrade), so what follows is HTTP again: the next request. llhttp cannot read
            # content after such a head, so a request that declares some is refused (501)
            # rather than served without it.
            self._data = b""
            self._upgrade_ignored(data[exc.args[0] :])
            return
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            status = cause.args[0] if isinstance(cause, _Stop) else 400
            self._fail(ParseError(status, "request head refused", self._method()))
            return
        except httptools.HttpParserError as exc:
            self._fail(ParseError(_error_status(exc, data), str(exc), self._method()))
            return
        finally:
            self._data = b""
        if self._in_message and not self._head_done:
            # A head in progress (llhttp keeps its pieces): count it, for the head timeout and as
            # a memory guard on top of the size checks in the callbacks.
            self._pending += len(data)
            if self._pending > self._max + len(data):
                self._fail(ParseError(431, "request head too large"))

    def _upgrade_ignored(self, rest: bytes) -> None:
        if self._in_message:  # (llhttp completes the request itself; this is a guard)
            self._in_message = False
            self._events.append(End([]))
        head_index = max(i for i, e in enumerate(self._events) if type(e) is Head)
        head = self._events[head_index]
        assert type(head) is Head
        if any(
            name == b"transfer-encoding" or (name == b"content-length" and value.strip(b"0"))
            for name, value in head.headers
        ):
            del self._events[head_index:]
            self._fail(ParseError(501, "content after an Upgrade request head", head.method))
            return
        if rest:
            self.feed(rest)

    def _method(self) -> bytes | None:
        try:
            method: bytes = self._parser.get_method()  # type: ignore[union-attr]  # None: caught
        except Exception:  # no request line parsed yet
            return None
        return method

    def _fail(self, error: ParseError) -> None:
        # Requests parsed before the error are still served; the error comes after them.
        self._failed = True
        self._events.append(error)

    def holds_next(self) -> bool:
        # (llhttp parses ahead: the next request is events, or a message in progress)
        return bool(self._events) or self._in_message

    def head_pending(self) -> bool:
        return self._in_message and self._method() == b"HEAD"

    def buffered(self) -> int:
        return self._pending if self._in_message and not self._head_done else 0

    def next_event(self) -> Event:
        events = self._events
        if events:
            event = events[0]
            if isinstance(event, ParseError):
                raise event  # it stays: every later call fails the same way
            del events[0]
            return event
        if self._eof:
            if self._in_message:
                raise ParseError(400, "the client closed in the middle of a request")
            return CLOSED
        return NEED_DATA

    def end_without_content(self) -> None:
        # llhttp completed a request without content in the same feed as its head.
        event = self._events.pop(0) if self._events else None
        if type(event) is not End:
            raise RuntimeError(f"expected the end of a request without content, got {event!r}")

    def take_whole_body(self, length: int) -> bytes | None:
        # llhttp hands over what one feed holds in one piece: a body that arrived with its
        # head is [bytes, End] here.
        events = self._events
        if len(events) < 2 or type(events[1]) is not End:
            return None
        body = events[0]
        if type(body) is not bytes or len(body) != length:
            return None
        del events[:2]
        return body

    def next_cycle(self) -> None:
        # llhttp goes on to the next request by itself; when nothing of one was fed yet, the
        # parser and the last request's pieces are let go (memory of idle connections).
        if self._in_message:
            return  # the next request is half parsed: its pieces are in the fields below
        self._url = b""
        self._headers = []
        self._trailers = []
        if not self._events and not self._failed:
            self._parser = None
