"""Identity on the wire: the signed cookie's attributes, logout, server-side expiry, bad cookies,
Cookie header parsing, key rotation, rolling refresh, Vary, size cap, and the example app."""

from __future__ import annotations

import http.client
import logging
import random
import secrets
import string
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path

import anyio
import pytest
from itsdangerous.timed import TimestampSigner
from servers import cli, free_port

from examples import identity as identity_example
from tophat import Request, ResponseWriter, ResponseWritten
from tophat.middleware import chain
from tophat.middleware.identity import MAX_COOKIE_SIZE, Identity
from tophat.router import Router
from tophat.testing import AsyncTestClient, TestResponse

# Random-looking keys of 40+ bytes: the kind Identity accepts.
NEW = "q8Zr2Lx7Vn4Tb1Kw9Hs6Jd3Pf0Mc5Ya-newest-key"
OLD = "Xe5Gu8Ri1Oa4Wm7Qz0Cv3Bn6Tl9Hk2Dj-older-key"
OLDEST = "s4Fh7Kq0Wz3Ex6Rb9Tn2Ym5Ua8Ic1Og-oldest-key"

Cookie = tuple[str, str, dict[str, str | None]]  # name, value, attributes (lower-cased names)


def parse_set_cookie(header: str) -> Cookie:
    pair, *attributes = [part.strip() for part in header.split(";")]
    name, _, value = pair.partition("=")
    attrs: dict[str, str | None] = {}
    for attribute in attributes:
        key, sep, val = attribute.partition("=")
        attrs[key.lower()] = val if sep else None
    return name, value, attrs


def set_cookies(resp: TestResponse, name: str = "auth") -> list[Cookie]:
    cookies = [parse_set_cookie(h) for h in resp.headers.get_all("set-cookie")]
    return [c for c in cookies if c[0] == name]


@contextmanager
def signing_clock(seconds_ago: int) -> Iterator[None]:
    """Make itsdangerous date new signatures ``seconds_ago`` in the past (verification keeps
    the real clock)."""
    now = int(time.time())
    original = TimestampSigner.get_timestamp
    TimestampSigner.get_timestamp = lambda self: now - seconds_ago  # type: ignore[method-assign]
    try:
        yield
    finally:
        TimestampSigner.get_timestamp = original  # type: ignore[method-assign]


class Site:
    """/login?user=NAME, /logout, /who (open) and /private (login required)."""

    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        self.private_calls = 0
        router = Router()
        router.post("/login", self.login)
        router.post("/logout", self.logout)
        router.get("/who", self.who)
        private = Router()
        private.get("/", self.private)
        router.mount("/private", chain(identity.required)(private))
        self.app = chain(identity.middleware)(router)
        self.client = AsyncTestClient(self.app)

    async def login(self, req: Request, w: ResponseWriter) -> ResponseWritten:
        self.identity.set_auth_token(req.query.get("user") or "ada", w)
        return await w.send()

    async def logout(self, req: Request, w: ResponseWriter) -> ResponseWritten:
        self.identity.forget(w)
        return await w.send()

    async def who(self, req: Request, w: ResponseWriter) -> ResponseWritten:
        w.set_text(self.identity.authorized_user(req) or "anonymous")
        return await w.send()

    async def private(self, req: Request, w: ResponseWriter) -> ResponseWritten:
        self.private_calls += 1
        w.set_text(f"private for {self.identity.authorized_user(req)}")
        return await w.send()

    async def cookie_value(self, user: str = "ada") -> str:
        resp = await self.client.post(f"/login?user={user}")
        [(_, value, _)] = set_cookies(resp, self.identity.cookie_name)
        return value

    async def who_with(self, *cookie_headers: str) -> TestResponse:
        return await self.client.request(
            "GET", "/who", headers=[("cookie", h) for h in cookie_headers]
        )


def identity(*keys: str, **options: object) -> Identity:
    options.setdefault("cookie_name", "auth")
    return Identity(list(keys) if len(keys) > 1 else keys[0], **options)  # type: ignore[arg-type]


# -- the cookie set at login, and removed at logout ----------------------------------------------


async def test_login_cookie_is_httponly_secure_lax_with_path_max_age_and_expires() -> None:
    site = Site(identity(NEW, max_age=3600))
    resp = await site.client.post("/login?user=ada")
    [(name, value, attrs)] = set_cookies(resp)
    assert name == "auth" and value
    assert "httponly" in attrs and attrs["httponly"] is None
    assert "secure" in attrs and attrs["secure"] is None
    assert attrs["samesite"] == "Lax"
    assert attrs["path"] == "/"
    assert attrs["max-age"] == "3600"
    expires = attrs["expires"]
    assert expires is not None and expires.endswith(" GMT")
    expected = datetime.now(timezone.utc) + timedelta(seconds=3600)
    assert abs((parsedate_to_datetime(expires) - expected).total_seconds()) < 5
    assert "domain" not in attrs
    assert "partitioned" not in attrs


async def test_login_cookie_carries_domain_path_samesite_none_and_partitioned_when_asked() -> None:
    site = Site(
        identity(
            NEW,
            max_age=timedelta(minutes=5),
            path="/app",
            domain="example.com",
            same_site="none",
            partitioned=True,
        )
    )
    resp = await site.client.post("/login")
    [(_, _, attrs)] = set_cookies(resp)
    assert attrs["domain"] == "example.com"
    assert attrs["path"] == "/app"
    assert attrs["samesite"] == "None"
    assert "secure" in attrs
    assert "partitioned" in attrs
    assert attrs["max-age"] == "300"


