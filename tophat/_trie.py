"""Route patterns and the segment trie they compile to: the matching side of ``tophat.router``.

The pattern syntax and the matching rules are documented in :mod:`tophat.router`, the public
module, which re-exports :class:`Route` and :class:`RouteError` from here. This module holds
the parameter converters and their ranks, :func:`parse_pattern` (a pattern's segments) and
:func:`pattern_shape` (the key two conflicting routes share), the trie nodes :class:`Node` and
:class:`Leaf`, :func:`find_route` (the depth-first match behind ``Router.lookup``: a hot path,
measured by ``bench/router_bench.py``) and the ``Allow`` helpers. The
:class:`~tophat.router.Router` owns registration: it checks, inserts into and walks this trie.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tophat.http.endpoint import Endpoint

__all__ = [
    "CONVERTERS",
    "Leaf",
    "Node",
    "Parsed",
    "Route",
    "RouteError",
    "allow_value",
    "find_route",
    "merge_allow",
    "parse_pattern",
    "pattern_shape",
]

_PARAM = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:<([a-z]+)>)?")
_NO = object()  # a converter's "does not match"


def _int(text: str) -> object:
    if not (text.isascii() and text.isdigit()):
        return _NO
    try:
        return int(text)
    except ValueError:  # over Python's int-parsing digit limit (CVE-2020-10735 guard)
        return _NO


def _uuid(text: str) -> object:
    try:
        return uuid.UUID(text)
    except ValueError:
        return _NO


def _str(text: str) -> object:
    return text


# Converter name -> (rank, converter). Lower rank is tried first at a segment: the more a
# converter constrains, the earlier it is tried (static segments always come before all).
CONVERTERS: dict[str, tuple[int, Callable[[str], object]]] = {
    "int": (0, _int),
    "uuid": (1, _uuid),
    "str": (9, _str),
}


class RouteError(ValueError):
    """A route that cannot be added; the message says why and how to fix it."""


@dataclass(frozen=True, slots=True)
class Route:
    """One registered route (see :meth:`Router.routes`)."""

    method: str
    pattern: str
    endpoint: Endpoint
    name: str | None = None
    param_names: tuple[str, ...] = ()


@dataclass(slots=True)
class Leaf:
    pattern: str  # the first pattern registered here (for messages and introspection)
    routes: dict[str, Route] = field(default_factory=dict)
    methods_allowed: str = ""  # precomputed Allow value
    any: Route | None = None  # a mount: every method

    def route_for(self, method: str) -> Route | None:
        route = self.routes.get(method)
        if route is None and method == "HEAD":
            route = self.routes.get("GET")  # automatic HEAD for GET routes
        return route or self.any


@dataclass(slots=True)
class Node:
    static: dict[str, Node] = field(default_factory=dict)
    params: list[tuple[int, str, Callable[[str], object], Node]] = field(default_factory=list)
    leaf: Leaf | None = None
    catchall: Leaf | None = None


@dataclass(slots=True)
class Parsed:
    segments: list[tuple[str, str, str]]  # (kind, value, converter): kind static|param|catchall
    names: tuple[str, ...]


def parse_pattern(pattern: str) -> Parsed:
    if not pattern.startswith("/"):
        raise RouteError(f"route {pattern!r} must start with '/' (e.g. '/{pattern}')")
    raw = pattern.split("/")[1:]
    segments: list[tuple[str, str, str]] = []
    names: list[str] = []
    for i, seg in enumerate(raw):
        if seg.startswith(":"):
            m = _PARAM.fullmatch(seg[1:])
            if m is None:
                raise RouteError(
                    f"route {pattern!r}: bad parameter {seg!r}; write ':name' or ':name<int>'"
                )
            conv = m.group(2) or "str"
            if conv not in CONVERTERS:
                known = ", ".join(sorted(CONVERTERS))
                raise RouteError(f"route {pattern!r}: unknown type <{conv}>; known: {known}")
            names.append(m.group(1))
            segments.append(("param", m.group(1), conv))
        elif seg.startswith("*"):
            if i != len(raw) - 1:
                raise RouteError(
                    f"route {pattern!r}: the catch-all {seg!r} must be the last segment"
                )
            if not _PARAM.fullmatch(seg[1:]) or "<" in seg:
                raise RouteError(f"route {pattern!r}: write the catch-all as '*name'")
            names.append(seg[1:])
            segments.append(("catchall", seg[1:], ""))
        else:
            if ":" in seg or "*" in seg:
                raise RouteError(
                    f"route {pattern!r}: ':' and '*' start a parameter only at the start of a "
                    f"segment; {seg!r} mixes text and a parameter"
                )
            segments.append(("static", seg, ""))
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise RouteError(f"route {pattern!r}: parameter name(s) {sorted(dupes)} used twice")
    return Parsed(segments, tuple(names))


def pattern_shape(parsed: Parsed) -> str:
    """A pattern with parameter names erased: two routes with one shape are the same route."""
    out = []
    for kind, value, conv in parsed.segments:
        out.append(value if kind == "static" else (f":<{conv}>" if kind == "param" else "*"))
    return "/" + "/".join(out)


def find_route(
    node: Node, segs: list[str], i: int, caps: list[Any], method: str, allowed: list[str]
) -> Route | None:
    """Depth-first, best rank first: the first matching pattern with a route for ``method``;
    a mount only takes a path no more specific pattern matched.

    ``caps`` collects the captures of the path being tried (and holds the winner's on return);
    ``allowed`` collects the Allow values of patterns that matched the path but not the method.
    """
    if i == len(segs):
        # "/files/*path" matches "/files/" (path == "") but not "/files": strict slashes.
        leaf = node.leaf
        if leaf is not None:
            route = leaf.route_for(method)
            if route is not None:
                return route
            allowed.append(leaf.methods_allowed)
        return None
    seg = segs[i]
    child = node.static.get(seg)
    if child is not None:
        route = find_route(child, segs, i + 1, caps, method, allowed)
        if route is not None:
            return route
    if seg:  # a parameter never matches an empty segment
        for _, _, convert, child in node.params:
            value = convert(seg)
            if value is not _NO:
                caps.append(value)
                route = find_route(child, segs, i + 1, caps, method, allowed)
                if route is not None:
                    return route
                caps.pop()
    leaf = node.catchall
    if leaf is not None:
        route = leaf.route_for(method)
        if route is not None and (route is not leaf.any or not allowed):
            caps.append("/".join(segs[i:]))
            return route
        if route is None:
            allowed.append(leaf.methods_allowed)
        # else: a mount (every method) below a route that matched the whole path with other
        # methods: the path is that route's, so the answer is its 405 with Allow, not the
        # mount's (a front-end mounted at "/" must not turn PUT /api/notes into a 404).
    return None


def allow_value(routes: Mapping[str, Route]) -> str:
    methods = set(routes)
    if "GET" in methods:
        methods.add("HEAD")
    methods.add("OPTIONS")
    return ", ".join(sorted(methods))


def merge_allow(values: list[str]) -> str:
    if len(values) <= 1:
        return values[0] if values else ""
    return ", ".join(sorted({m for v in values for m in v.split(", ")}))
