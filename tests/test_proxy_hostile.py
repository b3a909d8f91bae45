"""Proxy headers under hostile input: parsing takes time linear in the header's length.

Issue 11, finding 1: one request from a trusted peer (any client, behind a proxy that passes
``Forwarded`` on) froze the event loop. ``Forwarded: for=1.2.3.4`` + ``" ; "`` x 32 + ``!``
(108 bytes) made the element pattern try every way of splitting the blanks around each ``;``
(exponential: 5 s at 16 repetitions); ``X-Forwarded-For:`` of 2000 ``:`` then ``g`` made the
bare-IPv6 pattern try every way of sharing the colons among its three classes (cubic: ~10 s).

Linear time is shown without racing a clock: the middleware on the same shape of header at
growing sizes, the best of a few runs each. From one size to the next (twice as long) a linear
parse takes about twice as long, a cubic one 8 times, an exponential one far more: each step
is held under 5x, which stops a runaway shape early, while its time is still short. Over 8x
the input (a size past the fixed costs, and 8 times that) the time must stay under 30x: about
8x when linear, 64x when quadratic.

On the wire, the issue's requests go to the CLI in a process of its own, on every runtime and
parser: each is answered 400 at once, and another client is served meanwhile.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from servers import HOST, RUNTIMES, cli, free_port, stops_cleanly

from tophat import Glitch, Request, ResponseWriter, ResponseWritten
from tophat.http.headers import Headers
from tophat.middleware.proxy import proxy_headers
from tophat.router import Router
from tophat.testing import parse_responses

PROXY = ("10.0.0.5", 51000)
TRUSTED = ["127.0.0.1", "::1", "10.0.0.0/8"]
# The configuration that reads each header (all of them, the host included).
READERS = {
    "forwarded": proxy_headers(TRUSTED, headers="forwarded"),
    "x-forwarded-for": proxy_headers(TRUSTED, x_forwarded_host=True),
    "x-forwarded-proto": proxy_headers(TRUSTED, x_forwarded_host=True),
    "x-forwarded-host": proxy_headers(TRUSTED, x_forwarded_host=True),
}


async def nothing(req: Request, w: ResponseWriter) -> ResponseWritten:
    return cast(ResponseWritten, None)


ENDPOINTS = {name: middleware(nothing) for name, middleware in READERS.items()}


def run(header: str, value: str) -> int:
    """The middleware on a request from a trusted peer: 200 when applied, else the Glitch's."""
    req = Request("GET", "/", Headers([("host", "internal"), (header, value)]), client=PROXY)
    coro = cast(Coroutine[Any, Any, Any], ENDPOINTS[header](req, cast(ResponseWriter, None)))
    try:
        coro.send(None)
    except StopIteration:
        return 200
    except Glitch as glitch:
        return glitch.status
    raise AssertionError("the middleware awaited")  # pragma: no cover


def best_time(header: str, value: str, calls: int, runs: int = 5) -> float:
    """The best of ``runs`` timings of ``calls`` runs on ``value`` (the least disturbed)."""
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(calls):
            run(header, value)
        best = min(best, time.perf_counter() - start)
    return best


def calls_for(header: str, value: str) -> int:
    """Enough runs on ``value`` to take half a millisecond (well above the timer's grain)."""
    calls = 1
    while calls < 10_000 and best_time(header, value, calls, runs=1) < 5e-4:
        calls *= 4
    return calls


def ratio(header: str, small: str, large: str) -> float:
    calls = calls_for(header, small)
    return best_time(header, large, calls) / best_time(header, small, calls)


MAX_LENGTH = 12_000  # a header value past this is not measured (the head limit is 16 KiB)


