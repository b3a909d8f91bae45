from __future__ import annotations

from examples.hello import app
from tophat.testing import AsyncTestClient, parse_responses


async def test_hello_answers_hello_world() -> None:
    resp = await AsyncTestClient(app).get("/")
    assert resp.status == 200
    assert resp.body == b"Hello, world!"
    assert resp.headers["content-type"] == "text/plain; charset=utf-8"


async def test_three_pipelined_requests_get_three_ordered_responses() -> None:
    out = await AsyncTestClient(app).raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 3)
    assert [r.status for r in parse_responses(out)] == [200, 200, 200]
