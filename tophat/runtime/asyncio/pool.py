"""What an asyncio ``Server`` shares with its connections: one ``ConnectionPool``.

The server (``server.py``) makes the pool and hands it to every connection (``connection.py``);
neither module reads the other's fields. The pool holds:

* the connection sets shutdown works through: ``conns`` (serving requests, counted against
  ``max_connections``), ``gone`` (the client left; the endpoint has its ``disconnect_grace`` to
  end) and ``lingering`` (closed by us, still discarding the client's input);
* ``closing`` (shutdown began: new connections get a 503), ``tls``, the per-phase ``timeouts``,
  the one ``read_buffer`` every connection reads into, and the ``overloaded`` warning;
* what a departed client's connection does (``peer_left``): free its place at once, and cancel
  its endpoint if it still runs ``disconnect_grace`` seconds later.

It knows a connection only through ``Member``, the few things the pool and the server's
shutdown use.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from tophat.http.endpoint import Endpoint
from tophat.runtime.limits import Throttled
from tophat.server.connection import Connection
from tophat.server.opts import ServerOpts
from tophat.server.stream import Phase, socket_address

__all__ = ["ConnectionPool", "Member"]

log = logging.getLogger("tophat.server")


class Member(Protocol):
    """A connection of the pool (``connection.Conn``), as the pool and shutdown see it."""

    connection: Connection | None
    task: asyncio.Task[None] | None
    grace_timer: asyncio.TimerHandle | None  # cancels the endpoint of a client that left

    @property
    def busy(self) -> bool: ...  # a request is under way (the shutdown line counts them)
    def shutdown_if_idle(self) -> None: ...
    def end_linger(self) -> None: ...


class ConnectionPool:
    """The state a server's connections share (see the module doc)."""

    __slots__ = (
        "_locals",
        "closing",
        "conns",
        "endpoint",
        "gone",
        "lingering",
        "loop",
        "opts",
        "overloaded",
        "read_buffer",
        "stopping",
        "timeouts",
        "tls",
    )

    def __init__(self, endpoint: Endpoint, opts: ServerOpts, stopping: asyncio.Event) -> None:
        self.endpoint = endpoint
        self.opts = opts
        self.stopping = stopping
        self.loop = asyncio.get_running_loop()
        self.conns: set[Member] = set()
        self.lingering: set[Member] = set()  # closed by us, still draining the client's input
        self.gone: set[Member] = set()  # the client left; the endpoint has its grace to end
        self.closing = False
        self.tls = False
        # (a burst of clients past the limit must not flood the log: one line per interval)
        self.overloaded = Throttled(
            "connection limit (%s) reached: answering 503; %d connection(s) refused since the "
            "last warning"
        )
        # Every connection's reads land here first (see Conn.get_buffer).
        self.read_buffer = memoryview(bytearray(opts.read_size))
        # Per phase (but "head", timed from the head's first byte), the timeout of one wait.
        self.timeouts: dict[Phase, float | None] = {
            "idle": opts.keep_alive_timeout,
            "body": opts.body_timeout,
            "write": opts.write_timeout,
        }
        self._locals: dict[Any, tuple[str, int] | None] = {}

    def local_address(self, sockname: Any) -> tuple[str, int] | None:
        """The (host, port) connections arrive at: one shared tuple per address (there are
        few), instead of one per connection."""
        try:
            return self._locals[sockname]
        except KeyError:
            address = self._locals[sockname] = socket_address(sockname)
            return address
        except TypeError:  # not hashable (not an IP address): nothing to share
            return socket_address(sockname)

    def release(self, conn: Member) -> None:
        """``conn``'s task ended: it no longer counts, and shutdown stops waiting for it."""
        self.conns.discard(conn)
        self.gone.discard(conn)

    def peer_left(self, conn: Member, reset: bool) -> None:
        """The client closed or reset the connection: if a request is being handled, tell its
        endpoint (``req.disconnected``), free the connection's place at once, and cancel the
        endpoint if it still runs ``disconnect_grace`` seconds later."""
        if conn not in self.conns:
            # Released already (its task ended first: a connection the server closed after
            # its response, whose transport reports the end only then), or gone already. It
            # was once added back to ``gone`` here, and stayed there for ever: every
            # "Connection: close" or HTTP/1.0 request leaked a connection and counted as in
            # flight at shutdown.
            return
        connection = conn.connection
        if connection is None or connection.gone or not connection.peer_gone(reset):
            return
        self.conns.discard(conn)  # (its task is still waited for at shutdown)
        self.gone.add(conn)
        grace = self.opts.disconnect_grace
        task = conn.task
        if grace is not None and task is not None and not task.done():
            conn.grace_timer = self.loop.call_later(grace, self._cancel_departed, conn)

    def _cancel_departed(self, conn: Member) -> None:
        conn.grace_timer = None
        task = conn.task
        if task is not None and not task.done():
            client = conn.connection.client if conn.connection is not None else None
            log.info(
                "cancelling the endpoint of %s: the client left %.1f s ago",
                f"{client[0]}:{client[1]}" if client else "a client",
                self.opts.disconnect_grace,
            )
            task.cancel()
