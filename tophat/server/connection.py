"""accept(): serve one HTTP/1.1 connection over any byte stream, until it ends.

This module never imports a runtime. It feeds bytes from a :class:`~tophat.server.stream.Stream`
to a request parser (``tophat.parsers``: h11 or httptools), checks each request head with the
strict layer in ``validate.py``, runs the endpoint (``exchange.py``), and decides after every
exchange whether the connection may carry another request. Writing the response is the
``ResponseSender`` base class's (``sender.py``); ``req.disconnected`` is ``departure.py``'s.
The connection's HTTP state (keep-alive, 100-continue, whether it closes) is kept in a few
fields of the one ``Connection`` object, not in the parser.
"""

from __future__ import annotations

import contextlib
import logging

from tophat.glitch import Glitch, reason_phrase
from tophat.http import serialize
from tophat.http.endpoint import Endpoint
from tophat.http.headers import Headers
from tophat.http.request import NEVER_STOPPING, Request, Stopping
from tophat.parsers import make_parser
from tophat.parsers.events import CLOSED, NEED_DATA, End, Head, ParseError, Parser, Sentinel
from tophat.server.departure import Disconnected
from tophat.server.exchange import handler_deadline, run_endpoint
from tophat.server.opts import ServerOpts
from tophat.server.sender import BROKEN, ResponseSender
from tophat.server.stream import Phase, Stream, StreamTimeout
from tophat.server.validate import Fields, check_request, check_trailers

__all__ = ["Connection", "accept"]


log = logging.getLogger("tophat.connection")

_DEFAULT_OPTS = ServerOpts()
# The versions check_request lets through, as text (a lookup, not a decode: -0.3k instructions)
_VERSION = {b"1.0": "1.0", b"1.1": "1.1"}


class _Body:
    """The body of one request, read lazily from its connection."""

    __slots__ = ("conn", "finished", "received", "trailers")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.finished = False
        self.received = 0
        self.trailers: Headers | None = None

    async def read_body(self) -> bytes | None:
        if self.finished:
            return None
        conn = self.conn
        if conn._body is not self:
            raise RuntimeError("the request is over: its body can no longer be read")
        while True:
            # (What the parser has is taken without a coroutine call; one when bytes must be
            # waited for.)
            piece = conn._body_piece(self)
            if not isinstance(piece, Sentinel):  # (NEED_DATA)
                return piece
            await conn._receive_body()


