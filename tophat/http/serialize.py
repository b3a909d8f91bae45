"""Our response writer: precomputed status lines, headers written as given.

It produces exactly the bytes h11's serializer produces for the same response (proved by
``tests/test_serialize.py``, a property test against h11), without h11's per-response header
normalization and state bookkeeping — the framing and connection headers are already decided
by ``tophat.server.respond.response_fields``, and header names and values were validated when
they were set. One difference, deliberate: every field the server adds is named in lower case,
where h11 title-cases the two it adds itself (``Transfer-Encoding``, ``Connection``). A name
the application set is written as the application spelled it, as h11 does.
"""

from __future__ import annotations

from tophat.http.status import reason_phrase

__all__ = ["CHUNKED_END", "CONTINUE", "LINGER", "OVERLOADED", "chunk", "head"]

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
CHUNKED_END = b"0\r\n\r\n"

# What every runtime answers a connection over its limit with (RFC 9110 §15.6.4: 503 means
# overloaded; the server closes, so the client must not reuse the connection).
OVERLOADED = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: 19\r\n"
    b"connection: close\r\n"
    b"retry-after: 1\r\n"
    b"\r\n"
    b"Service Unavailable"
)
# After a runtime closes its side, how long it keeps reading (and discarding) so the client
# receives the last response instead of a reset (a close with unread input makes the kernel
# send RST).
LINGER = 2.0

# Status line per code, built once (saves a format per response).
_STATUS_LINES = {code: f"HTTP/1.1 {code} {reason_phrase(code)}\r\n" for code in range(100, 600)}


def head(status: int, fields: list[tuple[str, str]]) -> bytes:
    """The status line and header section, the fields in the order given (h11 sends Host
    first: callers put it there).

    Names are tokens and values Latin-1 (``Headers`` checked them when they were set), so the
    whole head is built as text and encoded once (an encode per name and per value cost more).
    """
    lines = "".join([f"{name}: {value}\r\n" for name, value in fields])
    return (_STATUS_LINES[status] + lines + "\r\n").encode("latin-1")


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (never empty: an empty chunk would end the body)."""
    return b"%x\r\n%s\r\n" % (len(data), data)
