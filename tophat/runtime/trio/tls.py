"""The trio runtime's stream adapter for one TLS connection: ``TLSConn``.

A ``trio.SSLStream`` over a ``trio.SocketStream`` (``_StagedClose`` underneath, for the staged
close), with a cancel scope per call for its timeouts. Everything else, the phases, the watch
for a client leaving (here only a peek: the TLS layer must see every byte), the pool it belongs
to, is the plain connection's (``connection.py``), which it extends.
"""

from __future__ import annotations

import logging
import socket
from typing import Any, Literal

import trio

from tophat.http.serialize import LINGER
from tophat.runtime.trio.connection import GONE, READ_SIZE, Conn
from tophat.runtime.trio.pool import ConnectionPool
from tophat.server.opts import KiB
from tophat.server.stream import StreamClosed, StreamTimeout

__all__ = ["TLSConn"]

log = logging.getLogger("tophat.server")

# The longest a TLS close may take (its close_notify, to a client that does not read).
_CLOSE_TIMEOUT = 1.0
# send_all hands the SSLStream at most this much per deadline, so write_timeout bounds a stall
# (no progress), not the time a large body takes to a slow but steady reader.
_WRITE_SLICE = 256 * KiB


class TLSConn(Conn):
    """One TLS connection: a ``trio.SSLStream``, with a cancel scope per call for timeouts."""

    __slots__ = ("_stream", "_transport")

    def __init__(self, pool: ConnectionPool, sock: socket.socket, peer: Any) -> None:
        super().__init__(pool, sock, peer)
        assert pool.ssl is not None
        self._transport = _StagedClose(
            self, trio.SocketStream(trio.socket.from_stdlib_socket(sock))
        )
        # https_compatible=False: we send close_notify when we close (RFC 9112 §9.8), as
        # asyncio does; a client that skips its own reads as a broken connection, which
        # receive_some turns into the end of input.
        self._stream = trio.SSLStream(self._transport, pool.ssl, server_side=True)

    async def start(self) -> bool:
        """The TLS handshake, bounded by ``head_timeout`` (a slow handshake is a slow head)."""
        with trio.CancelScope(deadline=trio.current_time() + self._timeouts["head"]):
            try:
                await self._stream.do_handshake()
                return True
            except trio.BrokenResourceError as exc:
                log.debug("TLS handshake with %s failed: %r", self.client, exc.__cause__)
        self._broken = True
        return False

    async def _wait_for_departure(self) -> Literal["reset", "eof"] | None:
        # Only a peek: the TLS layer must see every byte. An end of input or a reset is the
        # client leaving; data (maybe a close_notify, maybe a request) ends the watch.
        sock = self._sock
        while True:
            await trio.lowlevel.wait_readable(sock)
            try:
                data = sock.recv(1, socket.MSG_PEEK)
            except BlockingIOError:
                continue
            except OSError:
                self._eof = self._broken = True
                return "reset"
            if not data:
                self._eof = True
                return "eof"
            return None

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._watch_done is not None:
            await self._stop_watching()
        phase = self._phase
        self._woken = False
        with trio.CancelScope(deadline=self._deadline()) as scope:
            self._waiting = scope
            try:
                data = await self._stream.receive_some(max_bytes)
            except GONE:
                self._eof = self._broken = True
                return b""
            finally:
                self._waiting = None
            if not data:
                self._eof = True
            return bytes(data)  # an SSLStream returns a bytearray
        if self._woken:
            self._eof = True
            return b""
        raise StreamTimeout(phase)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._broken or self._closed:
            raise StreamClosed("connection closed")
        view = memoryview(data)
        try:
            for start in range(0, len(view), _WRITE_SLICE):
                with trio.CancelScope(deadline=trio.current_time() + self._timeouts["write"]):
                    await self._stream.send_all(view[start : start + _WRITE_SLICE])
                    continue
                self._broken = True  # a cancelled SSLStream call leaves it unusable
                raise StreamTimeout("write")
        except GONE as exc:
            self._broken = True
            raise StreamClosed("connection lost") from exc

    async def aclose(self) -> None:
        """close_notify, then the same staged close as plain TCP (see _StagedClose)."""
        if not await self._close_begins():
            return
        self._transport.linger = not (self._eof or self._broken or self._pool.cut)
        await self.close_now()

    async def close_now(self) -> None:
        """Close (with close_notify unless broken), bounded in time. Idempotent."""
        if self._closed:
            return
        self._closing = self._closed = True
        stream = self._stream
        if not self._broken:
            bound = _CLOSE_TIMEOUT + (LINGER if self._transport.linger else 0.0)
            with trio.move_on_after(bound):
                try:
                    await stream.aclose()
                    return
                except GONE:
                    pass
        await trio.aclose_forcefully(stream)


class _StagedClose(trio.abc.HalfCloseableStream):
    """The TCP stream under a TLS connection; its ``aclose`` can close in stages.

    ``SSLStream.aclose`` sends close_notify (TLS's end of data) and then closes this stream:
    with ``linger`` set, that close half-closes, discards input for a while (see LINGER) and
    only then closes, so a client still sending gets our last response, and a client reading
    until the end sees it at once, not after the linger.
    """

    def __init__(self, conn: Conn, stream: trio.SocketStream) -> None:
        self._conn = conn
        self._stream = stream
        self.linger = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        return await self._stream.receive_some(max_bytes)

    async def aclose(self) -> None:
        stream = self._stream
        try:
            if self.linger:
                with trio.move_on_after(LINGER) as scope:
                    self._conn.linger_scope = scope
                    try:
                        await stream.send_eof()
                        while await stream.receive_some(READ_SIZE):
                            pass
                    except GONE:
                        pass
                    finally:
                        self._conn.linger_scope = None
        finally:
            await stream.aclose()  # closes the socket first, even when cancelled
