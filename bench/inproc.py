"""Per-request CPU cost inside the server process, without sockets: tophat vs uvicorn.

    bench/.venv-perf/bin/python bench/inproc.py                 # table: µs per request
    bench/.venv-perf/bin/python bench/inproc.py --profile fast  # cProfile of one mode
    bench/.venv-perf/bin/python bench/inproc.py --test post     # one test only

Each server's asyncio Protocol gets a fake transport: every response written schedules the
next request's bytes with ``loop.call_soon`` (as a socket read would arrive), so one connection
serves N keep-alive requests with no kernel, no load generator and no second process. What is
left is the server's own Python work per request plus the event loop's wake-up: the part a
server can make faster. (bench/perf.py measures the real thing over sockets; this one is for
profiling and for same-run ratios that a busy machine disturbs less. Reported: min and median
of R runs of N requests.)

Modes: tophat default (asyncio + h11) and fast (uvloop + httptools); uvicorn --http h11 and
--http httptools --loop uvloop, with the ASGI app bench/perf.py serves. Tests: hello (GET /),
post (POST /echo, 4 KiB), big (GET /big, 64 KiB).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.perf_apps import BIG  # noqa: E402

HOST = b"Host: 127.0.0.1:9000\r\n"
REQUESTS = {
    "hello": b"GET / HTTP/1.1\r\n" + HOST + b"\r\n",
    "post": b"POST /echo HTTP/1.1\r\n" + HOST + b"Content-Length: 4096\r\n"
    b"Content-Type: application/octet-stream\r\n\r\n" + b"a" * 4096,
    "big": b"GET /big HTTP/1.1\r\n" + HOST + b"\r\n",
}
# The last write of each response ends with this (a head and body in one write, or the body).
ENDS = {"hello": b"Hello, world!", "post": b"a" * 64, "big": BIG[-64:]}


class FakeTransport:
    """Takes the server's writes; after each complete response, feeds the next request."""

    def __init__(self, protocol: Any, request: bytes, end: bytes, n: int) -> None:
        self.protocol, self.request, self.end, self.left = protocol, request, end, n
        self.loop = asyncio.get_running_loop()
        self.done = self.loop.create_future()

    def write(self, data: bytes) -> None:
        if not data.endswith(self.end):
            return  # a head sent alone: the body follows
        self.left -= 1
        if self.left <= 0:
            self.done.set_result(None)
        else:
            self.loop.call_soon(self.deliver)

    def deliver(self) -> None:
        """The next request's bytes, as the selector transport hands them over: into
        ``get_buffer()`` then ``buffer_updated()`` for a BufferedProtocol (tophat's), else
        ``data_received()`` (uvicorn's)."""
        protocol = self.protocol
        if isinstance(protocol, asyncio.BufferedProtocol):
            buf = protocol.get_buffer(-1)
            n = len(self.request)
            buf[:n] = self.request
            protocol.buffer_updated(n)
        else:
            protocol.data_received(self.request)

    def writelines(self, pieces: Any) -> None:
        self.write(b"".join(pieces))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 5555) if name in ("peername", "sockname") else default

    def is_closing(self) -> bool:
        return False

    def close(self) -> None: ...
    def abort(self) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def set_protocol(self, protocol: Any) -> None: ...
    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None: ...


async def _drive(make_protocol: Callable[[], Any], test: str, n: int) -> float:
    protocol = make_protocol()
    transport = FakeTransport(protocol, REQUESTS[test], ENDS[test], n)
    protocol.connection_made(transport)
    t0 = time.process_time()
    transport.deliver()
    await transport.done
    return (time.process_time() - t0) / n * 1e6


def _tophat(parser: str) -> Callable[[], Any]:
    from bench.perf_apps.tophat_apps import plain
    from tophat import ServerOpts
    from tophat.runtime.asyncio.connection import Conn
    from tophat.runtime.asyncio.server import Server

    server = Server(plain, ServerOpts(parser=parser))  # type: ignore[arg-type]
    return lambda: Conn(server.pool)


def _uvicorn(http: str) -> Callable[[], Any]:
    from uvicorn.config import Config
    from uvicorn.server import ServerState

    from bench.perf_apps.asgi_app import app

    config = Config(app, http=http, log_level="warning", access_log=False, lifespan="off")
    config.load()
    if http == "httptools":
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as Protocol
    else:
        from uvicorn.protocols.http.h11_impl import H11Protocol as Protocol  # type: ignore
    loop = asyncio.get_running_loop()
    return lambda: Protocol(config, ServerState(), {}, loop)


# name -> (loop, factory of the protocol factory)
MODES: dict[str, tuple[str, Callable[[], Callable[[], Any]]]] = {
    "tophat default": ("asyncio", lambda: _tophat("h11")),
    "tophat fast": ("uvloop", lambda: _tophat("httptools")),
    "uvicorn h11": ("asyncio", lambda: _uvicorn("h11")),
    "uvicorn httptools+uvloop": ("uvloop", lambda: _uvicorn("httptools")),
}


def run_mode(mode: str, test: str, n: int) -> float:
    loop, factory = MODES[mode]

    async def main() -> float:
        return await _drive(factory(), test, n)

    if loop == "uvloop":
        import uvloop

        return uvloop.run(main())
    return asyncio.run(main())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--test", choices=sorted(REQUESTS), action="append")
    ap.add_argument("-n", type=int, default=20000, help="requests per run (20000)")
    ap.add_argument("-r", "--runs", type=int, default=5, help="runs per cell (5)")
    ap.add_argument("--profile", choices=["default", "fast"], help="cProfile one tophat mode")
    args = ap.parse_args()
    tests = args.test or ["hello", "post", "big"]
    if args.profile:
        mode = f"tophat {args.profile}"
        profiler = cProfile.Profile()
        profiler.runcall(run_mode, mode, tests[0], args.n)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        return 0
    print(f"µs per request, in process (min / median of {args.runs} runs x {args.n}):\n")
    print("| test | tophat default | uvicorn h11 | ratio | tophat fast | uvicorn fast | ratio |")
    print("|---|--:|--:|--:|--:|--:|--:|")
    for test in tests:
        cells: dict[str, list[float]] = {mode: [] for mode in MODES}
        for _ in range(args.runs):  # interleaved: a noisy moment hits every mode alike
            for mode in MODES:
                cells[mode].append(run_mode(mode, test, args.n))
        best = {mode: min(ts) for mode, ts in cells.items()}
        cell = {mode: f"{min(ts):.1f} / {statistics.median(ts):.1f}" for mode, ts in cells.items()}
        print(
            f"| {test} | {cell['tophat default']} | {cell['uvicorn h11']} "
            f"| {best['uvicorn h11'] / best['tophat default']:.2f}x "
            f"| {cell['tophat fast']} | {cell['uvicorn httptools+uvloop']} "
            f"| {best['uvicorn httptools+uvloop'] / best['tophat fast']:.2f}x |"
        )
    print("\nratio: uvicorn's µs / tophat's µs (min of runs); > 1 means tophat does less work.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
