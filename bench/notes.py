"""The notes API (examples/notes) on tophat against the same API on Starlette + uvicorn.

    python3 bench/notes.py                          # 3 interleaved rounds x 3 s a cell, ~1 min;
                                                    # appends its section to bench/RESULTS.md
    python3 bench/notes.py --seconds 1 --rounds 1 --out -     # a quick look, nothing written

Both apps serve one SQLite file with one schema: tophat's ``examples.notes:app`` (through its
CLI) makes and migrates it, then ``bench/perf_apps/notes_starlette.py`` (the same routes,
written the usual Starlette way: SessionMiddleware, GZipMiddleware, sqlite3 on one thread)
serves it under uvicorn with httptools and uvloop. One user with 100 notes is seeded through
the tophat app; each server logs that user in through its own ``POST /api/login``, and its
login cookie goes with every request. The two tests:

* ``GET /api/notes?limit=20``: session check, user lookup, one page of notes as JSON;
* ``POST /api/notes``: the same checks, a JSON body validated, one INSERT, 201 with the note.

Servers: tophat fast (``--runtime uvloop --parser httptools``, the pair uvicorn runs), tophat
default (asyncio, h11), and Starlette under uvicorn (httptools, uvloop). Each server is its own
process (bench/.venv-perf's python, see perf.py) pinned to CPU 0 with taskset; wrk (-t1 -c32,
keep-alive) to CPU 1. Every cell gets a 1 s warm-up, then R rounds of D seconds, the order of
the cells rotating each round. Before the load, each server's answers are checked: the same
first page (compared as JSON) from both frameworks, a 201 with ``Location`` and ``ETag`` for a
POST. Reported per cell: median requests/s (min-max over the rounds) and requests per
CPU-second of the server process (steadier when the machine is shared); ratios against
Starlette, per round too. Compare ratios within one run only.

The exit status never depends on speed: 0 when every measurement ran, 1 when a server failed
or answered wrong, 2 when bench/.venv-perf or wrk is missing.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

from _proc import exchange_once, stop_process

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PY = os.path.join(HERE, ".venv-perf", "bin", "python")
RESULTS = os.path.join(HERE, "RESULTS.md")
HOST = "127.0.0.1"
CONNS = 32
USER, PASSWORD = "bench_user", "a bench password"
SEED_NOTES = 100
LOREM = (
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor "
    "incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud "
    "exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat."
)
NEW_NOTE = json.dumps({"title": "a new note", "body": LOREM})
BEGIN, END = "<!-- bench/notes.py: begin -->", "<!-- bench/notes.py: end -->"
EN_DASH, TIMES = "\u2013", "\u00d7"


@dataclass
class Server:
    key: str
    label: str
    argv: list[str]  # "{port}" is replaced
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log: str = ""
    cookie: str = ""


@dataclass
class Cell:
    server: Server
    test: str  # "list" | "create"
    rps: list[float] = field(default_factory=list)
    per_cpu: list[float] = field(default_factory=list)


def servers(py: str) -> list[Server]:
    def tophat(key: str, label: str, runtime: str, parser: str) -> Server:
        argv = [py, "-m", "tophat", "examples.notes:app", "--host", HOST, "--port", "{port}"]
        argv += ["--runtime", runtime, "--parser", parser, "--log-level", "warning"]
        return Server(key, label, argv)

    uvicorn = [py, "-m", "uvicorn", "bench.perf_apps.notes_starlette:app", "--host", HOST]
    uvicorn += ["--port", "{port}", "--http", "httptools", "--loop", "uvloop"]
    uvicorn += ["--log-level", "warning", "--no-access-log", "--no-server-header"]
    return [
        tophat("tophat-fast", "tophat fast (uvloop, httptools)", "uvloop", "httptools"),
        tophat("tophat", "tophat default (asyncio, h11)", "asyncio", "h11"),
        Server("starlette", "Starlette (uvicorn httptools+uvloop)", uvicorn),
    ]


BASELINE = "starlette"
TESTS = {"list": "GET /api/notes?limit=20", "create": "POST /api/notes"}


# == talking to a server ==========================================================================


def request(
    port: int, method: str, path: str, *, cookie: str = "", body: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request on its own connection: (status, headers (lower-case names), body)."""
    head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n"
    head += "Accept: application/json\r\n"
    if cookie:
        head += f"Cookie: {cookie}\r\n"
    data = b""
    if body is not None:
        data = body.encode()
        head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
    raw = exchange_once(HOST, port, head.encode() + b"\r\n" + data, 10.0)
    raw_head, _, rest = raw.partition(b"\r\n\r\n")
    lines = raw_head.decode("latin-1").split("\r\n")
    fields: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "set-cookie" and name in fields:  # several: one a line
            fields[name] += "\n" + value.strip()
        else:
            fields.setdefault(name, value.strip())
    if fields.get("transfer-encoding") == "chunked":
        rest = _unchunk(rest)
    status = int(lines[0].split(" ")[1]) if lines[0].startswith("HTTP/") else 0
    return status, fields, rest


