"""An endpoint that says which process answered (for the worker tests)."""

import os

from tophat import Request, ResponseWriter, ResponseWritten


async def app(req: Request, w: ResponseWriter) -> ResponseWritten:
    w.set_text(str(os.getpid()))
    return await w.send()
