"""Startup and shutdown: a pool opened before serving, used by handlers, closed after the drain.

Run: python -m tophat examples.lifespan:app --port 8000 --workers 2
     curl 127.0.0.1:8000/        -> {"worker": 4242, "pool": 4242, "queries": 1}
     kill -TERM <the supervisor> -> each worker drains, then closes its pool

The CLI finds the module-level ``lifespan`` beside ``app`` (no flag) and runs it in every
serving process, on that process's loop: its setup before the process accepts a connection,
its teardown after the graceful drain. So each worker has a pool of its own, as a database
pool must (a connection is not shared across ``fork``). In code, pass it yourself:
``tophat.serve(app, lifespan=lifespan)``, or ``tophat.asgi.to_asgi(app, lifespan=lifespan)``
under an ASGI server. A setup that raises stops the server (exit status 1) before it accepts.

Handlers reach what the setup made through ``Router.data``: registered once, it costs a
request nothing more than the router's shared data already does.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator

from tophat import Request, ResponseWriter, ResponseWritten
from tophat.router import Router

log = logging.getLogger("examples.lifespan")


class Pool:
    """Stands in for a database pool (asyncpg's or psycopg's): opened, queried, closed."""

    def __init__(self) -> None:
        self.pid = os.getpid()  # the process that opened it
        self.queries = 0
        self.closed = False

    @classmethod
    async def open(cls) -> Pool:
        return cls()  # a real pool would connect here (and may fail: the server then stops)

    async def query(self) -> int:
        if self.closed:
            raise RuntimeError("pool is closed")
        self.queries += 1
        return self.queries

    async def close(self) -> None:
        self.closed = True


app = Router()


@contextlib.asynccontextmanager
async def lifespan() -> AsyncIterator[None]:
    pool = await Pool.open()
    app.data(pool)  # handlers: req.data(Pool)
    log.info("worker %d: pool open", pool.pid)
    try:
        yield
    finally:
        await pool.close()
        log.info("worker %d: pool closed after %d queries", pool.pid, pool.queries)


@app.get("/")
async def which_pool(req: Request, w: ResponseWriter) -> ResponseWritten:
    pool = req.data(Pool)
    queries = await pool.query()
    w.set_json({"worker": os.getpid(), "pool": pool.pid, "queries": queries})
    return await w.send()
