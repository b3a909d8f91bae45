"""The app bench/rss_bench.py measures: 100 MiB streamed down and up, never held in memory.

GET  /                 -> "ok" (warm-up)
GET  /download         -> SIZE bytes from an async generator, no length: chunked
GET  /download-sized   -> the same with length=SIZE: Content-Length
POST /upload           -> reads ``async for chunk in req.stream()``, answers the byte count
POST /upload-slow      -> the same, but the handler sleeps 1 ms per piece (a slow consumer:
                          the server must stop reading from the socket instead of buffering)

SIZE defaults to 100 MiB; ``?size=N`` overrides it for a download.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from tophat import Glitch, Request, ResponseWriter, ResponseWritten

CHUNK = 64 * 1024
SIZE = 100 * 1024 * 1024  # 1600 chunks of 64 KiB


async def _chunks(total: int) -> AsyncIterator[bytes]:
    sent = 0
    i = 0
    while sent < total:
        n = min(CHUNK, total - sent)
        # A fresh object every time (no shared buffer), so anything the server keeps costs RSS.
        yield bytes((i % 251,)) * n
        sent += n
        i += 1


def _size(req: Request) -> int:
    raw = req.query.get("size")
    if raw is None:
        return SIZE
    if not raw.isdigit():
        raise Glitch(400, "size must be a non-negative integer")
    return int(raw)


async def app(req: Request, w: ResponseWriter) -> ResponseWritten:
    path = req.path
    if path == "/download" and req.method == "GET":
        w.insert_header("content-type", "application/octet-stream")
        w.set_body(_chunks(_size(req)))
        return await w.send()
    if path == "/download-sized" and req.method == "GET":
        size = _size(req)
        w.insert_header("content-type", "application/octet-stream")
        w.set_body(_chunks(size), length=size)
        return await w.send()
    if path in ("/upload", "/upload-slow") and req.method == "POST":
        slow = path == "/upload-slow"
        total = 0
        async for chunk in req.stream():
            total += len(chunk)
            if slow:
                await asyncio.sleep(0.001)
        w.set_text(str(total))
        return await w.send()
    if path == "/upload-buffered" and req.method == "POST":
        w.set_text(str(len(await req.body())))
        return await w.send()
    if path == "/":
        w.set_text("ok")
        return await w.send()
    raise Glitch(404)
