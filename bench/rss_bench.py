"""Prove that streaming 100 MiB down or up keeps the server's RSS within 20 MB of idle.

    .venv/bin/python bench/rss_bench.py [--size-mib 100] [--limit-mb 20]

Starts ``bench/rss_server.py`` (bench.rss_app:app, no body-size limit) as its own process on
127.0.0.1, warms it up with one small request, measures its idle RSS, then runs each transfer
on a fresh connection with a plain blocking socket (64 KiB reads and writes) while a thread
samples the server's VmRSS from /proc every 50 ms. When the kernel allows it, the server's
peak-RSS counter (VmHWM) is reset before each transfer (``echo 5 > /proc/PID/clear_refs``) and
read after it, so a spike between two samples is caught too.

Transfers:
  GET  /download        chunked response (async generator, no length)
  GET  /download-sized  Content-Length response (same generator, length=SIZE)
  GET  /download        chunked, read by a slow client (~40 MB/s): the server must wait
  POST /upload          Content-Length upload, handler reads ``async for chunk in req.stream()``
  POST /upload          Transfer-Encoding: chunked upload
  POST /upload-slow     Content-Length upload to a handler that sleeps 1 ms per piece: the
                        server must stop reading the socket rather than buffer
  GET  /download        client resets the connection after 10 MiB; then a GET / must work
  POST /upload          client closes after 10 MiB of a declared 100 MiB; then a GET / must work
  (--control)           POST /upload-buffered: a handler that does ``await req.body()``; it
                        must go over the limit, showing the measurement can fail

Each row checks the bytes (count, framing, and the pattern byte at every 64 KiB boundary of a
download; the echoed count of an upload) and that peak - idle <= limit. Any failure, or an
ERROR/Traceback in the server's log, makes the exit status 1. MB here is 10^6 bytes.
Everything is bounded: socket timeouts, a per-transfer deadline, and a 110 s alarm overall.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from _proc import stop_process

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
HOST = "127.0.0.1"
CHUNK = 64 * 1024
MB = 1_000_000
SAMPLE_EVERY = 0.05
TRANSFER_DEADLINE = 40.0  # seconds per transfer
OVERALL_ALARM = 110  # seconds for the whole run


# -- the server process and its memory ------------------------------------------------------


def rss_bytes(pid: int, field_name: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field_name} not found for pid {pid}")


def reset_hwm(pid: int) -> bool:
    """Reset the kernel's peak-RSS counter of ``pid`` (Linux >= 4.0); False if not allowed."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class Sampler:
    """Samples a process's VmRSS every ``SAMPLE_EVERY`` seconds in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            try:
                self.samples.append(rss_bytes(self.pid))
            except (OSError, RuntimeError):
                return
            if self._stop.wait(SAMPLE_EVERY):
                return

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)
        with contextlib.suppress(OSError, RuntimeError):
            self.samples.append(rss_bytes(self.pid))


def start_server(log_path: str, log_level: str) -> tuple[subprocess.Popen[bytes], int]:
    log = open(log_path, "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [
            sys.executable,
            os.path.join(HERE, "rss_server.py"),
            *("--port", "0", "--log-level", log_level),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=log,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 15
    line = b""
    while time.monotonic() < deadline and not line.endswith(b"\n"):
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            byte = os.read(proc.stdout.fileno(), 1)
            if not byte:
                break
            line += byte
    if not line.startswith(b"PORT "):
        proc.kill()
        proc.wait(5)
        raise SystemExit(f"server did not start (got {line!r}); see {log_path}")
    return proc, int(line.split()[1])


# -- a tiny blocking HTTP/1.1 client ---------------------------------------------------------


class ClientError(Exception):
    pass


class Conn:
    def __init__(self, port: int, deadline: float) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=10)
        self.sock.settimeout(10)
        self.buf = bytearray()
        self.deadline = deadline
        self._piece = bytearray(CHUNK)
        self._view = memoryview(self._piece)

    def close(self) -> None:
        self.sock.close()

    def _check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise ClientError("transfer deadline exceeded")

    def fill(self) -> int:
        """Read one piece (up to 64 KiB) into the buffer; its size (0 at EOF)."""
        self._check_time()
        n = self.sock.recv_into(self._view, CHUNK)
        if n:
            self.buf += self._view[:n]
        return n

    def read_line(self) -> bytes:
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[: i + 2]
                return line
            if len(self.buf) > 64 * 1024:
                raise ClientError("line too long")
            if not self.fill():
                raise ClientError("connection closed mid-line")

    def read_head(self) -> tuple[int, dict[str, str]]:
        status_line = self.read_line()
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise ClientError(f"bad status line {status_line!r}")
        status = int(parts[1])
        headers: dict[str, str] = {}
        while line := self.read_line():
            name, _, value = line.partition(b":")
            headers[name.decode().strip().lower()] = value.decode("latin-1").strip()
        if 100 <= status < 200:
            return self.read_head()
        return status, headers

    def send(self, data: bytes | memoryview) -> None:
        self._check_time()
        self.sock.sendall(data)


@dataclass
class BodyCheck:
    """Counts body bytes and checks the pattern byte at every 64 KiB boundary."""

    received: int = 0
    bad: list[str] = field(default_factory=list)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        start = self.received
        first = -(-start // CHUNK) * CHUNK  # first multiple of CHUNK >= start
        for pos in range(first, start + len(data), CHUNK):
            want = (pos // CHUNK) % 251
            got = data[pos - start]
            if got != want and len(self.bad) < 3:
                self.bad.append(f"byte {pos}: {got} != {want}")
        self.received += len(data)


class Pacer:
    """Sleeps so that ``rate`` bytes/s is not exceeded (None: no limit)."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self.t0 = time.monotonic()

    def __call__(self, done: int) -> None:
        if self.rate:
            ahead = done / self.rate - (time.monotonic() - self.t0)
            if ahead > 0:
                time.sleep(ahead)


