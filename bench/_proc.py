"""What the bench scripts share: stopping a server process, reading a response to the close.

Standard library only (``perf.py`` runs with any Python). The scripts run as
``python bench/NAME.py``, so this module is imported as ``_proc``.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Callable
from typing import Any


def stop_process(proc: subprocess.Popen[Any], kill: Callable[[], None] | None = None) -> int | None:
    """SIGTERM, then up to 15 s for the exit; past that, ``kill()`` (default: SIGKILL the
    process). Returns the exit status, or None when it had to be killed."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            (kill or proc.kill)()
            proc.wait(5)
            return None
    return proc.returncode


def exchange_once(host: str, port: int, request: bytes, timeout: float) -> bytes:
    """Send ``request`` on a fresh connection; what came back until the close (or timeout)."""
    data = b""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(request)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            piece = s.recv(65536)
            if not piece:
                break
            data += piece
    return data
