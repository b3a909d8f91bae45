"""What a running server tells its operator: where it listens and how, how it shuts down.

* The listening line names the address, the runtime, the parser, the workers and the pid, and
  how to stop: ``tophat listening on http://127.0.0.1:8000 (asyncio, h11 parser, 1 worker,
  pid 1234); press Ctrl+C to stop``.
* The shutdown line says how long the drain may take and that a second signal cuts it short:
  ``shutting down: waiting up to 10s for 3 requests; press Ctrl+C again to stop now``.
* In a worker process (``--workers N``) every ``tophat.*`` line starts with ``[worker PID]``:
  N processes write to one stderr, and whatever format the user chose, each line must say
  which process wrote it.
* ``tophat.serve()`` from a script with no logging configured would print nothing (Python
  drops INFO without a handler): :func:`ensure_handler` gives the ``tophat`` logger a stderr
  handler then, and only then, as uvicorn and aiohttp do.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Sequence

from tophat.parsers import resolve_parser
from tophat.runtime.limits import listen_url
from tophat.server.opts import ServerOpts

__all__ = [
    "DEFAULT_FORMAT",
    "ensure_handler",
    "log_listening",
    "log_shutting_down",
    "mark_worker",
]

log = logging.getLogger("tophat.server")

#: The default handler's format (the CLI's too).
DEFAULT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# How many processes serve the port: set in each worker by mark_worker (this process only).
_workers = 1


def log_listening(
    sockets: Sequence[socket.socket],
    *,
    tls: bool,
    runtime: str,
    opts: ServerOpts,
    signals: bool,
) -> None:
    """The listening line. ``signals``: SIGINT/SIGTERM stop this server (say how to stop)."""
    urls = ", ".join(listen_url(s, tls=tls) for s in sockets)
    workers = "1 worker" if _workers == 1 else f"one of {_workers} workers"
    # (In a worker the supervisor says how to stop, once: not N times.)
    hint = "; press Ctrl+C to stop" if signals and _workers == 1 else ""
    log.info(
        "tophat listening on %s (%s, %s parser, %s, pid %d)%s",
        urls,
        runtime,
        resolve_parser(opts.parser),
        workers,
        os.getpid(),
        hint,
    )


def log_shutting_down(in_flight: int, grace: float, *, signals: bool) -> None:
    """The shutdown line: ``in_flight`` requests get up to ``grace`` seconds to finish.
    ``signals``: a second SIGINT/SIGTERM stops at once (say so)."""
    if not in_flight:
        log.info("shutting down (no request in flight)")
        return
    log.info(
        "shutting down: waiting up to %gs for %d request%s%s",
        grace,
        in_flight,
        "" if in_flight == 1 else "s",
        "; press Ctrl+C again to stop now" if signals else "",
    )


def ensure_handler() -> None:
    """Give the ``tophat`` logger a stderr handler at INFO when logging is not configured at
    all (neither the root logger nor ``tophat`` has a handler); else change nothing. Idempotent:
    once it added its handler, ``tophat`` has one."""
    tophat = logging.getLogger("tophat")
    if logging.getLogger().handlers or tophat.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(DEFAULT_FORMAT))
    tophat.addHandler(handler)
    if tophat.level == logging.NOTSET and tophat.getEffectiveLevel() > logging.INFO:
        tophat.setLevel(logging.INFO)  # (a level the user set on "tophat" stays)


def mark_worker(workers: int) -> None:
    """In a worker process: its listening line counts ``workers``, and every ``tophat.*`` log
    record it makes starts with ``[worker PID]`` (a record factory: whatever the handlers and
    their format, and each record tagged once)."""
    global _workers
    _workers = workers
    tag = f"[worker {os.getpid()}] "
    make = logging.getLogRecordFactory()

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = make(*args, **kwargs)
        if record.name == "tophat" or record.name.startswith("tophat."):
            record.msg = tag + str(record.msg)
        return record

    logging.setLogRecordFactory(factory)
