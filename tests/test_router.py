"""The router, on the wire: priority, decoding, 404/405/HEAD/OPTIONS, conflicts, shared data,
mounting, reverse routing, trailing slashes and introspection.

Every request goes through ``AsyncTestClient`` (h11 parse -> strict layer -> router -> writer), so
each assertion is about what a client receives. Registration errors and ``url_for`` are checked
directly: they happen before any request.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from tophat import Endpoint, Request, ResponseWriter, ResponseWritten
from tophat.middleware import chain
from tophat.router import Route, RouteError, Router
from tophat.testing import AsyncTestClient, TestResponse, parse_responses

# -- helpers ----------------------------------------------------------------------------------


def tagged(tag: str) -> Endpoint:
    """An endpoint that reports which route ran and what it saw, as JSON."""

    async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.insert_header("x-route", tag)
        w.set_json(
            {
                "route": tag,
                "params": {k: [type(v).__name__, str(v)] for k, v in req.params.items()},
                "path": req.path,
                "raw_path": req.raw_path,
                "root_path": req.root_path,
                "query": req.query_string,
            }
        )
        return await w.send()

    endpoint.__qualname__ = f"tagged_{tag}"
    return endpoint


def build(routes: list[tuple[str, str]], **kw: Any) -> Router:
    """A router with one ``tagged(pattern)`` endpoint per ``(method, pattern)``."""
    router = Router(**kw)
    for method, pattern in routes:
        router.at(method, pattern, tagged(f"{method} {pattern}"))
    return router


async def call(router: Router, path: str, method: str = "GET", **kw: Any) -> TestResponse:
    return await AsyncTestClient(router).request(method, path, **kw)


def allow_set(resp: TestResponse) -> set[str]:
    return {m.strip() for m in resp.headers["allow"].split(",")}


async def ok(req: Request, w: ResponseWriter) -> ResponseWritten:
    w.set_text("ok")
    return await w.send()


# -- priority and backtracking ----------------------------------------------------------------

PRIORITY_TABLE = [
    ("GET", "/users/new"),
    ("GET", "/users/:id"),
    ("GET", "/users/:id<int>"),
    ("GET", "/users/*rest"),
    ("GET", "/a/b/d"),
    ("GET", "/a/:x/c"),
    ("GET", "/n/:x<int>/b"),
    ("GET", "/n/:y/c"),
    ("GET", "/s/b/c"),
    ("GET", "/s/*rest"),
]


@pytest.mark.parametrize("order", ["as_written", "reversed"])
@pytest.mark.parametrize(
    ("path", "route", "params"),
    [
        ("/users/new", "GET /users/new", {}),
        ("/users/42", "GET /users/:id<int>", {"id": ["int", "42"]}),
        ("/users/ada", "GET /users/:id", {"id": ["str", "ada"]}),
        ("/users/ada/posts", "GET /users/*rest", {"rest": ["str", "ada/posts"]}),
        # A param never matches an empty segment; the catch-all does.
        ("/users/", "GET /users/*rest", {"rest": ["str", ""]}),
        # Backtracking: the static 'b' branch dead-ends at 'c', the param branch matches.
        ("/a/b/c", "GET /a/:x/c", {"x": ["str", "b"]}),
        ("/a/b/d", "GET /a/b/d", {}),
        ("/a/zz/c", "GET /a/:x/c", {"x": ["str", "zz"]}),
        # The typed branch dead-ends at 'c'; the untyped one takes the same segment.
        ("/n/1/c", "GET /n/:y/c", {"y": ["str", "1"]}),
        ("/n/1/b", "GET /n/:x<int>/b", {"x": ["int", "1"]}),
        # The static branch dead-ends; the catch-all takes the rest.
        ("/s/b/x", "GET /s/*rest", {"rest": ["str", "b/x"]}),
        ("/s/b/c", "GET /s/b/c", {}),
    ],
)
async def test_static_beats_typed_beats_param_beats_catchall_with_backtracking(
    order: str, path: str, route: str, params: dict[str, list[str]]
) -> None:
    table = PRIORITY_TABLE if order == "as_written" else PRIORITY_TABLE[::-1]
    resp = await call(build(table), path)
    assert resp.status == 200, resp.body
    assert resp.json()["route"] == route
    assert resp.json()["params"] == params


async def test_int_param_is_tried_before_uuid_param_before_plain_param() -> None:
    router = build([("GET", "/t/:s"), ("GET", "/t/:u<uuid>"), ("GET", "/t/:i<int>")])
    u = uuid.uuid4()
    assert (await call(router, "/t/12")).json()["route"] == "GET /t/:i<int>"
    # 32 digits are both an int and a hyphenless uuid: int ranks first.
    digits = "12345678123456781234567812345678"
    assert (await call(router, f"/t/{digits}")).json()["route"] == "GET /t/:i<int>"
    body = (await call(router, f"/t/{u}")).json()
    assert body["route"] == "GET /t/:u<uuid>"
    assert body["params"] == {"u": ["UUID", str(u)]}
    assert (await call(router, "/t/word")).json()["route"] == "GET /t/:s"


async def test_unmatched_path_is_404_not_found() -> None:
    router = build([("GET", "/users/:id"), ("GET", "/files/*rest")])
    for path in ("/nope", "/users", "/users/1/2", "/", "/file"):
        resp = await call(router, path)
        assert (resp.status, resp.body) == (404, b"Not Found"), path
        assert "allow" not in resp.headers


# -- percent-decoding -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("/units/kg%2Fs", "kg/s"),  # an encoded '/' stays inside the segment
        ("/units/kg%252Fs", "kg%2Fs"),  # decoded once, not twice
        ("/units/a%20b", "a b"),
        ("/units/caf%C3%A9", "café"),
        ("/units/%3A%2A", ":*"),
    ],
)
async def test_params_are_matched_raw_then_decoded_once(path: str, value: str) -> None:
    router = build([("GET", "/units/:u"), ("GET", "/units/:a/:b")])
    resp = await call(router, path)
    assert resp.json()["route"] == "GET /units/:u"
    assert resp.json()["params"] == {"u": ["str", value]}


async def test_catchall_value_is_decoded_per_segment_and_joined_with_slashes() -> None:
    resp = await call(build([("GET", "/files/*path")]), "/files/a%20b/c%3Fd/e")
    assert resp.json()["params"] == {"path": ["str", "a b/c?d/e"]}


async def test_catchall_matches_the_empty_rest_after_a_slash_but_not_without_it() -> None:
    router = build([("GET", "/files/*path")])
    resp = await call(router, "/files/")
    assert resp.json()["params"] == {"path": ["str", ""]}
    # Strict slashes: "/files" is another resource than "/files/".
    assert (await call(router, "/files")).status == 404


# -- typed parameters -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status", "params"),
    [
        ("/users/42", 200, {"id": ["int", "42"]}),
        ("/users/007", 200, {"id": ["int", "7"]}),
        ("/users/%34%32", 200, {"id": ["int", "42"]}),  # decoded before conversion
        ("/users/abc", 404, None),
        ("/users/-1", 404, None),
        ("/users/4.2", 404, None),
        ("/users/%D9%A1", 404, None),  # an Arabic-Indic digit is not an ASCII int
    ],
)
async def test_int_param_converts_or_404s(
    path: str, status: int, params: dict[str, list[str]] | None
) -> None:
    resp = await call(build([("GET", "/users/:id<int>")]), path)
    assert resp.status == status
    if params is not None:
        assert resp.json()["params"] == params


async def test_int_param_with_thousands_of_digits_is_a_clean_answer_not_a_500() -> None:
    # Python refuses int() of more than 4300 digits (ValueError); the path is well within the
    # 8 KiB target limit, so the router must answer 404 (no match) or 200 (converted) itself.
    resp = await call(build([("GET", "/users/:id<int>")]), "/users/" + "9" * 5000)
    assert resp.status in (200, 404), resp.body


async def test_uuid_param_converts_or_404s() -> None:
    router = build([("GET", "/o/:id<uuid>")])
    u = uuid.UUID("12345678-1234-5678-1234-567812345678")
    resp = await call(router, f"/o/{u}")
    assert resp.json()["params"] == {"id": ["UUID", str(u)]}
    assert (await call(router, "/o/not-a-uuid")).status == 404


def test_unknown_param_type_is_refused_at_registration() -> None:
    with pytest.raises(RouteError, match=r"unknown type <float>.*known: int, str, uuid"):
        Router().get("/a/:x<float>", ok)


@pytest.mark.parametrize("pattern", ["users", "/a/x:y", "/a/b*c", "/a/:", "/a/:1x", "/a/*"])
def test_malformed_patterns_are_refused_at_registration(pattern: str) -> None:
    with pytest.raises(RouteError, match=re.escape(repr(pattern))):
        Router().get(pattern, ok)


# -- registration API -------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"])
async def test_each_method_helper_registers_that_method(method: str) -> None:
    router = Router()
    helper: Callable[..., Any] = getattr(router, method.lower())
    route = helper("/thing", tagged(method))
    assert isinstance(route, Route) and (route.method, route.pattern) == (method, "/thing")
    resp = await call(router, "/thing", method)
    assert resp.status == 200
    assert resp.headers["x-route"] == method


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"])
async def test_each_method_helper_works_as_a_decorator(method: str) -> None:
    router = Router()
    helper: Callable[..., Any] = getattr(router, method.lower())
    endpoint = tagged(f"deco-{method}")
    decorated = helper("/d/:x", name=f"d-{method}")(endpoint)
    assert decorated is endpoint  # the decorator hands the function back unchanged
    resp = await call(router, "/d/1", method)
    assert resp.headers["x-route"] == f"deco-{method}"
    assert router.url_for(f"d-{method}", x=1) == "/d/1"


async def test_at_registers_any_method_token() -> None:
    router = Router()
    router.at("PURGE", "/cache/:key", tagged("purge"))
    resp = await call(router, "/cache/k1", "PURGE")
    assert resp.json()["params"] == {"key": ["str", "k1"]}


@pytest.mark.parametrize("method", ["", "GE T", "GET\r\n", "ü"])
def test_a_method_that_is_not_a_token_is_refused(method: str) -> None:
    with pytest.raises(RouteError, match="not an HTTP method token"):
        Router().at(method, "/x", ok)


@pytest.mark.parametrize("pattern", ["/files/*__rest", "/u/:__id", "/:__x/y"])
def test_parameter_names_starting_with_two_underscores_are_reserved(pattern: str) -> None:
    # mount() routes "*__rest": a user parameter of that name would vanish under a mount.
    with pytest.raises(RouteError, match="reserved"):
        Router().get(pattern, ok)
    Router().get(pattern.replace("__", "_"), ok)  # one underscore is a name like any other


async def test_params_reach_the_endpoint_as_a_mapping() -> None:
    seen: dict[str, Any] = {}

    async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
        seen.update(req.params)
        w.set_text(",".join(f"{k}={v}" for k, v in sorted(req.params.items())))
        return await w.send()

    router = Router()
    router.get("/orgs/:org/repos/:repo<int>/*path", endpoint)
    resp = await call(router, "/orgs/acme/repos/3/src/main.py")
    assert resp.body == b"org=acme,path=src/main.py,repo=3"
    assert seen == {"org": "acme", "repo": 3, "path": "src/main.py"}


# -- 405, HEAD, OPTIONS -----------------------------------------------------------------------


async def test_405_allow_lists_every_method_of_every_matching_pattern() -> None:
    router = build(
        [
            ("GET", "/users/new"),
            ("DELETE", "/users/:id"),
            ("POST", "/users/:id"),
            ("PATCH", "/users/*rest"),
            ("PUT", "/other/:id"),
        ]
    )
    resp = await call(router, "/users/new", "PUT")
    assert resp.status == 405
    assert allow_set(resp) == {"GET", "HEAD", "OPTIONS", "DELETE", "POST", "PATCH"}


async def test_405_allow_for_one_pattern() -> None:
    resp = await call(build([("POST", "/form"), ("PUT", "/form")]), "/form", "GET")
    assert resp.status == 405
    assert resp.headers["allow"] == "OPTIONS, POST, PUT"


async def test_method_backtracks_to_a_lower_pattern_that_has_it() -> None:
    # /users/new has no DELETE; /users/:id does and also matches the path.
    router = build([("GET", "/users/new"), ("DELETE", "/users/:id")])
    resp = await call(router, "/users/new", "DELETE")
    assert resp.json()["route"] == "DELETE /users/:id"
    assert resp.json()["params"] == {"id": ["str", "new"]}


@pytest.mark.parametrize("method", ["get", "Get", "gET"])
async def test_methods_are_case_sensitive(method: str, parser: str) -> None:
    if parser == "httptools":
        pytest.skip("llhttp refuses unregistered methods before routing (docs/parsers.md)")
    resp = await call(build([("GET", "/x")]), "/x", method)
    assert resp.status == 405
    assert allow_set(resp) == {"GET", "HEAD", "OPTIONS"}


async def test_head_on_a_get_route_sends_the_get_head_without_the_body() -> None:
    router = Router()

    @router.get("/doc")
    async def doc(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.insert_header("x-method-seen", req.method)
        w.set_text("twelve bytes")
        return await w.send()

    client = AsyncTestClient(router)
    get = await client.raw(b"GET /doc HTTP/1.1\r\nHost: t\r\n\r\n")
    head = await client.raw(b"HEAD /doc HTTP/1.1\r\nHost: t\r\n\r\n")

    def undated(raw: bytes) -> bytes:
        return re.sub(rb"date: [^\r]*\r\n", b"", raw)

    assert get.endswith(b"\r\n\r\ntwelve bytes")
    assert b"content-length: 12\r\n" in get
    # Same status line and headers (the GET endpoint ran, seeing HEAD), no body bytes at all.
    assert undated(head) == undated(get)[: -len(b"twelve bytes")].replace(
        b"x-method-seen: GET", b"x-method-seen: HEAD"
    )


async def test_an_explicit_head_route_beats_the_automatic_one() -> None:
    router = build([("GET", "/r"), ("HEAD", "/r")])
    resp = await call(router, "/r", "HEAD")
    assert resp.headers["x-route"] == "HEAD /r"


async def test_head_is_405_when_the_path_has_no_get() -> None:
    resp = await call(build([("POST", "/p")]), "/p", "HEAD")
    assert resp.status == 405
    assert resp.body == b""
    assert resp.headers["allow"] == "OPTIONS, POST"


async def test_automatic_options_answers_204_with_allow() -> None:
    router = build([("GET", "/users/new"), ("DELETE", "/users/:id")])
    resp = await call(router, "/users/new", "OPTIONS")
    assert resp.status == 204
    assert resp.body == b""
    assert allow_set(resp) == {"GET", "HEAD", "OPTIONS", "DELETE"}
    assert "x-route" not in resp.headers


async def test_a_registered_options_route_replaces_the_automatic_answer() -> None:
    router = build([("GET", "/c"), ("OPTIONS", "/c")])
    resp = await call(router, "/c", "OPTIONS")
    assert resp.status == 200
    assert resp.headers["x-route"] == "OPTIONS /c"


async def test_options_on_an_unmatched_path_is_404() -> None:
    resp = await call(build([("GET", "/c")]), "/d", "OPTIONS")
    assert resp.status == 404
    assert "allow" not in resp.headers


# -- conflicts at registration ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("/a/b", "/a/b"),
        ("/a/:x", "/a/:y"),
        ("/a/:x<int>", "/a/:y<int>"),
        ("/a/*x", "/a/*y"),
        ("/a/:x/b/*rest", "/a/:y/b/*path"),
    ],
)
def test_same_method_and_same_shape_twice_is_refused_naming_both(first: str, second: str) -> None:
    router = Router()
    router.get(first, tagged("first"))
    with pytest.raises(RouteError) as err:
        router.get(second, tagged("second"))
    assert repr(first) in str(err.value) and repr(second) in str(err.value)
    assert "GET" in str(err.value)


async def test_a_refused_route_leaves_the_table_unchanged() -> None:
    router = build([("GET", "/a/:x")])
    with pytest.raises(RouteError):
        router.get("/a/:y", tagged("second"))
    assert [r.pattern for r in router.routes()] == ["/a/:x"]
    resp = await call(router, "/a/1")
    assert resp.json()["params"] == {"x": ["str", "1"]}


async def test_same_shape_with_other_methods_or_other_types_is_no_conflict() -> None:
    router = build(
        [("GET", "/a/:x"), ("POST", "/a/:y"), ("GET", "/a/:n<int>"), ("GET", "/a/*rest")]
    )
    assert (await call(router, "/a/z")).json()["params"] == {"x": ["str", "z"]}
    assert (await call(router, "/a/z", "POST")).json()["params"] == {"y": ["str", "z"]}
    assert (await call(router, "/a/5")).json()["params"] == {"n": ["int", "5"]}
    assert (await call(router, "/a/5/6")).json()["params"] == {"rest": ["str", "5/6"]}


@pytest.mark.parametrize("pattern", ["/a/*rest/b", "/*x/:y", "/a/*x/*y"])
def test_a_catchall_that_is_not_last_is_refused(pattern: str) -> None:
    with pytest.raises(RouteError, match=r"catch-all .* must be the last segment"):
        Router().get(pattern, ok)


@pytest.mark.parametrize("pattern", ["/a/:x/:x", "/a/:x/b/:x<int>", "/a/:x/*x"])
def test_a_parameter_name_used_twice_in_one_pattern_is_refused(pattern: str) -> None:
    with pytest.raises(RouteError, match=r"\['x'\] used twice"):
        Router().get(pattern, ok)


def test_a_route_name_used_twice_is_refused_naming_the_holder() -> None:
    router = Router()
    router.get("/a", ok, name="home")
    with pytest.raises(RouteError, match=r"'home' is taken by GET '/a'"):
        router.post("/b", ok, name="home")


async def test_mounting_over_an_existing_route_is_refused_and_mounts_nothing() -> None:
    router = Router()
    router.get("/admin", ok)
    before = router.routes()
    with pytest.raises(RouteError, match="'/admin'"):
        router.mount("/admin", tagged("half-mounted"))
    # No half-registered mount left behind: the table and the wire are as before.
    assert (await call(router, "/admin/x")).status == 404
    assert router.routes() == before


# -- shared data ------------------------------------------------------------------------------


class Db:
    def __init__(self, name: str) -> None:
        self.name = name


class Cache:
    def __init__(self, size: int) -> None:
        self.size = size


def reports_data(*types: type) -> Endpoint:
    async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
        out: dict[str, Any] = {}
        for t in types:
            try:
                out[t.__name__] = vars(req.data(t))
            except LookupError:
                out[t.__name__] = None
        w.set_json(out)
        return await w.send()

    return endpoint


async def test_router_data_is_reachable_by_type_in_endpoints() -> None:
    router = Router()
    router.data(Db("main"))
    router.get("/", reports_data(Db, Cache))
    assert (await call(router, "/")).json() == {"Db": {"name": "main"}, "Cache": None}


async def test_router_data_as_type_registers_under_another_type() -> None:
    class Base:
        pass

    class Impl(Base):
        def __init__(self) -> None:
            self.kind = "impl"

    router = Router()
    router.data(Impl(), as_type=Base)
    router.get("/", reports_data(Base, Impl))
    assert (await call(router, "/")).json() == {"Base": {"kind": "impl"}, "Impl": None}


async def test_a_mounted_router_sees_outer_data_and_its_own_but_not_vice_versa() -> None:
    inner = Router()
    inner.data(Cache(10))
    inner.get("/both", reports_data(Db, Cache))
    outer = Router()
    outer.data(Db("main"))
    outer.mount("/api", inner)
    outer.get("/outer", reports_data(Db, Cache))
    resp = await call(outer, "/api/both")
    assert resp.json() == {"Db": {"name": "main"}, "Cache": {"size": 10}}
    assert (await call(outer, "/outer")).json() == {"Db": {"name": "main"}, "Cache": None}


async def test_inner_router_data_shadows_outer_data_of_the_same_type() -> None:
    inner = Router()
    inner.data(Db("inner"))
    inner.get("/", reports_data(Db))
    outer = Router()
    outer.data(Db("outer"))
    outer.mount("/in", inner)
    outer.get("/", reports_data(Db))
    assert (await call(outer, "/in")).json() == {"Db": {"name": "inner"}}
    assert (await call(outer, "/")).json() == {"Db": {"name": "outer"}}


# -- mounting ---------------------------------------------------------------------------------


def sets_header(name: str, value: str) -> Callable[[Endpoint], Endpoint]:
    def middleware(next_: Endpoint) -> Endpoint:
        async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
            w.insert_header(name, value)
            return await next_(req, w)

        return endpoint

    return middleware


def admin_app() -> Router:
    admin = Router()
    admin.get("/", tagged("admin-index"))
    admin.get("/users/:id", tagged("admin-user"))
    admin.at("PURGE", "/cache", tagged("admin-purge"))
    outer = Router()
    outer.mount("/admin", chain(sets_header("x-admin", "yes"))(admin))
    outer.get("/admin/health", tagged("outer-health"))
    outer.get("/", tagged("home"))
    return outer


@pytest.mark.parametrize("path", ["/admin", "/admin/"])
async def test_the_mount_prefix_itself_reaches_the_mounted_root(path: str) -> None:
    resp = await call(admin_app(), path)
    assert resp.status == 200
    assert resp.headers["x-admin"] == "yes"
    body = resp.json()
    assert (body["route"], body["path"], body["root_path"]) == ("admin-index", "/", "/admin")


async def test_a_mounted_router_sees_the_rest_of_the_path_and_the_prefix_as_root_path() -> None:
    resp = await call(admin_app(), "/admin/users/a%20b?x=1")
    assert resp.headers["x-admin"] == "yes"
    body = resp.json()
    assert body["route"] == "admin-user"
    assert (body["path"], body["raw_path"]) == ("/users/a b", "/users/a%20b")
    assert (body["root_path"], body["query"]) == ("/admin", "x=1")
    assert body["params"] == {"id": ["str", "a b"]}  # the mount's own capture is not leaked


@pytest.mark.parametrize("path", ["/administrator", "/adminx/users/1", "/admi"])
async def test_a_path_that_only_starts_with_the_prefix_text_is_not_mounted(path: str) -> None:
    resp = await call(admin_app(), path)
    assert resp.status == 404
    assert "x-admin" not in resp.headers


async def test_a_404_inside_the_mount_passes_through_its_middleware() -> None:
    resp = await call(admin_app(), "/admin/nope")
    assert resp.status == 404
    assert resp.headers["x-admin"] == "yes"


async def test_an_outer_route_under_the_prefix_beats_the_mount() -> None:
    resp = await call(admin_app(), "/admin/health")
    assert resp.headers["x-route"] == "outer-health"
    assert "x-admin" not in resp.headers


async def test_head_through_a_mount_reaches_the_mounted_get() -> None:
    resp = await call(admin_app(), "/admin/users/1", "HEAD")
    assert (resp.status, resp.body) == (200, b"")
    assert resp.headers["x-route"] == "admin-user"


async def test_a_mount_forwards_any_method() -> None:
    # Router.mount: "Send every request under prefix (any method) to endpoint".
    resp = await call(admin_app(), "/admin/cache", "PURGE")
    assert resp.status == 200, resp.headers.get("allow")
    assert resp.headers["x-route"] == "admin-purge"


async def test_a_plain_endpoint_can_be_mounted() -> None:
    outer = Router()
    outer.mount("/static/", tagged("files"))  # a trailing slash on the prefix is ignored
    body = (await call(outer, "/static/css/site.css")).json()
    assert (body["path"], body["root_path"]) == ("/css/site.css", "/static")


async def test_nested_mounts_accumulate_root_path() -> None:
    v1 = Router()
    v1.get("/items/:id<int>", tagged("item"))
    api = Router()
    api.mount("/v1", v1)
    outer = Router()
    outer.mount("/api", api)
    body = (await call(outer, "/api/v1/items/3")).json()
    assert (body["path"], body["root_path"]) == ("/items/3", "/api/v1")
    assert body["params"] == {"id": ["int", "3"]}


@pytest.mark.parametrize("prefix", ["admin", "/a/:x", "/files/*rest"])
def test_a_mount_prefix_must_be_a_static_absolute_path(prefix: str) -> None:
    with pytest.raises(RouteError, match="mount prefix"):
        Router().mount(prefix, ok)


# -- reverse routing --------------------------------------------------------------------------


def named_router() -> Router:
    router = Router()
    router.get("/", tagged("home"), name="home")
    router.get("/users/:id<int>", tagged("user"), name="user")
    router.get("/u/:name/posts/:slug", tagged("post"), name="post")
    router.get("/files/*path", tagged("files"), name="files")
    return router


@pytest.mark.parametrize(
    ("name", "params", "url"),
    [
        ("home", {}, "/"),
        ("user", {"id": 7}, "/users/7"),
        ("post", {"name": "ada", "slug": "hello"}, "/u/ada/posts/hello"),
        ("post", {"name": "a/b", "slug": "x y?z"}, "/u/a%2Fb/posts/x%20y%3Fz"),
        ("post", {"name": "50%", "slug": "a#b"}, "/u/50%25/posts/a%23b"),
        ("files", {"path": "css/site main.css"}, "/files/css/site%20main.css"),
        ("files", {"path": "a/b?c"}, "/files/a/b%3Fc"),
        ("files", {"path": ""}, "/files/"),
    ],
)
def test_url_for_builds_the_path_percent_encoding_params(
    name: str, params: dict[str, Any], url: str
) -> None:
    assert named_router().url_for(name, **params) == url


@pytest.mark.parametrize(
    ("name", "params", "expected"),
    [
        ("post", {"name": "a/b c", "slug": "?x=1&y"}, {"name": "a/b c", "slug": "?x=1&y"}),
        ("files", {"path": "dir one/f?.txt"}, {"path": "dir one/f?.txt"}),
        ("user", {"id": 12}, {"id": 12}),
    ],
)
async def test_url_for_round_trips_through_the_router(
    name: str, params: dict[str, Any], expected: dict[str, Any]
) -> None:
    router = named_router()
    resp = await call(router, router.url_for(name, **params))
    assert resp.json()["route"] == name
    assert resp.json()["params"] == {k: [type(v).__name__, str(v)] for k, v in expected.items()}


def test_url_for_refuses_unknown_names_and_wrong_params() -> None:
    router = named_router()
    with pytest.raises(KeyError):
        router.url_for("nope")
    with pytest.raises(ValueError, match=r"missing \['slug'\]"):
        router.url_for("post", name="a")
    with pytest.raises(ValueError, match=r"unexpected \['extra'\]"):
        router.url_for("user", id=1, extra=2)


# -- trailing slashes -------------------------------------------------------------------------


async def test_trailing_slash_is_strict_by_default() -> None:
    router = build([("GET", "/users"), ("GET", "/docs/")])
    for path in ("/users/", "/docs"):
        resp = await call(router, path)
        assert resp.status == 404, path
        assert "location" not in resp.headers


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4, literally (urllib's urljoin drops empty segments; browsers don't)."""
    out: list[str] = []
    while path:
        if path.startswith("../"):
            path = path[3:]
        elif path.startswith("./"):
            path = path[2:]
        elif path.startswith("/./") or path == "/.":
            path = "/" + path[3:]
        elif path.startswith("/../") or path == "/..":
            path = "/" + path[4:]
            if out:
                out.pop()
        elif path in (".", ".."):
            path = ""
        else:
            cut = path.find("/", 1)
            segment = path if cut < 0 else path[:cut]
            out.append(segment)
            path = path[len(segment) :]
    return "".join(out)


