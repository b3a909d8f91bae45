"""Streaming ``multipart/form-data`` (RFC 7578): parts, read as they arrive, within limits.

The bytes are split by ``python-multipart`` (the ``forms`` extra; what Starlette uses): a
maintained, pure-Python streaming parser that takes a body in pieces of any size and reports
each part's header fields and data through callbacks: no part is held whole unless its reader
asks. The extra pins ``>=0.0.27`` for its security fixes: 0.0.18 stopped the per-byte logging
around boundaries (CVE-2024-53981), 0.0.27 bounded a part's header fields (count, line size).
The limits, the refusals and what a part looks like are ours.

Every limit is checked as the bytes arrive, and a refusal stops reading: the rest of the body
is never read into memory (the server drains at most ``ServerOpts.max_drain_size`` of it and
closes the connection otherwise). Sizes over a limit are ``413 Content Too Large``, and so is
a part too many: the request is well formed, its content is more than this server will
process (RFC 9110 §15.5.14), and a client sending fewer parts succeeds; 400 is kept for a
body that is not valid multipart (RFC 9110 §15.5.1), so a client can tell which it did.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict

from tophat._extras import MissingExtra
from tophat.glitch import Glitch
from tophat.http.headers import Headers

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartParser

__all__ = [
    "FORMS_EXTRA",
    "FormLimitArgs",
    "FormLimits",
    "MissingFormsExtra",
    "MultipartReader",
    "Part",
    "boundary_of",
    "parse_params",
]

KiB = 1024
MiB = 1024 * KiB

FORMS_EXTRA = "multipart/form-data needs python-multipart: pip install 'tophat[forms]'"

# RFC 2046 §5.1.1: a boundary is 1 to 70 characters of this set (a space, not last).
_BCHARS = frozenset(b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=? ")


class MissingFormsExtra(MissingExtra):
    """multipart/form-data without the ``forms`` extra; the message names it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FormLimits:
    """The limits of one form or multipart body. Sizes in bytes; ``None`` lifts a limit.

    ``ServerOpts.max_body_size`` (16 MiB by default) applies first: raise both for bigger
    uploads. What stays in memory is at most ``max_total`` (every byte held came from the
    body), and a file no more than ``spool_threshold`` before it goes to disk.
    """

    #: Parts (fields and files) of a multipart body, or fields of an urlencoded one. Over: 413.
    max_parts: int = 1000
    #: A field's value (a part without a filename; an urlencoded name or value). Over: 413.
    max_field_size: int = 1 * MiB
    #: A file's content. Over: 413.
    max_file_size: int | None = 16 * MiB
    #: The header fields of one part, names and values together. Over: 413.
    max_part_header_size: int = 16 * KiB
    #: The whole body, as read. Over: 413.
    max_total: int | None = 16 * MiB
    #: A file larger than this goes to a temporary file on disk (``req.form()`` only).
    spool_threshold: int = 1 * MiB

    def __post_init__(self) -> None:
        for name in ("max_parts", "max_field_size", "max_part_header_size", "spool_threshold"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        for name in ("max_file_size", "max_total"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0, or None for no limit")


class FormLimitArgs(TypedDict, total=False):
    """:class:`FormLimits`' fields as keyword arguments (``req.form(max_parts=50)``)."""

    max_parts: int
    max_field_size: int
    max_file_size: int | None
    max_part_header_size: int
    max_total: int | None
    spool_threshold: int


def too_large(what: str, limit: str, value: int | None) -> Glitch:
    return Glitch(413, f"{what} is larger than {limit} ({value} bytes)")


def parse_params(value: str) -> tuple[str, dict[str, str]]:
    """A header value's token and parameters: ``'form-data; name="a"'`` ->
    ``("form-data", {"name": "a"})`` (RFC 9110 §5.6.6; names lower-cased, quotes and their
    backslash escapes removed). RFC 7578 §4.2 forbids the ``filename*`` form: it is ignored."""
    token, _, rest = value.partition(";")
    params: dict[str, str] = {}
    i, n = 0, len(rest)
    while i < n:
        eq = rest.find("=", i)
        if eq < 0:
            break
        name = rest[i:eq].strip(" \t;").lower()
        i = eq + 1
        while i < n and rest[i] in " \t":
            i += 1
        if i < n and rest[i] == '"':
            chars: list[str] = []
            i += 1
            while i < n and rest[i] != '"':
                if rest[i] == "\\" and i + 1 < n:
                    i += 1
                chars.append(rest[i])
                i += 1
            text = "".join(chars)
            i = rest.find(";", i)
            i = n if i < 0 else i + 1
        else:
            end = rest.find(";", i)
            end = n if end < 0 else end
            text, i = rest[i:end].strip(" \t"), end + 1
        if name and "*" not in name and name not in params:
            params[name] = text
    return token.strip(" \t").lower(), params


def boundary_of(content_type: str) -> bytes:
    """The boundary of a ``multipart/form-data`` Content-Type, checked (RFC 2046 §5.1.1).

    Raises:
        Glitch: 400 when it is missing or not a valid boundary.
    """
    boundary = parse_params(content_type)[1].get("boundary", "")
    raw = boundary.encode("latin-1", "replace")
    if not 0 < len(raw) <= 70 or raw.endswith(b" ") or not _BCHARS.issuperset(raw):
        raise Glitch(400, "multipart/form-data needs a valid boundary parameter (RFC 2046)")
    return raw


_PART_END = None  # the event that ends a part's data


class Part:
    """One part of a ``multipart/form-data`` body, its data read as it arrives.

    ``async for chunk in part`` yields the content piece by piece (nothing kept); ``await
    part.read()`` gives it whole (within the field or file size limit). A part not read to
    its end is skipped when the next one is asked for.

    Attributes:
        headers: the part's header fields (values decoded as Latin-1, byte for byte).
        name: the form field's name (``Content-Disposition``'s ``name``).
        filename: the file name as the client sent it (UTF-8), ``None`` for a plain field.
            Never use it as a path: see ``tophat.http.forms.safe_filename``.
        content_type: the part's ``Content-Type``, ``None`` when absent.
        size: the bytes of content read so far.
    """

    __slots__ = (
        "_done",
        "_limit",
        "_reader",
        "content_type",
        "filename",
        "headers",
        "name",
        "size",
    )

    def __init__(self, reader: MultipartReader, headers: Headers) -> None:
        self._reader = reader
        self.headers = headers
        disposition, params = parse_params(headers.get("content-disposition", ""))
        if disposition != "form-data" or "name" not in params:
            raise Glitch(400, 'each part needs "Content-Disposition: form-data; name=..."')
        self.name = _utf8(params["name"])
        filename = params.get("filename")
        self.filename = None if filename is None else _utf8(filename)
        self.content_type = headers.get("content-type")
        encoding = headers.get("content-transfer-encoding", "binary").strip().lower()
        # RFC 7578 §4.7: senders do not use Content-Transfer-Encoding; decoding one (base64,
        # quoted-printable) would only widen what a client can make us do. Refused.
        if encoding not in ("binary", "8bit", "7bit"):
            raise Glitch(400, f"Content-Transfer-Encoding {encoding!r} is not supported")
        limits = reader.limits
        self._limit = limits.max_field_size if self.filename is None else limits.max_file_size
        self._done = False
        self.size = 0

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        limit = self._limit
        while not self._done:
            event = await self._reader.next_event()
            if event is _PART_END:
                self._done = True
                return
            assert isinstance(event, bytes)
            self.size += len(event)
            if limit is not None and self.size > limit:
                self._done = True
                if self.filename is None:
                    raise too_large(f"field {self.name!r}", "max_field_size", limit)
                raise too_large(f"file {self.name!r}", "max_file_size", limit)
            yield event

    async def read(self) -> bytes:
        """The rest of the part's content, whole."""
        return b"".join([chunk async for chunk in self._chunks()])

    async def skip(self) -> None:
        """Discard the rest of the part's content (still within its size limit)."""
        async for _ in self._chunks():
            pass

    def __repr__(self) -> str:
        return f"<Part name={self.name!r} filename={self.filename!r} size={self.size}>"


def _utf8(text: str) -> str:
    # Header bytes were decoded as Latin-1; browsers send names and file names in UTF-8
    # (the HTML form submission algorithm). A byte that is not valid UTF-8 becomes U+FFFD.
    return text.encode("latin-1").decode("utf-8", "replace")


class MultipartReader:
    """``async for part in reader``: the parts of a ``multipart/form-data`` body, streamed.

    Made by ``req.multipart()``. Each part must be read or skipped before the next (moving on
    skips it). Raises ``Glitch`` 400 (malformed, cut short) or 413 (a limit) as it reads.
    """

    __slots__ = (
        "_ended",
        "_error",
        "_events",
        "_head",
        "_parser",
        "_part",
        "_parts",
        "_read",
        "_total",
        "limits",
    )

    def __init__(
        self, read: Callable[[], Awaitable[bytes | None]], boundary: bytes, limits: FormLimits
    ) -> None:
        self.limits = limits
        self._read = read
        self._events: deque[bytes | Headers | None] = deque()
        self._ended = False
        self._total = 0
        self._parts = 0
        self._part: Part | None = None
        self._head = _PartHead(limits.max_part_header_size)
        self._parser, self._error = _make_parser(boundary, self, limits)

    # -- the parser's callbacks: they only queue events and count ------------------------------

    def on_part_begin(self) -> None:
        self._parts += 1
        if self._parts > self.limits.max_parts:
            raise Glitch(413, f"more than max_parts ({self.limits.max_parts}) parts")
        self._head.reset()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._head.add(self._head.name, data[start:end])

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._head.add(self._head.value, data[start:end])

    def on_header_end(self) -> None:
        self._head.end_field()

    def on_headers_finished(self) -> None:
        self._events.append(self._head.headers())

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        self._events.append(data[start:end])

    def on_part_end(self) -> None:
        self._events.append(_PART_END)

    def on_end(self) -> None:
        self._ended = True

    # -- reading ------------------------------------------------------------------------------

    async def next_event(self) -> bytes | Headers | None:
        """The next event: a part's Headers, a piece of its data, or None at its end."""
        events = self._events
        while not events:
            if self._ended:
                raise Glitch(400, "the multipart body has no more parts")
            chunk = await self._read()
            if chunk is None:
                raise Glitch(400, "the multipart body ends before its closing boundary")
            self._total += len(chunk)
            limit = self.limits.max_total
            if limit is not None and self._total > limit:
                raise too_large("the form", "max_total", limit)
            try:
                self._parser.write(chunk)
            except self._error as exc:
                if str(exc).startswith("Maximum header"):  # (count or line size of a part)
                    raise too_large(
                        "a part's header", "max_part_header_size", self.limits.max_part_header_size
                    ) from exc
                raise Glitch(400, "malformed multipart body", cause=exc) from exc
        return events.popleft()

    def __aiter__(self) -> MultipartReader:
        return self

    async def __anext__(self) -> Part:
        if self._part is not None:
            await self._part.skip()
            self._part = None
        if not self._events and self._ended:
            raise StopAsyncIteration
        event = await self.next_event()
        if not isinstance(event, Headers):  # (the parser gives head, data..., end, in order)
            raise Glitch(400, "malformed multipart body")
        self._part = Part(self, event)
        return self._part


class _PartHead:
    """A part's header fields as the parser reports them in pieces, within a size limit."""

    __slots__ = ("_fields", "_limit", "_size", "name", "value")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self.reset()

    def reset(self) -> None:
        self._fields: list[tuple[str, str]] = []
        self.name = bytearray()
        self.value = bytearray()
        self._size = 0

    def add(self, into: bytearray, piece: bytes) -> None:
        """Add a piece of a field's name (``into`` = ``.name``) or value (``.value``)."""
        self._size += len(piece)
        if self._size > self._limit:
            raise too_large("a part's header", "max_part_header_size", self._limit)
        into += piece

    def end_field(self) -> None:
        self._fields.append(
            (self.name.decode("latin-1").lower(), self.value.decode("latin-1").strip(" \t"))
        )
        self.name = bytearray()
        self.value = bytearray()

    def headers(self) -> Headers:
        return Headers.from_sent(self._fields)


def _make_parser(
    boundary: bytes, reader: MultipartReader, limits: FormLimits
) -> tuple[MultipartParser, type[Exception]]:
    try:
        from python_multipart.exceptions import MultipartParseError
        from python_multipart.multipart import MultipartParser
    except ImportError:
        raise MissingFormsExtra(FORMS_EXTRA) from None
    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": reader.on_part_begin,
            "on_part_data": reader.on_part_data,
            "on_part_end": reader.on_part_end,
            "on_header_field": reader.on_header_field,
            "on_header_value": reader.on_header_value,
            "on_header_end": reader.on_header_end,
            "on_headers_finished": reader.on_headers_finished,
            "on_end": reader.on_end,
        },
        # The parser's own bounds, never tighter than ours: one field line, and a count that
        # only a header over max_part_header_size could reach (a field takes >= 4 bytes).
        max_header_count=max(8, limits.max_part_header_size // 4),
        max_header_size=max(1, limits.max_part_header_size),
    )
    return parser, MultipartParseError
