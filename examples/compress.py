"""A JSON API with compression: gzip (br and zstd too with ``pip install 'tophat[compress]'``),
negotiated per request, ETags that survive it, and a live feed that is not held back by it.

Run: python -m tophat examples.compress:app --port 8000
     curl -i --compressed 127.0.0.1:8000/items          -> 200, content-encoding: gzip (or br,
          zstd), vary: Accept-Encoding, etag: "items-1-gzip"
     curl -i 127.0.0.1:8000/items                       -> 200 as it is (no Accept-Encoding),
          vary: Accept-Encoding, etag: "items-1"
     curl -i --compressed -H 'If-None-Match: "items-1-gzip"' 127.0.0.1:8000/items   -> 304
     curl -i --compressed -X PUT -H 'If-Match: "items-1-gzip"' -d '{"name": "pen"}' \\
          127.0.0.1:8000/items/3                        -> 200 (a tag from a compressed response
          is good for If-Match); the same again -> 412, the list changed
     curl -N --compressed '127.0.0.1:8000/ticks?count=5'   -> one event a second, each as sent

The handlers know nothing of compression: ``compress()`` wraps the router, so every response
goes through it. It runs on any runtime (``--runtime asyncio|uvloop|trio``): only the ticks'
sleep needs to know which.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from tophat import Glitch, Request, ResponseWriter, ResponseWritten, ServerSentEvent
from tophat.middleware import chain
from tophat.middleware.compress import compress
from tophat.router import Router


async def sleep(seconds: float) -> None:
    """asyncio's sleep, or trio's when no asyncio loop runs."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        import trio

        await trio.sleep(seconds)
    else:
        await asyncio.sleep(seconds)


@dataclass
class Items:
    """Stands in for a database; ``version`` changes with every write (the ETag)."""

    names: dict[int, str] = field(
        default_factory=lambda: {i: f"item number {i}" for i in range(1, 101)}
    )
    version: int = 1

    @property
    def etag(self) -> str:
        return f'"items-{self.version}"'


router = Router()
router.data(Items())


@router.get("/items")
async def list_items(req: Request, w: ResponseWriter) -> ResponseWritten:
    items = req.data(Items)
    w.insert_header("etag", items.etag)
    w.insert_header("cache-control", "no-cache")  # a cache revalidates each time: 304s
    if items.etag in req.headers.get_list("if-none-match"):
        w.set_status(304)  # compress() puts the coding's suffix back on the tag
        return await w.send()
    w.set_json([{"id": i, "name": name} for i, name in items.names.items()])
    return await w.send()


@router.put("/items/:id")
async def rename_item(req: Request, w: ResponseWriter) -> ResponseWritten:
    items = req.data(Items)
    item_id = req.params.get_int("id", min=1)
    if item_id not in items.names:
        raise Glitch(404, f"no item {item_id}")
    condition = req.headers.get_list("if-match")
    if not condition:
        raise Glitch(428, "send If-Match with the ETag of /items")  # RFC 6585 §3
    if items.etag not in condition:  # compress() took its suffix off the client's tag
        raise Glitch(412, "the items changed since you read them")
    name = json.loads(await req.body()).get("name")
    if not isinstance(name, str) or not name:
        raise Glitch(422, "name must be a non-empty string")
    items.names[item_id] = name
    items.version += 1
    w.insert_header("etag", items.etag)
    w.set_json({"id": item_id, "name": name})
    return await w.send()


@router.get("/ticks")
async def ticks(req: Request, w: ResponseWriter) -> ResponseWritten:
    count = req.query.get_int("count", default=10, min=1, max=1000)
    interval = req.query.get_float("interval", default=1.0, min=0, max=60)

    async def events() -> AsyncIterator[ServerSentEvent]:
        for n in range(1, count + 1):
            yield ServerSentEvent(data=json.dumps({"tick": n}), id=str(n))
            if n < count:
                await sleep(interval)

    w.set_sse(events())  # each event is flushed through the compressor as it is yielded
    return await w.send()


app = chain(compress(min_size=256))(router)
