"""gzip of a 64 KiB JSON: tophat's compress() against Starlette's GZipMiddleware, same run.

    bench/.venv-perf/bin/python bench/compress.py          # ~40 s; needs wrk and bench/.venv-perf
    bench/.venv-perf/bin/python bench/compress.py --rounds 5 --duration 5

Servers, each its own process pinned to CPU 0 (wrk -t1 -c16 on CPU 1), all on asyncio and h11:

* tophat: ``python -m tophat bench.compress:tophat_app --runtime asyncio --parser h11``,
  ``compress()`` at its default gzip level 6;
* Starlette on ``uvicorn --http h11 --loop asyncio``, ``GZipMiddleware`` at its default level 9,
  and again at level 6 (the same work per byte as tophat's).

Both serve the same bytes, serialized once at import, so what differs is the server and the
compression. Every request says ``Accept-Encoding: gzip``; the first answer of each server is
decompressed and compared with the document before any load. The order of the servers rotates
each round. Reported: requests/s (median, min-max over the rounds), the tophat/peer ratio per
round (median, min-max), and the compressed size. Read ratios, not absolute numbers: the
machine may be shared.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tophat import Request, ResponseWriter, ResponseWritten
from tophat.middleware.compress import compress

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
CONNS = 16
TOPHAT_OPTS = ["--runtime", "asyncio", "--parser", "h11"]


def _document(size: int = 64 * 1024) -> bytes:
    """A JSON array of records, cut to exactly ``size`` bytes (and still valid JSON)."""
    items: list[dict[str, Any]] = []
    i = 0
    while len(json.dumps(items)) < size:
        items.append(
            {"id": i, "name": f"user {i}", "email": f"user{i}@example.com", "score": i * 7 % 101}
        )
        i += 1
    text = json.dumps(items)
    while len(text) > size:
        items.pop()
        text = json.dumps(items)
    return (text[:-1] + " " * (size - len(text)) + "]").encode()


DOC = _document()


async def _serve_doc(req: Request, w: ResponseWriter) -> ResponseWritten:
    w.set_body(DOC)
    w.insert_header("content-type", "application/json")
    return await w.send()


tophat_app = compress()(_serve_doc)


def starlette_app(level: int = 9) -> Any:
    """The Starlette app (built in the server process: ``uvicorn --factory``)."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.gzip import GZipMiddleware
    from starlette.responses import Response
    from starlette.routing import Route

    async def doc(request: Any) -> Response:
        return Response(DOC, media_type="application/json")

    return Starlette(
        routes=[Route("/", doc)],
        middleware=[Middleware(GZipMiddleware, compresslevel=level)],
    )


def starlette_level9() -> Any:
    return starlette_app(9)


def starlette_level6() -> Any:
    return starlette_app(6)


# -- the harness --------------------------------------------------------------------------------


@dataclass
class Server:
    label: str
    argv: list[str]
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    rps: list[float] = field(default_factory=list)
    size: int = 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _get(port: int) -> tuple[dict[str, str], bytes]:
    """One GET with Accept-Encoding: gzip and Connection: close: headers and raw body."""
    with socket.create_connection((HOST, port), timeout=5) as s:
        s.sendall(
            b"GET / HTTP/1.1\r\nHost: b\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n"
        )
        data = b""
        while piece := s.recv(65536):
            data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    fields = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    if fields.get("transfer-encoding") == "chunked":
        out, rest = b"", body
        while True:
            size_line, _, rest = rest.partition(b"\r\n")
            n = int(size_line.split(b";")[0], 16)
            if n == 0:
                break
            out, rest = out + rest[:n], rest[n + 2 :]
        body = out
    return fields, body


def _start(server: Server, pin: list[str]) -> None:
    server.port = _free_port()
    argv = [a.replace("{port}", str(server.port)) for a in server.argv]
    server.proc = subprocess.Popen(
        [*pin, *argv], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            fields, body = _get(server.port)
        except OSError:
            time.sleep(0.1)
            continue
        if fields.get("content-encoding") != "gzip" or gzip.decompress(body) != DOC:
            raise SystemExit(f"{server.label}: wrong answer ({fields})")
        server.size = len(body)
        return
    raise SystemExit(f"{server.label}: did not start")


_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")


def _wrk(port: int, seconds: float, pin: list[str]) -> float:
    argv = [*pin, "wrk", "-t1", f"-c{CONNS}", f"-d{seconds:g}s", "-H", "Accept-Encoding: gzip"]
    out = subprocess.run(
        [*argv, f"http://{HOST}:{port}/"], capture_output=True, text=True, timeout=seconds + 30
    ).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise SystemExit(f"wrk saw errors:\n{out}")
    m = _RPS.search(out)
    if m is None:
        raise SystemExit(f"cannot read wrk's output:\n{out}")
    return float(m.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per cell")
    parser.add_argument("--no-pin", action="store_true", help="do not pin to CPUs 0 and 1")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("wrk is not installed: sudo apt-get install -y wrk", file=sys.stderr)
        return 2
    pinning = not args.no_pin and shutil.which("taskset") and (os.cpu_count() or 1) >= 2
    server_pin = ["taskset", "-c", "0"] if pinning else []
    load_pin = ["taskset", "-c", "1"] if pinning else []
    py = sys.executable
    uvicorn = [py, "-m", "uvicorn", "--factory", "--port", "{port}", "--http", "h11"]
    uvicorn += ["--loop", "asyncio", "--log-level", "warning", "--no-access-log"]
    servers = [
        Server(
            "tophat compress() gzip 6",
            [py, "-m", "tophat", "bench.compress:tophat_app", "--port", "{port}", *TOPHAT_OPTS],
        ),
        Server("Starlette GZipMiddleware 9", [*uvicorn, "bench.compress:starlette_level9"]),
        Server("Starlette GZipMiddleware 6", [*uvicorn, "bench.compress:starlette_level6"]),
    ]
    try:
        for s in servers:
            _start(s, server_pin)
        for s in servers:
            _wrk(s.port, 1.0, load_pin)  # warm-up
        for r in range(args.rounds):
            for s in servers[r % len(servers) :] + servers[: r % len(servers)]:
                s.rps.append(_wrk(s.port, args.duration, load_pin))
    finally:
        for s in servers:
            if s.proc is not None:
                s.proc.terminate()
                s.proc.wait(15)
    base = servers[0]
    print(f"64 KiB JSON ({len(DOC)} bytes), gzip; {args.rounds} rounds x {args.duration:g} s,")
    print(f"wrk -t1 -c{CONNS}{', pinned' if pinning else ''}; python {sys.version.split()[0]}\n")
    print(
        "| server | gzip bytes | req/s median (min-max) | tophat / it per round: median (min-max) |"
    )
    print("|---|---:|---:|---:|")
    for s in servers:
        ratios = [b / o for b, o in zip(base.rps, s.rps, strict=True)]
        ratio = (
            "1"
            if s is base
            else f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
        )
        print(
            f"| {s.label} | {s.size} | {statistics.median(s.rps):,.0f} "
            f"({min(s.rps):,.0f}-{max(s.rps):,.0f}) | {ratio} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
