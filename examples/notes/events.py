"""Live changes: ``GET /api/events``, one server-sent event per change to the user's notes.

Each event names its kind and the note: ``event: created`` (``updated``, ``deleted``, or
``files`` when a note's files changed) and ``data: {"id": 12}``. Every open stream of the user
gets it, whichever worker, or machine, made the change:

* **PostgreSQL**: the change goes out as ``NOTIFY notes_events`` (through the pool, after it
  committed), and each worker holds one connection of its own that ``LISTEN``\\ s and fans the
  notifications out to its streams. The server delivers a notification to every listening
  session of the database, so this holds across machines too. A lost listener reconnects
  (backing off up to 10 s); what changed meanwhile is not replayed: the stream ends, and the
  client, reconnecting, reloads (the front-end reloads its list on every ``open``).
* **SQLite**: one row per change in the ``note_events`` table (an ``AUTOINCREMENT`` id); each
  worker reads the rows past the last id it saw every 200 ms and fans them out; rows older than
  a minute are deleted. Why a table: the workers on one machine share the database file and
  nothing else, and SQLite tells a connection nothing of another's writes (its update hook is
  per connection). The table needs no other file, no directory of sockets to clean up after a
  crashed worker, and orders the changes for free: SQLite has one writer at a time, so ids
  commit in increasing order and a reader past id N never misses one committed later. A poll
  is an index range scan of nothing, five times a second per worker; the delay is at most the
  interval. (A Unix datagram socket per worker would deliver at once, but every change would
  be sent to every peer, and dead workers would leave sockets behind.)

A stream ends cleanly when the server shuts down (``req.stopping``), when its client leaves
(``req.disconnected``), when its session was revoked (a logout anywhere: checked at each
keep-alive comment, every 15 s), or when its client falls more than 256 events behind (it
reconnects and reloads rather than see a gap). Runs on asyncio and uvloop with either database,
and on trio with SQLite.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from examples.notes.auth import token_hash
from examples.notes.context import Change, Context, current_user
from examples.notes.sql import Sql
from examples.notes.waiting import Wakeup, background, first, sleep
from tophat import Request, ResponseWriter, ResponseWritten, ServerSentEvent
from tophat.router import Router

if TYPE_CHECKING:
    from psycopg import AsyncConnection

__all__ = ["CHANNEL", "EventFeed", "Hub", "channel_for", "routes"]

log = logging.getLogger("examples.notes")

CHANNEL = "notes_events"
KEEPALIVE = 15.0  # seconds between comments on an idle stream (proxies drop silent ones)
BACKLOG = 256  # events a stream may fall behind before it is ended


def channel_for(schema: str | None) -> str:
    """The NOTIFY channel of the notes tables in ``schema``. Channels are database-wide, so
    two apps in two schemas of one database (the tests do that) get a channel each."""
    if schema in (None, "public"):
        return CHANNEL
    return f"{CHANNEL}_{hashlib.sha256(schema.encode()).hexdigest()[:16]}"


# -- fan-out to this worker's streams --------------------------------------------------------


class _Stream:
    __slots__ = ("overflowed", "pending", "since", "user_id", "wakeup")

    def __init__(self, user_id: int, since: int = 0) -> None:
        self.user_id = user_id
        self.since = since  # SQLite: the last change made before the stream opened (its id)
        self.pending: deque[ServerSentEvent] = deque()
        self.wakeup = Wakeup()
        self.overflowed = False


class Hub:
    """This worker's open streams, by user; ``deliver`` hands an event to each of a user's."""

    def __init__(self) -> None:
        self._streams: dict[int, set[_Stream]] = {}

    def __len__(self) -> int:
        return sum(len(s) for s in self._streams.values())

    def add(self, user_id: int, since: int = 0) -> _Stream:
        stream = _Stream(user_id, since)
        self._streams.setdefault(user_id, set()).add(stream)
        return stream

    def remove(self, stream: _Stream) -> None:
        streams = self._streams.get(stream.user_id)
        if streams is not None:
            streams.discard(stream)
            if not streams:
                del self._streams[stream.user_id]

    def deliver(self, user_id: int, kind: str, note_id: int, event_id: int = 0) -> None:
        streams = self._streams.get(user_id)
        if not streams:
            return
        event = ServerSentEvent(json.dumps({"id": note_id}), event=kind)
        for stream in streams:
            if event_id and event_id <= stream.since:
                continue  # made before the stream opened (the page read it already)
            if len(stream.pending) >= BACKLOG:
                stream.overflowed = True
            else:
                stream.pending.append(event)
            stream.wakeup.set()


# -- the feeds: a change in, to every worker's hub -------------------------------------------


class EventFeed:
    """Publishes changes to the database and delivers them from it to this worker's hub."""

    def __init__(self, ctx: Context, *, poll: float = 0.2, keep: float = 60.0) -> None:
        self.ctx = ctx
        self.hub = Hub()
        self.poll = poll
        self.keep = keep
        self._sql: Sql | None = None
        self._last = 0  # SQLite: the last note_events id delivered
        self._listener: AsyncConnection[Any] | None = None
        self._channel: str | None = None  # PostgreSQL: the channel, known once listening

    async def publish(self, user_id: int, kind: str, note_id: int) -> None:
        """Tell every worker's streams of ``user_id`` that ``note_id`` changed (``kind``)."""
        sql = self._sql
        if sql is None:
            log.debug("notes: change %s %d not published (the feed is not running)", kind, note_id)
            return
        if sql.backend == "postgresql":
            payload = json.dumps({"user": user_id, "kind": kind, "id": note_id})
            await sql.execute("SELECT pg_notify(?, ?)", (self._channel, payload))
        else:
            await sql.execute(
                "INSERT INTO note_events (user_id, kind, note_id, at) VALUES (?, ?, ?, ?)",
                (user_id, kind, note_id, time.time()),
            )

    async def latest(self) -> int:
        """SQLite: the id of the last change published (a stream opened now gets only later
        ones: a poll may still hold changes made just before); PostgreSQL: 0 (no ids)."""
        sql = self._sql
        if sql is None or sql.backend == "postgresql":
            return 0
        row = (await sql.rows("SELECT max(id) FROM note_events"))[0]
        return int(row[0] or 0)

    async def publish_change(self, change: Change) -> None:
        await self.publish(change.user_id, change.kind, change.note_id)

    @contextlib.asynccontextmanager
    async def running(self, ctx: Context) -> AsyncIterator[None]:
        """Listen (PostgreSQL) or poll (SQLite) while the app serves; ready when entered."""
        sql = await Sql.open(ctx)
        try:
            if sql.backend == "postgresql":
                self._listener = await self._listen()
                run = self._notifications
            else:
                row = (await sql.rows("SELECT max(id) FROM note_events"))[0]
                self._last = int(row[0] or 0)
                run = self._polls
            self._sql = sql
            async with background(run):
                yield
        finally:
            self._sql = None
            if self._listener is not None:
                await self._listener.close()
                self._listener = None
            await sql.close()

    # PostgreSQL ---------------------------------------------------------------------------------

    async def _listen(self) -> AsyncConnection[Any]:
        import psycopg

        url = self.ctx.settings.postgres_url
        assert url is not None
        conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
        try:
            if self._channel is None:
                cur = await conn.execute("SELECT current_schema()")
                row = await cur.fetchone()
                self._channel = channel_for(row[0] if row else None)
            # (a name made of [a-z0-9_] here: nothing to quote)
            await conn.execute(f"LISTEN {self._channel}")
        except BaseException:
            await conn.close()
            raise
        return conn

    async def _notifications(self) -> None:
        import psycopg

        backoff = 0.5
        while True:
            try:
                if self._listener is None:
                    self._listener = await self._listen()
                    log.info("notes: event listener reconnected")
                    backoff = 0.5
                async for note in self._listener.notifies():
                    self._deliver_json(note.payload)
            except psycopg.Error as exc:
                log.warning("notes: event listener lost (%s); retrying in %.1f s", exc, backoff)
                listener, self._listener = self._listener, None
                if listener is not None:
                    await listener.close()
                await sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    def _deliver_json(self, payload: str) -> None:
        try:
            msg = json.loads(payload)
            self.hub.deliver(int(msg["user"]), str(msg["kind"]), int(msg["id"]))
        except (ValueError, KeyError, TypeError):
            log.warning("notes: ignored a malformed notification %r", payload[:200])

    # SQLite -------------------------------------------------------------------------------------

    async def _polls(self) -> None:
        sql = self._sql
        assert sql is not None
        next_prune = 0.0
        while True:
            await sleep(self.poll)
            try:
                rows = await sql.rows(
                    "SELECT id, user_id, kind, note_id FROM note_events WHERE id > ? ORDER BY id",
                    (self._last,),
                )
                for event_id, user_id, kind, note_id in rows:
                    self.hub.deliver(user_id, kind, note_id, event_id)
                    self._last = event_id
                if time.monotonic() >= next_prune:
                    next_prune = time.monotonic() + self.keep / 4
                    cutoff = time.time() - self.keep
                    await sql.execute("DELETE FROM note_events WHERE at < ?", (cutoff,))
            except Exception:  # a busy or locked database: try again at the next poll
                log.warning("notes: polling note_events failed", exc_info=True)


