"""A note's files: ``/api/notes/:id/files`` (list, upload) and ``/api/notes/:id/files/:name``
(download with Range and ETag, delete). Only the note's owner reaches them; for anyone else
the note, and so its files, do not exist (404).

* Upload: ``multipart/form-data`` with the file in the field ``file`` (``await req.form()``,
  the ``forms`` extra), at most ``MAX_FILE_SIZE``. It is stored under ``safe_filename`` of the
  name the client sent (never a path: ``../../x`` is stored as ``x``), replacing a file of
  that name: 201 when new, 200 when replaced, with the file's metadata as the body and its
  ``Location``.
* On disk, one directory per note under the files directory (``FileStore.root``): written to
  a temporary name, then renamed, so a download never sees half a file. The metadata (name,
  size, type, time) is a row of ``note_files`` in the database, deleted with its note
  (``ON DELETE CASCADE``), and its directory when the deletion is published (and at startup,
  for any left behind).
* Download: ``ResponseWriter.set_file`` (``Range``, ``If-Range``, ``ETag``, ``If-None-Match``,
  zero-copy where it can), always as an attachment and with ``nosniff`` and a sandboxing CSP:
  a file uploaded as HTML must never run as a page of this origin. Its type is the one
  uploaded only when on a short list of inert types, else ``application/octet-stream``.

Where the files go: ``NOTES_FILES_DIR``, else ``files/`` beside the SQLite database (or beside
where it would be, with PostgreSQL). With PostgreSQL and several machines, point
``NOTES_FILES_DIR`` at storage they share.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from examples.notes.config import Settings, default_sqlite_path
from examples.notes.context import Change, Context, current_user
from examples.notes.db import User
from examples.notes.events import EventFeed
from examples.notes.offload import run_sync
from examples.notes.sql import Sql
from examples.notes.web import rfc3339
from tophat import Glitch, Request, ResponseWriter, ResponseWritten
from tophat.http.forms import UploadFile, safe_filename
from tophat.router import Router

__all__ = ["MAX_FILE_SIZE", "FileStore", "routes"]

MAX_FILE_SIZE = 10 * 1024 * 1024
CLEANUP_EVERY = 300.0  # seconds between sweeps for the directories of deleted notes
#: Types a browser shows without running anything; any other is sent as octet-stream.
INERT_TYPES = frozenset(
    {"application/pdf", "image/gif", "image/jpeg", "image/png", "image/webp", "text/plain"}
)
PRIVATE = "private, no-cache"


def default_root(settings: Settings, env: dict[str, str] | None = None) -> Path:
    """``NOTES_FILES_DIR``, else ``files/`` beside the (default) SQLite file."""
    env = dict(os.environ) if env is None else env
    configured = env.get("NOTES_FILES_DIR", "")
    if configured:
        return Path(configured)
    return (settings.sqlite_path or default_sqlite_path(env)).parent / "files"


@dataclass(eq=False)
class FileStore:
    """Where the files are (``root``) and their metadata (``sql``, set while the app runs)."""

    root: Path
    sql: Sql | None = None

    def note_dir(self, note_id: int) -> Path:
        return self.root / str(note_id)

    @contextlib.asynccontextmanager
    async def running(self, ctx: Context) -> AsyncIterator[None]:
        sql = await Sql.open(ctx)
        try:
            self.sql = sql
            # The directories of notes deleted while no worker ran (or between a deletion and
            # its publication) go now.
            await self.orphans()
            yield
        finally:
            self.sql = None
            await sql.close()

    async def orphans(self) -> int:
        """Remove the directories of notes that no longer exist; return how many."""
        sql = self.sql
        if sql is None or not self.root.is_dir():
            return 0
        removed = 0
        for entry in await run_sync(lambda: list(self.root.iterdir())):
            if entry.name.isdigit() and not await sql.rows(
                "SELECT 1 FROM notes WHERE id = ?", (int(entry.name),)
            ):
                await run_sync(functools.partial(shutil.rmtree, entry, ignore_errors=True))
                removed += 1
        return removed


def _meta(row: tuple[Any, ...]) -> dict[str, Any]:
    name, size, content_type, created = row
    when = datetime.fromtimestamp(created / 1_000_000, timezone.utc)
    return {"name": name, "size": size, "content_type": content_type, "created_at": rfc3339(when)}


async def _owned(req: Request) -> tuple[FileStore, Sql, User, int]:
    """The store, its runner, the user and the note id, or 401/404/503."""
    user = await current_user(req)
    note_id = req.params.get_int("id", min=1)
    if await req.data(Context).db.get_note(user.id, note_id) is None:
        raise Glitch.not_found("no such note")
    store = req.data(FileStore)
    if store.sql is None:
        raise Glitch(503, "the file store is not open yet")
    return store, store.sql, user, note_id


async def _changed(req: Request, user: User, note_id: int) -> None:
    await req.data(EventFeed).publish(user.id, "files", note_id)


async def list_files(req: Request, w: ResponseWriter) -> ResponseWritten:
    _, sql, _, note_id = await _owned(req)
    rows = await sql.rows(
        "SELECT name, size, content_type, created_at FROM note_files WHERE note_id = ? "
        "ORDER BY name",
        (note_id,),
    )
    w.insert_header("cache-control", PRIVATE)
    w.set_json({"items": [_meta(r) for r in rows]})
    return await w.send()


def _store(upload: UploadFile, directory: Path, name: str) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = directory / f".{name}.{os.getpid()}.{time.monotonic_ns()}.part"
    try:
        upload.save(partial)
        os.replace(partial, directory / name)  # atomic: a reader sees the old file or the new
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


async def upload(req: Request, w: ResponseWriter) -> ResponseWritten:
    store, sql, user, note_id = await _owned(req)
    form = await req.form(max_file_size=MAX_FILE_SIZE, max_total=MAX_FILE_SIZE + 64 * 1024)
    file = form.get("file")
    if not isinstance(file, UploadFile) or not file.filename:
        raise Glitch.unprocessable([{"field": "file", "message": "send a file in 'file'"}])
    name = safe_filename(file.filename)
    content_type = (file.content_type or "application/octet-stream").split(";")[0].strip()
    await run_sync(lambda: _store(file, store.note_dir(note_id), name))
    created = time.time_ns() // 1000
    replaced = await sql.execute(
        "UPDATE note_files SET size = ?, content_type = ?, created_at = ? "
        "WHERE note_id = ? AND name = ?",
        (file.size, content_type, created, note_id, name),
    )
    if not replaced:
        await sql.execute(
            "INSERT INTO note_files (note_id, name, size, content_type, created_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (note_id, name) DO UPDATE SET "
            "size = excluded.size, content_type = excluded.content_type, "
            "created_at = excluded.created_at",
            (note_id, name, file.size, content_type, created),
        )
    await _changed(req, user, note_id)
    w.set_status(200 if replaced else 201)
    w.insert_header("location", f"/api/notes/{note_id}/files/{quote(name, safe='')}")
    w.set_json(_meta((name, file.size, content_type, created)))
    return await w.send()


async def _row(sql: Sql, note_id: int, name: str) -> tuple[Any, ...]:
    rows = await sql.rows(
        "SELECT name, size, content_type, created_at FROM note_files "
        "WHERE note_id = ? AND name = ?",
        (note_id, name),
    )
    if not rows:
        raise Glitch.not_found("no such file")
    return rows[0]


async def download(req: Request, w: ResponseWriter) -> ResponseWritten:
    store, sql, _, note_id = await _owned(req)
    name = req.params["name"]
    _, _, content_type, _ = await _row(sql, note_id, name)
    # Only names the upload made are rows, and those are safe: no separator, no "..".
    path = store.note_dir(note_id) / name
    w.insert_header("cache-control", PRIVATE)
    w.insert_header("x-content-type-options", "nosniff")
    # An uploaded page must never run in this origin, even if opened directly.
    w.insert_header("content-security-policy", "sandbox; default-src 'none'")
    try:
        sent_type = content_type if content_type in INERT_TYPES else "application/octet-stream"
        w.set_file(path, content_type=sent_type, filename=name)
    except FileNotFoundError:
        raise Glitch.not_found("no such file") from None
    return await w.send()


async def delete(req: Request, w: ResponseWriter) -> ResponseWritten:
    store, sql, user, note_id = await _owned(req)
    name = req.params["name"]
    deleted = await sql.execute(
        "DELETE FROM note_files WHERE note_id = ? AND name = ?", (note_id, name)
    )
    if not deleted:
        raise Glitch.not_found("no such file")
    await run_sync(lambda: (store.note_dir(note_id) / name).unlink(missing_ok=True))
    await _changed(req, user, note_id)
    w.set_status(204)
    return await w.send()


def routes(router: Router, ctx: Context) -> FileStore:
    """Mount the file routes; their store opens with the app (``ctx.on_start``). Mount after
    ``events.routes``: a deleted note's directory goes when its deletion is published."""
    store = FileStore(default_root(ctx.settings))
    router.data(store)
    ctx.on_start.append(store.running)
    publish = ctx.publish

    async def publish_and_clean(change: Change) -> None:
        await publish(change)
        if change.kind == "deleted":
            directory = store.note_dir(change.note_id)
            await run_sync(lambda: shutil.rmtree(directory, ignore_errors=True))

    ctx.publish = publish_and_clean
    router.get("/api/notes/:id/files", list_files)
    router.post("/api/notes/:id/files", upload)
    router.get("/api/notes/:id/files/:name", download)
    router.delete("/api/notes/:id/files/:name", delete)
    return store