def resolve(base_path: str, location: str) -> str:
    """Resolve a relative-path reference against a request path (RFC 3986 §5.2.2-5.2.3)."""
    assert not location.startswith("/") and ":" not in location.split("/", 1)[0]
    ref, sep, query = location.partition("?")
    merged = base_path[: base_path.rfind("/") + 1] + ref
    return _remove_dot_segments(merged) + sep + query


@pytest.mark.parametrize(
    ("method", "path", "status", "target"),
    [
        ("GET", "/users/", 301, "/users"),
        ("HEAD", "/users/", 301, "/users"),
        ("GET", "/users/?page=2&q=a%20b", 301, "/users?page=2&q=a%20b"),
        ("POST", "/users/", 308, "/users"),
        ("PUT", "/users/", 308, "/users"),
        ("GET", "/docs", 301, "/docs/"),
        ("GET", "/docs?x=1", 301, "/docs/?x=1"),
        ("DELETE", "/docs", 308, "/docs/"),
        ("GET", "/deep/er/path/", 301, "/deep/er/path"),
        ("GET", "/p/one", 301, "/p/one/"),
    ],
)
async def test_redirect_slashes_sends_a_relative_location_to_the_other_form(
    method: str, path: str, status: int, target: str
) -> None:
    routes = [("GET", "/users"), ("GET", "/docs/"), ("GET", "/deep/er/path"), ("GET", "/p/:x/")]
    routes += [(m, p) for m in ("POST", "PUT", "DELETE") for _, p in routes]
    router = build(routes, redirect_slashes=True)
    resp = await call(router, path, method)
    assert resp.status == status
    location = resp.headers["location"]
    assert not location.startswith("/"), location  # relative: right under any root_path
    assert resolve(path.partition("?")[0], location) == target


