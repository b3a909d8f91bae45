"""accept() on the wire: connection reuse, request bodies, request fields, and the strict layer.

Raw request bytes in (one piece, or several pieces delivered one read each) through
``tophat.testing.AsyncTestClient``; the exact bytes the server wrote, or their parse, out.
"""

from __future__ import annotations

import json

import pytest

from tophat import Request, ResponseWriter, ResponseWritten, ServerOpts
from tophat.testing import AsyncTestClient, TestResponse, parse_responses

FOLLOW_UP = b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n"


def get(target: bytes = b"/", *headers: bytes) -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (
        target,
        b"".join(h + b"\r\n" for h in headers),
    )


def post(body: bytes, target: bytes = b"/", *headers: bytes) -> bytes:
    extra = b"".join(h + b"\r\n" for h in headers)
    return b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n%s\r\n%s" % (
        target,
        len(body),
        extra,
        body,
    )


def chunked(target: bytes, chunks: bytes) -> bytes:
    return b"POST %s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n%s" % (
        target,
        chunks,
    )


class Recorder:
    """An endpoint that records each request (and its body when asked to read it).

    It answers ``METHOD target`` as text, so responses show which request they answer.
    """

    def __init__(self, read_body: bool = False) -> None:
        self.read_body = read_body
        self.requests: list[Request] = []
        self.bodies: list[bytes] = []

    async def __call__(self, req: Request, w: ResponseWriter) -> ResponseWritten:
        self.requests.append(req)
        if self.read_body:
            self.bodies.append(await req.body())
        w.set_text(f"{req.method} {req.target}")
        return await w.send()

    @property
    def targets(self) -> list[str]:
        return [r.target for r in self.requests]


async def exchange(
    request: bytes | list[bytes], opts: ServerOpts | None = None, *, read_body: bool = False
) -> tuple[bytes, Recorder]:
    recorder = Recorder(read_body)
    out = await AsyncTestClient(recorder, opts).raw(request)
    return out, recorder


# -- connection reuse ---------------------------------------------------------------------------


async def test_keep_alive_serves_requests_that_arrive_one_after_another() -> None:
    out, _ = await exchange([get(b"/one"), get(b"/two")])
    responses = parse_responses(out)
    assert [r.text for r in responses] == ["GET /one", "GET /two"]
    assert all("connection" not in r.headers for r in responses)


async def test_pipelined_requests_in_one_piece_are_answered_in_order() -> None:
    out, _ = await exchange(get(b"/a") + get(b"/b") + get(b"/c"))
    assert [r.text for r in parse_responses(out)] == ["GET /a", "GET /b", "GET /c"]


async def test_pipelined_requests_byte_by_byte_are_answered_in_order() -> None:
    data = get(b"/a") + post(b"xyz", b"/b") + get(b"/c")
    out, rec = await exchange([bytes([b]) for b in data], read_body=True)
    assert [r.text for r in parse_responses(out)] == ["GET /a", "POST /b", "GET /c"]
    assert rec.bodies == [b"", b"xyz", b""]


async def test_http10_request_is_served_then_the_connection_closes() -> None:
    out, rec = await exchange(b"GET /one HTTP/1.0\r\n\r\nGET /two HTTP/1.0\r\n\r\n")
    [resp] = parse_responses(out)
    assert (resp.status, resp.text) == (200, "GET /one")
    assert resp.headers["connection"].lower() == "close"
    assert [r.version for r in rec.requests] == ["1.0"]


async def test_requests_after_connection_close_are_not_processed() -> None:
    out, rec = await exchange(get(b"/last", b"Connection: close") + FOLLOW_UP)
    [resp] = parse_responses(out)
    assert resp.headers["connection"].lower() == "close"
    assert rec.targets == ["/last"]


# -- Expect: 100-continue -----------------------------------------------------------------------

EXPECT_HEAD = b"POST /up HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"


