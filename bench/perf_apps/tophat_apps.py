"""tophat endpoints for bench/perf.py (served with ``python -m tophat MODULE:ATTR``).

    plain       GET / hello, POST /echo, GET /big: one endpoint dispatching on the path
    router1     a Router with one route, GET /res49/:id -> hello
    router50    a Router with 50 routes, GET /res0/:id ... /res49/:id -> hello
    middleware  chain(cors(...), identity.middleware)(Router: GET / hello, /whoami, /login)
    observed    chain(request_id())(hello): the stock request ids (served with --access-log)

``python -m bench.perf_apps.tophat_apps --mint-cookie`` prints a valid ``Cookie`` header value
for ``middleware``, minted by this module's ``identity`` through its ``/login`` route (in
memory, with tophat.testing), so the bench can send it with wrk's -H.
"""

from __future__ import annotations

import asyncio
import sys

from tophat import Request, ResponseWriter, ResponseWritten
from tophat.middleware import chain
from tophat.middleware.cors import cors
from tophat.middleware.identity import Identity
from tophat.middleware.request_id import request_id
from tophat.router import Router

from . import BIG, HELLO, ROUTES

ORIGIN = "https://app.example.com"
USER = "bench-user"
# A fixed key (the bench mints the cookie in another process than the server's), random-looking
# so Identity's placeholder check accepts it. Bench only: never reuse it anywhere.
_KEY = "q8Zr1vN3xT6pL0wK4mB7yH2cF9dS5gJaUe3Wn7Ro"
identity = Identity(_KEY, cookie_name="auth", max_age=86400)

_OCTETS = "application/octet-stream"


async def plain(req: Request, w: ResponseWriter) -> ResponseWritten:
    path = req.path
    if path == "/":
        w.set_text("Hello, world!")
    elif path == "/echo":
        w.set_body(await req.body())
        w.insert_header("content-type", _OCTETS)
    elif path == "/big":
        w.set_body(BIG)
        w.insert_header("content-type", _OCTETS)
    else:
        w.set_status(404)
        w.set_text("Not Found")
    return await w.send()


async def hello(req: Request, w: ResponseWriter) -> ResponseWritten:
    w.set_text("Hello, world!")
    return await w.send()


def _routes(n: int) -> Router:
    """Routes /res{i}/:id for the last n of the ROUTES indexes (so /res49/:id is always last)."""
    r = Router()
    for i in range(ROUTES - n, ROUTES):
        r.get(f"/res{i}/:id", hello)
    return r


router1 = _routes(1)
router50 = _routes(ROUTES)


async def whoami(req: Request, w: ResponseWriter) -> ResponseWritten:
    w.set_text(identity.authorized_user(req) or "anonymous")
    return await w.send()


async def login(req: Request, w: ResponseWriter) -> ResponseWritten:
    identity.set_auth_token(USER, w)
    w.set_text("ok")
    return await w.send()


_mw_router = Router()
_mw_router.get("/", hello)
_mw_router.get("/whoami", whoami)
_mw_router.get("/login", login)
middleware = chain(
    cors(allow_origins=[ORIGIN], allow_credentials=True, expose_headers=["x-request-id"]),
    identity.middleware,
)(_mw_router)

# What a deployment that wants request ids in its logs serves: the stock middleware making an id
# per request (wrk sends none), echoed in the response; perf.py adds --access-log, so each line
# carries the id and the duration.
observed = chain(request_id())(hello)


def mint_cookie() -> str:
    """A ``Cookie`` header value for ``middleware``: the one ``/login`` sets."""
    from tophat.testing import AsyncTestClient

    resp = asyncio.run(AsyncTestClient(middleware).get("/login"))
    set_cookie = resp.headers.get("set-cookie")
    if resp.status != 200 or not set_cookie:
        raise SystemExit(f"/login answered {resp.status} without a cookie")
    return set_cookie.split(";", 1)[0]


assert HELLO == b"Hello, world!"

if __name__ == "__main__":
    if sys.argv[1:] == ["--mint-cookie"]:
        print(mint_cookie())
    else:
        raise SystemExit("usage: python -m bench.perf_apps.tophat_apps --mint-cookie")
