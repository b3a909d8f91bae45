"""RFC 9110 (and Fetch CORS) origin-server requirements, one wire-level test each.

Each test sends raw request bytes through ``tophat.testing.AsyncTestClient`` (so through the parser
the ``parser`` fixture of conftest.py picks: h11, then httptools) and checks the exact status,
fields and content that come out. Where the two parsers allow different, RFC-conforming
behaviour (docs/parsers.md), the test states each parser's expectation.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest

from tophat import Endpoint, Glitch, Request, ResponseWriter, ResponseWritten
from tophat.middleware import chain
from tophat.middleware.cors import cors
from tophat.testing import AsyncTestClient, parse_responses


class _Echo:
    """Reads the whole request body and answers ``METHOD body=<repr of the body>``."""

    def __init__(self) -> None:
        self.targets: list[str] = []

    async def __call__(self, req: Request, w: ResponseWriter) -> ResponseWritten:
        self.targets.append(req.target)
        body = await req.body()
        w.set_text(f"{req.method} body={body!r}")
        return await w.send()


async def _ok(req: Request, w: ResponseWriter) -> ResponseWritten:
    w.set_text("ok")
    return await w.send()


# -- RFC 9110 §9.3.2: no content in a response to HEAD, refusals by the parser included ----------
#
# "The HEAD method is identical to GET except that the server MUST NOT send content in the
# response." This holds for every refusal: those of the strict layer, and those of the parser
# itself. llhttp's errors carry the method; h11's do not, so tophat's h11 adapter notes whether
# the head starts with "HEAD " before h11 reads it, and a HEAD that h11 refuses gets its 400
# without the "Bad Request" body (which a HEAD client would read as the next response's start).

_HEAD_REFUSED_BY_PARSER = [
    # RFC 9112 §3.2: no Host in an HTTP/1.1 request (h11 refuses it while parsing).
    pytest.param(b"HEAD / HTTP/1.1\r\n\r\n", id="missing-host"),
    # RFC 9110 §8.6: an invalid Content-Length.
    pytest.param(b"HEAD / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", id="bad-length"),
    # RFC 9112 §5.1: whitespace between a field name and the colon MUST get 400.
    pytest.param(b"HEAD / HTTP/1.1\r\nHost: x\r\nFoo : bar\r\n\r\n", id="space-before-colon"),
]


@pytest.mark.parametrize("raw", _HEAD_REFUSED_BY_PARSER)
async def test_head_refused_by_the_parser_gets_a_400_without_content(raw: bytes) -> None:
    out = await AsyncTestClient(_ok).raw(raw)
    head, sep, content = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert sep == b"\r\n\r\n"
    assert b"\r\nconnection: close" in head.lower()
    assert content == b""  # HEAD: the head only, nothing after it


# -- RFC 9110 §7.8: an ignored Upgrade leaves the request an ordinary HTTP/1.1 request ---------
#
# "A server MAY ignore a received Upgrade header field if it wishes to continue using the
# current protocol on that connection." tophat never switches protocols, so it ignores Upgrade:
# the request is an HTTP/1.1 request framed by RFC 9112 §6.3 ("If a valid Content-Length header
# field is present without Transfer-Encoding, its decimal value defines the expected message
# body length in octets"), and the connection goes on with the next request. This is what
# ``curl --http2 http://...`` sends (an h2c upgrade), POST bodies included.
#
# Without content, both parsers serve it and parse on. With content, they differ (a documented
# difference, docs/parsers.md): h11 passes the content to the endpoint; llhttp ends an Upgrade
# request at its head, leaving what follows to the new protocol, so it cannot read the content.
# With httptools tophat refuses such a request before the endpoint runs, with 501 Not
# Implemented (RFC 9110 §15.6.2) and a close, rather than serve it without its content.

_H2C = (
    b"Connection: Upgrade, HTTP2-Settings\r\n"
    b"Upgrade: h2c\r\n"
    b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"
)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(
            b"POST /up HTTP/1.1\r\nHost: x\r\n" + _H2C + b"Content-Length: 5\r\n\r\nhello",
            id="content-length",
        ),
        pytest.param(
            b"POST /up HTTP/1.1\r\nHost: x\r\n"
            + _H2C
            + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            id="chunked",
        ),
    ],
)
async def test_content_of_an_upgrade_request_reaches_the_endpoint(raw: bytes, parser: str) -> None:
    echo = _Echo()
    out = await AsyncTestClient(echo).raw(raw)
    if parser == "h11":
        responses = parse_responses(out, ["POST"])
        assert [(r.status, r.body) for r in responses] == [(200, b"POST body=b'hello'")]
        assert echo.targets == ["/up"]
    else:
        # llhttp cannot read it: refused before the endpoint runs. (parse_responses raises
        # when bytes follow a response that closes the connection: exactly one response.)
        assert out.startswith(b"HTTP/1.1 501 Not Implemented\r\n"), out
        [response] = parse_responses(out, ["POST"])
        assert response.status == 501
        assert response.headers.get_all("connection") == ["close"]
        assert echo.targets == []


async def test_an_ignored_upgrade_request_gets_exactly_one_response() -> None:
    out = await AsyncTestClient(_Echo()).raw(b"GET / HTTP/1.1\r\nHost: x\r\n" + _H2C + b"\r\n")
    assert out.count(b"HTTP/1.1 ") == 1, out
    [response] = parse_responses(out)
    assert (response.status, response.body) == (200, b"GET body=b''")


@pytest.mark.parametrize(
    ("first", "method"),
    [
        pytest.param(b"GET /a HTTP/1.1\r\nHost: x\r\n" + _H2C + b"\r\n", "GET", id="get"),
        pytest.param(
            b"POST /a HTTP/1.1\r\nHost: x\r\n" + _H2C + b"Content-Length: 0\r\n\r\n",
            "POST",
            id="post-content-length-0",
        ),
    ],
)
async def test_a_request_after_an_ignored_upgrade_is_served(first: bytes, method: str) -> None:
    # Continuing on HTTP/1.1 means the next pipelined request is an HTTP/1.1 request.
    echo = _Echo()
    out = await AsyncTestClient(echo).raw(first + b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
    responses = parse_responses(out, [method, "GET"])
    assert [(r.status, r.body) for r in responses] == [
        (200, f"{method} body=b''".encode()),
        (200, b"GET body=b''"),
    ]
    assert echo.targets == ["/a", "/b"]


# -- RFC 9110 §15.3.6: no content in a 205 response ----------------------------------------------
#
# "Since the 205 status code implies that no additional content will be provided, a server
# MUST NOT generate content in a 205 response." Unlike a 204, a 205 is framed by RFC 9112 §6.3,
# so tophat sends it as empty, ``content-length: 0``, whatever body the endpoint set: none from
# ``raise Glitch(205)`` (whose reason phrase would otherwise be its body), a text body, or a
# streamed one (which would otherwise be chunked). The pipelined request after it is served.


async def _glitch_205(req: Request, w: ResponseWriter) -> ResponseWritten:
    raise Glitch(205)


async def _text_205(req: Request, w: ResponseWriter) -> ResponseWritten:
    w.set_status(205)
    w.set_text("form reset")
    return await w.send()


async def _streamed_205(req: Request, w: ResponseWriter) -> ResponseWritten:
    async def pieces() -> AsyncIterator[bytes]:
        yield b"form "
        yield b"reset"

    w.set_status(205)
    w.set_body(pieces())
    return await w.send()


@pytest.mark.parametrize(
    "endpoint",
    [
        pytest.param(_glitch_205, id="glitch"),
        pytest.param(_text_205, id="text-body"),
        pytest.param(_streamed_205, id="streamed-body"),
    ],
)
async def test_a_205_response_is_sent_with_content_length_0_and_no_content(
    endpoint: Endpoint,
) -> None:
    out = await AsyncTestClient(endpoint).raw(
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    heads = out.split(b"\r\n\r\n")
    assert heads[-1] == b"", out  # the output ends with the second head: no content anywhere
    assert len(heads) == 3, out
    for head in heads[:2]:
        assert head.startswith(b"HTTP/1.1 205 Reset Content\r\n"), out
        lines = head.lower().split(b"\r\n")
        assert [line for line in lines if line.startswith(b"content-length:")] == [
            b"content-length: 0"
        ]
        assert not any(line.startswith(b"transfer-encoding:") for line in lines), out
    assert [(r.status, r.body) for r in parse_responses(out)] == [(205, b""), (205, b"")]


# -- Fetch, "CORS protocol and HTTP caches": a wildcard ACAO is sent always, or Vary: Origin -----
#
# Fetch (#cors-protocol-and-http-caches): "If CORS protocol requirements are more complicated
# than setting `Access-Control-Allow-Origin` to * or a static origin, `Vary` is to be used."
# and "if `Access-Control-Allow-Origin` is set to * or a static origin for a particular
# resource, then configure the server to always send `Access-Control-Allow-Origin` in responses
# for the resource — for non-CORS requests as well as CORS requests — and do not use `Vary`."
# (Guidance phrased "is to be", not a "must".) With ``cors(allow_origins="*")`` tophat sends
# `access-control-allow-origin: *` on every actual response, with or without Origin, and no
# Vary: Origin: the answer does not depend on the origin, so a cache that stored the answer to
# a navigation (no Origin) can serve it to a later fetch() from any page.

_DATE = re.compile(rb"\r\ndate: [^\r]*")


@pytest.mark.parametrize(
    "origin",
    [
        pytest.param(b"", id="no-origin"),
        pytest.param(b"Origin: https://page.example\r\n", id="cross-origin"),
        pytest.param(b"Origin: null\r\n", id="opaque-origin"),
    ],
)
async def test_wildcard_cors_answers_are_the_same_with_and_without_origin(origin: bytes) -> None:
    client = AsyncTestClient(chain(cors(allow_origins="*"))(_ok))
    out = await client.raw(b"GET /r HTTP/1.1\r\nHost: x\r\n" + origin + b"\r\n")
    [response] = parse_responses(out)
    assert response.status == 200
    assert response.headers.get_all("access-control-allow-origin") == ["*"]
    assert response.headers.get_all("vary") == []
    # Byte for byte the answer to a request without Origin (but for the date).
    plain = await client.raw(b"GET /r HTTP/1.1\r\nHost: x\r\n\r\n")
    assert _DATE.sub(b"", out) == _DATE.sub(b"", plain)
