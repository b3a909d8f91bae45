"""Statements for ``events.py`` and ``files.py`` on the app's database, whichever it is.

Those two modules keep tables of their own (the SQLite change feed, the files' metadata) and
need only a few statements, so they share this small runner rather than widening the
``Database`` protocol the routes use: statements are written once with ``?`` placeholders
(turned into psycopg's ``%s``), always parametrized.

* SQLite: a connection of its own to the same file (WAL, ``busy_timeout``), on a thread of its
  own (sqlite3 blocks), opened per worker.
* PostgreSQL: connections from the app's pool (``PostgresDatabase.pool``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from examples.notes.offload import run_sync

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

    from examples.notes.context import Context

__all__ = ["Sql"]

Row = tuple[Any, ...]


class Sql:
    """Run parametrized statements on the notes database (see the module's docstring)."""

    def __init__(
        self,
        *,
        sqlite: tuple[sqlite3.Connection, ThreadPoolExecutor] | None = None,
        pool: AsyncConnectionPool[Any] | None = None,
    ) -> None:
        self._sqlite = sqlite
        self._pool = pool
        self.backend = "sqlite" if sqlite is not None else "postgresql"

    @classmethod
    async def open(cls, ctx: Context) -> Sql:
        """A runner on the database ``ctx`` uses (opened by the app's lifespan already)."""
        if ctx.settings.backend == "postgresql":
            pool = getattr(ctx.db, "pool", None)
            if pool is None:
                raise RuntimeError("the PostgreSQL database has no pool")
            return cls(pool=pool)
        path = ctx.settings.sqlite_path
        assert path is not None
        executor = ThreadPoolExecutor(1, thread_name_prefix="notes-sql")
        try:
            conn = await run_sync(lambda: _connect(path), executor)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(sqlite=(conn, executor))

    async def close(self) -> None:
        if self._sqlite is not None:
            conn, executor = self._sqlite
            await run_sync(conn.close, executor)
            executor.shutdown(wait=False)
            self._sqlite = None

    async def rows(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        """The rows ``sql`` returns (none for a statement that returns none)."""
        if self._sqlite is not None:
            conn, executor = self._sqlite

            def run() -> list[Row]:
                return [tuple(r) for r in conn.execute(sql, tuple(args)).fetchall()]

            return await run_sync(run, executor)
        assert self._pool is not None
        async with self._pool.connection() as pg:
            cur = await pg.execute(sql.replace("?", "%s"), tuple(args))
            return [tuple(r) for r in await cur.fetchall()] if cur.description else []

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        """Run ``sql``; return the number of rows it changed."""
        if self._sqlite is not None:
            conn, executor = self._sqlite
            return int(await run_sync(lambda: conn.execute(sql, tuple(args)).rowcount, executor))
        assert self._pool is not None
        async with self._pool.connection() as pg:
            cur = await pg.execute(sql.replace("?", "%s"), tuple(args))
            return int(cur.rowcount)


def _connect(path: Path) -> sqlite3.Connection:
    # isolation_level=None: autocommit, each statement its own transaction, as the app's own
    # connection; the app opened (and migrated) the file first, WAL mode included.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        # As the app's own connection: in WAL mode, durable at checkpoints, and a commit does
        # not fsync (the default FULL made every published change wait for the disk: bench/
        # notes.py measured POST /api/notes 520 -> 940 req/s with NORMAL).
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
    except BaseException:
        conn.close()
        raise
    return conn