def assert_linear(header: str, make: Callable[[int], str]) -> None:
    """``make(n)`` (a value that grows with n) is parsed in time linear in its length."""
    n = 2
    while len(make(2 * n)) <= MAX_LENGTH:
        step = ratio(header, make(n), make(2 * n))
        assert step < 5, f"{make(2 * n)[:60]!r}...: 2x the input took {step:.1f}x the time"
        n *= 2
    # 8x the input, up to the longest: where fixed costs hide the parse least.
    n = max(1, n // 16)
    overall = ratio(header, make(n), make(8 * n))
    assert overall < 30, f"{make(n)[:60]!r}...: 8x the input took {overall:.1f}x the time"


def repeat(prefix: str, unit: str, suffix: str) -> Callable[[int], str]:
    return lambda n: prefix + unit * n + suffix


# Shapes that made a backtracking pattern (or a walk that re-reads) slow, and ones that make the
# walk read every entry: all of them trusted hops.
SHAPES: dict[str, tuple[str, Callable[[int], str]]] = {
    "issue-forwarded": ("forwarded", repeat("for=1.2.3.4", " ; ", "!")),
    "issue-x-forwarded-for": ("x-forwarded-for", repeat("", ":", "g")),
    "blank-pairs": ("forwarded", repeat("for=1.2.3.4", ";", " !")),
    "escaped-quotes": ("forwarded", repeat('for="', '\\"', '"')),
    "backslashes-then-quote": ("forwarded", repeat('a="', "\\", '"')),
    "unopened-quotes": ("forwarded", repeat("", ', a="', '"')),
    "quoted-commas": ("forwarded", repeat("a=", '",', "for=1.2.3.4")),
    "trusted-elements": ("forwarded", repeat("", "for=10.0.0.1, ", "for=10.0.0.2")),
    "trusted-elements-with-params": (
        "forwarded",
        repeat("", 'for="[::1]:80";proto=https;by=_x, ', "for=10.0.0.2"),
    ),
    "trusted-x-forwarded-for": ("x-forwarded-for", repeat("", "10.0.0.1, ", "10.0.0.2")),
    "bracketed-colons": ("x-forwarded-for", repeat("[", "1:", "")),
    "bare-ipv6-dots": ("x-forwarded-for", repeat("1:", ":.", "g")),
    "obfuscated": ("forwarded", repeat("for=_", "a.", "!")),
    "host-escapes": ("x-forwarded-host", repeat("", "a%20", "%2")),
    "host-ipv6": ("x-forwarded-host", repeat("[", "0:", "]:80")),
    "proto-list": ("x-forwarded-proto", repeat("", "https, ", "http")),
}


@pytest.mark.parametrize("parser", ["h11"])  # no parser involved: run once, not once per parser
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_proxy_headers_take_time_linear_in_their_length(shape: str) -> None:
    header, make = SHAPES[shape]
    assert_linear(header, make)
    assert run(header, make(64)) == run(header, make(512))  # the same answer at every size


_PIECES = [
    '"',
    "\\",
    '\\"',
    ";",
    " ; ",
    ",",
    ", ",
    "=",
    " ",
    "\t",
    ":",
    "::",
    "[",
    "]",
    ".",
    "_",
    "%",
    "%2",
    "!",
    "a",
    "1",
    "f",
    "for=",
    'for="',
    "for=10.0.0.1",
    "10.0.0.1",
    "unknown",
    "proto=https",
]
_texts = st.lists(st.sampled_from(_PIECES), max_size=4).map("".join)


@pytest.mark.parametrize("parser", ["h11"])  # no parser involved: run once, not once per parser
@settings(max_examples=20, deadline=None)
@given(
    header=st.sampled_from(sorted(READERS)),
    prefix=_texts,
    unit=_texts.filter(bool),
    suffix=_texts,
)
@example(header="forwarded", prefix="for=1.2.3.4", unit=" ; ", suffix="!")
@example(header="x-forwarded-for", prefix="", unit=":", suffix="g")
def test_any_repeated_shape_of_header_takes_time_linear_in_its_length(
    header: str, prefix: str, unit: str, suffix: str
) -> None:
    assert_linear(header, repeat(prefix, unit, suffix))


# -- on the wire: the CLI in a process of its own --------------------------------------------------


async def answer(req: Request, w: ResponseWriter) -> ResponseWritten:
    w.set_text(f"{req.client}")
    return await w.send()


# Served by the CLI as test_proxy_hostile:app; the test client connects from 127.0.0.1.
app = Router()
app.get("/forwarded", proxy_headers(["127.0.0.1"], headers="forwarded")(answer))
app.get("/x-forwarded", proxy_headers(["127.0.0.1"])(answer))
app.get("/", answer)

# The issue's header values; "Connection: close" so that the end of the response is the end of
# the connection.
ISSUE_REQUESTS = {
    "Forwarded": b"GET /forwarded HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
    + b"Forwarded: for=1.2.3.4"
    + b" ; " * 32
    + b"!\r\n\r\n",
    "X-Forwarded-For": b"GET /x-forwarded HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
    + b"X-Forwarded-For: "
    + b":" * 2000
    + b"g\r\n\r\n",
}
WAIT = 10  # seconds: a hang detector (each answer takes milliseconds), not a race


def response_to(request: bytes, port: int) -> tuple[int, bytes]:
    """Send ``request`` on a connection of its own; the response (the server closes after)."""
    with socket.create_connection((HOST, port), timeout=WAIT) as s:
        s.sendall(request)
        return read_response(s)


def read_response(s: socket.socket) -> tuple[int, bytes]:
    data = b""
    while chunk := s.recv(65536):  # times out (and fails the test) if the server is stuck
        data += chunk
    [resp] = parse_responses(data)
    return resp.status, resp.body


@pytest.mark.slow
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_issues_proxy_headers_are_refused_at_once_while_another_client_is_served(
    runtime: str, parser: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The CLI imports this module: put the tests folder on its path.
    tests = str(Path(__file__).resolve().parent)
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [tests, os.getenv("PYTHONPATH")]))
    )
    port = free_port()
    args = ("--port", str(port), "--runtime", runtime, "--parser", parser)
    with cli(*args, app="test_proxy_hostile:app") as server:
        hostile = [socket.create_connection((HOST, port), timeout=WAIT) for _ in ISSUE_REQUESTS]
        try:
            for s, request in zip(hostile, ISSUE_REQUESTS.values(), strict=True):
                s.sendall(request)
            # Sent after them: answered while (a frozen loop: instead of) parsing them.
            other = response_to(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", port)
            assert other[0] == 200
            assert other[1].startswith(b"('127.0.0.1', ")  # its own address: no header read
            for s, field in zip(hostile, ISSUE_REQUESTS, strict=True):
                assert read_response(s) == (400, f"Invalid {field} header".encode())
                server.wait_for(f"bad {field}:".encode())  # logged, at INFO
        finally:
            for s in hostile:
                s.close()
        stops_cleanly(server)
