"""The asyncio runtime's stream adapter: one connection, as a ``BufferedProtocol``.

``Conn`` is the byte stream ``accept`` reads and writes. It owns the clock (per-phase timeouts
via ``set_phase``, one lazily re-armed timer per connection), pauses reading above a high-water
mark, answers 503 past the connection limit and closes with a linger (see LINGER). What it
shares with the other connections and the server (the connection sets, the read buffer, the
timeouts) is the server's ``ConnectionPool`` (``pool.py``); the server that listens and shuts
down is in ``server.py``.

We use ``asyncio.Protocol`` rather than StreamReader/StreamWriter: it is measurably faster
(``bench/transport_bench.py`` compares the two) because it avoids a second buffer copy and
the StreamReader's per-read bookkeeping.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import socket
from typing import IO, cast

from tophat._asynclib import AsyncioDeadline
from tophat.http.serialize import LINGER, OVERLOADED
from tophat.runtime.asyncio.pool import ConnectionPool
from tophat.runtime.asyncio.sendfile import send_file
from tophat.server.connection import Connection
from tophat.server.stream import Phase, StreamClosed, StreamTimeout, socket_address

__all__ = ["Conn"]

log = logging.getLogger("tophat.server")

_HIGH_WATER = 256 * 1024  # pause reading above this much unread input

# For callbacks that use no context variables: saves a context copy (~64 bytes) per callback
# an idle connection holds.
_NO_CONTEXT = contextvars.Context()


class Conn(asyncio.BufferedProtocol):
    """One TCP connection: the byte stream ``accept`` reads and writes."""

    # Slots, and a list for the input buffer: an idle keep-alive connection should cost little
    # memory (a dict and an empty deque block took ~1.5 KiB of the ~7 KiB per connection).
    __slots__ = (
        "_buffer",
        "_buffered",
        "_drain",
        "_eof",
        "_head_deadline",
        "_lingering",
        "_loop",
        "_lost",
        "_opts",
        "_phase",
        "_pool",
        "_read_deadline",
        "_read_phase",
        "_reading_paused",
        "_timer",
        "_timer_when",
        "_transport",
        "_waiter",
        "_write_deadline",
        "_write_paused",
        "connection",
        "grace_timer",
        "task",
    )

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool
        self._loop = pool.loop
        self._opts = pool.opts
        self._transport: asyncio.Transport | None = None
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._eof = False
        self._lost = False
        self._reading_paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._drain: asyncio.Future[None] | None = None
        self._write_paused = False
        self._phase: Phase = "idle"
        self._head_deadline: float | None = None
        self._lingering = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = 0.0
        self._read_deadline: float | None = None
        self._read_phase: Phase = "idle"
        self._write_deadline: float | None = None
        self.grace_timer: asyncio.TimerHandle | None = None  # cancels a departed client's task
        self.connection: Connection | None = None
        self.task: asyncio.Task[None] | None = None

    # -- protocol callbacks -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        transport = self._transport
        pool = self._pool
        limit = self._opts.max_connections
        if pool.closing or (limit is not None and len(pool.conns) >= limit):
            pool.overloaded(limit)
            transport.write(OVERLOADED)
            self._linger_close()
            return
        pool.conns.add(self)
        try:
            self._start(transport, pool)
        except Exception:
            # A connection we cannot serve must not stay open unserved (a callback's error
            # would only be logged by the loop): close it, and say why.
            pool.conns.discard(self)
            log.exception("cannot serve a connection from %s", transport.get_extra_info("peername"))
            transport.abort()

    def _start(self, transport: asyncio.Transport, pool: ConnectionPool) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        self.connection = connection = Connection(
            self,
            pool.endpoint,
            self._opts,
            client=socket_address(peer),
            server=pool.local_address(local),
            scheme="https" if transport.get_extra_info("sslcontext") else "http",
            stopping=pool.stopping,
        )
        self.task = self._loop.create_task(connection.serve())
        # (An empty context rather than a copy of the current one: ~64 bytes less per
        # connection; the callback needs no context variables.)
        self.task.add_done_callback(self._task_done, context=_NO_CONTEXT)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._stop_timer()
        self._pool.release(self)
        if self.grace_timer is not None:
            self.grace_timer.cancel()
            self.grace_timer = None
        if not task.cancelled() and task.exception() is not None:
            log.error("connection task failed", exc_info=task.exception())
        if self._transport is not None and not self._transport.is_closing() and not self._lingering:
            self._transport.abort()

    # A BufferedProtocol: the transport reads into the pool's one read buffer, and we copy
    # out what arrived. A plain Protocol gets a new bytes object per read, which asyncio makes
    # by allocating its whole read size (256 KiB) and shrinking it: with glibc that is often an
    # mmap, mremap and munmap per read (seen with strace on 4 KiB POSTs: -30% throughput,
    # depending on the allocator's history).

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._pool.read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        # Copied at once: the buffer is the next read's too (the loop runs one callback at a
        # time, so no other connection reads into it before this returns).
        if self._lingering:
            return  # closing: input is read only to be discarded (see _linger_close)
        self._buffer.append(self._pool.read_buffer[:nbytes].tobytes())
        buffered = self._buffered = self._buffered + nbytes
        if buffered > _HIGH_WATER and not self._reading_paused and self._transport:
            self._reading_paused = True
            self._transport.pause_reading()
        waiter = self._waiter  # (_wake inlined: once per read)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def eof_received(self) -> bool:
        if self._lingering:
            if self._transport is not None:
                self._transport.close()
            return False
        self._eof = True
        self._wake()
        if not self._buffer:
            # The client sent its last byte and no request after the one being handled: it
            # left (a client that pipelined requests before half-closing gets its answers).
            self._pool.peer_left(self, reset=False)
        # Keep our side open: the client may be waiting for the response. (TLS cannot be
        # half-closed, and asyncio warns when asked to.)
        return not self._pool.tls

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._eof = True
        self._wake()
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_exception(StreamClosed("connection lost"))
        self._pool.peer_left(self, reset=True)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- the Stream that accept() uses --------------------------------------------------------

    def new_event(self) -> asyncio.Event:
        return asyncio.Event()

    # ServerOpts.handler_timeout (tophat.server.exchange.handler_deadline): a timer cancels the task
    deadline = staticmethod(AsyncioDeadline)

    def set_phase(self, phase: Phase) -> None:
        if phase == "head" and self._phase != "head":
            timeout = self._opts.head_timeout
            self._head_deadline = None if timeout is None else self._loop.time() + timeout
        self._phase = phase

    def _arm(self, write: bool = False) -> None:
        """Set the deadline of the wait about to start (the current phase's timeout).

        One timer per connection, armed lazily: a wait only records its deadline, and the
        timer, when it fires, either expires the wait or re-arms itself for the deadline now
        in force. A keep-alive connection answering requests back to back thus costs no timer
        work per request (a call_later and a cancel per wait cost 7-13% of a hello-world
        request, bench/README.md).
        """
        phase = "write" if write else self._phase
        if phase == "head":
            deadline = self._head_deadline  # the whole head, however many reads it takes
        else:
            timeout = self._pool.timeouts[phase]
            deadline = None if timeout is None else self._loop.time() + timeout
        if write:
            self._write_deadline = deadline
        else:
            self._read_deadline = deadline
            self._read_phase = self._phase
        if deadline is not None and (self._timer is None or deadline < self._timer_when):
            self._set_timer(deadline)

    def _set_timer(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(when, self._on_timer, context=_NO_CONTEXT)
        self._timer_when = when

    def _on_timer(self) -> None:
        self._timer = None
        # Timers may fire up to a millisecond early (libuv counts milliseconds).
        now = self._loop.time() + 0.001
        nearest = None
        waiter, deadline = self._waiter, self._read_deadline
        if waiter is not None and not waiter.done() and deadline is not None:
            if deadline <= now:
                waiter.set_exception(StreamTimeout(self._read_phase))
            else:
                nearest = deadline
        drain, deadline = self._drain, self._write_deadline
        if drain is not None and not drain.done() and deadline is not None:
            if deadline <= now:
                drain.set_exception(StreamTimeout("write"))
            elif nearest is None or deadline < nearest:
                nearest = deadline
        if nearest is not None:
            self._set_timer(nearest)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        while not self._buffer:
            if self._eof:
                return b""
            self._waiter = waiter = self._loop.create_future()
            self._arm()
            try:
                await waiter
            finally:
                self._waiter = None
        buf = self._buffer
        data = buf.pop(0)
        if max_bytes is not None and len(data) > max_bytes:
            buf.insert(0, data[max_bytes:])
            data = data[:max_bytes]
        elif buf and (max_bytes is None or len(data) < max_bytes):
            # Coalesce small pieces into one read: fewer parser calls.
            parts = [data]
            size = len(data)
            while buf and (max_bytes is None or size + len(buf[0]) <= max_bytes):
                piece = buf.pop(0)
                parts.append(piece)
                size += len(piece)
            data = b"".join(parts)
        self._buffered -= len(data)
        if self._reading_paused and self._buffered <= _HIGH_WATER // 4 and self._transport:
            self._reading_paused = False
            self._transport.resume_reading()
        return data

    def send_nowait(self, *pieces: bytes) -> bool:
        """Write ``pieces`` now, in order, if nothing needs waiting for (the stream is open, the
        client reading); False, with nothing written, when ``send_all`` must be used."""
        transport = self._transport
        if self._write_paused or self._lost or transport is None or transport.is_closing():
            return False
        if len(pieces) == 1:
            transport.write(pieces[0])
        else:
            transport.writelines(pieces)  # uvloop: one writev, no copy
        return True

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        transport = self._transport
        if self._lost or transport is None or transport.is_closing():
            raise StreamClosed("connection closed")
        transport.write(data)
        if self._write_paused:
            # Backpressure: wait until the kernel took enough of what we wrote.
            self._drain = drain = self._loop.create_future()
            self._arm(write=True)
            try:
                await drain
            finally:
                self._drain = None

    async def sendfile(self, file: IO[bytes], offset: int, count: int) -> int:
        """Zero-copy where loop and transport allow, else SendfileUnavailable (sendfile.py)."""
        if self._lost:
            raise StreamClosed("connection closed")
        pool = self._pool
        return await send_file(
            self._loop, self._transport, pool.tls, pool.timeouts["write"], file, offset, count
        )

    async def aclose(self) -> None:
        self._linger_close()

    def _linger_close(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if self._eof or self._lost or self._pool.tls:
            # Over TLS, close() is the staged close already: close_notify goes out at once
            # (the client reading until the end gets it now), and the SSL transport keeps
            # reading, and discarding, until the client's close_notify or LINGER (the server's
            # ssl_shutdown_timeout); TLS cannot be half-closed with write_eof.
            transport.close()
            return
        # Half-close, keep discarding input for a moment, then close (see LINGER).
        if transport.can_write_eof():
            try:
                transport.write_eof()
            except OSError:
                transport.abort()
                return
        self._buffer.clear()
        self._buffered = 0
        if self._reading_paused:
            self._reading_paused = False
            transport.resume_reading()
        self._lingering = True
        self._pool.lingering.add(self)
        self._loop.call_later(LINGER, self.end_linger)

    def end_linger(self) -> None:
        """Close after the linger (called by its timer, or by shutdown)."""
        self._pool.lingering.discard(self)
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        # A client that never read what we wrote would keep close() waiting for ever.
        if transport.get_write_buffer_size():
            transport.abort()
        else:
            transport.close()

    @property
    def busy(self) -> bool:
        """Whether a request is under way: anything but waiting for the next one."""
        return self._phase != "idle"

    def shutdown_if_idle(self) -> None:
        """Called at shutdown: wake a connection waiting for its next request so it ends."""
        if self._phase == "idle" and not self._buffer and self._waiter is not None:
            self._eof = True  # reads as end of input: accept() returns between requests
            self._wake()
