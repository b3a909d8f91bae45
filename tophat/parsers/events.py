"""The request parsers behind one small event interface: h11 (the reference) and httptools.

``accept`` never talks to a parser library directly. It feeds bytes and pulls events:

* :class:`Head` — a complete request head (method, target, version, header fields);
* ``bytes`` — a piece of the body;
* :class:`End` — the end of the body, with any trailer fields;
* ``NEED_DATA`` — feed more bytes; ``CLOSED`` — the client closed between requests.

A parser raises :class:`ParseError` (with the status to answer) for input it refuses. After an
``End`` the connection answers, then calls :meth:`next_cycle` before the next request; bytes of
pipelined requests are kept. Parsers only parse: what the RFCs forbid beyond the grammar is
checked once, for both, by ``tophat.server.validate``; responses are written by
``tophat.http.serialize``.
"""

from __future__ import annotations

from typing import Final, Literal, Protocol

__all__ = [
    "CLOSED",
    "DEFAULT_MAX_FIELDS",
    "END_NO_TRAILERS",
    "NEED_DATA",
    "End",
    "Event",
    "Head",
    "ParseError",
    "Parser",
    "ParserName",
    "Sentinel",
]

ParserName = Literal["auto", "h11", "httptools"]


class Sentinel:
    """``NEED_DATA`` and ``CLOSED``: what ``next_event`` returns when it has no event."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


NEED_DATA: Final = Sentinel("NEED_DATA")
CLOSED: Final = Sentinel("CLOSED")


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


#: The End of a body without trailer fields (one shared instance).
END_NO_TRAILERS: Final = End([])

Event = Head | bytes | End | Sentinel


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

    def take_whole_body(self, length: int) -> bytes | None:
        """The request's whole content (``length`` bytes, declared by Content-Length) if it
        was all received with the head, taking its end too; else None, nothing taken."""

    def next_cycle(self) -> None:
        """Get ready for the next request (after ``End``), keeping pipelined bytes."""

    def buffered(self) -> int:
        """Bytes received and not parsed yet."""
        ...

    def holds_next(self) -> bool:
        """Whether bytes after the current request's end were received (a pipelined request);
        only meaningful once that end was taken."""
        ...

    def head_pending(self) -> bool:
        """Whether the incomplete head received so far is a HEAD request's (its refusal, a
        408, then carries no content: RFC 9110 §9.3.2)."""
        ...

    @property
    def at_eof(self) -> bool: ...


#: ``ServerOpts().max_header_count``, for a parser made without one.
DEFAULT_MAX_FIELDS: Final = 100
