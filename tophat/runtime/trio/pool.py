"""What a ``TrioServer`` shares with its connections: one ``ConnectionPool``.

The server (``server.py``) makes the pool and hands it to every connection (``connection.py``,
``tls.py``); neither module reads the other's fields. The pool holds:

* the connection sets shutdown works through: ``conns`` (serving requests, counted against
  ``max_connections``) and ``draining`` (lingering after close, or refused with a 503), and
  ``drained``, set when ``conns`` empties;
* ``cut`` (the shutdown is over: close without lingering), the per-phase ``timeouts`` and the
  TLS context;
* the sweep that watches for clients leaving while their endpoint runs. asyncio's transports
  report a departure by callback; trio needs a task reading the socket, too costly for every
  request. So a connection whose endpoint has its request read whole (the ``"handler"`` phase)
  is only noted (``watch``); a sweep every ``SWEEP_TICK`` starts a watcher task
  (``Conn.watch``) for those still in that phase a whole tick later. A departure is thus seen
  within two ticks, and a quick request costs no task.

It knows a connection only through ``Member``, the few things the pool and the server's
shutdown use.
"""

from __future__ import annotations

import math
from ssl import SSLContext
from typing import Protocol

import trio

from tophat.server.opts import ServerOpts
from tophat.server.stream import Phase

__all__ = ["SWEEP_TICK", "ConnectionPool", "Member"]

# How often the sweep looks for endpoints that run long enough to need a watcher for their
# client leaving (see the module doc).
SWEEP_TICK = 0.05


class Member(Protocol):
    """A connection of the pool (``connection.Conn``), as the pool and shutdown see it."""

    scope: trio.CancelScope  # the connection's task, for shutdown to cancel
    watch_tick: int  # the sweep's tick when the "handler" phase began; -1: not watched

    @property
    def busy(self) -> bool: ...  # a request is under way (the shutdown line counts them)
    def begin_watch(self) -> None: ...
    async def watch(self) -> None: ...
    def shutdown_if_idle(self) -> None: ...
    def cut(self) -> None: ...


class ConnectionPool:
    """The state a server's connections share (see the module doc)."""

    __slots__ = (
        "_sweeping",
        "_tick",
        "_watched",
        "conns",
        "cut",
        "drained",
        "draining",
        "nursery",
        "opts",
        "ssl",
        "timeouts",
    )

    def __init__(self, opts: ServerOpts, ssl: SSLContext | None) -> None:
        self.opts = opts
        self.ssl = ssl
        self.timeouts: dict[Phase, float] = {
            "head": _or_inf(opts.head_timeout),
            "idle": _or_inf(opts.keep_alive_timeout),
            "body": _or_inf(opts.body_timeout),
            "write": _or_inf(opts.write_timeout),
        }
        self.conns: set[Member] = set()  # serving requests; counted against the limit
        self.draining: set[Member] = set()  # lingering after close, or refused with a 503
        self.drained = trio.Event()
        self.cut = False  # shutdown is over: close without lingering
        self.nursery: trio.Nursery | None = None  # where watchers run (the server's)
        self._watched: set[Member] = set()  # in the "handler" phase (see watch)
        self._tick = 0  # sweeps so far
        self._sweeping = False

    def release(self, conn: Member) -> None:
        """``conn`` no longer serves requests: it frees its place and shutdown stops waiting."""
        if conn.watch_tick >= 0:
            self.unwatch(conn)
        if conn in self.conns:
            self.conns.discard(conn)
            self.draining.add(conn)
            if not self.conns:
                self.drained.set()

    # -- clients that leave while their endpoint runs ------------------------------------------

    def watch(self, conn: Member) -> None:
        """``conn``'s endpoint runs with its request read whole: once it has run a whole sweep
        tick, a watcher task looks out for the client leaving (see the module doc)."""
        if conn.watch_tick < 0:
            conn.watch_tick = self._tick
            self._watched.add(conn)
            if not self._sweeping and self.nursery is not None:
                self._sweeping = True
                self.nursery.start_soon(self._sweep)

    def unwatch(self, conn: Member) -> None:
        conn.watch_tick = -1
        self._watched.discard(conn)

    async def _sweep(self) -> None:
        nursery = self.nursery
        assert nursery is not None
        try:
            while self._watched:
                await trio.sleep(SWEEP_TICK)
                self._tick += 1
                for conn in self._watched:
                    if conn.watch_tick == self._tick - 2:  # a whole tick in the phase, unwatched
                        # (begun here, before the task runs: a read that comes first must
                        # know to stop it, or two tasks would wait on one socket)
                        conn.begin_watch()
                        nursery.start_soon(conn.watch)
        finally:
            self._sweeping = False


def _or_inf(timeout: float | None) -> float:
    return math.inf if timeout is None else timeout
