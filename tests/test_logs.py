"""Logs that explain themselves (issue 13 item 4): an unhandled error names the handler the
router chose, with the method and path; a Glitch's cause is logged with its traceback; a refused
CORS preflight says why; the start-up and shutdown lines say what a user needs to know.

In-memory requests through ``tophat.testing`` and ``tophat.asgi``, logs read with ``caplog``;
the start-up lines from a real ``python -m tophat`` (or a script calling ``tophat.serve``) in a
child process, read from its stderr.
"""

from __future__ import annotations

import logging
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from servers import HOST, RUNTIMES, CliServer, cli, free_port

from tophat import Glitch, Request, ResponseWriter, ResponseWritten
from tophat.asgi import to_asgi
from tophat.glitch import awaiting, call
from tophat.middleware import chain
from tophat.middleware.cors import cors
from tophat.router import Router
from tophat.server.exchange import for_log
from tophat.testing import AsyncTestClient


def errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "tophat.error"]


async def asgi_call(app: Any, scope: dict[str, Any]) -> list[dict[str, Any]]:
    """Run ``app`` under ``tophat.asgi`` for one bodiless request; the messages it sent."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    with anyio.fail_after(5):
        await to_asgi(app)(scope, receive, send)
    return sent


# -- an unhandled error names the route, the handler, the method and the path -----------------


async def get_user(req: Request, w: ResponseWriter) -> ResponseWritten:
    raise RuntimeError("database on fire")


async def forgetful(req: Request, w: ResponseWriter) -> ResponseWritten:
    return None  # type: ignore[return-value]


async def static_files(req: Request, w: ResponseWriter) -> ResponseWritten:
    raise RuntimeError("disk on fire")


def users_app() -> Any:
    """The user's router behind CORS: the outermost callable is cors' closure."""
    router = Router()
    router.get("/users/:id", get_user)
    router.get("/forgetful", forgetful)
    return chain(cors(allow_origins=["https://app.example"]))(router)


GET_USER = f"{__name__}.get_user"


async def test_unhandled_error_names_the_handler_route_method_and_path(
    caplog: pytest.LogCaptureFixture,
) -> None:
    resp = await AsyncTestClient(users_app()).get("/users/42?token=secret")
    assert resp.status == 500
    [record] = errors(caplog)
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert record.getMessage() == (
        f"unhandled error in endpoint {GET_USER} for GET /users/42 (route /users/:id)"
    )
    # Not the outermost callable, and never the query string (it may carry secrets).
    assert "cors" not in record.getMessage() and "secret" not in record.getMessage()


async def test_endpoint_returning_without_sending_names_its_route(
    caplog: pytest.LogCaptureFixture,
) -> None:
    resp = await AsyncTestClient(users_app()).get("/forgetful")
    assert resp.status == 500
    [record] = errors(caplog)
    assert f"{__name__}.forgetful for GET /forgetful (route /forgetful)" in record.getMessage()


async def test_under_nested_mounts_the_innermost_route_is_named_with_the_full_pattern(
    caplog: pytest.LogCaptureFixture,
) -> None:
    inner = Router()
    inner.get("/users/:id", get_user)
    middle = Router()
    middle.mount("/v1", chain(cors(allow_origins="*"))(inner))
    middle.mount("/static", static_files)
    outer = Router()
    outer.mount("/api", middle)
    client = AsyncTestClient(outer)

    assert (await client.get("/api/v1/users/7")).status == 500
    assert (await client.get("/api/static/logo.png")).status == 500
    first, second = (r.getMessage() for r in errors(caplog))
    assert first == (
        f"unhandled error in endpoint {GET_USER} for GET /api/v1/users/7 (route /api/v1/users/:id)"
    )
    assert second == (
        f"unhandled error in endpoint {__name__}.static_files for GET /api/static/logo.png "
        "(route /api/static/*)"
    )


async def test_without_a_router_the_endpoint_itself_is_named(
    caplog: pytest.LogCaptureFixture,
) -> None:
    resp = await AsyncTestClient(get_user).request("DELETE", "/x/%2F")
    assert resp.status == 500
    [record] = errors(caplog)
    assert record.getMessage() == f"unhandled error in endpoint {GET_USER} for DELETE /x/%2F"


async def test_the_logged_path_is_bounded(caplog: pytest.LogCaptureFixture) -> None:
    long_path = "/users/" + "9" * 5000
    assert (await AsyncTestClient(users_app()).get(long_path)).status == 500
    [record] = errors(caplog)
    assert len(record.getMessage()) < 400
    assert f"GET {long_path[:200]}... (route /users/:id)" in record.getMessage()


def test_client_text_in_a_log_line_has_no_raw_control_characters() -> None:
    assert for_log("/a\r\nINFO forged\x1b[31m") == "/a\\r\\nINFO forged\\x1b[31m"
    assert for_log("/ünïcode/ok") == "/ünïcode/ok"
    assert for_log("x" * 300, 10) == "xxxxxxxxxx..."


async def test_asgi_error_log_names_the_route_too(caplog: pytest.LogCaptureFixture) -> None:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/users/42\x1b",  # (ASGI paths are decoded: anything can be in them)
        "raw_path": None,
        "query_string": b"",
        "root_path": "/app",
        "headers": [(b"host", b"testserver")],
    }
    router = Router()
    router.get("/users/:id", get_user)
    sent = await asgi_call(chain(cors(allow_origins="*"))(router), scope)
    assert sent[0]["status"] == 500
    [record] = errors(caplog)
    assert record.getMessage() == (
        f"unhandled error in endpoint {GET_USER} for GET /app/users/42%1B (route /users/:id)"
    )


# -- a Glitch's cause is logged with its traceback ----------------------------------------------


async def parse_id(req: Request, w: ResponseWriter) -> ResponseWritten:
    raw = req.params["id"]
    try:
        uid = int(raw)
    except ValueError as exc:
        raise Glitch.bad_request("user id must be a number") from exc
    w.set_json({"id": uid})
    return await w.send()


async def parse_id_with_call(req: Request, w: ResponseWriter) -> ResponseWritten:
    uid = call(int, req.params["id"], status=400, message="bad id", errors=ValueError)
    w.set_json({"id": uid})
    return await w.send()


async def fetch_user(req: Request, w: ResponseWriter) -> ResponseWritten:
    async def db() -> str:
        raise OSError("connection refused")

    name = await awaiting(db(), 503, "database unavailable", errors=OSError)
    w.set_text(name)
    return await w.send()


def glitch_app() -> Router:
    router = Router()
    router.get("/raise/:id", parse_id)
    router.get("/call/:id", parse_id_with_call)
    router.get("/awaiting", fetch_user)
    return router


@pytest.mark.parametrize(
    ("path", "status", "handler", "text", "cause"),
    [
        ("/raise/x", 400, "parse_id", "400 user id must be a number", ValueError),
        ("/call/x", 400, "parse_id_with_call", "400 bad id", ValueError),
    ],
)
async def test_a_4xx_glitch_logs_its_cause_at_debug_with_the_traceback(
    caplog: pytest.LogCaptureFixture,
    path: str,
    status: int,
    handler: str,
    text: str,
    cause: type[BaseException],
) -> None:
    with caplog.at_level(logging.DEBUG, logger="tophat"):
        resp = await AsyncTestClient(glitch_app()).get(path)
    assert resp.status == status
    assert errors(caplog) == []  # a client's mistake is no error of the server's
    [record] = [r for r in caplog.records if r.name == "tophat.connection"]
    assert record.levelno == logging.DEBUG
    assert record.exc_info is not None and isinstance(record.exc_info[1], cause)
    assert record.exc_info[2] is not None  # the traceback, to the line that failed
    message = record.getMessage()
    assert message.startswith(f"{text} from endpoint {__name__}.{handler} for GET {path}")
    assert "caused by ValueError: invalid literal for int()" in message


async def test_a_5xx_glitch_logs_its_cause_at_error_with_the_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    resp = await AsyncTestClient(glitch_app()).get("/awaiting")
    assert resp.status == 503
    [record] = errors(caplog)
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None and isinstance(record.exc_info[1], OSError)
    assert record.getMessage() == (
        f"503 database unavailable from endpoint {__name__}.fetch_user for GET /awaiting "
        "(route /awaiting), caused by OSError: connection refused"
    )


async def test_a_4xx_glitch_is_silent_unless_debug_is_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="tophat"):
        assert (await AsyncTestClient(glitch_app()).get("/raise/x")).status == 400
    assert caplog.records == []


# -- a refused CORS preflight says why ----------------------------------------------------------

APP = "https://app.example"


def cors_app(**config: Any) -> Any:
    async def items(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.set_text("items")
        return await w.send()

    router = Router()
    router.post("/items", items)
    return chain(cors(**config))(router)


async def preflight(app: Any, origin: str, method: str, headers: str | None = None) -> int:
    h = {"origin": origin, "access-control-request-method": method}
    if headers is not None:
        h["access-control-request-headers"] = headers
    return (await AsyncTestClient(app).request("OPTIONS", "/items", headers=h)).status


def cors_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "tophat.cors"]


@pytest.mark.parametrize(
    ("origin", "method", "headers", "why"),
    [
        (
            APP,
            "POST",
            "content-type",
            "request header 'content-type' not in allow_headers (none)",
        ),
        (
            APP,
            "POST",
            "Content-Type, Authorization, x-ok",
            "request headers 'content-type', 'authorization' not in allow_headers (x-ok)",
        ),
        (
            "https://evil.example",
            "GET",
            None,
            "origin 'https://evil.example' is not allowed (allow_origins)",
        ),
        (APP, "DELETE", None, "method 'DELETE' is not in allow_methods (GET, HEAD, POST)"),
        (
            "https://evil.example",
            "DELETE",
            None,
            "origin 'https://evil.example' is not allowed (allow_origins); "
            "method 'DELETE' is not in allow_methods (GET, HEAD, POST)",
        ),
    ],
    ids=["json-content-type", "several-headers", "origin", "method", "origin-and-method"],
)
async def test_a_refused_preflight_logs_why_once_at_info(
    caplog: pytest.LogCaptureFixture, origin: str, method: str, headers: str | None, why: str
) -> None:
    app = cors_app(allow_origins=[APP], allow_headers=["x-ok"] if "x-ok" in why else ())
    with caplog.at_level(logging.INFO, logger="tophat"):
        assert await preflight(app, origin, method, headers) == 403
    assert cors_lines(caplog) == [f"CORS preflight for '/items' refused: {why}"]
    [record] = [r for r in caplog.records if r.name == "tophat.cors"]
    assert record.levelno == logging.INFO


async def test_an_allowed_preflight_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    app = cors_app(allow_origins=[APP], allow_headers=["content-type", "authorization"])
    with caplog.at_level(logging.DEBUG, logger="tophat"):
        assert await preflight(app, APP, "POST", "content-type, authorization") == 204
    assert cors_lines(caplog) == []


async def test_the_refusal_log_escapes_and_bounds_what_the_client_sent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    long_origin = "https://" + "a" * 500 + ".example"
    app = cors_app(allow_origins=[APP])
    with caplog.at_level(logging.INFO, logger="tophat"):
        assert await preflight(app, long_origin, "GET") == 403
    [line] = cors_lines(caplog)
    assert len(line) < 300 and "aaaa...'" in line


async def test_the_refusal_log_escapes_control_characters(caplog: pytest.LogCaptureFixture) -> None:
    # Through ASGI: the ASGI server, not tophat's parser, vetted the header values.
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "OPTIONS",
        "scheme": "http",
        "path": "/items",
        "query_string": b"",
        "headers": [
            (b"host", b"testserver"),
            (b"origin", b"https://x\r\nINFO forged\x1b[31m.example"),
            (b"access-control-request-method", b"GET"),
        ],
    }
    with caplog.at_level(logging.INFO, logger="tophat"):
        sent = await asgi_call(cors_app(allow_origins=[APP]), scope)
    assert sent[0]["status"] == 403
    [line] = cors_lines(caplog)
    assert "origin 'https://x\\r\\nINFO forged\\x1b[31m.example' is not allowed" in line
    assert not any(c in line for c in "\r\n\x1b")


# -- start-up and shutdown lines (the CLI and tophat.serve() in a child process) ----------------

ROOT = Path(__file__).resolve().parent.parent
LISTENING = re.compile(
    r"tophat listening on http://127\.0\.0\.1:(\d+) "
    r"\((asyncio|uvloop|trio), (h11|httptools) parser, 1 worker, pid (\d+)\); "
    r"press Ctrl\+C to stop"
)


def get_request() -> bytes:
    return b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.slow
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_listening_line_says_address_runtime_parser_workers_pid_and_how_to_stop(
    runtime: str, parser: str
) -> None:
    port = free_port()
    with cli("--port", str(port), "--runtime", runtime, "--parser", parser) as server:
        [line] = [ln for ln in server.stderr.decode().splitlines() if "listening" in ln]
        found = LISTENING.search(line)
        assert found is not None, line
        assert found.groups() == (str(port), runtime, parser, str(server.proc.pid))
        server.proc.send_signal(signal.SIGINT)
        assert server.proc.wait(timeout=5) == 0
        assert "shutting down (no request in flight)" in server.rest_of_stderr()


@pytest.mark.slow
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_shutdown_line_says_how_long_it_waits_and_how_to_force_the_exit(
    runtime: str, parser: str
) -> None:
    port = free_port()
    args = ("--port", str(port), "--runtime", runtime, "--parser", parser)
    with (
        cli(*args, app="tests.servers:answer_when_stopping") as server,
        socket.create_connection((HOST, port), timeout=5) as s,
    ):
        s.sendall(get_request())
        server.wait_for(b"request in")
        server.proc.send_signal(signal.SIGINT)
        server.wait_for(b"now\n")
        assert (
            "shutting down: waiting up to 10s for 1 request; press Ctrl+C again to stop now"
            in server.stderr.decode()
        )
        assert server.proc.wait(timeout=5) == 0


def wait_for_count(server: CliServer, text: bytes, count: int, timeout: float = 10) -> None:
    """Read the server's log until ``text`` appears ``count`` times in it."""
    deadline = time.monotonic() + timeout
    while server.stderr.count(text) < count:
        left = deadline - time.monotonic()
        assert left > 0, f"{text!r} not logged {count} times: {server.stderr!r}"
        assert server.proc.stderr is not None
        with selectors.DefaultSelector() as sel:
            sel.register(server.proc.stderr, selectors.EVENT_READ)
            if sel.select(left):
                data = os.read(server.proc.stderr.fileno(), 65536)
                assert data, f"server exited: {server.stderr!r}"
                server.stderr += data


