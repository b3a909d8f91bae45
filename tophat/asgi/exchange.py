"""One ASGI ``http`` exchange: the Request built from a scope, and the writer's sink.

:class:`_Exchange` is the request body's source (pulled from ``receive()``, the body-size
limit enforced as it arrives) and the response writer's sink (``http.response.start`` /
``http.response.body`` messages, a disconnect watcher beside a streamed body). Also
:class:`ClientDisconnected`, which it raises. Run by the application ``tophat.asgi.to_asgi``
builds; the public names are re-exported by :mod:`tophat.asgi`. Framing follows the table the
native server follows (:mod:`tophat.http.framing`); the ASGI server frames streamed bodies.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar, cast
from urllib.parse import quote, quote_from_bytes, unquote

from tophat._asynclib import Event, current, new_deadline, new_event
from tophat.asgi.types import AppConfig, Message, Receive, Scope, Send
from tophat.glitch import Glitch
from tophat.http.files import FileChanged
from tophat.http.framing import SERVER_MANAGED, content_length, sends_content
from tophat.http.headers import Headers
from tophat.http.request import Request
from tophat.http.writer import Response
from tophat.server.exchange import aborted, open_body, run_endpoint
from tophat.server.exchange import aclose as _aclose
from tophat.server.exchange import next_piece as _next_piece
from tophat.server.opts import ServerOpts
from tophat.server.respond import LengthMismatch, check_length, date, refusal_fields
from tophat.server.stream import StreamClosed
from tophat.server.validate import declared_too_large

T = TypeVar("T")

log = logging.getLogger("tophat.asgi")
error_log = logging.getLogger("tophat.error")

# RFC 3986 §3.3: characters a path keeps unencoded (when a server gives no raw_path).
_PATH_SAFE = "/!$&'()*+,;=:@~"


class ClientDisconnected(StreamClosed):
    """The client went away (the ASGI server reported ``http.disconnect``).

    A :class:`~tophat.StreamClosed`, hence a ``ConnectionError`` and an ``OSError``: the same
    family the native server raises when a connection breaks. A handler that lets it escape is
    not at fault: the adapter logs it at DEBUG and sends nothing.
    """


class _Disconnected:
    """``req.disconnected`` under ASGI: set once ``receive()`` said ``http.disconnect``.

    An ASGI server reports a departed client only through ``receive()``, so ``wait()`` listens
    there (reading the request body ahead, as the watcher beside a streamed response does).
    """

    __slots__ = ("_exchange",)

    def __init__(self, exchange: Exchange) -> None:
        self._exchange = exchange

    def is_set(self) -> bool:
        return self._exchange.disconnected

    async def wait(self) -> None:
        exchange = self._exchange
        while not exchange.disconnected:
            await exchange._watch()  # returns once disconnected, or past max_body_size
            if not exchange.disconnected:
                try:
                    await exchange._pull()  # (too large: the rest is received and dropped)
                except Exception as exc:
                    log.debug("receive() failed while waiting for a disconnect: %r", exc)
                    exchange.disconnected = True


class Exchange:
    """One ``http`` scope: the request's body source and the response writer's sink."""

    __slots__ = (
        "_ahead",
        "_asyncio",
        "_pulling",
        "_receive",
        "_send",
        "_taken",
        "_too_large",
        "app",
        "disconnected",
        "finished",
        "received",
        "request",
        "started",
    )

    trailers: Headers | None = None  # ASGI delivers no request trailers

    def __init__(self, app: AppConfig, scope: Scope, receive: Receive, send: Send) -> None:
        self.app = app
        self._receive = receive
        self._send = send
        self._asyncio = current() == "asyncio"
        self._ahead: deque[bytes] = deque()  # body pieces received, not yet read
        self._pulling: Event | None = None  # set when the receive() in flight returns
        self._taken: Event | None = None  # set when the handler takes a piece read ahead
        self._too_large = False
        self.disconnected = False
        self.finished = False  # the last http.request message arrived
        self.received = 0
        self.started = False  # http.response.start was sent
        self.request = _request(scope, self)

    # -- the request body (the Request's _BodySource) -----------------------------------------

    async def read_body(self) -> bytes | None:
        while True:
            if self._ahead:
                taken, self._taken = self._taken, None
                if taken is not None:
                    taken.set()
                return self._ahead.popleft()
            if self._too_large:
                raise Glitch(413, "Content Too Large")
            if self.finished:
                return None
            if self.disconnected:
                raise ClientDisconnected("the client disconnected before sending the whole body")
            await self._pull()

    async def _pull(self) -> None:
        """Take one message from ``receive()``, or wait for the one already being received.

        Only one ``receive()`` is ever in flight: the handler reading its body and the
        disconnect watcher share it.
        """
        if self._pulling is not None:
            await self._pulling.wait()
            return
        self._pulling = done = new_event()
        try:
            message = await self._receive()
            kind = message["type"]
            if kind == "http.request":
                piece = bytes(message.get("body", b""))
                if not message.get("more_body", False):
                    self.finished = True
                self.received += len(piece)
                limit = self.app.opts.max_body_size
                if limit is not None and self.received > limit:
                    self._too_large = True
                elif piece:
                    self._ahead.append(piece)
            elif kind == "http.disconnect":
                self.disconnected = True
            else:  # ASGI: "If an application receives an invalid event ..., it should raise"
                raise RuntimeError(f"unexpected ASGI message from receive(): {kind!r}")
        finally:
            self._pulling = None
            done.set()

    async def _watch(self) -> None:
        """Listen for ``http.disconnect`` while a streamed response is sent.

        The disconnect comes after the request body, so the body is read ahead of the
        handler: up to ``max_drain_size`` bytes (at least one piece), which keeps memory bounded
        and a handler streaming its request body back its backpressure, and lets a handler
        that never reads a small body still see the client go.
        """
        limit = self.app.opts.max_drain_size
        try:
            while not (self.disconnected or self._too_large):
                if self._ahead and sum(map(len, self._ahead)) >= limit:
                    self._taken = taken = new_event()
                    await taken.wait()
                else:
                    await self._pull()
        except Exception as exc:  # a receive() that fails: the connection is gone
            log.debug("receive() failed while watching for a disconnect: %r", exc)
            self.disconnected = True

    # -- the response (the ResponseWriter's _Sink) --------------------------------------------

    def _head(self, response: Response) -> list[tuple[str, str]]:
        """The user's header fields minus framing, plus Content-Length for a known length.

        Without a length the ASGI server frames the body (chunked on HTTP/1.1). Names are
        lower-cased, as ASGI requires.
        """
        headers: list[tuple[str, str]] = []
        close = self._too_large  # the rest of the body stays unread: close, as accept() does
        for lname, _, value in response.headers.fields():
            if lname in SERVER_MANAGED:
                # A user "Connection: close" asks to close; other values are dropped.
                close = close or (lname == "connection" and "close" in value.lower())
                continue
            headers.append((lname, value))
        if self.app.date_header and "date" not in response.headers:
            headers.append(("date", date()))
        length = content_length(response.status, response.length)
        if length is not None:
            headers.append(("content-length", length))
        if close:
            headers.append(("connection", "close"))
        return headers

    async def send_response(self, response: Response) -> tuple[int, list[tuple[str, str]], int]:
        """Send ``response`` as ASGI messages; return (status, headers, body bytes written).

        As in :func:`tophat.accept`, a streamed body's first piece is pulled before the head
        goes out, so an error raised before it still gets a proper error response.
        """
        if self.started:
            raise RuntimeError("a response was already sent on this request")
        status, body, length = response.status, response.body, response.length
        no_body = not sends_content(self.request.method, status)
        pieces, first = await open_body(body, no_body)
        headers = self._head(response)
        self.started = True
        send = self._send_or_gone
        raw = [(name.encode("ascii"), value.encode("latin-1")) for name, value in headers]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        if pieces is None:
            data = b"" if no_body or not isinstance(body, bytes) else body
            await send({"type": "http.response.body", "body": data, "more_body": False})
            return status, headers, len(data)
        try:
            written = await self._with_watcher(self._stream(pieces, first, length))
        except (LengthMismatch, FileChanged) as exc:  # (a file shrank or changed under it)
            raise aborted(exc) from exc
        return status, headers, written

    async def _send_or_gone(self, message: Message) -> None:
        try:
            await self._send(message)
        except OSError:
            # ASGI spec 2.4: send() raises an OSError once the client is gone.
            self.disconnected = True
            raise

    async def _stream(
        self, pieces: AsyncIterator[bytes], first: bytes | None, length: int | None
    ) -> int:
        send = self._send_or_gone
        written = 0
        try:
            while first is not None:
                if self.disconnected:
                    raise ClientDisconnected("the client disconnected while the response was sent")
                check_length(length, written + len(first), ended=False)
                await send({"type": "http.response.body", "body": first, "more_body": True})
                written += len(first)
                first = await _next_piece(pieces)
        finally:
            await _aclose(pieces)
        check_length(length, written, ended=True)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return written

    async def _with_watcher(self, work: Awaitable[T]) -> T:
        """Await ``work`` while ``_watch`` runs beside it; stop the watcher when it is done."""
        if self._asyncio:
            watcher = asyncio.ensure_future(self._watch())
            try:
                return await work
            finally:
                watcher.cancel()
                await asyncio.wait((watcher,))
        import trio

        results: list[T] = []
        errors: list[Exception] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch)
            try:
                results.append(await work)
            except Exception as exc:  # re-raised below, outside the nursery's ExceptionGroup
                errors.append(exc)
            finally:
                nursery.cancel_scope.cancel()
        if errors:
            raise errors[0]
        return results[0]

    # -- one exchange (as tophat.server.connection.Connection._exchange) ---------------------

    async def run(self) -> None:
        request = self.request
        if declared_too_large(request.headers.get("content-length"), self.app.opts.max_body_size):
            # As the native server: refuse before the endpoint runs, and close.
            log.info("refused request from %s: 413 Content Too Large", _peer(request))
            await self._refuse(413, "Content Too Large")
            return
        try:
            deadline = new_deadline(self.app.opts.handler_timeout)
            await run_endpoint(self.app.endpoint, request, self, deadline)
        except OSError as exc:
            log.debug("client gone before the error response: %r", exc)

    # -- the ExchangeSink that run_endpoint uses ---------------------------------------------

    @property
    def gone(self) -> bool:
        return self.disconnected

    @property
    def verbose_glitch(self) -> bool:
        return self.app.opts.verbose_glitch

    @property
    def opts(self) -> ServerOpts:
        return self.app.opts

    def mark_close(self) -> None:
        pass  # the ASGI server owns the connection; an unfinished response makes it close

    async def _refuse(self, status: int, reason: str) -> None:
        # The body stays unread: the refusal closes (RFC 9112 §9.6), as the native server's.
        headers, body = refusal_fields(
            reason, keep_alive_requested=True, server_header=None, date_field=self.app.date_header
        )
        raw = [(name.encode("ascii"), value.encode("latin-1")) for name, value in headers]
        self.started = True
        await self._send({"type": "http.response.start", "status": status, "headers": raw})
        data = b"" if self.request.method == "HEAD" else body
        await self._send({"type": "http.response.body", "body": data, "more_body": False})


def _request(scope: Scope, body: Exchange) -> Request:
    """The Request for an ``http`` scope: target from raw_path (the server's root_path moved
    to ``req.root_path``, as a mounting router does), headers decoded as Latin-1."""
    path = _target_path(scope["path"], scope.get("raw_path"))
    root_path = scope.get("root_path", "") or ""
    if root_path:
        path = _without_root(path, root_path)
    query = scope.get("query_string", b"")
    target = path + "?" + query.decode("latin-1") if query else path
    # (ASGI servers send lower-case names, but the spec says only "should")
    headers = Headers.from_wire([(n.lower(), v) for n, v in scope["headers"]])
    client, server = scope.get("client"), scope.get("server")
    request = Request(
        scope["method"],
        target,
        headers,
        version=scope.get("http_version", "1.1"),
        client=cast("tuple[str, int]", tuple(client)) if client else None,
        server=cast("tuple[str, int]", tuple(server)) if server else None,
        scheme=scope.get("scheme", "http"),
        body=body,
        disconnected=_Disconnected(body),
    )
    request.root_path = root_path
    return request


def _target_path(path: str, raw: bytes | None) -> str:
    """The request-target's path, percent-encoded: raw_path as the client sent it (so an
    encoded "/" stays part of its segment), its non-ASCII bytes escaped (ASGI: raw UTF-8 may
    be there); ``path`` instead when there is no raw_path, or when it does not decode to
    ``path`` (a middleware rewrote ``path``: the spec makes ``path`` the one to follow)."""
    if raw:
        encoded = quote_from_bytes(raw, safe=_PATH_SAFE + "%")
        if unquote(encoded) == path:  # (as servers decode: UTF-8, errors replaced)
            return encoded
    return quote(path, safe=_PATH_SAFE)


def _without_root(path: str, root_path: str) -> str:
    """``path`` (percent-encoded) without the prefix that decodes to ``root_path`` (ASGI:
    root_path is a prefix of the decoded path, whatever encoding the client used; uvicorn puts
    it in front of path and raw_path, hypercorn does not)."""
    ends = [i for i, c in enumerate(path) if c == "/"] + [len(path)]
    for end in ends[1:]:
        if unquote(path[:end]) == root_path:
            return path[end:] or "/"
    return path


def _peer(request: Request) -> str:
    return f"{request.client[0]}:{request.client[1]}" if request.client else "peer"
