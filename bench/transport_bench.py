"""asyncio transports for tophat: Protocol (runtime/asyncio/connection.py) vs StreamReader/Writer.

    .venv/bin/python bench/transport_bench.py [--rounds 5] [--duration 3] [--conns 50]
                                              [--client auto|wrk|python] [--no-pin]

The issue: "measure an asyncio.Protocol based transport against StreamReader/StreamWriter and
keep the faster". Servers, all answering GET / with "Hello, world!" (examples/hello.py), each
in its own process on 127.0.0.1:

  protocol    python -m tophat examples.hello:app       (the shipped runtime: asyncio Conn)
  streams     asyncio.start_server + StreamsStream + tophat.accept (defined below, bench only)
  streams+t   the same with per-phase timeouts like Conn's (asyncio.timeout per read/drain),
              i.e. what a feature-equal Streams runtime would have to do
  protocol-nt the shipped runtime (tophat.serve) with every timeout off (ServerOpts(...=None)):
              the like-for-like peer of "streams", which has no timeouts either
  uvicorn     uvicorn --http h11 --loop asyncio bench.asgi_hello:app (reference peer)

Load: wrk (1 thread, N keep-alive connections) when installed, else a small asyncio keep-alive
client run in its own process. After a 1 s warm-up of each, rounds run every server once, the
order rotating each round (A/B/C/D, B/C/D/A, ...). On a machine with >= 2 CPUs the servers are
pinned to CPU 0 and the load generator to CPU 1 (taskset). Speeds are only meaningful as
ratios within one run: the machine is shared and noisy.

Also: ``--serve streams|streams+t --port P`` runs one Streams server (used by the bench), and
``--load-client --port P --conns N --duration T`` runs the Python load client.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from _proc import exchange_once, stop_process

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
HOST = "127.0.0.1"
READ_SIZE = 64 * 1024

if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


# == the alternative Stream adapter: asyncio StreamReader / StreamWriter ======================


class StreamsStream:
    """tophat's Stream over an asyncio (StreamReader, StreamWriter) pair."""

    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        return await self.reader.read(max_bytes if max_bytes is not None else READ_SIZE)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def aclose(self) -> None:
        writer = self.writer
        if not writer.is_closing():
            writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


class TimedStreamsStream(StreamsStream):
    """StreamsStream with Conn's per-phase timeouts (head deadline, idle, body, write)."""

    __slots__ = ("_head_deadline", "_loop", "_opts", "_phase")

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, opts: Any
    ) -> None:
        super().__init__(reader, writer)
        self._opts = opts
        self._loop = asyncio.get_running_loop()
        self._phase = "idle"
        self._head_deadline: float | None = None

    def set_phase(self, phase: str) -> None:
        if phase == "head" and self._phase != "head":
            t = self._opts.head_timeout
            self._head_deadline = None if t is None else self._loop.time() + t
        self._phase = phase

    def _timeout(self) -> float | None:
        phase = self._phase
        if phase == "head":
            d = self._head_deadline
            return None if d is None else max(0.0, d - self._loop.time())
        if phase == "idle":
            return self._opts.keep_alive_timeout  # type: ignore[no-any-return]
        if phase == "body":
            return self._opts.body_timeout  # type: ignore[no-any-return]
        return self._opts.write_timeout  # type: ignore[no-any-return]

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        from tophat import StreamTimeout

        n = max_bytes if max_bytes is not None else READ_SIZE
        t = self._timeout()
        if t is None:
            return await self.reader.read(n)
        try:
            async with _timeout(t):
                return await self.reader.read(n)
        except TimeoutError:
            raise StreamTimeout(self._phase) from None  # type: ignore[arg-type]

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        from tophat import StreamTimeout

        self.writer.write(data)
        t = self._timeout()
        if t is None:
            await self.writer.drain()
            return
        try:
            async with _timeout(t):
                await self.writer.drain()
        except TimeoutError:
            raise StreamTimeout(self._phase) from None  # type: ignore[arg-type]


if sys.version_info >= (3, 11):
    _timeout = asyncio.timeout
