"""The server process of tests/test_shutdown_load.py.

``python -m tests.shutdown_app PORT RUNTIME PARSER WORKERS`` serves :func:`app` with
``tophat.serve`` (what ``python -m tophat`` runs) and a short shutdown grace (the CLI has no
option for it), logging as the CLI does. Every request logs ``in ID`` (its ``X-Id``) when its
endpoint starts, so the test knows which requests the server had taken before SIGTERM; quick
and slow responses say whether the server was stopping when they were made.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator

import anyio

from tophat import Request, ResponseWriter, ResponseWritten, ServerOpts, serve

GRACE = 1.5  # ServerOpts.shutdown_grace
SLOW = 0.8  # how long /slow takes, SIGTERM or not (within the grace)
TICK = 0.05  # between the pieces of /stream

log = logging.getLogger("tests.load")


async def ticks(req: Request) -> AsyncIterator[bytes]:
    """A piece per TICK until the server stops; then a last one saying so. Bounded (20 s)."""
    for n in range(400):
        if req.stopping.is_set():
            yield b"stopping\n"
            return
        yield b"tick %d\n" % n
        await anyio.sleep(TICK)


async def app(req: Request, w: ResponseWriter) -> ResponseWritten:
    rid = req.headers.get("x-id", "-")
    log.warning("in %s", rid)
    kind = req.path.strip("/")
    if kind == "echo":
        w.set_body(await req.body())
    elif kind in ("quick", "slow"):
        if kind == "slow":
            await anyio.sleep(SLOW)  # not watching req.stopping: it finishes in time anyway
        # Whether the server was stopping when the response was made (and its head written:
        # send() decides Connection: close without waiting in between).
        w.set_text(f"{kind} {rid}" + (" stopping" if req.stopping.is_set() else ""))
    elif kind == "stream":
        w.set_body(ticks(req))
    elif kind == "stubborn":
        await anyio.sleep(3600)  # ignores req.stopping: cancelled after the grace
    return await w.send()


def main(argv: list[str]) -> None:
    port, runtime, parser, workers = argv
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    opts = ServerOpts(shutdown_grace=GRACE, parser=parser)  # type: ignore[arg-type]
    serve(app, "127.0.0.1", int(port), opts=opts, runtime=runtime, workers=int(workers))  # type: ignore[arg-type]


if __name__ == "__main__":
    main(sys.argv[1:])
