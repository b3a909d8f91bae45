"""Starlette with 50 routes, /res0/{id} ... /res49/{id}, each answering "Hello, world!"
(served by uvicorn --http h11: the reference for tophat's routing test)."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from . import ROUTES


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("Hello, world!")


app = Starlette(routes=[Route(f"/res{i}/{{id}}", hello, methods=["GET"]) for i in range(ROUTES)])