@pytest.mark.slow
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_each_worker_line_carries_its_pid(runtime: str, parser: str) -> None:
    port = free_port()
    args = ("--port", str(port), "--runtime", runtime, "--parser", parser)
    args += ("--workers", "2", "--access-log")
    with cli(*args) as server:
        wait_for_count(server, b"tophat listening on", 2)
        with socket.create_connection((HOST, port), timeout=5) as s:
            s.sendall(get_request())
            assert s.recv(65536).startswith(b"HTTP/1.1 200")
        wait_for_count(server, b'"GET / HTTP/1.1" 200', 1)
        server.proc.send_signal(signal.SIGINT)
        assert server.proc.wait(timeout=10) == 0
        text = server.rest_of_stderr()
    assert re.search(r"supervisor \d+: starting 2 \w+ workers \(.*\); press Ctrl\+C to stop", text)
    assert (
        "supervisor: stopping 2 workers: waiting up to 15s; press Ctrl+C again to stop now" in text
    )
    pids, access_pid = set(), None
    for line in text.splitlines():
        if "tophat listening on" in line:
            found = re.search(
                r"\[worker (\d+)\] tophat listening on http://127\.0\.0\.1:\d+ "
                rf"\({runtime}, {parser} parser, one of 2 workers, pid (\d+)\)$",
                line,
            )
            assert found is not None and found[1] == found[2], line
            pids.add(found[1])
        elif " tophat.access: " in line:
            found = re.search(r"tophat\.access: \[worker (\d+)\] 127\.0\.0\.1:", line)
            assert found is not None, line
            access_pid = found[1]
    assert len(pids) == 2 and access_pid in pids


