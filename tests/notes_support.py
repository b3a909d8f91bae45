"""The notes example's database for tests: SQLite (a temporary file) or PostgreSQL (the server
``TOPHAT_TEST_POSTGRES_URL`` names, which ``.ci/run`` starts), each test on a fresh database.

``notes_db`` is parametrized over both. Without ``TOPHAT_TEST_POSTGRES_URL`` the PostgreSQL
variant is skipped, saying so, except under ``CI=true``, where it fails: in CI none may be
skipped. On PostgreSQL each test gets a schema of its own (dropped afterwards) through the
URL's ``options=-csearch_path=...``, so tests that run at once never see each other's rows.

Use it from a test module with ``from notes_support import notes_backend, notes_db`` (pytest
then finds the fixtures there; parametrize ``notes_backend`` to pick one backend)::

    def test_x(notes_db: NotesDb) -> None:
        notes = create_app(notes_db.settings())            # in this process
        env = {**os.environ, **notes_db.env}                # or for a child server
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import pytest

from examples.notes.config import Settings
from tophat import parsers as _parse

__all__ = [
    "POSTGRES_URL_ENV",
    "TEST_KEY",
    "NotesDb",
    "notes_backend",
    "notes_db",
    "parser",
    "postgres_url",
    "runtimes_and_databases",
]

POSTGRES_URL_ENV = "TOPHAT_TEST_POSTGRES_URL"
#: A random-looking key of 40+ bytes, the kind Identity accepts.
TEST_KEY = "Rk3v9QmZ2xWp7LtB4nYc8HsJ1dFg6KaE0uTo5-notes-test-key"
#: Cheap scrypt for tests (production uses 2**15): hashing is not what they test.
TEST_SCRYPT_N = 2**10


def postgres_url() -> str:
    """The test server's URL, or skip (fail under CI=true) when there is none."""
    url = os.environ.get(POSTGRES_URL_ENV, "")
    if url:
        return url
    reason = f"{POSTGRES_URL_ENV} is not set: no PostgreSQL server to test against"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: .ci/run must start one)")
    pytest.skip(reason)


@dataclass
class NotesDb:
    """One test's database.

    Attributes:
        backend: ``"sqlite"`` or ``"postgresql"``.
        url: what ``NOTES_DATABASE_URL`` would be.
        env: the ``NOTES_*`` variables a child ``python -m tophat examples.notes:app`` needs.
    """

    backend: Literal["sqlite", "postgresql"]
    url: str
    sqlite_path: Path | None = None
    env: dict[str, str] = field(default_factory=dict)

    def settings(self, **overrides: Any) -> Settings:
        """Settings for ``create_app``: this database, the test key, cheap scrypt."""
        values: dict[str, Any] = {
            "backend": self.backend,
            "sqlite_path": self.sqlite_path,
            "postgres_url": self.url if self.backend == "postgresql" else None,
            "secret_key": TEST_KEY,
            "scrypt_n": TEST_SCRYPT_N,
            "pool_size": 4,
        }
        values.update(overrides)
        return Settings(**values)


def _with_schema(url: str, schema: str) -> str:
    options = quote(f"-csearch_path={schema}", safe="")
    return f"{url}{'&' if '?' in url else '?'}options={options}"


@pytest.fixture(params=["sqlite", "postgresql"])
def notes_backend(request: pytest.FixtureRequest) -> str:
    """``"sqlite"`` or ``"postgresql"`` (parametrize this name to choose)."""
    return str(request.param)


@pytest.fixture
def notes_db(notes_backend: str, tmp_path: Path) -> Iterator[NotesDb]:
    """A fresh notes database on each backend (see the module doc)."""
    if notes_backend == "sqlite":
        path = tmp_path / "notes.db"
        url = f"sqlite://{path}"
        yield NotesDb(
            "sqlite", url, path, {"NOTES_DATABASE_URL": url, "NOTES_SECRET_KEY": TEST_KEY}
        )
        return
    base = postgres_url()
    import psycopg

    schema = f"notes_test_{secrets.token_hex(6)}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')  # (a name we made: hex digits)
    url = _with_schema(base, schema)
    try:
        yield NotesDb(
            "postgresql", url, None, {"NOTES_DATABASE_URL": url, "NOTES_SECRET_KEY": TEST_KEY}
        )
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


_RUNTIMES: dict[str, object] = {
    "asyncio": "asyncio",
    "uvloop": ("asyncio", {"use_uvloop": True}),
    "trio": "trio",
}
_COMBOS = [
    ("asyncio", "sqlite"),
    ("uvloop", "sqlite"),
    ("trio", "sqlite"),
    ("asyncio", "postgresql"),
    ("uvloop", "postgresql"),
]


def runtimes_and_databases(metafunc: pytest.Metafunc) -> None:
    """A test module's ``pytest_generate_tests``: runtime x database, without trio x
    PostgreSQL (psycopg's async API is asyncio only); a test named for PostgreSQL runs on it
    alone."""
    if "anyio_backend" in metafunc.fixturenames and "notes_backend" in metafunc.fixturenames:
        only = "postgresql" if "postgresql" in metafunc.function.__name__ else None
        metafunc.parametrize(
            ("anyio_backend", "notes_backend"),
            [
                pytest.param(_RUNTIMES[r], db, id=f"{r}-{db}")
                for r, db in _COMBOS
                if only in (None, db)
            ],
        )


@pytest.fixture
def parser() -> str:
    """Once, with the default parser: the application is under test here, not parsing (a
    module that imports this fixture overrides conftest's per-parser one)."""
    return _parse.AUTO
