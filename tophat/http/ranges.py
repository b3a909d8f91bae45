"""Range requests (RFC 9110 §14): parsing ``Range: bytes=...`` and framing the parts.

Pure functions; :mod:`tophat.http.files` applies them to a file. The policy, where the RFC
leaves a choice (each a ``MAY`` of §14.2):

* An invalid ``Range`` (another unit, bad syntax, a last-pos before its first-pos) is ignored:
  the whole representation is sent with 200, which is always correct.
* More than :data:`MAX_RANGES` range-specs: ignored too (§14.2 lets a server ignore a
  range-set of many small or overlapping ranges: a denial-of-service pattern). Sending the
  whole file bounds the work by the file's size.
* Overlapping or adjacent ranges are coalesced and the parts sent in ascending order (§14.2:
  "excluding those ranges that were ... coalesced into other ranges"): the bytes sent are
  bounded by the file's size plus a few part headers, whatever the request asks.
* Several ranges left after that get a ``multipart/byteranges`` response (§14.6), as clients
  that ask for several (PDF viewers, download managers) expect; one range gets a plain 206.
"""

from __future__ import annotations

import re
import secrets

__all__ = ["MAX_RANGES", "content_range", "multipart_parts", "parse_range"]

MAX_RANGES = 16
# RFC 9110 §14.1.1: range-spec = int-range / suffix-range / other-range; int-range =
# first-pos "-" [ last-pos ]; suffix-range = "-" suffix-length. (18 digits: under 2**63.)
_SPEC = re.compile(r"(\d{1,18})?-(\d{1,18})?")
_UNIT = re.compile(r"[ \t]*bytes[ \t]*=", re.IGNORECASE)

Ranges = list[tuple[int, int]]  # (first, end) with end exclusive


def parse_range(value: str, size: int) -> Ranges | None:
    """The satisfiable ranges of ``Range: value`` for a representation of ``size`` bytes,
    coalesced and in ascending order; ``[]`` if none is satisfiable (answer 416); ``None``
    when the field is to be ignored (invalid, too many ranges, or an empty representation).

    Example: ``parse_range("bytes=0-99, -100, 50-149", 1000)`` is ``[(0, 150), (900, 1000)]``.
    """
    unit = _UNIT.match(value)
    if unit is None or size <= 0:
        # An empty representation: §14.1.1 allows only a suffix-range, which would select
        # zero bytes a Content-Range cannot name. We send it whole (that is, empty) instead.
        return None
    specs = value[unit.end() :].split(",")
    if len(specs) > MAX_RANGES * 2:  # (cheap bound before parsing: empty members count too)
        return None
    found: Ranges = []
    count = 0
    for spec in specs:
        spec = spec.strip(" \t")
        if not spec:
            continue  # RFC 9110 §5.6.1: empty list members are ignored
        m = _SPEC.fullmatch(spec)
        if m is None:
            return None
        count += 1
        if count > MAX_RANGES:
            return None
        first, last = m.group(1), m.group(2)
        if first is not None:
            start = int(first)
            if last is not None and int(last) < start:
                return None  # §14.1.1: the range is invalid (so the whole field is)
            end = size if last is None else min(int(last) + 1, size)
            if start < size:  # §14.1.1: satisfiable if first-pos < length
                found.append((start, end))
        elif last is not None:
            suffix = int(last)
            if suffix > 0:  # §14.1.1: a suffix-length of zero is unsatisfiable
                found.append((max(size - suffix, 0), size))
        else:
            return None  # "-" alone
    if count == 0:
        return None
    return _coalesce(found)


def _coalesce(ranges: Ranges) -> Ranges:
    ranges.sort()
    merged: Ranges = []
    for start, end in ranges:
        if merged and start <= merged[-1][1]:  # overlapping or adjacent
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def content_range(start: int, end: int, size: int) -> str:
    """``Content-Range`` of bytes ``start`` to ``end`` (exclusive) of ``size`` (§14.4)."""
    return f"bytes {start}-{end - 1}/{size}"


def multipart_parts(
    ranges: Ranges, size: int, content_type: str | None
) -> tuple[str, list[bytes | tuple[int, int]], int]:
    """A ``multipart/byteranges`` body (RFC 9110 §14.6) as ``(its Content-Type, segments,
    length)``: each segment is bytes to send or ``(offset, count)`` of the file."""
    boundary = secrets.token_hex(16)  # random: it cannot occur in the file by design
    segments: list[bytes | tuple[int, int]] = []
    length = 0
    type_line = f"content-type: {content_type}\r\n" if content_type else ""
    for i, (start, end) in enumerate(ranges):
        sep = "\r\n" if i else ""  # the CRLF before a boundary belongs to it (RFC 2046 §5.1.1)
        head = (
            f"{sep}--{boundary}\r\n{type_line}"
            f"content-range: {content_range(start, end, size)}\r\n\r\n"
        ).encode("latin-1")
        segments.append(head)
        segments.append((start, end - start))
        length += len(head) + end - start
    tail = f"\r\n--{boundary}--\r\n".encode("latin-1")
    segments.append(tail)
    length += len(tail)
    return f"multipart/byteranges; boundary={boundary}", segments, length
