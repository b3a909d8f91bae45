"""A 1 MiB file download: tophat ``set_file`` against Starlette ``FileResponse`` (uvicorn) and
aiohttp ``FileResponse``, in one run, as ratios.

    python3 bench/files.py              # 3 interleaved rounds x 3 s per server, ~1 min
    python3 bench/files.py --seconds 1 --rounds 1

Each server is its own process (bench/.venv-perf's python, see perf.py), pinned to CPU 0 with
taskset; wrk (-t1 -c16, GET of the same 1 MiB file, keep-alive) is pinned to CPU 1. The
servers: tophat on asyncio (zero-copy ``loop.sendfile``) and on uvloop (reads in 64 KiB
pieces: uvloop has no sendfile), Starlette's FileResponse under uvicorn (h11 + asyncio, and
httptools + uvloop; it reads 64 KiB pieces in a thread), and aiohttp's FileResponse (asyncio,
``loop.sendfile``). Reported: median requests/s (min-max over the rounds), MiB/s, and the
ratio to Starlette under uvicorn h11. Every server's answer is checked byte for byte first.
Compare ratios within one run only.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
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
from typing import Any

from _proc import exchange_once, stop_process

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PY = os.path.join(HERE, ".venv-perf", "bin", "python")
HOST = "127.0.0.1"
SIZE = 1024 * 1024
CONNS = 16

SERVERS = {
    "tophat": "tophat asyncio (sendfile)",
    "tophat-uvloop": "tophat uvloop (pieces)",
    "starlette": "Starlette FileResponse (uvicorn h11)",
    "starlette-fast": "Starlette FileResponse (uvicorn httptools+uvloop)",
    "aiohttp": "aiohttp FileResponse",
}
BASELINE = "starlette"


# == the servers (run as: files.py --serve KIND --port P --file F) ============================


def serve(kind: str, port: int, path: str) -> None:
    if kind.startswith("tophat"):
        import tophat

        async def download(req: tophat.Request, w: tophat.ResponseWriter) -> tophat.ResponseWritten:
            w.set_file(path)
            return await w.send()

        runtime = "uvloop" if kind == "tophat-uvloop" else "asyncio"
        tophat.serve(download, HOST, port, runtime=runtime)
    elif kind.startswith("starlette"):
        import uvicorn
        from starlette.applications import Starlette
        from starlette.responses import FileResponse
        from starlette.routing import Route

        async def endpoint(request: Any) -> FileResponse:
            return FileResponse(path)

        app = Starlette(routes=[Route("/", endpoint)])
        fast = kind == "starlette-fast"
        uvicorn.run(
            app,
            host=HOST,
            port=port,
            http="httptools" if fast else "h11",
            loop="uvloop" if fast else "asyncio",
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
    else:
        from aiohttp import web

        async def handler(request: web.Request) -> web.FileResponse:
            return web.FileResponse(path)

        app = web.Application()
        app.router.add_get("/", handler)
        web.run_app(app, host=HOST, port=port, access_log=None, print=None)


# == the harness ==================================================================================


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def body_of(port: int) -> bytes:
    req = f"GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode()
    head, _, body = exchange_once(HOST, port, req, 5.0).partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(head.decode("latin-1"))
    return body


def start(kind: str, path: str, pin: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(
        [*pin, PY, __file__, "--serve", kind, "--port", str(port), "--file", path],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": ROOT},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            body_of(port)
            return proc, port
        if proc.poll() is not None:
            raise RuntimeError(f"{kind} exited with status {proc.returncode}")
        time.sleep(0.1)
    raise RuntimeError(f"{kind} did not answer within 30 s")


_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")


def wrk(port: int, seconds: float, pin: list[str]) -> float:
    argv = [*pin, "wrk", "-t1", f"-c{CONNS}", f"-d{seconds:g}s", f"http://{HOST}:{port}/"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30).stdout
    m = _RPS.search(out)
    if m is None or "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk failed:\n{out}")
    return float(m.group(1))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--serve", choices=sorted(SERVERS))
    p.add_argument("--port", type=int)
    p.add_argument("--file")
    args = p.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.file)
        return 0
    if not os.path.exists(PY) or shutil.which("wrk") is None:
        print("needs bench/.venv-perf (python3 bench/perf.py --setup) and wrk", file=sys.stderr)
        return 2
    pin_server: list[str] = []
    pin_wrk: list[str] = []
    if shutil.which("taskset") and {0, 1} <= os.sched_getaffinity(0):
        pin_server, pin_wrk = ["taskset", "-c", "0"], ["taskset", "-c", "1"]
    data = os.urandom(SIZE)
    digest = hashlib.sha256(data).hexdigest()
    results: dict[str, list[float]] = {k: [] for k in SERVERS}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "file.bin")
        with open(path, "wb") as f:
            f.write(data)
        os.utime(path, (time.time() - 60,) * 2)
        running: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
        try:
            for kind in SERVERS:
                running[kind] = start(kind, path, pin_server)
                got = hashlib.sha256(body_of(running[kind][1])).hexdigest()
                if got != digest:
                    raise RuntimeError(f"{kind} sent other bytes")
            order = list(SERVERS)
            for r in range(args.rounds):
                for kind in order[r % len(order) :] + order[: r % len(order)]:
                    wrk(running[kind][1], 1, pin_wrk)  # warm-up
                    results[kind].append(wrk(running[kind][1], args.seconds, pin_wrk))
        finally:
            for proc, _ in running.values():
                stop_process(proc, lambda proc=proc: os.killpg(proc.pid, signal.SIGKILL))
    base = statistics.median(results[BASELINE])
    load = os.getloadavg()[0]
    print(f"1 MiB file, wrk -t1 -c{CONNS}, {args.rounds} x {args.seconds:g} s; load {load:.2f}")
    print(f"| server | req/s (min-max) | MiB/s | vs {SERVERS[BASELINE]} |")
    print("|---|---|---|---|")
    for kind, label in SERVERS.items():
        rps = results[kind]
        med = statistics.median(rps)
        spread = f"{min(rps):.0f}-{max(rps):.0f}"
        print(f"| {label} | {med:.0f} ({spread}) | {med:.0f} | {med / base:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
