"""examples/notes on the wire: every route and status, on SQLite and on PostgreSQL.

Each async test runs on asyncio, uvloop and trio with SQLite, and on asyncio and uvloop with
PostgreSQL (psycopg's async API is asyncio-only: that pair is not generated, rather than
skipped); PostgreSQL comes from ``TOPHAT_TEST_POSTGRES_URL`` (``tests/notes_support.py``).
The app runs its own lifespan (database opened and migrated) around each test, as the CLI
would. Requests go through ``AsyncTestClient`` over https (Secure cookies are kept) with
``Accept: application/json``, as the front-end sends.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import socket
import sqlite3
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from notes_support import TEST_KEY, NotesDb, notes_backend, notes_db, parser, runtimes_and_databases
from servers import cli, free_port

import examples.notes.notes as notes_module
from examples.notes import ConfigError, Notes, Settings, create_app
from examples.notes.config import secret_key
from examples.notes.sqlite import MIGRATIONS
from tophat.testing import AsyncTestClient, TestResponse

APPLIED = [(version,) for version, _ in MIGRATIONS]  # each version once, in order

__all__ = ["notes_backend", "notes_db", "parser"]  # (fixtures, imported for pytest)

pytest_generate_tests = runtimes_and_databases


@pytest.fixture
async def app(notes_db: NotesDb, anyio_backend: object) -> AsyncIterator[Notes]:
    notes = create_app(notes_db.settings(login_limit_user=3, login_limit_address=5))
    async with notes.lifespan():
        yield notes


def new_client(notes: Notes) -> AsyncTestClient:
    return AsyncTestClient(
        notes.app, base_url="https://testserver", headers={"accept": "application/json"}
    )


@pytest.fixture
def client(app: Notes) -> AsyncTestClient:
    return new_client(app)


async def signed_up(notes: Notes, username: str = "ada") -> AsyncTestClient:
    client = new_client(notes)
    resp = await client.post("/api/signup", json={"username": username, "password": "hunter2!!"})
    assert resp.status == 201, resp.text
    return client


def problem(resp: TestResponse, status: int) -> dict[str, Any]:
    assert resp.status == status, resp.text
    assert resp.headers.get("content-type") == "application/problem+json"
    body: dict[str, Any] = resp.json()
    assert body["status"] == status
    return body


def error_fields(resp: TestResponse) -> list[str]:
    return [e["field"] for e in problem(resp, 422)["errors"]]


# -- accounts -------------------------------------------------------------------------------------


async def test_signup_answers_201_with_the_login_cookie_and_me_knows_the_user(
    client: AsyncTestClient,
) -> None:
    resp = await client.post("/api/signup", json={"username": "ada_1", "password": "hunter2!!"})
    assert resp.status == 201
    assert resp.json() == {"username": "ada_1"}
    cookie = resp.headers.get("set-cookie") or ""
    assert cookie.startswith("__Host-tophat-auth=")
    for attribute in ("Secure", "HttpOnly", "SameSite=Lax", "Path=/"):
        assert attribute in cookie
    me = await client.get("/api/me")
    assert me.status == 200 and me.json() == {"username": "ada_1"}


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"username": "ab", "password": "hunter2!!"}, ["username"]),
        ({"username": "x" * 33, "password": "hunter2!!"}, ["username"]),
        ({"username": "Ada", "password": "hunter2!!"}, ["username"]),
        ({"username": "ad-a", "password": "hunter2!!"}, ["username"]),
        ({"username": "ada", "password": "short"}, ["password"]),
        ({"username": "ada", "password": 12345678}, ["password"]),
        ({"password": "hunter2!!"}, ["username"]),
        ({}, ["username", "password"]),
    ],
)
async def test_signup_refuses_bad_fields_with_422_naming_them(
    client: AsyncTestClient, body: dict[str, Any], fields: list[str]
) -> None:
    resp = await client.post("/api/signup", json=body)
    assert error_fields(resp) == fields
    assert "set-cookie" not in resp.headers


async def test_signup_of_a_taken_username_is_409(app: Notes) -> None:
    await signed_up(app, "ada")
    resp = await new_client(app).post(
        "/api/signup", json={"username": "ada", "password": "another pw"}
    )
    problem(resp, 409)


async def test_a_body_that_is_not_a_json_object_is_refused(client: AsyncTestClient) -> None:
    resp = await client.post(
        "/api/signup", content=b"{", headers={"content-type": "application/json"}
    )
    problem(resp, 400)
    resp = await client.post("/api/signup", json=["ada", "pw"])
    problem(resp, 400)
    resp = await client.post("/api/signup", data={"username": "ada", "password": "hunter2!!"})
    problem(resp, 415)


async def test_login_answers_200_with_a_cookie_or_401(app: Notes) -> None:
    await signed_up(app, "ada")
    client = new_client(app)
    wrong = await client.post("/api/login", json={"username": "ada", "password": "nope nope"})
    problem(wrong, 401)
    assert wrong.headers.get("www-authenticate", "").startswith("Cookie ")  # RFC 9110 §15.5.2
    assert "set-cookie" not in wrong.headers
    problem(await client.post("/api/login", json={"username": "bob", "password": "x" * 9}), 401)
    assert (await client.get("/api/me")).status == 401
    ok = await client.post("/api/login", json={"username": "ada", "password": "hunter2!!"})
    assert ok.status == 200 and ok.json() == {"username": "ada"}
    assert (await client.get("/api/me")).json() == {"username": "ada"}


async def test_login_with_missing_fields_is_422(client: AsyncTestClient) -> None:
    assert error_fields(await client.post("/api/login", json={"username": "ada"})) == ["password"]


async def test_me_without_a_login_is_401(client: AsyncTestClient) -> None:
    resp = await client.get("/api/me")
    problem(resp, 401)
    assert "www-authenticate" in resp.headers


async def test_failed_logins_per_username_are_limited_with_429_and_retry_after(app: Notes) -> None:
    await signed_up(app, "ada")
    client = new_client(app)
    for _ in range(3):  # login_limit_user=3
        problem(
            await client.post("/api/login", json={"username": "ada", "password": "wrong pw"}), 401
        )
    # Even the right password is refused now: the window has not ended.
    resp = await client.post("/api/login", json={"username": "ada", "password": "hunter2!!"})
    problem(resp, 429)
    retry = int(resp.headers["retry-after"])
    assert 0 < retry <= 900
    # Another user from the same address is not locked out by ada's counter.
    await signed_up(app, "bob")
    ok = await client.post("/api/login", json={"username": "bob", "password": "hunter2!!"})
    assert ok.status == 200


async def test_failed_logins_per_address_are_limited_across_usernames(app: Notes) -> None:
    client = new_client(app)
    for i in range(5):  # login_limit_address=5, each username failing once
        resp = await client.post("/api/login", json={"username": f"u{i}xx", "password": "wrong pw"})
        problem(resp, 401)
    resp = await client.post("/api/login", json={"username": "someone", "password": "wrong pw"})
    problem(resp, 429)
    assert int(resp.headers["retry-after"]) > 0


async def test_the_limit_holds_on_another_worker(app: Notes, notes_db: NotesDb) -> None:
    # The counters are in the database: a second app on it (another worker) sees them.
    await signed_up(app, "ada")
    for _ in range(3):
        await new_client(app).post("/api/login", json={"username": "ada", "password": "wrong pw"})
    other = create_app(notes_db.settings(login_limit_user=3))
    async with other.lifespan():
        resp = await new_client(other).post(
            "/api/login", json={"username": "ada", "password": "hunter2!!"}
        )
        problem(resp, 429)


async def test_logout_is_204_and_revokes_the_copied_cookie_on_every_worker(
    app: Notes, notes_db: NotesDb
) -> None:
    client = await signed_up(app, "ada")
    copied = f"{app.ctx.identity.cookie_name}={client.cookies[app.ctx.identity.cookie_name]}"
    other = create_app(notes_db.settings())  # a second worker on the same database
    async with other.lifespan():
        thief = new_client(other)
        assert (await thief.get("/api/me", headers={"cookie": copied})).status == 200
        resp = await client.post("/api/logout")
        assert resp.status == 204 and resp.body == b""
        assert "Max-Age=0" in (resp.headers.get("set-cookie") or "")
        assert (await client.get("/api/me")).status == 401
        assert (await new_client(app).get("/api/me", headers={"cookie": copied})).status == 401
        assert (await thief.get("/api/me", headers={"cookie": copied})).status == 401


async def test_logout_without_a_login_is_204(client: AsyncTestClient) -> None:
    resp = await client.post("/api/logout")
    assert resp.status == 204


async def test_a_login_rehashes_a_password_hashed_at_a_lower_cost(
    app: Notes, notes_db: NotesDb
) -> None:
    await signed_up(app, "ada")
    before = (await app.ctx.db.user_by_name("ada")).password_hash  # type: ignore[union-attr]
    stronger = create_app(notes_db.settings(scrypt_n=2**11))
    async with stronger.lifespan():
        resp = await new_client(stronger).post(
            "/api/login", json={"username": "ada", "password": "hunter2!!"}
        )
        assert resp.status == 200
        after = (await stronger.ctx.db.user_by_name("ada")).password_hash  # type: ignore[union-attr]
    assert before.startswith("scrypt$n=1024,r=8,p=1$")
    assert after.startswith("scrypt$n=2048,r=8,p=1$")


# -- notes ----------------------------------------------------------------------------------------


async def test_notes_need_a_login(client: AsyncTestClient) -> None:
    for method, path in [
        ("GET", "/api/notes"),
        ("POST", "/api/notes"),
        ("GET", "/api/notes/1"),
        ("PATCH", "/api/notes/1"),
        ("DELETE", "/api/notes/1"),
        ("GET", "/api/notes.csv"),
    ]:
        problem(await client.request(method, path, json={"title": "x"}), 401)


async def test_a_method_the_api_does_not_have_is_405_with_allow(client: AsyncTestClient) -> None:
    # The front-end is mounted at "/": it must not take an API path's other methods (a 404).
    for method, path, allow in [
        ("PUT", "/api/notes", "GET, HEAD, OPTIONS, POST"),
        ("POST", "/api/notes/1", "DELETE, GET, HEAD, OPTIONS, PATCH"),
        ("GET", "/api/logout", "OPTIONS, POST"),
    ]:
        resp = await client.request(method, path, headers={"accept": "application/json"})
        problem(resp, 405)
        assert resp.headers.get("allow") == allow


async def test_create_answers_201_with_location_etag_and_the_note(app: Notes) -> None:
    client = await signed_up(app)
    resp = await client.post("/api/notes", json={"title": "Hello", "body": "wörld"})
    assert resp.status == 201
    note = resp.json()
    assert set(note) == {"id", "title", "body", "created_at", "updated_at"}
    assert (note["title"], note["body"]) == ("Hello", "wörld")
    assert resp.headers["location"] == f"/api/notes/{note['id']}"
    assert resp.headers["etag"] == '"v1"'
    assert note["created_at"] == note["updated_at"]
    assert note["created_at"].endswith("Z") and "T" in note["created_at"]  # RFC 3339, UTC
    got = await client.get(resp.headers["location"])
    assert got.status == 200 and got.json() == note


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"title": ""}, ["title"]),
        ({"title": "x" * 201}, ["title"]),
        ({"title": "ok", "body": "x" * 100_001}, ["body"]),
        ({"body": "no title"}, ["title"]),
        ({"title": 5, "body": None}, ["title", "body"]),
    ],
)
async def test_create_refuses_bad_fields_with_422(
    app: Notes, body: dict[str, Any], fields: list[str]
) -> None:
    client = await signed_up(app)
    assert error_fields(await client.post("/api/notes", json=body)) == fields
    assert (await client.get("/api/notes")).json()["items"] == []


async def test_the_longest_title_and_body_are_accepted(app: Notes) -> None:
    client = await signed_up(app)
    resp = await client.post("/api/notes", json={"title": "t" * 200, "body": "b" * 100_000})
    assert resp.status == 201


async def make_notes(client: AsyncTestClient, n: int, prefix: str = "note") -> list[int]:
    ids = []
    for i in range(n):
        resp = await client.post("/api/notes", json={"title": f"{prefix} {i}", "body": f"body {i}"})
        ids.append(resp.json()["id"])
    return ids


async def test_list_is_newest_first_and_pages_by_cursor(app: Notes) -> None:
    client = await signed_up(app)
    ids = await make_notes(client, 5)
    first = (await client.get("/api/notes", params={"limit": 2})).json()
    assert [n["id"] for n in first["items"]] == ids[::-1][:2]
    assert isinstance(first["next_cursor"], str)
    second = (
        await client.get("/api/notes", params={"limit": 2, "cursor": first["next_cursor"]})
    ).json()
    assert [n["id"] for n in second["items"]] == ids[::-1][2:4]
    # A note made now does not shift the later pages (keyset, not OFFSET).
    await make_notes(client, 1, "late")
    third = (
        await client.get("/api/notes", params={"limit": 2, "cursor": second["next_cursor"]})
    ).json()
    assert [n["id"] for n in third["items"]] == [ids[0]]
    assert third["next_cursor"] is None
    default = (await client.get("/api/notes")).json()
    assert len(default["items"]) == 6 and default["next_cursor"] is None


async def test_list_limit_defaults_to_20_and_stays_in_1_to_100(app: Notes) -> None:
    client = await signed_up(app)
    await make_notes(client, 21)
    page = (await client.get("/api/notes")).json()
    assert len(page["items"]) == 20 and page["next_cursor"] is not None
    for bad in ("0", "101", "-1", "ten", "1.5"):
        body = problem(await client.get("/api/notes", params={"limit": bad}), 400)
        assert "limit" in body["detail"]
    assert len((await client.get("/api/notes", params={"limit": 100})).json()["items"]) == 21


@pytest.mark.parametrize("cursor", ["x", "!!!", "WzEsMiwzXQ", "bnVsbA", "WyJhIiwxXQ"])
async def test_a_cursor_the_api_did_not_make_is_400(app: Notes, cursor: str) -> None:
    client = await signed_up(app)
    body = problem(await client.get("/api/notes", params={"cursor": cursor}), 400)
    assert "cursor" in body["detail"]


async def test_q_searches_title_and_body_case_insensitively_and_literally(app: Notes) -> None:
    client = await signed_up(app)
    a = (await client.post("/api/notes", json={"title": "Shopping", "body": "milk"})).json()["id"]
    b = (await client.post("/api/notes", json={"title": "todo", "body": "buy MILK 100%"})).json()[
        "id"
    ]
    await client.post("/api/notes", json={"title": "other", "body": "100 percent"})

    async def found(q: str) -> list[int]:
        return [n["id"] for n in (await client.get("/api/notes", params={"q": q})).json()["items"]]

    assert await found("milk") == [b, a]
    assert await found("SHOP") == [a]
    assert await found("100%") == [b]  # % is a character here, not a LIKE wildcard
    assert await found("_") == []
    assert await found("nothing") == []


async def test_another_users_notes_are_404_like_missing_ones(app: Notes) -> None:
    ada = await signed_up(app, "ada")
    bob = await signed_up(app, "bob")
    [note_id] = await make_notes(ada, 1)
    assert (await bob.get("/api/notes")).json()["items"] == []
    for method in ("GET", "PATCH", "DELETE"):
        theirs = await bob.request(
            method, f"/api/notes/{note_id}", json={"title": "mine"}, headers={"if-match": '"v1"'}
        )
        missing = await bob.request(
            method, "/api/notes/999999", json={"title": "mine"}, headers={"if-match": '"v1"'}
        )
        assert problem(theirs, 404) == problem(missing, 404)
    assert (await ada.get(f"/api/notes/{note_id}")).json()["title"] == "note 0"


async def test_get_answers_304_to_a_matching_if_none_match(app: Notes) -> None:
    client = await signed_up(app)
    [note_id] = await make_notes(client, 1)
    resp = await client.get(f"/api/notes/{note_id}")
    etag = resp.headers["etag"]
    assert etag == '"v1"'
    assert resp.headers.get("cache-control") == "private, no-cache"
    for field in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        cached = await client.get(f"/api/notes/{note_id}", headers={"if-none-match": field})
        assert cached.status == 304 and cached.body == b""
        assert cached.headers["etag"] == etag
    fresh = await client.get(f"/api/notes/{note_id}", headers={"if-none-match": '"v0"'})
    assert fresh.status == 200


async def test_patch_needs_if_match_428_and_a_stale_one_is_412(app: Notes) -> None:
    client = await signed_up(app)
    [note_id] = await make_notes(client, 1)
    url = f"/api/notes/{note_id}"
    problem(await client.patch(url, json={"title": "new"}), 428)
    resp = await client.patch(url, json={"title": "new"}, headers={"if-match": '"v1"'})
    assert resp.status == 200
    assert resp.headers["etag"] == '"v2"'
    note = resp.json()
    assert note["title"] == "new" and note["body"] == "body 0"
    assert note["updated_at"] > note["created_at"]
    stale = await client.patch(url, json={"title": "lost"}, headers={"if-match": '"v1"'})
    problem(stale, 412)
    # A weak tag never matches If-Match (strong comparison, RFC 9110 §13.1.1).
    problem(await client.patch(url, json={"title": "x"}, headers={"if-match": 'W/"v2"'}), 412)
    assert (await client.get(url)).json()["title"] == "new"
    star = await client.patch(url, json={"body": "any"}, headers={"if-match": "*"})
    assert star.status == 200 and star.headers["etag"] == '"v3"'


async def test_patch_refuses_bad_fields_with_422(app: Notes) -> None:
    client = await signed_up(app)
    [note_id] = await make_notes(client, 1)
    url = f"/api/notes/{note_id}"
    for body, fields in [({"title": ""}, ["title"]), ({}, ["title"]), ({"body": 1}, ["body"])]:
        resp = await client.patch(url, json=body, headers={"if-match": '"v1"'})
        assert error_fields(resp) == fields


async def test_delete_is_204_then_404(app: Notes) -> None:
    client = await signed_up(app)
    [note_id] = await make_notes(client, 1)
    resp = await client.delete(f"/api/notes/{note_id}")
    assert resp.status == 204 and resp.body == b""
    problem(await client.get(f"/api/notes/{note_id}"), 404)
    problem(await client.delete(f"/api/notes/{note_id}"), 404)


async def test_delete_with_a_stale_if_match_is_412(app: Notes) -> None:
    client = await signed_up(app)
    [note_id] = await make_notes(client, 1)
    problem(await client.delete(f"/api/notes/{note_id}", headers={"if-match": '"v9"'}), 412)
    assert (
        await client.delete(f"/api/notes/{note_id}", headers={"if-match": '"v1"'})
    ).status == 204


async def test_csv_streams_every_note_in_batches_as_an_attachment(
    app: Notes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(notes_module, "CSV_BATCH", 3)  # 7 notes: three queries, three pieces
    client = await signed_up(app)
    ids = await make_notes(client, 6)
    evil = (
        await client.post("/api/notes", json={"title": "=HYPERLINK(1)", "body": 'a,"b"\nc'})
    ).json()
    other = await signed_up(app, "bob")
    await make_notes(other, 2, "bob's")
    resp = await client.get("/api/notes.csv")
    assert resp.status == 200
    assert resp.headers["content-type"] == "text/csv; charset=utf-8"
    assert resp.headers["content-disposition"] == 'attachment; filename="notes.csv"'
    assert resp.headers.get("transfer-encoding") == "chunked"  # streamed, not buffered
    rows = list(csv.reader(io.StringIO(resp.text)))
    assert rows[0] == ["id", "title", "body", "created_at", "updated_at"]
    assert [int(r[0]) for r in rows[1:]] == [evil["id"], *ids[::-1]]
    assert rows[1][1:3] == ["'=HYPERLINK(1)", 'a,"b"\nc']  # a formula is made text


async def test_unknown_routes_are_problem_json(client: AsyncTestClient) -> None:
    problem(await client.get("/api/nothing"), 404)
    problem(await client.get("/api/notes/abc"), 404)  # (an id is an integer)


async def test_responses_carry_a_request_id_and_json_is_compressed(app: Notes) -> None:
    client = await signed_up(app)
    await make_notes(client, 20)
    resp = await client.get("/api/notes", headers={"accept-encoding": "gzip"})
    assert resp.status == 200
    assert len(resp.headers["x-request-id"]) == 32
    assert resp.headers["content-encoding"] == "gzip"
    assert len(json.loads(gzip.decompress(resp.body))["items"]) == 20


async def test_cors_allows_the_configured_origins_with_credentials(
    notes_db: NotesDb, anyio_backend: object
) -> None:
    notes = create_app(notes_db.settings(allowed_origins=("https://app.example",)))
    async with notes.lifespan():
        client = new_client(notes)
        preflight = {
            "origin": "https://app.example",
            "access-control-request-method": "PATCH",
            "access-control-request-headers": "content-type, if-match",
        }
        resp = await client.options("/api/notes/1", headers=preflight)
        assert resp.headers["access-control-allow-origin"] == "https://app.example"
        assert resp.headers["access-control-allow-credentials"] == "true"
        other = await client.get("/api/me", headers={"origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


async def test_migrations_are_idempotent_and_safe_when_workers_start_together(
    notes_db: NotesDb, anyio_backend: object
) -> None:
    apps = [create_app(notes_db.settings()) for _ in range(3)]
    async with anyio.create_task_group() as tg:
        for notes in apps:
            tg.start_soon(_open_and_close, notes)
    notes = create_app(notes_db.settings())
    async with notes.lifespan():
        client = await signed_up(notes)
        assert (await client.get("/api/me")).status == 200
    if notes_db.sqlite_path is not None:
        with sqlite3.connect(notes_db.sqlite_path) as conn:
            assert conn.execute("SELECT version FROM schema_version").fetchall() == APPLIED
            assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def _open_and_close(notes: Notes) -> None:
    async with notes.lifespan():
        pass


# -- configuration (no database) ------------------------------------------------------------------


def test_settings_default_to_sqlite_under_the_xdg_data_dir(tmp_path: Path) -> None:
    s = Settings.from_env({"XDG_DATA_HOME": str(tmp_path)})
    assert (s.backend, s.sqlite_path) == ("sqlite", tmp_path / "tophat-notes" / "notes.db")
    home = Settings.from_env({})
    assert home.sqlite_path == Path.home() / ".local/share/tophat-notes/notes.db"


def test_settings_read_the_urls_and_origins() -> None:
    s = Settings.from_env(
        {
            "NOTES_DATABASE_URL": "sqlite:///var/lib/notes%20x/n.db",
            "NOTES_ALLOWED_ORIGINS": "https://a.example, http://localhost:5173/",
        }
    )
    assert s.sqlite_path == Path("/var/lib/notes x/n.db")
    assert s.allowed_origins == ("https://a.example", "http://localhost:5173")
    pg = Settings.from_env(
        {"NOTES_DATABASE_URL": "postgresql://u:secret@db:5433/notes", "NOTES_SECRET_KEY": TEST_KEY}
    )
    assert pg.backend == "postgresql" and pg.secret_key == TEST_KEY
    assert pg.describe() == "PostgreSQL db:5433/notes"  # no password in the log line


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"NOTES_DATABASE_URL": "postgresql://db/notes"}, "NOTES_SECRET_KEY is required"),
        ({"NOTES_DATABASE_URL": "sqlite://relative.db"}, "sqlite:///ABSOLUTE/PATH"),
        ({"NOTES_DATABASE_URL": "mysql://db"}, "expected sqlite:///ABS/PATH or postgresql://"),
        ({"NOTES_ALLOWED_ORIGINS": "app.example"}, "is not an origin"),
    ],
)
def test_bad_settings_fail_with_a_message_that_says_how_to_fix_them(
    env: dict[str, str], says: str
) -> None:
    with pytest.raises(ConfigError, match=says):
        Settings.from_env(env)


def test_the_generated_key_is_kept_beside_the_database_with_mode_0600(tmp_path: Path) -> None:
    settings = Settings("sqlite", tmp_path / "data" / "notes.db")
    key = secret_key(settings)
    path = tmp_path / "data" / "secret_key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(key) >= 60 and secret_key(settings) == key  # made once, then read
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        secret_key(settings)


def test_postgresql_under_trio_is_refused_with_a_clear_message() -> None:
    import trio

    from examples.notes.postgres import PostgresDatabase

    with pytest.raises(RuntimeError, match="runs on asyncio or uvloop"):
        trio.run(PostgresDatabase.open, "postgresql://127.0.0.1:1/none")


# -- the CLI --------------------------------------------------------------------------------------


def test_the_cli_serves_the_app_and_logs_the_database(
    notes_db: NotesDb, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for name, value in notes_db.env.items():
        monkeypatch.setenv(name, value)
    port = free_port()
    with cli("--port", str(port), "--access-log", app="examples.notes:app") as server:
        server.wait_for(b"notes: database ")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(
                b"GET /api/me HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n"
                b"Connection: close\r\n\r\n"
            )
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        assert data.startswith(b"HTTP/1.1 401 ")
        assert b"application/problem+json" in data
        server.proc.terminate()
        assert server.proc.wait(10) == 0
        log = server.rest_of_stderr()
    assert "Traceback" not in log
    which = "SQLite" if notes_db.backend == "sqlite" else "PostgreSQL"
    assert f"notes: database {which}" in log
    assert "GET /api/me" in log and "401" in log  # the access log, with the request id
    if notes_db.sqlite_path is not None:
        assert notes_db.sqlite_path.exists()
