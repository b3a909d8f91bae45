"""The notes API of ``examples/notes`` written the usual Starlette way, for ``bench/notes.py``.

Serve it with uvicorn (httptools, uvloop)::

    NOTES_DATABASE_URL=sqlite:////tmp/notes.db NOTES_SECRET_KEY=... \\
        uvicorn bench.perf_apps.notes_starlette:app --http httptools --loop uvloop

It runs against the SQLite file the tophat app made (the same schema: it never migrates, it
expects ``examples/notes/sqlite.py``'s tables) and answers the same routes with the same JSON,
status codes and headers: ``POST /api/login``, ``POST /api/logout``, ``GET /api/me``,
``GET /api/notes?limit=&cursor=&q=``, ``POST /api/notes``, ``GET /api/notes/{id}``. Errors
are problem+json with the same members. The work per request is the tophat app's:

* the login is Starlette's ``SessionMiddleware`` (an itsdangerous-signed cookie, as tophat's
  ``Identity``) holding the username and a session token; each request checks the token's
  SHA-256 in the ``sessions`` table and loads the user, the same two statements tophat's
  ``session_check`` and ``current_user`` run;
* SQLite through the standard library's ``sqlite3`` on one thread per process (one
  connection, WAL, ``synchronous=NORMAL``), as ``examples/notes/sqlite.py`` does;
* passwords verified with ``hashlib.scrypt`` off the event loop, read from the stored hash's
  own parameters (``scrypt$n=..,r=..,p=..$SALT$KEY``);
* ``GZipMiddleware`` in the place of tophat's ``compress()`` (a client that sends no
  ``Accept-Encoding``, like the bench's wrk, gets identity from both).

A created note is published as the tophat app publishes it on SQLite: a row in its
``note_events`` table (``examples/notes/events.py``), which tophat's workers poll for their
``/api/events`` streams. This app writes the row and serves no stream.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

T = TypeVar("T")
MAX_TITLE, MAX_BODY = 200, 100_000
PRIVATE = "private, no-cache"
SESSION_MAX_AGE = 7 * 86400
NOTE_COLUMNS = "id, user_id, title, body, created_at, updated_at, version"


# -- the database: one connection on one thread ---------------------------------------------------


class Db:
    def __init__(self, path: str) -> None:
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="notes-sqlite")
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        for pragma in ("busy_timeout = 5000", "journal_mode = WAL", "synchronous = NORMAL"):
            self.conn.execute(f"PRAGMA {pragma}")
        self.conn.execute("PRAGMA foreign_keys = ON")

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self.conn
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, conn)

    def close(self) -> None:
        self.executor.submit(self.conn.close).result()
        self.executor.shutdown()


def sqlite_path() -> str:
    url = os.environ["NOTES_DATABASE_URL"]
    parts = urlsplit(url)
    if parts.scheme != "sqlite" or parts.netloc:
        raise SystemExit("NOTES_DATABASE_URL must be sqlite:///ABS/PATH")
    return unquote(parts.path)


def micros(when: datetime) -> int:
    return int(when.timestamp()) * 1_000_000 + when.microsecond


def from_micros(us: int) -> datetime:
    return datetime.fromtimestamp(us // 1_000_000, timezone.utc).replace(microsecond=us % 1_000_000)


def rfc3339(us: int) -> str:
    return from_micros(us).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def note_json(row: Any) -> dict[str, Any]:
    return {
        "id": row[0],
        "title": row[2],
        "body": row[3],
        "created_at": rfc3339(row[4]),
        "updated_at": rfc3339(row[5]),
    }


# -- errors: problem+json -------------------------------------------------------------------------


class Problem(HTTPException):
    def __init__(
        self,
        status: int,
        detail: str | None = None,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(status, detail, headers)
        self.extensions = extensions


async def problem_response(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    from http import HTTPStatus

    body: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(exc.status_code).phrase,
        "status": exc.status_code,
    }
    if exc.detail and exc.detail != body["title"]:
        body["detail"] = exc.detail
    body.update(getattr(exc, "extensions", {}))
    return JSONResponse(
        body, exc.status_code, headers=exc.headers, media_type="application/problem+json"
    )


def unauthorized(message: str = "Not logged in") -> Problem:
    return Problem(401, message, {"www-authenticate": 'Cookie realm="session"'})


async def json_object(request: Request) -> dict[str, Any]:
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise Problem(415, "send the body as JSON (Content-Type: application/json)")
    try:
        value = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError) as exc:
        raise Problem(400, "the body is not valid JSON") from exc
    if not isinstance(value, dict):
        raise Problem(400, "the body must be a JSON object")
    return value


# -- auth -----------------------------------------------------------------------------------------


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, params, salt, key = stored.split("$")
        values = {k: int(v) for k, v in (item.split("=") for item in params.split(","))}
        salt_bytes, key_bytes = base64.b64decode(salt), base64.b64decode(key)
    except (ValueError, binascii.Error):
        return False
    if scheme != "scrypt":
        return False
    n, r, p = values["n"], values["r"], values["p"]
    derived = hashlib.scrypt(
        password.encode(), salt=salt_bytes, n=n, r=r, p=p, maxmem=256 * n * r + (1 << 20),
        dklen=len(key_bytes),
    )  # fmt: skip
    return hmac.compare_digest(derived, key_bytes)


async def current_user(request: Request) -> int:
    """The logged-in user's id (the session row checked, then the user), or a 401."""
    username, token = request.session.get("user"), request.session.get("sid")
    if not isinstance(username, str) or not isinstance(token, str):
        raise unauthorized()
    db: Db = request.app.state.db
    now = micros(datetime.now(timezone.utc))
    valid = await db.run(
        lambda conn: conn.execute(
            "SELECT 1 FROM sessions JOIN users ON users.id = sessions.user_id "
            "WHERE token_hash = ? AND username = ? AND expires_at > ?",
            (token_hash(token), username, now),
        ).fetchone()
    )
    if valid is None:
        raise unauthorized()
    row = await db.run(
        lambda conn: conn.execute(
            "SELECT id, username, password_hash FROM users WHERE username = ?", (username,)
        ).fetchone()
    )
    if row is None:
        raise unauthorized()
    return int(row[0])