SCRIPT = """
import sys
import tophat
from examples.hello import app
{setup}
tophat.serve(app, "127.0.0.1", int(sys.argv[1]))
"""


def run_script(tmp_path: Path, setup: str) -> str:
    """A user's script calling ``tophat.serve``: its stderr from start to SIGINT."""
    script = tmp_path / "script.py"
    script.write_text(SCRIPT.format(setup=textwrap.dedent(setup)))
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(script), str(port)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"},
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
    )
    server = CliServer(proc)
    try:
        server.wait_for(b"Ctrl+C to stop")
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=5)
        return server.rest_of_stderr()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        assert proc.stderr is not None
        proc.stderr.close()


@pytest.mark.slow
def test_serve_from_a_script_with_no_logging_configured_logs_its_listening_line(
    tmp_path: Path,
) -> None:
    # (ensure_handler twice: tophat.serve() called again in one process adds no second handler)
    text = run_script(tmp_path, "from tophat.runtime.logs import ensure_handler; ensure_handler()")
    [line] = [ln for ln in text.splitlines() if "listening" in ln]
    assert re.fullmatch(r"\S+ \S+ INFO tophat\.server: " + LISTENING.pattern, line), line
    assert "stopped" in text


@pytest.mark.slow
def test_serve_leaves_the_users_logging_configuration_alone(tmp_path: Path) -> None:
    text = run_script(
        tmp_path, 'import logging; logging.basicConfig(level="INFO", format="USER %(message)s")'
    )
    [line] = [ln for ln in text.splitlines() if "listening" in ln]
    assert line.startswith("USER tophat listening on http://127.0.0.1:")
