"""Parsed responses: :class:`TestResponse` and :func:`parse_responses` (h11, as a client)."""

from __future__ import annotations

import json as _json
from collections.abc import Sequence
from typing import Any

import h11

from tophat.http.charset import charset
from tophat.http.headers import Headers

__all__ = ["TestResponse", "parse_responses"]


class TestResponse:
    """A parsed response.

    Attributes:
        status: the status code; ``reason`` its reason phrase as sent.
        headers: the header fields (:class:`~tophat.Headers`: case-insensitive ``get``,
            ``get_all`` for repeated fields such as ``set-cookie``).
        body: the content, de-chunked (empty for ``HEAD`` and bodiless statuses).
        version: ``"1.1"`` or ``"1.0"``.
        informational: the 1xx statuses that came before, in order.
        raw: the bytes the server wrote on the connection, exactly (set by the test
            clients; empty from :func:`parse_responses`).
        url: the URL requested (set by the test clients).
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self, status: int, reason: str, headers: Headers, body: bytes, version: str
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.version = version
        self.informational: list[int] = []
        self.raw = b""
        self.url = ""

    @property
    def text(self) -> str:
        """The body decoded with the ``Content-Type`` charset, as ``Request.text()`` does."""
        return self.body.decode(charset(self.headers.get("content-type")))

    def json(self) -> Any:
        """The body parsed as JSON (``json.loads``: bytes in UTF-8, -16 or -32)."""
        return _json.loads(self.body)

    def __repr__(self) -> str:
        return f"<TestResponse {self.status} {self.body[:40]!r}>"


def parse_responses(data: bytes, methods: Sequence[str] = ("GET",)) -> list[TestResponse]:
    """Parse the responses in ``data`` (as a client that sent requests with ``methods``).

    The last method repeats for any further response. Raises ``h11.RemoteProtocolError`` when
    the bytes are not a well-formed sequence of responses.
    """
    out: list[TestResponse] = []
    conn = h11.Connection(h11.CLIENT)
    conn.receive_data(data)
    conn.receive_data(b"")
    i = 0
    while True:
        if not conn.trailing_data[0]:
            return out
        method = methods[min(i, len(methods) - 1)]
        conn.send(h11.Request(method=method, target="/", headers=[("host", "t")]))
        conn.send(h11.EndOfMessage())
        resp: TestResponse | None = None
        informational: list[int] = []
        chunks: list[bytes] = []
        while True:
            event = conn.next_event()
            if isinstance(event, h11.InformationalResponse):
                informational.append(event.status_code)
            elif isinstance(event, h11.Response):
                resp = TestResponse(
                    event.status_code,
                    event.reason.decode("latin-1"),
                    Headers.from_wire(list(event.headers)),
                    b"",
                    event.http_version.decode(),
                )
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                assert resp is not None
                resp.body = b"".join(chunks)
                resp.informational = informational
                out.append(resp)
                break
            else:
                raise h11.RemoteProtocolError("response ended early", error_status_hint=400)
        if conn.our_state is h11.MUST_CLOSE or conn.their_state is not h11.DONE:
            rest = conn.next_event()
            if not isinstance(rest, h11.ConnectionClosed) and rest is not h11.NEED_DATA:
                raise h11.RemoteProtocolError(
                    "bytes after a closing response", error_status_hint=400
                )
            return out
        conn.start_next_cycle()
        i += 1
