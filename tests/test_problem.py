"""Errors as RFC 9457 problem details: ``application/problem+json`` when the client prefers
JSON (Accept, RFC 9110 §12.5.1), ``text/plain`` as before otherwise, on the wire.

Native server through ``tophat.testing.AsyncTestClient`` (every runtime, every parser) and the
ASGI adapter with in-memory ``receive``/``send``: the same rendering, one copy.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

import pytest
from servers import asgi_messages

from tophat import Endpoint, Glitch, Request, ResponseWriter, ResponseWritten, ServerOpts
from tophat.asgi import to_asgi
from tophat.http.problem import prefers_json
from tophat.middleware import chain
from tophat.middleware.cors import cors
from tophat.router import Router
from tophat.testing import AsyncTestClient, TestResponse, parse_responses

JSON = {"accept": "application/json"}
PROBLEM = "application/problem+json"
TEXT = "text/plain; charset=utf-8"
_DATE_LINE = re.compile(rb"\r\ndate: [^\r\n]*\r\n", re.IGNORECASE)


def raising(make: Callable[[], BaseException]) -> Endpoint:
    async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
        raise make()

    return endpoint


def masked(out: bytes) -> bytes:
    return _DATE_LINE.sub(b"\r\ndate: <DATE>\r\n", out)


def problem(resp: TestResponse) -> Any:
    assert resp.headers.get("content-type") == PROBLEM, resp.headers
    return json.loads(resp.body)


# -- the exact bytes ----------------------------------------------------------------------------


async def test_a_glitch_with_errors_is_a_problem_object_for_a_json_client() -> None:
    errors = [{"field": "title", "message": "must not be empty"}]
    app = raising(lambda: Glitch.unprocessable(errors))
    out = await AsyncTestClient(app).raw(
        b"POST /notes HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\nContent-Length: 0\r\n\r\n"
    )
    body = (
        b'{"type":"about:blank","title":"Unprocessable Content","status":422,'
        b'"detail":"title: must not be empty",'
        b'"errors":[{"field":"title","message":"must not be empty"}]}'
    )
    assert masked(out) == (
        b"HTTP/1.1 422 Unprocessable Content\r\n"
        b"vary: Accept\r\n"
        b"content-type: application/problem+json\r\n"
        b"date: <DATE>\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(body), body)
    )


async def test_the_same_glitch_is_text_for_a_client_that_sends_no_accept() -> None:
    app = raising(lambda: Glitch.unprocessable([{"field": "title", "message": "too long"}]))
    out = await AsyncTestClient(app).raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    # Exactly as before negotiation existed: no Vary, the message as text.
    assert masked(out) == (
        b"HTTP/1.1 422 Unprocessable Content\r\n"
        b"content-type: text/plain; charset=utf-8\r\n"
        b"date: <DATE>\r\n"
        b"content-length: 15\r\n\r\ntitle: too long"
    )


# -- negotiation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "as_json"),
    [
        (None, False),  # no Accept: any type (RFC 9110 §12.5.1), and text as before
        ("*/*", False),  # curl, httpx, requests: unchanged
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", False),  # browsers
        ("application/json", True),
        ("application/problem+json", True),
        ("application/*", True),
        ("APPLICATION/JSON", True),  # media types are case-insensitive
        ("application/json;charset=utf-8", True),
        ("application/json, text/plain, */*", True),  # axios: JSON named first
        ("text/plain, application/json", False),  # equal q and rank: the first named
        ("application/json, */*", True),  # an exact type outranks a wildcard at equal q
        ("*/*, application/json", True),
        ("text/*, application/json", True),
        ("application/json;q=0.5, text/plain", False),
        ("application/json;q=0.5, text/plain;q=0.4", True),
        ("text/plain;q=0, */*", True),
        ("application/json;q=0", False),  # q=0: not acceptable
        ("*/*;q=0.5, application/json;q=0", False),
        ("application/json;q=0.001", True),
        ("application/json;q=1.5", False),  # not a qvalue (RFC 9110 §12.4.2): ignored
        ("application/json;q=abc, text/plain", False),
        ("*/json", False),  # not a media range
        ("image/png", False),  # nothing acceptable: text all the same, never a 406
        ("", False),
    ],
)
async def test_accept_decides_the_format(accept: str | None, as_json: bool) -> None:
    app = raising(lambda: Glitch.not_found("no such note"))
    headers = {} if accept is None else {"accept": accept}
    resp = await AsyncTestClient(app).get("/", headers=headers)
    assert resp.status == 404
    if as_json:
        assert problem(resp) == {
            "type": "about:blank",
            "title": "Not Found",
            "status": 404,
            "detail": "no such note",
        }
    else:
        assert (resp.headers.get("content-type"), resp.text) == (TEXT, "no such note")
    # RFC 9110 §12.5.5: the representation depends on Accept, so the response says so.
    assert resp.headers.get("vary") == (None if accept is None else "Accept")
    assert prefers_json(accept or "") is as_json


async def test_several_accept_fields_are_one_list() -> None:
    app = raising(lambda: Glitch(409))
    out = await AsyncTestClient(app).raw(
        b"GET / HTTP/1.1\r\nHost: x\r\nAccept: text/plain;q=0.1\r\nAccept: application/json\r\n\r\n"
    )
    [resp] = parse_responses(out)
    assert problem(resp) == {"type": "about:blank", "title": "Conflict", "status": 409}


@pytest.mark.parametrize(
    ("error_format", "accept", "content_type", "vary"),
    [
        ("json", None, PROBLEM, None),
        ("json", "text/plain", PROBLEM, None),
        ("text", "application/json", TEXT, None),
        ("negotiate", "application/json", PROBLEM, "Accept"),
    ],
)
async def test_error_format_forces_one_format(
    error_format: Any, accept: str | None, content_type: str, vary: str | None
) -> None:
    client = AsyncTestClient(raising(lambda: Glitch(400)), ServerOpts(error_format=error_format))
    resp = await client.get("/", headers={"accept": accept} if accept else {})
    assert (resp.status, resp.headers.get("content-type")) == (400, content_type)
    assert resp.headers.get("vary") == vary
    if content_type == PROBLEM:
        assert json.loads(resp.body) == {
            "type": "about:blank",
            "title": "Bad Request",
            "status": 400,
        }
    else:
        assert resp.text == "Bad Request"


def test_error_format_is_checked() -> None:
    with pytest.raises(ValueError, match="error_format"):
        ServerOpts(error_format="xml")  # type: ignore[arg-type]


# -- the router's errors, the server's 500 ------------------------------------------------------


def api() -> Router:
    router = Router()

    @router.get("/notes")
    async def notes(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.set_json([])
        return await w.send()

    @router.get("/boom")
    async def boom(req: Request, w: ResponseWriter) -> ResponseWritten:
        raise RuntimeError("secret internals")

    @router.get("/forgot")
    async def forgot(req: Request, w: ResponseWriter) -> ResponseWritten:
        return None  # type: ignore[return-value]

    return router


@pytest.mark.parametrize(
    ("method", "path", "status", "title", "headers"),
    [
        ("GET", "/nowhere", 404, "Not Found", {}),
        ("DELETE", "/notes", 405, "Method Not Allowed", {"allow": "GET, HEAD, OPTIONS"}),
        ("GET", "/boom", 500, "Internal Server Error", {}),
        ("GET", "/forgot", 500, "Internal Server Error", {}),
    ],
)
@pytest.mark.parametrize("verbose", [False, True])
async def test_router_errors_and_the_500_are_problems_too(
    method: str, path: str, status: int, title: str, headers: dict[str, str], verbose: bool
) -> None:
    client = AsyncTestClient(api(), ServerOpts(verbose_glitch=verbose))
    resp = await client.request(method, path, headers=JSON)
    assert resp.status == status
    # No detail: an unexpected error's text never reaches the client, verbose or not.
    assert problem(resp) == {"type": "about:blank", "title": title, "status": status}
    for name, value in headers.items():
        assert resp.headers.get(name) == value  # RFC 9110 §15.5.6: a 405 carries Allow


async def test_head_gets_the_problem_head_without_its_body() -> None:
    client = AsyncTestClient(api())
    get = await client.request("GET", "/nowhere", headers=JSON)
    out = await client.raw(b"HEAD /nowhere HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n\r\n")
    [head] = parse_responses(out, ["HEAD"])
    assert (head.status, head.body) == (404, b"")
    assert masked(out).endswith(b"\r\n\r\n")  # nothing after the head
    # RFC 9110 §9.3.2: the same fields as the GET, Content-Length included.
    for name in ("content-type", "content-length", "vary"):
        assert head.headers.get(name) == get.headers.get(name)
    assert head.headers.get("content-type") == PROBLEM


async def test_headers_set_before_the_glitch_are_kept() -> None:
    app = chain(cors(allow_origins=["https://app.example"]))(api())
    resp = await AsyncTestClient(app).get(
        "/nowhere", headers={"origin": "https://app.example", **JSON}
    )
    assert resp.status == 404
    assert resp.headers.get("access-control-allow-origin") == "https://app.example"
    # The Vary of CORS and ours, merged into one field.
    assert resp.headers.get_list("vary") == ["Accept", "Origin"]
    assert problem(resp)["title"] == "Not Found"


async def test_a_vary_the_handler_set_is_extended() -> None:
    async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.insert_header("vary", "Accept-Language")
        w.insert_header("content-language", "fr")  # about the body that is replaced: dropped
        raise Glitch.unauthorized(challenge='Bearer realm="api"')

    resp = await AsyncTestClient(endpoint).get("/", headers=JSON)
    assert resp.headers.get("vary") == "Accept-Language, Accept"
    assert resp.headers.get("www-authenticate") == 'Bearer realm="api"'
    assert "content-language" not in resp.headers
    assert problem(resp) == {"type": "about:blank", "title": "Unauthorized", "status": 401}


# -- verbose_glitch -----------------------------------------------------------------------------


def failing_parse() -> Glitch:
    try:
        int("x")
    except ValueError as exc:
        return Glitch(400, "id must be a number", cause=exc)
    raise AssertionError


@pytest.mark.parametrize(
    ("make", "quiet", "verbose"),
    [
        (
            failing_parse,
            "id must be a number",
            "id must be a number: ValueError: invalid literal for int() with base 10: 'x'",
        ),
        (
            lambda: Glitch(400, cause=KeyError("k")),
            None,
            "Bad Request: KeyError: 'k'",
        ),
        (lambda: Glitch(400), None, None),
    ],
)
@pytest.mark.parametrize("on", [False, True])
async def test_the_cause_is_the_detail_only_when_verbose(
    make: Callable[[], Glitch], quiet: str | None, verbose: str | None, on: bool
) -> None:
    client = AsyncTestClient(raising(make), ServerOpts(verbose_glitch=on))
    body = problem(await client.get("/", headers=JSON))
    detail = verbose if on else quiet
    expected: dict[str, Any] = {"type": "about:blank", "title": "Bad Request", "status": 400}
    if detail is not None:
        expected["detail"] = detail
    assert body == expected


# -- Glitch's problem members -------------------------------------------------------------------


async def test_type_title_instance_and_extensions_are_members() -> None:
    def make() -> Glitch:
        return Glitch(
            403,
            "Your current balance is 30, but that costs 50.",
            type="https://example.com/probs/out-of-credit",
            title="You do not have enough credit.",
            instance="/account/12345/msgs/abc",
            extensions={"balance": 30, "accounts": ["/account/12345", "/account/67890"]},
        )

    resp = await AsyncTestClient(raising(make)).get("/", headers=JSON)
    # RFC 9457 §3's example, member for member.
    assert problem(resp) == {
        "type": "https://example.com/probs/out-of-credit",
        "title": "You do not have enough credit.",
        "status": 403,
        "detail": "Your current balance is 30, but that costs 50.",
        "instance": "/account/12345/msgs/abc",
        "balance": 30,
        "accounts": ["/account/12345", "/account/67890"],
    }
    assert list(json.loads(resp.body))[:4] == ["type", "title", "status", "detail"]


async def test_non_ascii_is_sent_as_utf8() -> None:
    resp = await AsyncTestClient(raising(lambda: Glitch(404, "pas de note « été »"))).get(
        "/", headers=JSON
    )
    assert "« été »".encode() in resp.body
    assert problem(resp)["detail"] == "pas de note « été »"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"extensions": {"status": 1}}, ValueError, "RFC 9457"),
        ({"extensions": {"detail": "x"}}, ValueError, "RFC 9457"),
        ({"extensions": {"instance": "x"}}, ValueError, "RFC 9457"),
        ({"extensions": {"id": 1}}, ValueError, "RFC 9457"),  # under three characters
        ({"extensions": {"trace-id": 1}}, ValueError, "RFC 9457"),
        ({"extensions": {"9lives": 1}}, ValueError, "RFC 9457"),
        ({"extensions": {"when": object()}}, TypeError, "JSON"),
        ({"extensions": {"ratio": math.nan}}, TypeError, "JSON"),
        ({"title": "Oops"}, ValueError, "about:blank"),
        ({"type": ""}, ValueError, "URI"),
    ],
)
def test_bad_problem_members_fail_when_the_glitch_is_made(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        Glitch(400, **kwargs)


def test_unprocessable_and_bad_request_take_errors() -> None:
    errors = [{"field": "title", "message": "must not be empty"}, {"message": "too many tags"}]
    g = Glitch.unprocessable(errors)
    assert (g.status, g.message) == (422, "title: must not be empty; too many tags")
    assert g.extensions == {"errors": errors}
    g = Glitch.unprocessable("check the form", errors=errors)
    assert (g.message, g.extensions) == ("check the form", {"errors": errors})
    g = Glitch.bad_request(errors=errors[:1])
    assert (g.status, g.message) == (400, "title: must not be empty")
    assert Glitch.unprocessable("why").extensions == {}
    with pytest.raises(TypeError, match="list"):
        Glitch.bad_request(errors={"field": "x"})  # type: ignore[arg-type]


# -- the ASGI adapter renders the same ----------------------------------------------------------


async def asgi_call(app: Any, method: str, path: str, headers: list[tuple[bytes, bytes]]) -> Any:
    return await asgi_messages(app, method, path, headers)


@pytest.mark.parametrize(
    ("method", "path", "accept"),
    [
        ("GET", "/nowhere", b"application/json"),
        ("DELETE", "/notes", b"application/json"),
        ("GET", "/boom", b"application/json"),
        ("HEAD", "/nowhere", b"application/json"),
        ("GET", "/nowhere", b"*/*"),
    ],
)
async def test_the_asgi_adapter_sends_what_the_server_sends(
    method: str, path: str, accept: bytes
) -> None:
    sent = await asgi_call(to_asgi(api()), method, path, [(b"accept", accept)])
    start, body = sent
    assert body["more_body"] is False
    resp = await AsyncTestClient(api()).request(method, path, headers={"accept": accept.decode()})
    native = {(n, v) for n, v in resp.headers.items() if n != "date"}
    assert start["status"] == resp.status
    assert {(n.decode(), v.decode()) for n, v in start["headers"]} == native
    assert body["body"] == resp.body


async def test_the_asgi_adapter_follows_error_format() -> None:
    app = to_asgi(api(), opts=ServerOpts(error_format="json"))
    start, body = await asgi_call(app, "GET", "/nowhere", [])
    assert (b"content-type", PROBLEM.encode()) in start["headers"]
    assert json.loads(body["body"]) == {"type": "about:blank", "title": "Not Found", "status": 404}
