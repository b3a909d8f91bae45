"""tophat.asgi against the ASGI specification (asgiref specs/www.rst 2.5, lifespan.rst 2.0).

The in-memory helpers of ``test_asgi`` drive the adapter with hand-built scopes and scripted
``receive`` events. They cover requirements that ``test_asgi`` does not: the scope's keys
(root_path stripped from the decoded path whatever the client's percent-encoding, raw UTF-8 in
raw_path), receive events, response messages, lifespan and websocket refusal, and disconnects
seen while a response streams.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from test_asgi import Peer, call, http_scope

from tophat import Request, ResponseWriter, ResponseWritten
from tophat.asgi import Message, to_asgi


def looking(seen: list[Request]) -> Any:
    async def look(req: Request, w: ResponseWriter) -> ResponseWritten:
        seen.append(req)
        return await w.send()

    return look


async def request_for(scope: dict[str, Any], peer: Peer | None = None) -> Request:
    seen: list[Request] = []
    await call(to_asgi(looking(seen)), scope, peer or Peer())
    [req] = seen
    return req


# -- HTTP connection scope ----------------------------------------------------------------------


async def test_a_scope_with_only_the_required_keys_is_served() -> None:
    """raw_path, root_path, scheme, client, server, asgi and http_version may be missing."""
    scope = {"type": "http", "method": "GET", "path": "/x", "headers": [], "query_string": b""}
    req = await request_for(scope)
    assert (req.path, req.root_path, req.scheme, req.client, req.server) == (
        "/x",
        "",
        "http",
        None,
        None,
    )


async def test_http_2_and_a_unix_socket_server_are_accepted() -> None:
    """www.rst: http_version may be "2"; server may be [path, None] (spec 2.2); client None."""
    scope = http_scope(http_version="2")
    scope["server"] = ["/run/app.sock", None]
    scope["client"] = None
    req = await request_for(scope)
    server: object = req.server  # (Request.server is typed tuple[str, int]: no None port)
    assert (req.version, server, req.client) == ("2", ("/run/app.sock", None), None)


async def test_headers_as_lists_keep_order_and_duplicates() -> None:
    """www.rst: [name, value] two-item iterables; duplicates and value order preserved."""
    scope = http_scope()
    scope["headers"] = [[b"host", b"h"], [b"cookie", b"a=1"], [b"Cookie", b"b=2"]]
    scope["client"] = ["::1", 5000]
    req = await request_for(scope)
    assert req.headers.get_all("cookie") == ["a=1", "b=2"]
    assert req.client == ("::1", 5000)


async def test_an_http_request_message_without_body_or_more_body_ends_the_body() -> None:
    """www.rst: body defaults to b"", more_body to False."""
    got: list[bytes] = []

    async def read(req: Request, w: ResponseWriter) -> ResponseWritten:
        got.append(await req.body())
        return await w.send()

    peer = Peer(b"abc", more=True)
    peer.push({"type": "http.request"})
    sent = await call(to_asgi(read), http_scope("POST"), peer)
    assert got == [b"abc"] and sent[0]["status"] == 200


@pytest.mark.parametrize(
    ("path", "raw_path", "root_path"),
    [
        # Starlette Mount("/users/{email}") over tophat: the client encodes "@".
        ("/users/a@b.com/items", b"/users/a%40b.com/items", "/users/a@b.com"),
        ("/a+b/items", b"/a%2Bb/items", "/a+b"),  # "+" sent as %2B
        ("/caf\u00e9/items", b"/caf%c3%a9/items", "/caf\u00e9"),  # lower-case hex digits
    ],
)
async def test_root_path_is_stripped_whatever_the_client_percent_encoded(
    path: str, raw_path: bytes, root_path: str
) -> None:
    req = await request_for(http_scope("GET", path, raw_path=raw_path, root_path=root_path))
    assert (req.path, req.root_path) == ("/items", root_path)


async def test_utf_8_bytes_in_raw_path_decode_as_utf_8() -> None:
    req = await request_for(http_scope("GET", "/caf\u00e9", raw_path="/caf\u00e9".encode()))
    assert req.path == "/caf\u00e9"


# -- receive events -----------------------------------------------------------------------------


async def test_an_unknown_event_type_from_receive_fails_the_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # asgi.rst, Error Handling: "If an application receives an invalid event dictionary from
    # receive, it should raise an exception". The adapter raises where the body is read; the
    # exchange turns that into a 500 and logs it once, as any handler error (it is not skipped).
    async def read(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.set_body(await req.body())
        return await w.send()

    peer = Peer(b"a", more=True)
    peer.push({"type": "websocket.receive", "text": "not http"})
    peer.push({"type": "http.request", "body": b"b"})
    sent = await call(to_asgi(read), http_scope("POST"), peer)
    assert sent[0]["status"] == 500
    assert any("websocket.receive" in r.getMessage() or r.exc_info for r in caplog.records)


# -- send events --------------------------------------------------------------------------------


async def test_a_second_send_never_sends_a_second_response_start() -> None:
    async def twice(req: Request, w: ResponseWriter) -> ResponseWritten:
        await w.send()
        return await w.send()

    sent = await call(to_asgi(twice), http_scope(), Peer())
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[-1]["more_body"] is False


async def test_response_messages_carry_the_spec_types() -> None:
    """status int; headers [bytes, bytes] with lower-cased names; body bytes; more_body bool."""

    async def bytes_like() -> AsyncIterator[bytes]:
        yield b"x"
        yield bytearray(b"y")  # type: ignore[misc]  # a stream may yield bytes-like pieces

    async def mixed(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.append_header("Set-Cookie", "a=1")
        w.append_header("SET-COOKIE", "b=2")
        w.set_body(bytes_like())
        return await w.send()

    sent = await call(to_asgi(mixed), http_scope(), Peer())
    start, *bodies = sent
    assert type(start["status"]) is int
    assert start["headers"] == [(b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")]
    for message in bodies:
        assert type(message["body"]) is bytes and type(message["more_body"]) is bool
    assert bodies[-1]["more_body"] is False


# -- disconnects (documented behaviour, docs/asgi.md "Client disconnects") ------------------------


async def test_a_disconnect_is_seen_while_streaming_with_an_unread_request_body() -> None:
    raised: list[BaseException] = []

    async def forever() -> AsyncIterator[bytes]:
        while True:
            yield b"tick"
            await anyio.sleep(0)

    async def ticker(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.set_body(forever())  # a POST answered with a stream (SSE), its body ignored
        try:
            return await w.send()
        except OSError as exc:
            raised.append(exc)
            raise

    peer = Peer(b"ignored")
    async with anyio.create_task_group() as tg:
        tg.start_soon(call, to_asgi(ticker), http_scope("POST"), peer)
        with anyio.fail_after(5):
            while len(peer.sent) < 5:
                await anyio.sleep(0)
        peer.disconnect()
        with anyio.move_on_after(1):
            while not raised:
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    assert raised, "the handler never learnt that the client left"


# -- lifespan and websocket -----------------------------------------------------------------------


async def test_lifespan_with_a_state_namespace_completes() -> None:
    """lifespan.rst: a server supporting lifespan state passes "state" in the scope."""
    inbox: list[Message] = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[Message] = []

    async def receive() -> Message:
        return inbox.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
    with anyio.fail_after(5):
        await to_asgi(looking([]))(scope, receive, send)
    assert sent == [{"type": "lifespan.startup.complete"}, {"type": "lifespan.shutdown.complete"}]


async def test_a_websocket_is_closed_before_accept() -> None:
    """www.rst: websocket.close before websocket.accept makes the server answer 403."""
    inbox: list[Message] = [{"type": "websocket.connect"}]
    sent: list[Message] = []

    async def receive() -> Message:
        return inbox.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "websocket", "path": "/ws", "headers": [], "subprotocols": []}
    with anyio.fail_after(5):
        await to_asgi(looking([]))(scope, receive, send)
    assert [m["type"] for m in sent] == ["websocket.close"]
    assert "websocket.accept" not in [m["type"] for m in sent]
