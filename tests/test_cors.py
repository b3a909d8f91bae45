"""CORS on the wire, per the Fetch standard (§3.2): actual requests, preflights, Vary, refusals,
configuration checks, and CORS together with identity cookies."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest

from examples import cors as cors_example
from tophat import Endpoint, Glitch, Request, ResponseWriter, ResponseWritten
from tophat.middleware import chain
from tophat.middleware.cors import cors
from tophat.middleware.identity import Identity
from tophat.router import Router
from tophat.testing import AsyncTestClient, TestResponse

APP = "https://app.example"
DEV = "http://localhost:3000"
EVIL = "https://evil.example"

# The configuration most tests use: two origins, credentials, one custom header each way.
CONFIG: dict[str, Any] = {
    "allow_origins": [APP, DEV],
    "allow_methods": ["GET", "PUT"],
    "allow_headers": ["x-token", "content-type"],
    "expose_headers": ["x-total"],
    "allow_credentials": True,
    "max_age": 600,
}


class Api:
    """A small router behind ``cors(**config)`` that counts the requests reaching it."""

    def __init__(self, **config: Any) -> None:
        self.calls: list[tuple[str, str]] = []
        router = Router()
        router.get("/items", self.items)
        router.put("/items", self.items)
        router.post("/items", self.items)
        router.get("/missing", self.missing)
        router.get("/boom", self.boom)
        router.get("/negotiated", self.negotiated)
        self.app = chain(cors(**config))(router)

    async def items(self, req: Request, w: ResponseWriter) -> ResponseWritten:
        self.calls.append((req.method, req.path))
        w.insert_header("x-total", "1")
        w.set_text("items")
        return await w.send()

    async def missing(self, req: Request, w: ResponseWriter) -> ResponseWritten:
        self.calls.append((req.method, req.path))
        raise Glitch(404, "no such item")

    async def boom(self, req: Request, w: ResponseWriter) -> ResponseWritten:
        self.calls.append((req.method, req.path))
        raise RuntimeError("a bug")

    async def negotiated(self, req: Request, w: ResponseWriter) -> ResponseWritten:
        # An endpoint whose body depends on Accept-Encoding says so, the ordinary way.
        self.calls.append((req.method, req.path))
        w.insert_header("vary", "Accept-Encoding")
        w.set_text("plain")
        return await w.send()

    async def request(
        self, method: str, path: str, headers: dict[str, str] | None = None
    ) -> TestResponse:
        return await AsyncTestClient(self.app).request(method, path, headers=headers or {})

    async def preflight(
        self,
        origin: str = APP,
        method: str = "PUT",
        headers: str | None = None,
        path: str = "/items",
        extra: dict[str, str] | None = None,
    ) -> TestResponse:
        h = {"origin": origin, "access-control-request-method": method}
        if headers is not None:
            h["access-control-request-headers"] = headers
        h.update(extra or {})
        return await self.request("OPTIONS", path, h)


def cors_headers(resp: TestResponse) -> dict[str, str]:
    return {n.lower(): v for n, v in resp.headers if n.lower().startswith("access-control-")}


def vary(resp: TestResponse) -> list[str]:
    return [v.lower() for v in resp.headers.get_list("vary")]


# -- actual (non-preflight) requests -------------------------------------------------------------


async def test_allowed_origin_gets_its_own_origin_credentials_and_exposed_headers() -> None:
    api = Api(**CONFIG)
    resp = await api.request("GET", "/items", {"origin": APP})
    assert (resp.status, resp.text) == (200, "items")
    assert cors_headers(resp) == {
        "access-control-allow-origin": APP,
        "access-control-allow-credentials": "true",
        "access-control-expose-headers": "x-total",
    }
    assert resp.headers["x-total"] == "1"
    assert "origin" in vary(resp)


async def test_each_allowed_origin_is_echoed_and_never_star_with_credentials() -> None:
    api = Api(**CONFIG)
    for origin in (APP, DEV):
        resp = await api.request("GET", "/items", {"origin": origin})
        assert resp.headers.get_all("access-control-allow-origin") == [origin]


@pytest.mark.parametrize(("path", "status"), [("/missing", 404), ("/boom", 500)])
async def test_cors_headers_are_kept_on_glitch_and_500_responses(
    path: str, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    api = Api(**CONFIG)
    with caplog.at_level(logging.CRITICAL, logger="tophat"):
        resp = await api.request("GET", path, {"origin": APP})
    assert resp.status == status
    assert cors_headers(resp) == {
        "access-control-allow-origin": APP,
        "access-control-allow-credentials": "true",
        "access-control-expose-headers": "x-total",
    }
    assert "origin" in vary(resp)
    assert b"a bug" not in resp.body  # the cause stays in the log


async def test_wildcard_without_credentials_allows_any_origin_with_star() -> None:
    api = Api(allow_origins="*")
    resp = await api.request("GET", "/items", {"origin": EVIL})
    assert resp.headers.get_all("access-control-allow-origin") == ["*"]
    assert "access-control-allow-credentials" not in resp.headers


async def test_disallowed_origin_passes_through_without_cors_headers() -> None:
    # A same-origin form POST carries Origin too: it must reach the endpoint, never a 4xx.
    api = Api(**CONFIG)
    resp = await api.request("POST", "/items", {"origin": EVIL})
    assert (resp.status, resp.text) == (200, "items")
    assert api.calls == [("POST", "/items")]
    assert cors_headers(resp) == {}


async def test_refused_origin_response_still_varies_on_origin() -> None:
    api = Api(**CONFIG)
    resp = await api.request("GET", "/items", {"origin": EVIL})
    assert "origin" in vary(resp)


async def test_request_without_origin_varies_on_origin_when_origins_are_listed() -> None:
    # Otherwise a cache could serve this header-less answer to app.example's fetch.
    api = Api(**CONFIG)
    resp = await api.request("GET", "/items")
    assert (resp.status, resp.text) == (200, "items")
    assert cors_headers(resp) == {}
    assert "origin" in vary(resp)


async def test_vary_preset_by_an_outer_middleware_is_merged_with_origin() -> None:
    def compress(next_: Endpoint) -> Endpoint:
        async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
            w.insert_header("Vary", "Accept-Encoding")
            return await next_(req, w)

        return endpoint

    api = Api(**CONFIG)
    app = chain(compress)(api.app)
    resp = await AsyncTestClient(app).get("/items", headers={"origin": APP})
    assert resp.headers.get_all("vary") == ["Accept-Encoding, Origin"]


async def test_vary_appended_by_the_endpoint_is_kept_with_origin() -> None:
    async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.append_header("Vary", "Accept-Language")
        return await w.send()

    resp = await AsyncTestClient(chain(cors(**CONFIG))(endpoint)).get("/", headers={"origin": APP})
    assert {"origin", "accept-language"} <= set(vary(resp))


async def test_vary_set_by_the_endpoint_is_merged_with_origin() -> None:
    # The endpoint sets Vary with the ordinary insert_header; the response still depends on
    # Origin, so the final Vary must name both (the requirement: endpoint values are merged).
    api = Api(**CONFIG)
    resp = await api.request("GET", "/negotiated", {"origin": APP})
    assert resp.headers["access-control-allow-origin"] == APP
    assert {"origin", "accept-encoding"} <= set(vary(resp))


# -- preflights ----------------------------------------------------------------------------------


async def test_allowed_preflight_is_answered_204_without_calling_the_endpoint() -> None:
    api = Api(**CONFIG)
    resp = await api.preflight(APP, "PUT", "x-token")
    assert (resp.status, resp.body) == (204, b"")
    assert api.calls == []
    assert cors_headers(resp) == {
        "access-control-allow-origin": APP,
        "access-control-allow-credentials": "true",
        "access-control-allow-methods": "GET, PUT",
        "access-control-allow-headers": "x-token",
        "access-control-max-age": "600",
    }


async def test_preflight_varies_on_origin_and_the_request_method_and_headers() -> None:
    api = Api(**CONFIG)
    for resp in (await api.preflight(APP, "PUT", "x-token"), await api.preflight(EVIL, "PUT")):
        assert {
            "origin",
            "access-control-request-method",
            "access-control-request-headers",
        } <= set(vary(resp))


async def test_preflight_request_headers_match_case_insensitively_and_trimmed() -> None:
    api = Api(**CONFIG)
    resp = await api.preflight(APP, "PUT", " X-Token ,content-type")
    assert resp.status == 204
    allowed = [h.strip().lower() for h in resp.headers["access-control-allow-headers"].split(",")]
    assert sorted(allowed) == ["content-type", "x-token"]


async def test_preflight_max_age_is_omitted_when_none() -> None:
    api = Api(**{**CONFIG, "max_age": None})
    resp = await api.preflight(APP, "GET")
    assert resp.status == 204
    assert "access-control-max-age" not in resp.headers


@pytest.mark.parametrize(
    ("origin", "method", "headers"),
    [
        (EVIL, "PUT", None),
        (APP, "DELETE", None),
        (APP, "put", None),  # methods are case-sensitive (RFC 9110 §9.1)
        (APP, "PUT", "x-token, x-secret"),
        ("null", "GET", None),
    ],
    ids=["origin", "method", "method-case", "header", "opaque-origin"],
)
async def test_refused_preflight_is_a_short_403_without_cors_headers(
    origin: str, method: str, headers: str | None
) -> None:
    api = Api(**CONFIG)
    resp = await api.preflight(origin, method, headers)
    assert resp.status == 403
    assert api.calls == []
    assert cors_headers(resp) == {}
    assert len(resp.body) < 64
    # The reason says nothing about what *is* allowed.
    body = resp.text.lower()
    for configured in ("app.example", "localhost", "get", "put", "x-token", "content-type"):
        assert configured not in body
    assert "origin" in vary(resp)


async def test_private_network_preflight_is_refused_by_default() -> None:
    api = Api(**CONFIG)
    resp = await api.preflight(APP, "PUT", extra={"access-control-request-private-network": "true"})
    assert resp.status == 403
    assert cors_headers(resp) == {}
    assert api.calls == []


async def test_private_network_preflight_is_allowed_when_enabled() -> None:
    api = Api(**CONFIG, allow_private_network=True)
    resp = await api.preflight(APP, "PUT", extra={"access-control-request-private-network": "true"})
    assert resp.status == 204
    assert resp.headers.get_all("access-control-allow-private-network") == ["true"]
    assert resp.headers["access-control-allow-origin"] == APP
    # An ordinary preflight does not get the private-network grant.
    plain = await api.preflight(APP, "PUT")
    assert "access-control-allow-private-network" not in plain.headers


async def test_options_without_request_method_reaches_the_router() -> None:
    api = Api(**CONFIG)
    resp = await api.request("OPTIONS", "/items", {"origin": APP})
    assert resp.status == 204
    assert resp.headers["allow"] == "GET, HEAD, OPTIONS, POST, PUT"
    assert resp.headers["access-control-allow-origin"] == APP  # an actual request, allowed
    assert "access-control-allow-methods" not in resp.headers


async def test_options_with_request_method_but_no_origin_reaches_the_router() -> None:
    api = Api(**CONFIG)
    resp = await api.request("OPTIONS", "/items", {"access-control-request-method": "PUT"})
    assert resp.status == 204
    assert resp.headers["allow"] == "GET, HEAD, OPTIONS, POST, PUT"
    assert cors_headers(resp) == {}


async def test_any_method_with_credentials_echoes_the_requested_method_not_star() -> None:
    # Fetch §3.2.3: with credentials, "*" in Access-Control-Allow-Methods/-Headers is literal.
    api = Api(allow_origins=[APP], allow_methods="*", allow_headers="*", allow_credentials=True)
    resp = await api.preflight(APP, "PATCH", "x-anything, x-other")
    assert resp.status == 204
    assert resp.headers["access-control-allow-methods"] == "PATCH"
    assert resp.headers["access-control-allow-headers"] == "x-anything, x-other"


async def test_wildcard_preflight_allows_any_origin_with_star() -> None:
    api = Api(allow_origins="*", allow_methods=["PUT"], allow_headers=["x-token"])
    resp = await api.preflight(EVIL, "PUT", "x-token")
    assert resp.status == 204
    assert resp.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in resp.headers


# -- origin matching -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("regex", "origin", "allowed"),
    [
        (r"https://.*\.example\.com", "https://a.example.com", True),
        (r"https://.*\.example\.com", "https://evil.com.attacker.net", False),
        (r"https://.*\.example\.com", "https://a.example.com.evil.net", False),
        (r"https://.*\.example\.com", "http://a.example.com", False),
        (r"example\.com", "https://example.com.evil.net", False),
        (r"example\.com", "https://example.com", False),
        (r"https://(app|admin)\.example\.com", "https://admin.example.com", True),
    ],
)
async def test_origin_regex_must_match_the_whole_origin(
    regex: str, origin: str, allowed: bool
) -> None:
    api = Api(allow_origin_regex=regex, allow_methods=["PUT"])
    actual = await api.request("GET", "/items", {"origin": origin})
    preflight = await api.preflight(origin, "PUT")
    if allowed:
        assert actual.headers.get("access-control-allow-origin") == origin
        assert preflight.status == 204
    else:
        assert "access-control-allow-origin" not in actual.headers
        assert preflight.status == 403


async def test_origin_predicate_decides_for_each_origin() -> None:
    asked: list[str] = []

    def trusted(origin: str) -> bool:
        asked.append(origin)
        return origin.endswith(".trusted.example")

    api = Api(allow_origin_predicate=trusted, allow_methods=["PUT"])
    ok = await api.request("GET", "/items", {"origin": "https://a.trusted.example"})
    assert ok.headers.get("access-control-allow-origin") == "https://a.trusted.example"
    assert (await api.preflight("https://b.trusted.example", "PUT")).status == 204
    refused = await api.request("GET", "/items", {"origin": EVIL})
    assert "access-control-allow-origin" not in refused.headers
    assert (await api.preflight(EVIL, "PUT")).status == 403
    assert "https://a.trusted.example" in asked and EVIL in asked


async def test_listed_origins_are_compared_case_insensitively() -> None:
    # Browsers serialize the origin in lower case; a configured "https://App.Example" matches.
    api = Api(allow_origins=["https://App.Example"])
    resp = await api.request("GET", "/items", {"origin": APP})
    assert resp.headers.get("access-control-allow-origin") == APP


async def test_listed_origins_regex_and_predicate_combine() -> None:
    api = Api(
        allow_origins=[APP],
        allow_origin_regex=r"https://[a-z]+\.staging\.example",
        allow_origin_predicate=lambda o: o == "https://partner.example",
    )
    for origin in (APP, "https://web.staging.example", "https://partner.example"):
        resp = await api.request("GET", "/items", {"origin": origin})
        assert resp.headers.get("access-control-allow-origin") == origin
    resp = await api.request("GET", "/items", {"origin": EVIL})
    assert "access-control-allow-origin" not in resp.headers


# -- configuration refused at construction -------------------------------------------------------


@pytest.mark.parametrize("origins", ["*", ["*"], [APP, "*"]])
def test_credentials_with_a_wildcard_origin_are_refused(origins: Any) -> None:
    with pytest.raises(ValueError, match="list the allowed origins"):
        cors(allow_origins=origins, allow_credentials=True)


@pytest.mark.parametrize(
    "origin", ["https://app.example/", "https://app.example/api", "app.example", "https://"]
)
def test_origin_with_a_path_trailing_slash_or_no_scheme_is_refused(origin: str) -> None:
    with pytest.raises(ValueError, match="no path or trailing slash"):
        cors(allow_origins=[origin])


def test_exposing_all_headers_with_credentials_is_refused() -> None:
    with pytest.raises(ValueError, match="list the headers to expose"):
        cors(allow_origins=[APP], expose_headers="*", allow_credentials=True)


def test_a_single_origin_string_instead_of_a_list_is_refused() -> None:
    # "https://app.example" iterated would be a list of characters.
    with pytest.raises(ValueError, match="list of origins"):
        cors(allow_origins=APP)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"allow_origin_regex": r".*"}, "null"),
        ({"max_age": -1}, "max_age"),
        ({"allow_methods": ["GET PUT"]}, "allow_methods"),
        ({"allow_headers": ["x token"]}, "allow_headers"),
    ],
)
def test_other_malformed_configurations_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        cors(**kwargs)


# -- the example app, and CORS together with identity --------------------------------------------


async def test_cors_example_lets_the_app_read_items_and_the_total() -> None:
    resp = await AsyncTestClient(cors_example.app).get("/items", headers={"origin": APP})
    assert resp.status == 200
    assert resp.json() == {"1": "hat"}
    assert resp.headers["x-total"] == "1"
    assert cors_headers(resp) == {
        "access-control-allow-origin": APP,
        "access-control-allow-credentials": "true",
        "access-control-expose-headers": "x-total",
    }


async def test_cors_example_preflights_then_accepts_a_put(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cors_example, "ITEMS", {1: "hat"})
    client = AsyncTestClient(cors_example.app)
    pre = await client.request(
        "OPTIONS",
        "/items/1",
        headers={
            "origin": DEV,
            "access-control-request-method": "PUT",
            "access-control-request-headers": "x-token",
        },
    )
    assert pre.status == 204
    assert cors_headers(pre) == {
        "access-control-allow-origin": DEV,
        "access-control-allow-credentials": "true",
        "access-control-allow-methods": "GET, PUT",
        "access-control-allow-headers": "x-token",
        "access-control-max-age": "600",
    }
    put = await client.request(
        "PUT", "/items/1", headers={"origin": DEV, "x-token": "t"}, body="cap"
    )
    assert put.status == 204
    assert put.headers["access-control-allow-origin"] == DEV
    assert cors_example.ITEMS == {1: "cap"}


async def test_cors_example_refuses_a_delete_preflight_and_a_foreign_origin() -> None:
    client = AsyncTestClient(cors_example.app)
    for origin, method in ((APP, "DELETE"), (EVIL, "PUT")):
        resp = await client.request(
            "OPTIONS",
            "/items/1",
            headers={"origin": origin, "access-control-request-method": method},
        )
        assert resp.status == 403
        assert cors_headers(resp) == {}


KEY = "9d8c7b6a5f4e3d2c1b0a-cors-identity-test-key-0123456789"


def credentialed_api() -> Endpoint:
    """An API that pages on APP call with cookies: /login is open, /me needs a login."""
    identity = Identity(KEY, cookie_name="auth", same_site="none", partitioned=True)

    async def login(req: Request, w: ResponseWriter) -> ResponseWritten:
        identity.set_auth_token("ada", w)
        return await w.send()

    async def me(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.set_text(f"you are {identity.authorized_user(req)}")
        return await w.send()

    router = Router()
    router.post("/login", login)
    private = Router()
    private.get("/", me)
    router.mount("/me", chain(identity.required)(private))
    return chain(
        cors(
            allow_origins=[APP],
            allow_methods=["GET", "POST"],
            allow_headers=["content-type"],
            allow_credentials=True,
        ),
        identity.middleware,
    )(router)


def cookie_pair(resp: TestResponse) -> str:
    return resp.headers["set-cookie"].split(";", 1)[0]


async def test_credentialed_cross_origin_request_is_recognised_and_readable() -> None:
    app = credentialed_api()
    client = AsyncTestClient(app)
    login = await client.post("/login", headers={"origin": APP})
    assert login.headers["access-control-allow-credentials"] == "true"
    assert "SameSite=None" in login.headers["set-cookie"]
    assert "Partitioned" in login.headers["set-cookie"]

    resp = await client.get("/me", headers={"origin": APP, "cookie": cookie_pair(login)})
    assert (resp.status, resp.text) == (200, "you are ada")
    assert resp.headers["access-control-allow-origin"] == APP
    assert resp.headers["access-control-allow-credentials"] == "true"
    assert {"origin", "cookie"} <= set(vary(resp))


async def test_login_required_401_is_readable_by_the_allowed_origin() -> None:
    # The page must be able to see the 401 (to show a login form), so it carries CORS headers.
    app = credentialed_api()
    resp = await AsyncTestClient(app).get("/me", headers={"origin": APP})
    assert resp.status == 401
    assert "www-authenticate" in resp.headers
    assert resp.headers["access-control-allow-origin"] == APP
    assert resp.headers["access-control-allow-credentials"] == "true"


async def test_preflight_is_answered_before_the_login_check() -> None:
    # Browsers never send cookies on a preflight: requiring a login there would block every
    # credentialed cross-origin call.
    app = credentialed_api()
    resp = await AsyncTestClient(app).request(
        "OPTIONS",
        "/me",
        headers={
            "origin": APP,
            "access-control-request-method": "GET",
            "access-control-request-headers": "content-type",
        },
    )
    assert resp.status == 204
    assert resp.headers["access-control-allow-origin"] == APP
