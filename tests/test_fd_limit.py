"""Running out of file descriptors: the server stays up, logs little, and warns at start-up.

The end-to-end tests run the CLI in a subprocess whose descriptor limit (soft and hard, so the
start-up raise cannot lift it) is far below ``max_connections``, then open more connections
than it can accept.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from servers import HOST, RUNTIMES, Serving, connected, free_port

from tophat import Request, ResponseWriter, ResponseWritten
from tophat.runtime.limits import FD_HEADROOM, AcceptFailures, raise_fd_limit
from tophat.testing import parse_responses

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 100  # descriptors of the server process
CLIENTS = 200  # connections opened at once: twice what the server can hold
ACCEPT_WARNINGS = {"asyncio": 1, "trio": 1, "uvloop": 0}  # per flood shorter than 10 s


@pytest.fixture(autouse=True)
def parser() -> str:
    """Accepting connections does not involve the request parser: one run, not one per parser
    (this overrides conftest's parametrized fixture; the CLI picks its parser itself)."""
    return "auto"


class Server:
    """The CLI in a subprocess; a thread reads its log as it comes (a server that floods its
    log must not stall on a full pipe, nor the test on reading it)."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int) -> None:
        self.proc = proc
        self.port = port
        self._log: list[bytes] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        while data := os.read(self.proc.stderr.fileno(), 65536):
            self._log.append(data)

    @property
    def log(self) -> str:
        return b"".join(self._log).decode(errors="replace")

    def wait_for(self, text: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log:
            assert self.proc.poll() is None, f"server exited before logging {text!r}: {self.log}"
            assert time.monotonic() < deadline, f"{text!r} not logged: {self.log}"
            time.sleep(0.02)

    def stop(self) -> str:
        """SIGTERM: the server exits 0 within 5 s; its whole log. (Only once it answered a
        request: it logs that it listens before it installs its signal handlers.)"""
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=5) == 0
        self._reader.join(5)
        return self.log


@contextlib.contextmanager
def cli_with_fd_limit(runtime: str, soft: int, hard: int) -> Iterator[Server]:
    """``python -m tophat examples.hello:app`` under RLIMIT_NOFILE (soft, hard), listening."""

    def limit() -> None:  # runs in the child, before exec
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    port = free_port()
    args = ("examples.hello:app", "--port", str(port), "--runtime", runtime)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tophat", *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=limit,
    )
    assert proc.stderr is not None
    server = Server(proc, port)
    try:
        server.wait_for("listening on")
        yield server
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        server._reader.join(5)  # the log's end: the process is gone
        proc.stderr.close()


def get_within(port: int, seconds: float) -> bytes:
    """One GET's response body, asking again (bounded) while the server sheds connections."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with socket.create_connection((HOST, port), timeout=5) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
            [resp] = parse_responses(data)
            assert resp.status == 200
            return resp.body
        except OSError:  # uvloop (libuv) resets connections it cannot accept
            assert time.monotonic() < deadline, "no answer after the descriptors were freed"
            time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_out_of_descriptors_the_server_stays_up_logs_one_warning_and_serves_again(
    runtime: str,
) -> None:
    with cli_with_fd_limit(runtime, LIMIT, LIMIT) as server:
        clients: list[socket.socket] = []
        try:
            # The kernel completes every handshake (the listen queue holds 2048); the server
            # accepts until its descriptors run out, then fails on each try.
            for _ in range(CLIENTS):
                clients.append(socket.create_connection((HOST, server.port), timeout=5))
            time.sleep(2.5)  # long enough for a log line per 100 ms to pass the bound below
            assert server.proc.poll() is None
        finally:
            for c in clients:
                c.close()
        assert get_within(server.port, 5) == b"Hello, world!"
        log = server.stop()
    lines = log.splitlines()
    assert len(lines) < 20, log[-1500:]
    assert "Traceback" not in log
    assert " ERROR " not in log
    # One warning for the whole episode where tophat accepts (uvloop's libuv accepts and
    # closes what it cannot hold, silently).
    warnings = sum("cannot accept connections" in line for line in lines)
    assert warnings == ACCEPT_WARNINGS[runtime], log


@pytest.mark.slow
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_descriptor_limit_below_max_connections_is_warned_about_at_start_up(
    runtime: str,
) -> None:
    with cli_with_fd_limit(runtime, LIMIT, LIMIT) as server:
        before_listening = server.log.split("listening on")[0]
        assert get_within(server.port, 5) == b"Hello, world!"
        log = server.stop()
    assert "max_connections=1000" in before_listening, log
    assert f"RLIMIT_NOFILE: {LIMIT}, hard limit {LIMIT}" in before_listening
    assert " ERROR " not in log


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/limits").exists(), reason="reads /proc/PID/limits")
def test_the_cli_raises_the_soft_descriptor_limit_to_the_hard_one() -> None:
    with cli_with_fd_limit("asyncio", LIMIT, 4096) as server:
        limits = Path(f"/proc/{server.proc.pid}/limits").read_text()
        assert get_within(server.port, 5) == b"Hello, world!"
        log = server.stop()
    [line] = [line for line in limits.splitlines() if line.startswith("Max open files")]
    assert line.split()[3:5] == ["4096", "4096"], line
    assert "max_connections" not in log  # 4096 holds 1000 connections: no warning


# -- raise_fd_limit, in this process ---------------------------------------------------------


@pytest.fixture
def soft_limit() -> Iterator[tuple[int, int]]:
    """This process's RLIMIT_NOFILE lowered to a soft 200 (the hard limit kept); restored."""
    saved = resource.getrlimit(resource.RLIMIT_NOFILE)
    hard = saved[1]
    if hard != resource.RLIM_INFINITY and hard < 2000:
        pytest.skip(f"needs a hard descriptor limit of 2000 or more (have {hard})")
    resource.setrlimit(resource.RLIMIT_NOFILE, (200, hard))
    try:
        yield 200, hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, saved)


