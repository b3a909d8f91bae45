"""CORS: an API that pages on https://app.example (and localhost:3000 in development) may call.

Run: python -m tophat examples.cors:app --port 8000
     curl -i -H 'Origin: https://app.example' 127.0.0.1:8000/items
     curl -i -X OPTIONS -H 'Origin: https://app.example' \\
          -H 'Access-Control-Request-Method: PUT' -H 'Access-Control-Request-Headers: x-token' \\
          127.0.0.1:8000/items/1
"""

from __future__ import annotations

from tophat import Request, ResponseWriter, ResponseWritten
from tophat.middleware import chain
from tophat.middleware.cors import cors
from tophat.router import Router

ITEMS = {1: "hat"}

router = Router()


@router.get("/items")
async def list_items(req: Request, w: ResponseWriter) -> ResponseWritten:
    w.insert_header("x-total", str(len(ITEMS)))
    w.set_json(ITEMS)
    return await w.send()


@router.put("/items/:id<int>")
async def put_item(req: Request, w: ResponseWriter) -> ResponseWritten:
    ITEMS[req.params["id"]] = await req.text()
    w.set_status(204)
    return await w.send()


app = chain(
    cors(
        allow_origins=["https://app.example", "http://localhost:3000"],
        allow_methods=["GET", "PUT"],
        allow_headers=["x-token", "content-type"],
        expose_headers=["x-total"],
        allow_credentials=True,
        max_age=600,
    )
)(router)
