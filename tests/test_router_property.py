"""Property: for any route table and any path, the trie picks what a brute-force matcher picks.

The reference below knows nothing of the trie. It tries every registered pattern against the
path and orders the matches by their per-segment ranks, compared lexicographically (static <
int < uuid < plain param < catch-all; a pattern that ends where the path ends comes before a
catch-all that would take the empty rest). The first match that has the method wins (HEAD falls
back to GET on each pattern); when none has it, the answer is the Allow set of all the matches.

Registration is predicted too: a table entry is refused exactly when its pattern repeats a
parameter name, puts the catch-all before the end, or repeats the method and shape (pattern
with parameter names erased) of an accepted entry.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from hypothesis import given, settings
from hypothesis import strategies as st

from tophat import Request, ResponseWriter, ResponseWritten
from tophat.router import RouteError, Router

UUID = "12345678-1234-5678-1234-567812345678"
DIGITS32 = "12345678123456781234567812345678"  # both an int and a (hyphenless) uuid
METHODS = ["GET", "POST", "HEAD", "DELETE"]
REQUEST_METHODS = [*METHODS, "PUT", "OPTIONS"]
PATTERN_SEGMENTS = [
    *["a", "b", "users", "new", "1", ""],
    *[":x", ":y", ":id", ":x<int>", ":y<int>", ":x<uuid>", ":id<str>"],
    *["*rest", "*x"],
]
PATH_SEGMENTS = [
    *["a", "b", "users", "new", "1", "", "zz"],
    *["42", "007", "%31", UUID, DIGITS32, "x%2Fy", "a%2F", "%2F", "n%65w"],
]
# Values likely to fit a typed parameter (and to collide with the static "1").
TYPED_VALUES = {
    "int": ["1", "%31", "007", DIGITS32, DIGITS32, "x"],
    "uuid": [UUID, UUID.upper(), DIGITS32, DIGITS32, "1"],
}

# Per-segment rank, lower is preferred.
RANK = {"static": 0, "int": 1, "uuid": 2, "str": 3, "catchall": 4}
_PARAM = re.compile(r":([A-Za-z_]\w*)(?:<(\w+)>)?")


async def _endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
    return await w.send()  # pragma: no cover - lookup never calls it


@dataclass(frozen=True)
class RefRoute:
    method: str
    pattern: str
    kinds: tuple[tuple[str, str], ...]  # (rank key, static text or parameter name)

    @property
    def shape(self) -> tuple[tuple[str, str], ...]:
        return tuple((k, v if k == "static" else "") for k, v in self.kinds)

    @property
    def key(self) -> tuple[int, ...]:
        return tuple(RANK[k] for k, _ in self.kinds)


def parse(pattern: str) -> tuple[tuple[str, str], ...]:
    out = []
    for seg in pattern.split("/")[1:]:
        if seg.startswith(":"):
            m = _PARAM.fullmatch(seg)
            assert m is not None
            out.append((m.group(2) or "str", m.group(1)))
        elif seg.startswith("*"):
            out.append(("catchall", seg[1:]))
        else:
            out.append(("static", seg))
    return tuple(out)


def refused(route: RefRoute, accepted: list[RefRoute]) -> bool:
    names = [v for k, v in route.kinds if k != "static"]
    if len(names) != len(set(names)):
        return True
    if any(k == "catchall" for k, _ in route.kinds[:-1]):
        return True
    return any(r.method == route.method and r.shape == route.shape for r in accepted)


def convert(kind: str, text: str) -> Any:
    """The value a segment gives a parameter of this kind, or None when it does not fit."""
    if kind == "int":
        return int(text) if text.isascii() and text.isdigit() else None
    if kind == "uuid":
        try:
            return uuid.UUID(text)
        except ValueError:
            return None
    return text


def match(route: RefRoute, segs: list[str]) -> dict[str, Any] | None:
    params: dict[str, Any] = {}
    for i, (kind, value) in enumerate(route.kinds):
        if kind == "catchall":  # the rest of the path, possibly empty ("/files/" but not "/files")
            if i >= len(segs):
                return None
            params[value] = "/".join(segs[i:])
            return params
        if i >= len(segs):
            return None
        if kind == "static":
            if segs[i] != value:
                return None
            continue
        if segs[i] == "":  # a parameter never matches an empty segment
            return None
        converted = convert(kind, segs[i])
        if converted is None:
            return None
        params[value] = converted
    return params if len(route.kinds) == len(segs) else None


def reference_lookup(
    routes: list[RefRoute], method: str, raw_path: str
) -> tuple[RefRoute | None, dict[str, Any], set[str]]:
    # Split on the raw '/', then decode each segment once (so %2F stays inside a segment).
    segs = [unquote(s, errors="surrogateescape") for s in raw_path.split("/")[1:]]
    by_shape: dict[tuple[tuple[str, str], ...], dict[str, tuple[RefRoute, dict[str, Any]]]] = {}
    for route in routes:
        params = match(route, segs)
        if params is not None:
            by_shape.setdefault(route.shape, {})[route.method] = (route, params)
    allow: set[str] = set()
    for shape in sorted(by_shape, key=lambda s: tuple(RANK[k] for k, _ in s)):
        methods = by_shape[shape]
        hit = methods.get(method) or (methods.get("GET") if method == "HEAD" else None)
        if hit is not None:
            return hit[0], hit[1], set()
        allow |= set(methods) | {"OPTIONS"} | ({"HEAD"} if "GET" in methods else set())
    return None, {}, allow


@st.composite
def route_tables(draw: st.DrawFn) -> list[tuple[str, list[str]]]:
    """A few random patterns, plus siblings that differ from one of them in one segment (the
    cases where priority decides), each under a random method."""
    segment = st.sampled_from(PATTERN_SEGMENTS)
    method = st.sampled_from(METHODS)
    bases = draw(st.lists(st.lists(segment, min_size=1, max_size=4), min_size=1, max_size=5))
    table = [(draw(method), base) for base in bases]
    for _ in range(draw(st.integers(0, 8))):
        base_method, base = draw(st.sampled_from(table[: len(bases)]))
        sibling = list(base)
        sibling[draw(st.integers(0, len(sibling) - 1))] = draw(segment)
        table.append((draw(st.sampled_from([base_method, draw(method)])), sibling))
    return table


def path_for(data: st.DataObject, table: list[tuple[str, list[str]]]) -> str:
    """A random path, or (mostly) one shaped like a table pattern with random segment values."""
    segment = st.sampled_from(PATH_SEGMENTS)
    if data.draw(st.integers(0, 5)) == 0:
        return "/" + "/".join(data.draw(st.lists(segment, max_size=5)))
    _, pattern = data.draw(st.sampled_from(table))
    segs: list[str] = []
    for seg in pattern:
        typed = _PARAM.fullmatch(seg)
        if seg.startswith("*"):
            segs += data.draw(st.lists(segment, max_size=2))
        elif data.draw(st.integers(0, 5)) == 0:
            segs.append(data.draw(segment))
        elif typed is not None and typed.group(2) in TYPED_VALUES:
            segs.append(data.draw(st.sampled_from(TYPED_VALUES[typed.group(2)])))
        else:
            segs.append(data.draw(segment) if typed is not None else seg)
    return "/" + "/".join(segs)


@settings(max_examples=300, deadline=None)
@given(table=route_tables(), data=st.data())
def test_trie_lookup_agrees_with_a_brute_force_matcher(
    table: list[tuple[str, list[str]]], data: st.DataObject
) -> None:
    router = Router()
    accepted: list[RefRoute] = []
    for method, segments in table:
        pattern = "/" + "/".join(segments)
        ref = RefRoute(method, pattern, parse(pattern))
        try:
            router.at(method, pattern, _endpoint)
        except RouteError:
            assert refused(ref, accepted), f"refused {method} {pattern} after {accepted}"
        else:
            assert not refused(ref, accepted), f"accepted {method} {pattern} after {accepted}"
            accepted.append(ref)

    for _ in range(10):
        method = data.draw(st.sampled_from(REQUEST_METHODS))
        path = path_for(data, table)
        route, params, allow = router.lookup(method, path)
        want, want_params, want_allow = reference_lookup(accepted, method, path)
        got = None if route is None else (route.method, route.pattern)
        expected = None if want is None else (want.method, want.pattern)
        assert got == expected, (method, path)
        assert params == want_params, (method, path)
        assert (set(allow.split(", ")) if allow else set()) == want_allow, (method, path)


# -- url_for round trip -----------------------------------------------------------------------

_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
_VALUES = {
    "str": _text.filter(bool),
    "int": st.integers(min_value=0, max_value=10**12),
    "uuid": st.uuids(),
    "catchall": _text,
}


@st.composite
def named_routes(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    count = draw(st.integers(min_value=1, max_value=4))
    segments = []
    for i in range(count):
        kind = draw(st.sampled_from(["static", "str", "int", "uuid", "catchall"]))
        if kind == "catchall" and i != count - 1:
            kind = "static"
        if kind == "static":
            segments.append(("static", draw(st.sampled_from(["a", "b c", "x;y", "@", ""]))))
        else:
            segments.append((kind, f"p{i}"))
    pattern = "/" + "/".join(
        v if k == "static" else (f"*{v}" if k == "catchall" else f":{v}<{k}>") for k, v in segments
    )
    params = {v: draw(_VALUES[k]) for k, v in segments if k != "static"}
    return pattern, params


@settings(max_examples=300, deadline=None)
@given(route=named_routes())
def test_url_for_gives_a_path_that_routes_back_to_the_same_params(
    route: tuple[str, dict[str, Any]],
) -> None:
    pattern, params = route
    router = Router()
    router.get(pattern, _endpoint, name="r")
    url = router.url_for("r", **params)
    assert url.isascii() and "?" not in url and "#" not in url and " " not in url
    found, got, _ = router.lookup("GET", url)
    assert found is not None and found.pattern == pattern, url
    assert got == params, url