def _unchunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2 :]
    return out


def cookie_of(fields: dict[str, str]) -> str:
    """``name=value`` of the response's login cookie (the one set with a value)."""
    for line in fields.get("set-cookie", "").splitlines():
        pair = line.split(";", 1)[0].strip()
        if pair.partition("=")[2].strip('"'):
            return pair
    return ""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start(s: Server, env: dict[str, str], pin: list[str], logdir: str) -> None:
    s.port = free_port()
    s.log = os.path.join(logdir, f"{s.key}.log")
    argv = [a.replace("{port}", str(s.port)) for a in s.argv]
    with open(s.log, "wb") as log:
        s.proc = subprocess.Popen(
            [*pin, *argv],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if s.proc.poll() is not None:
            raise RuntimeError(f"{s.key} exited at start: {tail(s)}")
        with contextlib.suppress(OSError):
            if request(s.port, "GET", "/api/me")[0] == 401:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{s.key} did not answer GET /api/me with 401 within 30 s: {tail(s)}")


def stop(s: Server) -> None:
    proc = s.proc
    if proc is not None:
        stop_process(proc, lambda: os.killpg(proc.pid, signal.SIGKILL))


def tail(s: Server) -> str:
    with contextlib.suppress(OSError), open(s.log, "rb") as f:
        lines = f.read().decode("utf-8", "replace").strip().splitlines()
        return " | ".join(lines[-3:]) or "(empty log)"
    return "(no log)"


# == seeding and checking =========================================================================


def seed(tophat: Server) -> None:
    status, head, body = request(
        tophat.port,
        "POST",
        "/api/signup",
        body=json.dumps({"username": USER, "password": PASSWORD}),
    )
    if status != 201:
        raise RuntimeError(f"signup answered {status}: {body[:200]!r}")
    cookie = cookie_of(head)
    for i in range(SEED_NOTES):
        note = json.dumps({"title": f"note {i}", "body": LOREM})
        status, _, body = request(tophat.port, "POST", "/api/notes", cookie=cookie, body=note)
        if status != 201:
            raise RuntimeError(f"creating note {i} answered {status}: {body[:200]!r}")


def log_in(s: Server) -> None:
    credentials = json.dumps({"username": USER, "password": PASSWORD})
    status, head, body = request(s.port, "POST", "/api/login", body=credentials)
    if status != 200 or not cookie_of(head):
        raise RuntimeError(f"{s.key}: login answered {status}: {body[:200]!r}")
    s.cookie = cookie_of(head)


def first_page(s: Server) -> list[object]:
    status, head, body = request(s.port, "GET", "/api/notes?limit=20", cookie=s.cookie)
    if status != 200 or not head.get("content-type", "").startswith("application/json"):
        raise RuntimeError(f"{s.key}: GET /api/notes answered {status}: {body[:200]!r}")
    page = json.loads(body)
    if len(page["items"]) != 20 or not page["next_cursor"]:
        raise RuntimeError(f"{s.key}: GET /api/notes: {len(page['items'])} items, expected 20")
    return list(page["items"])


def check_create(s: Server) -> None:
    status, head, body = request(s.port, "POST", "/api/notes", cookie=s.cookie, body=NEW_NOTE)
    note = json.loads(body) if status == 201 else {}
    if status != 201 or not head.get("etag") or head.get("location") != f"/api/notes/{note['id']}":
        raise RuntimeError(f"{s.key}: POST /api/notes answered {status}: {body[:200]!r}")
    if (note["title"], note["body"]) != ("a new note", LOREM):
        raise RuntimeError(f"{s.key}: POST /api/notes made {note!r}")


# == load =========================================================================================

_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_TOTAL = re.compile(r"(\d+) requests in ")


def wrk(cell: Cell, seconds: float, pin: list[str], script: str) -> tuple[float, int]:
    s = cell.server
    argv = [*pin, "wrk", "-t1", f"-c{CONNS}", f"-d{seconds:g}s", "-H", f"Cookie: {s.cookie}"]
    if cell.test == "create":
        argv += ["-s", script]
        url = f"http://{HOST}:{s.port}/api/notes"
    else:
        url = f"http://{HOST}:{s.port}/api/notes?limit=20"
    out = subprocess.run([*argv, url], capture_output=True, text=True, timeout=seconds + 30).stdout
    rps, total = _RPS.search(out), _TOTAL.search(out)
    if rps is None or total is None or "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk on {s.key}/{cell.test}:\n{out}")
    return float(rps.group(1)), int(total.group(1))


