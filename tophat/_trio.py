"""The trio runtime: a stream adapter with per-phase timeouts, limits, graceful shutdown.

The counterpart of ``_asyncio.py``, with the same behaviour: every HTTP decision is in
``accept``; this module owns the clock, the listening sockets, the connection limit, the
lingering close and the shutdown.

Trio-specific choices:

* Connections run in a nursery shielded from outside cancellation. Cancelling ``serve`` (like
  SIGINT, SIGTERM or ``TrioServer.shutdown``) starts the *graceful* shutdown: in-flight
  requests get ``opts.shutdown_grace`` to finish before they are cancelled.
* Plain connections are non-blocking stdlib sockets driven with ``trio.lowlevel.wait_readable``
  / ``wait_writable``, as trio's own ``SocketStream`` does, with one difference: a timeout
  (a cancel scope) is set up only when a call has to wait, so reading a request that is already
  there or writing to a socket with room costs no cancel scope. Measured with wrk on a hello
  endpoint, a scope per call cost ~15% of the throughput.
* TLS connections are ``trio.SSLStream`` over ``trio.SocketStream``, with a scope per call.
* trio reports a broken connection with ``trio.BrokenResourceError``, which ``accept`` does not
  know; like asyncio's ``connection_lost``, a broken connection reads as the end of input, and
  writing to it raises :class:`~tophat.StreamClosed`.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import signal
import socket
import stat
from collections.abc import Callable
from ssl import SSLContext
from typing import Any

import trio

from ._asyncio import listen_url
from ._connection import Connection, Endpoint
from ._opts import KiB, ServerOpts
from ._serialize import LINGER, OVERLOADED
from ._stream import Phase, StreamClosed, StreamTimeout

__all__ = ["TrioServer", "serve"]

log = logging.getLogger("tophat.server")

# The longest a TLS close may take (its close_notify, to a client that does not read).
_CLOSE_TIMEOUT = 1.0
# TLS only: send_all hands the SSLStream at most this much per deadline, so write_timeout
# bounds a stall (no progress), not the time a large body takes to a slow but steady reader.
_WRITE_SLICE = 256 * KiB
_READ_SIZE = 64 * KiB
_BACKLOG = 2048
# accept() errors that mean "out of resources right now": wait and retry, do not crash.
_OUT_OF_RESOURCES = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))
# accept() errors about one connection that went wrong (what trio's SocketListener ignores).
_ACCEPT_IGNORED = frozenset(
    getattr(errno, name)
    for name in (
        *("EPERM", "ECONNABORTED", "EPROTO", "ENETDOWN", "ENOPROTOOPT", "EHOSTDOWN", "ENONET"),
        *("EHOSTUNREACH", "EOPNOTSUPP", "ENETUNREACH", "ENOSR", "ECONNRESET", "ETIMEDOUT"),
        *("ESOCKTNOSUPPORT", "EPROTONOSUPPORT"),
    )
    if hasattr(errno, name)
)
_GONE = (trio.BrokenResourceError, trio.ClosedResourceError)


class _Woken(Exception):
    """Shutdown ended a wait for the next request."""


class _Conn:
    """One plain connection: the byte stream ``accept`` reads and writes, with its timeouts."""

    __slots__ = (
        "_broken",
        "_closed",
        "_closing",
        "_eof",
        "_head_deadline",
        "_linger_scope",
        "_phase",
        "_server",
        "_sock",
        "_timeouts",
        "_waiting",
        "_woken",
        "client",
        "local",
        "scope",
    )

    def __init__(self, server: TrioServer, sock: socket.socket, peer: Any) -> None:
        self._server = server
        self._timeouts = server._timeouts
        self._sock = sock
        self.client = _pair(peer)
        try:
            self.local = _pair(sock.getsockname())
        except OSError:  # the client is already gone
            self.local = None
        self._phase: Phase = "idle"
        self._head_deadline = math.inf
        self._waiting: trio.CancelScope | None = None  # a read waiting for input
        self._linger_scope: trio.CancelScope | None = None
        self._eof = False  # the client sent its last byte (or is gone)
        self._broken = False  # the stream cannot be used any more: close without lingering
        self._woken = False  # shutdown ended the current wait for the next request
        self._closing = False  # closing (bounded in time): shutdown lets it finish
        self._closed = False
        self.scope = trio.CancelScope()  # the connection's task, for shutdown to cancel

    async def start(self) -> bool:
        """Get the connection ready to serve (TLS: the handshake); False if it is over."""
        return True

    # -- the Stream that accept() uses --------------------------------------------------------

    def set_phase(self, phase: Phase) -> None:
        if phase == "head" and self._phase != "head":
            self._head_deadline = trio.current_time() + self._timeouts["head"]
        self._phase = phase

    def _deadline(self) -> float:
        phase = self._phase
        if phase == "head":
            return self._head_deadline
        return trio.current_time() + self._timeouts[phase]

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        sock = self._sock
        size = max_bytes or _READ_SIZE
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

    async def aclose(self) -> None:
        """Close gracefully: half-close, discard input for a while (see LINGER), close."""
        self._server._release(self)
        if self._closed:
            return
        self._closing = True
        if not (self._eof or self._broken or self._server._cut):
            with trio.move_on_after(LINGER) as scope:
                self._linger_scope = scope
                try:
                    await self._linger()
                finally:
                    self._linger_scope = None
        await self.close_now()

    async def _linger(self) -> None:
        sock = self._sock
        try:
            sock.shutdown(socket.SHUT_WR)
            while True:
                try:
                    if not sock.recv(_READ_SIZE):
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
            _close(self._sock)

    # -- shutdown -----------------------------------------------------------------------------

    def shutdown_if_idle(self) -> None:
        """Called at shutdown: end a wait for the next request, so the connection ends."""
        if self._phase == "idle" and self._waiting is not None:
            self._woken = True
            self._waiting.cancel()

    def cut(self) -> None:
        """Called at the end of shutdown: stop lingering, or a refusal still under way.

        A close in progress is left to finish: it is bounded in time (a TLS close_notify).
        """
        if self._linger_scope is not None:
            self._linger_scope.cancel()
        elif not self._closing:
            self.scope.cancel()


class _TLSConn(_Conn):
    """One TLS connection: a ``trio.SSLStream``, with a cancel scope per call for timeouts."""

    __slots__ = ("_stream", "_transport")

    def __init__(self, server: TrioServer, sock: socket.socket, peer: Any) -> None:
        super().__init__(server, sock, peer)
        assert server._ssl is not None
        self._transport = _StagedClose(
            self, trio.SocketStream(trio.socket.from_stdlib_socket(sock))
        )
        # https_compatible=False: we send close_notify when we close (RFC 9112 §9.8), as
        # asyncio does; a client that skips its own reads as a broken connection, which
        # receive_some turns into the end of input.
        self._stream = trio.SSLStream(self._transport, server._ssl, server_side=True)

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

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        phase = self._phase
        self._woken = False
        with trio.CancelScope(deadline=self._deadline()) as scope:
            self._waiting = scope
            try:
                data = await self._stream.receive_some(max_bytes)
            except _GONE:
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
        except _GONE as exc:
            self._broken = True
            raise StreamClosed("connection lost") from exc

    async def aclose(self) -> None:
        """close_notify, then the same staged close as plain TCP (see _StagedClose)."""
        self._server._release(self)
        if self._closed:
            return
        self._closing = True
        self._transport.linger = not (self._eof or self._broken or self._server._cut)
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
                except _GONE:
                    pass
        await trio.aclose_forcefully(stream)


class _StagedClose(trio.abc.HalfCloseableStream):
    """The TCP stream under a TLS connection; its ``aclose`` can close in stages.

    ``SSLStream.aclose`` sends close_notify (TLS's end of data) and then closes this stream:
    with ``linger`` set, that close half-closes, discards input for a while (see LINGER) and
    only then closes, so a client still sending gets our last response, and a client reading
    until the end sees it at once, not after the linger.
    """

    def __init__(self, conn: _Conn, stream: trio.SocketStream) -> None:
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
                    self._conn._linger_scope = scope
                    try:
                        await stream.send_eof()
                        while await stream.receive_some(_READ_SIZE):
                            pass
                    except _GONE:
                        pass
                    finally:
                        self._conn._linger_scope = None
        finally:
            await stream.aclose()  # closes the socket first, even when cancelled


def _pair(addr: Any) -> tuple[str, int] | None:
    """(host, port) of a socket address; None for a Unix socket's."""
    return (addr[0], addr[1]) if isinstance(addr, tuple) else None


def _close(sock: socket.socket) -> None:
    if sock.fileno() != -1:
        trio.lowlevel.notify_closing(sock)  # wakes any task waiting on it
        sock.close()


class TrioServer:
    """A listening trio server running ``accept`` per connection; made by :func:`serve`.

    The same surface as the asyncio ``Server``: ``port``, ``sockets``, ``stopping`` and
    ``shutdown(grace)``.
    """

    def __init__(self, endpoint: Endpoint, opts: ServerOpts, ssl: SSLContext | None) -> None:
        self.endpoint = endpoint
        self.opts = opts
        self.stopping = trio.Event()
        self.tls = ssl is not None
        self._ssl = ssl
        self._conn_class = _Conn if ssl is None else _TLSConn
        self._scheme = "https" if ssl is not None else "http"
        self._timeouts: dict[Phase, float] = {
            "head": _or_inf(opts.head_timeout),
            "idle": _or_inf(opts.keep_alive_timeout),
            "body": _or_inf(opts.body_timeout),
            "write": _or_inf(opts.write_timeout),
        }
        self._sockets: list[socket.socket] = []
        self._uds: tuple[str, int] | None = None  # our socket file and its inode
        self._conns: set[_Conn] = set()  # serving requests; counted against the limit
        self._draining: set[_Conn] = set()  # lingering after close, or refused with a 503
        self._drained = trio.Event()
        self._accepting = trio.CancelScope()
        self._nursery: trio.Nursery | None = None
        self._stop = trio.Event()  # a shutdown was asked for
        self._grace: float | None = None
        self._cut = False  # shutdown is over: close without lingering
        self._interrupted = False  # a second signal cut the shutdown short
        self._running = False  # _run started, so _closed will be set
        self._closed = trio.Event()  # every connection is closed

    @property
    def sockets(self) -> list[socket.socket]:
        return list(self._sockets)

    @property
    def port(self) -> int:
        """The port of the first listening socket (handy with ``port=0``)."""
        return int(self._sockets[0].getsockname()[1])

    def request_shutdown(self, grace: float | None = None) -> None:
        """Start the graceful shutdown (see :meth:`shutdown`) without waiting for it."""
        if not self._stop.is_set():
            self._grace = grace
            self._stop.set()

    def _interrupt(self) -> None:
        """Cut the shutdown short: cancel every request still running, close everything."""
        log.warning("second signal: cancelling %d request(s) now", len(self._conns))
        self._interrupted = True
        self.request_shutdown()
        for conn in list(self._conns):
            conn.scope.cancel()

    async def shutdown(self, grace: float | None = None) -> None:
        """Stop accepting, let in-flight requests finish within ``grace``, then close everything.

        Streaming handlers see ``req.stopping`` set and should end their streams. Returns when
        every connection is closed; cancelling the wait does not stop the shutdown.
        """
        self.request_shutdown(grace)
        await self._closed.wait()

    # -- listening ----------------------------------------------------------------------------

    async def _listen(
        self, host: str, port: int, sock: socket.socket | None, uds: str | None
    ) -> None:
        if sock is not None:
            sock.listen(_BACKLOG)  # as asyncio's create_server(sock=) does
            socks = [sock]
        elif uds is not None:
            socks = [self._listen_unix(uds)]
        else:
            # trio resolves the host and binds every address (SO_REUSEADDR, IPV6_V6ONLY), as
            # asyncio's create_server does; we then drive the sockets ourselves.
            listeners = await trio.open_tcp_listeners(port, host=host, backlog=_BACKLOG)
            socks = [socket.socket(fileno=listener.socket.detach()) for listener in listeners]
        for s in socks:
            s.setblocking(False)
        self._sockets = socks

    def _listen_unix(self, path: str) -> socket.socket:
        abstract = path.startswith("\0")
        if not abstract:
            # A socket file left by an earlier run would make bind fail (asyncio removes it
            # too); anything that is not a socket is left alone and bind reports it.
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISSOCK(os.stat(path).st_mode):
                    os.remove(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
            sock.listen(_BACKLOG)
        except BaseException:
            sock.close()
            raise
        if not abstract:
            self._uds = (path, os.stat(path).st_ino)
        return sock

    def _stop_listening(self) -> None:
        self._accepting.cancel()
        for sock in self._sockets:
            _close(sock)  # at once: new connections are refused from now on
        self._sockets = []  # as asyncio's Server.sockets once closed
        if self._uds is not None:
            path, inode = self._uds
            self._uds = None
            with contextlib.suppress(OSError):
                if os.stat(path).st_ino == inode:  # still ours, not a newer server's
                    os.unlink(path)

    # -- serving ------------------------------------------------------------------------------

    async def _run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            # Connections end by the graceful shutdown, never by the caller's cancellation.
            with trio.CancelScope(shield=True):
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    nursery.start_soon(self._accept_all)
                    self._running = True
                    task_status.started()
        finally:
            self._closed.set()

    async def _accept_all(self) -> None:
        with self._accepting:
            async with trio.open_nursery() as nursery:
                for sock in self._sockets:
                    nursery.start_soon(self._accept_loop, sock)

    async def _accept_loop(self, listening: socket.socket) -> None:
        nursery = self._nursery
        assert nursery is not None
        limit = self.opts.max_connections
        tcp = listening.family in (socket.AF_INET, socket.AF_INET6)
        make = self._conn_class
        while True:
            try:
                sock, peer = listening.accept()
            except BlockingIOError:
                try:
                    await trio.lowlevel.wait_readable(listening)
                except trio.ClosedResourceError:
                    return  # shutdown closed the socket
                continue
            except OSError as exc:
                if exc.errno in _ACCEPT_IGNORED:
                    continue
                if exc.errno == errno.EBADF:
                    return  # shutdown closed the socket
                if exc.errno not in _OUT_OF_RESOURCES:
                    raise
                log.error("cannot accept a connection (%s): pausing for 100 ms", exc)
                await trio.sleep(0.1)
                continue
            sock.setblocking(False)
            if tcp:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = make(self, sock, peer)
            if limit is not None and len(self._conns) >= limit:
                log.warning("connection limit (%s) reached: answering 503", limit)
                self._draining.add(conn)
                nursery.start_soon(self._refuse, conn)
            else:
                self._conns.add(conn)
                nursery.start_soon(self._handle, conn)
            await trio.lowlevel.checkpoint()  # a flood of connections must not starve the rest

    async def _handle(self, conn: _Conn) -> None:
        with conn.scope:
            try:
                if await conn.start():
                    # (accept() without its own frame, as the asyncio runtime does)
                    await Connection(
                        conn,
                        self.endpoint,
                        self.opts,
                        client=conn.client,
                        server=conn.local,
                        scheme=self._scheme,
                        stopping=self.stopping,
                    ).serve()
            except Exception:
                log.error("connection task failed", exc_info=True)
            finally:
                self._release(conn)
                self._draining.discard(conn)
                await conn.close_now()

    async def _refuse(self, conn: _Conn) -> None:
        with conn.scope:
            try:
                if await conn.start():
                    with contextlib.suppress(StreamClosed, StreamTimeout):
                        await conn.send_all(OVERLOADED)
                    await conn.aclose()
            finally:
                self._draining.discard(conn)
                await conn.close_now()

    def _release(self, conn: _Conn) -> None:
        """``conn`` no longer serves requests: it frees its place and shutdown stops waiting."""
        if conn in self._conns:
            self._conns.discard(conn)
            self._draining.add(conn)
            if not self._conns:
                self._drained.set()

    async def _close(self) -> None:
        """The graceful shutdown; run by :func:`serve`, shielded from cancellation."""
        grace = self.opts.shutdown_grace if self._grace is None else self._grace
        self._stop.set()
        self._stop_listening()
        self.stopping.set()
        for conn in list(self._conns):
            conn.shutdown_if_idle()
        if self._conns:
            self._drained = trio.Event()
            with trio.move_on_after(grace):
                await self._drained.wait()
        if self._conns:
            pending = list(self._conns)
            log.warning("cancelled %d request(s) still running after %.1fs", len(pending), grace)
            for conn in pending:
                conn.scope.cancel()
        self._cut = True
        for conn in list(self._draining):
            conn.cut()
        if self._running:
            await self._closed.wait()


def _or_inf(timeout: float | None) -> float:
    return math.inf if timeout is None else timeout


async def _watch_signals(
    server: TrioServer, *, task_status: trio.TaskStatus[trio.CancelScope]
) -> None:
    """SIGINT or SIGTERM starts the graceful shutdown; a second one cuts it short.

    After a second signal, what still runs is cancelled and ``serve`` raises
    KeyboardInterrupt (the CLI exits with 130), as a second Ctrl-C does under asyncio.
    """
    with trio.CancelScope() as scope, contextlib.ExitStack() as stack:
        try:
            signals = stack.enter_context(trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM))
        except RuntimeError:  # pragma: no cover - not the main thread
            task_status.started(scope)
            return
        task_status.started(scope)
        async for _ in signals:
            if server._stop.is_set():
                server._interrupt()
                return
            server.request_shutdown()


async def serve(
    endpoint: Endpoint,
    host: str = "127.0.0.1",
    port: int = 9999,
    *,
    opts: ServerOpts | None = None,
    sock: socket.socket | None = None,
    ssl: SSLContext | None = None,
    uds: str | None = None,
    handle_signals: bool = True,
    ready: Callable[[TrioServer], None] | None = None,
    task_status: trio.TaskStatus[TrioServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``endpoint`` on trio until SIGINT/SIGTERM, ``shutdown()`` or cancellation.

    Then shut down gracefully: stop accepting, close idle keep-alive connections, let in-flight
    requests finish within ``opts.shutdown_grace``, cancel the rest. Start it with
    ``server = await nursery.start(serve, endpoint, ...)`` to get the :class:`TrioServer`.

    Args:
        endpoint: the endpoint answering every request.
        host, port: where to listen (``port=0``: any free port, see ``TrioServer.port``).
        opts: limits and timeouts.
        sock: an already-bound socket (TCP or Unix) to listen on instead of host/port.
        ssl: serve TLS with this context (requests then have ``scheme == "https"``).
        uds: listen on this Unix domain socket path instead of host/port.
        handle_signals: shut down on SIGINT/SIGTERM (needs the main thread).
        ready: called with the server once it listens.
        task_status: given by ``nursery.start``; started with the server.
    """
    server = TrioServer(endpoint, opts or ServerOpts(), ssl)
    await server._listen(host, port, sock, uds)
    try:
        async with trio.open_nursery() as nursery:
            signals = await nursery.start(_watch_signals, server) if handle_signals else None
            await nursery.start(server._run)
            for s in server.sockets:
                log.info("tophat listening on %s", listen_url(s, tls=server.tls))
            if ready is not None:
                ready(server)
            task_status.started(server)
            try:
                await server._stop.wait()
            finally:
                log.info("shutting down")
                with trio.CancelScope(shield=True):
                    await server._close()
                if signals is not None:
                    signals.cancel()
    finally:
        server._stop_listening()  # when anything above failed before the shutdown ran
    if server._interrupted:
        raise KeyboardInterrupt
    log.info("stopped")
