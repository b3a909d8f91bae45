"""1 worker vs 2 workers, in one run: `python -m tophat examples.hello:app --workers N`.

    .venv/bin/python bench/workers_bench.py [--runtime uvloop] [--rounds 3] [--duration 5]

Each configuration runs as its own CLI process on 127.0.0.1; rounds alternate 1, 2, 1, 2, ...
`wrk -t1 -c64` (Debian package `wrk`) drives it. The machine has 2 cores, and wrk needs one of
them, so 2 workers compete with the load generator: the ratio says what a second process buys
here, not on a bigger machine. Prints requests/s per round, medians and the 2/1 ratio.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(workers: int, runtime: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tophat",
            "examples.hello:app",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--runtime",
            runtime,
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            time.sleep(0.05)
    time.sleep(0.3 * workers)  # let every worker bind
    return proc, port


def wrk(port: int, duration: float) -> float:
    out = subprocess.run(
        ["wrk", "-t1", "-c64", f"-d{duration:g}s", f"http://127.0.0.1:{port}/"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m is None:
        raise RuntimeError(out)
    return float(m.group(1))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runtime", default="uvloop", choices=["asyncio", "uvloop", "trio"])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=5.0)
    args = p.parse_args()
    results: dict[int, list[float]] = {1: [], 2: []}
    for r in range(args.rounds):
        for workers in (1, 2) if r % 2 == 0 else (2, 1):
            proc, port = start(workers, args.runtime)
            try:
                wrk(port, 1.0)  # warm-up
                rps = wrk(port, args.duration)
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
            results[workers].append(rps)
            print(f"round {r + 1}  workers={workers}  {rps:10.0f} req/s", flush=True)
    one, two = statistics.median(results[1]), statistics.median(results[2])
    print()
    print("| runtime | workers | median req/s | min-max |")
    print("|---|---:|---:|---|")
    for n, med in ((1, one), (2, two)):
        lo, hi = min(results[n]), max(results[n])
        print(f"| {args.runtime} | {n} | {med:.0f} | {lo:.0f}-{hi:.0f} |")
    print(f"\n2 workers / 1 worker = {two / one:.2f}  (cores: {os.cpu_count()}, wrk shares them)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