# -- the route ---------------------------------------------------------------------------------


async def _events(
    feed: EventFeed, req: Request, stream: _Stream, username: str, session: str | None
) -> AsyncIterator[ServerSentEvent]:
    ctx = feed.ctx
    while not stream.overflowed:
        while stream.pending:
            yield stream.pending.popleft()
        if req.stopping.is_set() or req.disconnected.is_set():
            return
        which = await first(KEEPALIVE, stream.wakeup.wait, req.stopping.wait, req.disconnected.wait)
        if which is None:
            # Idle: has the session been revoked meanwhile (a logout on any worker)?
            if session is None or not await ctx.db.session_valid(token_hash(session), username):
                return
            yield ServerSentEvent(comment="keep-alive")
        elif which != 0:
            return  # shutting down, or the client left


async def events(req: Request, w: ResponseWriter) -> ResponseWritten:
    """``GET /api/events``: the user's changes as they happen (see the module docstring)."""
    user = await current_user(req)
    feed = req.data(EventFeed)
    # Subscribed before the head goes out: a client that saw the stream open sees every
    # change made after. Unsubscribed when the request ends, however it ends.
    stream = feed.hub.add(user.id, since=await feed.latest())
    req.on_end(lambda: feed.hub.remove(stream))
    session = req.data(Context).identity.authorized_session(req)
    w.insert_header("x-accel-buffering", "no")  # nginx: pass each event on at once
    w.set_sse(_events(feed, req, stream, user.username, session))
    return await w.send()


def routes(router: Router, ctx: Context) -> EventFeed:
    """Mount ``GET /api/events`` and make the note routes' changes go out through it."""
    feed = EventFeed(ctx)
    router.data(feed)
    ctx.publish = feed.publish_change
    ctx.on_start.append(feed.running)
    router.get("/api/events", events)
    return feed
