"""The access log (``ServerOpts.access_log``, logger ``tophat.access``; issue 14 item 5): one
line per response with its duration and request id, the same fields as record attributes for a
JSON formatter, and no client-sent control character reaching a log raw.
"""

from __future__ import annotations

import json
import logging
import re

import anyio
import pytest
from servers import Client, Serving

from tophat import Request, ResponseWriter, ResponseWritten, ServerOpts
from tophat.http.headers import Headers
from tophat.middleware import chain
from tophat.middleware.request_id import REQUEST_ID_KEY, request_id
from tophat.server.respond import STARTED_KEY, log_access
from tophat.testing import AsyncTestClient

FIELDS = ("method", "path", "status", "bytes", "duration_ms", "client", "request_id")


async def hello(req: Request, w: ResponseWriter) -> ResponseWritten:
    if req.path == "/slow":
        await anyio.sleep(0.1)
    w.set_text("Hello, world!")
    return await w.send()


def access(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "tophat.access"]


@pytest.fixture(autouse=True)
def info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tophat.access")


async def test_a_line_with_duration_and_request_id_and_its_fields(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = chain(request_id())(hello)
    client = AsyncTestClient(app, ServerOpts(access_log=True))
    await client.get("/hi?x=1", headers={"x-request-id": "trace-7"})
    [record] = access(caplog)
    line = record.getMessage()
    assert re.fullmatch(r'\S+ - "GET /hi\?x=1 HTTP/1\.1" 200 13 \d+\.\d{3}ms id=trace-7', line), (
        line
    )
    assert record.levelno == logging.INFO
    attrs = {name: getattr(record, name) for name in FIELDS}
    assert attrs["duration_ms"] >= 0
    attrs["duration_ms"] = "?"
    assert attrs == {
        "method": "GET",
        "path": "/hi?x=1",
        "status": 200,
        "bytes": 13,
        "duration_ms": "?",
        "client": line.split(" ", 1)[0] if line[0] != "-" else None,
        "request_id": "trace-7",
    }
    json.dumps(attrs)  # what a JSON formatter would do


async def test_without_request_ids_the_line_has_none(caplog: pytest.LogCaptureFixture) -> None:
    await AsyncTestClient(hello, ServerOpts(access_log=True)).get("/")
    [record] = access(caplog)
    assert " id=" not in record.getMessage()
    assert record.request_id is None  # type: ignore[attr-defined]


async def test_off_by_default(caplog: pytest.LogCaptureFixture) -> None:
    await AsyncTestClient(hello).get("/")
    assert access(caplog) == []


async def test_the_duration_runs_to_the_end_of_the_response(
    serving: Serving, caplog: pytest.LogCaptureFixture
) -> None:
    async with serving(hello, access_log=True) as server:
        c = await Client.connect(server.port)
        await c.send(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        with anyio.fail_after(5):
            assert (await c.response())[0] == 200
        port = c.sock.getsockname()[1]
        await c.close()
    [record] = access(caplog)
    assert 95 <= record.duration_ms < 5000  # type: ignore[attr-defined]  # (uvloop: ms timers)
    assert record.client == f"127.0.0.1:{port}"  # type: ignore[attr-defined]
    assert record.getMessage().startswith(f'127.0.0.1:{port} - "GET /slow HTTP/1.1" 200 13 ')


async def test_client_text_is_escaped_on_the_wire(caplog: pytest.LogCaptureFixture) -> None:
    """What the strict layer lets through: percent-escapes stay as sent (never decoded into the
    log), and a quote cannot close the request-line's quotes."""
    client = AsyncTestClient(hello, ServerOpts(access_log=True))
    await client.raw(b'GET /a%1b%0d%0a"b\\c HTTP/1.1\r\nHost: x\r\n\r\n')
    [record] = access(caplog)
    assert '"GET /a%1b%0d%0a\\"b\\\\c HTTP/1.1" 200' in record.getMessage()
    assert record.path == '/a%1b%0d%0a\\"b\\\\c'  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "target",
    [
        "/\x1b[2J\x1b[31mred",  # ESC: terminal control sequences
        "/x\r\n127.0.0.1 - forged line",  # CR LF: a forged line
        "/\x9b31m\x85\x00\x7f",  # C1 CSI and NEL, NUL, DEL
        "/\u2028\u202e\U0001f600",  # past Latin-1 (not from the wire): escaped too
    ],
)
def test_no_control_character_reaches_the_log_raw(
    target: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Defence in depth: the parsers refuse these bytes today, a future stream or parser may
    not, and a middleware may rewrite the request or its id."""
    req = Request("GET\x1b", target, Headers())
    req.ext[STARTED_KEY] = 0.0
    req.ext[REQUEST_ID_KEY] = "id\r\nx"
    log_access(("10.0.0.1", 4), req, 200, 5)
    [record] = access(caplog)
    texts = [record.getMessage(), record.path, record.method, record.request_id]  # type: ignore[attr-defined]
    for text in texts:
        assert text.isascii() and text.isprintable(), text
    assert "\\x1b" in record.method  # type: ignore[attr-defined]


def test_the_request_id_key_is_the_one_the_server_reads() -> None:
    from tophat.http import request

    assert REQUEST_ID_KEY is request.REQUEST_ID_KEY  # (one constant, in the http layer)
