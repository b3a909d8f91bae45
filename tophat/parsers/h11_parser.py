"""The h11 request parser (the reference): h11's readers over a receive buffer whose line
splitting is held to what llhttp accepts (see ``H11Parser``)."""

from __future__ import annotations

import re

import h11
from h11._readers import ChunkedReader, ContentLengthReader, maybe_read_from_IDLE_client
from h11._receivebuffer import ReceiveBuffer

from tophat.parsers.events import (
    CLOSED,
    DEFAULT_MAX_FIELDS,
    END_NO_TRAILERS,
    NEED_DATA,
    End,
    Event,
    Head,
    ParseError,
)

__all__ = ["H11Parser"]


# RFC 9112 §7.1: chunk = chunk-size [ chunk-ext ] CRLF; chunk-ext = *( BWS ";" BWS chunk-ext-name
# [ BWS "=" BWS chunk-ext-val ] ), a name a token, a value a token or a quoted-string (RFC 9110
# §5.6.2, §5.6.4). h11 takes anything from ";" to the CRLF (a bare CR too) and whitespace before
# it ("5 \r\n"); llhttp refuses both, and takes no BWS. A chunk line h11 delimited must match
# this (without BWS, as llhttp: tests/test_rfc9112.py pins the BWS cases as a kept deviation),
# so both parsers refuse the same lines. (A check of a line h11 found, not a chunk parser.)
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = rb'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"'
_CHUNK_LINE = re.compile(
    rb"[0-9A-Fa-f]+(?:;" + _TOKEN + rb"(?:=(?:" + _TOKEN + rb"|" + _QUOTED + rb"))?)*\r\n"
)


class _StrictBuffer(ReceiveBuffer):
    """h11's receive buffer, refusing in the lines h11 delimits what llhttp refuses.

    h11 ends a line at a bare LF, unfolds obs-fold and takes any chunk extension; llhttp answers
    400 to all three, as RFC 9112 allows (§2.2: a recipient MAY accept a bare LF; §5.2: a server
    MUST either reject obs-fold with 400 or replace it). Parsers that disagree about where a line
    ends are how requests get smuggled (RFC 9112 §11.2), so h11 refuses them too. It records the
    size of each field section it takes (the trailer section counts against the head limits).
    """

    section = 0  # bytes of the last field section (head or trailers) taken, CRLFs included

    def maybe_extract_lines(self) -> list[bytearray] | None:
        size = len(self._data)
        lines = super().maybe_extract_lines()
        if lines is None:
            return None
        size -= len(self._data)
        self.section = size
        # h11 split the section at LF and took one CR off the end of each line: every line
        # ended in CRLF exactly when the section is its lines plus a CRLF each, plus the empty
        # line's CRLF.
        if size != sum(map(len, lines)) + 2 * len(lines) + 2:
            raise h11.RemoteProtocolError("bare LF line ending", 400)
        for line in lines:
            if line[:1] in _FOLD:
                raise h11.RemoteProtocolError("obsolete line folding", 400)
        return lines

    def maybe_extract_next_line(self) -> bytearray | None:
        # (ChunkedReader's chunk-size lines are the only lines h11 takes one at a time.)
        line = super().maybe_extract_next_line()
        if line is not None and _CHUNK_LINE.fullmatch(line) is None:
            raise h11.RemoteProtocolError(f"illegal chunk line: {bytes(line)!r}", 400)
        return line


_FOLD = (b" ", b"\t")


