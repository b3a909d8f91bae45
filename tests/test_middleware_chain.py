"""Middleware as plain closures, composed with ``chain``: order, short-circuits, request changes,
pre-set headers, and work done after the inner endpoint sent its response."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest

from tophat import Endpoint, Glitch, Request, Response, ResponseWriter, ResponseWritten
from tophat.middleware import Middleware, add_vary, chain
from tophat.testing import AsyncTestClient


def recording(name: str, log: list[str]) -> Middleware:
    """A middleware that logs when the request enters it and when the response left."""

    def middleware(next_: Endpoint) -> Endpoint:
        async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
            log.append(f"{name} in")
            done = await next_(req, w)
            log.append(f"{name} out")
            return done

        return endpoint

    return middleware


def counting(calls: list[Request], text: str = "inner") -> Endpoint:
    async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
        calls.append(req)
        w.set_text(text)
        return await w.send()

    return endpoint


async def test_chain_puts_the_first_middleware_outermost() -> None:
    log: list[str] = []

    async def inner(req: Request, w: ResponseWriter) -> ResponseWritten:
        log.append("endpoint")
        return await w.send()

    app = chain(recording("a", log), recording("b", log), recording("c", log))(inner)
    resp = await AsyncTestClient(app).get("/")
    assert resp.status == 200
    assert log == ["a in", "b in", "c in", "endpoint", "c out", "b out", "a out"]


async def test_nested_chains_keep_the_same_order_as_one_flat_chain() -> None:
    log: list[str] = []
    calls: list[Request] = []
    nested = chain(recording("a", log), chain(recording("b", log), recording("c", log)))
    await AsyncTestClient(nested(counting(calls))).get("/")
    assert log == ["a in", "b in", "c in", "c out", "b out", "a out"]


def test_chain_of_nothing_is_the_endpoint_itself() -> None:
    calls: list[Request] = []
    endpoint = counting(calls)
    assert chain()(endpoint) is endpoint


async def test_middleware_can_short_circuit_with_its_own_response() -> None:
    calls: list[Request] = []
    outer_saw: list[int] = []

    def outer(next_: Endpoint) -> Endpoint:
        async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
            done = await next_(req, w)
            outer_saw.append(done.status)
            return done

        return endpoint

    def gate(next_: Endpoint) -> Endpoint:
        async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
            if req.headers.get("x-key") != "open sesame":
                w.set_status(403)
                w.set_text("go away")
                return await w.send()
            return await next_(req, w)

        return endpoint

    app = chain(outer, gate)(counting(calls))
    refused = await AsyncTestClient(app).get("/")
    assert (refused.status, refused.text) == (403, "go away")
    assert calls == []  # the inner endpoint never ran
    assert outer_saw == [403]  # and the outer middleware saw the short-circuit's proof

    allowed = await AsyncTestClient(app).get("/", headers={"x-key": "open sesame"})
    assert (allowed.status, allowed.text) == (200, "inner")
    assert len(calls) == 1


async def test_middleware_can_change_the_request_for_the_endpoints_inside() -> None:
    def tag(next_: Endpoint) -> Endpoint:
        async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
            req.headers.set("x-request-id", "req-42")
            req.ext["tenant"] = req.headers.get("x-tenant", "default").upper()
            return await next_(req, w)

        return endpoint

    async def inner(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.set_text(f"{req.headers.get('x-request-id')} {req.ext['tenant']}")
        return await w.send()

    resp = await AsyncTestClient(chain(tag)(inner)).get("/", headers={"x-tenant": "acme"})
    assert resp.text == "req-42 ACME"


async def test_header_preset_by_middleware_is_on_the_endpoints_response() -> None:
    def stamp(next_: Endpoint) -> Endpoint:
        async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
            w.insert_header("x-frame-options", "DENY")
            return await next_(req, w)

        return endpoint

    calls: list[Request] = []
    resp = await AsyncTestClient(chain(stamp)(counting(calls))).get("/")
    assert (resp.status, resp.text) == (200, "inner")
    assert resp.headers.get_all("x-frame-options") == ["DENY"]


@pytest.mark.parametrize(
    ("failure", "status"),
    [(Glitch(404, "no such thing"), 404), (RuntimeError("bug"), 500)],
    ids=["glitch", "unhandled-error"],
)
async def test_header_preset_by_middleware_survives_an_error_response(
    failure: Exception, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    def stamp(next_: Endpoint) -> Endpoint:
        async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
            w.insert_header("x-frame-options", "DENY")
            return await next_(req, w)

        return endpoint

    async def failing(req: Request, w: ResponseWriter) -> ResponseWritten:
        raise failure

    with caplog.at_level(logging.CRITICAL, logger="tophat"):
        resp = await AsyncTestClient(chain(stamp)(failing)).get("/")
    assert resp.status == status
    assert resp.headers.get("x-frame-options") == "DENY"


async def test_endpoint_can_override_a_header_the_middleware_preset() -> None:
    def default_cache(next_: Endpoint) -> Endpoint:
        async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
            w.insert_header("cache-control", "no-store")
            return await next_(req, w)

        return endpoint

    async def cacheable(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.insert_header("cache-control", "max-age=60")
        return await w.send()

    resp = await AsyncTestClient(chain(default_cache)(cacheable)).get("/")
    assert resp.headers.get_all("cache-control") == ["max-age=60"]


async def test_middleware_acts_after_the_endpoint_with_status_headers_and_bytes_written() -> None:
    seen: list[tuple[int, str | None, int]] = []

    def after(next_: Endpoint) -> Endpoint:
        async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
            done = await next_(req, w)
            assert w.sent
            seen.append((done.status, done.headers.get("x-kind"), done.bytes_written))
            # The proof lists the headers that went out, framing included.
            assert done.headers.get("content-length") == str(len(b"made a widget"))
            return done

        return endpoint

    async def created(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.set_status(201)
        w.insert_header("x-kind", "widget")
        w.set_text("made a widget")
        return await w.send()

    app = chain(after)(created)
    resp = await AsyncTestClient(app).post("/")
    assert (resp.status, resp.body) == (201, b"made a widget")
    assert seen == [(201, "widget", len(b"made a widget"))]

    # HEAD: the same response, but no body bytes on the wire, and the proof says so.
    head = await AsyncTestClient(app).request("HEAD", "/")
    assert (head.status, head.body) == (201, b"")
    assert seen[-1] == (201, "widget", 0)


async def test_middleware_after_work_sees_a_streamed_bodys_total_bytes() -> None:
    seen: list[int] = []

    def after(next_: Endpoint) -> Endpoint:
        async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
            done = await next_(req, w)
            seen.append(done.bytes_written)
            return done

        return endpoint

    async def pieces() -> AsyncIterator[bytes]:
        for piece in (b"abc", b"defgh", b"ij"):
            yield piece

    async def streaming(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.set_body(pieces())
        return await w.send()

    resp = await AsyncTestClient(chain(after)(streaming)).get("/")
    assert resp.body == b"abcdefghij"
    assert seen == [10]


async def test_add_vary_merges_with_what_is_there_once_each() -> None:
    def varies(*names: str) -> Middleware:
        def middleware(next_: Endpoint) -> Endpoint:
            async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
                add_vary(w.response.headers, *names)
                return await next_(req, w)

            return endpoint

        return middleware

    calls: list[Request] = []
    app = chain(varies("Accept-Encoding"), varies("origin", "Cookie"), varies("ORIGIN"))(
        counting(calls)
    )
    resp = await AsyncTestClient(app).get("/")
    assert resp.headers.get_all("vary") == ["Accept-Encoding, origin, Cookie"]


async def test_add_vary_leaves_a_star_alone() -> None:
    async def inner(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.insert_header("vary", "*")
        add_vary(w.response.headers, "Origin")
        return await w.send()

    resp = await AsyncTestClient(inner).get("/")
    assert resp.headers.get_all("vary") == ["*"]


def stamping(name: str) -> Middleware:
    """A middleware that sets x-stamp at send time, after the endpoint decided the response."""

    def middleware(next_: Endpoint) -> Endpoint:
        async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
            def stamp(response: Response) -> None:
                response.headers.set("x-stamp", f"{name}:{response.status}")

            w.before_send(stamp)
            return await next_(req, w)

        return endpoint

    return middleware


async def test_send_time_hook_sees_the_endpoints_final_status_and_wins_over_its_headers() -> None:
    async def inner(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.set_status(202)
        w.insert_header("x-stamp", "from the endpoint")
        return await w.send()

    resp = await AsyncTestClient(chain(stamping("mw"))(inner)).get("/")
    assert resp.status == 202
    assert resp.headers.get_all("x-stamp") == ["mw:202"]


async def test_outer_middlewares_send_time_hook_runs_last() -> None:
    calls: list[Request] = []
    resp = await AsyncTestClient(chain(stamping("outer"), stamping("inner"))(counting(calls))).get(
        "/"
    )
    assert resp.headers.get_all("x-stamp") == ["outer:200"]


@pytest.mark.parametrize(
    ("failure", "status"),
    [(Glitch(418, "teapot"), 418), (RuntimeError("bug"), 500)],
    ids=["glitch", "unhandled-error"],
)
async def test_send_time_hook_runs_for_error_responses(
    failure: Exception, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    async def failing(req: Request, w: ResponseWriter) -> ResponseWritten:
        raise failure

    with caplog.at_level(logging.CRITICAL, logger="tophat"):
        resp = await AsyncTestClient(chain(stamping("mw"))(failing)).get("/")
    assert resp.status == status
    assert resp.headers.get_all("x-stamp") == [f"mw:{status}"]
