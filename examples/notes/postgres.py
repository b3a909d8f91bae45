"""The database on PostgreSQL: psycopg 3 with a psycopg_pool ``AsyncConnectionPool``.

Why psycopg 3 rather than asyncpg: it speaks libpq's connection strings and environment
(``PGPASSFILE``, ``sslmode``, service files) as every PostgreSQL tool does, its pool is kept
by the same maintainers, and ``LISTEN``/``NOTIFY`` is an async iterator (``conn.notifies()``).
Its async API runs on asyncio (uvloop included) only: under trio, opening fails with a
message that says to use another runtime.

Each worker process has its own pool (a connection is not shared across ``fork``). Autocommit
connections: each statement is its own transaction unless a ``transaction()`` block groups
them. Migrations hold a transaction-level advisory lock, so workers starting together apply
them once, in turn.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from examples.notes.db import Conflict, Note, NoteKey, Stale, User, escape_like, now

if TYPE_CHECKING:
    from psycopg import AsyncConnection
    from psycopg_pool import AsyncConnectionPool

__all__ = ["MIGRATIONS", "PostgresDatabase"]

log = logging.getLogger("examples.notes")

#: pg_advisory_xact_lock key for migrations (any constant; "notes" in ASCII).
_MIGRATION_LOCK = 0x6E6F746573

MIGRATIONS: list[tuple[int, list[str]]] = [
    (
        1,
        [
            """CREATE TABLE users (
                id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                username text NOT NULL UNIQUE,
                password_hash text NOT NULL,
                created_at timestamptz NOT NULL)""",
            """CREATE TABLE sessions (
                token_hash text PRIMARY KEY,
                user_id bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                expires_at timestamptz NOT NULL)""",
            "CREATE INDEX sessions_expiry ON sessions (expires_at)",
            """CREATE TABLE login_failures (
                key text PRIMARY KEY,
                count integer NOT NULL,
                window_end timestamptz NOT NULL)""",
            "CREATE INDEX login_failures_end ON login_failures (window_end)",
            """CREATE TABLE notes (
                id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                user_id bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                title text NOT NULL,
                body text NOT NULL,
                created_at timestamptz NOT NULL,
                updated_at timestamptz NOT NULL,
                version integer NOT NULL)""",
            "CREATE INDEX notes_by_user ON notes (user_id, created_at DESC, id DESC)",
        ],
    ),
    (
        2,
        [
            # The files of a note (files.py); changes go out by NOTIFY (events.py), no table.
            # ("IF NOT EXISTS": before version 2, files.py made it itself.)
            """CREATE TABLE IF NOT EXISTS note_files (
                note_id bigint NOT NULL REFERENCES notes(id) ON DELETE CASCADE,
                name text NOT NULL,
                size bigint NOT NULL,
                content_type text NOT NULL,
                created_at bigint NOT NULL,
                PRIMARY KEY (note_id, name))""",
        ],
    ),
]

_NOTE_COLUMNS = "id, user_id, title, body, created_at, updated_at, version"


def _note(row: Sequence[Any]) -> Note:
    return Note(*row)


async def migrate(conn: AsyncConnection[Any]) -> int:
    """Bring the schema up to date under the advisory lock; return its version."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
        cur = await conn.execute("SELECT max(version) FROM schema_version")
        row = await cur.fetchone()
        current = int(row[0] or 0) if row is not None else 0
        for version, statements in MIGRATIONS:
            if version > current:
                for statement in statements:
                    await conn.execute(statement)
                await conn.execute("INSERT INTO schema_version VALUES (%s)", (version,))
                log.info("notes: PostgreSQL schema migrated to version %d", version)
                current = version
    return current