class H11Parser:
    """h11's parser without h11's connection state machine.

    h11 parses with its readers (``h11._readers``: the request-line and header-field
    grammar, Content-Length and chunked bodies) over its ``ReceiveBuffer``; ``h11.Connection``
    adds a state machine for both peers on top. We never send through h11 (``_serialize``
    writes responses) and keep the connection's HTTP state ourselves (``_connection``), so we
    call the readers directly, as ``Connection.next_event`` does, and keep its checks (the
    size of an incomplete event, end of input). The state machine cost ~5.7 µs per request
    (``Connection()``, ``receive_data`` and ``next_event`` 12.8 µs vs 7.1 µs for the readers
    on a one-field GET). These are h11 internals: pyproject pins h11's minor version and
    ``tests/test_h11_leniency.py`` pins what we use, and checks our events against
    ``h11.Connection``'s. The buffer is a :class:`_StrictBuffer`: what h11 accepts and llhttp
    refuses in the lines h11 delimits is refused (docs/parsers.md).
    """

    __slots__ = (
        "_buffer",
        "_done",
        "_eof",
        "_error",
        "_fields_left",
        "_max",
        "_max_fields",
        "_reader",
        "_room",
        "_skipped_empty_line",
    )

    values_checked = False  # h11 lets control characters other than CR, LF, NUL through

    def __init__(self, max_head_size: int, max_fields: int = DEFAULT_MAX_FIELDS) -> None:
        self._max = max_head_size
        self._max_fields = max_fields
        # Made on a request's first byte, dropped between requests when empty: an idle
        # keep-alive connection holds no parser state.
        self._buffer: _StrictBuffer | None = None
        self._reader: ContentLengthReader | ChunkedReader | None = None  # None: a head next
        self._done = False  # the request ended; next_cycle() before the next one
        self._eof = False
        self._error: ParseError | None = None  # once refused, always refused
        self._skipped_empty_line = False  # before this request's line (one is ignored)
        # What a chunked request's trailer section may still take of the head's limits.
        self._room = self._fields_left = 0

    @property
    def at_eof(self) -> bool:
        return self._eof

    def feed(self, data: bytes) -> None:
        if not data:
            self._eof = True
            return
        buf = self._buffer
        if buf is None:
            buf = self._buffer = _StrictBuffer()
        buf.__iadd__(data)  # (+= would retype it as h11's ReceiveBuffer)

    def buffered(self) -> int:
        # The empty line ignored before this request's line counts: bytes of the next request
        # were received, so its head timeout runs (and an idle one does not restart).
        n = len(self._buffer) if self._buffer is not None else 0
        return n + 2 if self._skipped_empty_line else n

    def holds_next(self) -> bool:
        return self._done and bool(self._buffer)

    def head_pending(self) -> bool:
        return self._buffer is not None and self._buffer._data.startswith(b"HEAD ")

    def next_event(self) -> Event:
        if self._error is not None:
            raise self._error
        try:
            return self._next_event()
        except ParseError as exc:
            self._error = exc
            raise

    def _next_event(self) -> Event:
        if self._done:
            raise RuntimeError("the request ended: call next_cycle() first")
        buf = self._buffer
        if buf is None:
            return CLOSED if self._eof and self._reader is None else self._need_data(0)
        try:
            if self._reader is None:
                return self._head(buf)
            event = self._reader(buf)
            if event is None:
                if self._eof and not buf:
                    self._reader.read_eof()  # raises: the body is incomplete
                return self._need_data(len(buf))
        except h11.ProtocolError as exc:
            raise self._error_of(exc) from exc
        if isinstance(event, h11.Data):
            return bytes(event.data)
        self._done = True
        trailers = event.headers
        if not trailers:
            return END_NO_TRAILERS
        # The trailer section counts against what the head left of its limits.
        if buf.section > self._room or len(trailers) > self._fields_left:
            raise ParseError(431, "Request header fields too large (trailers)")
        return End([(name.lower(), value) for name, value in trailers.raw_items()])

    def _head(self, buf: _StrictBuffer) -> Event:
        before = len(buf)
        # (h11 consumes the head's lines before it may refuse them: whether it is a HEAD
        # request, whose refusal carries no content, is read first.)
        head_request = self.head_pending()
        try:
            request = maybe_read_from_IDLE_client(buf)
        except h11.ProtocolError as exc:
            if self._skipped_empty_line:
                raise self._error_of(exc, b"HEAD" if head_request else None) from exc
            if str(exc) == "no request line received":
                # RFC 9112 §2.2: a server SHOULD ignore at least one empty line (CRLF) before
                # a request-line (as after a POST body from an old client). h11 consumed it;
                # we ignore one per request, and refuse a second.
                self._skipped_empty_line = True
                return self._next_event()
            if buf._data == b"\r" and not self._eof:
                return NEED_DATA  # (h11 refuses a lone CR at once: it may start that CRLF)
            raise self._error_of(exc, b"HEAD" if head_request else None) from exc
        if request is None:
            if not buf and self._eof:
                return CLOSED
            return self._need_data(len(buf))
        # raw_items() and lower(): twice as fast as iterating the Headers sequence.
        fields = [(name.lower(), value) for name, value in request.headers.raw_items()]
        size = before - len(buf)
        self._reader = reader = _body_reader(fields)
        if type(reader) is ChunkedReader:
            self._room = self._max - size
            self._fields_left = self._max_fields - len(fields)
        return Head(request.method, request.target, request.http_version, fields, size)

    def _need_data(self, buffered: int) -> Event:
        # What h11.Connection.next_event checks when it has to wait for more input.
        if buffered > self._max:
            # 431 is for a head; the request line alone over the limit gets 414.
            assert self._buffer is not None
            status = 431 if b"\n" in bytes(self._buffer) or self._reader else 414
            raise ParseError(status, "Receive buffer too long")
        if self._eof:
            raise ParseError(400, "peer unexpectedly closed connection")
        return NEED_DATA

    def _error_of(self, exc: h11.ProtocolError, method: bytes | None = None) -> ParseError:
        status = exc.error_status_hint
        if status == 501 and "Transfer-Encoding" in str(exc):
            # h11 refuses every coding but chunked while parsing the head, dropping the
            # codings: we cannot tell "gzip, chunked" (501, a SHOULD) from "chunked, gzip"
            # (400, a MUST, RFC 9112 §6.3). 400 is right for the MUST.
            status = 400
        return ParseError(status, str(exc), method)

    def end_without_content(self) -> None:
        self._done = True

    def take_whole_body(self, length: int) -> bytes | None:
        buf, reader = self._buffer, self._reader
        if buf is None or len(buf) < length or not isinstance(reader, ContentLengthReader):
            return None
        data = reader(buf)  # all of it: maybe_extract_at_most(length) has that much
        if not isinstance(data, h11.Data) or not isinstance(reader(buf), h11.EndOfMessage):
            raise RuntimeError("h11 did not read a whole body it had")
        self._done = True
        return bytes(data.data)

    def next_cycle(self) -> None:
        self._reader = None
        self._done = False
        self._skipped_empty_line = False
        if self._buffer is not None and not self._buffer:
            self._buffer = None  # nothing pipelined: let the buffer go (idle memory)


def _body_reader(fields: list[tuple[bytes, bytes]]) -> ContentLengthReader | ChunkedReader:
    # h11's framing rule for requests (RFC 9112 §6.3): chunked when Transfer-Encoding says so
    # (h11 refused any other coding), else Content-Length (h11 checked it and merged identical
    # duplicates), else no content. The strict layer refuses both together.
    length = 0
    for name, value in fields:
        if name == b"transfer-encoding":
            return ChunkedReader()
        if name == b"content-length":
            length = int(value)
    return ContentLengthReader(length)