def versions(py: str) -> str:
    code = (
        "import importlib.metadata as m, sys\n"
        "names = ['tophat', 'starlette', 'uvicorn', 'httptools', 'uvloop', 'h11']\n"
        "print(', '.join(f'{n} {m.version(n)}' for n in names), '; Python', "
        "sys.version.split()[0])\n"
    )
    out = subprocess.run([py, "-c", code], capture_output=True, text=True, timeout=60)
    return out.stdout.strip() or out.stderr.strip()[-200:]


def git_head() -> str:
    out = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    )
    return out.stdout.strip() or "?"


# == the report ===================================================================================


def render(cells: list[Cell], *, rounds: int, seconds: float, pinned: bool, info: str) -> str:
    by = {(c.server.key, c.test): c for c in cells}
    now = datetime.datetime.now(datetime.timezone.utc)
    command = shlex.join(["python3", "bench/notes.py", *sys.argv[1:]])
    out = [
        BEGIN,
        "## The notes API: tophat vs Starlette (`bench/notes.py`)",
        "",
        f"Date: {now:%Y-%m-%d %H:%M UTC}, commit {git_head()}. Command: `{command}`.  ",
        f"`examples.notes:app` (tophat CLI) and `bench/perf_apps/notes_starlette.py` (uvicorn) on "
        f"one SQLite file, one user with {SEED_NOTES}+ notes and a login cookie; wrk -t1 "
        f"-c{CONNS}, 1 s warm-up a cell, {rounds} round(s) x {seconds:g} s, the order rotating; "
        + ("servers pinned to CPU 0, wrk to CPU 1.  " if pinned else "no CPU pinning.  "),
        f"{info}.  ",
        "req/CPU-s: requests per CPU-second of the server process. Ratios: tophat over "
        "Starlette, of the medians (req/s; req/CPU-s), then req/s per round.",
        "",
        f"| server | test | req/s median | min{EN_DASH}max | req/CPU-s | vs Starlette "
        "| per round |",
        "|---|---|--:|--:|--:|---|---|",
    ]
    for c in cells:
        rps, cpu = statistics.median(c.rps), statistics.median(c.per_cpu)
        base = by[(BASELINE, c.test)]
        if c.server.key == BASELINE:
            ratio, rounds_text = "(baseline)", ""
        else:
            r_rps = rps / statistics.median(base.rps)
            r_cpu = cpu / statistics.median(base.per_cpu)
            ratio = f"**{r_rps:.2f}{TIMES}**; {r_cpu:.2f}{TIMES}"
            rounds_text = " ".join(f"{a / b:.2f}" for a, b in zip(c.rps, base.rps, strict=True))
        out.append(
            f"| {c.server.label} | `{TESTS[c.test]}` | {rps:,.0f} | "
            f"{min(c.rps):,.0f}{EN_DASH}{max(c.rps):,.0f} | {cpu:,.0f} | {ratio} | "
            f"{rounds_text} |"
        )
    out += ["", END, ""]
    return "\n".join(out)


