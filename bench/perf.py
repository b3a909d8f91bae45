"""tophat against its peers, in one command: throughput, routing, middleware, bodies, memory.

    python3 bench/perf.py --short      # < 60 s: proves the harness works (CI may run it)
    python3 bench/perf.py              # full: 3 interleaved rounds x 5 s, ~8 min; writes
                                       # bench/RESULTS.md
    python3 bench/perf.py --setup      # (re)build bench/.venv-perf only
    python3 bench/perf.py --short --baseline HEAD~3   # + the same tophat servers from HEAD~3

Runs with any Python >= 3.10 (standard library only). On first use (or with --setup) it makes
its own virtualenv, bench/.venv-perf, with ``pip install -e REPO[fast,trio]`` and the peers
(uvicorn, httptools, uvloop, hypercorn, aiohttp, starlette, itsdangerous); every server runs
with that venv's python. The load generator is wrk (Debian package ``wrk``).

Each server is its own process on 127.0.0.1, pinned to CPU 0 (taskset); wrk (-t1 -c64) is
pinned to CPU 1. Every (server, test) cell gets a 1 s warm-up, then R rounds of D seconds; the
order of the cells rotates each round. Reported per cell: median requests/s with the min-max
spread, and median requests per CPU-second of the server process (user + system time from
/proc/PID/stat: steadier when the machine is shared). Only ratios within one run are quoted.
Memory: fresh servers hold 1,000 idle keep-alive connections (one request each); the VmRSS
growth per connection is reported.

The goals (from the issue) are printed met/missed with their ratios; the exit status never
depends on speed: 0 when every measurement ran, 1 when a server failed (crash, wrong answer),
2 when wrk is missing or --only names a server that is not there.

Before/after in one run: ``--baseline REV`` (any git revision) also runs every tophat server
(keys ``tophat@base``, ``tophat-fast@base``, ...; labels end in ``@ <short hash>``) from a
``git worktree add --detach`` of REV in a temporary directory: the same command with that
worktree as the cwd and first on PYTHONPATH, so ``python -m tophat`` and ``bench.perf_apps``
come from REV (checked once: where its tophat imports from). Each baseline cell is measured
right after its twin in the same rotation; the report adds "Before/after (same run)": per
twinned cell the after/before ratios, and per goal its ratio for both. The worktree is removed
at the end (also on errors and Ctrl-C). A REV that is not a commit: one ``error:`` line and
exit status 2 before anything runs. Where REV's CLI lacks a flag a server needs (probed from its
``--help``, as for the working tree), that twin is left out and the report says so.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import hashlib
import math
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from _proc import exchange_once, stop_process

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
VENV = os.path.join(HERE, ".venv-perf")
HOST = "127.0.0.1"
PEERS = ["uvicorn", "httptools", "uvloop", "hypercorn", "aiohttp", "starlette", "itsdangerous"]
VERSIONS_OF = list(dict.fromkeys(["tophat", "h11", "httptools", "uvloop", "trio", *PEERS]))
CONNS = 64
BIG_SIZE = 65536
POST_SIZE = 4096
HELLO = b"Hello, world!"
EN_DASH, TIMES = "\u2013", "\u00d7"  # for the markdown tables


# == setup: the virtualenv and wrk ============================================================


def venv_python() -> str:
    return os.path.join(VENV, "bin", "python")


def _setup_stamp() -> str:
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        pyproject = f.read()
    return hashlib.sha256(pyproject + repr(PEERS).encode()).hexdigest()


def setup_venv(force: bool) -> None:
    """Create bench/.venv-perf and install tophat (editable) with the peers, when needed."""
    stamp_path = os.path.join(VENV, ".perf-setup")
    stamp = _setup_stamp()
    if not force and os.path.exists(venv_python()):
        with contextlib.suppress(OSError), open(stamp_path) as f:
            if f.read().strip() == stamp:
                return
    print(f"setting up {os.path.relpath(VENV, ROOT)} (pip install; takes a minute) ...", flush=True)
    if not os.path.exists(venv_python()):
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True, timeout=300)
    pip = [venv_python(), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "-e", f"{ROOT}[fast,trio]", *PEERS], check=True, timeout=900)
    with open(stamp_path, "w") as f:
        f.write(stamp + "\n")


def check_wrk(install: bool) -> None:
    if shutil.which("wrk"):
        return
    if install and os.geteuid() == 0:
        print("installing wrk: apt-get install -y wrk", flush=True)
        if subprocess.run(["apt-get", "install", "-y", "wrk"], timeout=600).returncode != 0:
            subprocess.run(["apt-get", "update"], timeout=600)
            subprocess.run(["apt-get", "install", "-y", "wrk"], timeout=600)
        if shutil.which("wrk"):
            return
    print(
        "wrk (the load generator) is not installed. Install it with:\n\n"
        "    sudo apt-get install -y wrk\n\n"
        "or, as root, re-run with --install-wrk.",
        file=sys.stderr,
    )
    raise SystemExit(2)


def raise_fd_limit(want: int) -> int:
    """Raise the soft open-files limit (servers started later inherit it); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return int(soft)


# == servers ====================================================================================


@dataclass
class Server:
    key: str  # short id
    label: str  # as shown in the tables
    argv: list[str]  # "{port}" is replaced
    probe: str = "/"  # a GET answered 200 once the server is up
    optional: bool = False  # failing to start is "n/a", not a harness failure
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log_path: str = ""
    failure: str = ""  # why it is n/a / failed
    rss: dict[str, int] = field(default_factory=dict)
    exit_code: int | None = None
    cwd: str = ROOT  # also first on PYTHONPATH: a --baseline server runs from its worktree


def server_env(cwd: str) -> dict[str, str]:
    """The environment of a server run from ``cwd`` (the checkout or a baseline's worktree)."""
    return {**os.environ, "PYTHONPATH": cwd, "PYTHONDONTWRITEBYTECODE": "1"}


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port free now and not handed out before in this run: the servers bind theirs later,
    and the kernel may give a port just released to the next bind((HOST, 0)) (a full run with
    --baseline once gave aiohttp a tophat server's port: its bind failed, and the bench
    measured the tophat server in its place)."""
    while True:
        with socket.socket() as s:
            s.bind((HOST, 0))
            port = int(s.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def request(
    port: int,
    method: str = "GET",
    path: str = "/",
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    timeout: float = 3.0,
) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection (Connection: close): (status, headers, body)."""
    head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n"
    for name, value in (headers or {}).items():
        head += f"{name}: {value}\r\n"
    if body:
        head += f"Content-Length: {len(body)}\r\nContent-Type: application/octet-stream\r\n"
    data = exchange_once(HOST, port, head.encode("latin-1") + b"\r\n" + body, timeout)
    raw_head, _, rest = data.partition(b"\r\n\r\n")
    lines = raw_head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1]) if lines[0].startswith("HTTP/") else 0
    fields: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields.setdefault(name.strip().lower(), value.strip())
    return status, fields, rest


