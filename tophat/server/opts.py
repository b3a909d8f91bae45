"""ServerOpts: every limit and timeout of the server, in one typed, frozen place."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["KiB", "MiB", "ServerOpts"]

KiB = 1024
MiB = 1024 * KiB


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerOpts:
    """Limits, timeouts and switches for serving connections.

    Limits are on by default (secure defaults); pass ``None`` where one may be lifted.
    Times are in seconds, sizes in bytes.
    """

    #: Largest request head (request line + header fields), however it arrives. Over it: 431.
    max_head_size: int = 16 * KiB
    #: Most header fields in one request. Over it: 431.
    max_header_count: int = 100
    #: Longest request-target. RFC 9112 §3 recommends supporting at least 8000 octets. Over: 414.
    max_target_length: int = 8 * KiB
    #: Largest request body the server reads; a larger declared length is refused with 413
    #: before the endpoint runs, a larger chunked body with 413 once it passes the limit.
    max_body_size: int | None = 16 * MiB
    #: An unread request body up to this size is read and discarded after the response so the
    #: connection can be reused; a larger one makes the server close the connection instead.
    max_drain_size: int = 64 * KiB
    #: Bytes asked of the stream per read.
    read_size: int = 64 * KiB

    #: From the first byte of a request head to its end (slow-loris guard). Then: 408 + close.
    head_timeout: float | None = 10.0
    #: Longest wait for the next piece of a request body. Then: 408 (if possible) + close.
    body_timeout: float | None = 30.0
    #: How long an idle keep-alive connection is kept open waiting for the next request.
    keep_alive_timeout: float | None = 5.0
    #: Longest wait for the client to accept more response bytes. Then: close.
    write_timeout: float | None = 30.0

    #: Connections served at once by ``serve``; one more gets 503 and is closed.
    max_connections: int | None = 1000
    #: On shutdown, how long in-flight requests may take before they are cancelled.
    shutdown_grace: float = 10.0
    #: How long an endpoint may go on after its client closed or reset the connection before
    #: it is cancelled (``req.disconnected`` is set at once); ``None``: never cancelled.
    disconnect_grace: float | None = 5.0

    #: Put a Glitch's cause text into the response body (debugging only: it may leak details).
    verbose_glitch: bool = False
    #: Value of the ``Server`` response header; ``None`` sends none.
    server_header: str | None = None
    #: Log one line per response on the ``tophat.access`` logger.
    access_log: bool = False
    #: The request parser: ``"h11"`` (the reference), ``"httptools"`` (the ``fast`` extra), or
    #: ``"auto"``. Both go through the same strict validation layer.
    parser: Literal["auto", "h11", "httptools"] = "auto"
    #: How long an endpoint may run before it starts its response (calls ``w.send()``); then
    #: it is cancelled and the client gets 503. A response already started is never cut.
    #: Off by default: the time counts from the endpoint's call, so it covers reading the
    #: request body (a 16 MiB upload at 2 Mbit/s takes a minute) and a long poll's wait; a
    #: hung endpoint is cancelled anyway ``disconnect_grace`` after its client (or proxy) gives
    #: up. Behind a proxy, a little under the proxy's read timeout (nginx: 60 s) is a good
    #: value: past it nobody reads the answer.
    handler_timeout: float | None = None
    #: The body of an error response (a Glitch, the router's 404/405, an unhandled error's
    #: 500): ``"negotiate"`` sends RFC 9457 ``application/problem+json`` when the request's
    #: Accept prefers JSON and ``text/plain`` otherwise (``*/*`` alone: text), with
    #: ``Vary: Accept``; ``"json"`` and ``"text"`` always send that one. Refusals made before
    #: the endpoint runs (400, 408, 413, 414, 431, ...) are always ``text/plain``.
    error_format: Literal["negotiate", "json", "text"] = "negotiate"

    def __post_init__(self) -> None:
        for name in ("max_head_size", "max_header_count", "max_target_length", "read_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"ServerOpts.{name} must be positive")
        if self.max_drain_size < 0:
            raise ValueError("ServerOpts.max_drain_size must be >= 0")
        if self.parser not in ("auto", "h11", "httptools"):
            raise ValueError("ServerOpts.parser must be 'auto', 'h11' or 'httptools'")
        if self.handler_timeout is not None and not self.handler_timeout > 0:
            raise ValueError("ServerOpts.handler_timeout must be positive, or None for no limit")
        if self.error_format not in ("negotiate", "json", "text"):
            raise ValueError("ServerOpts.error_format must be 'negotiate', 'json' or 'text'")
