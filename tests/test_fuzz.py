"""Fuzz invariant of ``accept``: any input gets well-formed responses or a clean close.

In one sentence: whatever bytes a client sends, in whatever pieces, ``accept`` returns without
raising, and what it wrote is a well-formed sequence of HTTP/1.1 responses (possibly none) in
which an error response is the last one and says ``connection: close``.

Everything runs in memory through ``tophat.testing.AsyncTestClient`` (no sockets, no clocks), on
asyncio and trio.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass

import anyio
import pytest
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

from tophat import Request, ResponseWriter, ResponseWritten, ServerOpts
from tophat.testing import AsyncTestClient, parse_responses

# -- endpoints ------------------------------------------------------------------------------------


async def echo_length(req: Request, w: ResponseWriter) -> ResponseWritten:
    """Reads the whole body and answers with its length (and echoes the method)."""
    body = await req.body()
    w.insert_header("x-method", req.method)
    w.set_text(str(len(body)))
    return await w.send()


async def ignore_body(req: Request, w: ResponseWriter) -> ResponseWritten:
    """Answers without touching the body (the server must drain it or close)."""
    w.insert_header("x-method", req.method)
    w.set_text("ignored")
    return await w.send()


ENDPOINTS = {"echo_length": echo_length, "ignore_body": ignore_body}

# Small limits reach the 413/414/431 paths with short inputs.
TIGHT = ServerOpts(
    max_head_size=200,
    max_header_count=6,
    max_target_length=40,
    max_body_size=16,
    max_drain_size=8,
    read_size=7,
)
OPTS = {"default": ServerOpts(), "tight": TIGHT}

# -- valid requests -------------------------------------------------------------------------------

GET = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"
HEAD = b"HEAD /a/b?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n"
POST = b"POST /echo HTTP/1.1\r\nHost: example.com\r\nContent-Length: 11\r\n\r\nhello world"
CHUNKED = (
    b"POST /up HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: yes\r\n\r\n"
)
HTTP10 = b"GET /old HTTP/1.0\r\n\r\n"
HTTP10_KEEPALIVE = b"GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
EXPECT = (
    b"PUT /file HTTP/1.1\r\nHost: example.com\r\nExpect: 100-continue\r\n"
    b"Content-Length: 4\r\n\r\nabcd"
)
CLOSE = b"DELETE /x HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"
OPTIONS_STAR = b"OPTIONS * HTTP/1.1\r\nHost: example.com\r\n\r\n"
ABSOLUTE = b"GET http://example.com/abs?q HTTP/1.1\r\nHost: example.com\r\n\r\n"

# (bytes, the methods of the requests in it, in order)
VALID: list[tuple[bytes, tuple[str, ...]]] = [
    (GET, ("GET",)),
    (HEAD, ("HEAD",)),
    (POST, ("POST",)),
    (CHUNKED, ("POST",)),
    (HTTP10, ("GET",)),
    (HTTP10_KEEPALIVE, ("GET",)),
    (EXPECT, ("PUT",)),
    (CLOSE, ("DELETE",)),
    (OPTIONS_STAR, ("OPTIONS",)),
    (ABSOLUTE, ("GET",)),
    (GET + POST, ("GET", "POST")),
    (POST + HEAD, ("POST", "HEAD")),
    (CHUNKED + GET, ("POST", "GET")),
    (HEAD + CHUNKED + GET, ("HEAD", "POST", "GET")),
    (EXPECT + GET, ("PUT", "GET")),
]

# -- an independent response parser ---------------------------------------------------------------

_STATUS_LINE = re.compile(rb"HTTP/1\.1 ([0-9]{3}) [\t -~\x80-\xff]*\r\n")
_FIELD = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*([\t -~\x80-\xff]*?)[ \t]*\r\n")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]+)(?:;[^\r\n]*)?\r\n")


@dataclass
class Parsed:
    status: int
    headers: list[tuple[str, str]]
    body: bytes | None  # None: no body on the wire (HEAD, or unknown and nothing left)

    def get(self, name: str) -> str | None:
        for n, v in self.headers:
            if n == name:
                return v
        return None


class Malformed(AssertionError):
    pass


def split_responses(data: bytes) -> list[Parsed]:
    """Parse a server's output strictly, without h11 and without knowing the requests.

    The method of a request is known when the endpoint ran (it echoes it in ``x-method``). A
    response from the validation layer carries no ``x-method``; its request may have been HEAD,
    so when nothing follows its head we accept a missing body.
    """
    out: list[Parsed] = []
    pos = 0
    while pos < len(data):
        m = _STATUS_LINE.match(data, pos)
        if m is None:
            raise Malformed(f"no status line at {pos}: {data[pos : pos + 60]!r}")
        status = int(m.group(1))
        pos = m.end()
        headers: list[tuple[str, str]] = []
        while not data.startswith(b"\r\n", pos):
            f = _FIELD.match(data, pos)
            if f is None:
                raise Malformed(f"bad header line at {pos}: {data[pos : pos + 60]!r}")
            headers.append((f.group(1).decode().lower(), f.group(2).decode("latin-1")))
            pos = f.end()
        pos += 2
        resp = Parsed(status, headers, b"")
        names = [n for n, _ in headers]
        if names.count("content-length") > 1 or names.count("transfer-encoding") > 1:
            raise Malformed(f"repeated framing header in {headers}")
        length = resp.get("content-length")
        te = resp.get("transfer-encoding")
        if length is not None and te is not None:
            raise Malformed("both content-length and transfer-encoding")
        if status < 200 or status in (204, 304):
            if length is not None and status != 304:
                raise Malformed(f"{status} with content-length")
            resp.body = None
        elif resp.get("x-method") == "HEAD":
            resp.body = None
        elif te is not None:
            if te.lower() != "chunked":
                raise Malformed(f"transfer-encoding {te!r}")
            chunks = []
            while True:
                c = _CHUNK_SIZE.match(data, pos)
                if c is None:
                    raise Malformed(f"bad chunk size at {pos}")
                size = int(c.group(1), 16)
                pos = c.end()
                if size == 0:
                    break
                if not data.startswith(b"\r\n", pos + size):
                    raise Malformed("chunk not followed by CRLF")
                chunks.append(data[pos : pos + size])
                pos += size + 2
            while not data.startswith(b"\r\n", pos):  # trailer section
                f = _FIELD.match(data, pos)
                if f is None:
                    raise Malformed("bad trailer line")
                pos = f.end()
            pos += 2
            resp.body = b"".join(chunks)
        elif length is not None:
            if not length.isdigit():
                raise Malformed(f"content-length {length!r}")
            n = int(length)
            if pos == len(data) and resp.get("x-method") is None:
                resp.body = None  # possibly an answer to HEAD from the validation layer
            elif len(data) - pos < n:
                raise Malformed(f"body shorter than content-length {n}")
            else:
                resp.body = data[pos : pos + n]
                pos += n
        else:
            # Close-delimited: only legal as the last response, and our endpoints never send one.
            raise Malformed(f"final response {status} without framing")
        out.append(resp)
    return out


def check_output(out: bytes) -> list[Parsed]:
    """Assert the invariant on a server's output; return the parsed responses."""
    responses = split_responses(out)
    for i, r in enumerate(responses):
        last = i == len(responses) - 1
        assert 100 <= r.status <= 599, r.status
        if r.status < 200:
            assert r.status == 100, f"unexpected informational {r.status}"
            assert not last, "a 100 Continue must be followed by a final response"
            continue
        # RFC 9110 §6.6.1: an origin server with a clock MUST send Date in 2xx-4xx responses.
        if r.status < 500:
            assert r.get("date") is not None, f"{r.status} without date"
        if r.status >= 400:
            assert last, f"{r.status} is not the last response: {out!r}"
            assert (r.get("connection") or "").lower() == "close", f"{r.status} without close"
        if (r.get("connection") or "").lower() == "close":
            assert last, f"bytes after a connection: close response: {out!r}"
    return responses


