"""A small items API with every REST essential: a store opened per worker, errors as JSON,
typed query values, a preference cookie, a revocable login, request ids and a handler deadline.

Run: python -m tophat examples.rest_api:app --port 8000
     (the CLI serves with the module's ``opts``: the access log on, a 5 s handler deadline; a
     flag overrides the field it names: ``--handler-timeout 2``, ``--no-access-log``.
     ``python examples/rest_api.py 8000`` serves the same, with log lines that carry the
     request id; set ``TOPHAT_SECRET`` to keep logins across restarts)

     curl '127.0.0.1:8000/items?limit=2&in_stock=true&sort=price&tag=wool'
          -> 200 [{"id": 3, ...}, {"id": 1, ...}]
     curl -H 'Accept: application/json' '127.0.0.1:8000/items?limit=0'
          -> 400 application/problem+json, "errors": [{"field": "limit", ...}]
     curl -i -c jar -d '{"user": "ada"}' 127.0.0.1:8000/login        -> 200, Set-Cookie
     curl -i -b jar -H 'Accept: application/json' -d '{"name": "", "price": -1}' \\
          127.0.0.1:8000/items
          -> 422, "errors": [{"field": "name", ...}, {"field": "price", ...}]
     curl -i -b jar -d '{"name": "scarf", "price": 19.5, "stock": 2}' 127.0.0.1:8000/items
          -> 201, Location: /items/4
     curl -i -b jar -H 'Accept: application/json' -X POST '127.0.0.1:8000/items/4/buy?quantity=5'
          -> 409 {"type": "https://example.com/problems/out-of-stock", "title": "Out of stock",
                  ..., "available": 2, "requested": 5}
     curl -i -b jar -c jar -X PUT 127.0.0.1:8000/prefs/theme/dark    -> Set-Cookie: theme=dark
     curl -b jar 127.0.0.1:8000/me        -> {"user": "ada", "theme": "dark", "request_id": "..."}
     curl -i -b jar -X POST 127.0.0.1:8000/logout   (the old cookie, replayed, is refused: 401)
     curl -i '127.0.0.1:8000/stats?delay=10'         -> 503 after 5 s (the handler deadline)
     Every response carries X-Request-ID (yours, when you send a valid one); each access log
     line has the method, path, status, bytes, duration and that id.

What each piece shows:

* ``lifespan`` and ``opts``: the CLI finds them beside ``app`` (no flag). It runs ``lifespan``
  in every serving process before it accepts: the store is opened there, registered with
  ``router.data`` (handlers: ``req.data(Store)``), and closed after the graceful drain. In
  code: ``serve(app, opts=opts, lifespan=lifespan)``; in tests: ``TestClient(app, opts,
  lifespan=lifespan)``. The store is this process's memory, so run one worker; a real
  application opens its database pool here and may run ``--workers N``.
* Errors are Glitches: ``Accept: application/json`` gets RFC 9457 problem+json (a 422 with an
  ``errors`` member, a 409 with a problem type of its own and extension members), anything
  else ``text/plain``.
* Typed values: ``req.query.get_int/get_bool/get_choice/get_list`` and ``req.params.get_int``,
  ``get_choice``: a missing or bad value is a 400 naming the parameter.
* ``theme``: a preference cookie set with ``w.set_cookie``, read from ``req.cookies``, removed
  with ``w.delete_cookie``.
* ``Identity`` with ``session_check``: a login is a session in the store, and logout ends it,
  so a copied cookie stops working at once (on other workers within ``session_check_ttl``).
* ``request_id()`` and the access log (``opts.access_log``): each line has the id and the
  duration; ``opts.handler_timeout`` cuts a handler that has not started its response with a
  503.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import secrets
import sys
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any, Literal

from tophat import Glitch, Lifespan, Request, ResponseWriter, ResponseWritten, ServerOpts, serve
from tophat.glitch import catching
from tophat.middleware import chain
from tophat.middleware.identity import Identity
from tophat.middleware.request_id import RequestIdFilter, current_request_id, request_id
from tophat.router import Router

log = logging.getLogger("examples.rest_api")

#: What the app is served with: the CLI finds it by this name, ``serve`` and ``TestClient`` take it.
opts = ServerOpts(access_log=True, handler_timeout=5.0)

Sort = Literal["id", "name", "price"]
SORTS: tuple[Sort, ...] = ("id", "name", "price")
Theme = Literal["light", "dark"]
THEMES: tuple[Theme, ...] = ("light", "dark")
OUT_OF_STOCK = "https://example.com/problems/out-of-stock"  # a problem type (RFC 9457 §3.1.1)


@dataclass
class Item:
    id: int
    name: str
    price: float
    stock: int
    tags: list[str] = field(default_factory=list)


class Store:
    """Stands in for a database pool: opened by the lifespan, closed after the drain."""

    def __init__(self) -> None:
        self.items: dict[int, Item] = {}
        self.sessions: dict[str, str] = {}  # session id -> user
        self.is_open = False

    async def open(self) -> None:
        self.items = {
            1: Item(1, "wool hat", 25.0, 4, ["wool", "winter"]),
            2: Item(2, "straw hat", 15.0, 0, ["summer"]),
            3: Item(3, "wool socks", 9.5, 10, ["wool"]),
        }
        self.is_open = True

    async def close(self) -> None:
        self.is_open = False

    def _check(self) -> None:
        if not self.is_open:
            raise RuntimeError("the store is not open (is the lifespan running?)")

    def item(self, item_id: int) -> Item:
        self._check()
        found = self.items.get(item_id)
        if found is None:
            raise Glitch.not_found(f"no item {item_id}")
        return found

    def start_session(self, user: str) -> str:
        self._check()
        session = secrets.token_urlsafe(16)
        self.sessions[session] = user
        return session

    async def session_stands(self, user: str, session: str) -> bool:
        """Identity's ``session_check``: is this login still on? (async, as a pool query is)"""
        self._check()
        return self.sessions.get(session) == user

    def end_session(self, session: str) -> None:
        self._check()
        self.sessions.pop(session, None)


