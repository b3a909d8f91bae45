"""llhttp's callbacks for the httptools adapter, and the state they keep: the request being
parsed (its head, its trailer fields, their sizes against the head's limits) and where requests
begin and end in the bytes fed, to count the empty lines llhttp skips between them.
``tophat.parsers.httptools_parser`` adds the parser interface on top.
"""

from __future__ import annotations

import re

import httptools

from tophat.parsers.events import DEFAULT_MAX_FIELDS, END_NO_TRAILERS, End, Event, Head, ParseError

__all__ = ["LlhttpState", "Stop"]


# The versions every request has, as bytes (saves an encode per request).
_VERSIONS = {"1.1": b"1.1", "1.0": b"1.0"}


class Stop(Exception):
    """Raised from a callback to stop llhttp: a limit was crossed, or a rule broken."""

    def __init__(self, status: int, reason: str, *, in_request: bool = True) -> None:
        super().__init__(status, reason)
        self.status = status
        self.reason = reason
        self.in_request = in_request  # False: before a request-line (no method to tell)


# What llhttp skips before a request-line: any run of CR and LF.
_CR_LF_RUN = re.compile(rb"[\r\n]*")


class LlhttpState:
    """The adapter's state, and llhttp's callbacks that keep it (``HttptoolsParser`` adds the
    parser interface)."""

    __slots__ = (
        "_base",
        "_body_fed",
        "_chunked",
        "_data",
        "_eof",
        "_events",
        "_failed",
        "_gap",
        "_head_done",
        "_head_fed",
        "_headers",
        "_in_message",
        "_line",
        "_mark",
        "_max",
        "_max_fields",
        "_parser",
        "_pending",
        "_size",
        "_start",
        "_tail",
        "_trailers",
        "_undecided",
        "_url",
    )

    values_checked = True  # llhttp refuses control characters (but HTAB) in field values

    def __init__(self, max_head_size: int, max_fields: int = DEFAULT_MAX_FIELDS) -> None:
        self._max = max_head_size
        self._max_fields = max_fields  # a head and its trailer section together
        self._events: list[Event | ParseError] = []
        # Made on the first byte of a request and dropped between requests: an idle keep-alive
        # connection holds no parser.
        self._parser: httptools.HttpRequestParser | None = None
        self._eof = False
        self._data = b""  # the bytes being fed (to classify llhttp's errors, and to count)
        self._base = 0  # where in them llhttp started (after an ignored Upgrade request)
        self._failed = False
        self._in_message = False
        self._head_done = False
        # A head in progress: the bytes fed since it began; a body: the bytes of reads that
        # brought none of its content. (A memory guard on top of the callbacks' size checks.)
        self._pending = 0
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._trailers: list[tuple[bytes, bytes]] = []
        self._size = 0  # the head's size; then the head's and its trailer section's
        self._chunked = False  # the request has Transfer-Encoding
        # Where requests begin and end in the bytes being fed, to count the empty lines llhttp
        # skips between them. ``_mark``: where the last request ended (None: inside a request,
        # or not known: after a chunked body, whose end we cannot locate without parsing its
        # chunks). ``_start``: where the current one began (None: in an earlier read; -1: not
        # known). ``_gap``: what llhttp skipped since the last request ended.
        self._mark: int | None = None
        self._start: int | None = None
        self._gap = b""
        self._head_fed = False  # the current head ended in the bytes being fed
        self._body_fed = 0  # content bytes of the current request in the bytes being fed
        self._tail = b""  # the last bytes of a head in progress (its end may straddle reads)
        # The start of a head in progress from earlier reads, until its first line ends: an
        # error's status depends on that line, however it was split into reads.
        self._line = b""
        # llhttp refused the version before the request-line ended: whether that is a 505 (a
        # well-formed line) or a 400 waits for the line's end, as h11 decides on whole lines.
        self._undecided: bytes | None = None

    # -- llhttp callbacks ---------------------------------------------------------------------

    def on_message_begin(self) -> None:
        mark = self._mark
        if mark is None:
            self._start = None if self._in_message else -1
        else:
            # RFC 9112 §2.2: a server SHOULD ignore at least one empty line (CRLF) received
            # prior to the request-line. llhttp skips any number of CRs and LFs; we allow one
            # CRLF, as h11 does (more held a connection open, one CRLF every few seconds).
            data = self._data
            run = _CR_LF_RUN.match(data, mark)
            start = run.end() if run is not None else mark  # (it always matches)
            if (start != mark or self._gap) and (
                start - mark > 2 or self._gap + data[mark:start] != b"\r\n"
            ):
                raise Stop(400, "more than one empty line", in_request=False)
            self._start = start
        self._gap = b""
        self._mark = None
        self._line = b""
        self._in_message = True
        self._head_done = self._head_fed = self._chunked = False
        self._pending = 0
        self._url = b""
        self._headers = []
        self._trailers = []
        self._size = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._size += len(url)
        if self._size > self._max:
            raise Stop(414, "request-target too long")

    def on_header(self, name: bytes, value: bytes | None) -> None:
        raw = value or b""
        # RFC 9112 §5.1 / RFC 9110 §5.5: whitespace around a field value is not part of it;
        # llhttp drops the leading whitespace but keeps the trailing (h11 drops both).
        field = (name.lower(), raw.rstrip(b" \t"))
        self._size += len(name) + len(raw) + 4
        if self._head_done:
            # A trailer field: the section counts against the head's limits (h11 refuses a
            # section over max_head_size too).
            self._trailers.append(field)
            if self._size > self._max or (
                len(self._headers) + len(self._trailers) > self._max_fields
            ):
                raise Stop(431, "trailer section too large")
            return
        self._headers.append(field)
        if self._size > self._max:
            raise Stop(431, "request head too large")
        if field[0] == b"transfer-encoding":
            # Transfer codings are case-insensitive (RFC 9110 §10.1.4): lower-cased, as h11
            # does, so an endpoint sees the same value whichever parser read it.
            field = (field[0], field[1].lower())
            self._headers[-1] = field
            self._chunked = True
            # RFC 9110 §5.6.1.2 asks a recipient to ignore empty list elements; llhttp ignores
            # a leading one (", chunked"), h11 none. Framing is where two parsers must agree
            # (RFC 9112 §11.2): refused, as h11 does (tests/test_rfc9112.py pins the deviation).
            if not all(element.strip(b" \t") for element in field[1].split(b",")):
                raise Stop(400, "empty element in Transfer-Encoding")

    def on_headers_complete(self) -> None:
        parser = self._parser
        assert parser is not None
        self._head_done = self._head_fed = True
        self._pending = self._body_fed = 0
        method = parser.get_method()
        text = parser.get_http_version()
        version = _VERSIONS.get(text) or text.encode()
        if version == b"0.9" and b" HTTP/0.9" not in self._line + self._data:
            # llhttp takes a request-line without a version ("GET /") for HTTP/0.9; h11 refuses
            # it as malformed, and so do we: 400. (An explicit "HTTP/0.9" gets 505 below.)
            raise Stop(400, "request-line without a version")
        # The size as h11 counts it: request line and header lines, CRLFs included
        # (``_size`` holds the target and the header lines already).
        size = len(method) + len(version) + 9 + self._size + 2
        self._size = size
        self._events.append(Head(method, self._url, version, self._headers, size))

    def on_body(self, body: bytes) -> None:
        self._body_fed += len(body)
        self._events.append(body)

    def on_message_complete(self) -> None:
        self._in_message = False
        # Where the request ended: known after a head without content or a Content-Length
        # body, not after a chunked one (we do not parse chunks).
        self._mark = None if self._chunked else self._end_of_request()
        trailers = self._trailers
        self._events.append(End(trailers) if trailers else END_NO_TRAILERS)

    def _end_of_request(self) -> int | None:
        base, start = self._base, self._start
        if not self._head_fed:
            return base + self._body_fed  # the content began with these bytes
        data = self._data
        if start is None:  # the head began in an earlier read; its end may straddle the two
            tail = self._tail
            i = (tail + data[base : base + 3]).find(b"\r\n\r\n") if tail else -1
            if i != -1:
                return base + i + 4 - len(tail) + self._body_fed
            start = base
        elif start < 0:
            return None
        # llhttp refuses a bare LF and obs-fold: the head it took ends at its first empty line.
        return data.find(b"\r\n\r\n", start) + 4 + self._body_fed