async def run(
    endpoint_name: str, opts_name: str, data: bytes | Sequence[bytes]
) -> tuple[bytes, list[Parsed]]:
    client = AsyncTestClient(ENDPOINTS[endpoint_name], OPTS[opts_name])
    with anyio.fail_after(5):
        out = await client.raw(data)
    responses = check_output(out)
    if currently_in_test_context():
        # Shown by --hypothesis-show-statistics: how often each outcome was reached.
        event("statuses: " + " ".join(str(r.status) for r in responses))
    return out, responses


# -- strategies -----------------------------------------------------------------------------------

endpoint_names = st.sampled_from(sorted(ENDPOINTS))
opts_names = st.sampled_from(sorted(OPTS))

# Fragments of HTTP to make random input reach past the request line more often than noise does.
_TOKENS = [
    b"GET",
    b"HEAD",
    b"POST",
    b"OPTIONS",
    b"CONNECT",
    b" ",
    b"/",
    b"*",
    b"?",
    b"#",
    b"%",
    b"http://",
    b"HTTP/1.1",
    b"HTTP/1.0",
    b"HTTP/2.0",
    b"\r\n",
    b"\n",
    b"\r",
    b":",
    b"\t",
    b"\x00",
    b"\xff",
    b"Host: a",
    b"Host",
    b"Content-Length",
    b"Content-Length: 5",
    b"Transfer-Encoding",
    b"chunked",
    b"Expect: 100-continue",
    b"Connection: close",
    b"Connection: keep-alive",
    b"0",
    b"5",
    b"ff",
    b"-1",
    b"hello",
    b"\r\n\r\n",
    b"0\r\n\r\n",
]
token_soup = st.lists(st.sampled_from(_TOKENS), max_size=60).map(b"".join)
arbitrary = st.one_of(st.binary(max_size=600), token_soup)


