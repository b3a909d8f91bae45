"""ServerOpts.handler_timeout (issue 14 item 6): an endpoint that has not started its response
in time is cancelled and the client gets a 503, logged once with the handler's name; a response
already started (a stream, an SSE feed) is never cut. On asyncio, uvloop and trio, over real
sockets (the runtime owns the clock), and through the ASGI adapter.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from servers import Client, Serving

from tophat import Request, ResponseWriter, ResponseWritten, ServerOpts
from tophat.asgi import Message, to_asgi
from tophat.router import Router

TIMEOUT = 0.2
GET = b"GET /%s HTTP/1.1\r\nHost: x\r\n\r\n"


class Seen:
    def __init__(self) -> None:
        self.cancelled = 0
        self.finished = 0


def app(seen: Seen) -> Router:
    router = Router()

    async def hang(req: Request, w: ResponseWriter) -> ResponseWritten:
        try:
            await anyio.sleep(30)
        except anyio.get_cancelled_exc_class():
            seen.cancelled += 1
            raise
        w.set_text("too late")
        return await w.send()

    async def quick(req: Request, w: ResponseWriter) -> ResponseWritten:
        seen.finished += 1
        w.set_text("quick")
        return await w.send()

    async def upload(req: Request, w: ResponseWriter) -> ResponseWritten:
        body = await req.body()  # the client sends only part of it
        w.set_text(f"{len(body)}")
        return await w.send()

    async def stream(req: Request, w: ResponseWriter) -> ResponseWritten:
        async def pieces() -> AsyncIterator[bytes]:
            for i in range(4):
                yield b"piece %d\n" % i
                await anyio.sleep(TIMEOUT)  # 0.8 s in all: four deadlines' worth

        w.set_body(pieces())
        done = await w.send()
        seen.finished += 1
        return done

    async def send_then_work(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.set_text("sent")
        done = await w.send()
        await anyio.sleep(3 * TIMEOUT)  # work after sending: not cut either
        seen.finished += 1
        return done

    router.get("/hang", hang)
    router.get("/quick", quick)
    router.post("/upload", upload)
    router.get("/stream", stream)
    router.get("/after", send_then_work)
    return router


async def test_a_hanging_handler_gets_503_logged_once_with_its_name(
    serving: Serving, caplog: pytest.LogCaptureFixture
) -> None:
    seen = Seen()
    caplog.set_level(logging.DEBUG, logger="tophat")
    async with serving(app(seen), handler_timeout=TIMEOUT) as server:
        c = await Client.connect(server.port)
        await c.send(GET % b"hang")
        with anyio.fail_after(5):
            status, headers, body = await c.response()
            await c.expect_eof()  # the endpoint stopped anywhere: the connection closes
        await c.close()
    assert (status, body) == (503, b"Service Unavailable")
    assert headers["connection"] == "close"
    assert seen.cancelled == 1
    lines = [r for r in caplog.records if "handler_timeout" in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert lines[0].levelno == logging.ERROR and lines[0].name == "tophat.error"
    assert "hang" in lines[0].getMessage() and "0.2 s" in lines[0].getMessage()
    assert not any(r.exc_info for r in caplog.records)


async def test_a_handler_stuck_reading_its_body_gets_503(serving: Serving) -> None:
    async with serving(app(Seen()), handler_timeout=TIMEOUT) as server:
        c = await Client.connect(server.port)
        await c.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly part")
        with anyio.fail_after(5):
            status, _, _ = await c.response()
            await c.expect_eof()
        await c.close()
    assert status == 503


async def test_a_quick_handler_is_untouched_and_the_connection_serves_on(
    serving: Serving,
) -> None:
    """The timer of an answered request never fires later, on the idle connection or on the
    next request (asyncio: the task is not cancelled; trio: the scope is gone)."""
    seen = Seen()
    async with serving(app(seen), handler_timeout=TIMEOUT) as server:
        c = await Client.connect(server.port)
        for _ in range(3):
            await c.send(GET % b"quick")
            with anyio.fail_after(5):
                assert await c.response() == (200, _any_headers(), b"quick")
            await anyio.sleep(1.5 * TIMEOUT)  # past the deadline of the request before
        await c.close()
    assert seen.finished == 3


async def test_a_started_stream_is_not_cut(serving: Serving) -> None:
    seen = Seen()
    async with serving(app(seen), handler_timeout=TIMEOUT) as server:
        c = await Client.connect(server.port)
        await c.send(GET % b"stream")
        with anyio.fail_after(5):
            status, _, body = await c.response()
        await c.close()
    assert (status, body) == (200, b"piece 0\npiece 1\npiece 2\npiece 3\n")
    assert seen.finished == 1


async def test_work_after_sending_is_not_cut(serving: Serving) -> None:
    seen = Seen()
    async with serving(app(seen), handler_timeout=TIMEOUT) as server:
        c = await Client.connect(server.port)
        await c.send(GET % b"after" + GET % b"quick")
        with anyio.fail_after(5):
            first = await c.response()
            second = await c.response()
        await c.close()
    assert (first[0], first[2], second[0], second[2]) == (200, b"sent", 200, b"quick")
    assert seen.finished == 2


async def test_without_a_timeout_a_slow_handler_runs_to_its_end(serving: Serving) -> None:
    async def slow(req: Request, w: ResponseWriter) -> ResponseWritten:
        await anyio.sleep(2 * TIMEOUT)
        w.set_text("slow")
        return await w.send()

    assert ServerOpts().handler_timeout is None  # off by default (see ServerOpts)
    async with serving(slow) as server:
        c = await Client.connect(server.port)
        await c.send(GET % b"")
        with anyio.fail_after(5):
            status, _, body = await c.response()
        await c.close()
    assert (status, body) == (200, b"slow")


@pytest.mark.parametrize("bad", [0, -1.0, float("nan")])
def test_a_timeout_that_is_not_positive_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="handler_timeout must be positive"):
        ServerOpts(handler_timeout=bad)


# -- through the ASGI adapter (the host server's loop: asyncio, uvloop or trio) ------------------


async def asgi_call(path: str, **opts: Any) -> list[Message]:
    sent: list[Message] = []
    done = anyio.Event()

    async def receive() -> Message:
        if not done.is_set():
            done.set()
            return {"type": "http.request", "body": b"", "more_body": False}
        await anyio.sleep(30)  # (the client stays)
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"x")],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 9999),
    }
    asgi = to_asgi(app(Seen()), opts=ServerOpts(**opts))
    with anyio.fail_after(5):
        await asgi(scope, receive, send)
    return sent


async def test_asgi_a_hanging_handler_gets_503(caplog: pytest.LogCaptureFixture) -> None:
    start, body = await asgi_call("/hang", handler_timeout=TIMEOUT)
    assert start["status"] == 503
    assert body["body"] == b"Service Unavailable"
    assert [r.name for r in caplog.records if "handler_timeout" in r.getMessage()] == [
        "tophat.error"
    ]


async def test_asgi_a_started_stream_is_not_cut() -> None:
    sent = await asgi_call("/stream", handler_timeout=TIMEOUT)
    assert sent[0]["status"] == 200
    assert b"".join(m.get("body", b"") for m in sent[1:]) == b"piece 0\npiece 1\npiece 2\npiece 3\n"


class _AnyHeaders(dict[str, str]):
    def __eq__(self, other: object) -> bool:
        return isinstance(other, dict)

    __hash__ = None  # type: ignore[assignment]


def _any_headers() -> dict[str, str]:
    return _AnyHeaders()


def test_the_cli_flag_sets_the_field() -> None:
    from tophat.cli import build_parser
    from tophat.cli._options import opts_kwargs

    args = build_parser().parse_args(["m:a", "--handler-timeout", "500ms"])
    assert opts_kwargs(args) == {"handler_timeout": 0.5}
    assert opts_kwargs(build_parser().parse_args(["m:a"])) == {}  # (ServerOpts' default: off)


async def test_the_deadline_line_carries_the_request_id(
    serving: Serving, caplog: pytest.LogCaptureFixture
) -> None:
    from tophat.middleware import chain
    from tophat.middleware.request_id import request_id

    async with serving(chain(request_id())(app(Seen())), handler_timeout=TIMEOUT) as server:
        c = await Client.connect(server.port)
        await c.send(b"GET /hang HTTP/1.1\r\nHost: x\r\nX-Request-ID: t-9\r\n\r\n")
        with anyio.fail_after(5):
            status, headers, _ = await c.response()
        await c.close()
    assert (status, headers["x-request-id"]) == (503, "t-9")  # the echo survives the 503
    [line] = [r for r in caplog.records if "handler_timeout" in r.getMessage()]
    assert line.request_id == "t-9"  # type: ignore[attr-defined]
