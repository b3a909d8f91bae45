"""tophat: a small, pragmatic, flexible async HTTP/1.1 server library.

A handler is handed a :class:`ResponseWriter`, writes through it, and returns the proof that it
did (:class:`ResponseWritten`)::

    async def hello(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.set_text("Hello, world!")
        return await w.send()
"""

from __future__ import annotations

from tophat.glitch import Glitch
from tophat.http.cookies import Cookies
from tophat.http.endpoint import Endpoint
from tophat.http.forms import FormData, UploadFile
from tophat.http.headers import HeaderError, Headers
from tophat.http.params import Params
from tophat.http.request import Query, Request, Stopping
from tophat.http.writer import Response, ResponseWriter, ResponseWritten, ServerSentEvent
from tophat.runtime.asyncio.server import Server, start_server
from tophat.runtime.asyncio.server import serve as serve_asyncio
from tophat.runtime.serve import Lifespan, LifespanFailed, MissingExtra, Runtime, serve, serve_trio
from tophat.server.connection import accept
from tophat.server.opts import ServerOpts
from tophat.server.stream import Phase, Stream, StreamClosed, StreamTimeout

__version__ = "0.1.0"

__all__ = [
    "Cookies",
    "Endpoint",
    "FormData",
    "Glitch",
    "HeaderError",
    "Headers",
    "Lifespan",
    "LifespanFailed",
    "MissingExtra",
    "Params",
    "Phase",
    "Query",
    "Request",
    "Response",
    "ResponseWriter",
    "ResponseWritten",
    "Runtime",
    "Server",
    "ServerOpts",
    "ServerSentEvent",
    "Stopping",
    "Stream",
    "StreamClosed",
    "StreamTimeout",
    "UploadFile",
    "accept",
    "serve",
    "serve_asyncio",
    "serve_trio",
    "start_server",
]
