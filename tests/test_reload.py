"""``python -m tophat MODULE:ATTR --reload``: a saved change is served within 2 s; the reloader
stops its server on a signal, and when it dies.

The app is a copy in a temporary directory, edited there; the test polls the HTTP answer.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import HOST, free_port

pytestmark = pytest.mark.slow

APP = """\
async def app(req, w):
    w.set_text({answer!r})
    return await w.send()
"""


@pytest.fixture
def parser() -> str:
    """(Overrides conftest's: the server is a child process, run once, not once per parser.)"""
    return "auto"


def answer(port: int) -> str | None:
    """The body of ``GET /``, or ``None`` while nothing listens."""
    try:
        with socket.create_connection((HOST, port), timeout=2) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
    except OSError:
        return None
    head, _, body = data.partition(b"\r\n\r\n")
    return body.decode() if head.startswith(b"HTTP/1.1 200 ") else None


def wait_for_answer(port: int, expected: str | None, timeout: float) -> float:
    """Poll until ``GET /`` answers ``expected`` (``None``: nothing listens); the time it took."""
    started = time.monotonic()
    while (got := answer(port)) != expected:
        assert time.monotonic() - started < timeout, f"still {got!r}, not {expected!r}"
        time.sleep(0.02)
    return time.monotonic() - started


def wait_for_log(where: Path, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in (where / "log").read_text():
        assert time.monotonic() < deadline, f"{text!r} not logged"
        time.sleep(0.02)


@contextlib.contextmanager
def reloading(where: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m tophat app_mod:app --reload`` in ``where``; its log in ``where/log``."""
    with open(where / "log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tophat", "app_mod:app", "--reload", "--port", str(port)],
            cwd=where,
            stdout=log,
            stderr=subprocess.STDOUT,
            # (no .pyc: a rewrite within the same second as the last one could be served stale)
            env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"},
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()  # the server, in its own process group, stops when the reloader dies
            proc.wait(5)
        wait_for_answer(port, None, timeout=15)


def save(path: Path, text: str) -> None:
    # As an editor saves: write a new file, then rename it over the old one.
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def test_a_saved_change_is_served_within_2_seconds(tmp_path: Path) -> None:
    source = tmp_path / "app_mod.py"
    source.write_text(APP.format(answer="first"))
    port = free_port()
    with reloading(tmp_path, port) as proc:
        wait_for_answer(port, "first", timeout=20)
        time.sleep(0.3)  # (the watcher is up before the first server answers; a margin still)
        save(source, APP.format(answer="second version"))
        assert wait_for_answer(port, "second version", timeout=10) < 2.0
        source.write_text(APP.format(answer="third, written in place"))
        assert wait_for_answer(port, "third, written in place", timeout=10) < 2.0
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
        wait_for_answer(port, None, timeout=5)  # its server stopped too
    log = (tmp_path / "log").read_text()
    assert "app_mod.py changed; restarting the server" in log
    assert "change detected" not in log  # (watchfiles' own line, said once by ours)
    assert "Traceback" not in log


def test_a_broken_save_waits_for_the_next_one(tmp_path: Path) -> None:
    source = tmp_path / "app_mod.py"
    source.write_text(APP.format(answer="good"))
    port = free_port()
    with reloading(tmp_path, port):
        wait_for_answer(port, "good", timeout=20)
        time.sleep(0.3)
        save(source, "async def app(req, w:\n")  # a syntax error: the server cannot start
        wait_for_log(tmp_path, "restarting on the next change", timeout=10)
        assert answer(port) is None
        save(source, APP.format(answer="fixed"))
        assert wait_for_answer(port, "fixed", timeout=10) < 2.0
    log = (tmp_path / "log").read_text()
    assert "SyntaxError" in log  # the traceback of the user's own mistake is shown


def test_the_server_stops_when_the_reloader_is_killed(tmp_path: Path) -> None:
    (tmp_path / "app_mod.py").write_text(APP.format(answer="alive"))
    port = free_port()
    with reloading(tmp_path, port) as proc:
        wait_for_answer(port, "alive", timeout=20)
        proc.kill()  # no chance to stop its server: the server sees the pipe close
        proc.wait(5)
        wait_for_answer(port, None, timeout=15)
