"""A user's items API and its tests, written as a new user would: ``mypy --strict`` must pass on
this file with no casts and no ignores (tests/test_static.py), and tests/test_typing.py runs the
tests below. It uses the router's verbs (decorator and direct forms), typed parameters,
``req.data``, ``chain``, ``cors``, ``Identity`` and ``Glitch``."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from tophat import Glitch, Request, ResponseWriter, ResponseWritten
from tophat.middleware import chain
from tophat.middleware.cors import cors
from tophat.middleware.identity import Identity
from tophat.router import Route, Router
from tophat.testing import AsyncTestClient


@dataclass
class Store:
    items: dict[int, str] = field(default_factory=lambda: {1: "hat"})


identity = Identity(secrets.token_urlsafe(48), secure=False)
router = Router()
router.data(Store())


@router.get("/items/:id<int>", name="item")
async def get_item(req: Request, w: ResponseWriter) -> ResponseWritten:
    item_id: int = req.params["id"]
    name = req.data(Store).items.get(item_id)
    if name is None:
        raise Glitch.not_found(f"no item {item_id}")
    w.set_json({"id": item_id, "name": name})
    return await w.send()


@router.put("/items/:id<int>")
async def put_item(req: Request, w: ResponseWriter) -> ResponseWritten:
    if identity.authorized_user(req) is None:
        raise Glitch(401, "log in first", headers={"www-authenticate": 'Cookie realm="items"'})
    req.data(Store).items[req.params["id"]] = (await req.text()).strip()
    w.set_status(204)
    return await w.send()


async def login(req: Request, w: ResponseWriter) -> ResponseWritten:
    identity.set_auth_token(req.query.get("user") or "ada", w)
    return await w.send()


login_route: Route = router.post("/login", login)
app = chain(cors(allow_origins=["https://app.example"], allow_methods=["GET", "PUT"]))(
    chain(identity.middleware)(router)
)


# -- the user's tests ----------------------------------------------------------------------------


async def test_an_item_is_found_by_its_typed_id() -> None:
    resp = await AsyncTestClient(app).get("/items/1", headers={"origin": "https://app.example"})
    assert resp.status == 200
    assert resp.json() == {"id": 1, "name": "hat"}
    assert resp.headers.get("access-control-allow-origin") == "https://app.example"
    assert (await AsyncTestClient(app).get("/items/7")).status == 404
    assert router.url_for("item", id=1) == "/items/1"


async def test_putting_an_item_needs_a_login() -> None:
    client = AsyncTestClient(app)
    assert (await client.request("PUT", "/items/2", body="scarf")).status == 401
    cookie = (await client.post("/login?user=ada")).headers["set-cookie"].split(";")[0]
    resp = await client.request("PUT", "/items/2", body="scarf", headers={"cookie": cookie})
    assert resp.status == 204
    assert (await client.get("/items/2")).json() == {"id": 2, "name": "scarf"}
