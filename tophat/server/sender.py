"""The writing half of a connection: ``ResponseSender``, the base class of ``Connection``.

It holds what writing needs (the stream, the request being answered, whether the connection
keeps alive or must close) and puts a response on the wire: the head (its fields from
``respond.py``, serialized by ``tophat.http.serialize``) and a fixed or streamed body, chunked
or of declared length, the length checked as it goes. It sends refusals (a request answered
without running the endpoint) and is the ``ExchangeSink`` that ``run_endpoint`` writes through.
Reading requests and deciding what comes next is ``Connection``'s (``connection.py``); the
split is by concept only: one object per connection, no call or allocation more per request.
"""

from __future__ import annotations

import contextlib
import logging
from typing import IO, Protocol, cast

from tophat.http import serialize
from tophat.http.files import FileBody, FileChanged
from tophat.http.framing import EMPTY_STATUS
from tophat.http.request import Request
from tophat.http.writer import Response
from tophat.server.exchange import aborted, aclose, next_piece, open_body
from tophat.server.opts import ServerOpts
from tophat.server.respond import (
    COALESCE,
    LengthMismatch,
    check_length,
    log_access,
    refusal,
    response_fields,
)
from tophat.server.stream import Phase, SendfileUnavailable, Stream, StreamClosed, StreamTimeout

__all__ = ["BROKEN", "ResponseSender"]

log = logging.getLogger("tophat.connection")

BROKEN = (OSError, StreamClosed)  # how a stream says the connection broke


class _Phased(Protocol):
    def set_phase(self, phase: Phase) -> None: ...


class _Nowait(Protocol):
    def send_nowait(self, *pieces: bytes) -> bool: ...


class _Sendfile(Protocol):
    async def sendfile(self, file: IO[bytes], offset: int, count: int) -> int: ...


# The most bytes one sendfile call sends: the stream applies the write timeout per call, so
# a client must take this much within ServerOpts.write_timeout (256 KiB in 30 s: 8.7 KB/s).
SENDFILE_PIECE = 256 * 1024


