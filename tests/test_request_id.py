"""tophat.middleware.request_id (issue 14 item 5): an incoming X-Request-ID kept when valid,
replaced (never refused) when not; exposed to handlers (req.ext, current_request_id()), to log
records (RequestIdFilter) and echoed in the response, error responses included. Over the wire
on every runtime and parser, on real sockets for concurrency, and through the ASGI adapter.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import anyio
import pytest
from servers import Client, Serving

from tophat import Glitch, Request, ResponseWriter, ResponseWritten
from tophat.asgi import Message, to_asgi
from tophat.http.headers import HeaderError
from tophat.middleware import chain
from tophat.middleware.request_id import (
    REQUEST_ID_KEY,
    RequestIdFilter,
    current_request_id,
    request_id,
)
from tophat.router import Router
from tophat.testing import AsyncTestClient

NEW_ID = re.compile(r"[0-9a-f]{32}")
app_log = logging.getLogger("test_request_id.app")


def make_app(**config: Any) -> Any:
    router = Router()

    async def show(req: Request, w: ResponseWriter) -> ResponseWritten:
        app_log.info("handling %s", req.path)
        w.set_json({"ext": req.ext[REQUEST_ID_KEY], "current": current_request_id()})
        return await w.send()

    async def glitch(req: Request, w: ResponseWriter) -> ResponseWritten:
        raise Glitch(409, "conflict")

    async def boom(req: Request, w: ResponseWriter) -> ResponseWritten:
        raise RuntimeError("boom")

    router.get("/", show)
    router.get("/glitch", glitch)
    router.get("/boom", boom)
    return chain(request_id(**config))(router)


async def get(client: AsyncTestClient, path: str = "/", *values: str) -> Any:
    return await client.get(path, headers=[("x-request-id", v) for v in values])


async def test_a_request_without_an_id_gets_a_new_one_seen_everywhere() -> None:
    client = AsyncTestClient(make_app())
    first, second = await get(client), await get(client)
    rid = first.headers["x-request-id"]
    assert NEW_ID.fullmatch(rid)
    assert first.json() == {"ext": rid, "current": rid}
    assert second.headers["x-request-id"] != rid  # one per request
    assert current_request_id() is None  # (set for the endpoint's duration only)


@pytest.mark.parametrize(
    "incoming",
    [
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
        "01ARZ3NDEKTSV4RRFFQ69G5FAV",
        "8a1b2c3d4e5f6789-AMS",
        "svc.api:v2_x-1",
        "a" * 128,
    ],
)
async def test_a_valid_incoming_id_is_kept_and_echoed(incoming: str) -> None:
    resp = await get(AsyncTestClient(make_app()), "/", incoming)
    assert resp.headers.get_all("x-request-id") == [incoming]
    assert resp.json() == {"ext": incoming, "current": incoming}


@pytest.mark.parametrize(
    "values",
    [
        ("a" * 129,),  # over the bound
        ("has space",),
        ('quo"te',),
        ("a,b",),
        ("k=v",),
        ("%1b[31m",),
        ("\x1b[31mred",),  # ESC: the strict layer refuses the request first (400)
        ("caf\xe9",),  # obs-text, which both parsers let through
        ("a\x85b",),  # a C1 control (NEL) as obs-text
        ("a\tb",),  # HTAB, allowed inside a field value
        ("one", "two"),  # two fields: which one?
    ],
)
async def test_an_invalid_or_repeated_incoming_id_is_replaced_and_logged_escaped(
    values: tuple[str, ...], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="tophat.request_id")
    raw = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(
        b"X-Request-ID: " + v.encode("latin-1") + b"\r\n" for v in values
    )
    out = await AsyncTestClient(make_app()).raw(raw + b"\r\n")
    if out.startswith(b"HTTP/1.1 400 "):
        return  # the strict layer refused the field before any middleware ran
    assert out.startswith(b"HTTP/1.1 200 ")
    [echoed] = re.findall(rb"\r\nx-request-id: ([^\r]*)\r\n", out)
    assert NEW_ID.fullmatch(echoed.decode())
    lines = [r.getMessage() for r in caplog.records if r.name == "tophat.request_id"]
    assert len(lines) == 1 and "replacing an invalid x-request-id" in lines[0]
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in lines[0]), lines
    assert len(lines[0]) < 200


async def test_an_empty_incoming_id_is_replaced() -> None:
    out = await AsyncTestClient(make_app()).raw(
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Request-ID: \r\n\r\n"
    )
    [echoed] = re.findall(rb"\r\nx-request-id: ([^\r]*)\r\n", out)
    assert NEW_ID.fullmatch(echoed.decode())


async def test_without_trust_a_client_never_chooses_the_id() -> None:
    resp = await get(AsyncTestClient(make_app(trust_incoming=False)), "/", "chosen-by-client")
    assert NEW_ID.fullmatch(resp.headers["x-request-id"])


async def test_error_responses_carry_the_id_too() -> None:
    client = AsyncTestClient(make_app())
    for path, status in (("/glitch", 409), ("/boom", 500), ("/nowhere", 404)):
        resp = await get(client, path, "trace-1")
        assert (resp.status, resp.headers["x-request-id"]) == (status, "trace-1")


async def test_another_header_and_generator() -> None:
    counter = iter(range(1, 100))
    app = make_app(header="X-Correlation-ID", generate=lambda: f"req-{next(counter)}")
    resp = await AsyncTestClient(app).get("/")
    # (the first id was the check made at construction)
    assert (resp.headers["x-correlation-id"], "x-request-id" in resp.headers) == ("req-2", False)


def test_a_bad_configuration_fails_at_construction() -> None:
    with pytest.raises(ValueError, match=r"generate=.*'a b'"):
        request_id(generate=lambda: "a b")
    with pytest.raises(ValueError, match="1 to 128"):
        request_id(generate=lambda: "x" * 129)
    with pytest.raises(HeaderError):
        request_id(header="x request id")


async def test_log_records_carry_the_id_through_the_filter(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="test_request_id")
    caplog.handler.addFilter(RequestIdFilter())
    try:
        await get(AsyncTestClient(make_app()), "/", "trace-42")
        app_log.info("outside a request")
    finally:
        caplog.handler.removeFilter(caplog.handler.filters[-1])
    ids = [(r.getMessage(), r.request_id) for r in caplog.records if r.name.startswith("test_")]
    assert ids == [("handling /", "trace-42"), ("outside a request", "-")]
    formatted = logging.Formatter("%(request_id)s %(message)s").format(caplog.records[0])
    assert formatted == "trace-42 handling /"


async def test_concurrent_requests_each_see_their_own_id(serving: Serving) -> None:
    """The context variable belongs to each connection's task: interleaved requests on two
    connections (each waiting while the other runs) never see each other's id."""
    both = anyio.Event()
    arrived = 0
    seen: list[tuple[str, str | None]] = []

    async def wait(req: Request, w: ResponseWriter) -> ResponseWritten:
        nonlocal arrived
        arrived += 1
        if arrived == 2:
            both.set()
        await both.wait()
        seen.append((req.ext[REQUEST_ID_KEY], current_request_id()))
        w.set_text(current_request_id() or "")
        return await w.send()

    async with serving(chain(request_id())(wait)) as server:
        a, b = await Client.connect(server.port), await Client.connect(server.port)
        await a.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Request-ID: first\r\n\r\n")
        await b.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Request-ID: second\r\n\r\n")
        with anyio.fail_after(5):
            ra, rb = await a.response(), await b.response()
        await a.close()
        await b.close()
    assert (ra[2], rb[2]) == (b"first", b"second")
    assert sorted(seen) == [("first", "first"), ("second", "second")]


async def test_through_the_asgi_adapter() -> None:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"x"), (b"x-request-id", b"via-asgi")],
    }
    with anyio.fail_after(5):
        await to_asgi(make_app())(scope, receive, send)
    assert (b"x-request-id", b"via-asgi") in [tuple(h) for h in sent[0]["headers"]]
    assert b'"current":"via-asgi"' in sent[1]["body"].replace(b" ", b"")