async def test_100_continue_is_sent_when_the_handler_reads_the_body() -> None:
    # The body arrives in a later read, as from a client that waits for the 100.
    out, rec = await exchange([EXPECT_HEAD, b"hello", FOLLOW_UP], read_body=True)
    assert out.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n")
    first, second = parse_responses(out, ["POST", "GET"])
    assert first.informational == [100]
    assert rec.bodies == [b"hello", b""]
    assert second.text == "GET /after"


async def test_100_continue_is_never_sent_when_the_handler_ignores_the_body() -> None:
    out, rec = await exchange([EXPECT_HEAD, b"hello" + FOLLOW_UP])
    assert b" 100 " not in out
    # The client may never send the body, so the server cannot wait to drain it: it closes.
    [resp] = parse_responses(out, ["POST"])
    assert resp.headers["connection"] == "close"
    assert rec.targets == ["/up"]


async def test_expect_body_that_arrived_with_the_head_keeps_the_connection_once_read() -> None:
    out, rec = await exchange(EXPECT_HEAD + b"hello" + FOLLOW_UP, read_body=True)
    first, second = parse_responses(out, ["POST", "GET"])
    assert "connection" not in first.headers
    assert (rec.bodies, second.text) == ([b"hello", b""], "GET /after")


async def test_100_continue_is_not_sent_for_a_refused_request() -> None:
    out, rec = await exchange(
        b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n", read_body=True
    )
    assert out.startswith(b"HTTP/1.1 400 ")
    assert b" 100 " not in out
    assert rec.requests == []


# -- unread request bodies ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_",
    [
        post(b"hello", b"/unread"),
        chunked(b"/unread", b"2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n"),
    ],
)
async def test_unread_small_body_is_drained_and_the_next_request_served(request_: bytes) -> None:
    out, _ = await exchange(request_ + FOLLOW_UP)
    assert [r.text for r in parse_responses(out, ["POST", "GET"])] == [
        "POST /unread",
        "GET /after",
    ]


async def test_unread_body_of_exactly_max_drain_size_is_drained() -> None:
    _, rec = await exchange(post(b"12345678", b"/unread") + FOLLOW_UP, ServerOpts(max_drain_size=8))
    assert rec.targets == ["/unread", "/after"]


@pytest.mark.parametrize(
    "request_",
    [
        post(b"123456789", b"/unread"),
        chunked(b"/unread", b"5\r\n12345\r\n4\r\n6789\r\n0\r\n\r\n"),
    ],
)
async def test_unread_body_larger_than_max_drain_size_closes_the_connection(
    request_: bytes,
) -> None:
    out, rec = await exchange(request_ + FOLLOW_UP, ServerOpts(max_drain_size=8))
    [resp] = parse_responses(out, ["POST"])
    assert resp.status == 200
    assert rec.targets == ["/unread"]


# -- reading the request body -------------------------------------------------------------------


async def test_body_returns_the_whole_body_every_time() -> None:
    bodies: list[bytes] = []

    async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
        bodies.append(await req.body())
        bodies.append(await req.body())
        return await w.send()

    request = post(b"hello world")
    await AsyncTestClient(endpoint).raw([request[:-11], request[-11:-5], request[-5:]])
    await AsyncTestClient(endpoint).raw(get())
    assert bodies == [b"hello world", b"hello world", b"", b""]


@pytest.mark.parametrize(
    ("content_type", "body", "text"),
    [
        (b"text/plain; charset=latin-1", b"caf\xe9", "café"),
        (b'text/plain; charset="ISO-8859-1"', b"caf\xe9", "café"),
        (b"text/plain", b"caf\xc3\xa9", "café"),
        (b"text/plain; charset=no-such-charset", b"caf\xc3\xa9", "café"),
    ],
)
async def test_text_decodes_with_the_content_type_charset(
    content_type: bytes, body: bytes, text: str
) -> None:
    texts: list[str] = []

    async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
        texts.append(await req.text())
        return await w.send()

    await AsyncTestClient(endpoint).raw(post(body, b"/", b"Content-Type: " + content_type))
    assert texts == [text]