# The pool object exists from import (as a driver's pool does); the lifespan connects it.
store = Store()
router = Router()


@contextlib.asynccontextmanager
async def lifespan() -> AsyncIterator[None]:
    await store.open()
    router.data(store)  # handlers: req.data(Store)
    log.info("store open in process %d", os.getpid())
    try:
        yield
    finally:
        await store.close()
        log.info("store closed in process %d", os.getpid())


_: Lifespan = lifespan  # (what serve(), the CLI and to_asgi take: checked by mypy)

# A fresh random key per process when none is configured: logins do not survive a restart.
identity = Identity(
    os.environ.get("TOPHAT_SECRET") or secrets.token_urlsafe(48),
    max_age=timedelta(hours=8),
    # Identity's middleware runs before the router: the check asks the store itself.
    session_check=store.session_stands,
)


def user_of(req: Request) -> str:
    """The logged-in user, or a 401 (RFC 9110 §15.5.2: with a WWW-Authenticate challenge)."""
    user = identity.authorized_user(req)
    if user is None:
        raise Glitch.unauthorized(
            "log in first: POST /login", challenge=f'Cookie realm="{identity.cookie_name}"'
        )
    return user


async def json_object(req: Request) -> dict[str, Any]:
    with catching(400, "the body must be a JSON object", errors=ValueError):
        body = await req.json()
    if not isinstance(body, dict):
        raise Glitch.bad_request("the body must be a JSON object")
    return body


