"""One casing rule for the header names tophat writes itself: lower case (docs/architecture.md).

Field names are case-insensitive (RFC 9110 §5.1), so this is about predictability: every field
the server, the router, Glitch and the middleware add is named in lower case, whatever the
response (errors, refusals, preflights, chunked, close, overload), while a name the application
sets goes out as the application wrote it.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import h11

from tophat import Glitch, Request, ResponseWriter, ResponseWritten, ServerOpts
from tophat.http.serialize import OVERLOADED
from tophat.middleware import chain
from tophat.middleware.cors import cors
from tophat.middleware.identity import Identity
from tophat.router import Router
from tophat.testing import AsyncTestClient

ORIGIN = "https://app.example"
identity = Identity(secrets.token_urlsafe(48), secure=False)


async def text(req: Request, w: ResponseWriter) -> ResponseWritten:
    w.set_body(b"items")  # no header of its own: every name below is tophat's
    return await w.send()


async def stream(req: Request, w: ResponseWriter) -> ResponseWritten:
    async def pieces() -> AsyncIterator[bytes]:
        yield b"a"
        yield b"b"

    w.set_body(pieces())
    return await w.send()


async def login(req: Request, w: ResponseWriter) -> ResponseWritten:
    identity.set_auth_token("ada", w)
    return await w.send()


async def challenge(req: Request, w: ResponseWriter) -> ResponseWritten:
    raise Glitch.unauthorized(challenge='Bearer realm="api"')


async def upload(req: Request, w: ResponseWriter) -> ResponseWritten:
    await req.body()
    return await w.send()


def app() -> Router:
    private = Router()
    private.get("/", text)
    router = Router(redirect_slashes=True)
    router.get("/items", text)
    router.post("/upload", upload)
    router.get("/stream", stream)
    router.post("/login", login)
    router.get("/challenge", challenge)
    router.mount("/private", chain(identity.required)(private))
    return router


REQUESTS: list[tuple[str, bytes]] = [
    ("200", b"GET /items HTTP/1.1\r\nHost: t\r\n\r\n"),
    ("404", b"GET /missing HTTP/1.1\r\nHost: t\r\n\r\n"),
    ("404 as problem+json", b"GET /no HTTP/1.1\r\nHost: t\r\n"
     b"Accept: application/problem+json\r\n\r\n"),
    ("405", b"DELETE /items HTTP/1.1\r\nHost: t\r\n\r\n"),
    ("OPTIONS", b"OPTIONS /items HTTP/1.1\r\nHost: t\r\n\r\n"),
    ("redirect", b"GET /items/ HTTP/1.1\r\nHost: t\r\n\r\n"),
    ("chunked", b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n"),
    ("close asked", b"GET /items HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
    ("chunked, close asked", b"GET /stream HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
    ("HTTP/1.0, close-delimited", b"GET /stream HTTP/1.0\r\n\r\n"),
    ("close decided: body over the limit", b"POST /upload HTTP/1.1\r\nHost: t\r\n"
     b"Content-Length: 2000\r\n\r\n"),
    ("100 Continue", b"POST /upload HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
     b"Content-Length: 2\r\n\r\nhi"),
    ("refusal", b"GET /items HTTP/1.1\r\nHost: t\r\nHost: u\r\n\r\n"),
    ("401 from Glitch.unauthorized", b"GET /challenge HTTP/1.1\r\nHost: t\r\n\r\n"),
    ("401 from identity", b"GET /private/ HTTP/1.1\r\nHost: t\r\n\r\n"),
    ("login", b"POST /login HTTP/1.1\r\nHost: t\r\nOrigin: https://app.example\r\n\r\n"),
    ("CORS", b"GET /items HTTP/1.1\r\nHost: t\r\nOrigin: https://app.example\r\n\r\n"),
    ("CORS preflight", b"OPTIONS /items HTTP/1.1\r\nHost: t\r\nOrigin: https://app.example\r\n"
     b"Access-Control-Request-Method: PUT\r\nAccess-Control-Request-Headers: x-token\r\n\r\n"),
]  # fmt: skip


def names_sent(raw: bytes, method: str) -> list[bytes]:
    """Every header name in ``raw`` (interim and final heads), as written on the wire."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method=method, target="/", headers=[("host", "t")]))
    conn.receive_data(raw)
    conn.receive_data(b"")
    names: list[bytes] = []
    while True:
        event = conn.next_event()
        if isinstance(event, h11.InformationalResponse | h11.Response):
            names += [name for name, _ in event.headers.raw_items()]
        if isinstance(event, h11.EndOfMessage | h11.ConnectionClosed) or event is h11.NEED_DATA:
            return names


async def test_every_header_name_the_server_adds_is_lower_case() -> None:
    endpoint = chain(
        cors(allow_origins=[ORIGIN], allow_methods=["GET", "PUT"], allow_headers=["x-token"]),
        identity.middleware,
    )(app())
    opts = ServerOpts(server_header="tophat", max_body_size=1000, max_drain_size=0)
    client = AsyncTestClient(endpoint, opts)
    seen: dict[bytes, str] = {}
    for what, request in REQUESTS:
        out = await client.raw(request)
        names = names_sent(out, request.split(b" ", 1)[0].decode())
        assert names, (what, out)
        seen.update(dict.fromkeys(names, what))
    # The connection-limit 503 is a constant that the runtimes write.
    seen.update(dict.fromkeys(names_sent(OVERLOADED, "GET"), "503 over the connection limit"))

    assert {name: what for name, what in seen.items() if name != name.lower()} == {}
    # Not vacuous: the fields the issue named, and the rest of what the server adds, were seen.
    assert {
        b"allow",
        b"www-authenticate",
        b"transfer-encoding",
        b"connection",
        b"content-length",
        b"content-type",
        b"date",
        b"server",
        b"location",
        b"vary",
        b"set-cookie",
        b"retry-after",
        b"access-control-allow-origin",
        b"access-control-allow-methods",
        b"access-control-allow-headers",
    } <= set(seen), sorted(seen)


async def test_a_header_name_the_application_sets_keeps_its_case() -> None:
    # h11 does the same: it writes a name as the application gave it. Only the fields tophat
    # adds itself follow its lower-case rule.
    async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
        if req.path == "/glitch":
            raise Glitch(409, "taken", headers={"Retry-After": "5"})
        w.insert_header("X-Total", "1")
        w.append_header("Cache-Control", "no-store")
        return await w.send()

    client = AsyncTestClient(endpoint)
    names = names_sent(await client.raw(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"), "GET")
    assert [n for n in names if n != n.lower()] == [b"X-Total", b"Cache-Control"]
    names = names_sent(await client.raw(b"GET /glitch HTTP/1.1\r\nHost: t\r\n\r\n"), "GET")
    assert [n for n in names if n != n.lower()] == [b"Retry-After"]
