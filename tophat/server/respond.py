"""What a connection puts in a response head: the fields, framing and close decided here.

Pure functions of the response, the request and the connection's state, no I/O: the
connection's writing half (``sender.py``) asks for the fields, serializes them with
``tophat.http.serialize`` and sends them. Refusals (a request answered without running the
endpoint) are built here too, and the access log line is formatted here.
"""

from __future__ import annotations

import logging
import time
from email.utils import formatdate

from tophat.http import serialize
from tophat.http.framing import NO_CONTENT_STATUS, SERVER_MANAGED, content_length
from tophat.http.request import REQUEST_ID_KEY, Request
from tophat.http.writer import Response

__all__ = [
    "COALESCE",
    "STARTED_KEY",
    "LengthMismatch",
    "check_length",
    "date",
    "log_access",
    "refusal",
    "refusal_fields",
    "response_fields",
]

access_log = logging.getLogger("tophat.access")

# Every field the server adds itself is named in lower case (the rule in docs/architecture.md;
# names are case-insensitive, RFC 9110 §5.1).
_CLOSE = ("connection", "close")
_CHUNKED = ("transfer-encoding", "chunked")

# A fixed body up to this size is sent in one write with the head; a larger one separately,
# which saves copying it.
COALESCE = 16 * 1024


class LengthMismatch(Exception):
    """A response body that does not match its declared length: broken on the wire, so the
    connection closes (the native server and the ASGI adapter both check with ``check_length``)."""

    def __init__(self, declared: int, written: int) -> None:
        super().__init__(
            f"response body does not match its declared length: {declared} bytes declared, "
            f"{'more' if written > declared else written} given"
        )


def check_length(declared: int | None, written: int, *, ended: bool) -> None:
    """Raise ``LengthMismatch`` when ``written`` body bytes break the declared length: more
    than declared at any time, or other than declared once the body ``ended``.

    RFC 9112 §6.3: a recipient reads exactly Content-Length bytes, so a longer body would be
    taken as the start of the next response and a shorter one would hang the client.
    """
    if declared is not None and (written > declared or (ended and written != declared)):
        raise LengthMismatch(declared, written)


_DATE: tuple[int, str] = (0, "")


def date() -> str:
    """The Date field's value now.

    RFC 9110 §6.6.1: an origin server with a clock MUST send Date; one-second resolution, so
    it is formatted once a second.
    """
    global _DATE
    now = int(time.time())
    if _DATE[0] != now:
        _DATE = (now, formatdate(now, usegmt=True))
    return _DATE[1]


def response_fields(
    response: Response,
    request: Request,
    close: bool,
    keep_alive_requested: bool,
    server_header: str | None,
) -> tuple[list[tuple[str, str]], bool]:
    """The header fields to send, and whether the connection closes after this response.

    The fields are the user's, minus framing, plus Date, Server, framing and ``Connection:
    close``. ``close`` says whether the connection already decided to close;
    ``keep_alive_requested`` whether the client allowed another request. We compute every
    framing and connection header ourselves (rather than leave some to h11) so that
    ``ResponseWritten.headers`` is exactly what went out.
    """
    status = response.status
    headers: list[tuple[str, str]] = []
    has_date = has_server = False
    hosts = 0
    for lname, name, value in response.headers.fields():
        if lname in SERVER_MANAGED:
            close = close or (lname == "connection" and "close" in value.lower())
            continue
        if lname == "date":
            has_date = True
        elif lname == "server":
            has_server = True
        elif lname == "host":
            # h11 writes Host first (test_serialize.py holds us to h11's bytes).
            headers.insert(hosts, (name, value))
            hosts += 1
            continue
        headers.append((name, value))
    if not has_date:
        headers.append(("date", date()))
    if not has_server and server_header:
        headers.append(("server", server_header))
    chunked = False
    length = content_length(status, response.length)  # (204/304: none; 205: "0")
    if length is not None:
        headers.append(("content-length", length))
    elif status in NO_CONTENT_STATUS:
        pass  # no framing at all
    elif request.version == "1.1":
        chunked = True  # a streamed body of unknown length
    else:
        close = True  # RFC 9112 §6.3: an HTTP/1.0 client reads the body until the close
    # Where the framing and close headers go reproduces h11's serializer (tests/
    # test_serialize.py): a close we decide stays where we add it; one the request asked for,
    # and Transfer-Encoding, go last (h11 title-cases those two; we keep our lower case).
    # (We will close after this response: we say so, RFC 9112 §9.6.)
    if close and keep_alive_requested:
        headers.append(_CLOSE)
    if chunked:
        headers.append(_CHUNKED)
    if close and not keep_alive_requested:
        headers.append(_CLOSE)
    return headers, close


