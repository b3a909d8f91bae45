"""The notes: ``/api/notes`` (list, create), ``/api/notes/:id`` (get, patch, delete) and
``/api/notes.csv`` (everything, streamed).

Each note's ETag is its version (``"v3"``), which every change raises. ``GET`` answers 304
to an ``If-None-Match`` naming it; ``PATCH`` requires ``If-Match`` (428 without, RFC 6585
§3: so that a client cannot overwrite a change it never saw) and answers 412 when the tag is
stale (RFC 9110 §13.1.1); the update itself names the version it checked, so a change made
between the check and the write is caught too. Another user's note is a 404, exactly as a
missing one: a 403 would tell who has which ids.

Lists are newest first, paged by keyset: the cursor is the last note's (created_at, id),
base64url-encoded, so a page costs one index range scan however deep it is, and notes added
meanwhile neither repeat nor vanish from later pages (an OFFSET would shift).
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any, Literal

from examples.notes.context import Change, Context, current_user
from examples.notes.db import Note, NoteKey, Stale, User
from examples.notes.web import etag_matches, json_object, rfc3339
from tophat import Glitch, Request, ResponseWriter, ResponseWritten
from tophat.router import Router

__all__ = ["etag", "note_json", "routes"]

MAX_TITLE, MAX_BODY = 200, 100_000
CSV_BATCH = 500
# Per-user data: a shared cache must not keep it; a browser may, but revalidates (ETag).
PRIVATE = "private, no-cache"


def etag(note: Note) -> str:
    return f'"v{note.version}"'


def note_json(note: Note) -> dict[str, Any]:
    return {
        "id": note.id,
        "title": note.title,
        "body": note.body,
        "created_at": rfc3339(note.created_at),
        "updated_at": rfc3339(note.updated_at),
    }


def _encode_cursor(key: NoteKey) -> str:
    when, note_id = key
    micros = int(when.timestamp()) * 1_000_000 + when.microsecond
    raw = json.dumps([micros, note_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(text: str) -> NoteKey:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        micros, note_id = json.loads(raw)
        if type(micros) is not int or type(note_id) is not int:
            raise ValueError("not two integers")
        when = datetime.fromtimestamp(micros // 1_000_000, timezone.utc)
        return when.replace(microsecond=micros % 1_000_000), note_id
    except (ValueError, TypeError, binascii.Error, OverflowError, OSError) as exc:
        raise Glitch(400, "query parameter 'cursor': not a cursor this API returned") from exc


def _fields(body: dict[str, Any], *, partial: bool) -> dict[str, str]:
    """The valid ``title`` and ``body`` of a request, or a 422 naming each bad field."""
    errors: list[dict[str, str]] = []
    out: dict[str, str] = {}
    rules = (("title", 1, MAX_TITLE), ("body", 0, MAX_BODY))
    for name, low, high in rules:
        if name not in body:
            if name == "title" and not partial:
                errors.append({"field": name, "message": "required"})
            continue
        value = body[name]
        if not isinstance(value, str):
            errors.append({"field": name, "message": "must be a string"})
        elif not low <= len(value) <= high:
            errors.append({"field": name, "message": f"{low} to {high} characters"})
        else:
            out[name] = value
    if partial and not errors and not out:
        errors.append({"field": "title", "message": "send title, body or both"})
    if errors:
        raise Glitch.unprocessable(errors)
    return out


def _send_note(w: ResponseWriter, note: Note) -> None:
    w.insert_header("etag", etag(note))
    w.insert_header("cache-control", PRIVATE)
    w.set_json(note_json(note))


async def _publish(
    ctx: Context, user: User, kind: Literal["created", "updated", "deleted"], note_id: int
) -> None:
    await ctx.publish(Change(user.id, user.username, kind, note_id))


async def list_notes(req: Request, w: ResponseWriter) -> ResponseWritten:
    user = await current_user(req)
    ctx = req.data(Context)
    limit = req.query.get_int("limit", default=20, min=1, max=100)
    cursor = req.query.get("cursor")
    q = req.query.get("q") or None
    if q is not None and len(q) > MAX_TITLE:
        raise Glitch(400, f"query parameter 'q': at most {MAX_TITLE} characters")
    after = _decode_cursor(cursor) if cursor else None
    notes = list(await ctx.db.list_notes(user.id, limit + 1, after, q))
    next_cursor = None
    if len(notes) > limit:
        del notes[limit:]
        next_cursor = _encode_cursor((notes[-1].created_at, notes[-1].id))
    w.insert_header("cache-control", PRIVATE)
    w.set_json({"items": [note_json(n) for n in notes], "next_cursor": next_cursor})
    return await w.send()


async def create_note(req: Request, w: ResponseWriter) -> ResponseWritten:
    user = await current_user(req)
    ctx = req.data(Context)
    fields = _fields(await json_object(req), partial=False)
    note = await ctx.db.create_note(user.id, fields["title"], fields.get("body", ""))
    await _publish(ctx, user, "created", note.id)
    w.set_status(201)
    w.insert_header("location", f"/api/notes/{note.id}")
    _send_note(w, note)
    return await w.send()


async def _own_note(req: Request) -> tuple[Context, User, Note]:
    user = await current_user(req)
    ctx = req.data(Context)
    note = await ctx.db.get_note(user.id, req.params["id"])
    if note is None:
        raise Glitch.not_found("no such note")
    return ctx, user, note


async def get_note(req: Request, w: ResponseWriter) -> ResponseWritten:
    _, _, note = await _own_note(req)
    if_none_match = req.headers.get("if-none-match")
    if if_none_match is not None and etag_matches(if_none_match, etag(note), weak=True):
        # RFC 9110 §15.4.5: a 304 carries the ETag and Cache-Control a 200 would.
        w.set_status(304)
        w.insert_header("etag", etag(note))
        w.insert_header("cache-control", PRIVATE)
        return await w.send()
    _send_note(w, note)
    return await w.send()


async def patch_note(req: Request, w: ResponseWriter) -> ResponseWritten:
    ctx, user, note = await _own_note(req)
    if_match = req.headers.get("if-match")
    if if_match is None:
        raise Glitch(428, "send If-Match with the ETag of the note you edited")
    fields = _fields(await json_object(req), partial=True)
    if not etag_matches(if_match, etag(note), weak=False):
        raise Glitch(412, "the note changed since you read it; get it again")
    try:
        updated = await ctx.db.update_note(
            user.id,
            note.id,
            note.version,
            fields.get("title", note.title),
            fields.get("body", note.body),
        )
    except Stale:
        raise Glitch(412, "the note changed since you read it; get it again") from None
    if updated is None:  # deleted since we read it
        raise Glitch.not_found("no such note")
    await _publish(ctx, user, "updated", updated.id)
    _send_note(w, updated)
    return await w.send()


async def delete_note(req: Request, w: ResponseWriter) -> ResponseWritten:
    ctx, user, note = await _own_note(req)
    if_match = req.headers.get("if-match")
    if if_match is not None and not etag_matches(if_match, etag(note), weak=False):
        raise Glitch(412, "the note changed since you read it")
    if not await ctx.db.delete_note(user.id, note.id):
        raise Glitch.not_found("no such note")
    await _publish(ctx, user, "deleted", note.id)
    w.set_status(204)
    return await w.send()


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(text: str) -> str:
    # A cell starting with = + - @ is a formula to a spreadsheet that opens the file (OWASP
    # "CSV injection"): a leading ' makes it text there.
    return "'" + text if text.startswith(_FORMULA_START) else text


async def _csv_rows(ctx: Context, user_id: int) -> AsyncIterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["id", "title", "body", "created_at", "updated_at"])
    after: NoteKey | None = None
    while True:
        # One batch at a time, each its own query: memory stays one batch deep, and no
        # database cursor or connection is held while the client reads slowly.
        batch = await ctx.db.list_notes(user_id, CSV_BATCH, after)
        for n in batch:
            created, updated = rfc3339(n.created_at), rfc3339(n.updated_at)
            writer.writerow([n.id, _cell(n.title), _cell(n.body), created, updated])
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
        if len(batch) < CSV_BATCH:
            return
        after = (batch[-1].created_at, batch[-1].id)


async def notes_csv(req: Request, w: ResponseWriter) -> ResponseWritten:
    user = await current_user(req)
    ctx = req.data(Context)
    w.insert_header("content-type", "text/csv; charset=utf-8")
    w.insert_header("content-disposition", 'attachment; filename="notes.csv"')
    w.insert_header("cache-control", "private, no-store")
    w.set_body(_csv_rows(ctx, user.id))
    return await w.send()


def routes(router: Router) -> None:
    router.get("/api/notes", list_notes)
    router.post("/api/notes", create_note)
    router.get("/api/notes.csv", notes_csv)
    router.get("/api/notes/:id<int>", get_note)
    router.patch("/api/notes/:id<int>", patch_note)
    router.delete("/api/notes/:id<int>", delete_note)
