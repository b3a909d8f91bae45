"""Routing: parameters, typed parameters, shared data, a catch-all and a mounted sub-router.

Run: python -m tophat examples.routing:app --port 8000
     curl 127.0.0.1:8000/users/1              -> {"id": 1, "name": "ada"}
     curl 127.0.0.1:8000/users/new            -> the static route wins over /users/:id
     curl 127.0.0.1:8000/files/docs/a%20b.txt -> {"path": "docs/a b.txt"}
     curl 127.0.0.1:8000/admin/stats          -> the mounted router, with its own middleware
     curl -X DELETE 127.0.0.1:8000/users/1    -> 405, Allow: GET, HEAD, OPTIONS
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tophat import Endpoint, Request, ResponseWriter, ResponseWritten
from tophat.glitch import ok_or
from tophat.middleware import Middleware, chain
from tophat.router import Router


@dataclass
class UserStore:
    """Stands in for a database pool: shared with every endpoint, no globals needed."""

    users: dict[int, str] = field(default_factory=lambda: {1: "ada", 2: "grace"})


app = Router()
app.data(UserStore())


@app.get("/users/new")
async def new_user_form(req: Request, w: ResponseWriter) -> ResponseWritten:
    w.set_text("a form for a new user")
    return await w.send()


@app.get("/users/:id<int>", name="user")
async def get_user(req: Request, w: ResponseWriter) -> ResponseWritten:
    store = req.data(UserStore)
    uid: int = req.params["id"]
    w.set_json({"id": uid, "name": ok_or(store.users.get(uid), 404, "no such user")})
    return await w.send()


@app.post("/users")
async def create_user(req: Request, w: ResponseWriter) -> ResponseWritten:
    store = req.data(UserStore)
    uid = max(store.users, default=0) + 1
    store.users[uid] = (await req.text()).strip() or "anonymous"
    w.set_status(201)
    w.insert_header("location", app.url_for("user", id=uid))
    w.set_json({"id": uid})
    return await w.send()


@app.get("/files/*path")
async def get_file(req: Request, w: ResponseWriter) -> ResponseWritten:
    w.set_json({"path": req.params["path"]})
    return await w.send()


def admin_header(next_endpoint: Endpoint) -> Endpoint:
    """A middleware is a plain function: endpoint in, endpoint out."""

    async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.insert_header("x-admin", "yes")
        return await next_endpoint(req, w)

    return endpoint


admin = Router()


@admin.get("/stats")
async def stats(req: Request, w: ResponseWriter) -> ResponseWritten:
    w.set_json({"users": len(req.data(UserStore).users), "mounted_at": req.root_path})
    return await w.send()


admin_only: Middleware = chain(admin_header)
app.mount("/admin", admin_only(admin))