async def login(request: Request) -> Response:
    body = await json_object(request)
    username, password = body.get("username"), body.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        raise Problem(422, None, errors=[{"field": "username", "message": "required"}])
    db: Db = request.app.state.db
    row = await db.run(
        lambda conn: conn.execute(
            "SELECT id, username, password_hash FROM users WHERE username = ?", (username,)
        ).fetchone()
    )
    loop = asyncio.get_running_loop()
    if row is None or not await loop.run_in_executor(None, verify_password, password, row[2]):
        raise unauthorized("wrong username or password")
    token = secrets.token_urlsafe(32)
    expires = micros(datetime.now(timezone.utc)) + SESSION_MAX_AGE * 1_000_000
    await db.run(
        lambda conn: conn.execute(
            "INSERT INTO sessions (token_hash, user_id, expires_at) VALUES (?, ?, ?)",
            (token_hash(token), row[0], expires),
        )
    )
    request.session.update({"user": row[1], "sid": token})
    return JSONResponse({"username": row[1]})


async def logout(request: Request) -> Response:
    token = request.session.get("sid")
    if isinstance(token, str):
        db: Db = request.app.state.db
        await db.run(
            lambda conn: conn.execute(
                "DELETE FROM sessions WHERE token_hash = ?", (token_hash(token),)
            )
        )
    request.session.clear()
    return Response(status_code=204)


async def me(request: Request) -> Response:
    await current_user(request)
    return JSONResponse({"username": request.session["user"]})


# -- notes ----------------------------------------------------------------------------------------


