"""Work after sending: the handler logs how many bytes went out.

Run: python -m tophat examples.bytes_written:app --port 8000
"""

import logging

from tophat import Request, ResponseWriter, ResponseWritten

log = logging.getLogger("examples.bytes_written")


async def app(req: Request, w: ResponseWriter) -> ResponseWritten:
    w.set_text("a" * 1000)
    done = await w.send()  # the response is on the wire now
    log.info("sent %d body bytes with status %d", done.bytes_written, done.status)
    return done
