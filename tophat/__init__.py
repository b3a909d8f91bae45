"""tophat: a small, pragmatic, flexible async HTTP/1.1 server library.

A handler is handed a :class:`ResponseWriter`, writes through it, and returns the proof that it
did (:class:`ResponseWritten`)::

    async def hello(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.set_text("Hello, world!")
        return await w.send()
"""

from __future__ import annotations

from ._asyncio import Server, start_server
from ._asyncio import serve as serve_asyncio
from ._connection import Endpoint, accept
from ._headers import HeaderError, Headers
from ._opts import ServerOpts
from ._request import Query, Request, Stopping
from ._serve import MissingExtra, Runtime, serve, serve_trio
from ._stream import Phase, Stream, StreamClosed, StreamTimeout
from ._writer import Response, ResponseWriter, ResponseWritten, ServerSentEvent
from .glitch import Glitch

__version__ = "0.1.0"

__all__ = [
    "Endpoint",
    "Glitch",
    "HeaderError",
    "Headers",
    "MissingExtra",
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
    "accept",
    "serve",
    "serve_asyncio",
    "serve_trio",
    "start_server",
]
