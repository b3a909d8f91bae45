"""Request ids in handlers, in every log line and in the access log; a handler deadline.

``request_id()`` keeps a valid ``X-Request-ID`` from the client (or a proxy) or makes one,
echoes it, and makes it readable from handlers (``current_request_id()``) and log records
(``RequestIdFilter``). ``JsonFormatter`` writes one JSON object a line, with the access log's
fields (method, path, status, bytes, duration_ms, client, request_id) when the record has them.
``/hang`` never answers by itself: ``handler_timeout`` cuts it with a 503.

Run: python -m tophat examples.request_id:app --port 8000 --access-log --handler-timeout 2 \\
         --log-config examples/request_id_logging.json
     (or: python examples/request_id.py 8000, which sets up the same itself)
     curl -i -H 'x-request-id: trace-1' 127.0.0.1:8000/   -> x-request-id: trace-1
     curl -i 127.0.0.1:8000/hang                          -> 503 after 2 s
"""

from __future__ import annotations

import json
import logging
import sys

from tophat import Request, ResponseWriter, ResponseWritten, ServerOpts, serve
from tophat.middleware import chain
from tophat.middleware.request_id import RequestIdFilter, current_request_id, request_id
from tophat.router import Router

log = logging.getLogger("examples.request_id")


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, and the fields a record carries."""

    FIELDS = ("request_id", "method", "path", "status", "bytes", "duration_ms", "client")

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in self.FIELDS:
            value = getattr(record, name, None)
            if value is not None and value != "-":
                out[name] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out)


def configure_logging() -> None:
    """What examples/request_id_logging.json does, for a script."""
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())  # on the handler: records of every logger get it
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler])


async def hello(req: Request, w: ResponseWriter) -> ResponseWritten:
    log.info("saying hello")  # this record carries the request's id
    w.set_json({"request_id": current_request_id()})
    return await w.send()


async def hang(req: Request, w: ResponseWriter) -> ResponseWritten:
    await req.disconnected.wait()  # (only the client leaving, or the deadline, ends this)
    w.set_text("never sent")
    return await w.send()


router = Router()
router.get("/", hello)
router.get("/hang", hang)

app = chain(request_id())(router)

if __name__ == "__main__":
    configure_logging()
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    serve(app, port=port, opts=ServerOpts(access_log=True, handler_timeout=2.0))