async def test_json_parses_the_body() -> None:
    values: list[object] = []

    async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
        values.append(await req.json())
        return await w.send()

    await AsyncTestClient(endpoint).raw(post(json.dumps({"a": [1, 2], "é": None}).encode()))
    assert values == [{"a": [1, 2], "é": None}]


async def test_stream_yields_the_body_piece_by_piece_as_it_arrives() -> None:
    chunks: list[bytes] = []

    async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
        async for chunk in req.stream():
            chunks.append(chunk)
        return await w.send()

    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\n"
    out = await AsyncTestClient(endpoint).raw([head, b"ab", b"cd", b"ef"])
    assert chunks == [b"ab", b"cd", b"ef"]
    assert parse_responses(out, ["POST"])[0].status == 200


async def test_chunked_request_body_is_decoded() -> None:
    _, rec = await exchange(
        chunked(b"/", b"4\r\nWiki\r\n5;ext=1\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\n\r\n"),
        read_body=True,
    )
    assert rec.bodies == [b"Wikipedia in\r\n\r\nchunks."]


async def test_request_trailers_are_available_after_the_body_and_not_merged() -> None:
    seen: list[object] = []

    async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
        seen.append(req.trailers)
        seen.append(await req.body())
        assert req.trailers is not None
        seen.append(req.trailers.get("expires"))
        seen.append("expires" in req.headers)
        return await w.send()

    await AsyncTestClient(endpoint).raw(
        chunked(b"/", b"5\r\nhello\r\n0\r\nExpires: Wed, 21 Oct 2015 07:28:00 GMT\r\n\r\n")
    )
    assert seen == [None, b"hello", "Wed, 21 Oct 2015 07:28:00 GMT", False]


# -- request fields -----------------------------------------------------------------------------


@pytest.mark.parametrize("method", [b"get", b"Get", b"PURGE", b"PATCH"])
async def test_method_is_passed_through_exactly_as_sent(method: bytes, parser: str) -> None:
    out, rec = await exchange(b"%s / HTTP/1.1\r\nHost: x\r\n\r\n" % method)
    if parser == "httptools" and method.decode() != method.decode().upper():
        # llhttp knows the registered methods only, case-sensitively: "get" is no method to
        # it, and the request is refused (docs/parsers.md).
        assert (rec.requests, parse_responses(out)[0].status) == ([], 400)
        return
    assert [r.method for r in rec.requests] == [method.decode()]
    assert parse_responses(out)[0].status == 200


async def test_path_is_percent_decoded_and_raw_path_kept() -> None:
    _, rec = await exchange(get(b"/caf%C3%A9/a%20b/%ZZ?x=%20y&z"))
    [req] = rec.requests
    assert req.path == "/café/a b/%ZZ"
    assert req.raw_path == "/caf%C3%A9/a%20b/%ZZ"
    assert req.query_string == "x=%20y&z"
    assert req.target == "/caf%C3%A9/a%20b/%ZZ?x=%20y&z"


async def test_query_keeps_every_value_of_a_name_in_order() -> None:
    _, rec = await exchange(get(b"/?a=1&b=2&a=3&empty=&plus=1+2"))
    query = rec.requests[0].query
    assert query.get_all("a") == ["1", "3"]
    assert query.get("a") == "1"
    assert query.get("empty") == ""
    assert query.get("plus") == "1 2"
    assert "b" in query and "c" not in query


async def test_client_and_server_addresses_are_on_the_request() -> None:
    _, rec = await exchange(get())
    [req] = rec.requests
    assert (req.client, req.server, req.scheme) == (
        ("127.0.0.1", 40000),
        ("127.0.0.1", 9999),
        "http",
    )


# -- the strict layer: refusals -----------------------------------------------------------------


