"""notes: a REST API for personal notes on SQLite (default) or PostgreSQL, built on tophat.

Run it (``pip install 'tophat[forms]'`` for uploads; the SQLite file, a cookie key and the
uploaded files are made under ~/.local/share/tophat-notes), then open http://127.0.0.1:8000/::

    python -m tophat examples.notes:app --port 8000

    NOTES_DATABASE_URL=postgresql://notes@localhost/notes NOTES_SECRET_KEY=... \\
        python -m tophat examples.notes:app --port 8000 --workers 4   # tophat[notes]

The module's ``opts`` turn the access log on (with request ids); a flag overrides them.

Runtimes: asyncio and uvloop with either database; trio with SQLite only. psycopg's async API
runs on asyncio alone, so ``--runtime trio`` with PostgreSQL stops at startup with a message
saying so.

Configuration (``config.py``): ``NOTES_DATABASE_URL``, ``NOTES_SECRET_KEY``,
``NOTES_ALLOWED_ORIGINS``. The API, all under ``/api`` (JSON in and out; errors are RFC 9457
``application/problem+json`` for clients that accept JSON):

* ``POST /api/signup``, ``POST /api/login``, ``POST /api/logout``, ``GET /api/me``
  (``auth.py``);
* ``GET|POST /api/notes``, ``GET|PATCH|DELETE /api/notes/:id``, ``GET /api/notes.csv``
  (``notes.py``);
* ``GET /api/events``: server-sent events, one per change to the user's notes, from whichever
  worker made it (``events.py``: PostgreSQL LISTEN/NOTIFY; SQLite: a polled table);
* ``GET|POST /api/notes/:id/files``, ``GET|DELETE /api/notes/:id/files/:name`` (``files.py``;
  ``NOTES_FILES_DIR``, default ``files/`` beside the SQLite file);
* ``GET /`` and its assets: a single page (``frontend.py``, ``static/``).

The pieces: ``config.py`` (settings), ``db.py`` (the database Protocol), ``sqlite.py`` and
``postgres.py`` (its two implementations and their migrations), ``passwords.py`` (scrypt),
``context.py`` (what routes share), ``app.py`` (``create_app``: routes, middleware, lifespan).

Importing the package has no side effect: ``app`` and ``lifespan`` build the app the
environment describes when the server starts; tests build theirs with
``create_app(Settings(...))``.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator

from examples.notes.app import Notes, create_app
from examples.notes.config import ConfigError, Settings
from tophat import Request, ResponseWriter, ResponseWritten, ServerOpts

__all__ = ["ConfigError", "Notes", "Settings", "app", "create_app", "lifespan", "opts"]

#: What ``python -m tophat examples.notes:app`` serves with: the access log on (its lines carry
#: the request id the app's ``request_id()`` gives each request).
opts = ServerOpts(access_log=True)


@functools.cache
def _default() -> Notes:
    return create_app(Settings.from_env())


# ``python -m tophat examples.notes:app`` serves ``app`` and runs ``lifespan``: both the one
# app the environment describes, built by the lifespan (not at import, so that importing the
# package makes no file and reads no key). These names replace the submodule ``app`` as
# attributes of the package: import from it with ``from examples.notes.app import ...``.


async def app(req: Request, w: ResponseWriter) -> ResponseWritten:
    """The app of the environment's settings."""
    return await _default().app(req, w)


@contextlib.asynccontextmanager
async def lifespan() -> AsyncIterator[None]:
    """Its lifespan: the database opened and migrated, closed after the drain."""
    async with _default().lifespan():
        yield
