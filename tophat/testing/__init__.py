"""Testing support: call an app in memory, through the real ``accept``, without sockets.

From a plain pytest test::

    from tophat.testing import TestClient

    def test_hello() -> None:
        with TestClient(app) as client:
            resp = client.get("/hello", params={"name": "Ada"})
            assert resp.status == 200 and resp.text == "Hello, Ada!"

From an async test, :class:`AsyncTestClient` has the same request API, awaited, on the test's
own event loop. Both keep a cookie jar per client (``client.cookies``) that follows
``Set-Cookie`` as a browser does. Raw bytes in, raw bytes out, for wire-level tests::

    out = await AsyncTestClient(app).raw(b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
    assert out.startswith(b"HTTP/1.1 200 OK\\r\\n")

``memory_stream_pair`` gives two connected in-memory streams, to drive ``accept`` yourself;
``parse_responses`` parses what a server wrote.
"""

from __future__ import annotations

from tophat.testing._async import AsyncTestClient
from tophat.testing._cookies import Cookies
from tophat.testing._memory import MemoryStream, memory_stream_pair
from tophat.testing._response import TestResponse, parse_responses
from tophat.testing._session import RequestOptions
from tophat.testing._sync import TestClient

__all__ = [
    "AsyncTestClient",
    "Cookies",
    "MemoryStream",
    "RequestOptions",
    "TestClient",
    "TestResponse",
    "memory_stream_pair",
    "parse_responses",
]