def encode_cursor(created_at: int, note_id: int) -> str:
    raw = json.dumps([created_at, note_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[int, int]:
    try:
        created_at, note_id = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if type(created_at) is not int or type(note_id) is not int:
            raise ValueError("not two integers")
    except (ValueError, TypeError, binascii.Error) as exc:
        raise Problem(400, "query parameter 'cursor': not a cursor this API returned") from exc
    return created_at, note_id


def query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query_params.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise Problem(400, f"query parameter {name!r}: not an integer") from None
    if not low <= value <= high:
        raise Problem(400, f"query parameter {name!r}: must be {low} to {high}")
    return value


def escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def list_notes(request: Request) -> Response:
    user_id = await current_user(request)
    limit = query_int(request, "limit", 20, 1, 100)
    cursor = request.query_params.get("cursor")
    q = request.query_params.get("q") or None
    if q is not None and len(q) > MAX_TITLE:
        raise Problem(400, f"query parameter 'q': at most {MAX_TITLE} characters")
    where, args = ["user_id = ?"], [user_id]
    if cursor:
        where.append("(created_at, id) < (?, ?)")
        args += decode_cursor(cursor)
    if q:
        where.append("(title LIKE ? ESCAPE '\\' OR body LIKE ? ESCAPE '\\')")
        args += [f"%{escape_like(q)}%"] * 2
    sql = (
        f"SELECT {NOTE_COLUMNS} FROM notes WHERE {' AND '.join(where)} "
        "ORDER BY created_at DESC, id DESC LIMIT ?"
    )
    args.append(limit + 1)
    db: Db = request.app.state.db
    rows = await db.run(lambda conn: conn.execute(sql, args).fetchall())
    next_cursor = None
    if len(rows) > limit:
        del rows[limit:]
        next_cursor = encode_cursor(rows[-1][4], rows[-1][0])
    return JSONResponse(
        {"items": [note_json(r) for r in rows], "next_cursor": next_cursor},
        headers={"cache-control": PRIVATE},
    )


def note_fields(body: dict[str, Any]) -> tuple[str, str]:
    errors = []
    title, text = body.get("title"), body.get("body", "")
    if not isinstance(title, str) or not 1 <= len(title) <= MAX_TITLE:
        errors.append({"field": "title", "message": f"1 to {MAX_TITLE} characters"})
    if not isinstance(text, str) or len(text) > MAX_BODY:
        errors.append({"field": "body", "message": f"0 to {MAX_BODY} characters"})
    if errors:
        raise Problem(422, None, errors=errors)
    assert isinstance(title, str) and isinstance(text, str)
    return title, text


async def create_note(request: Request) -> Response:
    user_id = await current_user(request)
    title, text = note_fields(await json_object(request))
    t = micros(datetime.now(timezone.utc))
    db: Db = request.app.state.db
    row = await db.run(
        lambda conn: conn.execute(
            "INSERT INTO notes (user_id, title, body, created_at, updated_at, version) "
            f"VALUES (?, ?, ?, ?, ?, 1) RETURNING {NOTE_COLUMNS}",
            (user_id, title, text, t, t),
        ).fetchone()
    )
    await db.run(
        lambda conn: conn.execute(
            "INSERT INTO note_events (user_id, kind, note_id, at) VALUES (?, ?, ?, ?)",
            (user_id, "created", row[0], time.time()),
        )
    )
    return JSONResponse(
        note_json(row),
        201,
        headers={
            "location": f"/api/notes/{row[0]}",
            "etag": f'"v{row[6]}"',
            "cache-control": PRIVATE,
        },
    )


async def get_note(request: Request) -> Response:
    user_id = await current_user(request)
    note_id: int = request.path_params["id"]
    db: Db = request.app.state.db
    row = await db.run(
        lambda conn: conn.execute(
            f"SELECT {NOTE_COLUMNS} FROM notes WHERE id = ? AND user_id = ?", (note_id, user_id)
        ).fetchone()
    )
    if row is None:
        raise Problem(404, "no such note")
    headers = {"etag": f'"v{row[6]}"', "cache-control": PRIVATE}
    if request.headers.get("if-none-match") == headers["etag"]:
        return Response(status_code=304, headers=headers)
    return JSONResponse(note_json(row), headers=headers)


# -- the app --------------------------------------------------------------------------------------


@asynccontextmanager
async def lifespan(app: Starlette) -> Any:
    app.state.db = Db(sqlite_path())
    try:
        yield
    finally:
        app.state.db.close()


app = Starlette(
    routes=[
        Route("/api/login", login, methods=["POST"]),
        Route("/api/logout", logout, methods=["POST"]),
        Route("/api/me", me, methods=["GET"]),
        Route("/api/notes", list_notes, methods=["GET"]),
        Route("/api/notes", create_note, methods=["POST"]),
        Route("/api/notes/{id:int}", get_note, methods=["GET"]),
    ],
    middleware=[
        Middleware(
            SessionMiddleware,
            secret_key=os.environ.get("NOTES_SECRET_KEY", ""),
            session_cookie="session",
            max_age=SESSION_MAX_AGE,
            same_site="lax",
            https_only=True,
        ),
        Middleware(GZipMiddleware, minimum_size=512),
    ],
    exception_handlers={HTTPException: problem_response},
    lifespan=lifespan,
)