async def refused(
    request: bytes | list[bytes], status: int, opts: ServerOpts | None = None
) -> TestResponse:
    """Send ``request`` with a valid request right behind it; check it was refused with
    ``status``, the endpoint never ran, the response said close and nothing followed it."""
    pieces = [request] if isinstance(request, bytes) else list(request)
    pieces[-1] += FOLLOW_UP
    out, rec = await exchange(pieces, opts, read_body=True)
    # parse_responses raises when any byte follows a response that closes the connection.
    [resp] = parse_responses(out)
    assert resp.status == status, out
    assert resp.headers["connection"] == "close"
    assert resp.headers["content-type"] == "text/plain; charset=utf-8"
    assert rec.requests == []
    return resp


def byte_by_byte(data: bytes) -> list[bytes]:
    return [bytes([b]) for b in data]


@pytest.mark.parametrize(
    "head",
    [
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n",
    ],
)
async def test_content_length_with_transfer_encoding_is_refused_with_400(head: bytes) -> None:
    # RFC 9112 §6.1: the server MAY reject it and MUST close the connection afterwards.
    await refused(head + b"5\r\nhello\r\n0\r\n\r\n", 400)


@pytest.mark.parametrize("version", [b"HTTP/2.0", b"HTTP/1.2", b"HTTP/0.9", b"HTTP/3.0"])
async def test_unsupported_version_is_refused_with_505(version: bytes) -> None:
    await refused(b"GET / %s\r\nHost: x\r\n\r\n" % version, 505)


@pytest.mark.parametrize(
    "request_line",
    [
        b"GET /",  # HTTP/0.9 simple-request: no version at all, h11 cannot parse it
        b"GET / HTTP/1.10",
        b"GET / HTTP/1",
        b"GET / http/1.1",
        b"GET / HTP/1.1",
    ],
)
async def test_unparseable_version_is_refused_with_400(request_line: bytes) -> None:
    await refused(request_line + b"\r\nHost: x\r\n\r\n", 400)


@pytest.mark.parametrize(
    "fields",
    [
        b"Host: x\r\nHost: x",
        b"Host: x\r\nHost: y",
        b"Host: x\r\nContent-Type: text/plain\r\nContent-Type: application/json",
        b"Host: x\r\nAuthorization: Basic YTpi\r\nAuthorization: Basic Yzpk",
        b"Host: x\r\nContent-Length: 5\r\nContent-Length: 6",
        b"Host: x\r\nContent-Length: 5, 6",
    ],
)
async def test_duplicate_singleton_header_is_refused_with_400(fields: bytes) -> None:
    await refused(b"POST / HTTP/1.1\r\n%s\r\n\r\nhello" % fields, 400)


async def test_identical_content_length_lines_are_one_content_length(parser: str) -> None:
    # RFC 9110 §8.6 / RFC 9112 §6.3: identical values may be processed as a single one (h11
    # merges them) — or refused (llhttp does; the strict layer would too if it saw them).
    if parser == "httptools":
        await refused(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
            400,
        )
        return
    _, rec = await exchange(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"
        + FOLLOW_UP,
        read_body=True,
    )
    assert rec.bodies == [b"hello", b""]


async def test_connect_is_refused_with_501() -> None:
    await refused(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 501)


def with_fields(count: int) -> bytes:
    fields = b"".join(b"X-F%d: v\r\n" % i for i in range(count - 1))
    return b"GET / HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n"


@pytest.mark.parametrize("split", [False, True])
async def test_header_count_over_the_limit_is_refused_with_431(split: bool) -> None:
    opts = ServerOpts(max_header_count=5)
    head = with_fields(6)
    await refused(byte_by_byte(head) if split else head, 431, opts)


@pytest.mark.parametrize("split", [False, True])
async def test_header_count_at_the_limit_is_served(split: bool) -> None:
    head = with_fields(5)
    _, rec = await exchange(byte_by_byte(head) if split else head, ServerOpts(max_header_count=5))
    assert len(rec.requests) == 1


def head_of_size(size: int) -> bytes:
    start = b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: "
    head = start + b"a" * (size - len(start) - 4) + b"\r\n\r\n"
    assert len(head) == size
    return head