async def test_login_cookie_can_be_strict_and_readable_by_scripts_when_asked() -> None:
    site = Site(identity(NEW, same_site="strict", http_only=False, secure=False))
    [(_, _, attrs)] = set_cookies(await site.client.post("/login"))
    assert attrs["samesite"] == "Strict"
    assert "httponly" not in attrs
    assert "secure" not in attrs


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"path": "/app", "domain": "example.com", "same_site": "none", "partitioned": True},
        {"same_site": "strict"},
    ],
    ids=["defaults", "cross-site", "strict"],
)
async def test_logout_expires_the_cookie_with_the_same_name_and_attributes(
    options: dict[str, object],
) -> None:
    site = Site(identity(NEW, cookie_name="sid", max_age=3600, **options))
    [(_, _, login)] = set_cookies(await site.client.post("/login"), "sid")
    [(name, value, logout)] = set_cookies(await site.client.post("/logout"), "sid")
    assert (name, value) == ("sid", "")
    assert logout["max-age"] == "0"
    expires = logout["expires"]
    assert expires is not None and parsedate_to_datetime(expires).year == 1970
    for attribute in ("path", "domain", "samesite", "secure", "httponly", "partitioned"):
        assert logout.get(attribute, "absent") == login.get(attribute, "absent"), attribute


# -- reading the identity ------------------------------------------------------------------------


async def test_cookie_from_login_makes_the_user_known() -> None:
    site = Site(identity(NEW))
    value = await site.cookie_value("grace")
    assert (await site.who_with(f"auth={value}")).text == "grace"
    assert (await site.who_with()).text == "anonymous"


async def test_authorized_user_reads_the_cookie_without_the_middleware() -> None:
    ident = identity(NEW)
    value = await Site(ident).cookie_value("ada")
    seen: list[tuple[str | None, str | None]] = []

    async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
        # Read twice: the second read is the first's, cached on the request.
        seen.append((ident.authorized_user(req), ident.authorized_user(req)))
        return await w.send()

    await AsyncTestClient(endpoint).get("/", headers={"cookie": f"auth={value}"})
    await AsyncTestClient(endpoint).get("/")
    assert seen == [("ada", "ada"), (None, None)]


@pytest.mark.parametrize(
    "cookie_headers",
    [
        ["theme=dark; auth={V}; lang=en"],
        ["theme=dark;auth={V};lang=en"],
        ['auth="{V}"'],
        ["theme=dark", "auth={V}", "lang=en"],
        ["auth=not-a-valid-token; auth={V}"],
        ["auth=", "auth={V}"],
        ["other_auth=junk; auth={V}"],
    ],
    ids=[
        "in-the-middle",
        "no-spaces",
        "quoted",
        "several-cookie-headers",
        "invalid-then-valid",
        "empty-then-valid-header",
        "longer-name-first",
    ],
)
async def test_identity_cookie_is_found_among_other_cookies(cookie_headers: list[str]) -> None:
    site = Site(identity(NEW))
    value = await site.cookie_value("ada")
    resp = await site.who_with(*(h.replace("{V}", value) for h in cookie_headers))
    assert (resp.status, resp.text) == (200, "ada")


@pytest.mark.parametrize(
    "cookie", ["xauth={V}", "auth2={V}", "other={V}", "Auth={V}"], ids=str.lower
)
async def test_a_valid_token_under_another_cookie_name_is_not_ours(cookie: str) -> None:
    site = Site(identity(NEW))
    value = await site.cookie_value("ada")
    assert (await site.who_with(cookie.replace("{V}", value))).text == "anonymous"


# -- expiry, enforced on the server --------------------------------------------------------------


async def test_cookie_older_than_max_age_is_anonymous_whatever_the_browser_sends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    site = Site(identity(NEW, max_age=60))
    with signing_clock(seconds_ago=61):
        value = await site.cookie_value("ada")
    with caplog.at_level(logging.DEBUG, logger="tophat.identity"):
        resp = await site.who_with(f"auth={value}")
    assert (resp.status, resp.text) == (200, "anonymous")
    assert any(
        r.name == "tophat.identity" and r.levelno == logging.DEBUG and "expired" in r.getMessage()
        for r in caplog.records
    )


async def test_cookie_younger_than_max_age_is_still_valid() -> None:
    site = Site(identity(NEW, max_age=60))
    with signing_clock(seconds_ago=55):
        value = await site.cookie_value("ada")
    assert (await site.who_with(f"auth={value}")).text == "ada"


async def test_expired_cookie_does_not_pass_the_login_requirement() -> None:
    site = Site(identity(NEW, max_age=60))
    with signing_clock(seconds_ago=120):
        value = await site.cookie_value("ada")
    resp = await site.client.get("/private", headers={"cookie": f"auth={value}"})
    assert resp.status == 401
    assert site.private_calls == 0


# -- bad cookies: anonymous, never a 500, the reason logged at debug -----------------------------


def _tampered(value: str) -> str:
    # Same signature, another user: base64url('"eve"') in place of the payload.
    return "ImV2ZSI" + value[value.index(".") :]


def _truncated(value: str) -> str:
    return value[:-6]


def _bit_flipped_signature(value: str) -> str:
    # Not the last character: its low bits are padding in base64, so changing only those
    # would decode to the very same signature (base64 decoders ignore them), and the cookie
    # would rightly still verify. Five from the end is all signature bits.
    i = len(value) - 5
    return value[:i] + ("A" if value[i] != "A" else "B") + value[i + 1 :]


