"""examples/notes' ``GET /api/events`` (events.py) on a real server, on SQLite and PostgreSQL.

The app runs its lifespan (database, change feed) around a server on the test's runtime
(asyncio, uvloop and trio with SQLite; asyncio and uvloop with PostgreSQL). Changes are made
through an in-process client of the same app; the stream is read off a socket. Proven here:
the events of each change (created, updated, deleted, files) with the note's id, only to the
streams of that note's owner and to every one of them; 401 without a login; the stream ends
cleanly on shutdown (a final chunk, at once), when its client leaves (no stream left in the
hub) and, at the next keep-alive, when its session was revoked. The cross-worker delivery is
in test_notes_workers.py.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import h11
import pytest
from notes_support import NotesDb, notes_backend, notes_db, parser, runtimes_and_databases
from servers import Client, running, runtime_of

from examples.notes import Notes, create_app, events
from examples.notes.events import EventFeed
from tophat import Request, ResponseWriter, ResponseWritten, ServerSentEvent
from tophat.testing import AsyncTestClient

__all__ = ["notes_backend", "notes_db", "parser"]  # (fixtures, imported for pytest)

pytest_generate_tests = runtimes_and_databases


@pytest.fixture
async def app(
    notes_db: NotesDb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, anyio_backend: object
) -> AsyncIterator[Notes]:
    monkeypatch.setenv("NOTES_FILES_DIR", str(tmp_path / "files"))
    notes = create_app(notes_db.settings())
    async with notes.lifespan():
        yield notes


def new_client(notes: Notes) -> AsyncTestClient:
    return AsyncTestClient(
        notes.app, base_url="https://testserver", headers={"accept": "application/json"}
    )


async def signed_up(notes: Notes, username: str) -> tuple[AsyncTestClient, str]:
    """A client logged in as a new user, and its login cookie as ``name=value``."""
    client = new_client(notes)
    resp = await client.post("/api/signup", json={"username": username, "password": "hunter2!!"})
    assert resp.status == 201, resp.text
    return client, (resp.headers.get("set-cookie") or "").split(";", 1)[0]


class Stream:
    """``GET /api/events`` on a socket of its own, read event by event."""

    def __init__(self, sock: Client) -> None:
        self.sock = sock
        self.buffer = b""
        self.ended = False

    @classmethod
    async def open(cls, port: int, cookie: str | None) -> tuple[Stream, h11.Response]:
        sock = await Client.connect(port)
        headers = b"cookie: " + cookie.encode() + b"\r\n" if cookie else b""
        await sock.send(b"GET /api/events HTTP/1.1\r\nhost: t\r\n" + headers + b"\r\n")
        return cls(sock), await sock.head()

    async def event(self, timeout: float = 5) -> dict[str, str] | None:
        """The next event's fields (a comment as ``comment``), None at the stream's end."""
        with anyio.fail_after(timeout):
            while b"\n\n" not in self.buffer:
                piece = await self.sock.piece()
                if piece is None:
                    self.ended = True
                    return None
                self.buffer += piece
        raw, self.buffer = self.buffer.split(b"\n\n", 1)
        fields: dict[str, str] = {}
        for line in raw.decode().split("\n"):
            name, _, value = line.partition(":")
            fields[name or "comment"] = value.removeprefix(" ")
        return fields

    async def close(self) -> None:
        await self.sock.close()


def change(kind: str, note_id: int) -> dict[str, str]:
    return {"event": kind, "data": json.dumps({"id": note_id})}


@pytest.fixture
async def port(app: Notes, anyio_backend: object) -> AsyncIterator[int]:
    async with running(runtime_of(anyio_backend), app.app) as server:
        yield server.port


async def feed_of(notes: Notes) -> EventFeed:
    """The app's feed, as its routes reach it (``req.data``), through a route of the test's."""
    found: list[EventFeed] = []

    async def grab(req: Request, w: ResponseWriter) -> ResponseWritten:
        found.append(req.data(EventFeed))
        w.set_status(204)
        return await w.send()

    notes.router.get("/test/feed", grab)
    assert (await new_client(notes).get("/test/feed")).status == 204
    return found[0]


async def test_each_change_reaches_every_stream_of_its_owner_and_no_other(
    app: Notes, port: int
) -> None:
    ada, ada_cookie = await signed_up(app, "ada")
    _, bob_cookie = await signed_up(app, "bob")
    first, head = await Stream.open(port, ada_cookie)
    assert head.status_code == 200
    assert dict(head.headers)[b"content-type"] == b"text/event-stream; charset=utf-8"
    assert await first.event() == {"comment": "stream open"}
    second, _ = await Stream.open(port, ada_cookie)
    assert await second.event() == {"comment": "stream open"}
    bobs, _ = await Stream.open(port, bob_cookie)
    assert await bobs.event() == {"comment": "stream open"}

    created = await ada.post("/api/notes", json={"title": "one", "body": ""})
    note = created.json()["id"]
    patched = await ada.patch(
        f"/api/notes/{note}", json={"title": "two"}, headers={"if-match": created.headers["etag"]}
    )
    assert patched.status == 200
    deleted = await ada.delete(f"/api/notes/{note}", headers={"if-match": patched.headers["etag"]})
    assert deleted.status == 204
    for stream in (first, second):
        assert await stream.event() == change("created", note)
        assert await stream.event() == change("updated", note)
        assert await stream.event() == change("deleted", note)
    # Bob heard nothing: his stream has nothing to read within a poll and more.
    with pytest.raises(TimeoutError):
        await bobs.event(timeout=0.6)
    for stream in (first, second, bobs):
        await stream.close()


async def test_a_stream_gets_only_the_changes_made_after_it_opened(app: Notes, port: int) -> None:
    # SQLite: changes reach the workers by a poll every 200 ms, so changes made just before a
    # stream opened may still be in the next poll; the page has read those already (a list it
    # loaded first), and they must not come again (a page of 20 grew to 23 in CI).
    ada, cookie = await signed_up(app, "ada")
    before = [
        (await ada.post("/api/notes", json={"title": f"n{i}", "body": ""})).json()["id"]
        for i in range(3)
    ]
    stream, _ = await Stream.open(port, cookie)  # within the poll that will carry them
    assert await stream.event() == {"comment": "stream open"}
    after = (await ada.post("/api/notes", json={"title": "after", "body": ""})).json()["id"]
    assert await stream.event() == change("created", after), before
    await stream.close()


async def test_an_upload_is_a_files_event(app: Notes, port: int) -> None:
    ada, cookie = await signed_up(app, "ada")
    stream, _ = await Stream.open(port, cookie)
    assert await stream.event() == {"comment": "stream open"}
    created = await ada.post("/api/notes", json={"title": "one", "body": ""})
    note = created.json()["id"]
    assert await stream.event() == change("created", note)
    body = (
        b'--b\r\ncontent-disposition: form-data; name="file"; filename="a.txt"\r\n\r\n'
        b"hi\r\n--b--\r\n"
    )
    resp = await ada.post(
        f"/api/notes/{note}/files",
        content=body,
        headers={"content-type": "multipart/form-data; boundary=b"},
    )
    assert resp.status == 201, resp.text
    assert await stream.event() == change("files", note)
    assert (await ada.delete(f"/api/notes/{note}/files/a.txt")).status == 204
    assert await stream.event() == change("files", note)
    await stream.close()


async def test_without_a_login_the_stream_is_401(app: Notes, port: int) -> None:
    stream, head = await Stream.open(port, None)
    assert head.status_code == 401
    await stream.close()


async def test_streams_end_cleanly_and_at_once_on_shutdown(
    app: Notes, anyio_backend: object
) -> None:
    _, cookie = await signed_up(app, "ada")
    async with running(runtime_of(anyio_backend), app.app) as server:
        stream, _ = await Stream.open(server.port, cookie)
        assert await stream.event() == {"comment": "stream open"}
        started = time.monotonic()
        with anyio.fail_after(5):
            await server.shutdown(10)  # a stream that ignored shutdown would hold it 10 s
        assert time.monotonic() - started < 2
        assert await stream.event() is None  # the last chunk came: a clean end
        await stream.close()


async def test_a_client_that_leaves_leaves_no_stream_behind(app: Notes, port: int) -> None:
    _, cookie = await signed_up(app, "ada")
    feed = await feed_of(app)
    stream, _ = await Stream.open(port, cookie)
    assert await stream.event() == {"comment": "stream open"}
    assert len(feed.hub) == 1
    await stream.sock.reset()
    with anyio.fail_after(5):
        while len(feed.hub):
            await anyio.sleep(0.02)


async def test_a_stream_ends_at_its_next_keepalive_once_its_session_is_revoked(
    app: Notes, port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events, "KEEPALIVE", 0.3)
    ada, cookie = await signed_up(app, "ada")
    stream, _ = await Stream.open(port, cookie)
    assert await stream.event() == {"comment": "stream open"}
    assert await stream.event() == {"comment": "keep-alive"}  # still logged in
    assert (await ada.post("/api/logout")).status == 204
    while (event := await stream.event()) is not None:
        assert event == {"comment": "keep-alive"}  # (one may have been on its way)
    await stream.close()


async def test_the_postgresql_listener_comes_back_after_its_connection_is_killed(
    app: Notes, notes_db: NotesDb, caplog: pytest.LogCaptureFixture
) -> None:
    import psycopg

    caplog.set_level(logging.INFO, logger="examples.notes")
    feed = await feed_of(app)
    stream = feed.hub.add(7)
    try:
        await feed.publish(7, "created", 1)
        with anyio.fail_after(5):
            await stream.wakeup.wait()
        assert stream.pending.popleft() == ServerSentEvent('{"id": 1}', event="created")
        # The server ends the listener's session, as a restart or a failover would.
        async with await psycopg.AsyncConnection.connect(notes_db.url, autocommit=True) as conn:
            row = await (await conn.execute("SELECT current_schema()")).fetchone()
            assert row is not None
            cur = await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = %s",
                ("LISTEN " + events.channel_for(row[0]),),
            )
            assert await cur.fetchall() == [(True,)]
        with anyio.fail_after(10):
            while "event listener reconnected" not in caplog.text:
                await anyio.sleep(0.05)
        await feed.publish(7, "updated", 1)
        with anyio.fail_after(5):
            await stream.wakeup.wait()
        assert stream.pending.popleft() == ServerSentEvent('{"id": 1}', event="updated")
    finally:
        feed.hub.remove(stream)
