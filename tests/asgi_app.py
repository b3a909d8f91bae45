"""The endpoints tests/test_asgi.py runs under tophat's server, uvicorn, hypercorn and gunicorn.

``gunicorn -k uvicorn.workers.UvicornWorker tests.asgi_app:app`` serves ``app``; the tests build
their own with :func:`make_app` (other limits) and read what handlers report in ``REPORTS``.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

import anyio

from tophat import Glitch, Request, ResponseWriter, ResponseWritten, ServerOpts
from tophat.asgi import ASGIApp, to_asgi
from tophat.router import Router

#: What handlers observed after (or instead of) sending: ``(label, value)`` pairs.
REPORTS: list[tuple[str, Any]] = []
#: Lifespan hooks of ``app`` append here.
LIFESPAN: list[str] = []

router = Router()


@router.get("/hello")
async def hello(req: Request, w: ResponseWriter) -> ResponseWritten:
    w.set_text("Hello, world!")
    return await w.send()


@router.get("/json")
async def json_(req: Request, w: ResponseWriter) -> ResponseWritten:
    w.set_json(
        {
            "method": req.method,
            "path": req.path,
            "raw_path": req.raw_path,
            "root_path": req.root_path,
            "query": req.query.items(),
            "version": req.version,
            "scheme": req.scheme,
            "client": req.client[0] if req.client else None,
            "x-test": req.headers.get_all("x-test"),
        }
    )
    return await w.send()


@router.get("/path/*rest")
async def path(req: Request, w: ResponseWriter) -> ResponseWritten:
    w.set_json({"path": req.path, "raw_path": req.raw_path, "rest": req.params["rest"]})
    return await w.send()


@router.post("/echo")
async def echo(req: Request, w: ResponseWriter) -> ResponseWritten:
    """Streams the request body back as it arrives (chunked: no length is declared)."""
    content_type = req.headers.get("content-type")
    if content_type is not None:
        w.insert_header("content-type", content_type)
    w.set_body(req.stream())
    return await w.send()


@router.post("/upload")
async def upload(req: Request, w: ResponseWriter) -> ResponseWritten:
    """Reads the body piece by piece, never whole; answers its size and digest (and reports
    how many pieces it came in: that depends on the server)."""
    digest, size, pieces = hashlib.sha256(), 0, 0
    async for piece in req.stream():
        digest.update(piece)
        size += len(piece)
        pieces += 1
    REPORTS.append(("upload", (size, pieces)))
    w.set_json({"size": size, "sha256": digest.hexdigest()})
    return await w.send()


@router.post("/read")
async def read(req: Request, w: ResponseWriter) -> ResponseWritten:
    """Reads the whole body; reports what reading raised (a client that left, for one)."""
    try:
        body = await req.body()
    except (OSError, Glitch) as exc:
        REPORTS.append(("read", exc))
        raise
    w.set_text(f"{len(body)} bytes")
    return await w.send()


@router.get("/glitch")
async def glitch(req: Request, w: ResponseWriter) -> ResponseWritten:
    w.insert_header("x-before", "kept")
    w.insert_header("content-language", "en")  # the glitch's body replaces it
    raise Glitch(403, "no entry", headers={"x-glitch": "yes"})


@router.get("/boom")
async def boom(req: Request, w: ResponseWriter) -> ResponseWritten:
    raise RuntimeError("boom")


@router.get("/nosend")
async def nosend(req: Request, w: ResponseWriter) -> ResponseWritten:
    w.set_text("never sent")
    return None  # type: ignore[return-value]  # the bug the server reports


@router.get("/empty")
async def empty(req: Request, w: ResponseWriter) -> ResponseWritten:
    w.set_status(204)
    w.set_text("dropped: a 204 has no content")
    return await w.send()


@router.get("/notmod")
async def notmod(req: Request, w: ResponseWriter) -> ResponseWritten:
    w.set_status(304)
    w.insert_header("etag", '"v1"')
    return await w.send()


@router.get("/framing")
async def framing(req: Request, w: ResponseWriter) -> ResponseWritten:
    """Framing and connection headers set by hand are never trusted."""
    w.insert_header("content-length", "999")
    w.insert_header("transfer-encoding", "gzip")
    w.insert_header("keep-alive", "timeout=99")
    w.insert_header("connection", "keep-alive")
    w.append_header("set-cookie", "a=1")
    w.append_header("set-cookie", "b=2")
    w.set_text("framed by the server")
    return await w.send()


async def _pieces(n: int, delay: float = 0.0) -> AsyncIterator[bytes]:
    for i in range(n):
        if delay:
            await anyio.sleep(delay)
        yield b"piece %d\n" % i


@router.get("/stream")
async def stream(req: Request, w: ResponseWriter) -> ResponseWritten:
    w.insert_header("content-type", "text/plain")
    w.set_body(_pieces(5))
    return await w.send()


@router.get("/stream-length")
async def stream_length(req: Request, w: ResponseWriter) -> ResponseWritten:
    w.set_body(_pieces(3), length=24)
    return await w.send()


@router.get("/written")
async def written(req: Request, w: ResponseWriter) -> ResponseWritten:
    w.before_send(lambda r: r.headers.set("x-hook", str(r.length)))
    w.set_text("a" * 1000)
    done = await w.send()
    REPORTS.append(("written", (req.method, done.status, done.bytes_written)))
    REPORTS.append(("headers", done.headers.get("content-length")))
    return done


@router.get("/written-stream")
async def written_stream(req: Request, w: ResponseWriter) -> ResponseWritten:
    w.set_body(_pieces(4))
    done = await w.send()
    REPORTS.append(("written", (req.method, done.status, done.bytes_written)))
    return done


async def _forever() -> AsyncIterator[bytes]:
    try:
        while True:
            yield b"x" * 1024
            await anyio.sleep(0.005)
    finally:
        REPORTS.append(("closed", "forever"))


@router.get("/forever")
async def forever(req: Request, w: ResponseWriter) -> ResponseWritten:
    """Streams until the client leaves; reports what ``send()`` raised then."""
    w.set_body(_forever())
    try:
        return await w.send()
    except OSError as exc:
        REPORTS.append(("forever", exc))
        raise


async def _fails_late() -> AsyncIterator[bytes]:
    yield b"first piece\n"
    raise RuntimeError("failed after the head went out")


@router.get("/late-error")
async def late_error(req: Request, w: ResponseWriter) -> ResponseWritten:
    w.set_body(_fails_late())
    return await w.send()


async def _fails_early() -> AsyncIterator[bytes]:
    raise ValueError("failed before the first piece")
    yield b""  # pragma: no cover - makes this an async generator


@router.get("/early-error")
async def early_error(req: Request, w: ResponseWriter) -> ResponseWritten:
    w.insert_header("x-before", "kept")
    w.set_body(_fails_early())
    return await w.send()


@router.get("/lifespan")
async def lifespan(req: Request, w: ResponseWriter) -> ResponseWritten:
    w.set_json(LIFESPAN)
    return await w.send()


def make_app(opts: ServerOpts | None = None, **kw: Any) -> ASGIApp:
    return to_asgi(router, opts=opts, **kw)


async def _started() -> None:
    LIFESPAN.append("startup")


def _stopped() -> None:  # a plain callable is fine too
    LIFESPAN.append("shutdown")


app = to_asgi(router, on_startup=[_started], on_shutdown=[_stopped])
