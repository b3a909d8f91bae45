"""The database on SQLite: the standard library's sqlite3, off the event loop.

Each worker process opens one connection and runs every statement on one thread of its own
(a single-thread executor: sqlite3 connections belong to a thread, and one thread also
serializes this worker's statements without a lock). Across workers, SQLite's own locking
applies: WAL mode lets readers run beside the one writer, and ``busy_timeout`` makes a
writer wait for another worker's write instead of failing at once.

Migrations run in one ``BEGIN IMMEDIATE`` transaction, which takes the write lock first: two
workers starting together apply them once, the second finding the version already raised.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, TypeVar

from examples.notes.db import Conflict, Note, NoteKey, Stale, User, escape_like, now
from examples.notes.offload import run_sync

__all__ = ["MIGRATIONS", "SqliteDatabase"]

log = logging.getLogger("examples.notes")
T = TypeVar("T")

#: (version, statements): applied in order, each version once; never edit a shipped one,
#: add the next. Times are integer microseconds since the epoch, UTC.
MIGRATIONS: list[tuple[int, list[str]]] = [
    (
        1,
        [
            """CREATE TABLE users (
                id INTEGER PRIMARY KEY,
                username TEXT NOT NULL UNIQUE,
                password_hash TEXT NOT NULL,
                created_at INTEGER NOT NULL)""",
            """CREATE TABLE sessions (
                token_hash TEXT PRIMARY KEY,
                user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                expires_at INTEGER NOT NULL)""",
            "CREATE INDEX sessions_expiry ON sessions (expires_at)",
            """CREATE TABLE login_failures (
                key TEXT PRIMARY KEY,
                count INTEGER NOT NULL,
                window_end INTEGER NOT NULL)""",
            "CREATE INDEX login_failures_end ON login_failures (window_end)",
            """CREATE TABLE notes (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                title TEXT NOT NULL,
                body TEXT NOT NULL,
                created_at INTEGER NOT NULL,
                updated_at INTEGER NOT NULL,
                version INTEGER NOT NULL)""",
            "CREATE INDEX notes_by_user ON notes (user_id, created_at DESC, id DESC)",
        ],
    ),
    (
        2,
        [
            # The files of a note (files.py) and the changes every worker polls (events.py).
            # ("IF NOT EXISTS": before version 2, those modules made them themselves.)
            """CREATE TABLE IF NOT EXISTS note_files (
                note_id INTEGER NOT NULL REFERENCES notes(id) ON DELETE CASCADE,
                name TEXT NOT NULL,
                size INTEGER NOT NULL,
                content_type TEXT NOT NULL,
                created_at INTEGER NOT NULL,
                PRIMARY KEY (note_id, name))""",
            """CREATE TABLE IF NOT EXISTS note_events (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                user_id INTEGER NOT NULL,
                kind TEXT NOT NULL,
                note_id INTEGER NOT NULL,
                at REAL NOT NULL)""",
            "CREATE INDEX IF NOT EXISTS note_events_at ON note_events (at)",
        ],
    ),
]

_NOTE_COLUMNS = "id, user_id, title, body, created_at, updated_at, version"


def _us(when: datetime) -> int:
    return int(when.timestamp()) * 1_000_000 + when.microsecond


def _dt(us: int) -> datetime:
    return datetime.fromtimestamp(us // 1_000_000, timezone.utc).replace(microsecond=us % 1_000_000)


def _note(row: Sequence[Any]) -> Note:
    return Note(row[0], row[1], row[2], row[3], _dt(row[4]), _dt(row[5]), row[6])


def _wal(conn: sqlite3.Connection) -> None:
    """Switch to WAL mode (kept in the file: once is enough, later calls change nothing).

    The switch needs the file to itself, and SQLite does not run the busy handler for it: a
    worker that starts while another migrates gets "database is locked" at once. So retry,
    for about as long as ``busy_timeout`` would have waited.
    """
    for attempt in range(100):
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == 99:
                raise
            time.sleep(0.05)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to date; return the version it is at."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
        current = row[0] or 0
        for version, statements in MIGRATIONS:
            if version > current:
                for statement in statements:
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
                log.info("notes: SQLite schema migrated to version %d", version)
                current = version
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return int(current)


class SqliteDatabase:
    """:class:`~examples.notes.db.Database` on one SQLite file."""

    backend: Literal["sqlite", "postgresql"] = "sqlite"

    def __init__(self, conn: sqlite3.Connection, executor: ThreadPoolExecutor, path: Path):
        self._conn = conn
        self._executor = executor
        self.description = f"SQLite {path}"

    @classmethod
    async def open(cls, path: Path) -> SqliteDatabase:
        """Open (creating the file and its directory on first start) and migrate."""
        executor = ThreadPoolExecutor(1, thread_name_prefix="notes-sqlite")

        def connect() -> sqlite3.Connection:
            created = not path.exists()
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # isolation_level=None: autocommit; transactions are explicit (BEGIN ... COMMIT).
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            try:
                conn.execute("PRAGMA busy_timeout = 5000")
                _wal(conn)
                conn.execute("PRAGMA synchronous = NORMAL")  # durable at checkpoints, in WAL
                conn.execute("PRAGMA foreign_keys = ON")
                migrate(conn)
            except BaseException:
                conn.close()
                raise
            if created:
                path.chmod(0o600)
                log.info("notes: created the SQLite database %s", path)
            return conn

        try:
            conn = await run_sync(connect, executor)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(conn, executor, path)

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._conn
        return await run_sync(lambda: fn(conn), self._executor)

    async def close(self) -> None:
        await self._run(lambda conn: conn.close())
        self._executor.shutdown(wait=True)

    # -- users and sessions ---------------------------------------------------------------------

    async def create_user(self, username: str, password_hash: str) -> User:
        def insert(conn: sqlite3.Connection) -> User:
            try:
                cur = conn.execute(
                    "INSERT INTO users (username, password_hash, created_at) VALUES (?, ?, ?)",
                    (username, password_hash, _us(now())),
                )
            except sqlite3.IntegrityError as exc:
                raise Conflict(username) from exc
            assert cur.lastrowid is not None
            return User(cur.lastrowid, username, password_hash)

        return await self._run(insert)

    async def user_by_name(self, username: str) -> User | None:
        def select(conn: sqlite3.Connection) -> User | None:
            row = conn.execute(
                "SELECT id, username, password_hash FROM users WHERE username = ?", (username,)
            ).fetchone()
            return User(*row) if row is not None else None

        return await self._run(select)

    async def set_password_hash(self, user_id: int, password_hash: str) -> None:
        await self._run(
            lambda conn: conn.execute(
                "UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id)
            )
        )

    async def create_session(self, token_hash: str, user_id: int, expires_at: datetime) -> None:
        def insert(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM sessions WHERE expires_at <= ?", (_us(now()),))
            conn.execute(
                "INSERT INTO sessions (token_hash, user_id, expires_at) VALUES (?, ?, ?)",
                (token_hash, user_id, _us(expires_at)),
            )

        await self._run(insert)

    async def session_valid(self, token_hash: str, username: str) -> bool:
        def select(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT 1 FROM sessions JOIN users ON users.id = sessions.user_id "
                "WHERE token_hash = ? AND username = ? AND expires_at > ?",
                (token_hash, username, _us(now())),
            ).fetchone()
            return row is not None

        return await self._run(select)

    async def delete_session(self, token_hash: str) -> None:
        await self._run(
            lambda conn: conn.execute("DELETE FROM sessions WHERE token_hash = ?", (token_hash,))
        )

    # -- login rate limits ----------------------------------------------------------------------

    async def count_failure(self, key: str, window: float) -> None:
        def upsert(conn: sqlite3.Connection) -> None:
            t = _us(now())
            end = t + int(window * 1_000_000)
            conn.execute("DELETE FROM login_failures WHERE window_end <= ? AND key != ?", (t, key))
            # One statement: concurrent failures from several workers all count.
            conn.execute(
                "INSERT INTO login_failures (key, count, window_end) VALUES (?, 1, ?) "
                "ON CONFLICT (key) DO UPDATE SET "
                "count = CASE WHEN window_end <= ? THEN 1 ELSE count + 1 END, "
                "window_end = CASE WHEN window_end <= ? THEN excluded.window_end "
                "ELSE window_end END",
                (key, end, t, t),
            )

        await self._run(upsert)

    async def failures(self, key: str) -> tuple[int, datetime] | None:
        def select(conn: sqlite3.Connection) -> tuple[int, datetime] | None:
            row = conn.execute(
                "SELECT count, window_end FROM login_failures WHERE key = ?", (key,)
            ).fetchone()
            return (row[0], _dt(row[1])) if row is not None else None

        return await self._run(select)

    async def clear_failures(self, key: str) -> None:
        await self._run(
            lambda conn: conn.execute("DELETE FROM login_failures WHERE key = ?", (key,))
        )

    # -- notes ----------------------------------------------------------------------------------

    async def create_note(self, user_id: int, title: str, body: str) -> Note:
        def insert(conn: sqlite3.Connection) -> Note:
            t = now()
            row = conn.execute(
                "INSERT INTO notes (user_id, title, body, created_at, updated_at, version) "
                f"VALUES (?, ?, ?, ?, ?, 1) RETURNING {_NOTE_COLUMNS}",
                (user_id, title, body, _us(t), _us(t)),
            ).fetchone()
            return _note(row)

        return await self._run(insert)

    async def get_note(self, user_id: int, note_id: int) -> Note | None:
        def select(conn: sqlite3.Connection) -> Note | None:
            row = conn.execute(
                f"SELECT {_NOTE_COLUMNS} FROM notes WHERE id = ? AND user_id = ?",
                (note_id, user_id),
            ).fetchone()
            return _note(row) if row is not None else None

        return await self._run(select)

    async def list_notes(
        self, user_id: int, limit: int, after: NoteKey | None = None, q: str | None = None
    ) -> Sequence[Note]:
        where = ["user_id = ?"]
        args: list[Any] = [user_id]
        if after is not None:
            # Row values (SQLite 3.15+): (created_at, id) strictly before the cursor's.
            where.append("(created_at, id) < (?, ?)")
            args += [_us(after[0]), after[1]]
        if q:
            # LIKE is case-insensitive for ASCII in SQLite; the pattern is a parameter.
            where.append("(title LIKE ? ESCAPE '\\' OR body LIKE ? ESCAPE '\\')")
            pattern = f"%{escape_like(q)}%"
            args += [pattern, pattern]
        sql = (
            f"SELECT {_NOTE_COLUMNS} FROM notes WHERE {' AND '.join(where)} "
            "ORDER BY created_at DESC, id DESC LIMIT ?"
        )
        args.append(limit)

        def select(conn: sqlite3.Connection) -> list[Note]:
            return [_note(row) for row in conn.execute(sql, args)]

        return await self._run(select)

    async def update_note(
        self, user_id: int, note_id: int, version: int | None, title: str, body: str
    ) -> Note | None:
        def update(conn: sqlite3.Connection) -> Note | None:
            row = conn.execute(
                "UPDATE notes SET title = ?, body = ?, updated_at = ?, version = version + 1 "
                "WHERE id = ? AND user_id = ? AND (? IS NULL OR version = ?) "
                f"RETURNING {_NOTE_COLUMNS}",
                (title, body, _us(now()), note_id, user_id, version, version),
            ).fetchone()
            if row is not None:
                return _note(row)
            exists = conn.execute(
                "SELECT 1 FROM notes WHERE id = ? AND user_id = ?", (note_id, user_id)
            ).fetchone()
            if exists is not None:
                raise Stale(note_id)
            return None

        return await self._run(update)

    async def delete_note(self, user_id: int, note_id: int) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            cur = conn.execute("DELETE FROM notes WHERE id = ? AND user_id = ?", (note_id, user_id))
            return cur.rowcount > 0

        return await self._run(delete)
