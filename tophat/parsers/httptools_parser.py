"""httptools (llhttp) behind the parser interface of ``events`` (the ``fast`` extra); llhttp's
callbacks and the state they keep are in ``llhttp_callbacks``.

llhttp parses everything it is fed and calls us back; we turn the callbacks into the same
events h11 gives (Head, body bytes, End) and queue them. ``accept`` feeds more bytes only when
the queue is empty, so the queue never holds more than one read's worth of events.

Where llhttp and h11 differ, the strict layer (``tophat.server.validate``) and the statuses
below keep the answers the same; what remains different is listed in ``docs/parsers.md``.

llhttp keeps no count of what it skipped or buffered, so the adapter keeps three: the empty
lines llhttp skips before a request-line (one is allowed, RFC 9112 §2.2), the bytes of a head in
progress (a memory guard, and what puts the connection in its head timeout), and the bytes of
reads that bring no content while a body is read (llhttp buffers the pieces of a trailer field
until it ends: without this, an endless trailer section grew without limit).
"""

from __future__ import annotations

import re

import httptools

from tophat.parsers.events import (
    CLOSED,
    NEED_DATA,
    End,
    Event,
    Head,
    ParseError,
)
from tophat.parsers.llhttp_callbacks import LlhttpState, Stop

__all__ = ["HttptoolsParser"]


# A request-line whose version is well-formed (RFC 9112 §2.3: HTTP-version = "HTTP/" DIGIT "."
# DIGIT) although llhttp refused it.
# (CRLF: a bare LF ends no line, RFC 9112 §2.2 as both parsers now apply it)
_VERSIONED_LINE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+ [^ \r\n]+ HTTP/[0-9]\.[0-9]\r\n")

_BAD_VERSION = "Invalid HTTP version"  # (llhttp's error text; its error classes do not tell)


def _error_status(exc: Exception | str, data: bytes) -> int:
    # llhttp cannot tell a request-line that is not HTTP at all ("hello world", a TLS hello)
    # from one with a method it does not know: 400 is right for the first and safe for the
    # second (501 is what a server SHOULD send, RFC 9110 §9.1). A version llhttp refuses gets
    # 505 when the line is otherwise well-formed (as h11 + the strict layer answer), else 400.
    # (Not llhttp's "Expected CRLF after version": a bare LF there is a malformed line, 400
    # as RFC 9112 §2.2 says, while HTTP/1.1 itself is supported.)
    if str(exc) == _BAD_VERSION and _VERSIONED_LINE.match(data.lstrip(b"\r\n")):
        return 505
    return 400