class ResponseSender:
    """A connection's response writing (see the module doc); ``Connection`` extends it."""

    __slots__ = (
        "_expect_continue",
        "_keep_alive",
        "_must_close",
        "_nowait_stream",
        "_phased_stream",
        "_request",
        "_response_started",
        "_sendfile_stream",
        "client",
        "opts",
        "stream",
    )

    def __init__(self, stream: Stream, opts: ServerOpts, client: tuple[str, int] | None) -> None:
        self.stream = stream
        self.opts = opts
        self.client = client
        # The stream again, typed with its optional methods when it has them (a reference, not
        # a bound method: 64 bytes less each per idle connection).
        self._phased_stream = cast(_Phased, stream) if hasattr(stream, "set_phase") else None
        self._nowait_stream = cast(_Nowait, stream) if hasattr(stream, "send_nowait") else None
        self._sendfile_stream = cast(_Sendfile, stream) if hasattr(stream, "sendfile") else None
        self._expect_continue = False  # the client waits for "100 Continue" before its body
        self._request: Request | None = None
        self._response_started = False
        self._must_close = False
        # Whether the client allows another request after this one: an HTTP/1.1 request
        # without "Connection: close". We never keep HTTP/1.0 connections (RFC 9112 §9.3:
        # persistence for 1.0 is an old, optional extension), as h11 does not.
        self._keep_alive = False

    def _stopping_now(self) -> bool:
        """Whether this response is the connection's last because the server is stopping
        (``Connection`` knows: it reads the requests)."""
        raise NotImplementedError

    # -- writing -------------------------------------------------------------------------------

    def _sent_at_once(self, *pieces: bytes) -> bool:
        """Send ``pieces`` now if the stream can take them without waiting (no coroutine: two
        coroutine calls less per write); False, nothing sent, when ``_send`` must be used."""
        stream = self._nowait_stream
        return stream is not None and stream.send_nowait(*pieces)

    async def _send(self, data: bytes) -> None:
        if self._phased_stream is not None:
            self._phased_stream.set_phase("write")
        await self.stream.send_all(data)

    async def send_response(self, response: Response) -> tuple[int, list[tuple[str, str]], int]:
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
        no_body = request.method == "HEAD" or status in EMPTY_STATUS
        file = None
        if type(body) is FileBody and not no_body and self._sendfile_stream and body.has_fileno:
            # Zero-copy. Opened before the head, as a streamed body's first piece is pulled:
            # a file gone or changed since set_file still gets a proper error response.
            body.open()
            file, pieces, first = body, None, None
        # (A bytes body needs no opening: one coroutine call less per response.)
        elif type(body) is bytes:
            pieces, first = None, None
        else:
            pieces, first = await open_body(body, no_body)
        self._response_started = True
        written = 0
        keep_alive = self._keep_alive
        decided = self._must_close or self._expect_continue or self._stopping_now()
        headers, close = response_fields(
            response, request, decided or not keep_alive, keep_alive, self.opts.server_header
        )
        if close:
            self._must_close = True
        data = serialize.head(status, headers)
        try:
            if file is not None:
                written = await self._send_file(data, file)
                check_length(response.length, written, ended=True)
            elif pieces is None:
                if body and not no_body:
                    assert isinstance(body, bytes)
                    written = len(body)
                    if written <= COALESCE:
                        data += body  # one write for head and body
                    else:
                        # A large body is not copied after the head: both go to the stream
                        # at once when it can take them (one writev with uvloop), else in turn.
                        if not self._sent_at_once(data, body):
                            await self._send(data)
                            await self._send(body)
                        data = b""
                # (_sent_at_once inline for the usual response, one write: -1.2k instructions)
                nowait = self._nowait_stream
                if data and not (nowait is not None and nowait.send_nowait(data)):
                    await self._send(data)
            else:
                declared = response.length
                chunked = declared is None and request.version == "1.1"
                try:
                    while first is not None:
                        written += len(first)
                        check_length(declared, written, ended=False)
                        data += serialize.chunk(first) if chunked else first
                        if not self._sent_at_once(data):
                            await self._send(data)
                        first = await next_piece(pieces)
                        data = b""
                finally:
                    await aclose(pieces)
                check_length(declared, written, ended=True)
                # ``data`` still holds the head when the stream was empty.
                if chunked:
                    await self._send(data + serialize.CHUNKED_END)
                elif data:
                    await self._send(data)
                # Unless chunked, the body was close-delimited (HTTP/1.0) or of declared length.
        except (LengthMismatch, FileChanged) as exc:
            # The body did not match its declared length (or a file changed under it): the
            # response is broken on the wire.
            self._must_close = True
            raise aborted(exc) from exc
        except BaseException:
            self._must_close = True
            raise
        finally:
            if self.opts.access_log:
                log_access(self.client, request, status, written)
        return status, headers, written

    async def _send_file(self, data: bytes, body: FileBody) -> int:
        """Send ``data`` (the head) and ``body``'s segments, the file's ranges with the stream's
        ``sendfile`` (or, where it turns out unavailable, read in pieces); return the body
        bytes sent. The file is closed at the end, also on errors and cancellation."""
        written = 0
        try:
            file = body.open()
            for segment in body.segments:
                if isinstance(segment, bytes):
                    data += segment
                    written += len(segment)
                    continue
                if data:
                    await self._send(data)
                    data = b""
                offset, left = segment
                while left:
                    stream = self._sendfile_stream
                    n = min(left, SENDFILE_PIECE if stream else body.chunk_size)
                    if n == left:
                        body.check()  # the last piece: still the file the head describes?
                    if stream is not None:
                        if self._phased_stream is not None:
                            self._phased_stream.set_phase("write")
                        try:
                            sent = await stream.sendfile(file, offset, n)
                        except SendfileUnavailable:
                            self._sendfile_stream = None  # (not on this connection: read)
                            continue
                    else:
                        piece = body.read(offset, n)
                        sent = len(piece)
                        if sent:
                            await self._send(piece)
                    written += sent
                    if sent < n:
                        raise FileChanged(f"{body!r}: the file shrank while being sent")
                    offset += n
                    left -= n
            if data:
                await self._send(data)
        finally:
            body.close()
        return written

    async def _send_refusal(
        self, status: int, reason: str, *, head: bool = False, keep_alive_requested: bool = True
    ) -> None:
        """Answer a request we will not serve, and mark the connection for closing."""
        self._must_close = True
        if self._response_started:
            return
        self._response_started = True
        data = refusal(
            status,
            reason,
            head=head,
            keep_alive_requested=keep_alive_requested,
            server_header=self.opts.server_header,
        )
        with contextlib.suppress(*BROKEN, StreamTimeout):
            await self._send(data)

    # -- the ExchangeSink that run_endpoint uses -----------------------------------------------

    @property
    def started(self) -> bool:
        return self._response_started

    @property
    def verbose_glitch(self) -> bool:
        return self.opts.verbose_glitch

    def mark_close(self) -> None:
        self._must_close = True
