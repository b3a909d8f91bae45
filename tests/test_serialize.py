"""Our response writer is byte-for-byte h11's serializer (the contract in tophat/http/serialize.py).

For random requests (method, version, Connection: close) and random responses (status, headers,
fixed or streamed body with or without a declared length), the bytes ``accept`` writes equal
the bytes h11 writes for the same response after the same request, but for one documented
difference: the server names the fields it adds in lower case (docs/architecture.md), where h11
title-cases the two it adds itself, ``Transfer-Encoding`` and ``Connection``.
"""

from __future__ import annotations

import string
from collections.abc import AsyncIterator

import h11
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tophat import Request, ResponseWriter, ResponseWritten
from tophat.testing import AsyncTestClient

TOKEN = st.text(alphabet=string.ascii_letters + string.digits + "-_", min_size=1, max_size=12)
VALUE = st.text(alphabet=string.ascii_letters + string.digits + " ,;=/.:-", max_size=20).map(
    str.strip
)
MANAGED = {"content-length", "transfer-encoding", "connection", "keep-alive", "date", "host"}
HEADERS = st.lists(
    st.tuples(TOKEN, VALUE).filter(lambda h: h[0].lower() not in MANAGED), max_size=6
)
STATUS = st.sampled_from([200, 201, 204, 301, 304, 400, 404, 418, 500, 503])
PIECES = st.lists(st.binary(min_size=0, max_size=40), max_size=5)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    method=st.sampled_from(["GET", "HEAD", "POST"]),
    version=st.sampled_from(["1.0", "1.1"]),
    client_close=st.booleans(),
    status=STATUS,
    headers=HEADERS,
    kind=st.sampled_from(["bytes", "stream", "sized-stream"]),
    pieces=PIECES,
)
async def test_responses_are_byte_identical_to_h11(
    method: str,
    version: str,
    client_close: bool,
    status: int,
    headers: list[tuple[str, str]],
    kind: str,
    pieces: list[bytes],
) -> None:
    body = b"".join(pieces)

    async def stream() -> AsyncIterator[bytes]:
        for piece in pieces:
            yield piece

    async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.set_status(status)
        for name, value in headers:
            w.append_header(name, value)
        if kind == "bytes":
            w.set_body(body)
        else:
            w.set_body(stream(), length=len(body) if kind == "sized-stream" else None)
        return await w.send()

    request = f"{method} / HTTP/{version}\r\nHost: x\r\n"
    if client_close:
        request += "Connection: close\r\n"
    request += "\r\n"
    ours = await AsyncTestClient(endpoint).raw(request.encode())

    # The same response through h11, after the same request, with the Date we sent.
    date = ours.split(b"\r\ndate: ", 1)[1].split(b"\r\n", 1)[0]
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(request.encode())
    assert isinstance(conn.next_event(), h11.Request)
    sent = [(n.encode(), v.encode()) for n, v in headers] + [(b"date", date)]
    if status not in (204, 304) and kind != "stream":
        sent.append((b"content-length", str(len(body)).encode()))
    theirs = conn.send(h11.Response(status_code=status, headers=sent, reason=_reason(ours)))
    if method != "HEAD" and status not in (204, 304):
        for piece in pieces if kind != "bytes" else [body]:
            if piece:
                theirs += conn.send(h11.Data(data=piece))
    theirs += conn.send(h11.EndOfMessage())
    assert ours == _lower_case_h11_fields(theirs)


def _lower_case_h11_fields(raw: bytes) -> bytes:
    """h11's bytes with the names of the fields h11 adds itself in lower case, as we send them
    (the user's fields never have these names: HEADERS leaves the managed ones out)."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    for name in (b"Transfer-Encoding", b"Connection"):
        head = head.replace(b"\r\n" + name + b": ", b"\r\n" + name.lower() + b": ")
    return head + sep + body


def _reason(raw: bytes) -> bytes:
    return raw.split(b"\r\n", 1)[0].split(b" ", 2)[2]


async def test_host_fields_go_first_as_h11_writes_them() -> None:
    fields = [("x-a", "1"), ("Host", "h1"), ("x-b", "2"), ("host", "h2")]

    async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
        for name, value in fields:
            w.append_header(name, value)
        w.set_body(b"hi")
        return await w.send()

    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    ours = await AsyncTestClient(endpoint).raw(request)
    date = ours.split(b"\r\ndate: ", 1)[1].split(b"\r\n", 1)[0]
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(request)
    conn.next_event()
    sent = [(n.encode(), v.encode()) for n, v in fields]
    sent += [(b"date", date), (b"content-length", b"2")]
    theirs = conn.send(h11.Response(status_code=200, headers=sent, reason=b"OK"))
    theirs += conn.send(h11.Data(data=b"hi")) + conn.send(h11.EndOfMessage())
    assert ours == theirs
