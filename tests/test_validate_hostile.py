"""The strict layer under hostile input: every check takes time linear in the request's size.

Issue 11, finding 6: the absolute-form check used ``(?i:https?)://([^/?#]*)[^#]*`` under
``fullmatch``; on a target ending in ``#`` the two overlapping quantifiers backtracked
quadratically (``GET http://`` + ``a`` x 8100 + ``#``: 0.2 s of loop time per request, within the
default limits, on h11, whose target grammar lets ``#`` through).

Linear time is shown without racing a clock: the same check on an input of size n and of size 8n,
the best of a few runs each; a linear check takes about 8 times as long, a quadratic one 64 times.
The accept/refuse behaviour of the check is pinned against the former pattern on short targets,
where its backtracking costs nothing.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tophat import Request, ResponseWriter, ResponseWritten, ServerOpts
from tophat.parsers.events import Head
from tophat.server.validate import Fields, _valid_host, check_request
from tophat.testing import AsyncTestClient, parse_responses

# Limits wide enough that only the target check decides (the sizes below exceed the defaults).
WIDE = ServerOpts(max_target_length=1 << 20, max_head_size=1 << 21)

# Targets of size ~n that made a backtracking pattern re-scan the rest of the target for each
# authority length it gave back (and variants that ask the same of the authority's own grammar).
SHAPES: dict[str, Callable[[int], bytes]] = {
    "authority-then-fragment": lambda n: b"http://" + b"a" * n + b"#",
    "path-then-fragment": lambda n: b"http://" + b"a" * n + b"/" + b"b" * n + b"#",
    "query-then-fragment": lambda n: b"https://" + b"a" * n + b"?" + b"q" * n + b"#",
    "fragment-then-more": lambda n: b"http://" + b"a" * n + b"#" + b"b" * n,
    "bad-port": lambda n: b"http://" + b"a" * n + b":x/",
    "unclosed-ip-literal": lambda n: b"http://[" + b"1:" * n + b"/",
    "pct-encoding-cut-short": lambda n: b"http://" + b"%a" * n + b"/",
    "valid-long-path": lambda n: b"http://example.com/" + b"a" * n,
}


def check_target(target: bytes) -> tuple[int, str] | None:
    """What the strict layer answers to ``GET target`` with a valid Host."""
    head = Head(b"GET", target, b"1.1", [(b"host", b"x")], len(target) + 30)
    return check_request(head, Fields(head.headers), WIDE)


def best_time(target: bytes, calls: int, runs: int = 5) -> float:
    """The best of ``runs`` timings of ``calls`` checks of ``target`` (the least disturbed)."""
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(calls):
            check_target(target)
        best = min(best, time.perf_counter() - start)
    return best


def calls_for(target: bytes) -> int:
    """Enough calls of the check on ``target`` to take about a millisecond (timer resolution)."""
    calls = 1
    while calls < 10_000 and best_time(target, calls, runs=1) < 1e-3:
        calls *= 4
    return calls


@pytest.mark.parametrize("parser", ["h11"])  # no parser involved: run once, not once per parser
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_absolute_form_check_takes_time_linear_in_the_target_length(shape: str) -> None:
    make = SHAPES[shape]
    small, large = make(1_000), make(8_000)
    assert check_target(small) == check_target(large)  # same shape, same answer
    calls = calls_for(small)
    ratio = best_time(large, calls) / best_time(small, calls)
    # 8x the input: about 8x the time when linear, 64x when quadratic.
    assert ratio < 30, f"{shape}: 8x the input took {ratio:.0f}x the time"


# -- the former pattern, as the specification of what the check accepts -------------------------

# RFC 9112 §3.2.2 absolute-form, http(s) only, authority up to the first "/", "?" or "#" and no
# fragment. Safe on short inputs only (it is the quadratic one).
FORMER = re.compile(rb"(?i:https?)://([^/?#]*)[^#]*")


def former_answer(target: bytes) -> tuple[int, str] | None:
    m = FORMER.fullmatch(target)
    # The authority goes through the grammar of a Host value (RFC 9112 §3.2).
    if m is None or not m.group(1) or not _valid_host(m.group(1)):
        return 400, "Invalid request-target"
    return None


_PIECES = [
    b"http://",
    b"https://",
    b"HTTP://",
    b"hTtPs://",
    b"http:/",
    b"ftp://",
    b"http",
    b"s",
    b":",
    b"/",
    b"//",
    b"?",
    b"#",
    b"@",
    b"%",
    b"%4a",
    b"%zz",
    b"[",
    b"]",
    b"[::1]",
    b"[v1.x]",
    b"::",
    b"1",
    b"80",
    b"a",
    b"example.com",
    b".",
    b"-",
    b"~",
    b"!",
    b",",
    b"*",
    b" ",
    b"\t",
    b"\x7f",
    b"\xff",
]
targets = st.one_of(
    st.lists(st.sampled_from(_PIECES), min_size=1, max_size=12).map(b"".join),
    st.builds(
        lambda scheme, rest: scheme + rest,
        st.sampled_from([b"http://", b"https://", b"HTTPS://"]),
        st.binary(max_size=24),
    ),
)


@pytest.mark.parametrize("parser", ["h11"])  # no parser involved: run once, not once per parser
@settings(max_examples=500, deadline=None)
@given(target=targets)
def test_absolute_form_check_accepts_exactly_what_the_former_pattern_accepted(
    target: bytes,
) -> None:
    if target[:1] == b"/" or target == b"*":
        return  # origin-form and asterisk-form: other branches of the check
    assert check_target(target) == former_answer(target)


@pytest.mark.parametrize("parser", ["h11"])  # no parser involved: run once, not once per parser
@pytest.mark.parametrize(
    ("target", "answer"),
    [
        (b"http://example.com/p?q=1", None),
        (b"HTTPS://example.com:8443", None),
        (b"http://example.com?q#", (400, "Invalid request-target")),
        (b"http://#", (400, "Invalid request-target")),
        (b"http:///p", (400, "Invalid request-target")),
        (b"http://a@b/", (400, "Invalid request-target")),
        (b"httpx://a/", (400, "Invalid request-target")),
        (b"http://[::1]:80/", None),
        (b"http://[::g]/", (400, "Invalid request-target")),
    ],
)
def test_absolute_form_check_answers(target: bytes, answer: tuple[int, str] | None) -> None:
    assert check_target(target) == answer


# -- on the wire ----------------------------------------------------------------------------------


async def echo_target(req: Request, w: ResponseWriter) -> ResponseWritten:
    w.set_text(req.target)
    return await w.send()


# The request, within the default limits, and one of the same size that is served.
HOSTILE = b"GET http://" + b"a" * 8100 + b"# HTTP/1.1\r\nHost: x\r\n\r\n"
BENIGN = b"GET http://" + b"a" * 8100 + b"/ HTTP/1.1\r\nHost: x\r\n\r\n"


async def best_exchange_time(client: AsyncTestClient, data: bytes, runs: int = 3) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        await client.raw(data)
        best = min(best, time.perf_counter() - start)
    return best


async def test_long_absolute_form_target_with_a_fragment_is_refused_promptly() -> None:
    client = AsyncTestClient(echo_target)
    [resp] = parse_responses(await client.raw(HOSTILE))
    assert (resp.status, resp.headers["connection"]) == (400, "close")
    [served] = parse_responses(await client.raw(BENIGN))
    assert (served.status, served.body) == (200, b"http://" + b"a" * 8100 + b"/")
    # Refusing it costs no more than serving a request of the same size (the ratio, not a clock,
    # decides): it was 0.2-0.3 s of loop time with h11, a thousand times a served request.
    ratio = await best_exchange_time(client, HOSTILE) / await best_exchange_time(client, BENIGN)
    assert ratio < 10, f"refusing took {ratio:.0f}x the time of serving"


async def test_long_valid_absolute_form_target_is_served_then_the_next_request() -> None:
    target = b"http://example.com/" + b"a" * 60_000 + b"?" + b"q" * 1000
    request = b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % target
    client = AsyncTestClient(echo_target, WIDE)
    with anyio.fail_after(2):
        out = await client.raw(request + b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
    first, second = parse_responses(out, ["GET", "GET"])
    assert (first.status, first.body) == (200, target)
    assert (second.status, second.body) == (200, b"/next")
