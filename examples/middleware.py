"""Two custom middlewares, each a few lines: a timing header and a request id.

A middleware is a plain function from endpoint to endpoint; ``chain(a, b)`` puts ``a`` outside.
(The request id here is a teaching example: it keeps any id a client sends. The stock
``tophat.middleware.request_id.request_id()`` checks it, and reaches log records too: see
examples/request_id.py.)

Run: python -m tophat examples.middleware:app --port 8000
     curl -i 127.0.0.1:8000/            -> x-request-id and server-timing headers
"""

from __future__ import annotations

import logging
import time
import uuid

from tophat import Endpoint, Request, Response, ResponseWriter, ResponseWritten
from tophat.middleware import chain

log = logging.getLogger("examples.middleware")


def request_id(next_endpoint: Endpoint) -> Endpoint:
    """Give every request an id (or keep the client's), on the request and the response."""

    async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
        rid = req.headers.get("x-request-id") or uuid.uuid4().hex
        req.ext["request_id"] = rid  # change the request for the inner endpoints
        w.insert_header("x-request-id", rid)  # pre-set a header on the response
        return await next_endpoint(req, w)

    return endpoint


def timing(next_endpoint: Endpoint) -> Endpoint:
    """A Server-Timing header with the time the endpoint took, and a log line after sending."""

    async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
        start = time.perf_counter()

        def stamp(response: Response) -> None:  # runs just before the head is sent
            elapsed = (time.perf_counter() - start) * 1000
            response.headers.set("server-timing", f"app;dur={elapsed:.2f}")

        w.before_send(stamp)
        done = await next_endpoint(req, w)
        # Work after sending: ResponseWritten says what went out.
        log.info("%s %s -> %d, %d bytes", req.method, req.path, done.status, done.bytes_written)
        return done

    return endpoint


async def hello(req: Request, w: ResponseWriter) -> ResponseWritten:
    w.set_text(f"hello, request {req.ext['request_id']}")
    return await w.send()


app = chain(request_id, timing)(hello)
