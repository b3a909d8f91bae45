"""Workers: N processes serving one port, watched by a supervisor that restarts any that dies.

How the port is shared:

* TCP where the kernel has ``SO_REUSEPORT`` (Linux, the BSDs): every worker binds its own
  listening socket to the same address and the kernel spreads new connections among them; the
  supervisor holds a bound, non-listening socket so the port stays ours across restarts. A
  worker that dies takes only its own connections (and its accept queue) with it.
* Otherwise, and for Unix sockets: the supervisor binds and listens once and every worker
  accepts on the inherited socket.

Workers are forked (the endpoint object is inherited, not re-imported), so this is for POSIX
systems. Each worker runs the lifespan's setup on its own loop before it listens (a pool per
worker), and its teardown after its drain. A worker whose setup fails exits with
``EXIT_SETUP_FAILED``, and the supervisor then stops the others and raises ``LifespanFailed``
rather than restarting a worker that cannot start (gunicorn halts on a worker's boot error
too); a worker whose teardown fails exits with ``EXIT_TEARDOWN_FAILED``, which the supervisor
reports the same way once every worker stopped.

The supervisor forwards SIGTERM/SIGINT to the workers, waits for their graceful shutdown
(``ServerOpts.shutdown_grace`` plus a margin), then kills what is left.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from ssl import SSLContext
from typing import Literal

from tophat.http.endpoint import Endpoint
from tophat.runtime.limits import BACKLOG
from tophat.runtime.logs import mark_worker
from tophat.runtime.run import Runtime, run_one
from tophat.server.exchange import name_of
from tophat.server.lifespan import Lifespan, LifespanFailed
from tophat.server.opts import ServerOpts

__all__ = ["EXIT_SETUP_FAILED", "EXIT_TEARDOWN_FAILED", "supervise"]

log = logging.getLogger("tophat.workers")

_RESTART_BACKOFF_MAX = 5.0  # seconds between restarts of a worker that keeps dying at start
_QUICK_DEATH = 1.0  # a worker that dies sooner than this after starting counts as crashing
_ORPHAN_CHECK = 0.5  # seconds between a worker's checks that its supervisor still lives
EXIT_SETUP_FAILED = 3  # a worker's exit status when its lifespan's setup raised (as uvicorn's)
EXIT_TEARDOWN_FAILED = 4  # ... and when its teardown raised


def _reuseport_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _shared_socket(host: str, port: int, uds: str | None) -> socket.socket:
    if uds is not None:
        if os.path.exists(uds) and not os.path.isfile(uds):
            os.unlink(uds)  # a stale socket from an earlier run
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(uds)
    else:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    sock.listen(BACKLOG)
    sock.set_inheritable(True)
    return sock


def _stop_when_orphaned(supervisor: int) -> None:
    """Shut this worker down gracefully (SIGTERM to itself) once its supervisor is gone.

    A supervisor killed outright (SIGKILL, the OOM killer) cannot stop its workers, which would
    serve on, re-parented, holding the port. A daemon thread notices the new parent within
    half a second; the runtime's own SIGTERM handling then drains and exits.
    """

    def watch() -> None:
        while os.getppid() == supervisor:
            time.sleep(_ORPHAN_CHECK)
        log.warning("worker %d: the supervisor %d is gone; stopping", os.getpid(), supervisor)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="tophat-orphan-check", daemon=True).start()


def _worker_main(
    endpoint: Endpoint,
    host: str,
    port: int,
    opts: ServerOpts | None,
    runtime: Runtime,
    ssl: SSLContext | None,
    shared: socket.socket | None,
    lifespan: Lifespan | None,
    workers: int,
) -> None:
    # The supervisor's handlers do not belong here; the runtime installs its own.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    mark_worker(workers)  # this process's log lines carry its pid
    _stop_when_orphaned(os.getppid())
    # Bound, not listening: the server listens once the lifespan's setup is done, so the kernel
    # sends this worker no connection before it can serve one.
    sock = shared if shared is not None else _reuseport_socket(host, port)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            run_one(
                endpoint,
                host,
                port,
                opts=opts,
                runtime=runtime,
                ssl=ssl,
                uds=None,
                sock=sock,
                lifespan=lifespan,
            )
    except LifespanFailed as exc:  # (logged where it failed: the status is all that is left)
        sys.exit(EXIT_SETUP_FAILED if exc.phase == "setup" else EXIT_TEARDOWN_FAILED)


def supervise(
    endpoint: Endpoint,
    host: str,
    port: int,
    *,
    opts: ServerOpts | None,
    runtime: Runtime,
    workers: int,
    ssl: SSLContext | None,
    uds: str | None,
    lifespan: Lifespan | None = None,
) -> None:
    """Run ``workers`` serving processes until SIGINT/SIGTERM; restart any that dies.

    Raises:
        LifespanFailed: a worker's lifespan setup failed (the others are stopped), or a
            worker's teardown failed.
    """
    ctx = multiprocessing.get_context("fork")
    use_reuseport = uds is None and hasattr(socket, "SO_REUSEPORT")
    if use_reuseport:
        anchor = _reuseport_socket(host, port)  # bound, never listening: holds the port
        port = anchor.getsockname()[1]
        shared = None
    else:
        anchor = shared = _shared_socket(host, port, uds)
        if uds is None:
            port = anchor.getsockname()[1]
    mode = "SO_REUSEPORT" if use_reuseport else "one inherited socket"
    log.info(
        "supervisor %d: starting %d %s workers (%s); press Ctrl+C to stop",
        os.getpid(),
        workers,
        runtime,
        mode,
    )

    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}

    def start() -> BaseProcess:
        proc = ctx.Process(
            target=_worker_main,
            args=(endpoint, host, port, opts, runtime, ssl, shared, lifespan, workers),
            name="tophat-worker",
            daemon=False,
        )
        proc.start()
        log.info("worker %d started", proc.pid)
        return proc

    procs = [start() for _ in range(workers)]
    started = {p.pid: time.monotonic() for p in procs}
    backoff = 0.0
    failed: Literal["setup", "teardown"] | None = None
    try:
        while not stopping:
            ready = wait([p.sentinel for p in procs], timeout=0.2)
            if not ready or stopping:
                continue
            for i, proc in enumerate(procs):
                if proc.sentinel not in ready:
                    continue
                proc.join()
                if proc.exitcode == EXIT_SETUP_FAILED:
                    log.error("worker %d could not start (its lifespan setup failed)", proc.pid)
                    failed = "setup"
                    stopping = True
                    break
                lived = time.monotonic() - started.pop(proc.pid, 0.0)
                log.warning(
                    "worker %d exited with %s; starting a replacement", proc.pid, proc.exitcode
                )
                # A worker that dies at once (a broken app) must not make us fork in a loop.
                backoff = (
                    min(_RESTART_BACKOFF_MAX, backoff * 2 or 0.1) if lived < _QUICK_DEATH else 0.0
                )
                if backoff:
                    time.sleep(backoff)
                procs[i] = start()
                started[procs[i].pid] = time.monotonic()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        grace = (opts or ServerOpts()).shutdown_grace + 5.0
        # (The handlers are the previous ones again: a second Ctrl+C interrupts this wait, and
        # reaches the workers too, which then stop at once.)
        log.info(
            "supervisor: stopping %d workers: waiting up to %gs; press Ctrl+C again to stop now",
            len(procs),
            grace,
        )
        for proc in procs:
            if proc.is_alive() and proc.pid is not None:
                os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in procs:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                log.warning("worker %d did not stop in %.0fs; killing it", proc.pid, grace)
                proc.kill()
                proc.join()
            if proc.exitcode == EXIT_TEARDOWN_FAILED:
                failed = failed or "teardown"
        anchor.close()
        if uds is not None and os.path.exists(uds):
            os.unlink(uds)
        log.info("supervisor: stopped")
    if failed is not None:
        raise LifespanFailed(failed, name_of(lifespan))