def read_body_sized(c: Conn, length: int, check: BodyCheck, pace: Pacer) -> None:
    if c.buf:
        take = min(len(c.buf), length)
        check.feed(c.buf[:take])
        del c.buf[:take]
    while check.received < length:
        c._check_time()
        n = c.sock.recv_into(c._view, min(CHUNK, length - check.received))
        if not n:
            raise ClientError(f"EOF after {check.received} of {length} body bytes")
        check.feed(c._view[:n])
        pace(check.received)


def read_body_chunked(c: Conn, check: BodyCheck, pace: Pacer) -> int:
    """Read a chunked body; return how many chunks it had."""
    chunks = 0
    while True:
        line = c.read_line()
        size = int(line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while c.read_line():  # trailers, then the empty line
                pass
            return chunks
        chunks += 1
        left = size
        while left:
            if not c.buf and not c.fill():
                raise ClientError("EOF inside a chunk")
            take = min(left, len(c.buf))
            check.feed(c.buf[:take])
            del c.buf[:take]
            left -= take
            pace(check.received)
        while len(c.buf) < 2:
            if not c.fill():
                raise ClientError("EOF after chunk data")
        if c.buf[:2] != b"\r\n":
            raise ClientError("chunk data not followed by CRLF")
        del c.buf[:2]


# -- transfers -------------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    expected: int
    got: int = 0
    ok: bool = False
    detail: str = ""
    seconds: float = 0.0
    rss_before: int = 0
    peak_sampled: int = 0
    hwm: int | None = None
    samples: int = 0

    @property
    def peak(self) -> int:
        return max(self.peak_sampled, self.hwm or 0)


def download(port: int, path: str, size: int, *, chunked: bool, rate: float | None) -> Result:
    res = Result(f"GET {path}", size)
    c = Conn(port, time.monotonic() + TRANSFER_DEADLINE)
    try:
        c.send(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        status, headers = c.read_head()
        if status != 200:
            res.detail = f"status {status}"
            return res
        check = BodyCheck()
        pace = Pacer(rate)
        te = headers.get("transfer-encoding", "").lower()
        if chunked:
            if te != "chunked" or "content-length" in headers:
                res.detail = f"expected chunked framing, got {headers}"
                return res
            n = read_body_chunked(c, check, pace)
            framing = f"{n} chunks"
        else:
            if te or headers.get("content-length") != str(size):
                res.detail = f"expected content-length {size}, got {headers}"
                return res
            read_body_sized(c, size, check, pace)
            framing = f"content-length {size}"
        res.got = check.received
        res.ok = check.received == size and not check.bad
        res.detail = framing + (f"; pattern errors: {check.bad}" if check.bad else "")
    except (OSError, ClientError, ValueError) as exc:
        res.detail = f"{type(exc).__name__}: {exc}"
    finally:
        c.close()
    return res


def upload(port: int, path: str, size: int, *, chunked: bool) -> Result:
    res = Result(f"POST {path}", size)
    c = Conn(port, time.monotonic() + TRANSFER_DEADLINE)
    piece = bytes(range(256)) * (CHUNK // 256)
    try:
        framing = "transfer-encoding: chunked" if chunked else f"content-length: {size}"
        c.send(
            f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\n{framing}\r\n"
            "content-type: application/octet-stream\r\n\r\n".encode()
        )
        sent = 0
        framed = f"{CHUNK:x}\r\n".encode() + piece + b"\r\n"
        try:
            while sent < size:
                n = min(CHUNK, size - sent)
                if chunked:
                    c.send(framed if n == CHUNK else f"{n:x}\r\n".encode() + piece[:n] + b"\r\n")
                else:
                    c.send(piece if n == CHUNK else piece[:n])
                sent += n
            if chunked:
                c.send(b"0\r\n\r\n")
        except OSError as exc:  # the server may have answered early; read what it said
            res.detail = f"send stopped after {sent} bytes: {exc!r}; "
        res.got = sent
        status, headers = c.read_head()
        length = int(headers.get("content-length", "-1"))
        body = bytearray()
        while len(body) < length:
            if not c.buf and not c.fill():
                break
            body += c.buf
            c.buf.clear()
        answer = bytes(body).decode("latin-1")
        res.ok = status == 200 and sent == size and answer == str(size)
        res.detail += f"status {status}, server counted {answer}"
    except (OSError, ClientError, ValueError) as exc:
        res.detail += f"{type(exc).__name__}: {exc}"
    finally:
        c.close()
    return res


def warm_up(port: int) -> None:
    c = Conn(port, time.monotonic() + 10)
    try:
        c.send(f"GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        status, headers = c.read_head()
        while len(c.buf) < int(headers.get("content-length", "0")):
            if not c.fill():
                break
        if status != 200 or bytes(c.buf) != b"ok":
            raise SystemExit(f"warm-up failed: {status} {bytes(c.buf)!r}")
    finally:
        c.close()


def still_serving(port: int) -> str:
    """'' if a fresh GET / gets "ok", else what went wrong."""
    try:
        warm_up(port)
    except (OSError, ClientError, SystemExit) as exc:
        return f"follow-up GET / failed: {exc}"
    return ""


def aborted_download(port: int, size: int, stop_after: int) -> Result:
    """Read ``stop_after`` bytes of a chunked download, then hang up (RST: unread data)."""
    res = Result("GET /download", stop_after)
    c = Conn(port, time.monotonic() + TRANSFER_DEADLINE)
    status = 0
    try:
        c.send(f"GET /download HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        status, _ = c.read_head()
        got = len(c.buf)
        while got < stop_after:
            n = c.fill()
            if not n:
                break
            got += n
            c.buf.clear()
        res.got = got
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except (OSError, ClientError, ValueError) as exc:
        res.detail = f"{type(exc).__name__}: {exc}; "
    finally:
        c.close()
    time.sleep(0.3)
    problem = still_serving(port)
    res.ok = status == 200 and res.got >= stop_after and not problem
    res.detail += f"status {status}, hung up after {res.got} bytes; " + (
        problem or "server still serving"
    )
    return res


def aborted_upload(port: int, size: int, stop_after: int) -> Result:
    """Declare ``size`` bytes, send ``stop_after``, then close: the body is incomplete."""
    res = Result("POST /upload", stop_after)
    c = Conn(port, time.monotonic() + TRANSFER_DEADLINE)
    piece = bytes(CHUNK)
    try:
        c.send(f"POST /upload HTTP/1.1\r\nHost: {HOST}\r\ncontent-length: {size}\r\n\r\n".encode())
        while res.got < stop_after:
            c.send(piece)
            res.got += CHUNK
    except (OSError, ClientError) as exc:
        res.detail = f"{type(exc).__name__}: {exc}; "
    finally:
        c.close()
    time.sleep(0.3)
    problem = still_serving(port)
    res.ok = res.got >= stop_after and not problem
    res.detail += f"closed after {res.got} of {size} bytes; " + (problem or "server still serving")
    return res


def idle_rss(pid: int, settle: float = 0.3, n: int = 5) -> int:
    time.sleep(settle)
    samples = []
    for _ in range(n):
        samples.append(rss_bytes(pid))
        time.sleep(0.05)
    return sorted(samples)[len(samples) // 2]


def measure(pid: int, run: Callable[[], Result]) -> Result:
    before = rss_bytes(pid)
    hwm_ok = reset_hwm(pid)
    t0 = time.monotonic()
    with Sampler(pid) as sampler:
        res = run()
    res.seconds = time.monotonic() - t0
    res.rss_before = before
    res.peak_sampled = max(sampler.samples) if sampler.samples else 0
    res.samples = len(sampler.samples)
    if hwm_ok:
        res.hwm = rss_bytes(pid, "VmHWM")
    return res


# -- main ------------------------------------------------------------------------------------


def mb(n: float) -> str:
    return f"{n / MB:.1f}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--size-mib", type=int, default=100, help="transfer size in MiB (default 100)")
    p.add_argument("--limit-mb", type=float, default=20.0, help="allowed RSS growth (default 20)")
    p.add_argument("--slow-rate-mb", type=float, default=40.0, help="slow reader speed, MB/s")
    p.add_argument(
        "--server-log-level",
        default="warning",
        choices=["debug", "info", "warning", "error"],
        help="the server's log level (default warning; its log is printed at the end)",
    )
    p.add_argument(
        "--control",
        action="store_true",
        help="also upload to a handler that buffers the whole body (await req.body()): a\n"
        "negative control that must exceed the limit; reported, not counted in the result",
    )
    args = p.parse_args()
    size = args.size_mib * 1024 * 1024
    limit = args.limit_mb * MB
    slow = args.slow_rate_mb * MB

    log_path = os.path.join(tempfile.gettempdir(), f"tophat-rss-server-{os.getpid()}.log")
    proc, port = start_server(log_path, args.server_log_level)

    def on_alarm(signum: int, frame: object) -> None:
        proc.kill()
        raise SystemExit(f"FAIL: the run took longer than {OVERALL_ALARM}s; server killed")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(OVERALL_ALARM)
    t_start = time.monotonic()
    results: list[Result] = []
    try:
        pid = proc.pid
        print(f"server pid {pid} on {HOST}:{port}, python {sys.version.split()[0]}, log {log_path}")
        warm_up(port)
        idle = idle_rss(pid)
        hwm_note = "VmHWM reset per transfer" if reset_hwm(pid) else "VmHWM reset not permitted"
        print(f"idle RSS after one warm-up request: {mb(idle)} MB ({hwm_note})")
        print(f"transfer size {size} bytes ({mb(size)} MB), limit peak - idle <= {mb(limit)} MB\n")

        plan = [
            (
                "download, chunked",
                lambda: download(port, "/download", size, chunked=True, rate=None),
            ),
            (
                "download, content-length",
                lambda: download(port, "/download-sized", size, chunked=False, rate=None),
            ),
            (
                f"download, chunked, client at {args.slow_rate_mb:g} MB/s",
                lambda: download(port, "/download", size, chunked=True, rate=slow),
            ),
            ("upload, content-length", lambda: upload(port, "/upload", size, chunked=False)),
            ("upload, chunked", lambda: upload(port, "/upload", size, chunked=True)),
            (
                "upload, content-length, slow handler",
                lambda: upload(port, "/upload-slow", size, chunked=False),
            ),
        ]
        plan += [
            (
                "download, client hangs up after 10 MiB",
                lambda: aborted_download(port, size, 10 * 1024 * 1024),
            ),
            (
                "upload, client hangs up after 10 MiB",
                lambda: aborted_upload(port, size, 10 * 1024 * 1024),
            ),
        ]
        if args.control:
            plan.append(
                (
                    "CONTROL: upload to await req.body()",
                    lambda: upload(port, "/upload-buffered", size, chunked=False),
                )
            )
        labels = []
        for label, run in plan:
            res = measure(pid, run)
            labels.append(label)
            results.append(res)
            if proc.poll() is not None:
                print(f"server exited with {proc.returncode} during {label!r}")
                break
        after = idle_rss(pid, settle=0.5)
    finally:
        signal.alarm(0)
        code = stop_process(proc)

    # -- report --------------------------------------------------------------------------------
    hdr = (
        f"{'transfer':<44} {'request':<22} {'bytes ok':>8} {'secs':>5} {'MB/s':>6} "
        f"{'idle':>6} {'peak':>6} {'delta':>6} {'samples':>7}  result"
    )
    print(hdr)
    print("-" * len(hdr))
    failed = False
    for label, res in zip(labels, results, strict=False):
        delta = res.peak - idle
        passed = res.ok and delta <= limit
        control = label.startswith("CONTROL")
        if control:
            # The control must be caught: it passes when it exceeds the limit.
            passed = res.ok and delta > limit
        failed |= not passed
        rate = res.got / res.seconds / MB if res.seconds else 0.0
        why = "" if res.ok else "  (bytes wrong)"
        print(
            f"{label:<44} {res.name:<22} {'yes' if res.ok else 'NO':>8} {res.seconds:>5.1f} "
            f"{rate:>6.0f} {mb(idle):>6} {mb(res.peak):>6} {mb(delta):>6} {res.samples:>7}  "
            f"{'PASS' if passed else 'FAIL'}{why}"
            + ("  (control: over the limit, as it must be)" if control and passed else "")
        )
    print("-" * len(hdr))
    print("RSS in MB (10^6 bytes); peak = max(50 ms samples, VmHWM since the transfer began)")
    for label, res in zip(labels, results, strict=False):
        hwm = "n/a" if res.hwm is None else mb(res.hwm)
        print(
            f"  {label}: {res.detail}; rss before {mb(res.rss_before)}, "
            f"sampled peak {mb(res.peak_sampled)}, VmHWM {hwm}"
        )
    print(f"idle RSS after all transfers: {mb(after)} MB (retained {mb(after - idle)} MB)")
    if len(results) < len(plan):
        failed = True
        print("FAIL: not every transfer ran")

    with open(log_path, "rb") as f:
        log_text = f.read().decode("utf-8", "replace")
    bad_lines = [ln for ln in log_text.splitlines() if "ERROR" in ln or "Traceback" in ln]
    if log_text.strip():
        print(f"server log ({log_path}):")
        for ln in log_text.splitlines()[:40]:
            print("  | " + ln)
    if bad_lines:
        failed = True
        print(f"FAIL: the server logged {len(bad_lines)} error line(s)")
    print(f"server exit status after SIGTERM: {code}")
    if code != 0:
        failed = True
        print("FAIL: the server did not stop cleanly on SIGTERM")
    print(f"total time {time.monotonic() - t_start:.1f}s")
    print("RESULT:", "FAIL" if failed else "PASS")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
