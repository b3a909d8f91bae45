"""Typed query and path parameters on the wire: a good value is converted, a missing or bad
one is a 400 naming the parameter and what was expected, as problem+json with an ``errors``
member for a JSON client (and as text for the others).

Requests go through ``tophat.testing.AsyncTestClient`` (every runtime, every parser) and, for
one table, through the ASGI adapter.
"""

from __future__ import annotations

import enum
import json
import uuid
from typing import Any, Literal

import pytest
from servers import asgi_messages

from tophat import Glitch, Headers, Request, ResponseWriter, ResponseWritten
from tophat.asgi import to_asgi
from tophat.http.params import Params
from tophat.http.query import Query
from tophat.router import Router
from tophat.testing import AsyncTestClient

JSON = {"accept": "application/json"}


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


def router() -> Router:
    r = Router()

    @r.get("/notes")
    async def notes(req: Request, w: ResponseWriter) -> ResponseWritten:
        q = req.query
        order: Literal["asc", "desc"] = q.get_choice("order", ("asc", "desc"), default="asc")
        w.set_json(
            {
                "limit": q.get_int("limit", default=20, min=1, max=100),
                "page": q.get_int("page", default=None, min=1),
                "score": q.get_float("score", default=None, min=0, max=1),
                "done": q.get_bool("done", default=None),
                "order": order,
                "color": q.get_choice("color", Color, default=Color.RED).value,
                "tags": q.get_list("tag", default=[], max_items=3),
                "ids": q.get_list("id", int, default=[], split=","),
            }
        )
        return await w.send()

    @r.get("/required")
    async def required(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.set_json({"n": req.query.get_int("n"), "keys": req.query.get_list("key", uuid.UUID)})
        return await w.send()

    @r.get("/users/:id/:flag")
    async def user(req: Request, w: ResponseWriter) -> ResponseWritten:
        uid = req.params.get_int("id", min=1, max=999)
        flag = req.params.get_bool("flag")
        w.set_json({"id": uid, "flag": flag})
        return await w.send()

    @r.get("/typed/:id<int>")
    async def typed(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.set_json({"id": req.params.get_int("id", max=10)})
        return await w.send()

    @r.get("/ghost")
    async def ghost(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.set_json({"id": req.params.get_int("id")})  # no such parameter in the route: a bug
        return await w.send()

    return r


DEFAULTS: dict[str, Any] = {
    "limit": 20,
    "page": None,
    "score": None,
    "done": None,
    "order": "asc",
    "color": "red",
    "tags": [],
    "ids": [],
}


@pytest.mark.parametrize(
    ("query", "changed"),
    [
        ("", {}),
        ("limit=", {}),  # an empty field is "not given" (an HTML form's empty input)
        ("limit=1", {"limit": 1}),
        ("limit=100", {"limit": 100}),
        ("limit=%2B7", {"limit": 7}),
        ("page=3", {"page": 3}),
        ("score=0.5", {"score": 0.5}),
        ("score=1e-1", {"score": 0.1}),
        ("score=.25", {"score": 0.25}),
        ("score=1", {"score": 1.0}),
        ("done=true", {"done": True}),
        ("done=TRUE", {"done": True}),
        ("done=1", {"done": True}),
        ("done=yes", {"done": True}),
        ("done=On", {"done": True}),
        ("done=false", {"done": False}),
        ("done=0", {"done": False}),
        ("done=no", {"done": False}),
        ("done=off", {"done": False}),
        ("order=desc", {"order": "desc"}),
        ("color=green", {"color": "green"}),
        ("tag=a&tag=b%2Cc", {"tags": ["a", "b,c"]}),  # repeated keys; commas stay in a value
        ("tag=a&tag=&tag=b", {"tags": ["a", "b"]}),
        ("id=1,2&id=3", {"ids": [1, 2, 3]}),  # split="," and repeats together
        ("id=1,,2", {"ids": [1, 2]}),
    ],
)
async def test_good_values_are_converted(query: str, changed: dict[str, Any]) -> None:
    resp = await AsyncTestClient(router()).get("/notes?" + query)
    assert resp.status == 200, resp.text
    assert resp.json() == {**DEFAULTS, **changed}


@pytest.mark.parametrize(
    ("target", "field", "message"),
    [
        ("/notes?limit=0", "limit", "expected an integer between 1 and 100"),
        ("/notes?limit=101", "limit", "expected an integer between 1 and 100"),
        ("/notes?limit=ten", "limit", "expected an integer between 1 and 100"),
        ("/notes?limit=1.5", "limit", "expected an integer between 1 and 100"),
        ("/notes?limit=1_0", "limit", "expected an integer between 1 and 100"),
        ("/notes?limit=%201", "limit", "expected an integer between 1 and 100"),
        ("/notes?limit=%D9%A1", "limit", "expected an integer between 1 and 100"),  # Arabic 1
        ("/notes?limit=" + "9" * 5000, "limit", "expected an integer between 1 and 100"),
        (
            "/notes?limit=5&limit=6",
            "limit",
            "expected a single value (an integer between 1 and 100), got 2",
        ),
        ("/notes?page=0", "page", "expected an integer of at least 1"),
        ("/notes?score=nan", "score", "expected a number between 0 and 1"),
        ("/notes?score=inf", "score", "expected a number between 0 and 1"),
        ("/notes?score=1e999", "score", "expected a number between 0 and 1"),  # overflows to inf
        ("/notes?score=2", "score", "expected a number between 0 and 1"),
        ("/notes?score=0x1", "score", "expected a number between 0 and 1"),
        ("/notes?done=maybe", "done", "expected true or false"),
        ("/notes?done=t", "done", "expected true or false"),
        ("/notes?order=ASC", "order", "expected one of 'asc', 'desc'"),
        ("/notes?color=blue", "color", "expected one of 'red', 'green'"),
        ("/notes?tag=a&tag=b&tag=c&tag=d", "tag", "expected at most 3 values, got 4"),
        ("/notes?id=1,x", "id", "expected a list of integers; item 2 is not one"),
        ("/required", "n", "missing, expected an integer"),
        ("/required?n=", "n", "missing, expected an integer"),
        ("/required?n=1", "key", "missing, expected a list of UUID values"),
        ("/required?n=1&key=nope", "key", "expected a list of UUID values; item 1 is not one"),
    ],
)
async def test_a_bad_query_value_is_a_400_problem_naming_it(
    target: str, field: str, message: str
) -> None:
    resp = await AsyncTestClient(router()).get(target, headers=JSON)
    assert resp.status == 400
    assert resp.headers.get("content-type") == "application/problem+json"
    assert json.loads(resp.body) == {
        "type": "about:blank",
        "title": "Bad Request",
        "status": 400,
        "detail": f"query parameter {field!r}: {message}",
        "errors": [{"field": field, "message": message}],
    }
    # A client that does not ask for JSON reads the same sentence as text.
    text = await AsyncTestClient(router()).get(target)
    assert (text.status, text.text) == (400, f"query parameter {field!r}: {message}")


async def test_the_exact_bytes_of_a_bad_value() -> None:
    out = await AsyncTestClient(router()).raw(
        b"GET /notes?limit=500 HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n\r\n"
    )
    body = (
        b'{"type":"about:blank","title":"Bad Request","status":400,'
        b'"detail":"query parameter \'limit\': expected an integer between 1 and 100",'
        b'"errors":[{"field":"limit","message":"expected an integer between 1 and 100"}]}'
    )
    head, _, rest = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 Bad Request\r\nvary: Accept\r\n")
    assert b"\r\ncontent-type: application/problem+json\r\n" in head + b"\r\n"
    assert b"\r\ncontent-length: %d" % len(body) in head
    assert rest == body


async def test_the_value_is_never_echoed() -> None:
    resp = await AsyncTestClient(router()).get("/notes?limit=%3Cscript%3E", headers=JSON)
    assert resp.status == 400 and b"script" not in resp.body


# -- path parameters ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status", "body"),
    [
        ("/users/7/on", 200, {"id": 7, "flag": True}),
        ("/users/999/false", 200, {"id": 999, "flag": False}),
        ("/typed/10", 200, {"id": 10}),  # the router converted it; the getter checks the bound
    ],
)
async def test_path_parameters_have_typed_getters(
    path: str, status: int, body: dict[str, Any]
) -> None:
    resp = await AsyncTestClient(router()).get(path)
    assert (resp.status, resp.json()) == (status, body)


@pytest.mark.parametrize(
    ("path", "field", "message"),
    [
        ("/users/0/on", "id", "expected an integer between 1 and 999"),
        ("/users/abc/on", "id", "expected an integer between 1 and 999"),
        ("/users/7/perhaps", "flag", "expected true or false"),
        ("/typed/11", "id", "expected an integer of at most 10"),
    ],
)
async def test_a_bad_path_value_is_a_400_problem_naming_it(
    path: str, field: str, message: str
) -> None:
    resp = await AsyncTestClient(router()).get(path, headers=JSON)
    assert resp.status == 400
    assert json.loads(resp.body) == {
        "type": "about:blank",
        "title": "Bad Request",
        "status": 400,
        "detail": f"path parameter {field!r}: {message}",
        "errors": [{"field": field, "message": message}],
    }


async def test_a_converter_that_does_not_match_is_still_a_404() -> None:
    resp = await AsyncTestClient(router()).get("/typed/x", headers=JSON)
    assert resp.status == 404


async def test_a_parameter_the_route_lacks_is_a_bug_so_a_500() -> None:
    resp = await AsyncTestClient(router()).get("/ghost", headers=JSON)
    assert resp.status == 500


def test_params_are_read_only() -> None:
    params = Params({"id": 1})
    with pytest.raises(TypeError, match="read-only"):
        params["id"] = 2
    with pytest.raises(TypeError, match="read-only"):
        params.update(id=2)
    assert params == {"id": 1}
    # A request no router matched shares one empty Params: it must not be writable.
    empty = Request("GET", "/", Headers()).params
    assert isinstance(empty, Params) and not empty
    with pytest.raises(TypeError, match="read-only"):
        empty["x"] = 1


def test_choices_must_be_strings() -> None:
    with pytest.raises(TypeError, match="not one string"):
        Query("a=b").get_choice("a", "abc")
    with pytest.raises(TypeError, match="strings"):
        Query("a=b").get_choice("a", [1, 2])  # type: ignore[type-var]


def test_the_getters_raise_a_glitch_with_errors() -> None:
    with pytest.raises(Glitch) as caught:
        Query("limit=x").get_int("limit")
    glitch = caught.value
    assert (glitch.status, glitch.extensions) == (
        400,
        {"errors": [{"field": "limit", "message": "expected an integer"}]},
    )


# -- the ASGI adapter ---------------------------------------------------------------------------


async def test_the_asgi_adapter_answers_a_bad_value_the_same() -> None:
    sent = await asgi_messages(
        to_asgi(router()),
        "GET",
        "/notes",
        [(b"accept", b"application/json")],
        query=b"limit=0",
        host=b"x",
    )
    start, body = sent
    assert start["status"] == 400
    assert (b"content-type", b"application/problem+json") in start["headers"]
    assert json.loads(body["body"])["errors"] == [
        {"field": "limit", "message": "expected an integer between 1 and 100"}
    ]
