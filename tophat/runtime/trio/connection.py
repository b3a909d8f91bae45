"""The trio runtime's stream adapter for one plain connection, with its timeouts.

The counterpart of ``runtime/asyncio/connection.py``: ``Conn`` (plain; ``TLSConn`` in
``tls.py`` builds on it) is the byte stream ``accept`` reads and writes; it owns the clock
(per-phase timeouts via ``set_phase``) and the lingering close. What it shares with the other
connections and the server (the connection sets, the timeouts, the sweep) is the server's
``ConnectionPool`` (``pool.py``); the server that listens and shuts down is in ``server.py``.

* Plain connections are non-blocking stdlib sockets driven with ``trio.lowlevel.wait_readable``
  / ``wait_writable``, as trio's own ``SocketStream`` does, with one difference: a timeout
  (a cancel scope) is set up only when a call has to wait, so reading a request that is already
  there or writing to a socket with room costs no cancel scope. Measured with wrk on a hello
  endpoint, a scope per call cost ~15% of the throughput.
* TLS connections (``tls.py``) are ``trio.SSLStream`` over ``trio.SocketStream``, with a scope
  per call.
* trio reports a broken connection with ``trio.BrokenResourceError``, which ``accept`` does not
  know; like asyncio's ``connection_lost``, a broken connection reads as the end of input, and
  writing to it raises :class:`~tophat.StreamClosed`.
* trio has no callback for a client that leaves while nobody reads, so a connection whose
  endpoint runs for a while (the ``"handler"`` phase, see ``pool.py``'s sweep) gets a watcher
  task that waits for the socket to become readable: an end of input or a reset is the client
  leaving (``Connection.peer_gone``); bytes that arrive meanwhile (a pipelined request) are kept
  for the next read. Over TLS the watcher only peeks: it can tell a close or a reset, and stops
  watching at the first byte of data.
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket
from typing import Any, Literal

import trio

from tophat._asynclib import TrioDeadline
from tophat.http.serialize import LINGER
from tophat.runtime.trio.pool import ConnectionPool
from tophat.server.connection import Connection
from tophat.server.opts import KiB
from tophat.server.stream import Phase, StreamClosed, StreamTimeout, socket_address

__all__ = ["GONE", "READ_SIZE", "Conn", "close_socket"]

log = logging.getLogger("tophat.server")

READ_SIZE = 64 * KiB  # the most one read takes
GONE = (trio.BrokenResourceError, trio.ClosedResourceError)  # how trio says a stream is broken
# A watcher stops keeping what a client sends while its endpoint runs past this much.
_WATCH_BUFFER = 256 * KiB


class _Woken(Exception):
    """Shutdown ended a wait for the next request."""


class Conn:
    """One plain connection: the byte stream ``accept`` reads and writes, with its timeouts."""

    __slots__ = (
        "_broken",
        "_closed",
        "_closing",
        "_eof",
        "_head_deadline",
        "_phase",
        "_pool",
        "_pushback",
        "_sock",
        "_timeouts",
        "_waiting",
        "_watch_done",
        "_watch_scope",
        "_woken",
        "client",
        "connection",
        "departed",
        "linger_scope",
        "local",
        "scope",
        "watch_tick",
    )

    def __init__(self, pool: ConnectionPool, sock: socket.socket, peer: Any) -> None:
        self._pool = pool
        self._timeouts = pool.timeouts
        self._sock = sock
        self.client = socket_address(peer)
        try:
            self.local = socket_address(sock.getsockname())
        except OSError:  # the client is already gone
            self.local = None
        self._phase: Phase = "idle"
        self._head_deadline = math.inf
        self._waiting: trio.CancelScope | None = None  # a read waiting for input
        self.linger_scope: trio.CancelScope | None = None  # a lingering close, for cut()
        self._eof = False  # the client sent its last byte (or is gone)
        self._broken = False  # the stream cannot be used any more: close without lingering
        self._woken = False  # shutdown ended the current wait for the next request
        self._closing = False  # closing (bounded in time): shutdown lets it finish
        self._closed = False
        self.scope = trio.CancelScope()  # the connection's task, for shutdown to cancel
        self.connection: Connection | None = None
        self.departed = False  # the client left while a request was handled
        self.watch_tick = -1  # the pool's sweep tick when the "handler" phase began
        self._watch_scope: trio.CancelScope | None = None  # the watcher task's
        self._watch_done: trio.Event | None = None  # set when the watcher task ended
        self._pushback: list[bytes] | None = None  # what the watcher read, for the next read

    async def start(self) -> bool:
        """Get the connection ready to serve (TLS: the handshake); False if it is over."""
        return True

    # -- the Stream that accept() uses --------------------------------------------------------

    def set_phase(self, phase: Phase) -> None:
        if phase == "handler":
            self._pool.watch(self)
            return  # (not a phase of reads: their timeouts stay as they are)
        if phase != "write" and self.watch_tick >= 0:
            self._pool.unwatch(self)  # a read follows: the watcher (if any) stops there
        if phase == "head" and self._phase != "head":
            self._head_deadline = trio.current_time() + self._timeouts["head"]
        self._phase = phase

    def new_event(self) -> trio.Event:
        return trio.Event()

    # ServerOpts.handler_timeout (tophat.server.exchange.handler_deadline): a cancel scope
    deadline = staticmethod(TrioDeadline)

    # -- watching for the client leaving while the endpoint runs --------------------------------

    def begin_watch(self) -> None:
        """The pool's sweep is about to start ``watch`` in a task: from now on a read first
        stops it (``_stop_watching``), even if the task has not run yet."""
        self._watch_done = trio.Event()
        self._watch_scope = trio.CancelScope()

    async def watch(self) -> None:
        """Started by the pool's sweep: wait for the client to leave (see the module doc)."""
        done, scope = self._watch_done, self._watch_scope
        assert done is not None and scope is not None, "begin_watch() first"
        try:
            with scope:  # (already cancelled if a read came first: it ends at once)
                how = await self._wait_for_departure()
                if how is not None:
                    self._peer_left(how == "reset")
        except trio.ClosedResourceError:
            pass  # the connection closed meanwhile
        except Exception as exc:  # a watcher must never take the server down with it
            log.debug("watching %s for its departure failed: %r", self.client, exc)
        finally:
            self._watch_scope = None
            done.set()

    async def _wait_for_departure(self) -> Literal["reset", "eof"] | None:
        sock = self._sock
        kept = 0
        while kept < _WATCH_BUFFER:
            await trio.lowlevel.wait_readable(sock)
            try:
                data = sock.recv(READ_SIZE)
            except BlockingIOError:
                continue
            except OSError:
                self._eof = self._broken = True
                return "reset"
            if not data:
                self._eof = True
                # (an end of input after a pipelined request is not a departure)
                return None if self._pushback else "eof"
            if self._pushback is None:
                self._pushback = []
            self._pushback.append(data)
            kept += len(data)
        return None

    def _peer_left(self, reset: bool) -> None:
        """The client left: tell the connection; if a request is being handled, free the
        place at once and cancel the endpoint if it still runs ``disconnect_grace`` later."""
        connection = self.connection
        if connection is None or connection.gone or not connection.peer_gone(reset):
            return
        pool = self._pool
        pool.release(self)
        grace = pool.opts.disconnect_grace
        if grace is not None:
            self.departed = True
            self.scope.deadline = min(self.scope.deadline, trio.current_time() + grace)

    async def _stop_watching(self) -> None:
        """End the watcher before reading (two tasks cannot wait on one socket)."""
        done = self._watch_done
        assert done is not None
        if self._watch_scope is not None:
            self._watch_scope.cancel()
        await done.wait()
        self._watch_done = None

    def _kept(self, max_bytes: int | None) -> bytes:
        pushback = self._pushback
        assert pushback
        data = pushback.pop(0)
        if max_bytes is not None and len(data) > max_bytes:
            pushback.insert(0, data[max_bytes:])
            data = data[:max_bytes]
        if not pushback:
            self._pushback = None
        return data

    def _deadline(self) -> float:
        phase = self._phase
        if phase == "head":
            return self._head_deadline
        return trio.current_time() + self._timeouts[phase]

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._watch_done is not None:
            await self._stop_watching()
        if self._pushback:
            await trio.lowlevel.checkpoint()
            return self._kept(max_bytes)
        sock = self._sock
        size = max_bytes or READ_SIZE
        await trio.lowlevel.checkpoint_if_cancelled()
        waited = False
        while True:
            try:
                data = sock.recv(size)
                break
            except BlockingIOError:
                pass
            except OSError:
                # A reset reads as the end of input (as asyncio's connection_lost does):
                # accept() then ends quietly.
                self._eof = self._broken = True
                return b""
            try:
                await self._wait_readable()
            except _Woken:
                self._eof = True  # reads as end of input: accept() returns between requests
                return b""
            waited = True
        if not data:
            self._eof = True
        if not waited:
            await trio.lowlevel.cancel_shielded_checkpoint()
        return data

    async def _wait_readable(self) -> None:
        self._woken = False
        with trio.CancelScope(deadline=self._deadline()) as scope:
            self._waiting = scope
            try:
                await trio.lowlevel.wait_readable(self._sock)
                return
            finally:
                self._waiting = None
        if self._woken:
            raise _Woken
        raise StreamTimeout(self._phase)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._broken or self._closed:
            raise StreamClosed("connection closed")
        sock = self._sock
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            try:
                sent = sock.send(data)
            except BlockingIOError:
                sent = 0
            if sent == len(data):
                await trio.lowlevel.cancel_shielded_checkpoint()
                return
            view = memoryview(data)[sent:]
            while view:
                await self._wait_writable()
                with contextlib.suppress(BlockingIOError):
                    view = view[sock.send(view) :]
        except StreamTimeout:  # an OSError too, but not a broken connection
            raise
        except OSError as exc:
            self._broken = True
            raise StreamClosed(f"connection lost: {exc}") from exc

    async def _wait_writable(self) -> None:
        # write_timeout is the longest wait for room, not for all of the data: a slow but
        # steady reader is not cut off.
        with trio.CancelScope(deadline=trio.current_time() + self._timeouts["write"]):
            await trio.lowlevel.wait_writable(self._sock)
            return
        self._broken = True  # the client stopped reading: close without lingering
        raise StreamTimeout("write")

    async def _close_begins(self) -> bool:
        """What every close does first (plain and TLS): free the place, stop the watcher;
        False when the connection is closed already."""
        self._pool.release(self)
        if self._watch_done is not None:
            await self._stop_watching()
        if self._closed:
            return False
        self._closing = True
        return True

    async def aclose(self) -> None:
        """Close gracefully: half-close, discard input for a while (see LINGER), close."""
        if not await self._close_begins():
            return
        if not (self._eof or self._broken or self._pool.cut):
            with trio.move_on_after(LINGER) as scope:
                self.linger_scope = scope
                try:
                    await self._linger()
                finally:
                    self.linger_scope = None
        await self.close_now()

    async def _linger(self) -> None:
        sock = self._sock
        try:
            sock.shutdown(socket.SHUT_WR)
            while True:
                try:
                    if not sock.recv(READ_SIZE):
                        return
                    await trio.lowlevel.checkpoint()  # a client sending fast must not starve us
                except BlockingIOError:
                    await trio.lowlevel.wait_readable(sock)
        except OSError:
            self._broken = True

    async def close_now(self) -> None:
        """Close the socket. Idempotent."""
        if not self._closed:
            self._closed = True
            close_socket(self._sock)

    # -- shutdown -----------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """Whether a request is under way: anything but waiting for the next one (the
        "handler" phase is not kept in ``_phase``, but the pool watches the connection then)."""
        return self._phase != "idle" or self.watch_tick >= 0

    def shutdown_if_idle(self) -> None:
        """Called at shutdown: end a wait for the next request, so the connection ends."""
        if self._phase == "idle" and self._waiting is not None:
            self._woken = True
            self._waiting.cancel()

    def cut(self) -> None:
        """Called at the end of shutdown: stop lingering, or a refusal still under way.

        A close in progress is left to finish: it is bounded in time (a TLS close_notify).
        """
        if self.linger_scope is not None:
            self.linger_scope.cancel()
        elif not self._closing:
            self.scope.cancel()


def close_socket(sock: socket.socket) -> None:
    """Close ``sock``, waking any task waiting on it. Idempotent."""
    if sock.fileno() != -1:
        trio.lowlevel.notify_closing(sock)  # wakes any task waiting on it
        sock.close()