@pytest.mark.parametrize("piece", [None, 50, 1])
async def test_head_bigger_than_max_head_size_is_refused_with_431(piece: int | None) -> None:
    head = head_of_size(257)
    pieces = [head] if piece is None else [head[i : i + piece] for i in range(0, 257, piece)]
    await refused(pieces, 431, ServerOpts(max_head_size=256))


@pytest.mark.parametrize("piece", [None, 50, 1])
async def test_head_of_exactly_max_head_size_is_served(piece: int | None) -> None:
    head = head_of_size(256)
    pieces = [head] if piece is None else [head[i : i + piece] for i in range(0, 256, piece)]
    _, rec = await exchange(pieces, ServerOpts(max_head_size=256))
    assert len(rec.requests) == 1


@pytest.mark.parametrize("split", [False, True])
async def test_target_longer_than_max_target_length_is_refused_with_414(split: bool) -> None:
    request = get(b"/" + b"a" * 100)
    await refused(
        byte_by_byte(request) if split else request, 414, ServerOpts(max_target_length=100)
    )


async def test_target_of_exactly_max_target_length_is_served() -> None:
    _, rec = await exchange(get(b"/" + b"a" * 99), ServerOpts(max_target_length=100))
    assert len(rec.requests) == 1


async def test_request_line_alone_over_max_head_size_is_refused_with_414() -> None:
    request = get(b"/" + b"a" * 1000)
    await refused(
        [request[i : i + 50] for i in range(0, len(request), 50)],
        414,
        ServerOpts(max_head_size=256),
    )


async def test_content_length_over_max_body_size_is_refused_before_the_endpoint_runs() -> None:
    # refused() checks the endpoint was never called.
    await refused(post(b"x" * 11), 413, ServerOpts(max_body_size=10))


async def test_content_length_of_exactly_max_body_size_is_served() -> None:
    _, rec = await exchange(post(b"x" * 10), ServerOpts(max_body_size=10), read_body=True)
    assert rec.bodies == [b"x" * 10]


async def test_chunked_body_over_max_body_size_is_refused_with_413_when_read() -> None:
    body = b"6\r\n123456\r\n5\r\n789ab\r\n0\r\n\r\n"
    out, rec = await exchange(
        chunked(b"/big", body) + FOLLOW_UP, ServerOpts(max_body_size=10), read_body=True
    )
    [resp] = parse_responses(out, ["POST"])
    assert resp.status == 413
    assert resp.headers["connection"] == "close"
    assert rec.targets == ["/big"]


