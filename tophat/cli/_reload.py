"""``--reload``: run the server in a child process and restart it when a ``*.py`` file changes.

The watching is ``watchfiles``' (the ``reload`` extra). The child is ``python -m tophat`` with
the same arguments, in a process group of its own, so that a Ctrl-C reaches it once, forwarded
by this process: a first SIGINT/SIGTERM starts its graceful shutdown, a second forces it, as
without ``--reload``. The child holds the read end of a pipe whose write end only this process
has; when this process dies, however, the child sees end of file and stops
(``watch_parent``), so no orphan keeps the port.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from tophat._asynclib import MissingExtra

__all__ = ["PARENT_FD_ENV", "import_watchfiles", "run_with_reload", "watch_parent"]

log = logging.getLogger("tophat.reload")

#: Set in the child's environment: the descriptor of its end of the pipe.
PARENT_FD_ENV = "TOPHAT_RELOADER_FD"
_STOP_MARGIN = 2.0  # seconds past the child's shutdown grace before it is killed


def import_watchfiles() -> Any:
    """``watchfiles``, or ``MissingExtra`` naming the extra that installs it."""
    try:
        import watchfiles
    except ImportError:
        raise MissingExtra("--reload needs watchfiles: pip install 'tophat[reload]'") from None
    return watchfiles


def watch_parent() -> None:
    """In a child started by ``run_with_reload``: SIGTERM this process when the reloader dies.

    (Does nothing in a process the reloader did not start.)
    """
    fd = os.environ.pop(PARENT_FD_ENV, None)
    if fd is None:
        return

    def wait() -> None:
        try:
            os.read(int(fd), 1)  # only end of file comes: the reloader never writes
        finally:
            os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=wait, name="tophat-reloader-watch", daemon=True).start()


class _Child:
    """One run of the server, in its own process group."""

    def __init__(self, argv: Sequence[str]) -> None:
        read_end, self._write_end = os.pipe()
        env = {**os.environ, PARENT_FD_ENV: str(read_end)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tophat", *argv],
            env=env,
            pass_fds=(read_end,),
            start_new_session=True,  # terminal signals reach the reloader only
        )
        os.close(read_end)
        self.reported = False

    def signal(self, signum: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)

    def stop(self, grace: float) -> int:
        """SIGTERM, wait for its graceful shutdown, then kill."""
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(grace + _STOP_MARGIN)
        except subprocess.TimeoutExpired:
            log.warning("server %d did not stop within %.1fs: killed", self.proc.pid, grace)
            self.proc.kill()
        return self.wait()

    def wait(self) -> int:
        code = self.proc.wait()
        if self._write_end >= 0:
            os.close(self._write_end)
            self._write_end = -1
        return code


def run_with_reload(argv: Sequence[str], paths: Sequence[Path], grace: float) -> int:
    """Serve ``python -m tophat ARGV`` in a child, restarting it when a ``*.py`` file under
    ``paths`` changes, until SIGINT or SIGTERM; return the last child's exit status.

    Raises:
        MissingExtra: watchfiles is not installed.
    """
    watchfiles = import_watchfiles()
    stop = threading.Event()
    child = _Child(argv)

    def forward(signum: int, frame: FrameType | None) -> None:
        stop.set()
        child.signal(signum)  # the first starts a graceful shutdown, a second forces it

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    quiet = logging.getLogger("watchfiles")
    if quiet.level == logging.NOTSET:  # its "1 change detected": ours names the files
        quiet.setLevel(logging.WARNING)
    shown = ", ".join(str(p) for p in paths)
    log.info("reloader %d: restarting the server on *.py changes in %s", os.getpid(), shown)
    try:
        for changes in watchfiles.watch(
            *paths,
            watch_filter=watchfiles.PythonFilter(),
            stop_event=stop,
            rust_timeout=500,
            yield_on_timeout=True,  # to notice a server that exited by itself
            raise_interrupt=False,
        ):
            if not changes:
                code = child.proc.poll()
                if code is not None and not child.reported:
                    child.reported = True
                    log.warning("server exited (status %d); restarting on the next change", code)
                continue
            changed = sorted({os.path.relpath(path) for _, path in changes})
            log.info("reloader: %s changed; restarting the server", ", ".join(changed))
            child.stop(grace)
            child = _Child(argv)
        return child.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if child.proc.poll() is None:  # an exception above: leave nothing behind
            child.stop(grace)