@pytest.mark.parametrize(
    "make",
    [
        _tampered,
        _truncated,
        _bit_flipped_signature,
        lambda v: "garbage",
        lambda v: "a.b.c",
        lambda v: "!!!.###.$$$",
        lambda v: "",
        lambda v: v.split(".")[0],
    ],
    ids=[
        "tampered",
        "truncated",
        "bad-signature",
        "garbage",
        "dotted-garbage",
        "symbols",
        "empty",
        "payload-only",
    ],
)
async def test_bad_cookie_is_anonymous_and_logged_at_debug(
    make: Callable[[str], str], caplog: pytest.LogCaptureFixture
) -> None:
    site = Site(identity(NEW))
    value = await site.cookie_value("ada")
    bad = make(value)
    assert bad != value
    with caplog.at_level(logging.DEBUG, logger="tophat.identity"):
        resp = await site.who_with(f"auth={bad}")
        private = await site.client.get("/private", headers={"cookie": f"auth={bad}"})
    assert (resp.status, resp.text) == (200, "anonymous")
    assert private.status == 401
    assert any(r.name == "tophat.identity" and r.levelno == logging.DEBUG for r in caplog.records)


async def test_cookie_signed_with_another_key_is_anonymous_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    foreign = await Site(identity(OLDEST)).cookie_value("mallory")
    site = Site(identity(NEW))
    with caplog.at_level(logging.DEBUG, logger="tophat.identity"):
        resp = await site.who_with(f"auth={foreign}")
    assert (resp.status, resp.text) == (200, "anonymous")
    assert any(
        r.name == "tophat.identity" and "signature" in r.getMessage() for r in caplog.records
    )


async def test_cookie_signed_with_the_same_key_but_another_salt_is_anonymous() -> None:
    other_use = await Site(identity(NEW, salt="password-reset")).cookie_value("ada")
    assert (await Site(identity(NEW)).who_with(f"auth={other_use}")).text == "anonymous"


# -- key rotation --------------------------------------------------------------------------------


async def test_cookie_signed_with_the_previous_key_verifies_after_rotation() -> None:
    before = await Site(identity(OLD)).cookie_value("ada")
    after = Site(identity(NEW, OLD))
    assert (await after.who_with(f"auth={before}")).text == "ada"


async def test_new_cookies_are_signed_with_the_newest_key() -> None:
    value = await Site(identity(NEW, OLD)).cookie_value("ada")
    assert (await Site(identity(NEW)).who_with(f"auth={value}")).text == "ada"
    assert (await Site(identity(OLD)).who_with(f"auth={value}")).text == "anonymous"


