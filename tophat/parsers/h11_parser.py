"""The h11 request parser (the reference): ``h11.Connection`` through its public API, plus byte
checks that hold the lines h11 delimits to what llhttp accepts (see ``H11Parser``)."""

from __future__ import annotations

import re
from typing import Final

import h11

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

# Where the parser is in a request (``_phase``).
_HEAD: Final = 0  # reading a head (h11's client state IDLE)
_CONTENT: Final = 1  # a Content-Length body (SEND_BODY)
_CHUNKED: Final = 2  # a chunked body (SEND_BODY): its framing bytes are checked
_ENDED: Final = 3  # the request ended; next_cycle() before the next one

_DATA = h11.Data
_END = h11.EndOfMessage


def _status(exc: h11.RemoteProtocolError) -> int:
    # h11 answers 501 only for a Transfer-Encoding it refuses while reading the head (any
    # coding but chunked, or two fields), dropping the codings: we cannot tell "gzip, chunked"
    # (501, a SHOULD) from "chunked, gzip" (400, a MUST, RFC 9112 §6.3). 400 is right for the
    # MUST. (tests/test_h11_leniency.py pins both 501s; were a later h11 to give 501 for
    # something else, 400 still refuses it.)
    status = exc.error_status_hint
    return 400 if status == 501 else status


def _line_error(lines: bytes | bytearray) -> str | None:
    """Why the lines of a field section (a head, or a trailer section, with its empty line)
    that h11 delimited are refused, or None. Bytes are counted, not parsed again."""
    # h11 ends a line at a bare LF too: every LF must be a CRLF's.
    if lines.count(b"\n") != lines.count(b"\r\n"):
        return "bare LF line ending"
    # h11 unfolds obs-fold (a line starting with SP or HTAB; at a section's start it refuses it).
    # (find, not `in`: bytes.__contains__ first tries its operand as an int and formats the
    # TypeError: ~0.1 µs a test.)
    if lines.find(b"\n ") >= 0 or lines.find(b"\n\t") >= 0:
        return "obsolete line folding"
    return None


