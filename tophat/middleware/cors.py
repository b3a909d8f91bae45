"""CORS, per the Fetch standard (§3.2, the CORS protocol): a middleware factory.

A JSON API called with ``fetch()`` from a page on another origin::

    api = cors(
        allow_origins=["https://app.example"],
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        # Content-Type: application/json and Authorization are not CORS-safelisted request
        # headers (Fetch §2.2.2): the browser preflights for them, and without this line the
        # preflight is refused (the default allows no request header).
        allow_headers=["content-type", "authorization"],
        expose_headers=["location"],  # response headers the page may read (e.g. after a 201)
        allow_credentials=True,  # only if the page sends cookies (fetch(..., credentials))
    )(router)

A refused preflight is logged once, at INFO on ``tophat.cors``, saying which origin, method or
header was not allowed (a browser only tells the page "CORS error"). INFO, not DEBUG: it is what
a developer sees by default while wiring a front end, and at most one line per preflight, as
the access log.

What it does, and why:

* A **preflight** (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) is answered
  here and never reaches the endpoint. Allowed: 204 with the allow headers. Refused: 403 with a
  short reason and *no* CORS headers, so the browser blocks the real request; the reason does
  not echo the configuration.
* An **actual request** from an allowed origin gets ``Access-Control-Allow-Origin`` (its own
  origin — never ``*`` with credentials), ``-Allow-Credentials`` and ``-Expose-Headers``. They
  are set on the writer *before* the endpoint runs, so they are on Glitch and 500 responses too.
* A request from a refused origin passes through untouched (browsers send ``Origin`` on
  same-origin POSTs too, so refusing it would break same-origin forms); the browser, not the
  server, withholds the response from the page.
* ``Vary: Origin`` is on every response whose headers depend on the origin, refusals and
  requests without ``Origin`` included (an HTTP cache must not serve one origin's answer to
  another); preflights also vary on the request method and headers.
* Unsafe configurations fail here, at construction: credentials with a wildcard origin, a
  malformed origin. Regexes always match the *whole* origin (``re.fullmatch``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from typing import Literal

from tophat.http.endpoint import Endpoint
from tophat.http.headers import Field
from tophat.http.request import Request
from tophat.http.writer import ResponseWriter, ResponseWritten
from tophat.middleware import Middleware, add_vary, vary_hook

__all__ = ["cors"]

log = logging.getLogger("tophat.cors")

# Fetch §2.2.1: methods a page may use without a preflight.
_SAFELISTED_METHODS = ("GET", "HEAD", "POST")
_ORIGIN = re.compile(r"(?:https?|[a-z][a-z0-9+.\-]*)://[^/?#\s]+|null", re.IGNORECASE)
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


_ACAO = "access-control-allow-origin"
_vary_origin = vary_hook("Origin")  # built once: the per-request hook checks no name


def _norm_origin(origin: str) -> str:
    if origin == "*" or not _ORIGIN.fullmatch(origin):
        raise ValueError(
            f"allow_origins: {origin!r} is not an origin; write scheme://host[:port] with no "
            "path or trailing slash (e.g. 'https://app.example.com'), or pass allow_origins='*'"
        )
    return origin.lower()


def _shown(text: str) -> str:
    """Client-sent text for a log line: quoted, control characters escaped, bounded."""
    return repr(text[:100] + "..." if len(text) > 100 else text)


def _tokens(values: Iterable[str], what: str) -> list[str]:
    out = []
    for v in values:
        if not _TOKEN.fullmatch(v):
            raise ValueError(f"{what}: {v!r} is not a header/method token")
        out.append(v)
    return out


def cors(
    *,
    allow_origins: Iterable[str] | Literal["*"] = (),
    allow_origin_regex: str | None = None,
    allow_origin_predicate: Callable[[str], bool] | None = None,
    allow_methods: Iterable[str] | Literal["*"] = _SAFELISTED_METHODS,
    allow_headers: Iterable[str] | Literal["*"] = (),
    expose_headers: Iterable[str] | Literal["*"] = (),
    allow_credentials: bool = False,
    max_age: int | None = 600,
    allow_private_network: bool = False,
) -> Middleware:
    """Build a CORS middleware.

    Args:
        allow_origins: exact origins allowed (``scheme://host[:port]``), or ``"*"`` for any.
        allow_origin_regex: a regex an allowed origin must match *entirely*.
        allow_origin_predicate: a function deciding for each origin.
        allow_methods: methods a preflight may ask for (``"*"``: any). Methods are
            case-sensitive (RFC 9110 §9.1).
        allow_headers: request headers a preflight may ask for, case-insensitive (``"*"``: any).
        expose_headers: response headers the page may read beyond the safelisted ones.
        allow_credentials: let the page send cookies/auth and read the answer. Requires
            explicit origins: with it, the origin is echoed, never ``*``.
        max_age: seconds a browser may cache a preflight answer (``None``: no header).
        allow_private_network: honour Private Network Access preflights
            (``Access-Control-Request-Private-Network: true``). Off by default.

    Raises:
        ValueError: for an unsafe or malformed configuration, saying how to fix it.
    """
    wildcard = allow_origins == "*" or (not isinstance(allow_origins, str) and "*" in allow_origins)
    if isinstance(allow_origins, str) and allow_origins != "*":
        raise ValueError("allow_origins must be a list of origins or '*', not a single string")
    if wildcard and allow_credentials:
        raise ValueError(
            "allow_credentials=True with a wildcard origin would let every site read your "
            "users' authenticated responses; list the allowed origins explicitly"
        )
    origins = frozenset() if wildcard else frozenset(_norm_origin(o) for o in allow_origins)
    regex = re.compile(allow_origin_regex) if allow_origin_regex is not None else None
    if regex is not None and regex.fullmatch("null"):
        raise ValueError("allow_origin_regex matches the opaque origin 'null'; tighten it")
    if max_age is not None and max_age < 0:
        raise ValueError("max_age must be >= 0 seconds")
    any_method = allow_methods == "*"
    methods = [] if any_method else _tokens(allow_methods, "allow_methods")
    any_header = allow_headers == "*"
    headers = set() if any_header else {h.lower() for h in _tokens(allow_headers, "allow_headers")}
    if expose_headers == "*" and allow_credentials:
        raise ValueError(
            "expose_headers='*' is taken literally by browsers when credentials are allowed "
            "(Fetch §3.2.3); list the headers to expose"
        )
    expose = "*" if expose_headers == "*" else ", ".join(_tokens(expose_headers, "expose_headers"))

    # Precomputed once: the per-request work is a lookup and a few header sets.
    varies_by_origin = not wildcard
    simple_headers: list[tuple[str, str]] = []
    if allow_credentials:
        simple_headers.append(("access-control-allow-credentials", "true"))
    if expose:
        simple_headers.append(("access-control-expose-headers", expose))
    # Per listed origin, as browsers send it (serialized lower-case), every header an actual
    # request from it gets, as Fields checked here: on a response with no header yet they are
    # appended as they are, with no check, no field built and no scan for an existing value.
    # Only configured origins are keys: bounded.
    simple_fields = [Field(name, value) for name, value in simple_headers]
    origin_fields = {o: [Field(_ACAO, o), *simple_fields] for o in origins}
    # With "*", every actual response gets the same fields, Origin or not (Fetch, "CORS
    # protocol and HTTP caches": then no Vary: Origin is needed, and a cached answer to a
    # request without Origin still works for a page's fetch()).
    wildcard_fields = [Field(_ACAO, "*"), *simple_fields]
    methods_value = ", ".join(methods)
    max_age_value = None if max_age is None else str(max_age)

    def origin_allowed(origin: str) -> bool:
        if wildcard:
            return True
        if origin.lower() in origins:
            return True
        if regex is not None and regex.fullmatch(origin):
            return True
        return allow_origin_predicate is not None and bool(allow_origin_predicate(origin))

    def refusal(origin: str, method: str, requested: list[str], wants_private: bool) -> list[str]:
        """Why a preflight is refused (every reason, so one log line says all): empty if not."""
        why = []
        if not origin_allowed(origin):
            why.append(f"origin {_shown(origin)} is not allowed (allow_origins)")
        if not (any_method or method in methods):
            why.append(f"method {_shown(method)} is not in allow_methods ({methods_value})")
        missing = [] if any_header else [name for name in requested if name not in headers]
        if missing:
            names = ", ".join(_shown(name) for name in missing)
            plural = "s" if len(missing) > 1 else ""
            allowed = ", ".join(sorted(headers)) or "none"
            why.append(f"request header{plural} {names} not in allow_headers ({allowed})")
        if wants_private and not allow_private_network:
            why.append("a Private Network Access preflight, and allow_private_network is off")
        return why

    def allow_origin_value(origin: str) -> str:
        return "*" if wildcard else origin

    async def preflight(
        req: Request, w: ResponseWriter, origin: str, method: str
    ) -> ResponseWritten:
        h = w.response.headers
        add_vary(h, "Origin", "Access-Control-Request-Method", "Access-Control-Request-Headers")
        requested = [
            part.strip().lower()
            for part in req.headers.get("access-control-request-headers", "").split(",")
            if part.strip()
        ]
        wants_private = req.headers.get("access-control-request-private-network") == "true"
        refused = refusal(origin, method, requested, wants_private)
        if refused:
            log.info("CORS preflight for %s refused: %s", _shown(req.raw_path), "; ".join(refused))
            w.set_status(403)
            w.set_text("CORS preflight refused")
            return await w.send()
        w.set_status(204)
        h.set("access-control-allow-origin", allow_origin_value(origin))
        if allow_credentials:
            h.set("access-control-allow-credentials", "true")
        # With credentials "*" is literal (Fetch §3.2.3): echo what was asked instead.
        h.set("access-control-allow-methods", method if any_method else methods_value)
        if requested:
            h.set("access-control-allow-headers", ", ".join(requested))
        if max_age_value is not None:
            h.set("access-control-max-age", max_age_value)
        if wants_private:
            h.set("access-control-allow-private-network", "true")
        return await w.send()

    def middleware(endpoint: Endpoint) -> Endpoint:
        async def cors_endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
            origin = req.headers.get("origin")
            if varies_by_origin:
                # At send time, so an endpoint that sets its own Vary cannot drop ours.
                w.before_send(_vary_origin)
            if origin is None:
                if wildcard:
                    w.response.headers.set_fields(wildcard_fields)
                return await endpoint(req, w)
            if req.method == "OPTIONS":  # only an OPTIONS can be a preflight: no other scan
                method = req.headers.get("access-control-request-method")
                if method is not None:
                    return await preflight(req, w, origin, method)
            fields = origin_fields.get(origin)
            if fields is None:
                if wildcard:
                    fields = wildcard_fields
                elif origin_allowed(origin):  # (a regex or predicate, or another letter case)
                    fields = [Field(_ACAO, origin), *simple_fields]
            if fields is not None:
                w.response.headers.set_fields(fields)
            return await endpoint(req, w)

        return cors_endpoint

    return middleware
