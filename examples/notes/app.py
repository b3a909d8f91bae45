"""Building the notes app: settings -> database, identity, routes, middleware, lifespan."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from examples.notes import auth, events, files
from examples.notes.config import Settings, secret_key
from examples.notes.context import Context
from examples.notes.db import Database
from examples.notes.frontend import frontend
from examples.notes.notes import routes as note_routes
from tophat import Endpoint
from tophat.middleware import chain
from tophat.middleware.compress import compress
from tophat.middleware.cors import cors
from tophat.middleware.identity import Identity
from tophat.middleware.request_id import request_id
from tophat.router import Router

__all__ = ["Notes", "create_app", "open_database"]

log = logging.getLogger("examples.notes")


async def open_database(settings: Settings) -> Database:
    """Open (and migrate) the configured database.

    Raises:
        RuntimeError: PostgreSQL under trio (psycopg's async API runs on asyncio only), or
            the ``notes`` extra missing.
    """
    if settings.backend == "sqlite":
        from examples.notes.sqlite import SqliteDatabase

        assert settings.sqlite_path is not None
        return await SqliteDatabase.open(settings.sqlite_path)
    from examples.notes.postgres import PostgresDatabase

    assert settings.postgres_url is not None
    return await PostgresDatabase.open(settings.postgres_url, max_size=settings.pool_size)


@dataclass(frozen=True, slots=True, eq=False)
class Notes:
    """One notes app: ``app`` to serve, ``lifespan`` to run around it (the CLI finds both)."""

    app: Endpoint
    router: Router
    ctx: Context

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """Open and migrate the database, start what the routes run beside, close both."""
        ctx = self.ctx
        db = await open_database(ctx.settings)
        ctx.db_ = db
        log.info("notes: database %s", db.description)
        try:
            async with contextlib.AsyncExitStack() as stack:
                for start in ctx.on_start:
                    await stack.enter_async_context(start(ctx))
                yield
        finally:
            ctx.db_ = None
            await db.close()


def create_app(settings: Settings | None = None) -> Notes:
    """Build the app from ``settings`` (default: the environment, see ``config.py``).

    Raises:
        ConfigError: a setting is missing or malformed.
    """
    settings = settings or Settings.from_env()
    ctx_holder: list[Context] = []

    async def session_check(username: str, session: str) -> bool:
        return await ctx_holder[0].db.session_valid(auth.token_hash(session), username)

    identity = Identity(
        secret_key(settings),
        max_age=settings.session_max_age,
        secure=settings.secure_cookies,
        same_site="lax",
        session_check=session_check,
        # Every request asks the sessions table (a primary-key lookup), so a logout on one
        # worker holds on every other at once; a ttl would trade that for fewer queries.
        session_check_ttl=0,
    )
    ctx = Context(settings, identity)
    ctx_holder.append(ctx)

    router = Router()
    router.data(ctx)
    auth.routes(router)
    note_routes(router)
    events.routes(router, ctx)  # GET /api/events (SSE; sets ctx.publish, ctx.on_start)
    files.routes(router, ctx)  # /api/notes/:id/files[/:name] (after events: it wraps publish)
    router.mount("/", frontend())  # the page and its assets (the /api routes rank above)

    middleware = [request_id()]
    if settings.allowed_origins:
        middleware.append(
            cors(
                allow_origins=settings.allowed_origins,
                allow_methods=["GET", "POST", "PATCH", "DELETE"],
                allow_headers=["content-type", "if-match", "if-none-match"],
                expose_headers=["etag", "location", "retry-after", "x-request-id"],
                allow_credentials=True,
            )
        )
    middleware += [identity.middleware, compress()]
    app = chain(*middleware)(router)
    return Notes(app, router, ctx)
