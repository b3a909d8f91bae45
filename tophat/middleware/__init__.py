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
from .._headers import Headers, check_name

__all__ = ["Middleware", "add_vary", "chain"]

Middleware = Callable[[Endpoint], Endpoint]


def chain(*middlewares: Middleware) -> Middleware:
    """Compose middlewares into one; the first is outermost."""

    def apply(endpoint: Endpoint) -> Endpoint:
        for middleware in reversed(middlewares):
            endpoint = middleware(endpoint)
        return endpoint

    return apply


def add_vary(headers: Headers, *names: str) -> None:
    """Add ``names`` to the ``Vary`` header, once each (RFC 9110 §12.5.5), keeping what is there.

    >>> h = Headers([("Vary", "Accept-Encoding")]); add_vary(h, "Origin", "accept-encoding")
    >>> h.get("vary")
    'Accept-Encoding, Origin'
    """
    for name in names:
        check_name(name)
    values = [value for lname, _, value in headers._items if lname == "vary"]
    if not values:  # the common case: one scan, one append
        headers._items.append(("vary", "vary", ", ".join(names)))
        return
    present = [p.strip() for v in values for p in v.split(",") if p.strip()]
    if "*" in present:
        return  # already varies on everything
    lowered = {p.lower() for p in present}
    added = [n for n in names if n.lower() not in lowered]
    if added:
        headers.set("vary", ", ".join([*present, *added]))