def expected_soft(hard: int, needed: int = 0) -> int:
    cap = max(1 << 20, needed)
    return cap if hard == resource.RLIM_INFINITY else min(hard, cap)


def test_raise_fd_limit_lifts_the_soft_limit_to_the_hard_one_silently(
    soft_limit: tuple[int, int], caplog: pytest.LogCaptureFixture
) -> None:
    _, hard = soft_limit
    caplog.set_level(logging.DEBUG, logger="tophat")
    assert raise_fd_limit(1000) == expected_soft(hard)
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (expected_soft(hard), hard)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_raise_fd_limit_warns_when_max_connections_exceeds_the_hard_limit(
    soft_limit: tuple[int, int], caplog: pytest.LogCaptureFixture
) -> None:
    _, hard = soft_limit
    if hard == resource.RLIM_INFINITY:
        pytest.skip("no hard limit to exceed")
    too_many = hard  # plus the headroom: more than the hard limit allows
    raise_fd_limit(too_many)
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.name == "tophat.server"
    assert f"max_connections={too_many} needs ({too_many + FD_HEADROOM}" in warning.getMessage()


def test_raise_fd_limit_asks_for_what_the_connections_need_when_the_hard_limit_is_refused(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # macOS: an unlimited hard limit, but a soft one above kern.maxfilesperproc is EINVAL.
    state = {"soft": 256}

    def setrlimit(which: int, limits: tuple[int, int]) -> None:
        assert which == resource.RLIMIT_NOFILE
        if limits[0] > 24576:
            raise ValueError("not allowed to raise maximum limit")
        state["soft"] = limits[0]

    monkeypatch.setattr(
        resource, "getrlimit", lambda which: (state["soft"], resource.RLIM_INFINITY)
    )
    monkeypatch.setattr(resource, "setrlimit", setrlimit)
    assert raise_fd_limit(1000) == 1000 + FD_HEADROOM
    assert raise_fd_limit(None) == 1000 + FD_HEADROOM  # nothing needed, the cap refused: kept
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_raise_fd_limit_never_lowers_an_unlimited_soft_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inf = resource.RLIM_INFINITY

    def setrlimit(which: int, limits: tuple[int, int]) -> None:
        raise AssertionError(f"setrlimit{limits} called")

    monkeypatch.setattr(resource, "getrlimit", lambda which: (inf, inf))
    monkeypatch.setattr(resource, "setrlimit", setrlimit)
    assert raise_fd_limit(10**9) == inf


# -- AcceptFailures --------------------------------------------------------------------------


def test_accept_failures_log_the_first_then_one_warning_per_interval_with_the_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    failures = AcceptFailures(clock=lambda: now[0])
    emfile = OSError(errno.EMFILE, os.strerror(errno.EMFILE))
    for _ in range(2048):  # a whole accept batch, as CPython's loop tried it
        failures.failed(emfile)
    now[0] += AcceptFailures.INTERVAL - 0.01
    for _ in range(99):
        failures.failed(emfile)
    assert len(caplog.records) == 1
    now[0] += 0.01
    failures.failed(emfile)
    messages = [r.getMessage() for r in caplog.records]
    assert [r.levelno for r in caplog.records] == [logging.WARNING] * 2
    assert "1 failure(s) since the last warning" in messages[0]
    assert "ulimit -n" in messages[0]
    assert f"{2047 + 99 + 1} failure(s) since the last warning" in messages[1]


# -- a connection that cannot be set up ----------------------------------------------------------


async def hello(req: Request, w: ResponseWriter) -> ResponseWritten:
    w.set_text("hello")
    return await w.send()


async def test_a_connection_that_cannot_be_served_is_closed_and_logged_once(
    serving: Serving,
    runtime: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Setting up a connection failed (out of descriptors, the first connection's lazy import
    of the parser did): on asyncio the socket stayed open, unserved, for ever."""
    from tophat.runtime.asyncio import connection as _asyncio_conn
    from tophat.runtime.trio import server as _trio

    def broken(*args: object, **kw: object) -> None:
        raise OSError(24, "Too many open files")

    async with serving(hello) as server:
        monkeypatch.setattr(_trio if runtime == "trio" else _asyncio_conn, "Connection", broken)
        async with connected(server.port) as c:
            await c.send(b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n")
            with anyio.fail_after(5):
                assert await c.read_all() == b""
        monkeypatch.undo()
        async with connected(server.port) as c:
            await c.send(b"GET /b HTTP/1.1\r\nHost: t\r\n\r\n")
            with anyio.fail_after(5):
                assert (await c.response())[0] == 200
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1, errors
    assert errors[0].exc_info is not None
