"""Typed query and path values, and errors a JSON client can read (RFC 9457 problem+json).

Run: python -m tophat examples.query:app --port 8000
     curl '127.0.0.1:8000/notes?limit=2&order=desc'      -> 200 the two newest notes
     curl '127.0.0.1:8000/notes?tag=work&tag=home'       -> 200 notes with either tag
     curl '127.0.0.1:8000/notes?limit=500'               -> 400, as text (curl sends */*):
          query parameter 'limit': expected an integer between 1 and 100
     curl -H 'Accept: application/json' '127.0.0.1:8000/notes?limit=500'
          -> 400 application/problem+json
          {"type":"about:blank","title":"Bad Request","status":400,
           "detail":"query parameter 'limit': expected an integer between 1 and 100",
           "errors":[{"field":"limit","message":"expected an integer between 1 and 100"}]}
     curl -H 'Accept: application/json' 127.0.0.1:8000/notes/9   -> 404 problem+json
     curl -H 'Accept: application/json' -X POST 127.0.0.1:8000/notes -d ''
          -> 422 problem+json with errors: [{"field": "text", "message": "must not be empty"}]

Every getter's rules (empty is missing, a repeated scalar is refused, strict numbers, the
boolean words) are in ``tophat/http/query.py``; negotiation in ``tophat/http/problem.py``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

from typing_extensions import assert_type

from tophat import Glitch, Request, ResponseWriter, ResponseWritten
from tophat.router import Router

Order = Literal["asc", "desc"]
ORDERS: tuple[Order, ...] = ("asc", "desc")


@dataclass
class Note:
    id: int
    text: str
    tags: list[str] = field(default_factory=list)
    done: bool = False


@dataclass
class Notes:
    """Stands in for a database: shared through the router (``req.data(Notes)``)."""

    items: list[Note] = field(
        default_factory=lambda: [
            Note(1, "buy milk", ["home"], done=True),
            Note(2, "write report", ["work"]),
            Note(3, "call mum", ["home"]),
        ]
    )


app = Router()
app.data(Notes())


@app.get("/notes")
async def list_notes(req: Request, w: ResponseWriter) -> ResponseWritten:
    q = req.query
    # Each result has the type a reader expects, with no cast: mypy --strict checks these.
    limit = assert_type(q.get_int("limit", default=20, min=1, max=100), int)
    after = assert_type(q.get_int("after", default=None, min=0), int | None)
    done = assert_type(q.get_bool("done", default=None), bool | None)
    order = assert_type(q.get_choice("order", ORDERS, default="asc"), Order)
    tags = assert_type(q.get_list("tag", default=[], max_items=10), list[str])
    items = [
        asdict(n)
        for n in req.data(Notes).items
        if (after is None or n.id > after)
        and (done is None or n.done is done)
        and (not tags or set(tags) & set(n.tags))
    ]
    if order == "desc":
        items.reverse()
    w.set_json(items[:limit])
    return await w.send()


@app.get("/notes/:id")
async def get_note(req: Request, w: ResponseWriter) -> ResponseWritten:
    nid = assert_type(req.params.get_int("id", min=1), int)
    for note in req.data(Notes).items:
        if note.id == nid:
            w.set_json(asdict(note))
            return await w.send()
    raise Glitch.not_found(f"no note {nid}")


@app.post("/notes")
async def add_note(req: Request, w: ResponseWriter) -> ResponseWritten:
    text = (await req.text()).strip()
    if not text:
        raise Glitch.unprocessable([{"field": "text", "message": "must not be empty"}])
    notes = req.data(Notes).items
    note = Note(len(notes) + 1, text)
    notes.append(note)
    w.set_status(201)
    w.set_json(asdict(note))
    return await w.send()
