"""The asyncio runtime: the listening server, graceful shutdown, ``serve`` and ``start_server``.

A thin layer: every HTTP decision is in ``accept``. This module owns the listening socket and
the shutdown; the connections' shared state (the connection sets, the read buffer, the timeouts
per phase) is the server's ``ConnectionPool`` (``pool.py``), and each connection is a ``Conn``
(``connection.py``), the stream adapter that owns the clock. On CPython's selector loop it also
accepts connections itself (``_Acceptor``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from ssl import SSLContext
from typing import Any

from tophat.http.endpoint import Endpoint
from tophat.http.serialize import LINGER
from tophat.parsers import preload
from tophat.runtime.asyncio.connection import Conn
from tophat.runtime.asyncio.pool import ConnectionPool
from tophat.runtime.limits import ACCEPT_IGNORED, BACKLOG, AcceptFailures, listen_url
from tophat.runtime.logs import log_listening, log_shutting_down
from tophat.server.lifespan import Lifespan, LifespanScope
from tophat.server.opts import ServerOpts

__all__ = ["Server", "listen_url", "serve", "start_server"]

log = logging.getLogger("tophat.server")


class Server:
    """A listening asyncio server running ``accept`` per connection."""

    def __init__(self, endpoint: Endpoint, opts: ServerOpts) -> None:
        self.endpoint = endpoint
        self.opts = opts
        preload(opts.parser)
        self._loop = asyncio.get_running_loop()
        self.stopping = asyncio.Event()
        # What the connections share with the server and with one another (see pool.py).
        self.pool = ConnectionPool(endpoint, opts, self.stopping)
        self._server: asyncio.base_events.Server | None = None
        self._acceptors: list[_Acceptor] = []
        self._accept_failures = AcceptFailures()
        self._uds: tuple[str, int] | None = None
        self._lifespan: LifespanScope | None = None  # entered by start_server, left by shutdown

    @property
    def tls(self) -> bool:
        """Whether the server speaks TLS."""
        return self.pool.tls

    @property
    def sockets(self) -> list[socket.socket]:
        return list(self._server.sockets) if self._server else []

    @property
    def port(self) -> int:
        """The port of the first listening socket (handy with ``port=0``)."""
        return int(self.sockets[0].getsockname()[1])

    async def _listen(
        self,
        host: str,
        port: int,
        sock: socket.socket | None,
        ssl: SSLContext | None,
        uds: str | None,
    ) -> None:
        pool = self.pool
        factory: Callable[[], Conn] = lambda: Conn(pool)  # noqa: E731
        loop = self._loop
        pool.tls = ssl is not None
        tls: dict[str, Any] = {"ssl": ssl}
        if ssl is not None and self.opts.head_timeout is not None:
            # A stalled TLS handshake is a stalled head: same limit (asyncio's default is 60 s).
            tls["ssl_handshake_timeout"] = self.opts.head_timeout
        if ssl is not None and sys.version_info >= (3, 11):
            # How long a closing TLS connection waits for the client's close_notify (reading
            # and discarding meanwhile): the linger of a plain TCP close (asyncio's default is
            # 30 s; Python 3.10's create_server has no such argument).
            tls["ssl_shutdown_timeout"] = LINGER
        # On CPython's selector loop we accept ourselves (see _Acceptor); uvloop's libuv and
        # the proactor loop accept well, and keep their own.
        own_accept = isinstance(loop, asyncio.selector_events.BaseSelectorEventLoop)
        kw = {**tls, "backlog": BACKLOG, "start_serving": not own_accept}
        if uds is not None or (sock is not None and sock.family == socket.AF_UNIX):
            self._server = await loop.create_unix_server(
                factory, path=uds if sock is None else None, sock=sock, **kw
            )
            if uds is not None:
                self._uds = (uds, os.stat(uds).st_ino)
        elif sock is not None:
            self._server = await loop.create_server(factory, sock=sock, **kw)
        else:
            self._server = await loop.create_server(factory, host, port, reuse_address=True, **kw)
        if own_accept:
            self._acceptors = [
                _Acceptor(self, listening.dup(), factory, tls) for listening in self._server.sockets
            ]

    def _remove_uds(self) -> None:
        # Python < 3.13 and uvloop leave the socket file behind; remove it if it is still ours.
        if self._uds is None:
            return
        path, inode = self._uds
        with contextlib.suppress(OSError):
            if os.stat(path).st_ino == inode:
                os.unlink(path)

    def in_flight(self) -> int:
        """How many requests are under way (a connection waiting for its next one is not)."""
        return sum(c.busy for c in (*self.pool.conns, *self.pool.gone))

    async def shutdown(self, grace: float | None = None) -> None:
        """Stop accepting, let in-flight requests finish within ``grace``, then close everything.

        Streaming handlers see ``req.stopping`` set and should end their streams. Then the
        lifespan's teardown runs (``LifespanFailed`` if it raises).
        """
        pool = self.pool
        if pool.closing:
            return
        pool.closing = True
        grace = self.opts.shutdown_grace if grace is None else grace
        if self._server is not None:
            for acceptor in self._acceptors:
                acceptor.close()
            self._server.close()
            self._remove_uds()
        self.stopping.set()
        for conn in list(pool.conns):
            conn.shutdown_if_idle()
        tasks = [c.task for c in (*pool.conns, *pool.gone) if c.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                log.warning(
                    "cancelled %d request(s) still running after %.1fs", len(pending), grace
                )
                await asyncio.wait(pending, timeout=1.0)
        for conn in list(pool.lingering):
            conn.end_linger()
        if self._server is not None:
            await self._server.wait_closed()
        lifespan, self._lifespan = self._lifespan, None
        if lifespan is not None:
            await lifespan.__aexit__(None, None, None)


class _Acceptor:
    """Accepts the connections of one listening socket, on CPython's selector event loop.

    The loop's own accept does not survive running out of descriptors: on EMFILE it goes on
    through its batch of ``backlog`` tries, and for each one logs a traceback through the
    loop's exception handler and schedules a retry a second later (under
    ``prlimit --nofile=600`` and 700 connections: 490 137 log lines in 10 s). This accepts the
    same way (a batch per readiness event, each socket handed to ``connect_accepted_socket``),
    but at such a failure stops, pauses for ``AcceptFailures.PAUSE`` and leaves the logging to
    ``AcceptFailures``. (A rate-limiting exception handler would be global to the loop, and
    leave 2048 failing accept() calls and timers a second.)
    """

    __slots__ = ("_factory", "_loop", "_retry", "_server", "_sock", "_tls")

    def __init__(
        self,
        server: Server,
        sock: socket.socket,
        factory: Callable[[], Conn],
        tls: dict[str, Any],
    ) -> None:
        self._server = server
        self._loop = server._loop
        self._sock = sock
        self._factory = factory
        self._tls = tls
        self._retry: asyncio.TimerHandle | None = None
        sock.setblocking(False)
        sock.listen(BACKLOG)
        self._loop.add_reader(sock.fileno(), self._accept)

    def close(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if self._sock.fileno() >= 0:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()

    def _resume(self) -> None:
        self._retry = None
        self._loop.add_reader(self._sock.fileno(), self._accept)

    def _accept(self) -> None:
        sock = self._sock
        for _ in range(BACKLOG):
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                return  # the queue is empty
            except OSError as exc:
                if exc.errno in ACCEPT_IGNORED:
                    continue  # that connection failed; the next one is fine
                # Out of descriptors (or memory, or worse): every accept() would fail the same
                # way until something closes. Stop, and retry a little later.
                self._server._accept_failures.failed(exc)
                self._loop.remove_reader(sock.fileno())
                self._retry = self._loop.call_later(AcceptFailures.PAUSE, self._resume)
                return
            self._loop.create_task(self._adopt(conn))

    async def _adopt(self, conn: socket.socket) -> None:
        # A connection that fails before it is ours (a TLS handshake, a reset) is the client's
        # business, not worth a log line; the transport closed the socket. (CPython's accept
        # does the same.)
        with contextlib.suppress(Exception):
            await self._loop.connect_accepted_socket(self._factory, conn, **self._tls)


async def start_server(
    endpoint: Endpoint,
    host: str = "127.0.0.1",
    port: int = 9999,
    *,
    opts: ServerOpts | None = None,
    sock: socket.socket | None = None,
    ssl: SSLContext | None = None,
    uds: str | None = None,
    lifespan: Lifespan | None = None,
) -> Server:
    """Start listening and serving in the background; return the :class:`Server`.

    Args:
        endpoint: the endpoint answering every request.
        host, port: where to listen (``port=0``: any free port, see ``Server.port``).
        opts: limits and timeouts.
        sock: an already-bound listening socket (TCP or Unix) to use instead of host/port.
        ssl: serve TLS with this context (requests then have ``scheme == "https"``).
        uds: listen on this Unix domain socket path instead of host/port.
        lifespan: setup run before listening, teardown run by ``Server.shutdown`` after the
            drain (see ``tophat.Lifespan``).

    Raises:
        LifespanFailed: the setup raised (logged; nothing listens).
    """
    server = Server(endpoint, opts or ServerOpts())
    scope = LifespanScope(lifespan)
    # Setup first: no connection may wait in a listening queue for a setup that may fail.
    await scope.__aenter__()
    try:
        await server._listen(host, port, sock, ssl, uds)
    except BaseException as exc:
        await scope.__aexit__(type(exc), exc, exc.__traceback__)
        raise
    server._lifespan = scope
    return server


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
    ready: Callable[[Server], None] | None = None,
    lifespan: Lifespan | None = None,
) -> None:
    """Serve ``endpoint`` on the running asyncio loop until SIGINT/SIGTERM or cancellation.

    Then shut down gracefully. The arguments are those of :func:`start_server`, plus:

    Args:
        handle_signals: install SIGINT/SIGTERM handlers that start the graceful shutdown.
        ready: called with the server once it listens (e.g. to log the address).
        lifespan: setup run before listening, teardown after the graceful drain.

    Raises:
        LifespanFailed: the lifespan's setup or teardown raised (logged with its traceback).
    """
    server = await start_server(
        endpoint, host, port, opts=opts, sock=sock, ssl=ssl, uds=uds, lifespan=lifespan
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    try:  # (from here on, whatever fails still drains and runs the lifespan's teardown)
        if handle_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    loop.add_signal_handler(sig, stop.set)
                    installed.append(sig)
                except (NotImplementedError, RuntimeError):  # pragma: no cover - not main thread
                    pass
        runtime = "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
        log_listening(
            server.sockets,
            tls=ssl is not None,
            runtime=runtime,
            opts=server.opts,
            signals=bool(installed),
        )
        if ready is not None:
            ready(server)
        await stop.wait()
    finally:
        # Handlers off first: a second Ctrl-C during the grace period interrupts at once.
        for sig in installed:
            loop.remove_signal_handler(sig)
        log_shutting_down(server.in_flight(), server.opts.shutdown_grace, signals=bool(installed))
        await server.shutdown()
    log.info("stopped")
