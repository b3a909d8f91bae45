"""What every runtime's listening server shares: its limits, and how it meets them.

* ``BACKLOG``: the listen queue (and, on asyncio, the most connections accepted per readiness
  event).
* The descriptor limit: ``raise_fd_limit``, which ``serve`` calls at start-up, and
  ``FD_HEADROOM``.
* accept() failing: ``OUT_OF_RESOURCES`` (pause and retry), ``ACCEPT_IGNORED`` (that one
  connection failed; go on), ``AcceptFailures`` (the pause, and a log that stays small).
* ``Throttled``: a warning about something that can happen many times a second (the connection
  limit reached), logged at most once per interval.
* ``listen_url``: how a listening socket is reached, for the start-up log line.

Both runtimes (``runtime/asyncio``, ``runtime/trio``) and ``serve`` import this module; it
imports none of them.
"""

from __future__ import annotations

import errno
import logging
import socket
import sys
import time
from collections.abc import Callable

__all__ = [
    "ACCEPT_IGNORED",
    "BACKLOG",
    "FD_HEADROOM",
    "OUT_OF_RESOURCES",
    "AcceptFailures",
    "Throttled",
    "listen_url",
    "raise_fd_limit",
]

log = logging.getLogger("tophat.server")

BACKLOG = 2048  # the listen queue, and the most connections accepted per readiness event


# -- descriptors -----------------------------------------------------------------------------

#: Descriptors a server process needs beside one per connection: listening sockets, the event
#: loop's selector and wake-up pipe, standard streams, log files, connections being refused
#: past the limit. (Descriptors the endpoint opens, files it serves or a database pool, come on
#: top.)
FD_HEADROOM = 64
# Never raise the soft limit above this (Linux's default fs.nr_open), whatever the hard limit:
# some hard limits are ~2**30, and a child process that closes every possible descriptor
# before it runs (many do) would then take seconds.
_FD_SOFT_CAP = 1 << 20


def raise_fd_limit(max_connections: int | None) -> int | None:
    """Raise the soft RLIMIT_NOFILE toward the hard one; warn when the connections won't fit.

    The usual soft limit (1024 under systemd, 256 on macOS) is kept low for programs that use
    select(); tophat's runtimes use epoll/kqueue, so ``serve`` lifts it (up to the hard limit,
    which only an administrator can raise) rather than run out of descriptors under load. Where
    the result cannot hold ``max_connections`` plus ``FD_HEADROOM``, one warning says so at
    start-up, instead of accept() failing later.

    Returns:
        The soft limit now, or ``None`` where there is no such limit (Windows).
    """
    if sys.platform == "win32":
        return None
    import resource

    nofile = resource.RLIMIT_NOFILE
    soft, hard = resource.getrlimit(nofile)
    needed = None if max_connections is None else max_connections + FD_HEADROOM
    cap = max(_FD_SOFT_CAP, needed or 0)
    target = cap if hard == resource.RLIM_INFINITY else min(hard, cap)
    if soft != resource.RLIM_INFINITY and soft < target:
        # macOS refuses more than kern.maxfilesperproc even with an unlimited hard limit:
        # then ask for what the connections need only.
        for wanted in (target, needed):
            if wanted is None or wanted <= soft:
                continue
            try:
                resource.setrlimit(nofile, (wanted, hard))
            except (OSError, ValueError):
                continue
            log.debug("raised the descriptor limit (RLIMIT_NOFILE) from %d to %d", soft, wanted)
            soft = wanted
            break
    if needed is not None and soft != resource.RLIM_INFINITY and soft < needed:
        log.warning(
            "the descriptor limit (RLIMIT_NOFILE: %d, hard limit %s) is below what "
            "max_connections=%d needs (%d, with %d for the server itself): connections past it "
            "wait unaccepted. Raise the hard limit (ulimit -Hn, systemd LimitNOFILE=) or lower "
            "max_connections",
            soft,
            "unlimited" if hard == resource.RLIM_INFINITY else hard,
            max_connections,
            needed,
            FD_HEADROOM,
        )
    return int(soft)


#: accept() errors that mean the process or system is out of something (descriptors, buffers,
#: memory) right now: pause accepting, retry, never crash.
OUT_OF_RESOURCES = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))

#: accept() errors about one connection that failed before we took it (Linux accept(2): "treat
#: them like EAGAIN by retrying"); the next one in the queue is fine.
ACCEPT_IGNORED = frozenset(
    getattr(errno, name)
    for name in (
        *("EPERM", "ECONNABORTED", "EPROTO", "ENETDOWN", "ENOPROTOOPT", "EHOSTDOWN", "ENONET"),
        *("EHOSTUNREACH", "EOPNOTSUPP", "ENETUNREACH", "ENOSR", "ECONNRESET", "ETIMEDOUT"),
        *("ESOCKTNOSUPPORT", "EPROTONOSUPPORT"),
    )
    if hasattr(errno, name)
)


class Throttled:
    """A warning about something that can happen many times a second (a flood of clients):
    logged when it first happens, then at most once per ``INTERVAL``, with how many times it
    happened since the last one. ``message`` takes the call's arguments, then that count."""

    INTERVAL = 10.0

    __slots__ = ("_clock", "_count", "_message", "_next_report")

    def __init__(self, message: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._message = message
        self._clock = clock
        self._count = 0  # since the last warning
        self._next_report = float("-inf")

    def __call__(self, *args: object) -> None:
        self._count += 1
        now = self._clock()
        if now < self._next_report:
            return
        log.warning(self._message, *args, self._count)
        self._count = 0
        self._next_report = now + self.INTERVAL


class AcceptFailures:
    """accept() failing for lack of resources: how long to pause, and a log that stays small.

    A listening server that runs out of descriptors gets the same error on every accept() until
    a connection closes; the kernel keeps queueing connections meanwhile. The runtime stops
    accepting for ``PAUSE`` seconds after each failure and reports it here: the first failure
    logs one warning, then at most one per ``Throttled.INTERVAL`` counting the failures since
    (CPython's own accept loop logged a traceback per try: 490 137 lines in 10 s under
    ``prlimit --nofile=600``).
    """

    PAUSE = 0.1
    INTERVAL = Throttled.INTERVAL

    __slots__ = ("_warn",)

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._warn = Throttled(
            "cannot accept connections (%s): retrying every %.1f s%s; %d failure(s) since the "
            "last warning",
            clock,
        )

    def failed(self, exc: OSError) -> None:
        """Count one failed accept(); log if the last warning is ``INTERVAL`` old."""
        self._warn(exc, self.PAUSE, _ACCEPT_ADVICE.get(exc.errno, ""))


_ACCEPT_ADVICE: dict[int | None, str] = {
    errno.EMFILE: "; raise the descriptor limit (ulimit -n) or lower max_connections",
    errno.ENFILE: "; the system's file table is full (sysctl fs.file-max)",
}


def listen_url(sock: socket.socket, *, tls: bool = False) -> str:
    """How a listening socket is reached, for the log line: ``http://127.0.0.1:8000``."""
    addr = sock.getsockname()
    scheme = "https" if tls else "http"
    if sock.family == socket.AF_INET6:
        return f"{scheme}://[{addr[0]}]:{addr[1]}"
    if sock.family == socket.AF_INET:
        return f"{scheme}://{addr[0]}:{addr[1]}"
    return f"{scheme}+unix:{addr}"