def write_section(path: str, section: str) -> None:
    """Put ``section`` in ``path``: in place of this bench's last one, else at the end."""
    text = ""
    with contextlib.suppress(FileNotFoundError), open(path) as f:
        text = f.read()
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section.rstrip("\n") + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    with open(path, "w") as f:
        f.write(text)


# == the run ======================================================================================


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=3.0, help="seconds per cell and round (3)")
    p.add_argument("--rounds", type=int, default=3, help="rounds (3)")
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    p.add_argument("--out", default=RESULTS, help="where the section goes ('-': only printed)")
    args = p.parse_args()
    if args.seconds <= 0 or args.rounds < 1:
        p.error("--seconds and --rounds must be positive")
    if not os.path.exists(PY) or shutil.which("wrk") is None:
        print("needs bench/.venv-perf (python3 bench/perf.py --setup) and wrk", file=sys.stderr)
        return 2
    pin_server: list[str] = []
    pin_wrk: list[str] = []
    pinned = not args.no_pin and bool(shutil.which("taskset"))
    if pinned and {0, 1} <= os.sched_getaffinity(0):
        pin_server, pin_wrk = ["taskset", "-c", "0"], ["taskset", "-c", "1"]
    else:
        pinned = False

    tmp = tempfile.mkdtemp(prefix="tophat-notes-bench-")
    env = {
        **os.environ,
        "PYTHONPATH": ROOT,
        "PYTHONDONTWRITEBYTECODE": "1",
        "NOTES_DATABASE_URL": f"sqlite:///{tmp}/notes.db",
        "NOTES_SECRET_KEY": secrets.token_urlsafe(32),
        "XDG_DATA_HOME": tmp,
    }
    env.pop("NOTES_ALLOWED_ORIGINS", None)
    script = os.path.join(tmp, "create.lua")
    with open(script, "w") as f:
        f.write(
            'wrk.method = "POST"\n'
            f"wrk.body = {json.dumps(NEW_NOTE)}\n"
            'wrk.headers["Content-Type"] = "application/json"\n'
        )
    all_servers = servers(PY)
    cells = [Cell(s, t) for t in TESTS for s in all_servers]
    load = os.getloadavg()[0]
    failed = ""
    try:
        # The tophat app first: it makes the file and its schema, and seeds the user.
        for s in all_servers:
            start(s, env, pin_server, tmp)
            if s is all_servers[0]:
                seed(s)
            log_in(s)
        pages = {s.key: first_page(s) for s in all_servers}
        for key, page in pages.items():
            if page != pages[BASELINE]:
                raise RuntimeError(f"{key} and {BASELINE} sent different first pages")
        for s in all_servers:
            check_create(s)
        for r in range(args.rounds):
            k = r * len(cells) // args.rounds
            for c in cells[k:] + cells[:k]:
                assert c.server.proc is not None
                if r == 0:
                    wrk(c, 1, pin_wrk, script)  # warm-up
                cpu0 = cpu_seconds(c.server.proc.pid)
                rps, total = wrk(c, args.seconds, pin_wrk, script)
                cpu = cpu_seconds(c.server.proc.pid) - cpu0
                c.rps.append(rps)
                c.per_cpu.append(total / cpu if cpu > 0 else float("nan"))
                if c.server.proc.poll() is not None:
                    raise RuntimeError(f"{c.server.key} died: {tail(c.server)}")
        for s in all_servers:  # still answering right after the load
            first_page(s)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        failed = str(exc)
    finally:
        for s in all_servers:
            stop(s)
    if failed:
        print(f"bench/notes.py failed: {failed}\nserver logs: {tmp}", file=sys.stderr)
        return 1
    info = f"Load average at start {load:.2f}; {versions(PY)}"
    section = render(cells, rounds=args.rounds, seconds=args.seconds, pinned=pinned, info=info)
    print(section)
    if args.out != "-":
        write_section(args.out, section)
        print(f"(written to {os.path.relpath(args.out)})")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
