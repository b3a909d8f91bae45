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

from tophat.http.endpoint import Endpoint, Middleware
from tophat.http.headers import Field, Headers, check_name
from tophat.http.writer import Response

__all__ = ["Middleware", "add_vary", "chain", "vary_hook"]

_VARY = "vary"


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
    _add_checked_vary(headers, names, Field(_VARY, ", ".join(names)))


def vary_hook(*names: str) -> Callable[[Response], None]:
    """A ``before_send`` hook that adds ``names`` to the response's ``Vary`` (as ``add_vary``).

    The names are checked, and joined, once here: middleware that vary every response build
    the hook at construction, so a request pays only for the merge.

    Raises:
        HeaderError: if a name is not a token.
    """
    for name in names:
        check_name(name)
    joined = Field(_VARY, ", ".join(names))

    def hook(response: Response) -> None:
        _add_checked_vary(response.headers, names, joined)

    return hook


# (the Vary values a response has, names to add) -> the merged field, or None when nothing
# changes. An application's responses carry a handful of distinct Vary values: remembering
# each merge saves its split, strip, join and check per response (bounded, as check_name's
# cache).
_MERGED_VARY: dict[tuple[tuple[str, ...], tuple[str, ...]], Field | None] = {}


def _add_checked_vary(headers: Headers, names: tuple[str, ...], joined: Field) -> None:
    """``add_vary`` for names already checked; ``joined`` is the field ``Vary: names``."""
    found = headers.get_all(_VARY)
    if not found:  # the common case: one scan, one append
        headers.add_field(joined)
        return
    key = (tuple(found), names)
    try:
        merged = _MERGED_VARY[key]
    except KeyError:
        value = _merge_vary(found, names)
        merged = None if value is None else Field(_VARY, value)
        if len(_MERGED_VARY) < 1024:
            _MERGED_VARY[key] = merged
    if merged is not None:
        headers.set_field(merged)


def _merge_vary(values: list[str], names: tuple[str, ...]) -> str | None:
    """The Vary value that adds ``names`` to ``values``; None when it would change nothing."""
    present = [p.strip() for v in values for p in v.split(",") if p.strip()]
    if "*" in present:
        return None  # already varies on everything
    lowered = {p.lower() for p in present}
    added = [n for n in names if n.lower() not in lowered]
    return ", ".join([*present, *added]) if added else None
