"""A plain ASGI app (no framework) for uvicorn and hypercorn: the same answers as tophat's
``plain`` (GET / hello, POST /echo, GET /big), with the same header fields."""

from __future__ import annotations

from typing import Any

from . import BIG, HELLO


def _start(body: bytes, content_type: bytes) -> dict[str, Any]:
    return {
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", content_type), (b"content-length", b"%d" % len(body))],
    }


_TEXT = b"text/plain; charset=utf-8"
_OCTETS = b"application/octet-stream"
_HELLO_START = _start(HELLO, _TEXT)
_HELLO_BODY = {"type": "http.response.body", "body": HELLO}
_BIG_START = _start(BIG, _OCTETS)
_BIG_BODY = {"type": "http.response.body", "body": BIG}
_NOT_FOUND = b"Not Found"


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    if path == "/":
        await send(_HELLO_START)
        await send(_HELLO_BODY)
    elif path == "/echo":
        chunks = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        await send(_start(body, _OCTETS))
        await send({"type": "http.response.body", "body": body})
    elif path == "/big":
        await send(_BIG_START)
        await send(_BIG_BODY)
    else:
        start = _start(_NOT_FOUND, _TEXT)
        start["status"] = 404
        await send(start)
        await send({"type": "http.response.body", "body": _NOT_FOUND})