def cut(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given points (taken modulo its length) into pieces."""
    if len(data) < 2:
        return [data]
    bounds = sorted({0, len(data), *(1 + c % (len(data) - 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def whole_and_split(
    inputs: st.SearchStrategy[bytes],
) -> st.SearchStrategy[tuple[bytes, list[bytes]]]:
    """An input, and the same input cut at random points (each piece is one server read)."""
    cuts = st.lists(st.integers(0, 10**6), max_size=12)
    return st.builds(lambda d, c: (d, cut(d, c)), inputs, cuts)


_op = st.one_of(
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.sampled_from(_TOKENS)),
    st.tuples(st.just("delete"), st.integers(0, 10**6), st.integers(1, 16)),
    st.tuples(st.just("replace"), st.integers(0, 10**6), st.integers(0, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 10**6), st.just(0)),
    st.tuples(st.just("duplicate"), st.integers(0, 10**6), st.integers(1, 64)),
)


def mutate(data: bytes, ops: list[tuple[str, int, object]]) -> bytes:
    buf = bytearray(data)
    for kind, at, arg in ops:
        i = at % (len(buf) + 1)
        if kind == "insert":
            assert isinstance(arg, bytes)
            buf[i:i] = arg
        elif kind == "delete":
            assert isinstance(arg, int)
            del buf[i : i + arg]
        elif kind == "replace" and i < len(buf):
            assert isinstance(arg, int)
            buf[i] = arg
        elif kind == "truncate":
            del buf[i:]
        elif kind == "duplicate":
            assert isinstance(arg, int)
            buf[i:i] = buf[i : i + arg]
    return bytes(buf)


valid = st.sampled_from(VALID)
mutated = st.builds(mutate, valid.map(lambda v: v[0]), st.lists(_op, min_size=1, max_size=4))

FUZZ = settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# -- properties -----------------------------------------------------------------------------------


@pytest.mark.anyio
@FUZZ
@given(case=whole_and_split(arbitrary), endpoint=endpoint_names, opts=opts_names)
async def test_arbitrary_bytes_get_well_formed_responses_or_none(
    case: tuple[bytes, list[bytes]], endpoint: str, opts: str
) -> None:
    data, pieces = case
    await run(endpoint, opts, data)
    await run(endpoint, opts, pieces)


@pytest.mark.anyio
@FUZZ
@given(case=whole_and_split(mutated), endpoint=endpoint_names, opts=opts_names)
async def test_mutated_requests_get_well_formed_responses_or_none(
    case: tuple[bytes, list[bytes]], endpoint: str, opts: str
) -> None:
    data, pieces = case
    await run(endpoint, opts, data)
    await run(endpoint, opts, pieces)


def _normalized(
    out: bytes, methods: Sequence[str]
) -> list[tuple[int, list[tuple[str, str]], bytes]]:
    return [
        (r.status, [(n, v) for n, v in r.headers if n != "date"], r.body)
        for r in parse_responses(out, methods)
    ]


@pytest.mark.anyio
@settings(FUZZ, max_examples=300)
@given(
    case=valid.flatmap(lambda v: st.tuples(st.just(v[1]), whole_and_split(st.just(v[0])))),
    endpoint=endpoint_names,
)
async def test_valid_requests_answer_the_same_however_they_are_split(
    case: tuple[tuple[str, ...], tuple[bytes, list[bytes]]], endpoint: str
) -> None:
    methods, (data, pieces) = case
    if endpoint == "ignore_body" and "PUT" in methods:
        # The Expect request (the only PUT) is answered without reading its body, so the
        # server may close instead of reading it (RFC 9110 §10.1.1): nothing after it is served.
        methods = methods[: methods.index("PUT") + 1]
    whole, parsed = await run(endpoint, "default", data)
    finals = [r for r in parsed if r.status >= 200]
    assert [r.status for r in finals] == [200] * len(methods)
    assert [r.get("x-method") for r in finals] == list(methods)
    out, _ = await run(endpoint, "default", pieces)
    if b"Expect: 100-continue" in data:
        # Whether 100 Continue is sent depends on whether the body was already there when the
        # endpoint started reading; compare only the final responses.
        assert [r.status for r in split_responses(out) if r.status >= 200] == [200] * len(methods)
    else:
        assert _normalized(out, methods) == _normalized(whole, methods)


# -- every refusal reaches the client, whatever the method ----------------------------------------

# Requests the validation layer refuses after h11 parsed them, and the status each must get.
REFUSED = {
    "version": (b"{m} / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    "duplicate": (b"{m} / HTTP/1.1\r\nHost: a\r\nContent-Type: a\r\nContent-Type: b\r\n\r\n", 400),
    "fragment": (b"{m} /#frag HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    "host": (b"{m} / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    "cl-and-te": (
        b"{m} / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        400,
    ),
    "te-in-1.0": (b"{m} / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    "long-target": (b"{m} /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),
    "too-large": (b"{m} / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999\r\n\r\n", 413),
}


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST"])
@pytest.mark.parametrize(("template", "status"), REFUSED.values(), ids=REFUSED.keys())
async def test_every_refused_request_gets_its_error_response(
    method: str, template: bytes, status: int
) -> None:
    data = template.replace(b"{m}", method.encode())
    out, _ = await run("echo_length", "default", data)
    [resp] = parse_responses(out, [method])
    assert resp.status == status
    assert resp.headers.get("connection") == "close"
    if method == "HEAD":
        assert resp.body == b""


# -- the checker itself: the properties above can fail ---------------------------------------------

_OK = b"HTTP/1.1 200 OK\r\ndate: x\r\ncontent-length: 2\r\n\r\nhi"
_BAD_REQUEST = (
    b"HTTP/1.1 400 Bad Request\r\ndate: x\r\ncontent-length: 1\r\nconnection: close\r\n\r\nx"
)


@pytest.mark.parametrize(
    "out",
    [
        _BAD_REQUEST + _OK,  # a response after an error
        _OK.replace(b"\r\n\r\n", b"\r\nconnection: close\r\n\r\n") + _OK,  # after close
        _BAD_REQUEST.replace(b"connection: close\r\n", b""),  # an error without close
        b"HTTP/1.1 100 Continue\r\n\r\n",  # 100 with nothing after it
        b"HTTP/1.1 600 Nope\r\ndate: x\r\ncontent-length: 0\r\n\r\n",  # status out of range
        _OK[:-1],  # body shorter than its length
        _OK + b"x",  # bytes after the last response
        b"HTTP/1.1 200 OK\r\ndate: x\r\n\r\nclose-delimited",  # no framing
        _OK.replace(b"date: x\r\n", b""),  # no Date in a 200
        b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
    ],
)
def test_output_checker_rejects_malformed_output(out: bytes) -> None:
    with pytest.raises(AssertionError):
        check_output(out)


def test_output_checker_accepts_well_formed_output() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\ndate: x\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"
    )
    head = b"HTTP/1.1 200 OK\r\ndate: x\r\nx-method: HEAD\r\ncontent-length: 5\r\n\r\n"
    parsed = check_output(b"HTTP/1.1 100 \r\n\r\n" + _OK + chunked + head + _BAD_REQUEST)
    assert [(r.status, r.body) for r in parsed] == [
        (100, None),
        (200, b"hi"),
        (200, b"hi"),
        (200, None),
        (400, b"x"),
    ]
