"""aiohttp.web with GET / hello, POST /echo, GET /big, on aiohttp's default (asyncio) loop.

python -m bench.perf_apps.aiohttp_app --port 8000
"""

from __future__ import annotations

import argparse

from aiohttp import web

from . import BIG, HELLO


async def hello(request: web.Request) -> web.Response:
    return web.Response(body=HELLO, content_type="text/plain", charset="utf-8")


async def echo(request: web.Request) -> web.Response:
    return web.Response(body=await request.read(), content_type="application/octet-stream")


async def big(request: web.Request) -> web.Response:
    return web.Response(body=BIG, content_type="application/octet-stream")


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/", hello)
    app.router.add_post("/echo", echo)
    app.router.add_get("/big", big)
    return app


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args()
    web.run_app(make_app(), host=args.host, port=args.port, access_log=None, print=None)
