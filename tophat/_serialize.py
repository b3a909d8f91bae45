"""Our response writer: precomputed status lines, headers written as given.

It produces exactly the bytes h11's serializer produces for the same response (proved by
``tests/test_serialize.py``, a property test against h11), without h11's per-response header
normalization and state bookkeeping — the framing and connection headers are already decided
by ``_connection`` (``_head``), and header names and values were validated when they were set.
"""

from __future__ import annotations

from .glitch import reason_phrase

__all__ = ["CHUNKED_END", "CONTINUE", "chunk", "head"]

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
CHUNKED_END = b"0\r\n\r\n"

# Status line per code, built once (saves a format and an encode per response).
_STATUS_LINES = {
    code: b"HTTP/1.1 %d %s\r\n" % (code, reason_phrase(code).encode("latin-1"))
    for code in range(100, 600)
}


def head(status: int, headers: list[tuple[bytes, bytes]]) -> bytes:
    """The status line and header section. Host, if present, goes first (as h11 does)."""
    parts = [_STATUS_LINES[status]]
    hosts = None
    for name, value in headers:
        if name.lower() == b"host":
            hosts = hosts or []
            hosts.append(b"%s: %s\r\n" % (name, value))
        else:
            parts.append(b"%s: %s\r\n" % (name, value))
    if hosts:
        parts[1:1] = hosts
    parts.append(b"\r\n")
    return b"".join(parts)


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (never empty: an empty chunk would end the body)."""
    return b"%x\r\n%s\r\n" % (len(data), data)