def _describe(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "local socket"
    where = f"{host}:{parts.port}" if parts.port else host
    return f"PostgreSQL {where}{parts.path}"


class PostgresDatabase:
    """:class:`~examples.notes.db.Database` on PostgreSQL."""

    backend: Literal["sqlite", "postgresql"] = "postgresql"

    def __init__(self, pool: AsyncConnectionPool[Any], url: str) -> None:
        self.pool = pool  # public: events.py takes a connection for LISTEN
        self.url = url
        self.description = _describe(url)

    @classmethod
    async def open(cls, url: str, *, max_size: int = 10) -> PostgresDatabase:
        """Open a pool (waiting for its first connection) and migrate.

        Raises:
            RuntimeError: not on asyncio, or psycopg missing (the ``notes`` extra).
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "the notes app on PostgreSQL runs on asyncio or uvloop (psycopg's async API "
                "is asyncio-only): use --runtime asyncio or --runtime uvloop, or SQLite on trio"
            ) from None
        try:
            from psycopg_pool import AsyncConnectionPool
        except ImportError:
            raise RuntimeError(
                "PostgreSQL needs psycopg and psycopg_pool: pip install 'tophat[notes]'"
            ) from None
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            url, min_size=1, max_size=max_size, open=False, kwargs={"autocommit": True}
        )
        await pool.open(wait=True, timeout=10)
        try:
            async with pool.connection() as conn:
                await migrate(conn)
        except BaseException:
            await pool.close()
            raise
        return cls(pool, url)

    async def close(self) -> None:
        await self.pool.close()

    async def _one(self, sql: str, args: Sequence[Any]) -> tuple[Any, ...] | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(sql, args)
            row: tuple[Any, ...] | None = await cur.fetchone()
            return row

    async def _rowcount(self, sql: str, args: Sequence[Any]) -> int:
        async with self.pool.connection() as conn:
            cur = await conn.execute(sql, args)
            return int(cur.rowcount)

    # -- users and sessions ---------------------------------------------------------------------

    async def create_user(self, username: str, password_hash: str) -> User:
        from psycopg.errors import UniqueViolation

        try:
            row = await self._one(
                "INSERT INTO users (username, password_hash, created_at) VALUES (%s, %s, %s) "
                "RETURNING id",
                (username, password_hash, now()),
            )
        except UniqueViolation as exc:
            raise Conflict(username) from exc
        assert row is not None
        return User(row[0], username, password_hash)

    async def user_by_name(self, username: str) -> User | None:
        row = await self._one(
            "SELECT id, username, password_hash FROM users WHERE username = %s", (username,)
        )
        return User(*row) if row is not None else None

    async def set_password_hash(self, user_id: int, password_hash: str) -> None:
        await self._rowcount(
            "UPDATE users SET password_hash = %s WHERE id = %s", (password_hash, user_id)
        )

    async def create_session(self, token_hash: str, user_id: int, expires_at: datetime) -> None:
        async with self.pool.connection() as conn:
            await conn.execute("DELETE FROM sessions WHERE expires_at <= %s", (now(),))
            await conn.execute(
                "INSERT INTO sessions (token_hash, user_id, expires_at) VALUES (%s, %s, %s)",
                (token_hash, user_id, expires_at),
            )

    async def session_valid(self, token_hash: str, username: str) -> bool:
        row = await self._one(
            "SELECT 1 FROM sessions JOIN users ON users.id = sessions.user_id "
            "WHERE token_hash = %s AND username = %s AND expires_at > %s",
            (token_hash, username, now()),
        )
        return row is not None

    async def delete_session(self, token_hash: str) -> None:
        await self._rowcount("DELETE FROM sessions WHERE token_hash = %s", (token_hash,))

    # -- login rate limits ----------------------------------------------------------------------

    async def count_failure(self, key: str, window: float) -> None:
        t = now()
        async with self.pool.connection() as conn:
            await conn.execute(
                "DELETE FROM login_failures WHERE window_end <= %s AND key <> %s", (t, key)
            )
            # One statement: concurrent failures from several workers all count.
            await conn.execute(
                "INSERT INTO login_failures AS f (key, count, window_end) VALUES (%s, 1, %s) "
                "ON CONFLICT (key) DO UPDATE SET "
                "count = CASE WHEN f.window_end <= %s THEN 1 ELSE f.count + 1 END, "
                "window_end = CASE WHEN f.window_end <= %s THEN excluded.window_end "
                "ELSE f.window_end END",
                (key, t + timedelta(seconds=window), t, t),
            )

    async def failures(self, key: str) -> tuple[int, datetime] | None:
        row = await self._one("SELECT count, window_end FROM login_failures WHERE key = %s", (key,))
        return (row[0], row[1]) if row is not None else None

    async def clear_failures(self, key: str) -> None:
        await self._rowcount("DELETE FROM login_failures WHERE key = %s", (key,))

    # -- notes ----------------------------------------------------------------------------------

    async def create_note(self, user_id: int, title: str, body: str) -> Note:
        t = now()
        row = await self._one(
            "INSERT INTO notes (user_id, title, body, created_at, updated_at, version) "
            f"VALUES (%s, %s, %s, %s, %s, 1) RETURNING {_NOTE_COLUMNS}",
            (user_id, title, body, t, t),
        )
        assert row is not None
        return _note(row)

    async def get_note(self, user_id: int, note_id: int) -> Note | None:
        row = await self._one(
            f"SELECT {_NOTE_COLUMNS} FROM notes WHERE id = %s AND user_id = %s",
            (note_id, user_id),
        )
        return _note(row) if row is not None else None

    async def list_notes(
        self, user_id: int, limit: int, after: NoteKey | None = None, q: str | None = None
    ) -> Sequence[Note]:
        where = ["user_id = %s"]
        args: list[Any] = [user_id]
        if after is not None:
            where.append("(created_at, id) < (%s, %s)")
            args += [after[0], after[1]]
        if q:
            where.append("(title ILIKE %s ESCAPE '\\' OR body ILIKE %s ESCAPE '\\')")
            pattern = f"%{escape_like(q)}%"
            args += [pattern, pattern]
        args.append(limit)
        sql = (
            f"SELECT {_NOTE_COLUMNS} FROM notes WHERE {' AND '.join(where)} "
            "ORDER BY created_at DESC, id DESC LIMIT %s"
        )
        async with self.pool.connection() as conn:
            cur = await conn.execute(sql, args)
            return [_note(row) for row in await cur.fetchall()]

    async def update_note(
        self, user_id: int, note_id: int, version: int | None, title: str, body: str
    ) -> Note | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE notes SET title = %s, body = %s, updated_at = %s, version = version + 1 "
                "WHERE id = %s AND user_id = %s AND (%s::integer IS NULL OR version = %s) "
                f"RETURNING {_NOTE_COLUMNS}",
                (title, body, now(), note_id, user_id, version, version),
            )
            row = await cur.fetchone()
            if row is not None:
                return _note(row)
            cur = await conn.execute(
                "SELECT 1 FROM notes WHERE id = %s AND user_id = %s", (note_id, user_id)
            )
            if await cur.fetchone() is not None:
                raise Stale(note_id)
            return None

    async def delete_note(self, user_id: int, note_id: int) -> bool:
        count = await self._rowcount(
            "DELETE FROM notes WHERE id = %s AND user_id = %s", (note_id, user_id)
        )
        return count > 0
