"""Hostile input against the two request parsers (issue 11, findings 2, 4, 7, 8 and 10).

Each test sends raw bytes and asserts what comes back on the wire; every test runs with both
parsers (conftest's autouse ``parser`` fixture), the socket tests also on asyncio, uvloop and
trio. What the tests prove, in one line each:

* a trailer section counts against the head's limits (``max_head_size`` and
  ``max_header_count``): an endless one, or one endless trailer value, gets 431 and a close
  after a bounded number of bytes, also when the endpoint leaves the body unread (finding 2);
* one empty line before a request-line is ignored, a second one is a 400 (RFC 9112 §2.2), and
  bytes received for the next request start its head timeout, which they never restart
  (finding 4);
* hundreds of pipelined ``Upgrade`` requests are all answered, in order (finding 7);
* the bytes of a previous request never count against the next one's head (finding 8);
* trailer fields pass the strict layer: control characters, fields RFC 9110 §6.5.1 keeps out
  of trailers, and line endings or chunk lines one parser would refuse get a 400 and a close
  from both (finding 10).
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any

import anyio
import pytest
from servers import Client, connected
from test_accept import exchange

from tophat import Request, ResponseWriter, ResponseWritten, ServerOpts
from tophat.testing import parse_responses

pytestmark = pytest.mark.usefixtures("no_error_logs")

CHUNKED_HEAD = b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
FOLLOW_UP = b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n"

# A hostile client may send this much before the server must have refused it. The server may
# read up to max_head_size plus a read or two before it refuses, and loopback socket buffers
# take some more: far below what an unbounded parser would take in the same time.
BOUND = 2 * 1024 * 1024


async def reads_body(req: Request, w: ResponseWriter) -> ResponseWritten:
    body = await req.body()
    w.set_text(f"{len(body)} bytes, trailers {req.trailers!r}")
    return await w.send()


async def ignores_body(req: Request, w: ResponseWriter) -> ResponseWritten:
    w.set_text("not read")
    return await w.send()


def _received(sock: socket.socket) -> bytes | None:
    """What the server sent so far without waiting (b"" at its close); None: nothing yet."""
    try:
        return sock.recv(65536)
    except BlockingIOError:
        return None
    except ConnectionResetError:
        return b""


async def flood(client: Client, first: bytes, piece: bytes) -> tuple[int, bytes]:
    """Send ``first``, then ``piece`` again and again until the server closes the connection
    (or BOUND bytes went out); return the bytes sent and everything the server answered."""
    sent = 0
    answer = b""
    with anyio.fail_after(30):
        await client.send(first)
        while sent < BOUND:
            try:
                await client.send(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(piece)
            while (data := _received(client.sock)) is not None:
                if not data:
                    return sent, answer
                answer += data
            await anyio.sleep(0)
        # The server stopped reading (or never answered): whatever it sent is there by now.
        with anyio.move_on_after(2):
            while data := await client.recv():
                answer += data
    return sent, answer


def _status_and_close(answer: bytes) -> list[tuple[int, str]]:
    return [(r.status, r.headers.get("connection", "")) for r in parse_responses(answer, ["POST"])]


# -- finding 2: the trailer section counts against the head's limits --------------------------

ENDLESS_TRAILERS = {
    "endless-fields": (b"0\r\n", b"X-T: " + b"a" * 100 + b"\r\n"),
    "endless-value": (b"0\r\nX-T: ", b"a" * 1024),
    "endless-name": (b"0\r\n", b"X" * 1024),
}


@pytest.mark.parametrize("case", ENDLESS_TRAILERS)
async def test_an_endless_trailer_section_gets_431_and_a_close(serving: Any, case: str) -> None:
    start, piece = ENDLESS_TRAILERS[case]
    async with serving(reads_body, max_head_size=4096) as server, connected(server.port) as c:
        sent, answer = await flood(c, CHUNKED_HEAD + b"3\r\nabc\r\n" + start, piece)
    assert sent < BOUND, "the server never refused the trailer section"
    assert _status_and_close(answer) == [(431, "close")], answer


@pytest.mark.parametrize("case", ENDLESS_TRAILERS)
async def test_an_endless_trailer_section_of_an_unread_body_closes_the_connection(
    serving: Any, case: str
) -> None:
    # The endpoint answers without reading the body; the server then drains it (up to
    # max_drain_size) to reuse the connection. Trailers are not body bytes: without a limit of
    # their own, the drain read them for ever.
    start, piece = ENDLESS_TRAILERS[case]
    async with serving(ignores_body, max_head_size=4096) as server, connected(server.port) as c:
        sent, answer = await flood(c, CHUNKED_HEAD + b"3\r\nabc\r\n" + start, piece)
    assert sent < BOUND, "the server drained the trailer section for ever"
    # The answer went out before the trailers were refused: the connection just closes.
    assert [(r.status, r.text) for r in parse_responses(answer, ["POST"])] == [(200, "not read")]


async def test_a_trailer_section_counts_against_max_head_size() -> None:
    # The head takes about 60 bytes of 512: 60 trailers of 10 bytes are too many bytes, each
    # piece arriving whole (so no incomplete-event limit applies).
    lines = [b"X-%02d: abc\r\n" % i for i in range(60)]
    opts = ServerOpts(max_head_size=512)
    out, rec = await exchange(
        [CHUNKED_HEAD, b"3\r\nabc\r\n0\r\n" + b"".join(lines) + b"\r\n"], opts, read_body=True
    )
    [resp] = parse_responses(out, ["POST"])
    assert (resp.status, resp.headers["connection"]) == (431, "close"), out
    # Within the limit: served.
    out, rec = await exchange(
        [CHUNKED_HEAD, b"3\r\nabc\r\n0\r\n" + b"".join(lines[:20]) + b"\r\n" + FOLLOW_UP],
        opts,
        read_body=True,
    )
    assert [r.status for r in parse_responses(out, ["POST", "GET"])] == [200, 200], out
    assert rec.requests[0].trailers is not None and len(rec.requests[0].trailers) == 20


async def test_a_trailer_section_counts_against_max_header_count() -> None:
    # The head has two fields; ServerOpts().max_header_count is 100.
    def trailers(n: int) -> bytes:
        return b"".join(b"X-%03d: 1\r\n" % i for i in range(n))

    out, _ = await exchange(
        CHUNKED_HEAD + b"3\r\nabc\r\n0\r\n" + trailers(98) + b"\r\n" + FOLLOW_UP, read_body=True
    )
    assert [r.status for r in parse_responses(out, ["POST", "GET"])] == [200, 200], out
    out, _ = await exchange(
        CHUNKED_HEAD + b"3\r\nabc\r\n0\r\n" + trailers(99) + b"\r\n" + FOLLOW_UP, read_body=True
    )
    [resp] = parse_responses(out, ["POST"])
    assert (resp.status, resp.headers["connection"]) == (431, "close"), out


async def test_a_configured_max_header_count_bounds_the_trailer_section_too() -> None:
    opts = ServerOpts(max_header_count=10)
    body = CHUNKED_HEAD + b"3\r\nabc\r\n0\r\n"
    fields = b"".join(b"X-%03d: 1\r\n" % i for i in range(8))  # with the head's two: 10
    out, _ = await exchange(body + fields + b"\r\n" + FOLLOW_UP, opts, read_body=True)
    assert [r.status for r in parse_responses(out, ["POST", "GET"])] == [200, 200], out
    fields += b"X-008: 1\r\n"
    out, _ = await exchange(body + fields + b"\r\n" + FOLLOW_UP, opts, read_body=True)
    [resp] = parse_responses(out, ["POST"])
    assert (resp.status, resp.headers["connection"]) == (431, "close"), out


# -- finding 4: empty lines, and the head timeout from the first byte -------------------------


async def test_a_second_empty_line_sent_later_gets_400(serving: Any) -> None:
    async with serving(reads_body, keep_alive_timeout=5) as server, connected(server.port) as c:
        await c.send(b"\r\n")
        await anyio.sleep(0.2)
        await c.send(b"\r\n")
        with anyio.fail_after(3):
            answer = await c.read_all()
    [resp] = parse_responses(answer)
    assert (resp.status, resp.headers["connection"]) == (400, "close"), answer


async def test_an_empty_line_starts_the_head_timeout(serving: Any) -> None:
    # keep_alive_timeout is long, head_timeout short: the empty line belongs to the next
    # request, whose head must be complete head_timeout after its first byte (the CRLF), not
    # after its request-line. (Before: the CRLF restarted the idle timer and the request was
    # served; a CRLF every few seconds held a connection open for ever.)
    opts: dict[str, Any] = {"keep_alive_timeout": 5, "head_timeout": 0.6}
    async with serving(reads_body, **opts) as server, connected(server.port) as c:
        await c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await c.response())[0] == 200
        await c.send(b"\r\n")
        await anyio.sleep(0.4)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            await c.send(b"GET /late HTTP/1.1\r\n")
            await anyio.sleep(0.4)  # 0.8 s after the CRLF: past the head timeout
            await c.send(b"Host: x\r\n\r\n")
        with anyio.fail_after(3):
            answer = await c.read_all()
    [resp] = parse_responses(answer)
    assert (resp.status, resp.headers["connection"]) == (408, "close"), answer


@pytest.mark.parametrize(
    "pieces",
    [
        [b"\r", b"\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"],
        [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\r", b"\n" + FOLLOW_UP],
        [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\r\n", FOLLOW_UP],
    ],
    ids=["split-before-the-first", "split-after-a-request", "alone-after-a-request"],
)
async def test_one_empty_line_in_pieces_is_ignored(pieces: list[bytes]) -> None:
    out, rec = await exchange(pieces)
    assert [r.status for r in parse_responses(out)] == [200] * len(rec.requests), out
    assert rec.targets == (["/", "/after"] if len(rec.targets) == 2 else ["/"])


@pytest.mark.parametrize(
    "data",
    [
        [b"\r\n\r\n" + FOLLOW_UP],
        [b"\r\n", b"\r\n", FOLLOW_UP],
        [b"\n" + FOLLOW_UP],
        [b"\r" + FOLLOW_UP],
        [b"\r\r\n" + FOLLOW_UP],
        [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\r\n\r\n" + FOLLOW_UP],
        [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\n" + FOLLOW_UP],
        [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\r\n", b"\r\n" + FOLLOW_UP],
        [b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc\r\n\r\n" + FOLLOW_UP],
        [b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n\r\n\r\n\r\n" + FOLLOW_UP],
    ],
    ids=[
        "two-crlf",
        "two-crlf-in-pieces",
        "bare-lf",
        "bare-cr",
        "cr-crlf",
        "two-crlf-after-a-get",
        "bare-lf-after-a-get",
        "two-crlf-after-a-get-in-pieces",
        "two-crlf-after-a-body",
        "two-crlf-after-a-crlf-body",
    ],
)
async def test_more_than_one_empty_line_before_a_request_line_gets_400(data: list[bytes]) -> None:
    out, rec = await exchange(data, read_body=True)
    *served, refusal = parse_responses(out, ["POST" if data[0].startswith(b"POST") else "GET"])
    assert [r.status for r in served] == [200] * len(served), out
    assert (refusal.status, refusal.headers["connection"]) == (400, "close"), out
    assert "/after" not in rec.targets


# -- finding 7: pipelined Upgrade requests ----------------------------------------------------


async def test_600_pipelined_upgrade_requests_are_answered_in_order(serving: Any) -> None:
    requests = b"".join(
        b"GET /%d HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n" % i
        for i in range(600)
    )

    async def target(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.set_text(req.target)
        return await w.send()

    async with serving(target) as server, connected(server.port) as c:
        with anyio.fail_after(20):
            await c.send(requests)
            answers = [await c.response() for _ in range(600)]
    assert [(status, body) for status, _, body in answers] == [
        (200, b"/%d" % i) for i in range(600)
    ]


# -- finding 8: a previous request's bytes never count against the next head ------------------


async def test_a_head_after_a_large_body_in_the_same_read_is_not_too_large() -> None:
    body = b"x" * 20_000
    post = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    out, rec = await exchange(
        [post + b"GET /after HTTP/1.1\r\n", b"Host: x\r\n", b"\r\n"], read_body=True
    )
    assert [r.status for r in parse_responses(out, ["POST", "GET"])] == [200, 200], out
    assert rec.targets == ["/", "/after"]


async def test_a_head_after_a_chunked_body_in_the_same_read_is_not_too_large() -> None:
    chunked = CHUNKED_HEAD + b"4e20\r\n" + b"x" * 20_000 + b"\r\n0\r\n\r\n"
    out, rec = await exchange(
        [chunked + b"GET /after HTTP/1.1\r\n", b"Host: x\r\n", b"\r\n"], read_body=True
    )
    assert [r.status for r in parse_responses(out, ["POST", "GET"])] == [200, 200], out
    assert rec.targets == ["/up", "/after"]


# -- finding 10: trailers pass the strict layer; both parsers refuse the same lines -----------


def chunked_with_trailers(trailers: bytes) -> bytes:
    return CHUNKED_HEAD + b"3\r\nabc\r\n0\r\n" + trailers + b"\r\n" + FOLLOW_UP


@pytest.mark.parametrize(
    "trailer",
    [
        b"X-T: a\x01b\r\n",  # a control character, as in a header value
        b"X-T: 1\r\n folded\r\n",  # obs-fold
        b"Content-Length: 5\r\n",  # framing (RFC 9110 §6.5.1)
        b"Transfer-Encoding: chunked\r\n",
        b"Host: evil.example\r\n",  # routing
        b"Authorization: Basic YTpi\r\n",  # authentication
        b"Cookie: a=1\r\n",
        b"If-Match: *\r\n",  # a request modifier
        b"Content-Type: text/plain\r\n",  # content format
        b"X-T: 1\n",  # a bare LF ending a trailer line
    ],
    ids=[
        "ctl",
        "obs-fold",
        "content-length",
        "transfer-encoding",
        "host",
        "authorization",
        "cookie",
        "if-match",
        "content-type",
        "bare-lf",
    ],
)
async def test_a_trailer_field_the_strict_layer_refuses_gets_400_and_a_close(
    trailer: bytes,
) -> None:
    out, rec = await exchange(chunked_with_trailers(trailer), read_body=True)
    [resp] = parse_responses(out, ["POST"])  # the follow-up is never read
    assert (resp.status, resp.headers["connection"]) == (400, "close"), out
    assert rec.targets == ["/up"] and rec.bodies == []  # its body read failed


async def test_trailer_fields_meant_for_trailers_reach_the_endpoint() -> None:
    out, rec = await exchange(
        chunked_with_trailers(b"Content-Digest: sha-256=:abc=:\r\nX-Checksum: 1\r\n"),
        read_body=True,
    )
    assert [r.status for r in parse_responses(out, ["POST", "GET"])] == [200, 200], out
    trailers = rec.requests[0].trailers
    assert trailers is not None
    assert (trailers.get("content-digest"), trailers.get("x-checksum")) == ("sha-256=:abc=:", "1")


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\nHost: x\nX-A: 1\r\n\r\n" + FOLLOW_UP,  # a bare LF in the head
        b"GET / HTTP/1.1\r\nHost: x\r\n\n" + FOLLOW_UP,  # a bare LF ending the head
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n folded\r\n\r\n" + FOLLOW_UP,  # obs-fold
    ],
    ids=["bare-lf-in-head", "bare-lf-ending-head", "obs-fold-in-head"],
)
async def test_a_head_line_llhttp_refuses_gets_400_from_both_parsers(data: bytes) -> None:
    out, rec = await exchange(data)
    [resp] = parse_responses(out)
    assert (resp.status, resp.headers["connection"]) == (400, "close"), out
    assert rec.requests == []


@pytest.mark.parametrize(
    "chunks",
    [
        b"3 \r\nabc\r\n0\r\n\r\n",  # whitespace after the chunk size
        b"3;x=1\rz\r\nabc\r\n0\r\n\r\n",  # a bare CR in a chunk extension
        b"3;x\x01\r\nabc\r\n0\r\n\r\n",  # a control character in a chunk extension
        b"3;\r\nabc\r\n0\r\n\r\n",  # an extension without a name
        b"3\r\nabc\r\n0\r\n\n",  # a bare LF ending the trailer section
        b"3\nabc\r\n0\r\n\r\n",  # a bare LF ending a chunk line
    ],
    ids=["size-ows", "bare-cr-in-ext", "ctl-in-ext", "empty-ext", "bare-lf-last", "bare-lf-size"],
)
async def test_a_chunk_line_llhttp_refuses_gets_400_from_both_parsers(chunks: bytes) -> None:
    out, rec = await exchange(CHUNKED_HEAD + chunks + FOLLOW_UP, read_body=True)
    [resp] = parse_responses(out, ["POST"])
    assert (resp.status, resp.headers["connection"]) == (400, "close"), out
    assert rec.targets == ["/up"] and rec.bodies == []


async def test_valid_chunk_extensions_are_served_by_both_parsers() -> None:
    chunks = b'3;a;b=c;d="q \\" ;"\r\nabc\r\n0;e=1\r\n\r\n'
    out, rec = await exchange(CHUNKED_HEAD + chunks + FOLLOW_UP, read_body=True)
    assert [r.status for r in parse_responses(out, ["POST", "GET"])] == [200, 200], out
    assert rec.bodies == [b"abc", b""]


async def test_an_empty_transfer_encoding_element_gets_400_from_both_parsers() -> None:
    out, rec = await exchange(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: , chunked\r\n\r\n0\r\n\r\n" + FOLLOW_UP
    )
    [resp] = parse_responses(out, ["POST"])
    assert (resp.status, resp.headers["connection"]) == (400, "close"), out
    assert rec.requests == []