async def test_missing_host_on_http11_is_refused_with_400() -> None:
    await refused(b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", 400)


@pytest.mark.parametrize(
    "host",
    [
        b"exa mple.com",
        b"user@example.com",
        b"example.com:80a",
        b"[::1",
        b"example.com/path",
        b"a, b",
        b"example.com?q",
    ],
)
async def test_invalid_host_value_is_refused_with_400(host: bytes) -> None:
    # RFC 9112 §3.2: a server MUST respond 400 to a request with an invalid Host value.
    await refused(b"GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % host, 400)


@pytest.mark.parametrize(
    "host", [b"example.com", b"example.com:8080", b"127.0.0.1", b"[::1]:80", b"xn--bcher-kva.ch"]
)
async def test_valid_host_value_is_served(host: bytes) -> None:
    _, rec = await exchange(b"GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % host)
    assert [r.host for r in rec.requests] == [host.decode()]


@pytest.mark.parametrize("target", [b"/p#frag", b"/p?q=1#frag", b"http://example.com/p#f"])
async def test_fragment_in_target_is_refused_with_400(target: bytes) -> None:
    await refused(get(target), 400)


async def test_asterisk_form_with_get_is_refused_with_400() -> None:
    await refused(get(b"*"), 400)


async def test_asterisk_form_with_options_is_served() -> None:
    out, rec = await exchange(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [(r.method, r.target) for r in rec.requests] == [("OPTIONS", "*")]
    assert parse_responses(out, ["OPTIONS"])[0].status == 200


@pytest.mark.parametrize(
    ("target", "path", "query", "host"),
    [
        (b"http://example.com/p?q=1", "/p", "q=1", "example.com"),
        (b"https://example.com:8443/a/b", "/a/b", "", "example.com:8443"),
        (b"http://example.com", "/", "", "example.com"),
        (b"http://example.com?q=1", "/", "q=1", "example.com"),
        (b"HTTP://Example.com/%7Ep", "/~p", "", "Example.com"),
    ],
)
async def test_absolute_form_target_gives_path_and_host_from_the_target(
    target: bytes, path: str, query: str, host: str
) -> None:
    # RFC 9112 §3.2.2: the server MUST ignore the Host header and use the target's authority.
    _, rec = await exchange(b"GET %s HTTP/1.1\r\nHost: other.example\r\n\r\n" % target)
    [req] = rec.requests
    assert (req.path, req.query_string, req.host) == (path, query, host)


@pytest.mark.parametrize(
    "target",
    [b"ftp://example.com/p", b"http:///p", b"http://user@example.com/p", b"foo/bar", b"?q"],
)
async def test_invalid_target_form_is_refused_with_400(target: bytes) -> None:
    await refused(get(target), 400)


@pytest.mark.parametrize(
    "coding",
    [
        b"gzip",
        b"chunked, gzip",
        b"chunked, chunked",
        # chunked is final here, so RFC 9112 §6.1's "SHOULD 501" fits; h11 refuses every coding
        # but chunked before the codings can be told apart, so with h11 tophat answers 400.
        b"gzip, chunked",
    ],
)
async def test_unsupported_transfer_coding_is_refused_with_400(coding: bytes, parser: str) -> None:
    # RFC 9112 §6.3: when chunked is not the final coding, the server MUST respond 400 and close.
    status = 501 if parser == "httptools" and coding == b"gzip, chunked" else 400
    await refused(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: %s\r\n\r\n" % coding, status)


async def test_transfer_encoding_in_http10_request_is_refused_with_400() -> None:
    # RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing.
    await refused(
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400
    )


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n",  # a TLS ClientHello
        b"hello world\r\n\r\n",
        b"/foo/bar HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nnot a header line\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n",
        b"\r\n\r\n",
    ],
)
async def test_garbage_is_refused_with_400(garbage: bytes) -> None:
    # (Two empty lines: one is ignored, RFC 9112 §2.2; the second is refused by both parsers.)
    await refused(garbage, 400)


async def test_empty_input_gets_no_bytes_at_all() -> None:
    out, rec = await exchange(b"")
    assert (out, rec.requests) == (b"", [])


@pytest.mark.parametrize("cut", [1, 10, 20, 27])
async def test_client_closing_mid_head_gets_no_response(cut: int) -> None:
    out, rec = await exchange(get(b"/", b"Accept: */*")[:cut])
    assert (out, rec.requests) == (b"", [])


async def test_client_closing_mid_body_gets_400_and_a_close() -> None:
    out, rec = await exchange(post(b"hello")[:-2], read_body=True)
    [resp] = parse_responses(out, ["POST"])
    assert (resp.status, resp.headers["connection"]) == (400, "close")
    assert rec.bodies == []


@pytest.mark.parametrize(
    "request_",
    [
        b"GET /EVIL<script>#EVIL HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: EVIL@<script>\r\n\r\n",
        b"GET / HTTP/2.0\r\nHost: x\r\nX-EVIL: <script>\r\n\r\n",
        b"EVIL<script> HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nEVIL<script>: 1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: EVIL<script>\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-EVIL: <script>\x01\r\n\r\n",
        b"GET /" + b"EVIL" * 3000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nEVIL<script>\r\n",
    ],
)
async def test_error_responses_never_echo_the_clients_bytes(request_: bytes) -> None:
    out, _ = await exchange(request_, ServerOpts(max_target_length=1000), read_body=True)
    [resp] = parse_responses(out, ["POST"])
    assert resp.status >= 400
    assert b"EVIL" not in out and b"script" not in out