else:  # pragma: no cover - 3.10 has no asyncio.timeout; a close stand-in

    @contextlib.asynccontextmanager
    async def _timeout(delay: float) -> Any:
        task = asyncio.current_task()
        assert task is not None
        handle = asyncio.get_running_loop().call_later(delay, task.cancel)
        try:
            yield
        except asyncio.CancelledError:
            raise TimeoutError from None
        finally:
            handle.cancel()


async def serve_protocol_no_timeouts(port: int) -> None:
    """tophat.serve (the Protocol runtime) with every per-phase timeout switched off."""
    import tophat
    from examples.hello import app

    opts = tophat.ServerOpts(
        head_timeout=None, body_timeout=None, keep_alive_timeout=None, write_timeout=None
    )
    await tophat.serve_asyncio(
        app, HOST, port, opts=opts, ready=lambda s: print(f"PORT {s.port}", flush=True)
    )


async def serve_streams(port: int, timed: bool) -> None:
    """asyncio.start_server running tophat.accept on a StreamsStream per connection."""
    import tophat
    from examples.hello import app

    opts = tophat.ServerOpts()
    stopping = asyncio.Event()
    tasks: set[asyncio.Task[Any]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        peer = writer.get_extra_info("peername")
        local = writer.get_extra_info("sockname")
        stream: StreamsStream = (
            TimedStreamsStream(reader, writer, opts) if timed else StreamsStream(reader, writer)
        )
        try:
            await tophat.accept(
                stream,
                app,
                opts,
                client=(peer[0], peer[1]) if isinstance(peer, tuple) else None,
                server=(local[0], local[1]) if isinstance(local, tuple) else None,
                stopping=stopping,
            )
        finally:
            tasks.discard(task)

    server = await asyncio.start_server(handle, HOST, port, backlog=2048, reuse_address=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    await stop.wait()
    server.close()
    stopping.set()
    for task in list(tasks):
        task.cancel()
    if tasks:
        await asyncio.wait(list(tasks), timeout=2)


# == a Python keep-alive load client (used when wrk is not installed) ========================


async def _client_conn(port: int, deadline: float, pipeline: int, stats: dict[str, int]) -> None:
    request = f"GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode() * pipeline
    try:
        reader, writer = await asyncio.open_connection(HOST, port)
    except OSError:
        stats["connect_errors"] += 1
        return
    loop = asyncio.get_running_loop()
    buf = b""
    try:
        while loop.time() < deadline:
            writer.write(request)
            for _ in range(pipeline):
                while (end := buf.find(b"\r\n\r\n")) < 0:
                    data = await reader.read(READ_SIZE)
                    if not data:
                        raise ConnectionError("closed")
                    buf += data
                head = buf[:end]
                m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
                length = int(m.group(1)) if m else 0
                total = end + 4 + length
                while len(buf) < total:
                    data = await reader.read(READ_SIZE)
                    if not data:
                        raise ConnectionError("closed")
                    buf += data
                if head.startswith(b"HTTP/1.1 200 "):
                    stats["ok"] += 1
                else:
                    stats["non_200"] += 1
                buf = buf[total:]
    except (OSError, ConnectionError):
        stats["read_errors"] += 1
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def load_client(port: int, conns: int, duration: float, pipeline: int) -> dict[str, Any]:
    stats = {"ok": 0, "non_200": 0, "read_errors": 0, "connect_errors": 0}
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    deadline = t0 + duration
    await asyncio.wait_for(
        asyncio.gather(*(_client_conn(port, deadline, pipeline, stats) for _ in range(conns))),
        duration + 10,
    )
    elapsed = loop.time() - t0
    return {**stats, "elapsed": elapsed, "rps": stats["ok"] / elapsed}


# == the orchestrator ==========================================================================


@dataclass
class Server:
    name: str
    argv: list[str]
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log_path: str = ""
    rps: list[float] = field(default_factory=list)
    per_cpu: list[float] = field(default_factory=list)  # requests per server CPU-second
    cpu_share: list[float] = field(default_factory=list)  # server CPU-seconds per wall second
    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    rss: dict[str, int] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def http_get(port: int, timeout: float = 2.0) -> tuple[bytes, bytes]:
    """One GET / on a fresh connection: (head, body)."""
    request = f"GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode()
    data = exchange_once(HOST, port, request, timeout)
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far (from /proc/PID/stat)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def start(server: Server, pin: list[str]) -> None:
    server.port = free_port()
    argv = [a.replace("{port}", str(server.port)) for a in server.argv]
    server.log_path = os.path.join(
        tempfile.gettempdir(), f"tophat-transport-{server.name.replace('+', '_')}-{os.getpid()}.log"
    )
    log = open(server.log_path, "wb")  # noqa: SIM115 - closed with the process
    server.proc = subprocess.Popen(
        pin + argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise SystemExit(f"{server.name} exited with {server.proc.returncode}; see {log.name}")
        try:
            head, body = http_get(server.port, 1.0)
            if head.startswith(b"HTTP/1.1 200") and body == b"Hello, world!":
                return
            raise SystemExit(f"{server.name} answered {head!r} {body!r}")
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{server.name} did not come up within 20 s; see {server.log_path}")


def stop(server: Server) -> int | None:
    return None if server.proc is None else stop_process(server.proc)


_WRK_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_WRK_TOTAL = re.compile(r"(\d+) requests in ")
_WRK_LAT = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)


def run_wrk(port: int, conns: int, duration: float, pin: list[str]) -> dict[str, Any]:
    out = subprocess.run(
        [
            *pin,
            "wrk",
            "-t1",
            f"-c{conns}",
            f"-d{duration:g}s",
            "--latency",
            f"http://{HOST}:{port}/",
        ],
        capture_output=True,
        text=True,
        timeout=duration + 30,
    ).stdout
    m = _WRK_RPS.search(out)
    if not m:
        raise RuntimeError(f"cannot parse wrk output:\n{out}")
    lat = {}
    for pct, value, unit in _WRK_LAT.findall(out):
        lat[pct] = float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]
    errors = []
    if "Socket errors" in out:
        errors.append(out.split("Socket errors:", 1)[1].splitlines()[0].strip())
    if "Non-2xx" in out:
        errors.append("non-2xx: " + out.split("Non-2xx or 3xx responses:", 1)[1].split()[0])
    total = _WRK_TOTAL.search(out)
    return {
        "rps": float(m.group(1)),
        "requests": int(total.group(1)) if total else 0,
        "p50": lat.get("50"),
        "p99": lat.get("99"),
        "errors": errors,
    }


def run_python_client(
    port: int, conns: int, duration: float, pin: list[str], pipeline: int
) -> dict[str, Any]:
    out = subprocess.run(
        [
            *pin,
            sys.executable,
            os.path.abspath(__file__),
            "--load-client",
            "--port",
            str(port),
            "--conns",
            str(conns),
            "--duration",
            str(duration),
            "--pipeline",
            str(pipeline),
        ],
        capture_output=True,
        text=True,
        timeout=duration + 30,
    )
    stats = json.loads(out.stdout.strip().splitlines()[-1])
    errors = [f"{k}: {stats[k]}" for k in ("non_200", "read_errors", "connect_errors") if stats[k]]
    return {
        "rps": stats["rps"],
        "requests": stats["ok"],
        "p50": None,
        "p99": None,
        "errors": errors,
    }


def _loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "n/a"


def fmt_ratio(values: list[float]) -> str:
    return " ".join(f"{v:.2f}" for v in values)


def orchestrate(args: argparse.Namespace) -> int:
    client = args.client
    if client == "auto":
        client = "wrk" if shutil.which("wrk") else "python"
    if client == "wrk" and not shutil.which("wrk"):
        raise SystemExit("wrk not found (apt-get install wrk, or --client python)")
    can_pin = bool(shutil.which("taskset")) and (os.cpu_count() or 1) >= 2 and not args.no_pin
    pin_server = ["taskset", "-c", "0"] if can_pin else []
    pin_load = ["taskset", "-c", "1"] if can_pin else []
    py = sys.executable
    me = os.path.abspath(__file__)
    servers = [
        Server(
            "protocol",
            [
                py,
                "-m",
                "tophat",
                "examples.hello:app",
                "--port",
                "{port}",
                *["--log-level", "warning"],
            ],
        ),
        Server("streams", [py, me, "--serve", "streams", "--port", "{port}"]),
    ]
    if not args.no_timed:
        servers.append(Server("streams+t", [py, me, "--serve", "streams+t", "--port", "{port}"]))
    if not args.no_nt:
        servers.append(
            Server("protocol-nt", [py, me, "--serve", "protocol-nt", "--port", "{port}"])
        )
    have_uvicorn = (
        subprocess.run([py, "-c", "import uvicorn"], capture_output=True, timeout=30).returncode
        == 0
    )
    if have_uvicorn and not args.no_uvicorn:
        servers.append(
            Server(
                "uvicorn",
                [
                    py, "-m", "uvicorn", "bench.asgi_hello:app", "--http", "h11", "--loop",
                    "asyncio", "--host", HOST, "--port", "{port}", "--log-level", "warning",
                    "--no-access-log", "--no-server-header", "--lifespan", "off",
                ],
            )
        )  # fmt: skip

    def load(port: int, seconds: float) -> dict[str, Any]:
        if client == "wrk":
            return run_wrk(port, args.conns, seconds, pin_load)
        return run_python_client(port, args.conns, seconds, pin_load, args.pipeline)

    budget = len(servers) * (args.rounds * (args.duration + 3) + 10) + 60

    def on_alarm(signum: int, frame: object) -> None:
        raise SystemExit(f"the run took longer than its {budget:.0f} s budget: stopped")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(int(budget))
    t_start = time.monotonic()
    order_log: list[str] = []
    codes: dict[str, int | None] = {}
    try:
        for s in servers:
            start(s, pin_server)
        print(
            f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load: {client} "
            f"({args.conns} keep-alive connections"
            + (f", pipeline {args.pipeline}" if client == "python" and args.pipeline > 1 else "")
            + f"), {args.rounds} rounds x {args.duration:g} s, "
            + ("servers pinned to CPU 0, load to CPU 1" if can_pin else "no CPU pinning")
            + f"; loadavg {_loadavg()}"
        )
        for s in servers:
            head, _ = http_get(s.port)
            lines = head.decode("latin-1").split("\r\n")
            names = [ln.split(":")[0].lower() for ln in lines[1:]]
            print(f"  {s.name:<10} port {s.port}: {lines[0]}; header fields {names}")
        for s in servers:  # warm-up
            load(s.port, 1)
            s.rss["after warm-up"] = rss(s.proc.pid) if s.proc else 0
        for r in range(args.rounds):
            k = r % len(servers)
            order = servers[k:] + servers[:k]
            order_log.append("/".join(s.name for s in order))
            for s in order:
                pid = s.proc.pid if s.proc else 0
                cpu0, t0 = cpu_seconds(pid), time.monotonic()
                res = load(s.port, args.duration)
                cpu, wall = cpu_seconds(pid) - cpu0, time.monotonic() - t0
                s.rps.append(res["rps"])
                s.per_cpu.append(res["requests"] / cpu if cpu > 0 else 0.0)
                s.cpu_share.append(cpu / wall)
                if res["p50"] is not None:
                    s.p50.append(res["p50"])
                    s.p99.append(res["p99"])
                s.errors.extend(f"round {r + 1}: {e}" for e in res["errors"])
                if s.proc is not None and s.proc.poll() is not None:
                    raise SystemExit(f"{s.name} died (exit {s.proc.returncode})")
        for s in servers:
            s.rss["at end"] = rss(s.proc.pid) if s.proc else 0
    finally:
        signal.alarm(0)
        for s in servers:
            codes[s.name] = stop(s)

    # -- report ------------------------------------------------------------------------------
    names = [s.name for s in servers]
    by = {s.name: s for s in servers}
    pairs = [("protocol", "streams"), ("protocol", "streams+t"), ("protocol-nt", "streams")]
    pairs += [("streams", "streams+t"), ("protocol-nt", "protocol")]
    pairs += [("protocol", "uvicorn"), ("streams", "uvicorn")]
    metrics = [
        ("rps", "requests/s (wall clock: hit by anything else running on the machine)", ".0f"),
        ("per_cpu", "requests per CPU-second of the server process (steadier under noise)", ".0f"),
    ]
    for attr, title, fmt in metrics:
        print(f"\n== {title}")
        print(f"{'round':<7}" + "".join(f"{n:>12}" for n in names) + "   order")
        for r in range(args.rounds):
            row = "".join(f"{getattr(s, attr)[r]:>12{fmt}}" for s in servers)
            print(f"{r + 1:<7}{row}   {order_log[r]}")
        med = {s.name: statistics.median(getattr(s, attr)) for s in servers}
        print(f"{'median':<7}" + "".join(f"{med[n]:>12{fmt}}" for n in names))
        if attr == "rps" and all(s.p50 for s in servers):
            p50 = "".join(f"{statistics.median(s.p50):>12.2f}" for s in servers)
            p99 = "".join(f"{statistics.median(s.p99):>12.2f}" for s in servers)
            print(f"{'p50 ms':<7}{p50}   latency (median of rounds)")
            print(f"{'p99 ms':<7}{p99}")
        if attr == "rps":
            share = "".join(f"{statistics.median(s.cpu_share):>12.2f}" for s in servers)
            print(f"{'cpu':<7}{share}   server CPU-s per s (1.00 = a whole core)")
        print(f"{'ratio':<22} {'median of rounds':>16} {'of medians':>11}   per round")
        for a, b in pairs:
            if a in by and b in by:
                xs, ys = getattr(by[a], attr), getattr(by[b], attr)
                per = [x / y if y else 0.0 for x, y in zip(xs, ys, strict=True)]
                print(
                    f"{a + '/' + b:<22} {statistics.median(per):>16.2f} "
                    f"{med[a] / med[b] if med[b] else 0.0:>11.2f}   {fmt_ratio(per)}"
                )
    print()
    failed = False
    for s in servers:
        with open(s.log_path, "rb") as logf:
            log_text = logf.read().decode("utf-8", "replace")
        rss_text = ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in s.rss.items())
        print(f"{s.name}: RSS {rss_text}; exit status after SIGTERM {codes.get(s.name)}")
        for e in s.errors:
            print(f"  load errors {e}")
        lines = log_text.strip().splitlines()
        for ln in lines[:20]:
            print(f"  log | {ln}")
        if len(lines) > 20:
            print(f"  log | ... {len(lines) - 20} more lines in {s.log_path}")
        if any("ERROR" in ln or "Traceback" in ln for ln in lines):
            failed = True
    print(f"total time {time.monotonic() - t_start:.1f}s; loadavg at end {_loadavg()}")
    if failed:
        print("a server logged errors (see above)")
    return 1 if failed else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--duration", type=float, default=3.0, help="seconds per measurement")
    p.add_argument("--conns", type=int, default=50, help="keep-alive connections")
    p.add_argument("--client", choices=["auto", "wrk", "python"], default="auto")
    p.add_argument("--pipeline", type=int, default=1, help="python client: requests in flight")
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    p.add_argument("--no-timed", action="store_true", help="skip the streams+t server")
    p.add_argument("--no-uvicorn", action="store_true", help="skip the uvicorn reference")
    p.add_argument("--no-nt", action="store_true", help="skip the protocol-nt server")
    p.add_argument(
        "--serve", choices=["streams", "streams+t", "protocol-nt"], help=argparse.SUPPRESS
    )
    p.add_argument("--load-client", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.rounds < 1 or args.duration <= 0 or args.conns < 1:
        p.error("--rounds, --duration and --conns must be positive")
    if args.serve == "protocol-nt":
        asyncio.run(serve_protocol_no_timeouts(args.port))
        return 0
    if args.serve:
        asyncio.run(serve_streams(args.port, args.serve == "streams+t"))
        return 0
    if args.load_client:
        stats = asyncio.run(load_client(args.port, args.conns, args.duration, args.pipeline))
        print(json.dumps(stats))
        return 0
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