class HttptoolsParser(LlhttpState):
    """The parser interface (``tophat.parsers.events.Parser``) over llhttp."""

    __slots__ = ()

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
        if self._undecided is not None:
            self._decide(self._undecided + data)
            return
        parser = self._parser
        if parser is None:
            parser = self._parser = httptools.HttpRequestParser(self)
        self._data = data
        try:
            base: int | None = 0
            while base is not None:  # (again after each ignored Upgrade request)
                base = self._feed_from(parser, data, base)
        finally:
            self._data = b""

    def _feed_from(self, parser: httptools.HttpRequestParser, data: bytes, base: int) -> int | None:
        """Feed ``data[base:]``; where to go on after an ignored Upgrade request, else None."""
        self._base = base
        self._body_fed = 0
        self._head_fed = False
        if self._in_message:
            self._mark = self._start = None  # (it began in an earlier read)
        else:
            self._mark = base
        try:
            parser.feed_data(memoryview(data)[base:] if base else data)
        except httptools.HttpParserUpgrade as exc:
            # An Upgrade (or CONNECT) request: llhttp ends it at its head, leaving what follows
            # to the new protocol. We never switch protocols (RFC 9110 §7.8 lets a server ignore
            # Upgrade), so what follows is HTTP again: the next request, fed in turn (not from
            # here: hundreds of them in one read once exhausted the recursion limit).
            end = base + exc.args[0]
            return end if self._upgrade_ignored() and end < len(data) else None
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, Stop):
                method = self._method() if cause.in_request else None
                self._fail(ParseError(cause.status, cause.reason, method))
            else:
                self._fail(ParseError(400, "request refused", self._method()))
            return None
        except httptools.HttpParserError as exc:
            line = self._request_line(data, base)
            if str(exc) == _BAD_VERSION:
                self._decide(line)
            else:
                self._fail(ParseError(_error_status(exc, line), str(exc), self._method()))
            return None
        self._count(data, base)
        return None

    def _count(self, data: bytes, base: int) -> None:
        """After a read: the guards on what llhttp holds, and the empty lines it skipped."""
        fed = len(data) - base
        if self._in_message:
            if not self._head_done:
                # A head in progress (llhttp keeps its pieces): count it, for the head timeout
                # and as a memory guard on top of the size checks in the callbacks. Only its own
                # bytes: a previous request's in the same read are not its (a false 431).
                start = self._start
                if start is None:
                    self._pending += fed
                elif start >= 0:
                    self._pending = len(data) - start
                self._tail = data[-3:]
                if b"\n" not in self._line:  # (bounded: the head's size is)
                    self._line += data[start:] if start is not None and start >= 0 else data[base:]
                if self._pending > self._max + fed:
                    self._fail(ParseError(431, "request head too large"))
            elif self._body_fed:
                self._pending = 0
            else:
                # A read without content: chunk lines, or the trailer section, whose field
                # llhttp keeps in pieces until it ends (RFC 9112 §7.1.2). It counts against the
                # head's limit, as in h11.
                self._pending += fed
                if self._pending > self._max:
                    self._fail(ParseError(431, "trailer section too large", self._method()))
            return
        mark = self._mark
        if mark is None:
            self._gap = b""  # (after a chunked body: not known)
        elif mark < len(data):
            # What follows the last request: CRs and LFs llhttp skipped, the start of at most
            # one empty line (RFC 9112 §2.2), or the connection is refused now.
            gap = self._gap + data[mark : mark + 3]
            if gap not in (b"\r", b"\r\n") or len(data) - mark > 2:
                self._fail(ParseError(400, "more than one empty line"))
                return
            self._gap = gap

    def _request_line(self, data: bytes, base: int) -> bytes:
        """The current request's bytes from its start (its line may have begun in an earlier
        read; a request before it in this read is not part of it)."""
        start = self._start
        if not self._in_message or start == -1:
            return data[base:]
        if start is None:
            return self._line + data[base:]
        return data[start:]

    def _decide(self, line: bytes) -> None:
        """A refused version: 505 or 400 once the request-line ended (bounded by the head's
        size), whichever reads it came in."""
        if b"\n" not in line.lstrip(b"\r\n") and len(line) <= self._max:
            self._undecided = line
            return
        self._undecided = None
        self._fail(ParseError(_error_status(_BAD_VERSION, line), _BAD_VERSION, self._method()))

    def _upgrade_ignored(self) -> bool:
        """Go on after an Upgrade request's head: whether parsing may continue."""
        if self._in_message:  # (llhttp completes the request itself; this is a guard)
            self._in_message = False
            self._events.append(End([]))
        # llhttp cannot read content after such a head, so a request that declares some is
        # refused (501) rather than served without it.
        head_index = max(i for i, e in enumerate(self._events) if type(e) is Head)
        head = self._events[head_index]
        assert type(head) is Head
        if any(
            name == b"transfer-encoding" or (name == b"content-length" and value.strip(b"0"))
            for name, value in head.headers
        ):
            del self._events[head_index:]
            self._fail(ParseError(501, "content after an Upgrade request head", head.method))
            return False
        return True

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
        # Bytes of the next request received: an empty line before it counts (its head
        # timeout runs from the first byte, and an idle one does not restart).
        if self._in_message:
            return 0 if self._head_done else max(self._pending, 1)
        return len(self._gap)

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
        self._tail = b""
        if not self._events and not self._failed:
            self._parser = None