async def test_cookie_signed_with_a_dropped_key_is_anonymous() -> None:
    ancient = await Site(identity(OLDEST)).cookie_value("ada")
    site = Site(identity(NEW, OLD))
    assert (await site.who_with(f"auth={ancient}")).text == "anonymous"


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("", "32 bytes"),
        ("too-short-a-key", "32 bytes"),
        (bytes(range(31)), "32 bytes"),
        ("x" * 64, "predictable"),
        ("changeme" * 4, "predictable"),
        ("secret-0123456789-0123456789-0123", "predictable"),
        ([], "at least one"),
        ([NEW, "short"], "32 bytes"),
        ([NEW, "password" * 5], "predictable"),
    ],
    ids=[
        "empty",
        "short",
        "31-bytes",
        "one-letter",
        "changeme",
        "secret-and-digits",
        "empty-list",
        "short-old-key",
        "placeholder-old-key",
    ],
)
def test_weak_or_missing_keys_are_refused_at_construction(key: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Identity(key)  # type: ignore[arg-type]


def test_a_32_byte_random_key_is_accepted() -> None:
    # (Was bytes(range(32)): a sequence, not random; the entropy estimate now refuses it.)
    Identity(secrets.token_bytes(32))
    Identity([secrets.token_bytes(32), NEW])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"same_site": "none", "secure": False}, "requires secure=True"),
        ({"partitioned": True, "secure": False}, "requires secure=True"),
        ({"same_site": "None"}, "same_site must be"),
        ({"max_age": 0}, "max_age"),
    ],
    ids=["samesite-none-insecure", "partitioned-insecure", "samesite-spelling", "max-age-zero"],
)
def test_unsafe_cookie_settings_are_refused_at_construction(
    options: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Identity(NEW, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", "a b", "a;b", "a=b"])
def test_invalid_cookie_name_is_refused_with_a_value_error(name: str) -> None:
    # The class docstring: "Raises: ValueError ... or a bad cookie name".
    with pytest.raises(ValueError):
        Identity(NEW, cookie_name=name)


# -- login requirement ---------------------------------------------------------------------------


async def test_required_answers_401_with_a_challenge_when_nobody_is_logged_in() -> None:
    site = Site(identity(NEW))
    resp = await site.client.get("/private")
    assert resp.status == 401
    challenge = resp.headers.get("www-authenticate")
    assert challenge is not None and challenge.strip()
    assert site.private_calls == 0


async def test_required_passes_through_when_logged_in() -> None:
    site = Site(identity(NEW))
    value = await site.cookie_value("ada")
    resp = await site.client.get("/private", headers={"cookie": f"auth={value}"})
    assert (resp.status, resp.text) == (200, "private for ada")
    assert site.private_calls == 1


# -- Vary, rolling refresh, size cap -------------------------------------------------------------


async def test_responses_vary_on_cookie_when_the_identity_was_read() -> None:
    site = Site(identity(NEW))
    value = await site.cookie_value("ada")
    for resp in (
        await site.who_with(f"auth={value}"),
        await site.who_with(),
        await site.client.get("/private"),  # the 401 too
        await site.client.get("/nowhere"),  # and a 404
    ):
        assert "cookie" in [v.lower() for v in resp.headers.get_list("vary")], resp


async def test_vary_cookie_survives_an_endpoint_that_sets_its_own_vary() -> None:
    ident = identity(NEW)

    async def negotiated(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.insert_header("Vary", "Accept-Language")
        w.set_text(ident.authorized_user(req) or "anonymous")
        return await w.send()

    resp = await AsyncTestClient(chain(ident.middleware)(negotiated)).get("/")
    assert {"cookie", "accept-language"} <= {v.lower() for v in resp.headers.get_list("vary")}


async def test_no_vary_cookie_without_the_identity_middleware() -> None:
    ident = identity(NEW)

    async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
        ident.set_auth_token("ada", w)
        return await w.send()

    resp = await AsyncTestClient(endpoint).get("/")
    assert "vary" not in resp.headers


async def test_rolling_reissues_the_cookie_past_half_of_max_age() -> None:
    site = Site(identity(NEW, max_age=100, rolling=True))
    with signing_clock(seconds_ago=60):
        aged = await site.cookie_value("ada")
    resp = await site.who_with(f"auth={aged}")
    assert resp.text == "ada"
    [(_, fresh, attrs)] = set_cookies(resp)
    assert fresh != aged
    assert attrs["max-age"] == "100" and "httponly" in attrs and "secure" in attrs
    # The new cookie is freshly dated: an identity with a 10 s lifetime accepts it, not the old.
    strict = Site(identity(NEW, max_age=10))
    assert (await strict.who_with(f"auth={fresh}")).text == "ada"
    assert (await strict.who_with(f"auth={aged}")).text == "anonymous"


async def test_rolling_does_not_reissue_before_half_of_max_age() -> None:
    site = Site(identity(NEW, max_age=100, rolling=True))
    with signing_clock(seconds_ago=40):
        young = await site.cookie_value("ada")
    resp = await site.who_with(f"auth={young}")
    assert resp.text == "ada"
    assert set_cookies(resp) == []


async def test_without_rolling_an_ageing_cookie_is_not_reissued() -> None:
    site = Site(identity(NEW, max_age=100))
    with signing_clock(seconds_ago=90):
        old = await site.cookie_value("ada")
    resp = await site.who_with(f"auth={old}")
    assert resp.text == "ada"
    assert set_cookies(resp) == []


async def test_logout_of_an_ageing_rolling_session_sends_only_the_removal() -> None:
    # RFC 6265 §4.1.1: servers SHOULD NOT send two Set-Cookie fields with the same name in one
    # response. A refresh followed by a removal leaves the outcome to the browser's ordering.
    site = Site(identity(NEW, max_age=100, rolling=True))
    with signing_clock(seconds_ago=60):
        aged = await site.cookie_value("ada")
    resp = await site.client.post("/logout", headers={"cookie": f"auth={aged}"})
    cookies = set_cookies(resp)
    assert len(cookies) == 1
    [(_, value, attrs)] = cookies
    assert (value, attrs["max-age"]) == ("", "0")


async def test_user_name_too_long_for_a_cookie_is_refused_and_nothing_is_sent() -> None:
    ident = identity(NEW)
    errors: list[str] = []

    async def login(req: Request, w: ResponseWriter) -> ResponseWritten:
        try:
            ident.set_auth_token(await req.text(), w)
        except ValueError as exc:
            errors.append(str(exc))
        return await w.send()

    # Letters in no pattern: itsdangerous compresses the payload when that makes it shorter.
    letters = "".join(random.Random(7).choices(string.ascii_letters, k=6000))
    client = AsyncTestClient(login)
    fits = await client.post("/", body=letters[:2500])
    [header] = fits.headers.get_all("set-cookie")
    assert len(header.encode()) <= MAX_COOKIE_SIZE

    too_big = await client.post("/", body=letters)
    assert too_big.status == 200
    assert too_big.headers.get_all("set-cookie") == []
    assert len(errors) == 1 and str(MAX_COOKIE_SIZE) in errors[0]


def test_empty_user_is_refused() -> None:
    ident = identity(NEW)

    class _NoSink:
        async def send_response(self, response: object) -> tuple[int, int]:
            raise AssertionError("never sent")

    w = ResponseWriter(_NoSink())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty"):
        ident.set_auth_token("", w)
    assert w.response.headers.get_all("set-cookie") == []


# -- examples/identity.py, carrying the cookie by hand -------------------------------------------


async def test_identity_example_login_hello_private_logout_flow() -> None:
    client = AsyncTestClient(identity_example.app)

    login = await client.post("/login?user=ada")
    assert (login.status, login.text) == (200, "logged in as ada")
    [(name, value, attrs)] = set_cookies(login, "__Host-tophat-auth")
    assert "httponly" in attrs and "secure" in attrs and attrs["samesite"] == "Lax"
    assert attrs["max-age"] == "3600"
    jar = f"{name}={value}"

    hello = await client.get("/hello", headers={"cookie": jar})
    assert (hello.status, hello.text) == (200, "hello, ada")
    assert "Cookie" in hello.headers.get_list("vary")

    private = await client.get("/private", headers={"cookie": jar})
    assert (private.status, private.text) == (200, "secret things for ada")

    logout = await client.post("/logout", headers={"cookie": jar})
    assert (logout.status, logout.text) == (200, "logged out")
    [(_, removed, removal)] = set_cookies(logout, "__Host-tophat-auth")
    assert (removed, removal["max-age"]) == ("", "0")
    jar = f"{name}={removed}"  # what a browser keeps after the removal: nothing usable

    assert (await client.get("/hello", headers={"cookie": jar})).text == "hello, stranger"
    assert (await client.get("/private", headers={"cookie": jar})).status == 401


async def test_identity_example_answers_strangers() -> None:
    client = AsyncTestClient(identity_example.app)
    assert (await client.get("/hello")).text == "hello, stranger"
    private = await client.get("/private")
    assert private.status == 401
    assert "www-authenticate" in private.headers
    nobody = await client.post("/login")
    assert nobody.status == 400
    assert nobody.headers.get_all("set-cookie") == []


async def test_identity_example_login_takes_the_user_from_the_body_too() -> None:
    client = AsyncTestClient(identity_example.app)
    login = await client.post("/login", body="grace\n")
    assert login.text == "logged in as grace"
    [(name, value, _)] = set_cookies(login, "__Host-tophat-auth")
    hello = await client.get("/hello", headers={"cookie": f"{name}={value}"})
    assert hello.text == "hello, grace"


# -- issue 11: cookie tossing, prefixed default name, key entropy, user names ------------------


@pytest.mark.parametrize(
    "cookie_headers",
    [
        ["auth={A}; auth={M}"],
        ["auth={M}; auth={A}"],
        ["auth={A}", "auth={M}"],
        ["theme=dark; auth={M}", "lang=en; auth={A}; auth=junk"],
    ],
    ids=["tossed-second", "tossed-first", "two-headers", "among-others"],
)
async def test_two_valid_identity_cookies_for_different_users_are_anonymous(
    cookie_headers: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    # Cookie tossing: a sibling subdomain (or a plain-http page of the same host) can set a
    # cookie with our name, Domain=the parent and a longer Path, so the browser sends it first.
    # Taking the first valid one logged the victim in as the attacker.
    site = Site(identity(NEW))
    ada, mallory = await site.cookie_value("ada"), await site.cookie_value("mallory")
    headers = [h.replace("{A}", ada).replace("{M}", mallory) for h in cookie_headers]
    with caplog.at_level(logging.DEBUG, logger="tophat.identity"):
        resp = await site.who_with(*headers)
    assert (resp.status, resp.text) == (200, "anonymous")
    infos = [r for r in caplog.records if r.name == "tophat.identity" and r.levelno == logging.INFO]
    assert len(infos) == 1 and "ambiguous" in infos[0].getMessage()
    assert "ada" not in infos[0].getMessage() and "mallory" not in infos[0].getMessage()
    private = await site.client.get("/private", headers=[("cookie", h) for h in headers])
    assert private.status == 401 and site.private_calls == 0


async def test_two_valid_identity_cookies_for_the_same_user_are_that_user() -> None:
    # Not ambiguous: an attacker cannot mint the victim's cookie (a partitioned and an
    # unpartitioned copy, or a refreshed one beside the old, name the same user).
    site = Site(identity(NEW))
    first = await site.cookie_value("ada")
    with signing_clock(seconds_ago=30):
        second = await site.cookie_value("ada")
    assert first != second
    assert (await site.who_with(f"auth={first}; auth={second}")).text == "ada"


async def test_more_than_eight_cookies_with_the_identity_name_are_anonymous_unverified() -> None:
    # A browser sends a handful of same-name cookies at most (paths, domains, partitions);
    # dozens are an attack, and each would cost a signature check.
    site = Site(identity(NEW))
    value = await site.cookie_value("ada")
    eight = "; ".join(["auth=junk"] * 7 + [f"auth={value}"])
    nine = "; ".join(["auth=junk"] * 8 + [f"auth={value}"])
    assert (await site.who_with(eight)).text == "ada"
    assert (await site.who_with(nine)).text == "anonymous"


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({}, "__Host-tophat-auth"),
        ({"same_site": "none", "partitioned": True}, "__Host-tophat-auth"),
        ({"path": "/app"}, "__Secure-tophat-auth"),
        ({"domain": "example.com"}, "__Secure-tophat-auth"),
        ({"secure": False}, "tophat-auth"),
    ],
    ids=["defaults", "cross-site", "path", "domain", "insecure"],
)
async def test_default_cookie_name_takes_the_strongest_prefix_the_attributes_allow(
    options: dict[str, object], name: str
) -> None:
    # RFC 6265bis §4.1.3: a __Host- cookie must be Secure, Path=/ and have no Domain, so no
    # sibling subdomain nor plain-http page can set (toss) one; __Secure- needs only Secure.
    ident = Identity(NEW, **options)  # type: ignore[arg-type]
    assert ident.cookie_name == name
    site = Site(ident)
    [(_, value, attrs)] = set_cookies(await site.client.post("/login"), name)
    assert ("secure" in attrs) == options.get("secure", True)
    if name.startswith("__Host-"):
        assert attrs["path"] == "/" and "domain" not in attrs
    assert (await site.who_with(f"{name}={value}")).text == "ada"
    assert (await site.who_with(f"tophat-auth={value}")).text == (
        "ada" if name == "tophat-auth" else "anonymous"
    )


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("__Host-auth", {"secure": False}),
        ("__Host-auth", {"path": "/app"}),
        ("__Host-auth", {"domain": "example.com"}),
        ("__host-auth", {"secure": False}),
        ("__Secure-auth", {"secure": False}),
        ("__SECURE-auth", {"secure": False}),
    ],
    ids=["host-insecure", "host-path", "host-domain", "host-lower", "secure-insecure", "upper"],
)
def test_a_prefixed_name_with_attributes_that_forbid_it_is_refused_at_construction(
    name: str, options: dict[str, object]
) -> None:
    # Browsers match the prefixes case-insensitively and drop such a cookie silently: the
    # login would never stick. Say so when the app is built.
    with pytest.raises(ValueError, match="prefix"):
        Identity(NEW, cookie_name=name, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("__Host-auth", {}),
        ("__Secure-auth", {"path": "/app", "domain": "example.com"}),
        ("plain", {"secure": False}),
    ],
)
def test_a_prefixed_name_with_allowing_attributes_is_accepted(
    name: str, options: dict[str, object]
) -> None:
    assert Identity(NEW, cookie_name=name, **options).cookie_name == name  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "key",
    [
        "12345678" * 4,
        "qwertyuiopasdfghjklzxcvbnm123456",
        "abcdefghijklmnopqrstuvwxyz012345",
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef",
        "0123456789abcdef0123456789abcdef",
        "zyxwvutsrqponmlkjihgfedcba987654",
        "!@#$%^&*()!@#$%^&*()!@#$%^&*()!@",
        "aaaaaaaabbbbbbbbccccccccdddddddd",
        "acegikmoqsuwy13579bdfhjlnprtvxz0",
        "my-secret-key-my-secret-key-1234",
        bytes(range(32)),
        bytes(range(64, 0, -2)),
    ],
)
def test_predictable_keys_are_refused_at_construction_with_how_to_make_one(
    key: str | bytes,
) -> None:
    with pytest.raises(ValueError, match="predictable") as info:
        Identity(key)
    assert "secrets.token_urlsafe(32)" in str(info.value)


