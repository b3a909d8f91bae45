"""notes: a REST API for personal notes on SQLite (default) or PostgreSQL, built on tophat.

Run it (the SQLite file and a cookie key are made under ~/.local/share/tophat-notes)::

    python -m tophat examples.notes:app --access-log

    NOTES_DATABASE_URL=postgresql://notes@localhost/notes NOTES_SECRET_KEY=... \\
        python -m tophat examples.notes:app --access-log --workers 4

Runtimes: asyncio and uvloop with either database; trio with SQLite only. psycopg's async API
runs on asyncio alone, so ``--runtime trio`` with PostgreSQL stops at startup with a message
saying so.

Configuration (``config.py``): ``NOTES_DATABASE_URL``, ``NOTES_SECRET_KEY``,
``NOTES_ALLOWED_ORIGINS``. The API, all under ``/api`` (JSON in and out; errors are RFC 9457
``application/problem+json`` for clients that accept JSON):

* ``POST /api/signup``, ``POST /api/login``, ``POST /api/logout``, ``GET /api/me``
  (``auth.py``);
* ``GET|POST /api/notes``, ``GET|PATCH|DELETE /api/notes/:id``, ``GET /api/notes.csv``
  (``notes.py``).

The pieces: ``config.py`` (settings), ``db.py`` (the database Protocol), ``sqlite.py`` and
``postgres.py`` (its two implementations and their migrations), ``passwords.py`` (scrypt),
``context.py`` (what routes share), ``app.py`` (``create_app``: routes, middleware, lifespan).

``app`` and ``lifespan`` are made on first access from the environment, so importing the
package has no side effect (tests build their own with ``create_app(Settings(...))``).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from examples.notes.app import Notes, create_app
from examples.notes.config import ConfigError, Settings

if TYPE_CHECKING:
    from tophat import Endpoint, Lifespan

    app: Endpoint
    lifespan: Lifespan

__all__ = ["ConfigError", "Notes", "Settings", "app", "create_app", "lifespan"]


@functools.cache
def _default() -> Notes:
    return create_app(Settings.from_env())


def __getattr__(name: str) -> Any:
    # ``python -m tophat examples.notes:app`` reads ``app``, then ``lifespan``: both from the
    # one app the environment describes, built then (not at import).
    if name == "app":
        return _default().app
    if name == "lifespan":
        return _default().lifespan
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