def start_servers(servers: list[Server], pin: list[str], logdir: str) -> None:
    """Start every server (in parallel) and wait until each answers its probe."""
    for s in servers:
        s.port = free_port()
        argv = [a.replace("{port}", str(s.port)) for a in s.argv]
        s.log_path = os.path.join(logdir, f"{s.key}.log")
        with open(s.log_path, "wb") as log:
            s.proc = subprocess.Popen(
                pin + argv,
                cwd=s.cwd,
                env=server_env(s.cwd),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
    deadline = time.monotonic() + 30
    waiting = list(servers)
    while waiting and time.monotonic() < deadline:
        for s in list(waiting):
            assert s.proc is not None
            if s.proc.poll() is not None:
                s.failure = f"exited with status {s.proc.returncode} at start: {log_tail(s)}"
                waiting.remove(s)
                continue
            try:
                status, _, _ = request(s.port, path=s.probe, timeout=1.0)
            except OSError:
                continue
            if status != 200:
                s.failure = f"answered {status} to GET {s.probe}"
            waiting.remove(s)
        time.sleep(0.1)
    for s in waiting:
        s.failure = "did not answer within 30 s"
    for s in servers:
        if s.failure:
            stop_server(s)


def log_tail(s: Server, lines: int = 1) -> str:
    try:
        with open(s.log_path, "rb") as f:
            text = f.read().decode("utf-8", "replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) if text else "(empty log)"


def stop_server(s: Server) -> None:
    proc = s.proc
    if proc is None or proc.returncode is not None:
        if proc is not None:
            s.exit_code = proc.returncode
        return

    def kill_group() -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    stop_process(proc, kill_group)
    s.exit_code = proc.returncode


# == /proc readings ==============================================================================

_TICK = os.sysconf("SC_CLK_TCK")


def _tree(pid: int) -> list[int]:
    """pid and its descendants (hypercorn and friends may serve from a child)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by pid and its descendants."""
    total = 0
    for p in _tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / _TICK


def rss_bytes(pid: int) -> int:
    """VmRSS of pid and its descendants."""
    total = 0
    for p in _tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "n/a"


# == tests and cells =============================================================================


@dataclass
class Test:
    key: str
    label: str
    method: str = "GET"
    path: str = "/"
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    expect: bytes | int | None = HELLO  # body, body length, or None (any 200)


@dataclass
class Cell:
    test: Test
    server: Server
    rps: list[float] = field(default_factory=list)
    per_cpu: list[float] = field(default_factory=list)
    cpu_share: list[float] = field(default_factory=list)  # server CPU-seconds per second
    p99_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    failure: str = ""

    @property
    def name(self) -> str:
        return f"{self.server.key}/{self.test.key}"

    @property
    def ok(self) -> bool:
        return not self.failure and not self.server.failure and bool(self.rps)


_WRK_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_WRK_TOTAL = re.compile(r"(\d+) requests in ")
_WRK_LAT = re.compile(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", re.M)


def wrk(cell: Cell, seconds: float, pin: list[str], scripts: dict[str, str]) -> dict[str, Any]:
    t = cell.test
    argv = [*pin, "wrk", "-t1", f"-c{CONNS}", f"-d{seconds:g}s", "--latency"]
    for name, value in t.headers.items():
        argv += ["-H", f"{name}: {value}"]
    if t.key in scripts:
        argv += ["-s", scripts[t.key]]
    argv.append(f"http://{HOST}:{cell.server.port}{t.path}")
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30).stdout
    m = _WRK_RPS.search(out)
    if not m:
        raise RuntimeError(f"cannot parse wrk output for {cell.name}:\n{out}")
    total = _WRK_TOTAL.search(out)
    lat = _WRK_LAT.search(out)
    errors = []
    if "Socket errors" in out:
        errors.append("socket errors: " + out.split("Socket errors:", 1)[1].splitlines()[0])
    if "Non-2xx" in out:
        errors.append("non-2xx: " + out.split("Non-2xx or 3xx responses:", 1)[1].split()[0])
    return {
        "rps": float(m.group(1)),
        "requests": int(total.group(1)) if total else 0,
        "p99_ms": float(lat.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[lat.group(2)]
        if lat
        else math.nan,
        "errors": errors,
    }


def validate(cell: Cell) -> str:
    """One request as wrk will send it; '' when the answer is right, else what is wrong."""
    t = cell.test
    try:
        status, _, body = request(cell.server.port, t.method, t.path, t.headers, t.body)
    except OSError as exc:
        return f"{t.method} {t.path}: {exc!r}"
    if status != 200:
        return f"{t.method} {t.path} answered {status}: {body[:80]!r}"
    if isinstance(t.expect, int) and len(body) != t.expect:
        return f"{t.method} {t.path}: {len(body)} body bytes, expected {t.expect}"
    if isinstance(t.expect, bytes) and body != t.expect:
        return f"{t.method} {t.path}: body {body[:40]!r}, expected {t.expect[:40]!r}"
    return ""


# == memory: idle keep-alive connections =========================================================


@dataclass
class MemResult:
    server: Server
    conns: int = 0
    held: int = 0  # connections the server still held when RSS was read (open fds delta)
    statuses: Counter[str] = field(default_factory=Counter)
    open_seconds: float = 0.0
    rss_before: int = 0
    rss_after: int = 0
    rss_closed: int = 0
    rss_again: int = 0  # with a second batch of n connections open (reuse vs leak)
    failure: str = ""

    @property
    def kib_per_conn(self) -> float:
        return (self.rss_after - self.rss_before) / max(self.conns, 1) / 1024


async def _hold_connections(port: int, n: int, measure: Any) -> tuple[Counter[str], float, Any]:
    request_bytes = f"GET / HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode()
    sem = asyncio.Semaphore(100)
    conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    statuses: Counter[str] = Counter()

    async def one() -> None:
        async with sem:
            try:
                reader, writer = await asyncio.open_connection(HOST, port)
            except OSError as exc:
                statuses[f"connect {type(exc).__name__}"] += 1
                return
            conns.append((reader, writer))
            try:
                writer.write(request_bytes)
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
                await asyncio.wait_for(reader.readexactly(int(m.group(1)) if m else 0), 10)
                statuses[head.split(b" ", 2)[1].decode()] += 1
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError) as exc:
                statuses[f"read {type(exc).__name__}"] += 1

    t0 = time.monotonic()
    try:
        await asyncio.gather(*(one() for _ in range(n)))
        opened = time.monotonic() - t0
        await asyncio.sleep(0.5)  # let the server settle (and its allocator show the growth)
        result = measure()
    finally:
        for _, writer in conns:
            writer.close()
        await asyncio.sleep(0.1)
    return statuses, opened, result


def memory_test(server: Server, n: int, pin: list[str], logdir: str) -> MemResult:
    res = MemResult(server, conns=n)
    start_servers([server], pin, logdir)
    if server.failure:
        res.failure = server.failure
        return res
    assert server.proc is not None
    pid = server.proc.pid
    try:
        # warm-up: a few connections with a few requests each, then closed
        for _ in range(20):
            for _ in range(3):
                request(server.port)
        time.sleep(0.5)
        res.rss_before, fds_before = rss_bytes(pid), open_fds(pid)

        def measure() -> tuple[int, int]:
            return rss_bytes(pid), open_fds(pid)

        res.statuses, res.open_seconds, (res.rss_after, fds_after) = asyncio.run(
            _hold_connections(server.port, n, measure)
        )
        res.held = fds_after - fds_before
        time.sleep(1.0)
        res.rss_closed = rss_bytes(pid)
        # A second batch: memory freed by the first should be reused, not grow again.
        statuses, _, (res.rss_again, _) = asyncio.run(_hold_connections(server.port, n, measure))
        res.statuses.update({f"2nd batch {k}": v for k, v in statuses.items() if k != "200"})
        if server.proc.poll() is not None:
            res.failure = f"died (exit {server.proc.returncode}): {log_tail(server)}"
    finally:
        stop_server(server)
    return res


# == the plan ====================================================================================


def _kept_sections(path: str) -> str:
    """The sections other benches keep in the report file (``<!-- bench/X.py: begin -->`` to
    its ``end`` marker, as bench/notes.py writes them): a full run rewrites the file, not them."""
    try:
        with open(path) as f:
            old = f.read()
    except FileNotFoundError:
        return ""
    sections = re.finditer(r"\n<!-- (bench/\S+): begin -->.*?<!-- \1: end -->\n", old, re.DOTALL)
    return "".join(m.group(0) for m in sections)


def tophat_help(py: str, cwd: str = ROOT) -> str:
    out = subprocess.run(
        [py, "-m", "tophat", "--help"],
        cwd=cwd,
        env=server_env(cwd),
        capture_output=True,
        text=True,
        timeout=60,
    )
    return out.stdout + out.stderr


def make_servers(py: str, help_text: str) -> dict[str, Server]:
    has_parser = "--parser" in help_text
    has_trio = "trio" in help_text

    def tophat(
        key: str,
        label: str,
        app: str,
        runtime: str,
        parser: str | None,
        access_log: bool = False,
        **kw: Any,
    ) -> Server:
        argv = [py, "-m", "tophat", f"bench.perf_apps.tophat_apps:{app}", "--port", "{port}"]
        argv += ["--runtime", runtime]
        # The access log is INFO records on tophat.access, written by the CLI's stderr handler
        # (one write per line): stderr is this server's log file (start_servers), a plain file
        # as a deployment would have, never a pipe that could block.
        argv += (
            ["--log-level", "info", "--access-log"] if access_log else ["--log-level", "warning"]
        )
        if parser and has_parser:
            argv += ["--parser", parser]
        return Server(key, label, argv, **kw)

    def uvicorn(key: str, label: str, app: str, http: str, loop: str, **kw: Any) -> Server:
        argv = [py, "-m", "uvicorn", app, "--http", http, "--loop", loop, "--host", HOST]
        argv += ["--port", "{port}", "--log-level", "warning", "--no-access-log"]
        argv += ["--no-server-header", "--lifespan", "off"]
        return Server(key, label, argv, **kw)

    out = [
        tophat("tophat", "tophat default (asyncio, h11)", "plain", "asyncio", "h11"),
        tophat("tophat-uvloop", "tophat uvloop (h11)", "plain", "uvloop", "h11"),
        tophat(
            "tophat-router1", "tophat default, Router 1 route", "router1", "asyncio", "h11",
            probe="/res49/1",
        ),
        tophat(
            "tophat-router50", "tophat default, Router 50 routes", "router50", "asyncio", "h11",
            probe="/res49/1",
        ),
        tophat("tophat-mw", "tophat default, Router+CORS+identity", "middleware", "asyncio", "h11"),
        tophat(
            "tophat-observed", "tophat default, request_id + access log", "observed", "asyncio",
            "h11", access_log=True,
        ),
        uvicorn("uvicorn", "uvicorn h11", "bench.perf_apps.asgi_app:app", "h11", "asyncio"),
        uvicorn(
            "uvicorn-fast", "uvicorn httptools+uvloop", "bench.perf_apps.asgi_app:app",
            "httptools", "uvloop",
        ),
        uvicorn(
            "starlette", "Starlette 50 routes (uvicorn h11)", "bench.perf_apps.starlette_app:app",
            "h11", "asyncio", probe="/res0/1",
        ),
        Server(
            "hypercorn",
            "hypercorn h11",
            [py, "-m", "hypercorn", "--bind", f"{HOST}:{{port}}", "--worker-class", "asyncio",
             "--log-level", "WARNING", "bench.perf_apps.asgi_app:app"],
        ),
        Server("aiohttp", "aiohttp.web", [py, "-m", "bench.perf_apps.aiohttp_app", "--port",
                                          "{port}"]),
    ]  # fmt: skip
    if has_parser:
        out.append(tophat("tophat-fast", "tophat fast (uvloop, httptools)", "plain", "uvloop",
                          "httptools"))  # fmt: skip
        out.append(tophat("tophat-fast-observed", "tophat fast, request_id + access log",
                          "observed", "uvloop", "httptools", access_log=True))  # fmt: skip
    if has_trio:
        out.append(tophat("tophat-trio", "tophat trio (h11)", "plain", "trio", "h11",
                          optional=True))  # fmt: skip
    return {s.key: s for s in out}


def make_tests(cookie: str) -> dict[str, Test]:
    from_origin = {"Origin": "https://app.example.com", "Cookie": cookie}
    tests = [
        Test("hello", "hello"),
        Test("route1", "route, 1-route table", path="/res49/123"),
        Test("route50-1st", "route, 50 routes, 1st", path="/res0/123"),
        Test("route50-last", "route, 50 routes, last", path="/res49/123"),
        Test("mw", "hello via CORS+identity", headers=from_origin),
        Test("post4k", "POST 4 KiB echo", "POST", "/echo", body=b"a" * POST_SIZE, expect=POST_SIZE),
        Test("get64k", "GET 64 KiB", path="/big", expect=BIG_SIZE),
    ]
    return {t.key: t for t in tests}


# Which (server, test) cells each mode measures, in table order. "FAST" is tophat-fast when the
# CLI has --parser, else tophat-uvloop standing in for it.
FULL_CELLS = [
    ("hello", ["tophat", "tophat-uvloop", "tophat-fast", "tophat-trio", "uvicorn",
               "uvicorn-fast", "hypercorn", "aiohttp"]),
    ("route1", ["tophat-router1"]),
    ("route50-last", ["tophat-router50"]),
    ("route50-1st", ["starlette"]),
    ("route50-last", ["starlette"]),
    ("mw", ["tophat-mw", "tophat"]),
    ("hello", ["tophat-observed", "tophat-fast-observed"]),
    ("post4k", ["tophat", "FAST", "uvicorn", "uvicorn-fast", "aiohttp"]),
    ("get64k", ["tophat", "FAST", "uvicorn", "uvicorn-fast", "aiohttp"]),
]  # fmt: skip
SHORT_CELLS = [
    ("hello", ["tophat", "FAST", "tophat-trio", "uvicorn", "uvicorn-fast", "aiohttp"]),
    ("route1", ["tophat-router1"]),
    ("route50-last", ["tophat-router50"]),
    ("mw", ["tophat-mw"]),
    ("hello", ["tophat-observed"]),
    ("post4k", ["tophat"]),
]
FULL_MEMORY = ["tophat", "tophat-uvloop", "tophat-fast", "uvicorn", "uvicorn-fast", "aiohttp"]
SHORT_MEMORY = ["tophat"]


@dataclass
class Goal:
    num: str
    text: str
    a: tuple[str, str]  # (server key, test key)
    b: tuple[str, str]
    target: float | None  # None: reported, no target
    note: str = ""  # shown beside the status
    na: str = ""  # why the goal cannot be judged in this run (ratio still shown if measured)


def make_goals(fast: str, fast_na: str, trio_na: str) -> list[Goal]:
    body = "the issue: the same ratio as goals 1/2"
    return [
        Goal("1", "tophat default >= 1.6x uvicorn h11, hello", ("tophat", "hello"),
             ("uvicorn", "hello"), 1.6),
        Goal("2a", "tophat fast >= 1.2x uvicorn httptools+uvloop, hello", (fast, "hello"),
             ("uvicorn-fast", "hello"), 1.2, na=fast_na),
        Goal("2b", "tophat fast >= 1.5x aiohttp.web, hello", (fast, "hello"),
             ("aiohttp", "hello"), 1.5, na=fast_na),
        Goal("3", "Router: 50 routes, last param route >= 0.95x 1-route table",
             ("tophat-router50", "route50-last"), ("tophat-router1", "route1"), 0.95),
        Goal("3 ref", "Starlette 50 routes: last vs 1st (reference)",
             ("starlette", "route50-last"), ("starlette", "route50-1st"), None),
        Goal("3 ref", "tophat Router 1 route vs bare hello (reference)",
             ("tophat-router1", "route1"), ("tophat", "hello"), None),
        Goal("4", "Router+CORS+identity >= 0.8x bare hello", ("tophat-mw", "mw"),
             ("tophat", "hello"), 0.8),
        Goal("4 ref", "Router+CORS+identity vs bare hello sent the same request (reference: "
             "without the cost of parsing its Origin and Cookie fields)", ("tophat-mw", "mw"),
             ("tophat", "mw"), None),
        Goal("ref", "request_id + access log vs bare hello (reference: the cost of "
             "request ids and an access log line per request)", ("tophat-observed", "hello"),
             ("tophat", "hello"), None),
        Goal("ref", "tophat fast: request_id + access log vs bare hello (reference)",
             ("tophat-fast-observed", "hello"), (fast, "hello"), None),
        Goal("5a", "POST 4 KiB echo: tophat default >= 1.6x uvicorn h11", ("tophat", "post4k"),
             ("uvicorn", "post4k"), 1.6, body),
        Goal("5b", "POST 4 KiB echo: tophat fast >= 1.2x uvicorn httptools+uvloop",
             (fast, "post4k"), ("uvicorn-fast", "post4k"), 1.2, body, fast_na),
        Goal("5c", "POST 4 KiB echo: tophat fast >= 1.5x aiohttp.web", (fast, "post4k"),
             ("aiohttp", "post4k"), 1.5, body, fast_na),
        Goal("5d", "GET 64 KiB: tophat default >= 1.6x uvicorn h11", ("tophat", "get64k"),
             ("uvicorn", "get64k"), 1.6, body),
        Goal("5e", "GET 64 KiB: tophat fast >= 1.2x uvicorn httptools+uvloop", (fast, "get64k"),
             ("uvicorn-fast", "get64k"), 1.2, body, fast_na),
        Goal("5f", "GET 64 KiB: tophat fast >= 1.5x aiohttp.web", (fast, "get64k"),
             ("aiohttp", "get64k"), 1.5, body, fast_na),
        Goal("7", "tophat trio >= 1.2x uvicorn h11, hello", ("tophat-trio", "hello"),
             ("uvicorn", "hello"), 1.2, na=trio_na),
        Goal("ref", "tophat uvloop (h11) vs uvicorn httptools+uvloop, hello",
             ("tophat-uvloop", "hello"), ("uvicorn-fast", "hello"), None),
        Goal("ref", "hypercorn h11 vs uvicorn h11, hello", ("hypercorn", "hello"),
             ("uvicorn", "hello"), None),
    ]  # fmt: skip


# == --baseline REV: the same tophat servers from another revision ==============================

BASE = "@base"  # the key suffix of a baseline server: tophat@base is the twin of tophat


@dataclass
class Baseline:
    rev: str  # as given on the command line
    commit: str
    short: str
    subject: str
    path: str = ""  # its worktree while the run lasts
    tophat_file: str = ""  # where its servers import tophat from (probed)

    def describe(self) -> str:
        return f"`{self.rev}` = {self.short} ({self.subject[:70]})"


def _git(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True, timeout=120)


def resolve_baseline(rev: str) -> Baseline | None:
    """REV as a commit of this repository; None (after one ``error:`` line) when it is not."""
    why = "not a commit in this repository"
    try:
        got = _git("rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}")
        commit = got.stdout.strip() if got.returncode == 0 else ""
        if commit:
            info = _git("show", "-s", "--format=%h%n%s", commit).stdout.split("\n", 1)
            return Baseline(rev, commit, info[0].strip(), info[-1].strip())
    except (OSError, subprocess.SubprocessError) as exc:
        why = f"git failed: {exc}"
    print(f"error: --baseline {rev!r}: {why}", file=sys.stderr)
    return None


@contextlib.contextmanager
def baseline_worktree(base: Baseline) -> Iterator[None]:
    """A detached worktree of the baseline commit in a temporary directory, removed (and
    pruned from git's list) at the end, also on an error, Ctrl-C or SIGTERM."""
    tmp = tempfile.mkdtemp(prefix="tophat-perf-base-")
    path = os.path.join(tmp, f"tophat-{base.short}")

    def on_term(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)  # unwinds through the finally blocks below

    old_term = signal.signal(signal.SIGTERM, on_term)
    try:
        added = _git("worktree", "add", "--detach", "--quiet", path, base.commit)
        if added.returncode != 0:
            first = (added.stderr.strip().splitlines() or ["?"])[0]
            print(f"error: --baseline: git worktree add failed: {first}", file=sys.stderr)
            raise SystemExit(2)
        base.path = path
        yield
    finally:
        if os.path.isdir(path):
            _git("worktree", "remove", "--force", path)
        shutil.rmtree(tmp, ignore_errors=True)
        _git("worktree", "prune")
        signal.signal(signal.SIGTERM, old_term)


def probe_baseline(py: str, base: Baseline) -> str:
    """Where a process started as the baseline servers are imports tophat from; '' when that
    is the baseline's worktree, else why not (the editable install of the checkout won)."""
    out = subprocess.run(
        [py, "-c", "import tophat; print(tophat.__file__)"],
        cwd=base.path,
        env=server_env(base.path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    base.tophat_file = out.stdout.strip()
    inside = os.path.realpath(base.tophat_file).startswith(os.path.realpath(base.path) + os.sep)
    if out.returncode != 0 or not inside:
        return f"its servers would import tophat from {base.tophat_file or out.stderr.strip()!r}"
    return ""


def baseline_servers(
    py: str, base: Baseline, help_text: str, current: dict[str, Server]
) -> tuple[dict[str, Server], dict[str, str], list[str]]:
    """The tophat servers again, from the baseline's worktree (``key@base``), given the
    baseline's ``--help``. Returns them, the twin of each working-tree key, and notes on the
    servers the baseline cannot run (a CLI flag it lacks, as ``make_servers`` probes it)."""
    made = make_servers(py, help_text)
    out: dict[str, Server] = {}
    notes: list[str] = []
    for key, s in made.items():
        if not key.startswith("tophat"):
            continue
        args = s.argv[s.argv.index("tophat") + 1 :]
        words = [a for a in args if a.startswith("--")] + [args[args.index("--runtime") + 1]]
        if missing := [w for w in words if w not in help_text]:
            notes.append(
                f"`{key}{BASE}` left out: no {', '.join(missing)} in the baseline's "
                "`python -m tophat --help`"
            )
            continue
        label = f"{s.label} @ {base.short}"
        out[key + BASE] = replace(s, key=key + BASE, label=label, argv=list(s.argv), cwd=base.path)
    twins = {key[: -len(BASE)]: key for key in out}
    if "tophat-fast" in current and "tophat-fast" not in made and "tophat-uvloop@base" in out:
        twins["tophat-fast"] = "tophat-uvloop@base"
        notes.append("the baseline's CLI has no --parser: its tophat uvloop (h11) is the before "
                     "of tophat fast")  # fmt: skip
    for key in current:
        if key.startswith("tophat") and key not in twins and key not in made:
            notes.append(f"`{key}` has no baseline twin (the baseline's CLI cannot run it)")
    return out, twins, notes


# == the run =====================================================================================


class Budget(Exception):
    pass


def versions(py: str) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json\n"
        f"names = {VERSIONS_OF!r}\n"
        "out = {}\n"
        "for n in names:\n"
        "    try: out[n] = m.version(n)\n"
        "    except m.PackageNotFoundError: out[n] = 'not installed'\n"
        "import sys; out['python'] = sys.version.split()[0]\n"
        "print(json.dumps(out))\n"
    )
    import json

    out = subprocess.run([py, "-c", code], capture_output=True, text=True, timeout=60)
    return dict(json.loads(out.stdout))


def git_state() -> str:
    def git(*a: str) -> str:
        out = subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, timeout=30)
        return out.stdout.rstrip()

    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--", "tophat").splitlines()
        if not head:
            return "not a git checkout"
        if not dirty:
            return f"commit {head}, clean"
        return f"commit {head} + uncommitted changes in tophat/: " + ", ".join(
            f"`{line[3:]}` ({line[:2].strip()})" for line in dirty
        )
    return "unknown"


def machine() -> dict[str, str]:
    model = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10)
    first = (wrk_version.stdout + wrk_version.stderr).strip().splitlines()
    return {
        "nproc": str(os.cpu_count()),
        "usable CPUs": ",".join(map(str, sorted(os.sched_getaffinity(0)))),
        "CPU": model,
        "kernel": f"{platform.system()} {platform.release()}",
        "wrk": first[0] if first else "?",
    }


def run(args: argparse.Namespace) -> int:
    t_begin = time.monotonic()
    command = shlex.join(["python3", os.path.relpath(os.path.abspath(sys.argv[0])), *sys.argv[1:]])
    base = None
    if args.baseline is not None and (base := resolve_baseline(args.baseline)) is None:
        return 2
    setup_venv(force=args.setup)
    if args.setup:
        print(f"{os.path.relpath(VENV, ROOT)} is ready")
        return 0
    check_wrk(args.install_wrk)
    if base is None:
        return measure(args, t_begin, command, None)
    with baseline_worktree(base):
        return measure(args, t_begin, command, base)


def measure(args: argparse.Namespace, t_begin: float, command: str, base: Baseline | None) -> int:
    py = venv_python()
    short = args.short
    rounds = args.rounds or (1 if short else 3)
    duration = args.duration or (2.0 if short else 5.0)
    mem_conns = args.mem_conns
    fd_limit = raise_fd_limit(max(4096, 2 * mem_conns + 512))
    if fd_limit < mem_conns + 200:
        mem_conns = max(100, fd_limit - 200)
        print(f"open-files limit {fd_limit}: holding {mem_conns} connections instead")
    ncpu = len(os.sched_getaffinity(0))
    can_pin = bool(shutil.which("taskset")) and {0, 1} <= os.sched_getaffinity(0)
    pin_server = ["taskset", "-c", "0"] if can_pin and not args.no_pin else []
    pin_load = ["taskset", "-c", "1"] if can_pin and not args.no_pin else []

    help_text = tophat_help(py)
    servers = make_servers(py, help_text)
    twins: dict[str, str] = {}  # working-tree server key -> its baseline twin's key
    base_notes: list[str] = []
    if base is not None:
        if why := probe_baseline(py, base):
            print(f"error: --baseline: {why}, not from its worktree {base.path}", file=sys.stderr)
            return 2
        print(f"baseline {base.describe()}: tophat from {base.tophat_file}", flush=True)
        more, twins, base_notes = baseline_servers(py, base, tophat_help(py, base.path), servers)
        servers.update(more)
    only = list(dict.fromkeys(k for k in (args.only or "").split(",") if k))
    if unknown := [k for k in only if k not in servers]:
        hint = " (the @base keys need --baseline REV)" if base is None else ""
        print(
            f"--only: no server {', '.join(unknown)} here; the servers: {', '.join(servers)}"
            + hint,
            file=sys.stderr,
        )
        return 2
    has_parser = "tophat-fast" in servers
    fast = "tophat-fast" if has_parser else "tophat-uvloop"
    fast_na = "" if has_parser else "no --parser in the CLI: uvloop+h11 measured in its place"
    trio_na = "" if "tophat-trio" in servers else "the CLI has no --runtime trio"
    cookie = subprocess.run(
        [py, "-m", "bench.perf_apps.tophat_apps", "--mint-cookie"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": ROOT},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    tests = make_tests(cookie)
    plan = SHORT_CELLS if short else FULL_CELLS
    cells: list[Cell] = []
    for test_key, keys in plan:
        for key in keys:
            key = fast if key == "FAST" else key
            # a baseline twin right after its cell: the rotation keeps them side by side
            for one in (key, twins.get(key, "")):
                if only and one not in only:
                    continue
                if one in servers and not any(c.name == f"{one}/{test_key}" for c in cells):
                    cells.append(Cell(tests[test_key], servers[one]))
    if only and not cells:
        mode = "short" if short else "full"
        print(f"--only {','.join(only)}: no cell of a {mode} run uses them", file=sys.stderr)
        return 2
    used = list(dict.fromkeys(c.server.key for c in cells))
    mem_keys = [k for k in (SHORT_MEMORY if short else FULL_MEMORY) if k in servers]
    mem_keys = [x for k in mem_keys for x in (k, twins.get(k, "")) if x in servers]
    if only:
        mem_keys = [k for k in mem_keys if k in only]
    if args.no_memory:
        mem_keys = []

    per_cell = 1 + rounds * (duration + 0.3)
    estimate = len(cells) * per_cell + 10 + len(mem_keys) * (4 + mem_conns / 400)
    budget = 2 * estimate + 120
    print(
        f"tophat perf: {'short' if short else 'full'} run, {len(cells)} cells x (1 s warm-up + "
        f"{rounds} x {duration:g} s), memory on {len(mem_keys)} servers x {mem_conns} "
        f"connections; estimated {estimate / 60:.1f} min (stops by itself after "
        f"{budget / 60:.0f} min)",
        flush=True,
    )
    if not can_pin or args.no_pin:
        print("note: no CPU pinning (needs taskset and CPUs 0 and 1)")

    def on_alarm(signum: int, frame: object) -> None:
        raise Budget(f"the run took longer than its {budget:.0f} s budget")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(int(budget))
    logdir = tempfile.mkdtemp(prefix="tophat-perf-")
    scripts = {"post4k": os.path.join(logdir, "post4k.lua")}
    with open(scripts["post4k"], "w") as f:
        f.write(
            'wrk.method = "POST"\n'
            f'wrk.body = string.rep("a", {POST_SIZE})\n'
            'wrk.headers["Content-Type"] = "application/octet-stream"\n'
        )
    mem_results: list[MemResult] = []
    harness_errors: list[str] = []
    info = machine()
    info["tophat source"] = git_state()
    if base is not None:
        info["baseline (before)"] = (
            f"{base.describe()}, its servers run from a git worktree of it (tophat imported "
            f"from `{os.path.relpath(base.tophat_file, base.path)}` there)"
        )
    info["load average at start"] = loadavg()
    vers = versions(py)
    order_log: list[str] = []
    try:
        start_servers([servers[k] for k in used], pin_server, logdir)
        for c in cells:
            if not c.server.failure:
                c.failure = validate(c)
        live = [c for c in cells if not c.server.failure and not c.failure]
        for c in live:  # warm-up
            wrk(c, 1, pin_load, scripts)
            assert c.server.proc is not None
            c.server.rss["after warm-up"] = rss_bytes(c.server.proc.pid)
        for r in range(rounds):
            k = (r * len(live)) // rounds
            order = live[k:] + live[:k]
            order_log.append(order[0].name if order else "")
            for c in order:
                if c.failure:
                    continue
                proc = c.server.proc
                assert proc is not None
                cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
                res = wrk(c, duration, pin_load, scripts)
                cpu, wall = cpu_seconds(proc.pid) - cpu0, time.monotonic() - t0
                c.cpu_share.append(cpu / wall)
                c.rps.append(res["rps"])
                c.per_cpu.append(res["requests"] / cpu if cpu > 0 else math.nan)
                c.p99_ms.append(res["p99_ms"])
                c.errors.extend(f"round {r + 1}: {e}" for e in res["errors"])
                if proc.poll() is not None:
                    c.server.failure = f"died during the run (exit {proc.returncode})"
                    for other in cells:
                        if other.server is c.server:
                            other.failure = other.failure or c.server.failure
        for key in used:
            s = servers[key]
            if s.proc is not None and s.proc.poll() is None:
                s.rss["at end"] = rss_bytes(s.proc.pid)
                for c in cells:  # the server still answers correctly after the load
                    if c.server is s and not c.failure and (why := validate(c)):
                        c.failure = f"after the run: {why}"
        for key in used:
            stop_server(servers[key])
        for key in mem_keys:
            fresh = servers[key]
            fresh = Server(
                f"{key}-mem", fresh.label, fresh.argv, optional=fresh.optional, cwd=fresh.cwd
            )
            mem_results.append(memory_test(fresh, mem_conns, pin_server, logdir))
    except Budget as exc:
        harness_errors.append(str(exc))
    finally:
        signal.alarm(0)
        for key in used:
            stop_server(servers[key])

    info["load average at end"] = loadavg()
    goals = make_goals(fast, fast_na, trio_na)
    anomalies = collect_anomalies([servers[k] for k in used], cells, mem_results)
    for c in cells:
        if (c.failure or c.server.failure) and not c.server.optional:
            harness_errors.append(f"{c.name}: {c.failure or c.server.failure}")
    for m in mem_results:
        if m.failure and not m.server.optional:
            harness_errors.append(f"memory {m.server.key}: {m.failure}")
    report = render(
        short=short,
        command=command,
        info=info,
        vers=vers,
        rounds=rounds,
        duration=duration,
        pinned=bool(pin_server),
        ncpu=ncpu,
        cells=cells,
        goals=goals,
        mem=mem_results,
        mem_conns=mem_conns,
        anomalies=anomalies,
        harness_errors=harness_errors,
        order_log=order_log,
        twins=twins,
        base=base,
        base_notes=base_notes,
        elapsed=time.monotonic() - t_begin,
    )
    print()
    print(report)
    out = args.out if args.out is not None else ("" if short else os.path.join(HERE, "RESULTS.md"))
    if out and out != "-":
        with open(out, "w") as f:
            f.write(report + _kept_sections(out))
        print(f"(written to {os.path.relpath(out)})")
    if anomalies or harness_errors:
        print(f"server logs: {logdir}")
    else:
        shutil.rmtree(logdir, ignore_errors=True)
    return 1 if harness_errors else 0


def collect_anomalies(servers: list[Server], cells: list[Cell], mem: list[MemResult]) -> list[str]:
    out = []
    for s in servers + [m.server for m in mem]:
        try:
            with open(s.log_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").strip().splitlines()
        except OSError:
            lines = []
        bad = [ln for ln in lines if re.search(r"ERROR|Traceback|Exception|CRITICAL", ln)]
        warn = [ln for ln in lines if "WARNING" in ln]
        if s.failure:
            out.append(f"`{s.key}`: {s.failure}")
        if bad:
            out.append(f"`{s.key}` logged {len(bad)} error line(s), first: `{bad[0][:200]}`")
        if warn:
            out.append(f"`{s.key}` logged {len(warn)} warning(s), first: `{warn[0][:200]}`")
        clean = (0, None) if s.key.startswith("tophat") else (0, None, -signal.SIGTERM)
        if s.exit_code not in clean and not s.failure:
            out.append(f"`{s.key}` exited with status {s.exit_code} after SIGTERM")
        grow = s.rss.get("at end", 0) - s.rss.get("after warm-up", 0)
        if s.rss.get("after warm-up") and grow > 20 * 1024 * 1024:
            out.append(f"`{s.key}` RSS grew {grow / 2**20:.0f} MiB between warm-up and the end")
    for c in cells:
        if c.failure and not c.server.failure:
            out.append(f"`{c.name}`: {c.failure}")
        for e in c.errors:
            out.append(f"`{c.name}` wrk {e}")
    for m in mem:
        bad_status = {k: v for k, v in m.statuses.items() if k != "200"}
        if bad_status:
            out.append(f"memory `{m.server.key}`: answers other than 200: {dict(bad_status)}")
        if not m.failure and m.held < 0.98 * m.conns:
            out.append(
                f"memory `{m.server.key}`: the server held {m.held} of {m.conns} connections"
            )
        first = m.rss_after - m.rss_before
        if not m.failure and m.rss_again - m.rss_after > max(first / 2, 2**20):
            out.append(
                f"memory `{m.server.key}`: a 2nd batch of connections grew VmRSS by another "
                f"{(m.rss_again - m.rss_after) / 2**20:.1f} MiB (first batch: "
                f"{first / 2**20:.1f} MiB): connection memory not reused (a leak?)"
            )
        if m.open_seconds > 4:
            out.append(
                f"memory `{m.server.key}`: opening took {m.open_seconds:.1f} s (keep-alive "
                "timeouts are 5 s: early connections may have been closed)"
            )
    return out


# == the report ==================================================================================


def _ratio(cells: dict[tuple[str, str], Cell], a: tuple[str, str], b: tuple[str, str]) -> Any:
    ca, cb = cells.get(a), cells.get(b)
    if ca is None or cb is None or not ca.ok or not cb.ok:
        return None
    rps = statistics.median(ca.rps) / statistics.median(cb.rps)
    cpu = _median(ca.per_cpu) / _median(cb.per_cpu)
    per_round = [x / y for x, y in zip(ca.rps, cb.rps, strict=False) if y]
    return rps, cpu, per_round


def _median(xs: list[float]) -> float:
    xs = [x for x in xs if not math.isnan(x)]
    return statistics.median(xs) if xs else math.nan


def _k(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:,.0f}"


def render(**kw: Any) -> str:
    cells: list[Cell] = kw["cells"]
    by = {(c.server.key, c.test.key): c for c in cells}
    goals: list[Goal] = kw["goals"]
    lines: list[str] = []
    add = lines.append
    title = (
        "short run (harness check only: 1 round, not for quoting)" if kw["short"] else "full run"
    )
    add(f"# tophat performance: {title}")
    add("")
    add(f"Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}.  ")
    add(f"Command: `{kw['command']}` (from the repository root).  ")
    add(
        f"Load: wrk -t1 -c{CONNS} (keep-alive), 1 s warm-up per cell, {kw['rounds']} round(s) x "
        f"{kw['duration']:g} s, the order of the cells rotating each round; "
        + (
            "each server pinned to CPU 0, wrk to CPU 1 (taskset).  "
            if kw["pinned"]
            else "no CPU pinning.  "
        )
    )
    add("Speeds are only meaningful as ratios within this run (the machine is shared).")
    add("")
    add("| machine | |")
    add("|---|---|")
    for name, value in kw["info"].items():
        add(f"| {name} | {value} |")
    vers = kw["vers"]
    add(f"| Python (servers) | {vers.get('python', '?')} |")
    add("| packages | " + ", ".join(f"{n} {vers[n]}" for n in VERSIONS_OF if n in vers) + " |")
    add("")
    add("## Throughput")
    add("")
    add(
        f"req/s: median over rounds (min{EN_DASH}max). req/CPU-s: requests per CPU-second of "
        "the server process (median): steadier when the machine is shared. CPU: the server's "
        "CPU-seconds per second (100% = a whole core; lower means it was starved or waiting). "
        "Ratios are of medians: req/s first, then req/CPU-s."
    )
    add("")
    add(
        f"| server | test | req/s median | min{EN_DASH}max | req/CPU-s | CPU "
        "| ratio vs the goal's peer (req/s; req/CPU-s) |"
    )
    add("|---|---|--:|--:|--:|--:|---|")
    peer_of: dict[tuple[str, str], list[Goal]] = {}
    for g in goals:
        if not any(g.b == other.b for other in peer_of.get(g.a, [])):
            peer_of.setdefault(g.a, []).append(g)
    for c in cells:
        key = (c.server.key, c.test.key)
        if not c.ok:
            why = c.failure or c.server.failure or "not measured"
            add(f"| {c.server.label} | {c.test.label} | n/a | | | | {why[:160]} |")
            continue
        parts = []
        for g in peer_of.get(key, []):
            r = _ratio(by, g.a, g.b)
            if r is None:
                continue
            peer = by[g.b]
            where = peer.server.label if g.b[1] == c.test.key else f"{peer.server.label}, {g.b[1]}"
            goal = ""
            if g.na:
                goal = " (goal n/a)"
            elif g.target is not None and not g.note:
                goal = f" (goal {g.num}: ≥ {g.target:g})"
            parts.append(f"**{r[0]:.2f}{TIMES}**; {r[1]:.2f}{TIMES} vs {where}{goal}")
        add(
            f"| {c.server.label} | {c.test.label} | {_k(statistics.median(c.rps))} | "
            f"{_k(min(c.rps))}{EN_DASH}{_k(max(c.rps))} | {_k(_median(c.per_cpu))} | "
            f"{100 * _median(c.cpu_share):.0f}% | " + ("<br>".join(parts) or "—") + " |"
        )
    add("")
    add("## Goals")
    add("")
    add("Judged on the req/s ratio; the req/CPU-s ratio is shown beside it (and named in the")
    add("status when it disagrees).")
    add("")
    add("| # | goal | ratio req/s | ratio req/CPU-s | per round (req/s) | status |")
    add("|---|---|--:|--:|---|---|")
    mem: list[MemResult] = kw["mem"]

    def memory_goal_rows() -> None:
        for m in mem:
            if not m.server.key.startswith("tophat"):
                continue
            label = f"{m.server.label}: idle keep-alive connection <= 4 KiB RSS"
            if m.failure:
                add(f"| 6 | {label} | | | | n/a ({m.failure[:160]}) |")
                continue
            kib = m.kib_per_conn
            peer = next((x for x in mem if x.server.key == "uvicorn-mem" and not x.failure), None)
            vs = f"; uvicorn h11: {peer.kib_per_conn:.1f} KiB" if peer else ""
            status = "**met**" if kib <= 4 else "**missed**"
            add(f"| 6 | {label} | {kib:.1f} KiB | | | {status} (≤ 4 KiB{vs}) |")

    for g in goals:
        if g.num == "7":
            memory_goal_rows()
        r = _ratio(by, g.a, g.b)
        note = f"; {g.note}" if g.note else ""
        if r is None:
            missing = [x for x in (g.a, g.b) if x not in by or not by[x].ok]
            why = "; ".join(
                dict.fromkeys(
                    (by[x].failure or by[x].server.failure or "no result")
                    if x in by
                    else "not in this run"
                    for x in missing
                )
            )
            status = f"n/a ({g.na})" if g.na else f"n/a ({why[:160]})"
            if g.target is None:
                status = f"reference: {why[:160]}"
            add(f"| {g.num} | {g.text} | | | | {status} |")
            continue
        rps, cpu, per_round = r
        if g.target is None:
            status = "reference"
        elif g.na:
            status = f"n/a ({g.na})"
        else:
            met = rps >= g.target
            status = ("**met**" if met else "**missed**") + f" (≥ {g.target:g}{note})"
            if (cpu >= g.target) != met:
                status += f"; by req/CPU-s: {'met' if cpu >= g.target else 'missed'}"
        add(
            f"| {g.num} | {g.text} | {rps:.2f} | {cpu:.2f} | "
            f"{' '.join(f'{x:.2f}' for x in per_round)} | {status} |"
        )
    if kw.get("base") is not None:
        render_before_after(add, by, goals, kw["base"], kw["twins"], kw["base_notes"])
    if mem:
        add("")
        add("## Memory: idle keep-alive connections (goal 6: ≤ 4 KiB each for tophat)")
        add("")
        add(
            f"A fresh server (warmed with 60 requests) gets {kw['mem_conns']} connections, one "
            "request each, left open; KiB/conn = (VmRSS with them open - VmRSS before) / count. "
            "held: connections the server had open (its fd count grew by that much). "
            "With a 2nd batch: VmRSS while a second batch as large is open after the first was "
            "closed (about the same as with the first: memory is reused; higher: a leak)."
        )
        add("")
        add(
            "| server | held | RSS before | RSS with conns | after closing | with a 2nd batch "
            "| KiB/conn | status |"
        )
        add("|---|--:|--:|--:|--:|--:|--:|---|")
        for m in mem:
            if m.failure:
                add(f"| {m.server.label} | | | | | | n/a | {m.failure[:160]} |")
                continue
            kib = m.kib_per_conn
            if m.server.key.startswith("tophat"):
                status = f"**{'met' if kib <= 4 else 'missed'}** (≤ 4)"
            else:
                status = "reference"
            add(
                f"| {m.server.label} | {m.held} | {m.rss_before / 2**20:.1f} MiB | "
                f"{m.rss_after / 2**20:.1f} MiB | {m.rss_closed / 2**20:.1f} MiB | "
                f"{m.rss_again / 2**20:.1f} MiB | {kib:.1f} | "
                f"{status} |"
            )
    add("")
    add("## Notes")
    add("")
    notes = [*kw["harness_errors"], *kw["anomalies"]]
    for n in notes:
        add(f"* {n}")
    if not notes:
        add("* No server errors, warnings, crashes or wrk errors.")
    add(
        f"* Total time {kw['elapsed']:.0f} s; rounds started with "
        + ", ".join(f"`{x}`" for x in kw["order_log"])
        + "."
    )
    return "\n".join(lines) + "\n"


def render_before_after(
    add: Any,
    by: dict[tuple[str, str], Cell],
    goals: list[Goal],
    base: Baseline,
    twins: dict[str, str],
    notes: list[str],
) -> None:
    """The --baseline section: per twinned cell after/before, then each goal both ways."""
    add("")
    add("## Before/after (same run)")
    add("")
    add(
        f"after: the working tree's tophat; before: {base.describe()}, the same servers run "
        "from a git worktree of it, each cell measured right after its twin in the same "
        "rotation. Ratios are after/before of the medians: req/s, then req/CPU-s; per round: "
        "req/s ratios within each round."
    )
    add("")
    add(
        "| server | test | after req/s | before req/s | after/before req/s | "
        "after/before req/CPU-s | per round |"
    )
    add("|---|---|--:|--:|--:|--:|---|")
    for (key, test), after in by.items():
        if key not in twins or (twins[key], test) not in by:
            continue
        before = by[(twins[key], test)]
        r = _ratio(by, (key, test), (twins[key], test))
        if r is None:
            why = next(x.failure or x.server.failure for x in (after, before) if not x.ok)
            why = why or "not measured"
            add(f"| {after.server.label} | {after.test.label} | | | n/a | | {why[:160]} |")
            continue
        rps, cpu, per_round = r
        add(
            f"| {after.server.label} | {after.test.label} | {_k(statistics.median(after.rps))} | "
            f"{_k(statistics.median(before.rps))} | **{rps:.2f}{TIMES}** | {cpu:.2f}{TIMES} | "
            f"{' '.join(f'{x:.2f}' for x in per_round)} |"
        )
    add("")
    add("The goals both ways: before, the baseline's cell(s) in place of the working tree's.")
    add("")
    add("| # | goal | after (req/s; req/CPU-s) | before (req/s; req/CPU-s) | target |")
    add("|---|---|--:|--:|--:|")
    for g in goals:
        if g.a[0] not in twins:
            continue
        before_of = ((twins.get(g.a[0], g.a[0]), g.a[1]), (twins.get(g.b[0], g.b[0]), g.b[1]))
        sides = [_ratio(by, g.a, g.b), _ratio(by, *before_of)]
        if sides == [None, None]:
            continue
        shown = [f"{r[0]:.2f}; {r[1]:.2f}" if r else "n/a" for r in sides]
        target = "reference" if g.target is None else f"≥ {g.target:g}"
        add(f"| {g.num} | {g.text} | {shown[0]} | {shown[1]} | {target} |")
    if notes:
        add("")
    for n in notes:
        add(f"* {n}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--short", action="store_true", help="1 round x 2 s, a subset: < 60 s")
    p.add_argument("--setup", action="store_true", help="(re)build bench/.venv-perf and exit")
    p.add_argument("--install-wrk", action="store_true", help="apt-get install wrk (as root)")
    p.add_argument("--rounds", type=int, default=0, help="rounds (default 3; short: 1)")
    p.add_argument("--duration", type=float, default=0, help="seconds per run (5; short: 2)")
    p.add_argument("--mem-conns", type=int, default=1000, help="idle connections (1000)")
    p.add_argument("--no-memory", action="store_true", help="skip the memory test")
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    p.add_argument(
        "--only",
        metavar="KEY[,KEY]",
        help="measure only these servers' cells of the run (e.g. tophat,tophat-observed; an "
        "unknown key lists them); goals missing a cell show n/a",
    )
    p.add_argument(
        "--baseline",
        metavar="REV",
        help="also run the tophat servers of git revision REV (from a temporary worktree; keys "
        "KEY@base) in the same rotation, and report after/before ratios",
    )
    p.add_argument(
        "--out",
        default=None,
        help="write the report here ('-': nowhere); default bench/RESULTS.md for a full run, "
        "nowhere for --short",
    )
    args = p.parse_args()
    if args.rounds < 0 or args.duration < 0 or args.mem_conns < 1:
        p.error("--rounds, --duration and --mem-conns must be positive")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
