"""What an application is made of: an endpoint answers a request through a writer, and a
middleware wraps an endpoint into another. Plain callables, no base class."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from tophat.http.request import Request
from tophat.http.writer import ResponseWriter, ResponseWritten

__all__ = ["Endpoint", "Middleware"]

#: ``async (Request, ResponseWriter) -> ResponseWritten``: a handler, a router, a chain.
Endpoint = Callable[[Request, ResponseWriter], Awaitable[ResponseWritten]]

#: ``Endpoint -> Endpoint``: ``chain(a, b)(endpoint)`` puts ``a`` outermost.
Middleware = Callable[[Endpoint], Endpoint]
