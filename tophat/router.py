"""Router: a segment trie that maps method + path to an endpoint. The router is an endpoint.

Path syntax (as in the Rust crate)::

    /users                 static segments
    /users/:id             a named parameter: one whole segment
    /users/:id<int>        a typed parameter: converted, or no match (int, uuid, str)
    /files/*path           a catch-all, last only: the rest of the path (may be empty)

Matching, per segment, ranks static > typed parameter > parameter > catch-all, whatever the
registration order, and backtracks: with ``/users/new`` and ``/users/:id`` both registered,
each is reachable; with ``/a/b/d`` and ``/a/:x/c``, ``/a/b/c`` still matches the second.
The path is split on its raw ``/`` before decoding, so ``%2F`` stays inside a parameter:
``/units/kg%2Fs`` against ``/units/:u`` gives ``u == "kg/s"``. Each segment is decoded once.

Beyond a match:

* no pattern matches the path → 404;
* patterns match but none for the method → 405 with ``Allow`` listing every method that
  would succeed on this path (RFC 9110 §15.5.6: a 405 MUST carry Allow);
* HEAD is answered by the GET endpoint (the server sends no body bytes for HEAD);
* OPTIONS is answered with 204 and ``Allow`` unless you registered OPTIONS yourself.

Configuration mistakes raise :class:`RouteError` when the route is added, naming both routes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar, overload
from urllib.parse import quote, unquote

from tophat._trie import (
    CONVERTERS,
    Leaf,
    Node,
    Parsed,
    Route,
    RouteError,
    allow_value,
    find_route,
    merge_allow,
    parse_pattern,
    pattern_shape,
)
from tophat.glitch import Glitch
from tophat.http.endpoint import Endpoint
from tophat.http.request import DATA_KEY, ROUTE_KEY, Request
from tophat.http.writer import ResponseWriter, ResponseWritten

__all__ = ["Route", "RouteError", "Router"]

E = TypeVar("E", bound=Endpoint)

_METHOD = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 §9.1: method = token
_RESERVED = re.compile(r"(?:^|/)[:*]__")  # router-internal parameter names (see mount)
_ANY = "*"  # the method of a mount's routes: every method (user methods are checked tokens,
# and "*" is a token too, so at() refuses it below)


class _Verb:
    """A router's ``get``, ``post``, ...: ``router.get(pattern, endpoint)`` adds a route and
    returns it; ``@router.get(pattern)`` adds the function below it and returns it unchanged.

    A descriptor rather than seven pairs of overloaded methods: the decorator returns exactly
    the type it was given (a TypeVar bound to ``Endpoint``), so a decorated handler stays typed
    under ``mypy --strict`` and one that is not an endpoint is refused where it is decorated.
    """

    __slots__ = ("method", "router")

    def __init__(self, method: str, router: Router | None = None) -> None:
        self.method = method
        self.router = router

    def __get__(self, router: Router | None, owner: type[Router] | None = None) -> _Verb:
        return self if router is None else _Verb(self.method, router)

    @overload
    def __call__(self, pattern: str, *, name: str | None = None) -> Callable[[E], E]: ...
    @overload
    def __call__(self, pattern: str, endpoint: Endpoint, *, name: str | None = None) -> Route: ...
    def __call__(
        self, pattern: str, endpoint: Endpoint | None = None, *, name: str | None = None
    ) -> Route | Callable[[E], E]:
        router, method = self.router, self.method
        if router is None:
            raise TypeError(f"call it on a router: router.{method.lower()}(pattern, ...)")
        if endpoint is not None:
            return router.at(method, pattern, endpoint, name=name)

        def register(endpoint: E) -> E:
            router.at(method, pattern, endpoint, name=name)
            return endpoint

        return register

    def __repr__(self) -> str:
        return f"<Router.{self.method.lower()}>"


class Router:
    """Routes requests to endpoints by method and path; itself an endpoint.

    Args:
        redirect_slashes: when a path does not match but the same path with (or without) a
            trailing slash does, redirect there (301 for GET/HEAD, 308 otherwise, which keeps
            the method and body) with a relative ``Location``. Off by default: strict.

    Example::

        router = Router()
        router.data(pool)                       # reachable as req.data(Pool)

        @router.get("/users/:id<int>", name="user")
        async def user(req: Request, w: ResponseWriter) -> ResponseWritten:
            w.set_json({"id": req.params["id"]})
            return await w.send()

        router.url_for("user", id=7)            # "/users/7"
    """

    def __init__(self, *, redirect_slashes: bool = False) -> None:
        self._root = Node()
        self._static: dict[str, Leaf] = {}  # fast path: fully static patterns
        self._shapes: dict[tuple[str, str], Route] = {}
        self._names: dict[str, tuple[Route, Parsed]] = {}
        self._routes: list[Route] = []
        self._data: dict[type, Any] = {}
        self.redirect_slashes = redirect_slashes

    # -- registration -------------------------------------------------------------------------

    def at(
        self, method: str, pattern: str, endpoint: Endpoint, *, name: str | None = None
    ) -> Route:
        """Add a route; return it.

        Raises:
            RouteError: for a malformed pattern, the same method and pattern twice, a
                catch-all that is not last, a parameter name used twice, or a taken name.
        """
        if not isinstance(method, str) or _METHOD.fullmatch(method) is None or method == _ANY:
            raise RouteError(f"method {method!r} is not an HTTP method token (e.g. 'GET')")
        if _RESERVED.search(pattern):
            # mount() routes "*__rest": a user's "__rest" would be hidden and dropped by it.
            raise RouteError(f"{pattern!r}: parameter names starting with '__' are reserved")
        return self._add_route(method, pattern, endpoint, name)

    def _check(self, method: str, pattern: str, name: str | None) -> tuple[Parsed, str]:
        """Raise RouteError if the route cannot be added; nothing is changed."""
        parsed = parse_pattern(pattern)
        shape = pattern_shape(parsed)
        for key in [(method, shape)] if method == _ANY else [(method, shape), (_ANY, shape)]:
            other = self._shapes.get(key)
            if other is None and method == _ANY:
                other = next((r for (m, s), r in self._shapes.items() if s == shape), None)
            if other is not None:
                raise RouteError(
                    f"route {method} {pattern!r} conflicts with {other.method} "
                    f"{other.pattern!r}: both match exactly the same requests; remove one or "
                    "change its path"
                )
        if name is not None and name in self._names:
            other = self._names[name][0]
            raise RouteError(
                f"route name {name!r} is taken by {other.method} {other.pattern!r}; "
                "route names must be unique"
            )
        return parsed, shape

    def _add_route(self, method: str, pattern: str, endpoint: Endpoint, name: str | None) -> Route:
        parsed, shape = self._check(method, pattern, name)
        key = (method, shape)
        route = Route(method, pattern, endpoint, name, parsed.names)
        leaf = self._insert(parsed, pattern)
        if method == _ANY:
            leaf.any = route
        else:
            leaf.routes[method] = route
            leaf.methods_allowed = allow_value(leaf.routes)
        self._shapes[key] = route
        if name is not None:
            self._names[name] = (route, parsed)
        self._routes.append(route)
        return route

    def _insert(self, parsed: Parsed, pattern: str) -> Leaf:
        node = self._root
        for kind, value, conv in parsed.segments:
            if kind == "static":
                node = node.static.setdefault(value, Node())
            elif kind == "param":
                rank, fn = CONVERTERS[conv]
                for _r, c, _, child in node.params:
                    if c == conv:
                        node = child
                        break
                else:
                    child = Node()
                    node.params.append((rank, conv, fn, child))
                    node.params.sort(key=lambda p: p[0])
                    node = child
            else:
                if node.catchall is None:
                    node.catchall = Leaf(pattern)
                return node.catchall
        if node.leaf is None:
            node.leaf = Leaf(pattern)
            if all(kind == "static" for kind, _, _ in parsed.segments):
                self._static[pattern] = node.leaf
        return node.leaf

    # ``router.get(pattern, endpoint)`` or ``@router.get(pattern)``: see _Verb.
    get = _Verb("GET")
    post = _Verb("POST")
    put = _Verb("PUT")
    patch = _Verb("PATCH")
    delete = _Verb("DELETE")
    options = _Verb("OPTIONS")
    head = _Verb("HEAD")

    def mount(self, prefix: str, endpoint: Endpoint) -> None:
        """Send every request under ``prefix`` (any method) to ``endpoint``.

        The endpoint sees the rest of the path in ``req.path``/``req.raw_path`` (``"/"`` for
        the prefix itself) and the prefix in ``req.root_path``; ``endpoint`` may be another
        router, wrapped in its own middleware. Routes of this router under the prefix still
        win: static and parameter segments rank above the mount.
        """
        if not prefix.startswith("/"):
            raise RouteError(f"mount prefix {prefix!r} must start with '/' (e.g. '/admin')")
        prefix = prefix.rstrip("/")
        if ":" in prefix or "*" in prefix:
            raise RouteError(f"mount prefix {prefix!r} must be static (no ':' or '*')")
        mounted = _Mounted(prefix, endpoint)
        patterns = (prefix + "/*__rest", prefix or "/")
        for pattern in patterns:  # all or nothing: check both before adding either
            self._check(_ANY, pattern, None)
        for pattern in patterns:
            self._add_route(_ANY, pattern, mounted, None)

    def data(self, obj: Any, *, as_type: type | None = None) -> None:
        """Share ``obj`` with every endpoint of this router: ``req.data(type(obj))`` returns it.

        ``as_type`` stores it under another type (e.g. a protocol or base class).
        """
        self._data[as_type or type(obj)] = obj

    # -- reverse routing and introspection ----------------------------------------------------

    def url_for(self, name: str, /, **params: Any) -> str:
        """Build the path of the route named ``name``, percent-encoding each parameter.

        Raises:
            KeyError: for an unknown route name.
            ValueError: for missing or unexpected parameters.
        """
        _route, parsed = self._names[name]
        missing = set(parsed.names) - params.keys()
        extra = params.keys() - set(parsed.names)
        if missing or extra:
            raise ValueError(
                f"url_for({name!r}): missing {sorted(missing)}, unexpected {sorted(extra)}"
            )
        out = []
        for kind, value, _ in parsed.segments:
            if kind == "static":
                out.append(quote(value, safe="!$&'()*+,;=:@"))
            elif kind == "param":
                text = str(params[value])
                if not text:
                    raise ValueError(f"url_for({name!r}): parameter {value!r} cannot be empty")
                out.append(quote(text, safe=""))
            else:
                out.append(quote(str(params[value]), safe="/"))
        return "/" + "/".join(out)

    def routes(self) -> list[Route]:
        """Every route, in registration order."""
        return list(self._routes)

    def describe(self) -> str:
        """The route table as text: one line per route, methods aligned."""
        lines = []
        for r in self._routes:
            if r.param_names == ("__rest",) or isinstance(r.endpoint, _Mounted):
                continue
            target = getattr(r.endpoint, "__qualname__", repr(r.endpoint))
            suffix = f"  (name={r.name})" if r.name else ""
            lines.append(f"{r.method:<8} {r.pattern:<40} -> {target}{suffix}")
        mounts = {
            r.endpoint.prefix: r.endpoint for r in self._routes if isinstance(r.endpoint, _Mounted)
        }
        for prefix, m in mounts.items():
            target = getattr(m.endpoint, "__qualname__", repr(m.endpoint))
            lines.append(f"{'*':<8} {prefix + '/...':<40} -> mount {target}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<Router {len(self._routes)} routes>"

    # -- matching -----------------------------------------------------------------------------

    def lookup(self, method: str, raw_path: str) -> tuple[Route | None, dict[str, Any], str]:
        """Find the route for ``method`` and ``raw_path``.

        Returns ``(route, params, allow)``: the route (``None`` when none fits) and its
        captured parameters; ``allow`` is the Allow value of every matching pattern (empty when
        no pattern matched the path: a 404).
        """
        leaf = self._static.get(raw_path)
        if leaf is not None:  # fast path: a static pattern always ranks first
            route = leaf.route_for(method)
            if route is not None:
                return route, {}, ""
        segs = raw_path.split("/")[1:]
        if "%" in raw_path:
            segs = [unquote(s, errors="surrogateescape") if "%" in s else s for s in segs]
        allowed: list[str] = []
        caps: list[Any] = []
        route = find_route(self._root, segs, 0, caps, method, allowed)
        if route is not None:
            return route, dict(zip(route.param_names, caps, strict=True)), ""
        return None, {}, merge_allow(allowed)

    async def __call__(self, req: Request, w: ResponseWriter) -> ResponseWritten:
        route, params, allow = self.lookup(req.method, req.raw_path)
        if self._data:
            outer = req.ext.get(DATA_KEY)
            req.ext[DATA_KEY] = {**outer, **self._data} if outer else self._data
        if route is not None:
            req.ext[ROUTE_KEY] = route  # for the error log; a mounted router's overwrites it
            if params:
                req.params = {**req.params, **params} if req.params else params
            return await route.endpoint(req, w)
        if allow:
            if req.method == "OPTIONS":
                w.set_status(204)
                w.insert_header("allow", allow)
                return await w.send()
            raise Glitch.method_not_allowed(allow.split(", "))
        if self.redirect_slashes:
            target = self._slash_redirect(req)
            if target is not None:
                w.set_status(301 if req.method in ("GET", "HEAD") else 308)
                w.insert_header("location", target)
                return await w.send()
        raise Glitch.not_found()

    def _slash_redirect(self, req: Request) -> str | None:
        path = req.raw_path
        if not path.startswith("/") or path.startswith("//") or path == "/":
            return None  # never anything that could read as a scheme-relative //host
        if path.endswith("/"):
            other = path[:-1]  # one slash: "../last" climbs exactly one level
            # "../last": from /a/b/ it resolves to /a/b. Never starts with "/".
            last = other.rsplit("/", 1)[1]
            location = "../" + last if last else None
        else:
            other = path + "/"
            # "./last/": the "./" keeps a segment with ':' from reading as a scheme.
            location = "./" + path.rsplit("/", 1)[1] + "/"
        if location is None or not other:
            return None
        route, _, allow = self.lookup(req.method, other)
        if route is None and not allow:
            return None
        if req.query_string:
            location += "?" + req.query_string
        return location


class _Mounted:
    """Calls a mounted endpoint with the prefix moved from the path to ``root_path``."""

    __slots__ = ("endpoint", "prefix")

    def __init__(self, prefix: str, endpoint: Endpoint) -> None:
        self.prefix = prefix
        self.endpoint = endpoint

    async def __call__(self, req: Request, w: ResponseWriter) -> ResponseWritten:
        saved = req.raw_path, req.root_path, req.params
        req.raw_path = saved[0][len(self.prefix) :] or "/"
        req.root_path = saved[1] + self.prefix
        req.params = {k: v for k, v in req.params.items() if k != "__rest"}
        try:
            return await self.endpoint(req, w)
        except Exception:  # the error log names the route with this mount's prefix (no cost else)
            r = req.ext[ROUTE_KEY]  # (set by the router that chose this mount, or one inside)
            inner = ("/*", self.endpoint) if r.endpoint is self else (r.pattern, r.endpoint)
            req.ext[ROUTE_KEY] = Route(r.method, self.prefix + inner[0], inner[1])
            raise
        finally:
            req.raw_path, req.root_path, req.params = saved
