"""Route lookup cost: tophat's segment trie against Starlette's route list, by table size.

    .venv/bin/pip install starlette            # bench only; never a runtime dependency
    .venv/bin/python bench/router_bench.py [--repeat 7] [--target-ms 40] [--rss-paths 100000]

What is timed, per lookup (one path, method GET):

  ours       ``Router.lookup("GET", raw_path)``: the whole match of ``Router.__call__`` (trie
             walk, typed conversion, params dict, Allow on a miss), without building a Request.
  starlette  the matching loop of ``starlette.routing.Router.app``, copied below: iterate
             ``router.routes`` calling ``route.matches(scope)`` until ``Match.FULL`` (keeping
             the first ``Match.PARTIAL``, as Starlette does for its 405). The scope is built once
             per path, outside the timing. Starlette's redirect_slashes second scan on a miss
             (on by default there) is NOT timed: our router's slash redirect is off by default.

Tables of 1, 100 and 1,000 routes. Fillers cycle through three shapes with distinct first
segments (``/s{i}/items``, ``/p{i}/:id``, ``/c{i}/*rest``; in Starlette ``{id}`` and
``{rest:path}``), and the case's target route sits in the middle of the table, i.e. an average
position for Starlette's linear scan. The 1-route table is the target alone.

  static     GET /static/target/page            -> /static/target/page
  param      GET /users/42/posts/7              -> /users/:id/posts/:post
  catchall   GET /files/css/site/main.css       -> /files/*path
  miss       GET /nowhere/at/all                -> nothing (every route tried by Starlette)

Each cell is the median over ``--repeat`` runs of timeit (each run sized to ~``--target-ms``),
in ns per lookup. Goals checked (exit status 1 when one fails): at 1,000 routes ours is >= 10x
faster than Starlette's, and within 2x of our own 1-route time.

Memory: ``--rss-paths`` distinct random unmatched paths (default 100,000) go through
``Router.__call__`` (a Request per path, the 404 Glitch caught) on the 1,000-route table; VmRSS
from /proc/self/status is read after a warm-up and after the run (gc.collect() before each read).
A router that cached or recorded misses would grow by megabytes; the goal is |delta| < 1 MiB.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import sys
import timeit
from collections.abc import Callable
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tophat import Request, ResponseWriter, ResponseWritten  # noqa: E402
from tophat.glitch import Glitch  # noqa: E402
from tophat.http.headers import Headers  # noqa: E402
from tophat.router import Router  # noqa: E402

try:
    from starlette.routing import Match, Route
    from starlette.routing import Router as StarletteRouter
except ImportError:  # pragma: no cover - the message says what to do
    sys.exit("starlette is needed for this bench only: .venv/bin/pip install starlette")

SIZES = (1, 100, 1000)
# case -> (our pattern, Starlette's path, request path)
CASES: dict[str, tuple[str, str, str]] = {
    "static": ("/static/target/page", "/static/target/page", "/static/target/page"),
    "param": ("/users/:id/posts/:post", "/users/{id}/posts/{post}", "/users/42/posts/7"),
    "catchall": ("/files/*path", "/files/{path:path}", "/files/css/site/main.css"),
    "miss": ("", "", "/nowhere/at/all"),
}


async def _ours(req: Request, w: ResponseWriter) -> ResponseWritten:
    return await w.send()  # never called: lookup only


async def _theirs(scope: Any, receive: Any, send: Any) -> None:
    pass  # never called: matching only


def filler(i: int) -> tuple[str, str]:
    """The i-th filler route as (our pattern, Starlette's path)."""
    kind = i % 3
    if kind == 0:
        return f"/s{i}/items", f"/s{i}/items"
    if kind == 1:
        return f"/p{i}/:id", f"/p{i}/{{id}}"
    return f"/c{i}/*rest", f"/c{i}/{{rest:path}}"


def tables(case: str, size: int) -> tuple[Router, StarletteRouter]:
    ours_pattern, their_path, _ = CASES[case]
    pairs = [filler(i) for i in range(size)]
    if ours_pattern:  # a hit case: the target replaces the middle filler
        pairs[size // 2] = (ours_pattern, their_path)
    ours = Router()
    for pattern, _ in pairs:
        ours.get(pattern, _ours)
    theirs = StarletteRouter(routes=[Route(path, _theirs, methods=["GET"]) for _, path in pairs])
    return ours, theirs


def starlette_match(routes: list[Any], scope: dict[str, Any]) -> Any:
    """The matching loop of ``starlette.routing.Router.app`` (1.x), without the dispatch."""
    partial = None
    for route in routes:
        match, child_scope = route.matches(scope)
        if match is Match.FULL:
            return route, child_scope
        if match is Match.PARTIAL and partial is None:
            partial = route, child_scope
    return partial


def ns_per_call(fn: Callable[[], object], repeat: int, target_s: float) -> float:
    timer = timeit.Timer(fn)
    number, took = 1, 0.0
    while took < target_s / 10:  # calibrate on ~1/10 of a run
        number *= 2
        took = timer.timeit(number)
    number = max(1, int(number * target_s / took))
    return statistics.median(timer.repeat(repeat=repeat, number=number)) / number * 1e9


def check(case: str, ours: Router, theirs: StarletteRouter, path: str) -> None:
    """Both routers answer the path as the case says (so we time real hits and misses)."""
    route, _, _ = ours.lookup("GET", path)
    found = starlette_match(theirs.routes, scope(path))
    want = CASES[case][0]
    assert (route.pattern if route else "") == want, (case, route)
    assert (found[0].path if found else "") == CASES[case][1], (case, found)


def scope(path: str) -> dict[str, Any]:
    return {"type": "http", "method": "GET", "path": path, "root_path": "", "query_string": b""}


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def rss_run(count: int) -> tuple[int, int, int]:
    """Drive ``count`` distinct unmatched paths through Router.__call__; RSS before/after."""
    router, _ = tables("miss", 1000)
    rng = random.Random(1)
    headers = Headers([("host", "bench")])

    def one(i: int) -> None:
        # Unmatched at the root, or deep under a static / param / catch-less prefix.
        n = i % 1000
        kind = i % 3
        if kind == 0:
            target = f"/zz{rng.getrandbits(64):x}/{rng.getrandbits(32):x}"
        elif kind == 1:
            target = f"/s{n - n % 3}/items/{rng.getrandbits(64):x}"
        else:
            target = f"/p{n - n % 3 + 1}/{rng.getrandbits(64):x}/x?q={i}"
        req = Request("GET", target, headers)
        coro = router(req, ResponseWriter(None))  # type: ignore[arg-type]  # never sent
        try:
            coro.send(None)
        except Glitch as glitch:
            assert glitch.status == 404, (target, glitch)
        else:  # pragma: no cover - the router would have awaited something
            raise AssertionError(f"{target}: the router did not answer 404 at once")
        finally:
            coro.close()

    for i in range(2000):  # warm-up: interned strings, free lists, caches of the interpreter
        one(i)
    gc.collect()
    before = rss_kib()
    for i in range(count):
        one(i)
    gc.collect()
    after = rss_kib()
    return before, after, after - before


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--target-ms", type=float, default=40.0)
    parser.add_argument("--rss-paths", type=int, default=100_000)
    args = parser.parse_args()
    target_s = args.target_ms / 1000

    results: dict[tuple[str, int], tuple[float, float]] = {}
    for case in CASES:
        for size in SIZES:
            ours, theirs = tables(case, size)
            path = CASES[case][2]
            check(case, ours, theirs, path)
            lookup, routes, sc = ours.lookup, theirs.routes, scope(path)
            t_ours = ns_per_call(lambda: lookup("GET", path), args.repeat, target_s)  # noqa: B023
            t_theirs = ns_per_call(
                lambda: starlette_match(routes, sc),  # noqa: B023
                args.repeat,
                target_s,
            )
            results[case, size] = (t_ours, t_theirs)

    import starlette

    print(
        f"Route lookup, median ns per lookup ({args.repeat} repeats; Python "
        f"{sys.version.split()[0]}, starlette {starlette.__version__})"
    )
    print()
    header = f"{'case':<9} {'routes':>6} {'ours ns':>9} {'starlette ns':>13} {'st/ours':>8}"
    print(header + f" {'ours/ours@1':>12}")
    print("-" * (len(header) + 13))
    failures = []
    for case in CASES:
        base = results[case, 1][0]
        for size in SIZES:
            t_ours, t_theirs = results[case, size]
            ratio, growth = t_theirs / t_ours, t_ours / base
            print(
                f"{case:<9} {size:>6} {t_ours:>9.0f} {t_theirs:>13.0f} {ratio:>7.1f}x"
                f" {growth:>11.2f}x"
            )
            if size == 1000 and ratio < 10:
                failures.append(f"{case}@1000: starlette/ours {ratio:.1f}x < 10x")
            if size == 1000 and growth > 2:
                failures.append(f"{case}@1000: ours/ours@1 {growth:.2f}x > 2x")
    print()

    before, after, delta = rss_run(args.rss_paths)
    print(
        f"RSS over {args.rss_paths:,} distinct unmatched paths through Router.__call__ "
        f"(1,000 routes): before {before} KiB, after {after} KiB, delta {delta:+d} KiB"
    )
    if abs(delta) >= 1024:
        failures.append(f"RSS grew by {delta} KiB over {args.rss_paths} misses")

    print()
    print("goals: " + ("all met" if not failures else "FAILED: " + "; ".join(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