@pytest.mark.parametrize(
    "make",
    [
        lambda: secrets.token_urlsafe(32),
        lambda: secrets.token_hex(32),
        lambda: secrets.token_bytes(32),
        lambda: secrets.token_urlsafe(48),
    ],
    ids=["token_urlsafe-32", "token_hex-32", "token_bytes-32", "token_urlsafe-48"],
)
def test_keys_from_the_secrets_module_are_always_accepted(make: Callable[[], str]) -> None:
    for _ in range(300):
        Identity(make())


@pytest.mark.parametrize("key", [NEW, OLD, OLDEST, "q8Zr1vN3xT6pL0wK4mB7yH2cF9dS5gJaUe3Wn7Ro"])
def test_random_looking_hand_written_keys_are_accepted(key: str) -> None:
    Identity(key)


@pytest.mark.parametrize("attribute", ["path", "domain"])
def test_a_cookie_attribute_over_1024_bytes_is_refused_at_construction(attribute: str) -> None:
    # RFC 6265bis §5.6: a user agent ignores an attribute value longer than 1024 octets, so
    # the cookie would land on another path or domain than forget() removes.
    value = "/" + "a" * 1024 if attribute == "path" else "a" * 1021 + ".com"
    with pytest.raises(ValueError, match="1024"):
        Identity(NEW, **{attribute: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("user", "status"),
    [
        ("a" * 64, 200),
        ("".join(random.Random(3).choices(string.ascii_letters, k=65)), 422),
        ("".join(random.Random(5).choices(string.ascii_letters, k=7000)), 422),
        ("ada\x00lovelace", 422),
        ("ada\x1b[31m", 422),
        ("é" * 64, 200),
    ],
    ids=["64", "65", "7000", "nul", "escape", "64-non-ascii"],
)
async def test_identity_example_validates_the_user_name(user: str, status: int) -> None:
    client = AsyncTestClient(identity_example.app)
    resp = await client.post("/login", body=user.encode())
    assert resp.status == status, resp.text
    cookies = set_cookies(resp, identity_example.identity.cookie_name)
    if status == 200:
        assert resp.text == f"logged in as {user}" and len(cookies) == 1
    else:
        assert cookies == [] and "64" in resp.text and "Traceback" not in resp.text


# -- issue 14: server-side revocation (session_check) --------------------------------------------


class Store:
    """An application's session store: ``(user, session)`` pairs that stand, and the calls."""

    def __init__(self) -> None:
        self.live: set[tuple[str, str]] = set()
        self.calls: list[tuple[str, str]] = []

    def start(self, user: str) -> str:
        session = secrets.token_urlsafe(8)
        self.live.add((user, session))
        return session

    def check(self, user: str, session: str) -> bool:
        self.calls.append((user, session))
        return (user, session) in self.live

    async def check_async(self, user: str, session: str) -> bool:
        await anyio.sleep(0)  # a real await: the check runs on the serving loop
        return self.check(user, session)


class RevocableSite(Site):
    """Site whose /login starts a session in ``store`` and whose /logout ends it."""

    def __init__(self, identity: Identity, store: Store) -> None:
        self.store = store
        super().__init__(identity)

    async def login(self, req: Request, w: ResponseWriter) -> ResponseWritten:
        user = req.query.get("user") or "ada"
        self.identity.set_auth_token(user, w, session=self.store.start(user))
        return await w.send()

    async def logout(self, req: Request, w: ResponseWriter) -> ResponseWritten:
        user, session = self.identity.authorized_user(req), self.identity.authorized_session(req)
        if user is not None and session is not None:
            self.store.live.discard((user, session))
            self.identity.invalidate(user, session)
        self.identity.forget(w)
        return await w.send()


def revocable(store: Store, *, use_async: bool = False, **options: object) -> RevocableSite:
    check = store.check_async if use_async else store.check
    return RevocableSite(identity(NEW, session_check=check, **options), store)


async def test_without_a_session_check_a_copied_cookie_outlives_logout() -> None:
    # The stateless default, stated: forget() only asks the browser to drop the cookie.
    site = Site(identity(NEW))
    value = await site.cookie_value("ada")
    await site.client.post("/logout", headers={"cookie": f"auth={value}"})
    assert (await site.who_with(f"auth={value}")).text == "ada"


@pytest.mark.parametrize("use_async", [False, True], ids=["sync-check", "async-check"])
async def test_a_revoked_session_is_anonymous_at_once_with_ttl_zero(use_async: bool) -> None:
    store = Store()
    site = revocable(store, use_async=use_async, session_check_ttl=0)
    value = await site.cookie_value("ada")
    [(user, session)] = store.live
    assert (await site.who_with(f"auth={value}")).text == "ada"
    assert store.calls[-1] == (user, session)
    store.live.clear()  # revoked in the store, by another worker say: no invalidate() here
    assert (await site.who_with(f"auth={value}")).text == "anonymous"
    private = await site.client.get("/private", headers={"cookie": f"auth={value}"})
    assert private.status == 401 and site.private_calls == 0


async def test_logout_revokes_the_session_so_a_copied_cookie_is_refused() -> None:
    store = Store()
    site = revocable(store)  # the default ttl: invalidate() makes it immediate here
    value = await site.cookie_value("ada")
    assert (await site.who_with(f"auth={value}")).text == "ada"
    logout = await site.client.post("/logout", headers={"cookie": f"auth={value}"})
    [(_, removed, _)] = set_cookies(logout)
    assert removed == ""
    assert (await site.who_with(f"auth={value}")).text == "anonymous"


async def test_log_out_everywhere_refuses_every_session_of_the_user() -> None:
    store = Store()
    site = revocable(store, session_check_ttl=0)
    phone, laptop = await site.cookie_value("ada"), await site.cookie_value("ada")
    grace = await site.cookie_value("grace")
    store.live = {(u, s) for u, s in store.live if u != "ada"}  # e.g. a session version bump
    assert (await site.who_with(f"auth={phone}")).text == "anonymous"
    assert (await site.who_with(f"auth={laptop}")).text == "anonymous"
    assert (await site.who_with(f"auth={grace}")).text == "grace"


async def test_verdicts_are_reused_within_the_ttl_then_asked_again() -> None:
    store = Store()
    site = revocable(store, session_check_ttl=0.3)
    value = await site.cookie_value("ada")
    for _ in range(3):
        assert (await site.who_with(f"auth={value}")).text == "ada"
    assert len(store.calls) == 1  # off the hot path
    store.live.clear()
    assert (await site.who_with(f"auth={value}")).text == "ada"  # cached: within the ttl
    await anyio.sleep(0.35)
    assert (await site.who_with(f"auth={value}")).text == "anonymous"
    assert len(store.calls) == 2


async def test_invalidate_drops_this_workers_cached_verdict() -> None:
    store = Store()
    site = revocable(store, session_check_ttl=3600)
    first, second = await site.cookie_value("ada"), await site.cookie_value("ada")
    assert (await site.who_with(f"auth={first}")).text == "ada"
    assert (await site.who_with(f"auth={second}")).text == "ada"
    store.live.clear()
    site.identity.invalidate("ada")  # every session of ada
    assert (await site.who_with(f"auth={first}")).text == "anonymous"
    assert (await site.who_with(f"auth={second}")).text == "anonymous"


async def test_the_verdict_cache_is_bounded_least_recently_used_first() -> None:
    store = Store()
    site = revocable(store, session_check_ttl=3600, session_cache_size=2)
    a, b, c = [await site.cookie_value(u) for u in ("a", "b", "c")]
    for value in (a, b, a, c):  # c pushes out b, the least recently used
        await site.who_with(f"auth={value}")
    assert [u for u, _ in store.calls] == ["a", "b", "c"]
    await site.who_with(f"auth={a}")
    await site.who_with(f"auth={b}")
    assert [u for u, _ in store.calls] == ["a", "b", "c", "b"]


async def test_a_cookie_without_a_session_is_refused_when_a_check_is_set() -> None:
    # Cookies minted before revocation was turned on could never be revoked: refused.
    old = await Site(identity(NEW)).cookie_value("ada")
    store = Store()
    site = revocable(store)
    assert (await site.who_with(f"auth={old}")).text == "anonymous"
    assert store.calls == []


@pytest.mark.parametrize("answer", [None, 0, "", False], ids=repr)
async def test_a_check_that_answers_no_true_value_refuses_the_login(answer: object) -> None:
    def check(user: str, session: str) -> bool:
        return answer  # type: ignore[return-value]  # what an untyped check might return

    site = Site(identity(NEW, session_check=check, session_check_ttl=0))
    w_value = await _login_with_session(site.identity, "ada", "s1")
    assert (await site.who_with(f"auth={w_value}")).text == "anonymous"


async def test_a_check_that_raises_fails_the_request_and_lets_nobody_in(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[str] = []

    async def check(user: str, session: str) -> bool:
        calls.append(session)
        raise ConnectionError("store unreachable")

    site = Site(identity(NEW, session_check=check))
    value = await _login_with_session(site.identity, "ada", "s1")
    with caplog.at_level(logging.ERROR, logger="tophat"):
        resp = await site.who_with(f"auth={value}")
        private = await site.client.get("/private", headers={"cookie": f"auth={value}"})
    assert resp.status == 500 and "ada" not in resp.text
    assert private.status == 500 and site.private_calls == 0
    assert len(calls) == 2  # a failure is not cached
    assert any(r.exc_info is not None for r in caplog.records)


async def test_an_async_check_without_the_middleware_is_a_clear_error() -> None:
    store = Store()
    ident = identity(NEW, session_check=store.check_async)
    value = await _login_with_session(ident, "ada", store.start("ada"))
    errors: list[str] = []

    async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
        try:
            ident.authorized_user(req)
        except RuntimeError as exc:
            errors.append(str(exc))
        return await w.send()

    await AsyncTestClient(endpoint).get("/", headers={"cookie": f"auth={value}"})
    assert len(errors) == 1 and "identity.middleware" in errors[0]
    # Behind the middleware, the same endpoint reads the user.
    seen: list[str | None] = []

    async def reads(req: Request, w: ResponseWriter) -> ResponseWritten:
        seen.append(ident.authorized_user(req))
        return await w.send()

    await AsyncTestClient(chain(ident.middleware)(reads)).get(
        "/", headers={"cookie": f"auth={value}"}
    )
    assert seen == ["ada"]


async def test_a_sync_check_works_without_the_middleware() -> None:
    store = Store()
    ident = identity(NEW, session_check=store.check)
    value = await _login_with_session(ident, "ada", store.start("ada"))
    seen: list[tuple[str | None, str | None]] = []

    async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
        seen.append((ident.authorized_user(req), ident.authorized_session(req)))
        return await w.send()

    await AsyncTestClient(endpoint).get("/", headers={"cookie": f"auth={value}"})
    [(user, session)] = store.live
    assert seen == [(user, session)]


async def test_rolling_refresh_keeps_the_session() -> None:
    store = Store()
    site = revocable(store, max_age=100, rolling=True, session_check_ttl=0)
    with signing_clock(seconds_ago=60):
        aged = await site.cookie_value("ada")
    resp = await site.who_with(f"auth={aged}")
    [(_, fresh, _)] = set_cookies(resp)
    assert (await site.who_with(f"auth={fresh}")).text == "ada"
    store.live.clear()
    assert (await site.who_with(f"auth={fresh}")).text == "anonymous"


async def test_sessions_are_signed_a_swapped_session_does_not_verify() -> None:
    store = Store()
    site = revocable(store)
    value = await site.cookie_value("ada")
    payload, _, rest = value.partition(".")
    forged = "WyJhZGEiLCJ4Il0" + "." + rest  # base64url('["ada","x"]') with ada's signature
    assert payload != "WyJhZGEiLCJ4Il0"
    assert (await site.who_with(f"auth={forged}")).text == "anonymous"


def test_login_needs_a_session_when_a_check_is_set() -> None:
    ident = identity(NEW, session_check=Store().check)
    w = ResponseWriter(_NoSink())
    with pytest.raises(ValueError, match="session="):
        ident.set_auth_token("ada", w)
    with pytest.raises(ValueError, match="session must be"):
        ident.set_auth_token("ada", w, session="")
    assert w.response.headers.get_all("set-cookie") == []


@pytest.mark.parametrize(
    ("options", "message"),
    [({"session_check_ttl": -1}, "session_check_ttl"), ({"session_cache_size": 0}, "cache_size")],
)
def test_bad_session_check_settings_are_refused_at_construction(
    options: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Identity(NEW, session_check=Store().check, **options)  # type: ignore[arg-type]


class _NoSink:
    async def send_response(self, response: object) -> tuple[int, list[tuple[str, str]], int]:
        raise AssertionError("never sent")


async def _login_with_session(ident: Identity, user: str, session: str) -> str:
    async def login(req: Request, w: ResponseWriter) -> ResponseWritten:
        ident.set_auth_token(user, w, session=session)
        return await w.send()

    resp = await AsyncTestClient(login).post("/")
    [(_, value, _)] = set_cookies(resp, ident.cookie_name)
    return value


async def test_identity_example_logout_refuses_the_copied_cookie_and_everywhere_all() -> None:
    client = AsyncTestClient(identity_example.app)
    name = identity_example.identity.cookie_name

    async def login(user: str) -> str:
        [(_, value, _)] = set_cookies(await client.post(f"/login?user={user}"), name)
        return f"{name}={value}"

    jar = await login("ada")
    stolen = jar
    assert (await client.get("/hello", headers={"cookie": stolen})).text == "hello, ada"
    await client.post("/logout", headers={"cookie": jar})
    assert (await client.get("/hello", headers={"cookie": stolen})).text == "hello, stranger"

    phone, laptop = await login("grace"), await login("grace")
    out = await client.post("/logout-everywhere", headers={"cookie": phone})
    assert out.text == "logged out everywhere: grace"
    assert (await client.get("/private", headers={"cookie": laptop})).status == 401
    assert (await client.post("/logout-everywhere")).status == 401


# -- acceptance: a revoked cookie replayed on another server process -------------------------


def _call(port: int, method: str, path: str, cookie: str | None = None) -> tuple[int, str, str]:
    """(status, body, the identity cookie set as name=value or "") from a real server."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, headers={"cookie": cookie} if cookie else {})
        resp = conn.getresponse()
        body = resp.read().decode()
        jar = ""
        for header in resp.headers.get_all("set-cookie") or []:
            name, value, _ = parse_set_cookie(header)
            jar = f"{name}={value}"
        return resp.status, body, jar
    finally:
        conn.close()


def test_a_revoked_identity_cookie_replayed_on_another_server_process_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parser: str
) -> None:
    # Two separate servers (one on asyncio, one on trio) share only the key and the sessions
    # file, as two machines would share a key and a database. A logout or "log out
    # everywhere" on one holds on the other (ttl 0: no cached verdict in the way).
    monkeypatch.setenv("TOPHAT_SECRET", secrets.token_urlsafe(48))
    monkeypatch.setenv("TOPHAT_SESSIONS", str(tmp_path / "sessions.sqlite3"))
    monkeypatch.setenv("TOPHAT_SESSION_TTL", "0")
    one, two = free_port(), free_port()
    app = "examples.identity:app"
    with (
        cli("--port", str(one), "--runtime", "asyncio", "--parser", parser, app=app),
        cli("--port", str(two), "--runtime", "trio", "--parser", parser, app=app),
    ):
        status, _, jar = _call(one, "POST", "/login?user=ada")
        assert status == 200 and jar.startswith("__Host-tophat-auth=")
        stolen = jar
        assert _call(two, "GET", "/hello", stolen)[:2] == (200, "hello, ada")
        assert _call(one, "GET", "/private/", stolen)[0] == 200

        status, _, removal = _call(one, "POST", "/logout", jar)
        assert status == 200 and removal == "__Host-tophat-auth="
        assert _call(two, "GET", "/hello", stolen)[:2] == (200, "hello, stranger")
        assert _call(two, "GET", "/private/", stolen)[0] == 401
        assert _call(one, "GET", "/hello", stolen)[:2] == (200, "hello, stranger")

        phone, laptop = (
            _call(one, "POST", "/login?user=grace")[2],
            _call(two, "POST", "/login?user=grace")[2],
        )
        assert _call(one, "GET", "/hello", laptop)[1] == "hello, grace"
        assert _call(two, "POST", "/logout-everywhere", phone)[0] == 200
        assert _call(one, "GET", "/hello", laptop)[1] == "hello, stranger"
        assert _call(one, "GET", "/hello", phone)[1] == "hello, stranger"
