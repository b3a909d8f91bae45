"""The request parsers behind one small event interface: h11 (the reference) and httptools.

``accept`` never talks to a parser library directly. It feeds bytes and pulls events:

* :class:`Head` — a complete request head (method, target, version, header fields);
* ``bytes`` — a piece of the body;
* :class:`End` — the end of the body, with any trailer fields;
* ``NEED_DATA`` — feed more bytes; ``CLOSED`` — the client closed between requests.

A parser raises :class:`ParseError` (with the status to answer) for input it refuses. After an
``End`` the connection answers, then calls :meth:`next_cycle` before the next request; bytes of
pipelined requests are kept. Parsers only parse: what the RFCs forbid beyond the grammar is
checked once, for both, by ``_validate``; responses are written by ``_serialize``.
"""

from __future__ import annotations

from typing import Final, Literal, Protocol

import h11

__all__ = [
    "CLOSED",
    "NEED_DATA",
    "End",
    "Head",
    "ParseError",
    "Parser",
    "ParserName",
    "make_parser",
    "resolve_parser",
]

ParserName = Literal["auto", "h11", "httptools"]


class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


NEED_DATA: Final = _Sentinel("NEED_DATA")
CLOSED: Final = _Sentinel("CLOSED")


class Head:
    """A parsed request head. Header names are lower-cased bytes, in the order received."""

    __slots__ = ("headers", "http_version", "method", "size", "target")

    def __init__(
        self,
        method: bytes,
        target: bytes,
        http_version: bytes,
        headers: list[tuple[bytes, bytes]],
        size: int,
    ) -> None:
        self.method = method
        self.target = target
        self.http_version = http_version
        self.headers = headers
        self.size = size  # bytes the head occupied, for the head-size limit

    def __repr__(self) -> str:
        return f"<Head {self.method!r} {self.target!r} HTTP/{self.http_version.decode()}>"


class End:
    """The end of a request body; ``trailers`` are the trailer fields of a chunked body."""

    __slots__ = ("trailers",)

    def __init__(self, trailers: list[tuple[bytes, bytes]]) -> None:
        self.trailers = trailers


_END_NO_TRAILERS: Final = End([])

Event = Head | bytes | End | _Sentinel