async def sleep(seconds: float) -> None:
    """asyncio's sleep, or trio's when no asyncio loop runs (``--runtime trio``)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        import trio

        await trio.sleep(seconds)
    else:
        await asyncio.sleep(seconds)


@router.get("/items")
async def list_items(req: Request, w: ResponseWriter) -> ResponseWritten:
    q = req.query
    limit = q.get_int("limit", default=20, min=1, max=100)
    offset = q.get_int("offset", default=0, min=0)
    in_stock = q.get_bool("in_stock", default=None)
    sort = q.get_choice("sort", SORTS, default="id")
    tags = q.get_list("tag", default=[], max_items=10)
    items = [
        item
        for item in req.data(Store).items.values()
        if (in_stock is None or (item.stock > 0) is in_stock)
        and (not tags or set(tags) & set(item.tags))
    ]
    items.sort(key=lambda item: getattr(item, sort))
    w.set_json([asdict(item) for item in items[offset : offset + limit]])
    return await w.send()


@router.get("/items/:id")
async def get_item(req: Request, w: ResponseWriter) -> ResponseWritten:
    item = req.data(Store).item(req.params.get_int("id", min=1))
    w.set_json(asdict(item))
    return await w.send()


def _new_item(body: dict[str, Any], next_id: int) -> Item:
    """The item the body describes, or a 422 listing every field that is wrong."""
    errors: list[dict[str, str]] = []
    name = body.get("name")
    if not (isinstance(name, str) and 1 <= len(name.strip()) <= 100):
        errors.append({"field": "name", "message": "a string of 1 to 100 characters"})
        name = ""
    price = body.get("price")
    # (bool is an int in Python, but JSON true is not a price)
    if isinstance(price, bool) or not (isinstance(price, int | float) and 0 <= price < math.inf):
        errors.append({"field": "price", "message": "a number of at least 0"})
        price = 0.0
    stock = body.get("stock", 0)
    if isinstance(stock, bool) or not (isinstance(stock, int) and stock >= 0):
        errors.append({"field": "stock", "message": "an integer of at least 0"})
        stock = 0
    tags = body.get("tags", [])
    if not (isinstance(tags, list) and len(tags) <= 10 and all(isinstance(t, str) for t in tags)):
        errors.append({"field": "tags", "message": "a list of at most 10 strings"})
        tags = []
    if errors:
        raise Glitch.unprocessable(errors=errors)
    return Item(next_id, name.strip(), float(price), stock, tags)


@router.post("/items")
async def add_item(req: Request, w: ResponseWriter) -> ResponseWritten:
    user = user_of(req)
    items = req.data(Store).items
    item = _new_item(await json_object(req), max(items, default=0) + 1)
    items[item.id] = item
    log.info("%s added item %d", user, item.id)  # the record carries the request id
    w.set_status(201)
    w.insert_header("location", f"/items/{item.id}")
    w.set_json(asdict(item))
    return await w.send()


@router.post("/items/:id/buy")
async def buy_item(req: Request, w: ResponseWriter) -> ResponseWritten:
    user = user_of(req)
    item = req.data(Store).item(req.params.get_int("id", min=1))
    quantity = req.query.get_int("quantity", default=1, min=1, max=10)
    if quantity > item.stock:
        raise Glitch(
            409,
            f"only {item.stock} of item {item.id} left",
            type=OUT_OF_STOCK,
            title="Out of stock",
            extensions={"available": item.stock, "requested": quantity},
        )
    item.stock -= quantity
    log.info("%s bought %d of item %d", user, quantity, item.id)
    w.set_json(asdict(item))
    return await w.send()


@router.get("/stats")
async def stats(req: Request, w: ResponseWriter) -> ResponseWritten:
    # ``delay`` stands in for a slow reporting query: past opts.handler_timeout, a 503.
    await sleep(req.query.get_float("delay", default=0.0, min=0, max=60))
    items = req.data(Store).items.values()
    w.set_json({"items": len(items), "stock_value": sum(i.price * i.stock for i in items)})
    return await w.send()


@router.put("/prefs/theme/:theme")
async def set_theme(req: Request, w: ResponseWriter) -> ResponseWritten:
    theme = req.params.get_choice("theme", THEMES)
    # Not HttpOnly: the page's script reads it to paint before the first request (an explicit
    # opt-out of the default; it holds nothing secret). Secure and SameSite=Lax stay.
    w.set_cookie("theme", theme, max_age=timedelta(days=365), httponly=False)
    w.set_json({"theme": theme})
    return await w.send()


@router.delete("/prefs/theme")
async def reset_theme(req: Request, w: ResponseWriter) -> ResponseWritten:
    w.delete_cookie("theme", httponly=False)  # the attributes it was set with
    w.set_status(204)
    return await w.send()


@router.post("/login")
async def login(req: Request, w: ResponseWriter) -> ResponseWritten:
    user = (await json_object(req)).get("user")
    if not isinstance(user, str) or not 1 <= len(user) <= 64 or not user.isprintable():
        raise Glitch.unprocessable([{"field": "user", "message": "1 to 64 printable characters"}])
    identity.set_auth_token(user, w, session=req.data(Store).start_session(user))
    w.set_json({"user": user})
    return await w.send()


@router.post("/logout")
async def logout(req: Request, w: ResponseWriter) -> ResponseWritten:
    user, session = identity.authorized_user(req), identity.authorized_session(req)
    if user is not None and session is not None:
        req.data(Store).end_session(session)  # a copy of the cookie is refused from now on
        identity.invalidate(user, session)  # (this worker's cache; others within the ttl)
    identity.forget(w)
    w.set_status(204)
    return await w.send()


@router.get("/me")
async def me(req: Request, w: ResponseWriter) -> ResponseWritten:
    user = user_of(req)
    theme = req.cookies.get("theme")
    w.set_json(
        {
            "user": user,
            "theme": theme if theme in THEMES else "light",  # a cookie is client input
            "request_id": current_request_id(),
        }
    )
    return await w.send()


# request_id() outermost: every response has the id, errors included; Identity's middleware
# runs the (async) session check before any handler reads the user.
app = chain(request_id(), identity.middleware)(router)

if __name__ == "__main__":
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())  # every record gets the request's id ("-" outside)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s [%(request_id)s] %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    serve(app, port=int(sys.argv[1]) if len(sys.argv) > 1 else 8000, opts=opts, lifespan=lifespan)