def refusal_fields(
    reason: str, *, keep_alive_requested: bool, server_header: str | None, date_field: bool = True
) -> tuple[list[tuple[str, str]], bytes]:
    """The header fields and body of a plain-text refusal (a request we will not serve), for
    the native server and the ASGI adapter alike; it always closes the connection."""
    body = reason.encode("latin-1", "replace")
    headers = [("date", date())] if date_field else []
    headers.append(("content-type", "text/plain; charset=utf-8"))
    headers.append(("content-length", str(len(body))))
    if keep_alive_requested:
        headers.append(_CLOSE)
    if server_header:
        headers.append(("server", server_header))
    if not keep_alive_requested:
        headers.append(_CLOSE)
    return headers, body


def refusal(
    status: int, reason: str, *, head: bool, keep_alive_requested: bool, server_header: str | None
) -> bytes:
    """A refusal's bytes (``refusal_fields``); ``head``: the request was a HEAD, so the
    response carries no content (RFC 9110 §9.3.2)."""
    headers, body = refusal_fields(
        reason, keep_alive_requested=keep_alive_requested, server_header=server_header
    )
    data = serialize.head(status, headers)
    return data if head else data + body


#: ``req.ext`` key of the time (``time.perf_counter()``) the exchange began, for the access log's
#: duration: set by ``exchange.run_endpoint`` when ``ServerOpts.access_log`` is on.
STARTED_KEY = "tophat.started"


def log_access(client: tuple[str, int] | None, request: Request, status: int, written: int) -> None:
    """One access log line (logger ``tophat.access``, INFO), client-sent text escaped::

        127.0.0.1:51234 - "GET /items?page=2 HTTP/1.1" 200 1234 0.412ms id=4bf92f3577b34da6

    The duration runs from the endpoint's call (the request head read and checked, a few
    microseconds after its last byte arrived) to the response's last byte handed to the
    connection; ``id=`` is there when a ``request_id()`` middleware gave the request one. The
    record also carries each field as an attribute, for a JSON formatter: ``method``, ``path``
    (the request-target as sent, escaped), ``status``, ``bytes``, ``duration_ms``, ``client``
    (``"host:port"`` or None) and ``request_id`` (or None).
    """
    if not access_log.isEnabledFor(logging.INFO):
        return
    ext = request.ext
    started = ext.get(STARTED_KEY)
    duration = None if started is None else round((time.perf_counter() - started) * 1000, 3)
    rid = ext.get(REQUEST_ID_KEY)
    # (the middleware admits only [A-Za-z0-9._:-], but anyone may write req.ext)
    rid = None if rid is None else _escape(str(rid))
    peer = f"{client[0]}:{client[1]}" if client else None
    method, path = _escape(request.method), _escape(request.target)
    access_log.info(
        '%s - "%s %s HTTP/%s" %d %d%s%s',
        peer or "-",
        method,
        path,
        request.version,
        status,
        written,
        "" if duration is None else f" {duration:.3f}ms",
        "" if rid is None else f" id={rid}",
        extra={
            "method": method,
            "path": path,
            "status": status,
            "bytes": written,
            "duration_ms": duration,
            "client": peer,
            "request_id": rid,
        },
    )


# Every C0 control, DEL and every byte above it (a target is bytes decoded as Latin-1, so
# \xNN shows the byte as sent, and C1 controls such as \x9b, a one-byte CSI, stay inert),
# the quote that delimits the request line, and the escape character itself.
_ESCAPES = {i: f"\\x{i:02x}" for i in (*range(0x20), *range(0x7F, 0x100))} | {
    ord('"'): '\\"',
    ord("\\"): "\\\\",
}


def _escape(text: str) -> str:
    """Make client-controlled text safe for a log line: no control character (CR, LF, ESC,
    C1), no raw quote; anything past Latin-1 (not from the wire) as its ``repr`` escape."""
    text = text.translate(_ESCAPES)
    return text if text.isascii() else text.encode("ascii", "backslashreplace").decode("ascii")
