"""serve(): run a server until SIGINT/SIGTERM on the runtime you name, in one or N processes.

This is the blocking entry point (the CLI calls it). To serve inside a loop you already run,
use the runtime's coroutine: ``tophat.serve_asyncio`` (asyncio or uvloop) or
``tophat.serve_trio``. One process is run by ``run.py``; N by ``workers.py``'s supervisor
(each worker runs ``run.py``'s ``run_one``); the descriptor limit raised at start-up is
``limits.py``'s.
"""

from __future__ import annotations

import socket
from ssl import SSLContext

from tophat.http.endpoint import Endpoint
from tophat.runtime.limits import raise_fd_limit
from tophat.runtime.logs import ensure_handler
from tophat.runtime.run import RUNTIMES, MissingExtra, Runtime, check_runtime, run_one, serve_trio
from tophat.server.lifespan import Lifespan, LifespanFailed
from tophat.server.opts import ServerOpts

# (the names from run.py and server/lifespan.py: tophat/__init__.py and the CLI take them here)
__all__ = [
    "RUNTIMES",
    "Lifespan",
    "LifespanFailed",
    "MissingExtra",
    "Runtime",
    "check_runtime",
    "serve",
    "serve_trio",
]


def serve(
    endpoint: Endpoint,
    host: str = "127.0.0.1",
    port: int = 9999,
    *,
    opts: ServerOpts | None = None,
    runtime: Runtime = "asyncio",
    workers: int = 1,
    ssl: SSLContext | None = None,
    uds: str | None = None,
    sock: socket.socket | None = None,
    lifespan: Lifespan | None = None,
) -> None:
    """Serve ``endpoint`` until SIGINT or SIGTERM, then stop gracefully. Blocks.

    Args:
        endpoint: ``async (Request, ResponseWriter) -> ResponseWritten``.
        host, port: where to listen.
        opts: limits and timeouts (``ServerOpts()`` by default).
        runtime: ``"asyncio"``, ``"uvloop"`` (the ``fast`` extra) or ``"trio"`` (the ``trio``
            extra).
        workers: processes serving the same port; above 1 a supervisor restarts any that dies.
        ssl: serve TLS with this context.
        uds: listen on a Unix domain socket at this path instead of host/port.
        sock: an already-bound listening socket to serve instead.
        lifespan: async setup and teardown (``tophat.Lifespan``), run in every process that
            serves: its setup before that process accepts a connection, its teardown after the
            graceful drain.

    Raises:
        MissingExtra: when the runtime's package is not installed (the message names the extra).
        LifespanFailed: a setup or teardown raised (logged with its traceback); with workers, a
            worker whose setup failed stops them all rather than being restarted.
    """
    check_runtime(runtime)
    if workers < 1:
        raise ValueError("workers must be >= 1")
    ensure_handler()  # a script that configured no logging still sees where it listens
    # Before forking: workers inherit the limit (it is per process, as is max_connections).
    raise_fd_limit((opts or ServerOpts()).max_connections)
    if workers == 1:
        run_one(
            endpoint,
            host,
            port,
            opts=opts,
            runtime=runtime,
            ssl=ssl,
            uds=uds,
            sock=sock,
            lifespan=lifespan,
        )
        return
    # (imported here: multiprocessing costs ~4 ms of every ``import tophat`` otherwise)
    from tophat.runtime.workers import supervise

    supervise(
        endpoint,
        host,
        port,
        opts=opts,
        runtime=runtime,
        workers=workers,
        ssl=ssl,
        uds=uds,
        lifespan=lifespan,
    )