class H11Parser:
    """h11's parser: one ``h11.Connection(h11.SERVER)`` per request, through its public API.

    h11 reads the request line, the header fields and the body framing; ``Connection`` refuses
    what h11 refuses (with ``RemoteProtocolError.error_status_hint``) and bounds an incomplete
    head. We never send through h11 (``tophat.http.serialize`` writes responses), so h11's side
    of a connection never reaches DONE and ``start_next_cycle`` cannot be used: each request
    gets a fresh ``Connection``, given what the last one held after its request
    (``trailing_data``). That costs ~1 µs, less than sending a dummy response through h11 to
    be allowed ``start_next_cycle`` (~9 µs), and an idle connection holds no parser state.

    What h11 accepts and llhttp refuses in the lines h11 delimits is refused here too
    (docs/parsers.md): a bare LF ending a line, obs-fold, chunk lines outside RFC 9112 §7.1, more
    than one empty line before a request-line. Parsers that disagree about where a line ends
    are how requests get smuggled (RFC 9112 §11.2), and RFC 9112 allows each refusal (§2.2: a
    recipient MAY accept a bare LF; §5.2: a server MUST either reject obs-fold with 400 or
    replace it). These are checks of bytes h11 already delimited, located with public state:
    a head is the bytes fed until h11 returns its ``Request``, less ``trailing_data``; a
    chunked body's framing is what each event consumed (``trailing_data`` before and after)
    beyond the event's data. Nothing here decides on an exception's message.
    """

    __slots__ = (
        "_conn",
        "_crlf",
        "_eof",
        "_error",
        "_fields_left",
        "_framing",
        "_held",
        "_max",
        "_max_fields",
        "_phase",
        "_raw",
        "_room",
        "_skipped_empty_line",
    )

    values_checked = False  # h11 lets control characters other than CR, LF, NUL through

    def __init__(self, max_head_size: int, max_fields: int = DEFAULT_MAX_FIELDS) -> None:
        self._max = max_head_size
        self._max_fields = max_fields
        # Made on a request's first byte, dropped between requests: an idle keep-alive
        # connection holds no parser state.
        self._conn: h11.Connection | None = None
        self._phase = _HEAD
        # In a head, the bytes h11 holds (or, without a Connection yet, will be given); in a
        # chunked body, what it held after the last event plus what was fed since.
        self._raw: bytes | bytearray = b""
        self._held = 0  # in a body and after it: the bytes h11 holds (a count)
        self._eof = False
        self._error: ParseError | None = None  # once refused, always refused
        self._skipped_empty_line = False  # before this request's line (one is ignored)
        # A chunked body: framing bytes consumed since the last data, and how many bytes of
        # the CRLF after the last chunk's data are still to come at their start.
        self._framing = b""
        self._crlf = 0
        # What a chunked request's trailer section may still take of the head's limits.
        self._room = self._fields_left = 0

    @property
    def at_eof(self) -> bool:
        return self._eof

    def feed(self, data: bytes) -> None:
        conn = self._conn
        if not data:
            self._eof = True
            if conn is not None:
                conn.receive_data(b"")
            return
        phase = self._phase
        if phase in (_HEAD, _CHUNKED):
            raw = self._raw
            if not raw:
                self._raw = data
            else:
                if type(raw) is bytes:
                    raw = self._raw = bytearray(raw)  # a head in pieces: appends in O(1)
                raw += data
        if conn is not None:
            conn.receive_data(data)
            self._held += len(data)

    def buffered(self) -> int:
        if self._phase != _HEAD:
            return self._held
        # The empty line ignored before this request's line counts: bytes of the next request
        # were received, so its head timeout runs (and an idle one does not restart).
        n = len(self._raw)
        return n + 2 if self._skipped_empty_line else n

    def holds_next(self) -> bool:
        return self._phase == _ENDED and self._held > 0

    def head_pending(self) -> bool:
        return self._phase == _HEAD and self._raw[:5] == b"HEAD "

    def next_event(self) -> Event:
        if self._error is not None:
            raise self._error
        # (The dispatch inline, and the wait for a request's first byte answered here: one or
        # two calls less per request: -1.1k instructions a request.)
        conn = self._conn
        phase = self._phase
        try:
            if phase == _HEAD:
                if conn is None and not self._raw:
                    return CLOSED if self._eof else NEED_DATA
                return self._head(conn)
            assert conn is not None
            if phase == _CONTENT:
                return self._content(conn)
            if phase == _CHUNKED:
                return self._chunked(conn)
        except ParseError as exc:
            self._error = exc
            raise
        raise RuntimeError("the request ended: call next_cycle() first")

    # -- the head ---------------------------------------------------------------------------

    def _start(self) -> h11.Connection | None:
        """A Connection for the request whose first bytes are ``_raw``, or None to wait."""
        raw = self._raw
        if raw[:1] == b"\r" and not self._skipped_empty_line:
            # RFC 9112 §2.2: a server SHOULD ignore at least one empty line (CRLF) before a
            # request-line (as after a POST body from an old client); h11 refuses it. We
            # ignore one per request, and let h11 refuse a second. A lone CR may start it.
            if len(raw) == 1:
                if self._eof:
                    raise ParseError(400, "incomplete empty line before a request")
                return None
            if raw[1:2] == b"\n":
                self._skipped_empty_line = True
                raw = self._raw = raw[2:]
                if not raw:
                    return None
        # (max_incomplete_event_size positionally: a class called with a keyword gets it in a
        # dict, ~0.1 µs.)
        conn = self._conn = h11.Connection(h11.SERVER, self._max)
        conn.receive_data(raw if type(raw) is bytes else bytes(raw))
        if self._eof:
            conn.receive_data(b"")
        return conn

    def _head(self, conn: h11.Connection | None) -> Event:
        if conn is None:
            conn = self._start()
            if conn is None:
                if self._eof and not self._raw:
                    return CLOSED  # (an empty line, then the end of input)
                return NEED_DATA
        raw = self._raw
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            status = _status(exc)
            if status == 431:  # (h11's limit on an incomplete head: no method known, as before)
                # 431 is for a head; the request line alone over the limit gets 414.
                raise ParseError(414 if b"\n" not in raw else 431, str(exc)) from exc
            raise ParseError(status, str(exc), self._method_hint()) from exc
        if type(event) is not h11.Request:
            if event is h11.NEED_DATA:
                return NEED_DATA
            if type(event) is h11.ConnectionClosed:
                return CLOSED
            raise RuntimeError(f"h11 gave {event!r} for a request head")
        # raw_items() and lower(): twice as fast as iterating the Headers sequence.
        fields = [(name.lower(), value) for name, value in event.headers.raw_items()]
        # Usually the head's lines are all CRLF-ended and unfolded: then up to the first empty
        # line (the head's end for h11 too, as no LF is bare) they are exactly a request line, a
        # line a field and the empty line (a folded field, or two Content-Length lines h11
        # merged, take more lines; a bare LF makes the counts differ). Counting says so without
        # asking h11 where the head ended (trailing_data copies its buffer, the body included)
        # or searching the lines again: -0.6 µs a request (py-spy, bench/perf.py's hello).
        lines = len(fields) + 2
        size = raw.find(b"\r\n\r\n") + 4
        if raw.count(b"\r\n", 0, size) == lines == raw.count(b"\n", 0, size):
            rest: bytes | bytearray = raw[size:] if size < len(raw) else b""
        else:
            rest = conn.trailing_data[0]
            size = len(raw) - len(rest)
            error = _line_error(raw[:size] if rest else raw)
            if error is not None:
                raise ParseError(400, error, self._method_hint())
        self._held = len(rest)
        self._raw = b""
        self._phase = _CONTENT
        # h11's framing rule for requests (RFC 9112 §6.3): chunked when Transfer-Encoding says
        # so (h11 refused any other coding), else Content-Length, else no content. The strict
        # layer refuses both together.
        for name, _ in fields:
            if name == b"transfer-encoding":
                self._phase = _CHUNKED
                self._raw = rest
                self._framing = b""
                self._crlf = 0
                self._room = self._max - size
                self._fields_left = self._max_fields - len(fields)
                break
        return Head(event.method, event.target, event.http_version, fields, size)

    def _method_hint(self) -> bytes | None:
        # (The answer to a HEAD request carries no content, its refusal neither.)
        return b"HEAD" if self._raw[:5] == b"HEAD " else None

    # -- the body ---------------------------------------------------------------------------

    def _content(self, conn: h11.Connection) -> Event:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise ParseError(_status(exc), str(exc)) from exc
        if type(event) is _DATA:
            data = bytes(event.data)
            self._held -= len(data)
            return data
        if type(event) is _END:
            self._phase = _ENDED
            return END_NO_TRAILERS
        if event is h11.NEED_DATA:
            return NEED_DATA
        raise RuntimeError(f"h11 gave {event!r} in a body")

    def _chunked(self, conn: h11.Connection) -> Event:
        before = self._raw
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise ParseError(_status(exc), str(exc)) from exc
        rest = conn.trailing_data[0]
        self._raw = rest
        self._held = len(rest)
        data = event.data if isinstance(event, h11.Data) else b""
        # What h11 consumed ends with the event's data; the bytes before it are framing: the
        # CRLF after the last chunk's data, a chunk line, at the end the trailer section.
        taken = len(before) - len(rest) - len(data)
        if taken:
            self._framing += before[:taken]
        framing = self._framing
        if self._crlf and framing:  # (h11 checked that it is CRLF)
            cut = min(self._crlf, len(framing))
            framing = self._framing = framing[cut:]
            self._crlf -= cut
        if framing:
            # A chunk line, which h11 takes whole and ends at the first CRLF.
            end = framing.find(b"\r\n") + 2
            if _CHUNK_LINE.fullmatch(framing, 0, end) is None:
                raise ParseError(400, f"illegal chunk line: {bytes(framing[:end])!r}")
        if isinstance(event, h11.Data):
            self._framing = b""
            self._crlf = 2 if event.chunk_end else 0
            return bytes(data)
        if isinstance(event, h11.EndOfMessage):
            self._phase = _ENDED
            section = framing[framing.find(b"\r\n") + 2 :]
            error = _line_error(section)
            if error is not None:
                raise ParseError(400, error + " (trailers)")
            trailers = event.headers
            if not trailers:
                return END_NO_TRAILERS
            # The trailer section counts against what the head left of its limits.
            if len(section) > self._room or len(trailers) > self._fields_left:
                raise ParseError(431, "Request header fields too large (trailers)")
            return End([(name.lower(), value) for name, value in trailers.raw_items()])
        if event is h11.NEED_DATA:
            return NEED_DATA
        raise RuntimeError(f"h11 gave {event!r} in a chunked body")

    # -- the end of a request ---------------------------------------------------------------

    def end_without_content(self) -> None:
        # (h11's EndOfMessage, next, takes no bytes: the next cycle's Connection skips it.)
        self._phase = _ENDED

    def take_whole_body(self, length: int) -> bytes | None:
        conn = self._conn
        if self._phase != _CONTENT or self._held < length or conn is None:
            return None
        # h11 gives at most what the body has left, and has all of it: one Data, the whole
        # body. (Its EndOfMessage, next, takes no bytes: the next cycle's Connection skips it.)
        try:
            data = conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise RuntimeError("h11 refused a whole body it had") from exc
        if not isinstance(data, h11.Data) or len(data.data) != length:
            raise RuntimeError("h11 did not read a whole body it had")
        self._held -= length
        self._phase = _ENDED
        return bytes(data.data)

    def next_cycle(self) -> None:
        conn = self._conn
        self._phase = _HEAD
        self._skipped_empty_line = False
        self._conn = None
        # What h11 holds after the request (pipelined bytes) starts the next one.
        self._raw = conn.trailing_data[0] if conn is not None and self._held else b""
        self._held = 0
        self._framing = b""
