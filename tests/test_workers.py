"""--workers N: processes sharing one port, supervised; killing one loses nothing of the others."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie lasts until init reaps it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


class Cluster:
    def __init__(self, port: int, workers: int, runtime: str) -> None:
        self.port = port
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tophat",
                "tests.worker_app:app",
                "--port",
                str(port),
                "--workers",
                str(workers),
                "--runtime",
                runtime,
            ],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.worker_pids: list[int] = []
        assert self.proc.stderr is not None
        listening = 0
        deadline = time.monotonic() + 15
        while listening < workers:
            assert time.monotonic() < deadline, "workers did not start"
            line = self.proc.stderr.readline()
            assert line, "the supervisor exited early"
            if m := re.search(r"worker (\d+) started", line):
                self.worker_pids.append(int(m.group(1)))
            if "listening on" in line:
                listening += 1

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        for pid in self.worker_pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    c = Cluster(_free_port(), 2, "asyncio")
    yield c
    c.close()


async def _ask(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> int:
    writer.write(REQUEST)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(re.search(rb"content-length: (\d+)", head).group(1))  # type: ignore[union-attr]
    return int(await reader.readexactly(length))


async def _connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, int]:
    reader, writer = await asyncio.open_connection(HOST, port)
    return reader, writer, await _ask(reader, writer)


async def test_killing_a_worker_loses_nothing_of_the_others_and_it_is_replaced(
    cluster: Cluster,
) -> None:
    # Keep-alive connections spread over both workers by the kernel.
    conns = []
    for _ in range(60):
        conns.append(await asyncio.wait_for(_connect(cluster.port), 5))
        if len({pid for *_, pid in conns}) == 2 and len(conns) >= 6:
            break
    pids = {pid for *_, pid in conns}
    assert pids == set(cluster.worker_pids), (pids, cluster.worker_pids)
    victim, survivor = sorted(pids)
    survivors = [(r, w) for r, w, pid in conns if pid == survivor]

    answered = 0

    async def hammer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal answered
        end = time.monotonic() + 2.5
        while time.monotonic() < end:
            # Every request sent to a surviving worker gets its answer, from that worker.
            assert await asyncio.wait_for(_ask(reader, writer), 5) == survivor
            answered += 1

    load = [asyncio.create_task(hammer(r, w)) for r, w in survivors]
    await asyncio.sleep(0.5)
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()

    # A replacement serves within 2 seconds: new connections reach a third process.
    replacement = None
    while replacement is None:
        assert time.monotonic() - killed_at < 2.0, "no replacement worker within 2 s"
        try:
            _r, w, pid = await asyncio.wait_for(_connect(cluster.port), 1)
            w.close()
            if pid not in pids:
                replacement = pid
        except (OSError, asyncio.IncompleteReadError):
            pass  # a connection the kernel had queued for the dead worker
        await asyncio.sleep(0.02)
    replaced_after = time.monotonic() - killed_at
    await asyncio.gather(*load)
    assert answered >= 5 * len(survivors)  # the survivors kept serving throughout
    assert replaced_after < 2.0, replaced_after
    for _, w, _ in conns:
        w.close()

    # SIGTERM stops everything cleanly.
    cluster.proc.send_signal(signal.SIGTERM)
    assert cluster.proc.wait(15) == 0
    rest = cluster.proc.stderr.read() if cluster.proc.stderr else ""
    assert "Traceback" not in rest
    for pid in (survivor, replacement):
        assert not _alive(pid)


def test_workers_with_the_uvloop_runtime_serve_and_stop_on_sigint() -> None:
    c = Cluster(_free_port(), 2, "uvloop")
    try:
        seen = set()
        # SO_REUSEPORT spreads connections by a hash: on a loaded machine one worker may take
        # a while to start, so keep asking (bounded) until both answered.
        for _ in range(400):
            with socket.create_connection((HOST, c.port), timeout=5) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                data = b""
                while chunk := s.recv(4096):
                    data += chunk
            assert data.startswith(b"HTTP/1.1 200 OK\r\n")
            seen.add(int(data.rsplit(b"\r\n\r\n", 1)[1]))
            if len(seen) == 2:
                break
        assert seen == set(c.worker_pids)
        c.proc.send_signal(signal.SIGINT)
        assert c.proc.wait(15) == 0
        assert c.proc.stderr is not None
        assert "Traceback" not in c.proc.stderr.read()
    finally:
        c.close()


@pytest.mark.parametrize("runtime", ["asyncio", "trio"])
def test_workers_stop_when_their_supervisor_is_killed(runtime: str) -> None:
    # A supervisor killed outright (SIGKILL, the OOM killer) cannot tell its workers: they
    # once served on for ever, re-parented, holding the port. Now each notices and drains.
    c = Cluster(_free_port(), 2, runtime)
    try:
        c.proc.kill()
        c.proc.wait(5)
        deadline = time.monotonic() + 10
        while any(_running(pid) for pid in c.worker_pids):
            assert time.monotonic() < deadline, "workers outlived their supervisor"
            time.sleep(0.1)
        with pytest.raises(OSError):
            socket.create_connection((HOST, c.port), timeout=1).close()  # the port is free
    finally:
        c.close()