class ParseError(Exception):
    """Input the parser refuses; ``status`` is the response to send before closing."""

    def __init__(self, status: int, message: str, method: bytes | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.method = method  # when known: the answer to a HEAD request carries no body


class Parser(Protocol):
    #: Whether the parser itself refuses control characters in field values.
    values_checked: bool

    def feed(self, data: bytes) -> None:
        """Add received bytes; ``b""`` means the client closed its side."""

    def next_event(self) -> Event: ...

    def end_without_content(self) -> None:
        """The request just parsed has no content (the caller checked its header fields):
        take its end now, instead of ``next_event`` returning ``End``."""

    def next_cycle(self) -> None:
        """Get ready for the next request (after ``End``), keeping pipelined bytes."""

    def buffered(self) -> int:
        """Bytes received and not parsed yet."""
        ...

    @property
    def at_eof(self) -> bool: ...


def resolve_parser(name: ParserName) -> Literal["h11", "httptools"]:
    """``auto`` is httptools when the ``fast`` extra is installed, else h11 (the reference)."""
    if name != "auto":
        return name
    return "httptools" if AUTO == "httptools" and _have_httptools() else "h11"


def _have_httptools() -> bool:
    try:
        import httptools  # noqa: F401
    except ImportError:
        return False
    return True


#: What ``parser="auto"`` means in this process: "httptools" (when installed) or "h11".
AUTO: Literal["h11", "httptools"] = "httptools"


def make_parser(name: ParserName, max_head_size: int) -> Parser:
    if resolve_parser(name) == "httptools":
        from ._parse_httptools import HttptoolsParser

        return HttptoolsParser(max_head_size)
    return H11Parser(max_head_size)


# A shared, never-fed Connection standing for "no request started": next_event() on it says
# NEED_DATA, buffered() says 0. feed() replaces it with a fresh Connection.
_IDLE = h11.Connection(h11.SERVER)


class H11Parser:
    """h11 as a pure parser: one fresh ``h11.Connection`` per request.

    We never send through h11 (``_serialize`` writes responses), so its state machine would
    never let the server side finish a cycle; a new Connection per request (about 1 µs) hands
    the pipelined bytes over instead.
    """

    __slots__ = ("_conn", "_eof", "_max")

    values_checked = False  # h11 lets control characters other than CR, LF, NUL through

    def __init__(self, max_head_size: int) -> None:
        self._max = max_head_size
        self._conn = h11.Connection(h11.SERVER, max_incomplete_event_size=max_head_size)
        self._eof = False

    @property
    def at_eof(self) -> bool:
        return self._eof

    def feed(self, data: bytes) -> None:
        if not data:
            self._eof = True
        if self._conn is _IDLE:
            self._conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self._max)
        self._conn.receive_data(data)

    def buffered(self) -> int:
        # h11 exposes unparsed bytes only as a copy (trailing_data); its receive buffer's length
        # is the cheap answer (pinned by tests/test_h11_leniency.py).
        return len(self._conn._receive_buffer)

    def next_event(self) -> Event:
        conn = self._conn
        if conn is _IDLE:
            return NEED_DATA  # nothing received since the last request (saves ~1.4 µs in h11)
        before = len(conn._receive_buffer)
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            status = exc.error_status_hint
            if status == 431 and b"\n" not in bytes(conn._receive_buffer):
                status = 414  # the request line alone is over the limit
            elif status == 501 and "Transfer-Encoding" in str(exc):
                # h11 refuses every coding but chunked while parsing the head, dropping the
                # codings: we cannot tell "gzip, chunked" (501, a SHOULD) from "chunked, gzip"
                # (400, a MUST, RFC 9112 §6.3). 400 is right for the MUST.
                status = 400
            raise ParseError(status, str(exc)) from exc
        t = type(event)
        if t is h11.Data:
            return bytes(event.data)  # type: ignore[union-attr]
        if t is h11.Request:
            ev: h11.Request = event  # type: ignore[assignment]
            return Head(
                ev.method,
                ev.target,
                ev.http_version,
                # raw_items() and lower(): twice as fast as iterating the Headers sequence.
                [(name.lower(), value) for name, value in ev.headers.raw_items()],
                before - len(conn._receive_buffer),
            )
        if t is h11.EndOfMessage:
            trailers = event.headers  # type: ignore[union-attr]
            return End(list(trailers)) if trailers else _END_NO_TRAILERS
        if event is h11.NEED_DATA:
            return NEED_DATA
        if t is h11.ConnectionClosed:
            return CLOSED
        # PAUSED: after a CONNECT or Upgrade request; the server refuses CONNECT and answers
        # Upgrade requests normally, so this only shows up when the next request is asked for
        # too early — a bug in the caller.
        raise RuntimeError(f"unexpected h11 event {event!r}")

    def end_without_content(self) -> None:
        # Nothing to do: h11 would return EndOfMessage without consuming a byte, and
        # next_cycle hands the bytes after the head to a fresh Connection (skipping that
        # next_event saves ~3 µs of h11 state machine per request).
        pass

    def next_cycle(self) -> None:
        old = self._conn
        leftover = bytes(old._receive_buffer)
        if not leftover and not self._eof:
            # Reuse nothing, allocate nothing: an idle keep-alive connection holds no h11 state
            # until its next request arrives (about 1 KiB saved per idle connection).
            self._conn = _IDLE
            return
        self._conn = conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self._max)
        if leftover:
            conn.receive_data(leftover)
        if self._eof:
            conn.receive_data(b"")
