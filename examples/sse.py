"""Server-sent events from a broadcaster: every subscriber gets every message.

Run: python -m tophat examples.sse:app --port 8000
     curl -N 127.0.0.1:8000/events                       (subscribe; keep it open)
     curl -d 'hello' 127.0.0.1:8000/publish              (from another terminal)

Subscribers end their stream when the server stops (req.stopping), so shutdown is prompt,
and when their client leaves (req.disconnected), so a departed subscriber costs nothing more.
The broadcaster uses asyncio; with trio, swap the queue for a memory channel.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from tophat import Glitch, Request, ResponseWriter, ResponseWritten, ServerSentEvent


class Broadcaster:
    """Fan messages out to every current subscriber; a slow subscriber drops old messages."""

    def __init__(self, backlog: int = 100) -> None:
        self._queues: set[asyncio.Queue[str]] = set()
        self._backlog = backlog
        self.sent = 0

    @property
    def subscribers(self) -> int:
        return len(self._queues)

    def publish(self, message: str) -> int:
        for q in self._queues:
            if q.full():
                q.get_nowait()  # drop the oldest rather than block the publisher
            q.put_nowait(message)
        self.sent += 1
        return len(self._queues)

    async def subscribe(self, req: Request) -> AsyncIterator[ServerSentEvent]:
        q: asyncio.Queue[str] = asyncio.Queue(self._backlog)
        self._queues.add(q)
        # The stream ends when the server stops or the client leaves, whichever comes first.
        ended = {
            asyncio.ensure_future(req.stopping.wait()),
            asyncio.ensure_future(req.disconnected.wait()),
        }
        try:
            while True:
                getter = asyncio.ensure_future(q.get())
                await asyncio.wait({getter, *ended}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    return  # end the stream cleanly
                yield ServerSentEvent(getter.result(), event="message")
        finally:
            for waiter in ended:
                waiter.cancel()
            self._queues.discard(q)


broadcaster = Broadcaster()


async def app(req: Request, w: ResponseWriter) -> ResponseWritten:
    if req.path == "/events" and req.method in ("GET", "HEAD"):
        w.set_sse(broadcaster.subscribe(req))
        return await w.send()
    if req.path == "/publish" and req.method == "POST":
        n = broadcaster.publish(await req.text())
        w.set_json({"subscribers": n})
        return await w.send()
    raise Glitch.not_found()
