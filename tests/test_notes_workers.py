"""examples/notes across worker processes (issue 16, acceptance 2), on SQLite and PostgreSQL.

``python -m tophat examples.notes:app --workers 2 --access-log`` in a child process. The
kernel spreads connections over the two workers (SO_REUSEPORT), so the tests learn which
worker answered a request from the access log: each request carries its own ``X-Request-ID``
and each worker's log lines start with ``[worker PID]``. They connect again, within a bound,
until both workers have been seen in the roles the test needs:

* a note created through one worker reaches an event stream held by the other;
* a logout through one worker revokes the cookie on the other (401 there at once).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import secrets
import selectors
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from notes_support import NotesDb, notes_backend, notes_db
from servers import CliServer, cli, free_port

from tophat import parsers as _parse

__all__ = ["notes_backend", "notes_db"]  # (fixtures, imported for pytest)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="--workers needs fork")

HOST = "127.0.0.1"
ROUNDS = 24  # connections tried to reach the other worker: (1/2)**24 to miss it by chance


@pytest.fixture
def parser() -> str:
    """Once, with the default parser (this overrides conftest's per-parser fixture)."""
    return _parse.AUTO


def read_until(srv: CliServer, done: Callable[[bytes], bool], timeout: float = 10) -> None:
    """Read the server's log until ``done(log)``."""
    assert srv.proc.stderr is not None
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(srv.proc.stderr, selectors.EVENT_READ)
        while not done(srv.stderr):
            left = deadline - time.monotonic()
            assert left > 0, srv.stderr[-2000:]
            if sel.select(left):
                data = os.read(srv.proc.stderr.fileno(), 65536)
                assert data, f"the server exited: {srv.stderr[-2000:]!r}"
                srv.stderr += data


@pytest.fixture
def server(
    notes_db: NotesDb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[CliServer]:
    for name, value in notes_db.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("NOTES_FILES_DIR", str(tmp_path / "files"))
    port = free_port()
    args = ("--workers", "2", "--port", str(port), "--access-log")
    with cli(*args, app="examples.notes:app") as srv:
        read_until(srv, lambda log: log.count(b"listening on") == 2, timeout=30)
        srv.port = port
        yield srv


def worker_of(srv: CliServer, request_id: str) -> int:
    """The pid of the worker whose access log line carries ``request_id``."""
    line = re.compile(rf"\[worker (\d+)\][^\n]*id={request_id}\n".encode())
    read_until(srv, lambda log: line.search(log) is not None)
    found = line.search(srv.stderr)
    assert found is not None
    return int(found.group(1))


def request(
    srv: CliServer,
    method: str,
    path: str,
    cookie: str | None = None,
    body: object = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes, int]:
    """One request on a new connection: status, headers, body and the worker that answered."""
    rid = secrets.token_hex(8)
    conn = http.client.HTTPConnection(HOST, srv.port, timeout=10)
    try:
        fields = {"x-request-id": rid, "accept": "application/json", **(headers or {})}
        if cookie is not None:
            fields["cookie"] = cookie
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            fields["content-type"] = "application/json"
        conn.request(method, path, body=data, headers=fields)
        resp = conn.getresponse()
        content = resp.read()
        got = {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()
    return resp.status, got, content, worker_of(srv, rid)


def sign_up(srv: CliServer, username: str) -> str:
    """The login cookie (``name=value``) of a new user."""
    status, headers, body, _ = request(
        srv, "POST", "/api/signup", body={"username": username, "password": "hunter2!!"}
    )
    assert status == 201, body
    return headers["set-cookie"].split(";", 1)[0]


class EventStream:
    """``GET /api/events`` held open on a connection of its own."""

    def __init__(self, srv: CliServer, cookie: str) -> None:
        self.request_id = secrets.token_hex(8)
        self.conn = http.client.HTTPConnection(HOST, srv.port, timeout=10)
        self.conn.request(
            "GET", "/api/events", headers={"cookie": cookie, "x-request-id": self.request_id}
        )
        self.resp = self.conn.getresponse()
        assert self.resp.status == 200
        assert self.resp.getheader("content-type", "").startswith("text/event-stream")
        assert self.next_event() == {"comment": "stream open"}

    def next_event(self) -> dict[str, str]:
        """The next event's fields (a comment as ``comment``)."""
        fields: dict[str, str] = {}
        while True:
            line = self.resp.readline().decode().rstrip("\n")
            if not line:
                if fields:
                    return fields
                continue
            name, _, value = line.partition(":")
            fields[name or "comment"] = value.removeprefix(" ")

    def close(self) -> None:
        self.conn.close()


def test_a_change_made_through_one_worker_reaches_a_stream_held_by_the_other(
    server: CliServer,
) -> None:
    cookie = sign_up(server, "ada")
    for _ in range(ROUNDS):
        stream = EventStream(server, cookie)
        try:
            status, _, body, writer = request(
                server, "POST", "/api/notes", cookie, {"title": "hello", "body": ""}
            )
            assert status == 201, body
            note_id = json.loads(body)["id"]
            event = stream.next_event()
            assert event == {"event": "created", "data": json.dumps({"id": note_id})}
        finally:
            stream.close()
        # The stream's own access log line comes when it ends: its worker.
        if worker_of(server, stream.request_id) != writer:
            return
    pytest.fail(f"no stream landed on the other worker in {ROUNDS} tries")


def test_a_logout_through_one_worker_revokes_the_cookie_on_the_other(server: CliServer) -> None:
    cookie = sign_up(server, "ada")
    seen: set[int] = set()
    for _ in range(ROUNDS):
        status, _, _, pid = request(server, "GET", "/api/me", cookie)
        assert status == 200
        seen.add(pid)
        if len(seen) == 2:
            break
    assert len(seen) == 2, "both workers accept the cookie before the logout"
    status, _, _, logout_pid = request(server, "POST", "/api/logout", cookie)
    assert status == 204
    for _ in range(ROUNDS):
        status, _, _, pid = request(server, "GET", "/api/me", cookie)
        assert status == 401, pid
        if pid != logout_pid:
            return
    pytest.fail(f"no request reached the other worker in {ROUNDS} tries")
