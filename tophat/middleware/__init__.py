"""Middleware: plain higher-order functions ``Endpoint -> Endpoint``.

No base class, no registry. A middleware is a closure::

    def timing(next_: Endpoint) -> Endpoint:
        async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
            start = time.perf_counter()
            w.insert_header("x-started", str(start))
            return await next_(req, w)
        return endpoint

``chain(a, b, c)(endpoint)`` puts ``a`` outermost: a request passes a, then b, then c.
"""

from __future__ import annotations

from collections.abc import Callable

from .._connection import Endpoint

__all__ = ["Middleware", "chain"]

Middleware = Callable[[Endpoint], Endpoint]


def chain(*middlewares: Middleware) -> Middleware:
    """Compose middlewares into one; the first is outermost."""

    def apply(endpoint: Endpoint) -> Endpoint:
        for middleware in reversed(middlewares):
            endpoint = middleware(endpoint)
        return endpoint

    return apply