class Connection(ResponseSender):
    """One HTTP/1.x connection over a stream: ``Connection(...).serve()`` is ``accept``'s
    coroutine (runtimes start it directly: an idle connection then holds one frame less).

    The fields and methods that write responses are ``ResponseSender``'s (``sender.py``).
    """

    __slots__ = (
        "_body",
        "_disconnected",
        "_gone",
        "endpoint",
        "parser",
        "scheme",
        "server",
        "stopping",
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
        super().__init__(stream, opts, client)
        self.endpoint = endpoint
        self.server = server
        self.scheme = scheme
        self.stopping = stopping
        self.parser: Parser = make_parser(opts.parser, opts.max_head_size, opts.max_header_count)
        self._body: _Body | None = None
        self._gone = False  # the client closed or reset the connection (see peer_gone)
        self._disconnected: Disconnected | None = None  # made at the first request

    # -- reading -------------------------------------------------------------------------------

    async def _receive(self, phase: Phase) -> None:
        if self._phased_stream is not None:
            self._phased_stream.set_phase(phase)
        self.parser.feed(await self.stream.receive_some(self.opts.read_size))

    def _body_piece(self, body: _Body) -> bytes | Sentinel | None:
        """The next piece of ``body`` the parser has, None at its end, or NEED_DATA."""
        try:
            event = self.parser.next_event()
        except ParseError as exc:
            self._must_close = True
            if self.parser.at_eof:
                raise Glitch(400, "Incomplete request body", cause=exc) from exc
            # (a 431 here is a trailer section over the head's limits: its own phrase says so)
            message = "Invalid request body" if exc.status == 400 else reason_phrase(exc.status)
            raise Glitch(exc.status, message, cause=exc) from exc
        if type(event) is bytes:
            self._expect_continue = False  # the client sent its body without waiting
            body.received += len(event)
            limit = self.opts.max_body_size
            if limit is not None and body.received > limit:
                self._must_close = True
                raise Glitch(413, "Content Too Large")
            return event
        if type(event) is End:
            self._expect_continue = False
            if event.trailers:
                # Trailer fields pass the strict layer too (RFC 9110 §6.5.1).
                refused = check_trailers(event.trailers, self.parser.values_checked)
                if refused is not None:
                    self._must_close = True
                    raise Glitch(*refused)
            body.finished = True
            if self._phased_stream is not None:
                self._phased_stream.set_phase("handler")  # no more reads in this exchange
            body.trailers = Headers.from_wire(event.trailers) if event.trailers else None
            return None
        if event is NEED_DATA:
            return NEED_DATA
        raise RuntimeError(f"unexpected parser event {event!r} while reading a body")

    async def _receive_body(self) -> None:
        """Wait for more of the request body (after 100 Continue, if the client waits for it)."""
        try:
            if self._expect_continue:
                # RFC 9110 §10.1.1: send 100 (Continue) once we start reading the body.
                self._expect_continue = False
                if not self._response_started:
                    await self._send(serialize.CONTINUE)
            await self._receive("body")
        except StreamTimeout as exc:
            self._must_close = True
            raise Glitch(408, "Request body timeout", cause=exc) from exc
        except BROKEN as exc:
            # The connection broke under the body: nobody to answer. The endpoint sees an
            # incomplete body (a Glitch it may catch); the connection then just closes.
            self._must_close = True
            log.debug("connection lost while reading a request body: %r", exc)
            raise Glitch(400, "Incomplete request body", cause=exc) from exc

    async def _drain(self) -> bool:
        """Discard what is left of an unread request body; False if the connection must close."""
        body = self._body
        if body is None:
            return False
        if body.finished:
            return True
        if self._expect_continue:
            # An unanswered Expect: 100-continue: the client may never send the body, so we
            # cannot wait for it (RFC 9110 §10.1.1); we said Connection: close instead.
            return False
        budget = self.opts.max_drain_size
        declared = self._request.headers.get("content-length") if self._request else None
        if declared is not None and int(declared) - body.received > budget:
            return False
        drained = 0
        try:
            while (piece := await body.read_body()) is not None:
                drained += len(piece)
                if drained > budget:
                    return False
        except (Glitch, *BROKEN):
            return False
        return True

    # -- what the writing half asks (see ResponseSender) ---------------------------------------

    def _stopping_now(self) -> bool:
        """Whether this response is the connection's last because the server is stopping: yes,
        unless a request pipelined behind it was received already (its head arrived before the
        shutdown: it is answered too, and the last response says ``Connection: close``)."""
        if not self.stopping.is_set():
            return False
        body = self._body
        return not (body is not None and body.finished and self.parser.holds_next())

    # -- the ExchangeSink that run_endpoint uses (the rest is ResponseSender's) ----------------

    @property
    def gone(self) -> bool:
        return self._gone

    def peer_gone(self, reset: bool) -> bool:
        """Called by the runtime when it learns that the client reset the connection, or sent
        its last byte (``reset`` False) with nothing after it in the runtime's buffer.

        Sets ``req.disconnected`` of the request being handled. Returns whether one is (then
        the runtime frees the connection's place at once and cancels the endpoint if it still
        runs ``disconnect_grace`` seconds later); between requests there is nothing to do: the
        next read sees the end of input. A client that half-closed after pipelining more
        requests has not left: it waits for their responses.
        """
        body = self._body
        if not reset and body is not None and body.finished and self.parser.holds_next():
            return False
        self._gone = True
        if self._request is None:
            return False
        if self._disconnected is not None and not self._disconnected.is_set():
            log.debug("client %s left while its request was handled", _peer(self.client))
            self._disconnected.set()
        return True

    # -- one exchange after another ------------------------------------------------------------

    async def serve(self) -> None:
        """Serve requests until the connection ends, then close the stream.

        Waiting for the next request happens here, in the connection's outermost coroutine;
        nothing of an exchange stays referenced from its frame while the connection is idle
        (memory per idle connection, bench/perf.py).
        """
        parser = self.parser
        try:
            while True:
                # -- the next request head ---------------------------------------------------
                self._response_started = False
                try:
                    event = parser.next_event()
                    while event is NEED_DATA:
                        if parser.buffered():
                            if self._phased_stream is not None:
                                self._phased_stream.set_phase("head")
                        elif self.stopping.is_set():
                            return
                        elif self._phased_stream is not None:
                            self._phased_stream.set_phase("idle")
                        parser.feed(await self.stream.receive_some(self.opts.read_size))
                        event = parser.next_event()
                except ParseError as exc:
                    if not parser.at_eof:
                        log.info("bad request from %s: %s", _peer(self.client), exc)
                        await self._send_refusal(
                            exc.status,
                            reason_phrase(exc.status) or "Bad Request",
                            head=exc.method == b"HEAD",
                        )
                    return
                except StreamTimeout:
                    if parser.buffered():
                        log.info("request head timeout from %s", _peer(self.client))
                        await self._send_refusal(408, "Request Timeout", head=parser.head_pending())
                    return
                if event is CLOSED:
                    return
                if type(event) is not Head:
                    raise RuntimeError(f"unexpected parser event {event!r} before a request")
                # -- the exchange ------------------------------------------------------------
                # (Few locals here: each is 8 bytes of every idle connection's frame.)
                request = self._request_for(event)
                if isinstance(request, tuple):
                    await self._refuse(event, *request)
                    return
                await run_endpoint(
                    self.endpoint,
                    request,
                    self,
                    # (None when off, without a call: -0.4k instructions)
                    None
                    if self.opts.handler_timeout is None
                    else handler_deadline(self.stream, self.opts.handler_timeout),
                )
                body = self._body
                if self._must_close or body is None or not (body.finished or await self._drain()):
                    return
                # Nothing of this exchange may stay alive while the connection waits for the
                # next request (an idle keep-alive connection should cost little memory).
                self._body = None
                self._request = None
                del event, request, body
                parser.next_cycle()
        except (*BROKEN, StreamTimeout) as exc:
            log.debug("connection from %s ended: %r", _peer(self.client), exc)
        finally:
            with contextlib.suppress(*BROKEN):
                await self.stream.aclose()

    async def _refuse(self, head: Head, status: int, reason: str, keep_alive: bool) -> None:
        log.info("refused request from %s: %d %s", _peer(self.client), status, reason)
        await self._send_refusal(
            status, reason, head=head.method == b"HEAD", keep_alive_requested=keep_alive
        )

    def _request_for(self, head: Head) -> Request | tuple[int, str, bool]:
        """Check the request and get its body ready: the Request to run the endpoint with, or
        why it is refused (status, reason, whether the client asked to keep the connection).

        (A function, the awaits in ``serve``: a coroutine call less a request, -2.5k
        instructions.)
        """
        parser = self.parser
        fields = Fields(head.headers, parser.values_checked)
        refusal = check_request(head, fields, self.opts)
        keep_alive = head.http_version == b"1.1" and not fields.close
        if refusal is not None:
            return (*refusal, keep_alive)
        self._keep_alive = keep_alive
        body = _Body(self)
        self._body = body
        whole: bytes | None = None
        if fields.has_content:
            # RFC 9110 §10.1.1: an HTTP/1.1 client that sends "Expect: 100-continue" with
            # content waits (a while) for 100 before sending it.
            self._expect_continue = fields.expect_continue and head.http_version == b"1.1"
            length = -1 if fields.content_length is None else int(fields.content_length)
            if 0 < length <= self.opts.max_drain_size and not self._expect_continue:
                # A small body usually arrives with its head: taken whole now, req.body()
                # costs no read (two coroutine calls and two parser events less). Only where
                # the outcome cannot differ: no larger than what would be drained if unread,
                # and no 100-continue (whose answer depends on when the body arrives).
                whole = parser.take_whole_body(length)
                if whole is not None:
                    body.finished = True
                    body.received = len(whole)
        else:
            # No content: the parser has the end of the request already. Taking it now makes
            # reading the (empty) body and getting ready for the next request free.
            self._expect_continue = False
            parser.end_without_content()
            body.finished = True
        if self._disconnected is None:
            self._disconnected = Disconnected(getattr(self.stream, "new_event", None))
        # (Positional: a class called with keywords gets them in a dict, -0.25 µs a request.)
        request = Request(
            head.method.decode("ascii"),  # method
            head.target.decode("latin-1"),  # target
            Headers.from_wire(head.headers),  # headers
            _VERSION[head.http_version],  # version
            self.client,  # client
            self.server,  # server
            self.scheme,  # scheme
            body if whole is None else whole,  # body
            self.stopping,  # stopping
            self._disconnected,  # disconnected
        )
        self._request = request
        if body.finished and self._phased_stream is not None:
            self._phased_stream.set_phase("handler")  # no read until the endpoint returns
        return request


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "peer"


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
        stream: the byte stream (see :mod:`tophat.server.stream` for the three methods it needs).
        endpoint: ``async (Request, ResponseWriter) -> ResponseWritten``.
        opts: limits and switches.
        client: the peer address, for ``Request.client`` and logs.
        server: the local address, for ``Request.server``.
        scheme: ``"https"`` when the stream is TLS.
        stopping: the runtime's shutdown signal; once set, no new request is started and
            responses say ``Connection: close``.
    """
    await Connection(stream, endpoint, opts, client, server, scheme, stopping).serve()
