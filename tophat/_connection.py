"""accept(): serve one HTTP/1.1 connection over any byte stream, until it ends.

This module never imports a runtime. It drives an ``h11.Connection`` with bytes from a
:class:`~tophat._stream.Stream`, checks each request head with the strict layer in
``_validate``, runs the endpoint, and decides after every exchange whether the connection may
carry another request.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from email.utils import formatdate
from typing import Any

import h11

from ._headers import Headers
from ._opts import ServerOpts
from ._request import NEVER_STOPPING, Request, Stopping
from ._stream import Phase, Stream, StreamClosed, StreamTimeout
from ._validate import TE_REFUSAL_STATUS, check_request
from ._writer import Response, ResponseWriter, ResponseWritten
from .glitch import Glitch, reason_phrase

__all__ = ["Endpoint", "accept"]

Endpoint = Callable[[Request, ResponseWriter], Awaitable[ResponseWritten]]

log = logging.getLogger("tophat.connection")
error_log = logging.getLogger("tophat.error")
access_log = logging.getLogger("tophat.access")

_DEFAULT_OPTS = ServerOpts()

# RFC 9110 §6.4.1 / §15.3.5 / §15.4.5: responses to HEAD, and 1xx, 204 and 304 responses, never
# carry content. RFC 9110 §8.6: no Content-Length in a 1xx or 204 response.
_NO_CONTENT_STATUS = frozenset((204, 304))
# Framing is computed from the body, never taken from the user (RFC 9112 §6).
_FRAMING = frozenset(("content-length", "transfer-encoding"))

_BROKEN = (OSError, StreamClosed)
_CONTINUE = h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")


class _Aborted(Exception):
    """The response could not be completed; the connection must close."""


class _Body:
    """The body of one request, read lazily from its connection."""

    __slots__ = ("conn", "finished", "received", "trailers")

    def __init__(self, conn: _Connection) -> None:
        self.conn = conn
        self.finished = False
        self.received = 0
        self.trailers: Headers | None = None

    async def read_body(self) -> bytes | None:
        if self.finished:
            return None
        if self.conn._body is not self:
            raise RuntimeError("the request is over: its body can no longer be read")
        return await self.conn._read_body_piece(self)


class _Connection:
    __slots__ = (
        "_body",
        "_cached_date",
        "_eof",
        "_must_close",
        "_request",
        "_response_started",
        "_set_phase",
        "client",
        "endpoint",
        "h11",
        "opts",
        "scheme",
        "server",
        "stopping",
        "stream",
    )

    def __init__(
        self,
        stream: Stream,
        endpoint: Endpoint,
        opts: ServerOpts,
        client: tuple[str, int] | None,
        server: tuple[str, int] | None,
        scheme: str,
        stopping: Stopping,
    ) -> None:
        self.stream = stream
        self.endpoint = endpoint
        self.opts = opts
        self.client = client
        self.server = server
        self.scheme = scheme
        self.stopping = stopping
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=opts.max_head_size)
        set_phase: Callable[[Phase], None] | None = getattr(stream, "set_phase", None)
        self._set_phase = set_phase
        self._eof = False
        self._body: _Body | None = None
        self._request: Request | None = None
        self._response_started = False
        self._must_close = False

    # -- reading ------------------------------------------------------------------------------

    def _buffered(self) -> int:
        # Bytes h11 holds but has not parsed. h11 exposes them only as a copy (trailing_data);
        # its receive buffer's length is the cheap answer (pinned by test_h11_leniency).
        return len(self.h11._receive_buffer)

    async def _receive(self, phase: Phase) -> None:
        if self._set_phase is not None:
            self._set_phase(phase)
        data = await self.stream.receive_some(self.opts.read_size)
        if not data:
            self._eof = True
        self.h11.receive_data(data)

    async def _next_request(self) -> tuple[h11.Request, int] | None:
        """The next request head and its size in bytes, or None when the client is done."""
        conn = self.h11
        start = self._buffered()
        received = 0
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                phase: Phase = "head" if self._buffered() else "idle"
                if phase == "idle" and self.stopping.is_set():
                    return None
                before = self._buffered()
                await self._receive(phase)
                received += self._buffered() - before
                continue
            if isinstance(event, h11.Request):
                return event, start + received - self._buffered()
            if isinstance(event, h11.ConnectionClosed):
                return None
            # PAUSED cannot happen here: we never call next_event after a refused CONNECT.
            raise RuntimeError(f"unexpected h11 event {event!r} while waiting for a request")

    async def _read_body_piece(self, body: _Body) -> bytes | None:
        conn = self.h11
        while True:
            try:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    if conn.they_are_waiting_for_100_continue and not self._response_started:
                        # RFC 9110 §10.1.1: send 100 (Continue) once we start reading the body.
                        await self._send(conn.send(_CONTINUE))
                    await self._receive("body")
                    continue
            except h11.RemoteProtocolError as exc:
                self._must_close = True
                if self._eof:
                    raise Glitch(400, "Incomplete request body", cause=exc) from exc
                raise Glitch(exc.error_status_hint, "Invalid request body", cause=exc) from exc
            except StreamTimeout as exc:
                self._must_close = True
                raise Glitch(408, "Request body timeout", cause=exc) from exc
            if isinstance(event, h11.Data):
                body.received += len(event.data)
                limit = self.opts.max_body_size
                if limit is not None and body.received > limit:
                    self._must_close = True
                    raise Glitch(413, "Content Too Large")
                return bytes(event.data)
            if isinstance(event, h11.EndOfMessage):
                body.finished = True
                body.trailers = _headers(event.headers) if event.headers else None
                return None
            raise RuntimeError(f"unexpected h11 event {event!r} while reading a body")

    async def _drain(self) -> bool:
        """Discard what is left of an unread request body; False if the connection must close."""
        body = self._body
        conn = self.h11
        if conn.their_state is h11.DONE:
            return True
        if (
            conn.their_state is not h11.SEND_BODY
            or body is None
            or conn.they_are_waiting_for_100_continue
        ):
            # An unanswered Expect: 100-continue: the client may never send the body, so we
            # cannot wait for it (RFC 9110 §10.1.1); we said Connection: close instead.
            return False
        budget = self.opts.max_drain_size
        declared = self._request.headers.get("content-length") if self._request else None
        if declared is not None and int(declared) - body.received > budget:
            return False
        drained = 0
        try:
            while (piece := await self._read_body_piece(body)) is not None:
                drained += len(piece)
                if drained > budget:
                    return False
        except (Glitch, *_BROKEN):
            return False
        return True

    # -- writing ------------------------------------------------------------------------------

    async def _send(self, data: bytes) -> None:
        if self._set_phase is not None:
            self._set_phase("write")
        await self.stream.send_all(data)

    def _date(self) -> bytes:
        # RFC 9110 §6.6.1: an origin server with a clock MUST send Date; one-second resolution.
        global _DATE
        now = int(time.time())
        if _DATE[0] != now:
            _DATE = (now, formatdate(now, usegmt=True).encode())
        return _DATE[1]

    def _head(self, response: Response, request: Request) -> list[tuple[bytes, bytes]]:
        """The header fields to send: the user's, minus framing, plus Date, framing, close.

        We compute every framing and connection header ourselves (rather than leave some to
        h11) so that ``ResponseWritten.headers`` is exactly what went out.
        """
        status = response.status
        headers: list[tuple[bytes, bytes]] = []
        has_date = has_server = False
        for lname, name, value in response.headers._items:
            if lname in _FRAMING:
                continue
            if lname == "date":
                has_date = True
            elif lname == "server":
                has_server = True
            headers.append((name.encode("ascii"), value.encode("latin-1")))
        if not has_date:
            headers.append((b"date", self._date()))
        if not has_server and self.opts.server_header:
            headers.append((b"server", self.opts.server_header.encode("latin-1")))
        close = (
            self._must_close
            or self.h11.they_are_waiting_for_100_continue
            or self.stopping.is_set()
            or not self._keep_alive_requested(request)
        )
        if status in _NO_CONTENT_STATUS:
            pass
        elif response.length is not None:
            headers.append((b"content-length", str(response.length).encode()))
        elif request.version == "1.1":
            headers.append((b"transfer-encoding", b"chunked"))
        else:
            close = True  # RFC 9112 §6.3: an HTTP/1.0 client reads the body until the close
        if close:
            # We will close after this response: say so (RFC 9112 §9.6).
            headers.append((b"connection", b"close"))
        return headers

    @staticmethod
    def _keep_alive_requested(request: Request) -> bool:
        # h11 keeps HTTP/1.1 connections alive unless a side says "close", and never keeps
        # HTTP/1.0 ones (RFC 9112 §9.3: persistence for 1.0 is an old, optional extension).
        if request.version != "1.1":
            return False
        value = request.headers.get("connection")
        return value is None or "close" not in value.lower()

    async def send_response(self, response: Response) -> tuple[int, list[tuple[bytes, bytes]], int]:
        """Put ``response`` on the wire (the writer's sink); return (status, headers, body bytes).

        A streamed body's first piece is pulled *before* the head is sent: an error raised
        before it still gets a proper error response, a handler that streams its request body
        back still triggers ``100 Continue``, and head and first piece go out in one write.
        """
        if self._response_started:
            raise RuntimeError("a response was already sent on this request")
        request = self._request
        assert request is not None
        status = response.status
        body = response.body
        no_body = request.method == "HEAD" or status in _NO_CONTENT_STATUS
        pieces: AsyncIterator[bytes] | None = None
        first: bytes | None = None
        if not isinstance(body, bytes):
            if no_body:
                await _aclose(body)
            else:
                pieces = body.__aiter__()
                try:
                    first = await _next_piece(pieces)
                except BaseException:
                    await _aclose(pieces)
                    raise
        conn = self.h11
        self._response_started = True
        written = 0
        headers = self._head(response, request)
        try:
            data = conn.send(
                h11.Response(status_code=status, headers=headers, reason=reason_phrase(status))
            )
            assert data is not None
            if pieces is None:
                if body and not no_body:
                    assert isinstance(body, bytes)
                    data += conn.send(h11.Data(data=body))
                    written = len(body)
                data += conn.send(h11.EndOfMessage())
                await self._send(data)
            else:
                try:
                    while first is not None:
                        data += conn.send(h11.Data(data=first))
                        written += len(first)
                        await self._send(data)
                        first = await _next_piece(pieces)
                        data = b""
                finally:
                    await _aclose(pieces)
                await self._send(data + conn.send(h11.EndOfMessage()))
        except h11.LocalProtocolError as exc:
            # A declared length the body did not match: the response is broken on the wire.
            self._must_close = True
            error_log.error(
                "response body does not match its declared length (%s); closing the connection",
                exc,
            )
            raise _Aborted(str(exc)) from exc
        except BaseException:
            self._must_close = True
            raise
        finally:
            self._access(request, status, written)
        return status, headers, written

    def _access(self, request: Request, status: int, written: int) -> None:
        if self.opts.access_log:
            client = f"{self.client[0]}:{self.client[1]}" if self.client else "-"
            access_log.info(
                '%s - "%s %s HTTP/%s" %d %d',
                client,
                _escape(request.method),
                _escape(request.target),
                request.version,
                status,
                written,
            )

    async def _send_refusal(self, status: int, reason: str, *, head: bool = False) -> None:
        """Answer a request we will not serve, and mark the connection for closing."""
        self._must_close = True
        if self.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        body = reason.encode("latin-1", "replace")
        headers = [
            (b"date", self._date()),
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        if self.opts.server_header:
            headers.append((b"server", self.opts.server_header.encode("latin-1")))
        conn = self.h11
        try:
            data = conn.send(
                h11.Response(status_code=status, headers=headers, reason=reason_phrase(status))
            )
            if not head:  # a response to HEAD carries no content (RFC 9110 §9.3.2)
                data += conn.send(h11.Data(data=body))
            data += conn.send(h11.EndOfMessage())
            await self._send(data)
        except (*_BROKEN, StreamTimeout, h11.LocalProtocolError):
            pass

    # -- one exchange -------------------------------------------------------------------------

    async def _respond_with_glitch(self, writer: ResponseWriter, glitch: Glitch) -> None:
        # Headers the handler already set (CORS, for one) stay; the body is the glitch's.
        response = writer.response
        response.status = glitch.status
        for name in ("content-type", "content-encoding", "content-language"):
            response.headers.remove(name)
        for name, value in glitch.headers:
            response.headers.set(name, value)
        response.headers.set("content-type", "text/plain; charset=utf-8")
        text = glitch.body_text(self.opts.verbose_glitch).encode()
        response.body = text
        response.length = len(text)
        if isinstance(glitch, _Logged):
            pass  # the error behind it was logged once, with its traceback, where it happened
        elif glitch.status >= 500 and glitch.__cause__ is not None:
            error_log.error("%s: %s", glitch, glitch.__cause__, exc_info=glitch.__cause__)
        elif glitch.status >= 500:
            error_log.error("%s", glitch)
        else:
            log.debug("glitch %s", glitch)
        try:
            writer._run_before_send()
        except Exception:
            error_log.exception("a before_send hook failed while sending an error response")
        # Not writer.send(): the writer may already count as sent if its own send() failed
        # before any byte went out (a streamed body that raised before its first piece).
        await self.send_response(response)

    async def _run_endpoint(self, request: Request) -> None:
        writer = ResponseWriter(self)
        endpoint = self.endpoint
        try:
            result = await endpoint(request, writer)
        except Glitch as glitch:
            if self._response_started:
                self._must_close = True
                log.info(
                    "%s raised after its response started; closing: %s", _name(endpoint), glitch
                )
                return
            await self._respond_with_glitch(writer, glitch)
            return
        except _Aborted:
            return  # already logged where it happened
        except _BROKEN as exc:
            if self._response_started:
                # The client went away while we were sending: nothing to answer, nobody to tell.
                self._must_close = True
                log.debug("connection lost while sending the response: %r", exc)
                return
            error_log.exception("unhandled error in endpoint %s", _name(endpoint))
            await self._respond_with_glitch(writer, Glitch(500, cause=exc))
            return
        except Exception:
            if self._response_started:
                self._must_close = True
                error_log.exception(
                    "endpoint %s raised after its response started; closing the connection",
                    _name(endpoint),
                )
                return
            error_log.exception("unhandled error in endpoint %s", _name(endpoint))
            await self._respond_with_glitch(writer, _Logged(Glitch(500)))
            return
        if not self._response_started:
            error_log.error(
                "endpoint %s returned %r without sending a response (call `await w.send()`)",
                _name(endpoint),
                result,
            )
            await self._respond_with_glitch(writer, _Logged(Glitch(500)))

    async def run(self) -> None:
        conn = self.h11
        while True:
            # -- the head ------------------------------------------------------------------------
            try:
                got = await self._next_request()
            except h11.RemoteProtocolError as exc:
                if not self._eof:
                    status = exc.error_status_hint
                    if status == 431 and b"\n" not in bytes(conn._receive_buffer):
                        status = 414  # the request line alone is over the limit
                    elif status == 501 and "Transfer-Encoding" in str(exc):
                        status = TE_REFUSAL_STATUS
                    log.info("bad request from %s: %s", _peer(self.client), exc)
                    await self._send_refusal(status, _refusal_text(status, exc))
                return
            except StreamTimeout:
                if self._buffered():
                    log.info("request head timeout from %s", _peer(self.client))
                    await self._send_refusal(408, "Request Timeout")
                return
            if got is None:
                return
            event, head_size = got
            refusal = check_request(event, head_size, self.opts)
            if refusal is not None:
                log.info("refused request from %s: %d %s", _peer(self.client), *refusal)
                await self._send_refusal(*refusal, head=event.method == b"HEAD")
                return

            # -- the exchange --------------------------------------------------------------------
            body = _Body(self)
            self._body = body
            self._response_started = False
            request = Request(
                event.method.decode("ascii"),
                event.target.decode("latin-1"),
                _headers(event.headers),
                version=event.http_version.decode("ascii"),
                client=self.client,
                server=self.server,
                scheme=self.scheme,
                body=body,
                stopping=self.stopping,
            )
            self._request = request
            await self._run_endpoint(request)
            if self._must_close or conn.our_state is not h11.DONE:
                return
            if not await self._drain():
                return
            self._body = None
            self._request = None
            if conn.their_state is not h11.DONE:  # pragma: no cover - _drain guarantees it
                return
            conn.start_next_cycle()


class _Logged(Glitch):
    """A Glitch standing for an error that was already logged with its traceback."""

    def __init__(self, glitch: Glitch) -> None:
        super().__init__(glitch.status, glitch.message, headers=glitch.headers)
        self._original = glitch


_DATE: tuple[int, bytes] = (0, b"")


def _headers(items: Any) -> Headers:
    return Headers._trusted([(n.decode("latin-1"),) * 2 + (v.decode("latin-1"),) for n, v in items])


def _name(endpoint: object) -> str:
    return getattr(endpoint, "__qualname__", None) or repr(endpoint)


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "peer"


def _refusal_text(status: int, exc: h11.RemoteProtocolError) -> str:
    # The client gets the reason phrase, never h11's text (it may quote the client's bytes).
    return reason_phrase(status) or "Bad Request"


_ESCAPES = {i: f"\\x{i:02x}" for i in (*range(0x20), 0x7F)} | {ord('"'): '\\"', ord("\\"): "\\\\"}


def _escape(text: str) -> str:
    """Make client-controlled text safe for a log line (no control characters, no quotes)."""
    return text.translate(_ESCAPES)


async def _next_piece(pieces: AsyncIterator[bytes]) -> bytes | None:
    """The next non-empty piece of a streamed body, or None at its end."""
    async for piece in pieces:
        if piece:
            if not isinstance(piece, bytes | bytearray | memoryview):
                raise TypeError(f"a response body stream yielded {type(piece).__name__}, not bytes")
            return bytes(piece)
    return None


async def _aclose(body: object) -> None:
    aclose = getattr(body, "aclose", None)
    if aclose is not None:
        await aclose()


async def accept(
    stream: Stream,
    endpoint: Endpoint,
    opts: ServerOpts = _DEFAULT_OPTS,
    *,
    client: tuple[str, int] | None = None,
    server: tuple[str, int] | None = None,
    scheme: str = "http",
    stopping: Stopping = NEVER_STOPPING,
) -> None:
    """Serve HTTP/1.x on ``stream`` until the connection ends, then close the stream.

    Requests are answered one after another, in order (pipelined requests included). The
    function returns when the client closes, a timeout or protocol error ends the connection,
    ``stopping`` is set between requests, or a response said ``Connection: close``. It never
    raises for anything the client sends; cancellation propagates.

    Args:
        stream: the byte stream (see :mod:`tophat._stream` for the three methods it needs).
        endpoint: ``async (Request, ResponseWriter) -> ResponseWritten``.
        opts: limits and switches.
        client: the peer address, for ``Request.client`` and logs.
        server: the local address, for ``Request.server``.
        scheme: ``"https"`` when the stream is TLS.
        stopping: the runtime's shutdown signal; once set, no new request is started and
            responses say ``Connection: close``.
    """
    connection = _Connection(stream, endpoint, opts, client, server, scheme, stopping)
    try:
        await connection.run()
    except (*_BROKEN, StreamTimeout) as exc:
        log.debug("connection from %s ended: %r", _peer(client), exc)
    finally:
        with contextlib.suppress(*_BROKEN):
            await stream.aclose()
