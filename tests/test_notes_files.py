"""examples/notes' file routes on the wire (files.py), on SQLite and on PostgreSQL.

Upload (multipart field ``file``: 201, 200 when replacing, 422 without a file, 413 past the
size limit, the name sanitized), list, download (ETag, 304, Range 206, attachment, nosniff,
a sandboxing CSP, octet-stream for anything not inert), delete (204, then 404), and only
the owner: another user, or nobody, gets the same 404 / 401 as for the note. Each async test
runs on asyncio, uvloop and trio with SQLite, and on asyncio and uvloop with PostgreSQL.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from notes_support import NotesDb, notes_backend, notes_db, parser, runtimes_and_databases

from examples.notes import Notes, create_app
from examples.notes.files import MAX_FILE_SIZE
from tophat.testing import AsyncTestClient, TestResponse

__all__ = ["notes_backend", "notes_db", "parser"]  # (fixtures, imported for pytest)

pytest_generate_tests = runtimes_and_databases


@pytest.fixture
def files_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    where = tmp_path / "files"
    monkeypatch.setenv("NOTES_FILES_DIR", str(where))
    return where


@pytest.fixture
async def app(notes_db: NotesDb, files_dir: Path, anyio_backend: object) -> AsyncIterator[Notes]:
    notes = create_app(notes_db.settings())
    async with notes.lifespan():
        yield notes


def new_client(notes: Notes) -> AsyncTestClient:
    return AsyncTestClient(
        notes.app, base_url="https://testserver", headers={"accept": "application/json"}
    )


async def signed_up(notes: Notes, username: str = "ada") -> AsyncTestClient:
    client = new_client(notes)
    resp = await client.post("/api/signup", json={"username": username, "password": "hunter2!!"})
    assert resp.status == 201, resp.text
    return client


async def new_note(client: AsyncTestClient) -> int:
    resp = await client.post("/api/notes", json={"title": "with files", "body": ""})
    assert resp.status == 201, resp.text
    return int(resp.json()["id"])


def multipart(
    filename: str, content: bytes, content_type: str = "text/plain", field: str = "file"
) -> tuple[bytes, str]:
    boundary = "b" + secrets.token_hex(12)
    body = (
        (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


async def upload(
    client: AsyncTestClient, note_id: int, filename: str, content: bytes, **kw: Any
) -> TestResponse:
    body, content_type = multipart(filename, content, **kw)
    return await client.post(
        f"/api/notes/{note_id}/files", content=body, headers={"content-type": content_type}
    )


async def test_upload_answers_201_then_the_file_downloads_byte_for_byte(
    app: Notes, files_dir: Path
) -> None:
    client = await signed_up(app)
    note = await new_note(client)
    content = secrets.token_bytes(100_000)
    resp = await upload(client, note, "data.bin", content, content_type="application/x-thing")
    assert resp.status == 201, resp.text
    assert resp.headers.get("location") == f"/api/notes/{note}/files/data.bin"
    meta = resp.json()
    assert (meta["name"], meta["size"], meta["content_type"]) == (
        "data.bin", 100_000, "application/x-thing"
    )  # fmt: skip
    assert (files_dir / str(note) / "data.bin").read_bytes() == content
    got = await client.get(f"/api/notes/{note}/files/data.bin")
    assert got.status == 200
    assert got.body == content
    # Not an inert type: sent as octet-stream, as an attachment, never sniffed or run.
    assert got.headers.get("content-type") == "application/octet-stream"
    assert got.headers.get("content-disposition") == 'attachment; filename="data.bin"'
    assert got.headers.get("x-content-type-options") == "nosniff"
    assert "sandbox" in (got.headers.get("content-security-policy") or "")
    assert got.headers.get("accept-ranges") == "bytes"
    listed = await client.get(f"/api/notes/{note}/files")
    assert listed.status == 200
    assert [f["name"] for f in listed.json()["items"]] == ["data.bin"]


async def test_download_answers_ranges_and_revalidation(app: Notes) -> None:
    client = await signed_up(app)
    note = await new_note(client)
    assert (await upload(client, note, "a.txt", b"0123456789")).status == 201
    url = f"/api/notes/{note}/files/a.txt"
    whole = await client.get(url)
    assert whole.headers.get("content-type") == "text/plain"  # inert: kept as uploaded
    etag = whole.headers.get("etag")
    assert etag
    part = await client.get(url, headers={"range": "bytes=2-4"})
    assert part.status == 206
    assert part.body == b"234"
    assert part.headers.get("content-range") == "bytes 2-4/10"
    again = await client.get(url, headers={"if-none-match": etag})
    assert again.status == 304
    assert again.body == b""


async def test_a_client_sent_path_is_stored_under_its_last_safe_segment(
    app: Notes, files_dir: Path
) -> None:
    client = await signed_up(app)
    note = await new_note(client)
    resp = await upload(client, note, "../../etc/passwd", b"x")
    assert resp.status == 201
    assert resp.json()["name"] == "passwd"
    assert (files_dir / str(note) / "passwd").read_bytes() == b"x"
    assert not (files_dir.parent / "etc").exists()
    # An encoded traversal in the URL names no stored file.
    assert (await client.get(f"/api/notes/{note}/files/..%2F..%2Fetc%2Fpasswd")).status == 404


async def test_uploading_the_same_name_again_replaces_it_with_200(app: Notes) -> None:
    client = await signed_up(app)
    note = await new_note(client)
    assert (await upload(client, note, "a.txt", b"one")).status == 201
    resp = await upload(client, note, "a.txt", b"second")
    assert resp.status == 200
    assert resp.json()["size"] == 6
    assert (await client.get(f"/api/notes/{note}/files/a.txt")).body == b"second"
    listed = (await client.get(f"/api/notes/{note}/files")).json()["items"]
    assert [f["name"] for f in listed] == ["a.txt"]


async def test_upload_without_a_file_is_422_naming_the_field(app: Notes) -> None:
    client = await signed_up(app)
    note = await new_note(client)
    resp = await upload(client, note, "a.txt", b"x", field="other")
    assert resp.status == 422
    assert resp.headers.get("content-type") == "application/problem+json"
    assert [e["field"] for e in resp.json()["errors"]] == ["file"]


async def test_upload_past_the_limit_is_413_and_nothing_is_stored(
    app: Notes, files_dir: Path
) -> None:
    client = await signed_up(app)
    note = await new_note(client)
    resp = await upload(client, note, "big.bin", b"\0" * (MAX_FILE_SIZE + 1))
    assert resp.status == 413
    assert not (files_dir / str(note)).exists()
    assert (await client.get(f"/api/notes/{note}/files")).json()["items"] == []


async def test_delete_answers_204_then_the_file_is_gone(app: Notes, files_dir: Path) -> None:
    client = await signed_up(app)
    note = await new_note(client)
    assert (await upload(client, note, "a.txt", b"x")).status == 201
    url = f"/api/notes/{note}/files/a.txt"
    assert (await client.delete(url)).status == 204
    assert not (files_dir / str(note) / "a.txt").exists()
    assert (await client.get(url)).status == 404
    assert (await client.delete(url)).status == 404


async def test_only_the_owner_reaches_a_notes_files(app: Notes) -> None:
    ada = await signed_up(app, "ada")
    note = await new_note(ada)
    assert (await upload(ada, note, "a.txt", b"secret")).status == 201
    bob = await signed_up(app, "bob")
    url = f"/api/notes/{note}/files/a.txt"
    for resp in (
        await bob.get(url),
        await bob.get(f"/api/notes/{note}/files"),
        await bob.delete(url),
        await upload(bob, note, "b.txt", b"x"),
    ):
        assert resp.status == 404, resp.text
    nobody = new_client(app)
    assert (await nobody.get(url)).status == 401
    assert (await nobody.get(f"/api/notes/{note}/files")).status == 401
    assert (await ada.get(url)).body == b"secret"  # still there


async def test_deleting_the_note_removes_its_files(app: Notes, files_dir: Path) -> None:
    client = await signed_up(app)
    note = await new_note(client)
    assert (await upload(client, note, "a.txt", b"x")).status == 201
    resp = await client.get(f"/api/notes/{note}")
    deleted = await client.delete(f"/api/notes/{note}", headers={"if-match": resp.headers["etag"]})
    assert deleted.status == 204
    assert not (files_dir / str(note)).exists()
    assert (await client.get(f"/api/notes/{note}/files/a.txt")).status == 404
