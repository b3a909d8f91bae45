"""tophat.client against RFC 9112 / RFC 9110 requirements on a client (user agent), on the wire.

They cover what tests/test_client.py does not (1xx, 304, Content-Length lists, truncated
chunked bodies, HTTP/1.0 keep-alive, userinfo, ...), and, last, what an audit found the client
did wrong: extra bytes after a response taken as the next response, a relative URL's fragment
sent, Content-Length sent with Transfer-Encoding.

Scripted servers are in-memory (``memory_stream_pair``) or ``RawServer`` threads answering raw
bytes on 127.0.0.1; every wait is bounded.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

import anyio
import pytest
from test_client import BOUND, HOST, RawServer

from tophat.client import (
    Client,
    ClientConnection,
    ClientError,
    ClientProtocolError,
    ClientResponse,
)
from tophat.testing import MemoryStream, memory_stream_pair

Handler = Callable[[socket.socket, threading.Event], None]


async def answer(
    reply: bytes, method: str = "GET", *, eof: bool = True
) -> tuple[ClientResponse, bytes]:
    """Send ``method /`` on a fresh in-memory connection whose server already sent ``reply``
    (then end of input if ``eof``); return (the response, its body), or raise."""
    client, server = memory_stream_pair()
    conn = ClientConnection(client, host="t")
    await server.send_all(reply)
    if eof:
        server.send_eof()
    with anyio.fail_after(BOUND):
        resp = await conn.request(method, "/")
        return resp, await resp.body()


async def drain(server: MemoryStream) -> bytes:
    """Whatever the client wrote to ``server`` so far (waits a moment for more)."""
    data = b""
    with anyio.move_on_after(0.1):
        while piece := await server.receive_some():
            data += piece
    return data


async def next_head(server: MemoryStream, buffer: bytearray) -> bytes | None:
    """The next request head the client wrote (requests without content), ``None`` at the end
    of input; ``buffer`` keeps what was read past it."""
    with anyio.fail_after(BOUND):
        while b"\r\n\r\n" not in buffer:
            piece = await server.receive_some()
            if not piece:
                return None
            buffer += piece
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    buffer[:] = rest
    return head


async def script(server: MemoryStream, *replies: bytes) -> None:
    """Answer each request head with the next of ``replies``, each sent only once its request
    arrived (never ahead of it); stop at the end of input."""
    buffer = bytearray()
    for reply in replies:
        if await next_head(server, buffer) is None:
            return
        await server.send_all(reply)


def serve_heads(
    conn: socket.socket, stop: threading.Event, reply: Callable[[bytes], bytes]
) -> None:
    """Answer each request head on ``conn`` with ``reply(head)`` until the client closes the
    connection or the test ends (polling ``stop``: an asyncio client closes its socket only
    once its loop runs again, which ``RawServer.__exit__`` blocks)."""
    conn.settimeout(0.05)
    data = b""
    while not stop.is_set():
        try:
            piece = conn.recv(65536)
        except TimeoutError:
            continue
        if not piece:
            return
        data += piece
        while b"\r\n\r\n" in data:
            head, data = data.split(b"\r\n\r\n", 1)
            conn.sendall(reply(head + b"\r\n\r\n"))


def keep_alive(replies: Callable[[bytes], bytes]) -> Handler:
    """Answer each request on the connection with ``replies(request line)``."""

    def handle(conn: socket.socket, stop: threading.Event) -> None:
        serve_heads(conn, stop, lambda head: replies(head.split(b"\r\n", 1)[0]))

    return handle


def recording(heads: list[bytes], reply: bytes) -> Handler:
    """Keep each request head in ``heads``; answer it with ``reply``."""

    def handle(conn: socket.socket, stop: threading.Event) -> None:
        def record(head: bytes) -> bytes:
            heads.append(head)
            return reply

        serve_heads(conn, stop, record)

    return handle


EMPTY_OK = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"


# -- what already holds ----------------------------------------------------------------------


async def test_1xx_responses_before_the_final_one_are_all_parsed() -> None:
    # RFC 9110 §15.2: a client MUST be able to parse one or more 1xx responses received prior
    # to a final response, even if the client does not expect one (103 carries fields).
    reply = (
        b"HTTP/1.1 103 Early Hints\r\nlink: </s.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 199 Whatever\r\n\r\n"
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
    )
    resp, body = await answer(reply, eof=False)
    assert (resp.status, resp.informational, body) == (200, [103, 100, 199], b"ok")


@pytest.mark.parametrize(
    ("method", "head"),
    [
        ("GET", b"HTTP/1.1 304 Not Modified\r\ncontent-length: 5\r\n\r\n"),
        ("GET", b"HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\n"),
        ("GET", b"HTTP/1.1 204 No Content\r\ntransfer-encoding: chunked\r\n\r\n"),
        ("HEAD", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"),
    ],
)
async def test_responses_without_content_end_at_the_head_whatever_the_framing(
    method: str, head: bytes
) -> None:
    # RFC 9112 §6.3 rule 1: a response to HEAD and any 1xx, 204 or 304 response ends at the
    # empty line after the header section, regardless of the header fields present. The next
    # response is sent only after the next request: nothing is left over after the first.
    client, server = memory_stream_pair()
    conn = ClientConnection(client, host="t")
    with anyio.fail_after(BOUND):
        async with anyio.create_task_group() as tg:
            tg.start_soon(script, server, head, b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nnext")
            first = await conn.request(method, "/")
            assert await first.body() == b""
            assert conn.reusable
            second = await conn.request("GET", "/")
            assert (second.status, await second.body()) == (200, b"next")


@pytest.mark.parametrize(
    ("field", "ok"),
    [("5, 5", True), ("005", True), ("5, 6", False), ("+5", False), ("-1", False), ("", False)],
)
async def test_content_length_lists_must_agree_and_be_digits(field: str, ok: bool) -> None:
    # RFC 9112 §6.3 rule 5: an invalid Content-Length in a response received by a user agent
    # is an unrecoverable error, unless it is a list of identical valid values.
    reply = f"HTTP/1.1 200 OK\r\ncontent-length: {field}\r\n\r\nhello".encode()
    if ok:
        assert (await answer(reply))[1] == b"hello"
    else:
        with pytest.raises(ClientProtocolError):
            await answer(reply)


async def test_two_different_content_length_fields_are_an_error() -> None:
    reply = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!"
    with pytest.raises(ClientProtocolError):
        await answer(reply)


@pytest.mark.parametrize(
    "rest",
    [b"5\r\nhello\r\n", b"5\r\nhel", b"5\r\nhello\r\n0\r\n"],
    ids=["no-last-chunk", "mid-chunk", "no-final-crlf"],
)
async def test_a_chunked_body_cut_by_the_close_is_an_error(rest: bytes) -> None:
    # RFC 9112 §8: a message whose chunked body was not terminated by the last chunk (and
    # trailer section) is incomplete, not a shorter success.
    reply = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + rest
    with pytest.raises(ClientProtocolError, match="incomplete chunked read"):
        await answer(reply)


async def test_chunk_extensions_are_ignored() -> None:
    # RFC 9112 §7.1.1: a recipient MUST ignore unrecognized chunk extensions.
    reply = (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        b'5;a=b;c\r\nhello\r\n00A\r\n0123456789\r\n0;x="y"\r\n\r\n'
    )
    assert (await answer(reply, eof=False))[1] == b"hello0123456789"


async def test_obs_fold_in_a_response_is_replaced_by_space() -> None:
    # RFC 9112 §5.2: a user agent MUST replace each received obs-fold with SP.
    reply = b"HTTP/1.1 200 OK\r\nx-a: a\r\n  b\r\ncontent-length: 0\r\n\r\n"
    resp, _ = await answer(reply, eof=False)
    assert resp.headers["x-a"] == "a b"


async def test_an_http_1_0_response_is_not_reused_even_with_keep_alive() -> None:
    # RFC 9112 §9.3: HTTP/1.0 persistence is opt-in ("keep-alive", honoured only if the
    # recipient wishes to): tophat does not, so each request takes a new connection.
    reply = b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 2\r\n\r\nok"
    with RawServer(keep_alive(lambda line: reply)) as server:
        async with Client(f"http://{HOST}:{server.port}", timeout=BOUND) as c:
            for _ in range(2):
                assert await (await c.get("/")).body() == b"ok"
        assert server.connections == 2


async def test_a_request_with_connection_close_closes_after_the_response() -> None:
    # RFC 9112 §9.6: a client that sends "close" MUST NOT send further requests on that
    # connection and MUST close it after reading the final response.
    client, server = memory_stream_pair()
    conn = ClientConnection(client, host="t")
    await server.send_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
    with anyio.fail_after(BOUND):
        resp = await conn.request("GET", "/", headers={"connection": "close"})
        assert await resp.body() == b"ok"
    assert not conn.reusable
    assert (await drain(server)).endswith(b"\r\n\r\n")
    with anyio.fail_after(BOUND):
        assert await server.receive_some() == b""  # the client closed the connection


async def test_userinfo_and_fragment_of_an_absolute_url_are_not_sent() -> None:
    # RFC 9110 §4.2.4: a sender MUST NOT generate the userinfo subcomponent (and its "@") in
    # a target URI or field value; RFC 9112 §3.2.1: only the absolute path and query are sent.
    heads: list[bytes] = []
    with RawServer(recording(heads, EMPTY_OK)) as server:
        async with Client(timeout=BOUND) as c:
            await c.get(f"http://user:secret@{HOST}:{server.port}?q=1#frag")
    assert heads == [f"GET /?q=1 HTTP/1.1\r\nHost: {HOST}:{server.port}\r\n\r\n".encode()]


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/a\r\nX-Evil: 1", {}),
        ("/a b", {}),
        ("/", {"X-A": "a\r\nX-Evil: 1"}),
        ("/", {"X-A": "a\nX-Evil: 1"}),
        ("/", {"X-A\r\nX-Evil": "1"}),
    ],
)
async def test_cr_lf_and_spaces_from_the_caller_never_reach_the_wire(
    path: str, headers: dict[str, str]
) -> None:
    # RFC 9112 §2.2 / RFC 9110 §5.5: no CR, LF or SP inside a request-target or field value.
    client, server = memory_stream_pair()
    conn = ClientConnection(client, host="t")
    with pytest.raises(Exception):  # noqa: B017 - refused, whatever the error type
        await conn.request("GET", path, headers=headers)
    assert await drain(server) == b""


# -- found by the audit, fixed ----------------------------------------------------------------


def fake_after(first: bytes) -> Handler:
    """Answer ``/1`` with ``first`` followed, in the same write, by a complete second response
    ("fake"); answer every other request (on any connection) with "real"."""
    fake = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nfake"
    real = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nreal"
    return keep_alive(lambda line: first + fake if b" /1 " in line else real)


@pytest.mark.parametrize(
    ("method", "first"),
    [
        ("GET", b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"),
        ("HEAD", b"HTTP/1.1 200 OK\r\ncontent-length: 40\r\n\r\n"),  # HEAD: ends at the head
    ],
)
async def test_extra_data_after_a_response_is_never_the_next_response(
    method: str, first: bytes
) -> None:
    # RFC 9112 §6.3: "If the final response to the last request on a connection has been
    # completely received and there remains additional data to read, a user agent MAY discard
    # the remaining data ... A client MUST NOT process, cache, or forward such extra data as a
    # separate response, as such behavior would be vulnerable to cache poisoning."
    with RawServer(fake_after(first)) as server:
        async with Client(f"http://{HOST}:{server.port}", timeout=BOUND) as c:
            await c.request(method, "/1")
            await anyio.sleep(0.05)
            second = await c.get("/2")
            assert await second.body() == b"real"  # not b"fake": the server never sent that


async def test_extra_data_after_a_response_is_not_the_next_response_in_memory() -> None:
    client, server = memory_stream_pair()
    conn = ClientConnection(client, host="t")
    first = (
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
        b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nfake"
    )
    second: bytes | None = None
    with anyio.fail_after(BOUND):
        async with anyio.create_task_group() as tg:
            tg.start_soon(
                script, server, first, b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nreal"
            )
            assert await (await conn.request("GET", "/1")).body() == b"ok"
            try:  # refusing to reuse the connection is fine; taking "fake" is not
                second = await (await conn.request("GET", "/2")).body()
            except ClientError:
                second = None
            await conn.aclose()  # the script sees the end of input
    assert second in (None, b"real")


async def test_the_fragment_of_a_relative_url_is_not_sent() -> None:
    # RFC 9112 §3.2.1: "a client MUST send only the absolute path and query components of the
    # target URI as the request-target"; origin-form = absolute-path [ "?" query ].
    heads: list[bytes] = []
    with RawServer(recording(heads, EMPTY_OK)) as server:
        async with Client(f"http://{HOST}:{server.port}/api", timeout=BOUND) as c:
            await c.get("/a?b=1#frag")
            await c.get("page#top")
    assert [head.split(b"\r\n", 1)[0] for head in heads] == [
        b"GET /api/a?b=1 HTTP/1.1",
        b"GET /api/page HTTP/1.1",
    ]


async def test_content_length_is_never_sent_with_transfer_encoding() -> None:
    # RFC 9112 §6.2: "A sender MUST NOT send a Content-Length header field in any message
    # that contains a Transfer-Encoding header field." (The request-smuggling shape, §11.2.)
    client, server = memory_stream_pair()
    conn = ClientConnection(client, host="t")
    await server.send_all(EMPTY_OK)
    headers = {"Content-Length": "5", "Transfer-Encoding": "chunked"}
    refused = False
    try:
        with anyio.fail_after(BOUND):
            await (await conn.request("POST", "/", headers=headers, body=b"hello")).body()
    except Exception:
        refused = True
    sent = await drain(server)
    if refused:
        assert sent == b""
    else:
        head = sent.split(b"\r\n\r\n", 1)[0].lower()
        assert b"\r\ntransfer-encoding: chunked" in head
        assert b"content-length" not in head


@pytest.mark.parametrize("target", ["/a b", "/a\r\nX-Injected: 1", "/café"])
async def test_a_target_h11_refuses_is_a_client_error_and_nothing_is_sent(target: str) -> None:
    # The docstring promises ClientError for an invalid request (h11 raised its own errors, and
    # UnicodeEncodeError for a non-ASCII target); the connection stays usable.
    client, server = memory_stream_pair()
    conn = ClientConnection(client, host="t")
    with pytest.raises(ClientError, match="invalid request"):
        await conn.request("GET", target)
    await server.send_all(EMPTY_OK)
    with anyio.fail_after(BOUND):
        assert (await conn.request("GET", "/ok")).status == 200


async def test_an_absolute_url_with_an_upper_case_scheme_is_absolute() -> None:
    # RFC 3986 §3.1: schemes are case-insensitive ("HTTP://h/" is "http://h/"); it is not a
    # relative path to glue to base_url.
    heads: list[bytes] = []
    with RawServer(recording(heads, EMPTY_OK)) as server:
        async with Client("http://127.0.0.1:9/api", timeout=BOUND) as c:
            await c.get(f"HTTP://{HOST}:{server.port}/other")
    assert heads[0].split(b"\r\n", 1)[0] == b"GET /other HTTP/1.1"


# -- issue 11: a bound on interim (1xx) responses --------------------------------------------

PROCESSING = b"HTTP/1.1 102 Processing\r\n\r\n"


async def test_up_to_32_interim_responses_are_skipped() -> None:
    # RFC 9110 §15.2: a client MUST parse one or more 1xx responses before the final one; 32
    # is far more than any real server sends (a 100 and a few 103s).
    resp, body = await answer(PROCESSING * 32 + EMPTY_OK, eof=False)
    assert (resp.status, resp.informational, body) == (200, [102] * 32, b"")


async def test_a_33rd_interim_response_is_a_protocol_error_and_the_connection_is_dropped() -> None:
    client, server = memory_stream_pair()
    conn = ClientConnection(client, host="t")
    await server.send_all(PROCESSING * 33 + EMPTY_OK)
    with anyio.fail_after(BOUND), pytest.raises(ClientProtocolError, match="33 interim"):
        await conn.request("GET", "/")
    assert not conn.reusable
    with pytest.raises(ClientError, match="cannot be reused"):
        await conn.request("GET", "/")


def endless_processing(conn: socket.socket, stop: threading.Event) -> None:
    """Read one request head, then answer ``102 Processing`` until the client leaves (each
    write bounded: at most 10 000 of them, and never past the end of the test)."""
    conn.settimeout(BOUND)
    data = b""
    while b"\r\n\r\n" not in data:
        piece = conn.recv(65536)
        if not piece:
            return
        data += piece
    conn.settimeout(0.05)
    for _ in range(10_000):
        if stop.is_set():
            return
        try:
            conn.sendall(PROCESSING)
        except (TimeoutError, OSError):
            return


async def test_a_server_sending_102_processing_forever_is_refused_on_a_socket() -> None:
    # Before the bound, each 102 reset the read timeout and was appended to a list: the client
    # read forever and its memory grew. Now it gives up after the 32nd.
    with RawServer(endless_processing) as server:
        async with Client(f"http://{HOST}:{server.port}", timeout=BOUND) as c:
            with anyio.fail_after(BOUND), pytest.raises(ClientProtocolError, match="interim"):
                await c.get("/")
