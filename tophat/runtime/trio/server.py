"""The trio runtime: the listening server, limits, graceful shutdown and ``serve``.

The counterpart of ``runtime/asyncio/server.py``, with the same behaviour: every HTTP decision is in
``accept``; this module owns the listening sockets, the connection limit and the shutdown. Each
connection is a ``Conn`` (``connection.py``) or ``TLSConn`` (``tls.py``), the stream adapters
that own the clock and the lingering close; what they share with the server (the connection
sets, the timeouts, the sweep that watches for clients leaving) is the server's
``ConnectionPool`` (``pool.py``).

Connections run in a nursery shielded from outside cancellation. Cancelling ``serve`` (like
SIGINT, SIGTERM or ``TrioServer.shutdown``) starts the *graceful* shutdown: in-flight requests
get ``opts.shutdown_grace`` to finish before they are cancelled.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import socket
import stat
from collections.abc import Callable
from ssl import SSLContext

import trio

from tophat.http.endpoint import Endpoint
from tophat.http.serialize import OVERLOADED
from tophat.parsers import preload
from tophat.runtime.limits import (
    ACCEPT_IGNORED,
    BACKLOG,
    OUT_OF_RESOURCES,
    AcceptFailures,
    Throttled,
)
from tophat.runtime.logs import log_listening, log_shutting_down
from tophat.runtime.trio.connection import Conn, close_socket
from tophat.runtime.trio.pool import ConnectionPool
from tophat.runtime.trio.tls import TLSConn
from tophat.server.connection import Connection
from tophat.server.lifespan import Lifespan, LifespanScope
from tophat.server.opts import ServerOpts
from tophat.server.stream import StreamClosed, StreamTimeout

__all__ = ["TrioServer", "serve"]

log = logging.getLogger("tophat.server")


class TrioServer:
    """A listening trio server running ``accept`` per connection; made by :func:`serve`.

    The same surface as the asyncio ``Server``: ``port``, ``sockets``, ``stopping`` and
    ``shutdown(grace)``.
    """

    def __init__(self, endpoint: Endpoint, opts: ServerOpts, ssl: SSLContext | None) -> None:
        self.endpoint = endpoint
        self.opts = opts
        preload(opts.parser)
        self.stopping = trio.Event()
        self.tls = ssl is not None
        self._conn_class = Conn if ssl is None else TLSConn
        self._scheme = "https" if ssl is not None else "http"
        # What the connections share with the server and with one another (see pool.py).
        self._pool = ConnectionPool(opts, ssl)
        self._sockets: list[socket.socket] = []
        self._uds: tuple[str, int] | None = None  # our socket file and its inode
        self._accepting = trio.CancelScope()
        self._nursery: trio.Nursery | None = None
        self._stop = trio.Event()  # a shutdown was asked for
        self._grace: float | None = None
        self._interrupted = False  # a second signal cut the shutdown short
        self._running = False  # _run started, so _closed will be set
        self._closed = trio.Event()  # every connection is closed
        self._accept_failures = AcceptFailures(trio.current_time)
        # (a burst of clients past the limit must not flood the log: one line per interval)
        self.overloaded = Throttled(
            "connection limit (%s) reached: answering 503; %d connection(s) refused since the "
            "last warning",
            trio.current_time,
        )

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
        if self._interrupted:
            return  # (a third signal: already done)
        conns = self._pool.conns
        log.warning("second signal: cancelling %d request(s) now", len(conns))
        self._interrupted = True
        self.request_shutdown()
        for conn in list(conns):
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
            sock.listen(BACKLOG)  # as asyncio's create_server(sock=) does
            socks = [sock]
        elif uds is not None:
            socks = [self._listen_unix(uds)]
        else:
            # trio resolves the host and binds every address (SO_REUSEADDR, IPV6_V6ONLY), as
            # asyncio's create_server does; we then drive the sockets ourselves.
            listeners = await trio.open_tcp_listeners(port, host=host, backlog=BACKLOG)
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
            sock.listen(BACKLOG)
        except BaseException:
            sock.close()
            raise
        if not abstract:
            self._uds = (path, os.stat(path).st_ino)
        return sock

    def _stop_listening(self) -> None:
        self._accepting.cancel()
        for sock in self._sockets:
            close_socket(sock)  # at once: new connections are refused from now on
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
                    self._nursery = self._pool.nursery = nursery
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
        pool = self._pool
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
                if exc.errno in ACCEPT_IGNORED:
                    continue
                if exc.errno == errno.EBADF:
                    return  # shutdown closed the socket
                if exc.errno not in OUT_OF_RESOURCES:
                    raise
                self._accept_failures.failed(exc)  # (logs at most once per interval)
                await trio.sleep(AcceptFailures.PAUSE)
                continue
            sock.setblocking(False)
            if tcp:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = make(pool, sock, peer)
            if limit is not None and len(pool.conns) >= limit:
                self.overloaded(limit)
                pool.draining.add(conn)
                nursery.start_soon(self._refuse, conn)
            else:
                pool.conns.add(conn)
                nursery.start_soon(self._handle, conn)
            await trio.lowlevel.checkpoint()  # a flood of connections must not starve the rest

    async def _handle(self, conn: Conn) -> None:
        with conn.scope:
            try:
                if await conn.start():
                    # (accept() without its own frame, as the asyncio runtime does)
                    conn.connection = connection = Connection(
                        conn,
                        self.endpoint,
                        self.opts,
                        client=conn.client,
                        server=conn.local,
                        scheme=self._scheme,
                        stopping=self.stopping,
                    )
                    await connection.serve()
            except Exception:
                log.error("connection task failed", exc_info=True)
            finally:
                pool = self._pool
                pool.release(conn)
                pool.draining.discard(conn)
                await conn.close_now()
        if conn.departed and conn.scope.cancelled_caught and not self._pool.cut:
            client = conn.client
            log.info(
                "cancelled the endpoint of %s: the client left %.1f s before",
                f"{client[0]}:{client[1]}" if client else "a client",
                self.opts.disconnect_grace,
            )

    async def _refuse(self, conn: Conn) -> None:
        with conn.scope:
            try:
                if await conn.start():
                    with contextlib.suppress(StreamClosed, StreamTimeout):
                        await conn.send_all(OVERLOADED)
                    await conn.aclose()
            finally:
                self._pool.draining.discard(conn)
                await conn.close_now()

    async def _close(self) -> None:
        """The graceful shutdown; run by :func:`serve`, shielded from cancellation."""
        grace = self.opts.shutdown_grace if self._grace is None else self._grace
        pool = self._pool
        self._stop.set()
        self._stop_listening()
        self.stopping.set()
        for conn in list(pool.conns):
            conn.shutdown_if_idle()
        if pool.conns:
            pool.drained = trio.Event()
            with trio.move_on_after(grace):
                await pool.drained.wait()
        if pool.conns:
            pending = list(pool.conns)
            log.warning("cancelled %d request(s) still running after %.1fs", len(pending), grace)
            for conn in pending:
                conn.scope.cancel()
        pool.cut = True
        for conn in list(pool.draining):
            conn.cut()
        if self._running:
            await self._closed.wait()


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
                # Cut short; later signals are swallowed until serve ends (returning would put
                # the default handler back, and a third Ctrl-C would interrupt the exit).
                server._interrupt()
            else:
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
    lifespan: Lifespan | None = None,
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
        lifespan: setup run before listening, teardown after the graceful drain. The
            teardown runs in the cancel scopes its setup opened (a nursery around the
            ``yield`` works), so it is not shielded: if ``serve`` itself is cancelled from
            outside, shield what the teardown must finish (``trio.CancelScope(shield=True)``).

    Raises:
        LifespanFailed: the lifespan's setup or teardown raised (logged with its traceback).
    """
    server = TrioServer(endpoint, opts or ServerOpts(), ssl)
    # Setup first: no connection may wait in a listening queue for a setup that may fail.
    async with LifespanScope(lifespan):
        await server._listen(host, port, sock, uds)
        try:
            async with trio.open_nursery() as nursery:
                signals = await nursery.start(_watch_signals, server) if handle_signals else None
                await nursery.start(server._run)
                log_listening(
                    server.sockets,
                    tls=server.tls,
                    runtime="trio",
                    opts=server.opts,
                    signals=signals is not None,
                )
                if ready is not None:
                    ready(server)
                task_status.started(server)
                try:
                    await server._stop.wait()
                finally:
                    busy = sum(c.busy for c in server._pool.conns)
                    grace = server.opts.shutdown_grace if server._grace is None else server._grace
                    log_shutting_down(busy, grace, signals=signals is not None)
                    with trio.CancelScope(shield=True):
                        await server._close()
                    if signals is not None:
                        signals.cancel()
        finally:
            server._stop_listening()  # when anything above failed before the shutdown ran
    if server._interrupted:
        raise KeyboardInterrupt
    log.info("stopped")