async def test_redirect_slashes_leaves_matching_paths_alone() -> None:
    router = build([("GET", "/users"), ("GET", "/users/")], redirect_slashes=True)
    assert (await call(router, "/users/")).json()["route"] == "GET /users/"
    assert (await call(router, "/users")).json()["route"] == "GET /users"


async def test_redirect_slashes_404s_when_neither_form_matches() -> None:
    resp = await call(build([("GET", "/users")], redirect_slashes=True), "/other/")
    assert resp.status == 404
    assert "location" not in resp.headers


async def test_redirect_inside_a_mount_is_relative_to_the_mounted_path() -> None:
    inner = build([("GET", "/list")], redirect_slashes=True)
    outer = Router()
    outer.mount("/admin", inner)
    resp = await call(outer, "/admin/list/")
    assert resp.status == 301
    assert resolve("/admin/list/", resp.headers["location"]) == "/admin/list"


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")


@pytest.mark.parametrize(
    ("routes", "path"),
    [
        (["//evil.com"], "//evil.com/"),
        (["//evil.com/"], "//evil.com"),
        (["/:x"], "/\\evil.com/"),
        (["/:x/"], "/\\evil.com"),
        (["/:x/:y"], "/\\/evil.com/"),
        (["/a/:x/"], "/a/http:evil"),
        (["/:x/"], "/http:evil"),
        (["/:x"], "/javascript:alert(1)/"),
        (["/:x"], "/%2F%2Fevil.com/"),
        (["/a"], "/a//"),
        (["/a/"], "/a//"),
        (["/a/b"], "/a/b//"),
    ],
)
async def test_a_slash_redirect_never_leaves_the_host_and_lands_on_the_route(
    routes: list[str], path: str
) -> None:
    router = build([("GET", p) for p in routes], redirect_slashes=True)
    resp = await call(router, path)
    if resp.status == 404:
        return  # refusing to redirect is always safe
    assert resp.status == 301
    location = resp.headers["location"]
    # Not scheme-relative (//host), not a backslash browsers read as '/', not absolute.
    assert not location.startswith(("/", "\\")), location
    assert not _SCHEME.match(location), location
    # And following it (RFC 3986 resolution, as a browser does) reaches a route.
    followed = await call(router, resolve(path, location))
    assert followed.status == 200, (path, location, resolve(path, location))


