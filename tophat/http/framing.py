"""Response framing, one table for both sinks (the native server and the ASGI adapter).

Which responses carry content, which header fields the server computes rather than takes from
the user, and the ``Content-Length`` a response is sent with. The native server adds what only
it decides (chunked or close-delimited bodies, ``Connection``); an ASGI server frames a
streamed body itself.
"""

from __future__ import annotations

__all__ = [
    "EMPTY_STATUS",
    "NO_CONTENT_STATUS",
    "RESET_CONTENT",
    "SERVER_MANAGED",
    "content_length",
    "sends_content",
]

# RFC 9110 §6.4.1 / §15.3.5 / §15.4.5: responses to HEAD, and 204 and 304 responses, never
# carry content. RFC 9110 §8.6: no Content-Length in a 204 response.
NO_CONTENT_STATUS = frozenset((204, 304))
# RFC 9110 §15.3.6: a server MUST NOT generate content in a 205 response; unlike a 204 it is
# framed (RFC 9112 §6.3), as empty: Content-Length: 0.
RESET_CONTENT = 205
EMPTY_STATUS = NO_CONTENT_STATUS | {RESET_CONTENT}  # whatever the body, none is sent
# Framing is computed from the body, never taken from the user (RFC 9112 §6); the connection
# header is ours too (a user "Connection: close" asks us to close; other values are dropped).
SERVER_MANAGED = frozenset(("content-length", "transfer-encoding", "connection", "keep-alive"))


def sends_content(method: str, status: int) -> bool:
    """Whether the response's body bytes go out (RFC 9110 §6.4.1: not for HEAD, 204, 205, 304)."""
    return method != "HEAD" and status not in EMPTY_STATUS


def content_length(status: int, length: int | None) -> str | None:
    """The ``Content-Length`` value to send for a body of ``length`` bytes (``None``: streamed,
    length unknown), or ``None`` when the response has none: a 204 or 304, or a streamed body.

    A 205 says ``0`` whatever its body, none of which is sent.
    """
    if status in NO_CONTENT_STATUS:
        return None
    if status == RESET_CONTENT:
        return "0"
    return None if length is None else str(length)