async def test_options_asterisk_is_answered_cleanly_with_redirect_slashes_on() -> None:
    # "OPTIONS *" has no '/' in its target; no redirect can apply to it.
    for redirect_slashes in (False, True):
        router = build([("GET", "/x")], redirect_slashes=redirect_slashes)
        resp = await call(router, "*", "OPTIONS")
        assert resp.status in (200, 204, 404), (redirect_slashes, resp.status)
        assert "location" not in resp.headers


# -- introspection ----------------------------------------------------------------------------


def test_routes_lists_every_route_in_registration_order() -> None:
    router = named_router()
    router.post("/users/:id<int>", ok)
    routes = router.routes()
    assert [(r.method, r.pattern, r.name) for r in routes] == [
        ("GET", "/", "home"),
        ("GET", "/users/:id<int>", "user"),
        ("GET", "/u/:name/posts/:slug", "post"),
        ("GET", "/files/*path", "files"),
        ("POST", "/users/:id<int>", None),
    ]
    assert routes[1].param_names == ("id",)
    assert routes[4].endpoint is ok
    routes.clear()  # a copy: the router's table is untouched
    assert len(router.routes()) == 5


def test_describe_shows_one_readable_line_per_route_and_mount() -> None:
    router = named_router()
    router.post("/users/:id<int>", ok)
    router.mount("/admin", tagged("admin"))
    lines = router.describe().splitlines()
    assert len(lines) == 6
    expected = [
        ("GET", "/", "tagged_home", "(name=home)"),
        ("GET", "/users/:id<int>", "tagged_user", "(name=user)"),
        ("GET", "/u/:name/posts/:slug", "tagged_post", "(name=post)"),
        ("GET", "/files/*path", "tagged_files", "(name=files)"),
        ("POST", "/users/:id<int>", "ok", None),
    ]
    for line, (method, pattern, target, name) in zip(lines, expected, strict=False):
        words = line.split()
        assert words[:4] == [method, pattern, "->", target], line
        assert (words[4] if len(words) > 4 else None) == name, line
    assert lines[5].split() == ["*", "/admin/...", "->", "mount", "tagged_admin"]


async def test_the_router_is_itself_an_endpoint_for_the_wire() -> None:
    # One connection, two pipelined requests: the router answers each in order.
    router = build([("GET", "/a"), ("POST", "/b")])
    out = await AsyncTestClient(router).raw(
        b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n"
        b"POST /b HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"
    )
    first, second = parse_responses(out, ["GET", "POST"])
    assert (first.headers["x-route"], second.headers["x-route"]) == ("GET /a", "POST /b")


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("POST", "/admin/health", "GET, HEAD, OPTIONS"),  # an outer route's path under a mount
        ("DELETE", "/", "GET, HEAD, OPTIONS"),
    ],
)
async def test_a_mount_does_not_take_the_path_of_a_route_with_other_methods(
    method: str, path: str, allow: str
) -> None:
    # The path is the route's: a wrong method gets its 405, not the mount (which would turn
    # PUT /api/notes into the front-end's 404 when a single page is mounted at "/").
    resp = await call(admin_app(), path, method)
    assert resp.status == 405
    assert resp.headers["allow"] == allow
    assert "x-admin" not in resp.headers


async def test_a_mount_at_the_root_leaves_405_to_the_routes_it_sits_under() -> None:
    router = Router()
    router.get("/api/notes", tagged("list"))
    router.post("/api/notes", tagged("create"))
    router.mount("/", tagged("front-end"))
    resp = await call(router, "/api/notes", "PUT")
    assert (resp.status, resp.headers["allow"]) == (405, "GET, HEAD, OPTIONS, POST")
    assert (await call(router, "/api/other", "PUT")).headers["x-route"] == "front-end"
    assert (await call(router, "/index.html")).headers["x-route"] == "front-end"
