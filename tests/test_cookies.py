"""Cookies on the wire (issue 14 item 4): ``req.cookies`` read from raw Cookie headers (a
malformed pair drops alone), ``ResponseWriter.set_cookie`` / ``delete_cookie`` as exact
Set-Cookie field lines, every validation rule as a ValueError naming it, and the same through a
real server on each runtime and through the ASGI adapter."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from http.cookies import SimpleCookie
from typing import Any

import anyio
import pytest
from servers import Serving, connected

from tophat import Request, ResponseWriter, ResponseWritten
from tophat.asgi import Message, to_asgi
from tophat.http.cookies import parse_cookies
from tophat.testing import AsyncTestClient, TestResponse

# -- helpers -------------------------------------------------------------------------------------


async def show_cookies(req: Request, w: ResponseWriter) -> ResponseWritten:
    """Answer with what the request's cookies read as: the mapping, and every value per name."""
    cookies = req.cookies
    w.set_json({"map": dict(cookies), "all": {name: cookies.get_all(name) for name in cookies}})
    return await w.send()


def request_with(*cookie_lines: bytes) -> bytes:
    head = b"GET / HTTP/1.1\r\nHost: testserver\r\n"
    return head + b"".join(b"Cookie: " + line + b"\r\n" for line in cookie_lines) + b"\r\n"


async def cookies_seen(*cookie_lines: bytes) -> dict[str, Any]:
    out = await AsyncTestClient(show_cookies).raw(request_with(*cookie_lines))
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), out
    seen: dict[str, Any] = json.loads(body)
    return seen


def writer_that(
    set_cookies: Callable[[ResponseWriter], None],
) -> Callable[[Request, ResponseWriter], Awaitable[ResponseWritten]]:
    async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
        set_cookies(w)
        return await w.send()

    return endpoint


async def set_cookie_lines(set_cookies: Callable[[ResponseWriter], None]) -> list[bytes]:
    """The Set-Cookie field lines of the response, as bytes on the wire (value exact; the
    field name's case is the serializer's business)."""
    out = await AsyncTestClient(writer_that(set_cookies)).raw(
        b"GET / HTTP/1.1\r\nHost: testserver\r\n\r\n"
    )
    head = out.partition(b"\r\n\r\n")[0]
    return re.findall(rb"(?im)^set-cookie: ([^\r\n]*)\r?$", head)


class _NoSink:
    async def send_response(self, response: object) -> tuple[int, list[tuple[str, str]], int]:
        raise AssertionError("never sent")


def fresh_writer() -> ResponseWriter:
    return ResponseWriter(_NoSink())


def attributes(line: bytes) -> tuple[str, str, dict[str, str | None]]:
    pair, *attrs = [part.strip() for part in line.decode().split(";")]
    name, _, value = pair.partition("=")
    out: dict[str, str | None] = {}
    for attr in attrs:
        key, eq, val = attr.partition("=")
        out[key.lower()] = val if eq else None
    return name, value, out


# -- reading: req.cookies ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ([b"a=1; b=2"], {"a": "1", "b": "2"}),
        ([b"a=1;b=2"], {"a": "1", "b": "2"}),
        ([b"a = 1 ;\tb=2  "], {"a": "1", "b": "2"}),
        ([b'a="quoted"; b=""'], {"a": "quoted", "b": ""}),
        ([b'a="'], {"a": '"'}),
        ([b'a="x"y"'], {"a": 'x"y'}),
        ([b"a=x=y"], {"a": "x=y"}),
        ([b"a="], {"a": ""}),
        ([b"a=\\x"], {"a": "\\x"}),
        ([b"a=one two, three"], {"a": "one two, three"}),
        ([b"a=caf\xc3\xa9"], {"a": "café"}),
        ([b"a=1", b"b=2"], {"a": "1", "b": "2"}),
        ([b"__Host-x=1; __Secure-y=2"], {"__Host-x": "1", "__Secure-y": "2"}),
        ([b""], {}),
        ([b";;; ;"], {}),
    ],
    ids=[
        "two",
        "no-spaces",
        "whitespace-trimmed",
        "quotes-unwrapped",
        "lone-quote-kept",
        "only-the-outer-quotes",
        "equals-in-value",
        "empty-value",
        "backslash-kept",
        "space-and-comma-in-value",
        "utf-8-value",
        "two-header-lines",
        "prefixed-names",
        "empty-header",
        "only-separators",
    ],
)
async def test_cookie_header_reads_as_a_mapping(
    lines: list[bytes], expected: dict[str, str]
) -> None:
    assert (await cookies_seen(*lines))["map"] == expected


@pytest.mark.parametrize(
    "bad",
    [
        b"junk",
        b"=nameless",
        b"a b=2",
        b"[x]=2",
        b"x,y=2",
        b'"x"=2',
        b"caf\xc3\xa9=2",
        b"x=\xff\xfe",
        b"x=\tin\x7fside",
        b"x=\x01",
    ],
    ids=[
        "no-equals",
        "empty-name",
        "space-in-name",
        "brackets-in-name",
        "comma-in-name",
        "quoted-name",
        "non-ascii-name",
        "not-utf-8",
        "del-in-value",
        "soh-in-value",
    ],
)
async def test_a_malformed_pair_drops_alone_and_its_neighbours_survive(bad: bytes) -> None:
    # Starlette's old bug (through http.cookies): one bad pair lost every cookie after it.
    # Some of these bytes the request parsers refuse in a header at all (control characters):
    # then the whole request is a 400, and the parsing below is checked directly.
    line = b"before=1; " + bad + b"; after=2"
    out = await AsyncTestClient(show_cookies).raw(request_with(line))
    if out.startswith(b"HTTP/1.1 400 "):
        assert dict(parse_cookies([line.decode("latin-1")])) == {"before": "1", "after": "2"}
        return
    body = out.partition(b"\r\n\r\n")[2]
    assert json.loads(body)["map"] == {"before": "1", "after": "2"}


def test_http_cookies_would_have_lost_the_neighbours_we_keep() -> None:
    # Why we do not parse with http.cookies.SimpleCookie: it stops at the first pair it does
    # not like, so what follows is lost. (The test that this module's parser does not.)
    line = 'before=1; x="broken; after=2'
    simple: SimpleCookie = SimpleCookie()
    simple.load(line)
    assert "after" not in simple
    assert dict(parse_cookies([line])) == {"before": "1", "x": '"broken', "after": "2"}


async def test_the_first_of_a_repeated_name_wins_and_get_all_has_every_value() -> None:
    # RFC 6265bis §5.8.3: the browser sends the longest Path first, so the first is the most
    # specific; get_all lets code that must compare them (Identity) see every one.
    seen = await cookies_seen(b"sid=deep; theme=dark; sid=shallow", b"sid=other-line")
    assert seen["map"] == {"sid": "deep", "theme": "dark"}
    assert seen["all"] == {"sid": ["deep", "shallow", "other-line"], "theme": ["dark"]}


async def test_no_cookie_header_is_an_empty_mapping() -> None:
    assert await cookies_seen() == {"map": {}, "all": {}}


async def test_cookies_are_parsed_once_per_request() -> None:
    seen: list[bool] = []

    async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
        seen.append(req.cookies is req.cookies)
        return await w.send()

    await AsyncTestClient(endpoint).raw(request_with(b"a=1"))
    assert seen == [True]


def test_the_repr_of_the_cookies_shows_names_not_values() -> None:
    # Values are credentials; a repr ends up in logs.
    cookies = parse_cookies(["session=s3cr3t; theme=dark"])
    assert "s3cr3t" not in repr(cookies) and "session" in repr(cookies)


# -- writing: exact Set-Cookie lines -------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "line"),
    [
        (lambda w: w.set_cookie("a", "1"), b"a=1; Path=/; Secure; HttpOnly; SameSite=Lax"),
        (
            lambda w: w.set_cookie(
                "pref",
                '"dark"',
                max_age=timedelta(days=1),
                expires=datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
                path="/app",
                domain="example.com",
                samesite="strict",
            ),
            b'pref="dark"; Expires=Wed, 02 Jan 2030 03:04:05 GMT; Max-Age=86400; '
            b"Domain=example.com; Path=/app; Secure; HttpOnly; SameSite=Strict",
        ),
        (
            lambda w: w.set_cookie("x", "", expires=1_000_000_000, secure=False, httponly=False),
            b"x=; Expires=Sun, 09 Sep 2001 01:46:40 GMT; Path=/; SameSite=Lax",
        ),
        (
            lambda w: w.set_cookie(
                "x", "1", expires=datetime(2030, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2)))
            ),
            b"x=1; Expires=Wed, 02 Jan 2030 03:04:05 GMT; Path=/; Secure; HttpOnly; SameSite=Lax",
        ),
        (
            lambda w: w.set_cookie("__Host-chips", "v", samesite="none", partitioned=True),
            b"__Host-chips=v; Path=/; Secure; HttpOnly; SameSite=None; Partitioned",
        ),
        (
            lambda w: w.set_cookie("plain", "v", secure=False, samesite=None),
            b"plain=v; Path=/; HttpOnly",
        ),
        (
            lambda w: w.set_cookie("odd", "!#$%&'()*+-./:<=>?@[]^_`{|}~", max_age=0),
            b"odd=!#$%&'()*+-./:<=>?@[]^_`{|}~; Max-Age=0; Path=/; Secure; HttpOnly; SameSite=Lax",
        ),
    ],
    ids=["defaults", "every-attribute", "epoch-expires", "expires-to-utc", "chips", "plain", "odd"],
)
async def test_set_cookie_sends_exactly_this_line(
    call: Callable[[ResponseWriter], None], line: bytes
) -> None:
    assert await set_cookie_lines(call) == [line]


async def test_several_cookies_are_several_field_lines_never_folded() -> None:
    def three(w: ResponseWriter) -> None:
        w.set_cookie("a", "1")
        w.set_cookie("b", "2")
        w.delete_cookie("c")

    lines = await set_cookie_lines(three)
    assert [attributes(line)[:2] for line in lines] == [("a", "1"), ("b", "2"), ("c", "")]


async def test_setting_a_name_twice_sends_only_the_last() -> None:
    # RFC 6265bis §4.1.1: servers SHOULD NOT send two Set-Cookie fields with one cookie-name
    # in one response; the last call is the one meant (a logout after a refresh).
    def twice(w: ResponseWriter) -> None:
        w.set_cookie("a", "1")
        w.append_header("set-cookie", "ab=keep")
        w.set_cookie("b", "2")
        w.set_cookie("a", "3")
        w.delete_cookie("b")

    lines = await set_cookie_lines(twice)
    assert [attributes(line)[:2] for line in lines] == [("ab", "keep"), ("a", "3"), ("b", "")]


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"path": "/app", "domain": "example.com"},
        {"samesite": "none", "partitioned": True},
        {"samesite": "strict", "httponly": False},
        {"secure": False, "samesite": None},
    ],
    ids=["defaults", "scoped", "chips", "strict-script", "plain"],
)
async def test_delete_cookie_mirrors_the_attributes_the_browser_matches(
    options: dict[str, Any],
) -> None:
    [set_line] = await set_cookie_lines(lambda w: w.set_cookie("sid", "abc", max_age=60, **options))
    [delete_line] = await set_cookie_lines(lambda w: w.delete_cookie("sid", **options))
    _, _, made = attributes(set_line)
    name, value, removal = attributes(delete_line)
    assert (name, value) == ("sid", "")
    assert removal["max-age"] == "0"
    assert removal["expires"] == "Thu, 01 Jan 1970 00:00:00 GMT"
    for attribute in ("path", "domain", "secure", "httponly", "samesite", "partitioned"):
        assert removal.get(attribute, "absent") == made.get(attribute, "absent"), attribute


async def test_delete_cookie_line_exactly() -> None:
    assert await set_cookie_lines(lambda w: w.delete_cookie("__Host-sid")) == [
        b"__Host-sid=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/; Secure; "
        b"HttpOnly; SameSite=Lax"
    ]


async def test_a_refused_cookie_leaves_the_response_without_it() -> None:
    errors: list[str] = []

    def bad(w: ResponseWriter) -> None:
        w.set_cookie("good", "1")
        try:
            w.set_cookie("bad", "has space")
        except ValueError as exc:
            errors.append(str(exc))

    assert await set_cookie_lines(bad) == [b"good=1; Path=/; Secure; HttpOnly; SameSite=Lax"]
    assert len(errors) == 1 and "cookie-octet" in errors[0]


# -- validation at the call: a ValueError naming the rule ----------------------------------------


RULES: list[tuple[str, str, dict[str, Any], str]] = [
    ("", "v", {}, "token"),
    ("a b", "v", {}, "token"),
    ("a;b", "v", {}, "token"),
    ("a=b", "v", {}, "token"),
    ("a:b", "v", {}, "token"),
    ("café", "v", {}, "token"),
    ("a\n", "v", {}, "token"),
    ("a", "has space", {}, "cookie-octet"),
    ("a", 'in"side', {}, "cookie-octet"),
    ("a", "x,y", {}, "cookie-octet"),
    ("a", "x;y", {}, "cookie-octet"),
    ("a", "x\\y", {}, "cookie-octet"),
    ("a", "café", {}, "cookie-octet"),
    ("a", "x\r\nSet-Cookie: evil=1", {}, "cookie-octet"),
    ("a", '"unbalanced', {}, "cookie-octet"),
    ("a", "x" * 4096, {}, "4096"),
    ("a", "v", {"path": ""}, "starts with '/'"),
    ("a", "v", {"path": "app"}, "starts with '/'"),
    ("a", "v", {"path": "/a;b"}, "path"),
    ("a", "v", {"path": "/a\x00"}, "path"),
    ("a", "v", {"path": "/café"}, "percent-encode"),
    ("a", "v", {"path": "/" + "a" * 1024}, "1024"),
    ("a", "v", {"domain": ""}, "host name"),
    ("a", "v", {"domain": "example.com;x"}, "host name"),
    ("a", "v", {"domain": "exa mple.com"}, "host name"),
    ("a", "v", {"domain": "exämple.com"}, "punycode"),
    ("a", "v", {"domain": "a" * 1021 + ".com"}, "1024"),
    ("a", "v", {"samesite": "none", "secure": False}, "samesite='none' requires secure"),
    ("a", "v", {"partitioned": True, "secure": False}, "partitioned=True requires secure"),
    ("a", "v", {"samesite": "None"}, "samesite must be"),
    ("a", "v", {"samesite": "relaxed"}, "samesite must be"),
    ("__Host-a", "v", {"secure": False}, "prefix"),
    ("__Host-a", "v", {"path": "/app"}, "prefix"),
    ("__Host-a", "v", {"domain": "example.com"}, "prefix"),
    ("__host-a", "v", {"secure": False}, "prefix"),
    ("__Secure-a", "v", {"secure": False}, "prefix"),
    ("__SECURE-a", "v", {"secure": False}, "prefix"),
    ("a", "v", {"max_age": -1}, "non-negative"),
    ("a", "v", {"max_age": True}, "non-negative"),
    ("a", "v", {"max_age": 1.5}, "non-negative"),
    ("a", "v", {"max_age": timedelta(seconds=-5)}, "non-negative"),
    ("a", "v", {"expires": datetime(2030, 1, 1)}, "aware datetime"),
    ("a", "v", {"expires": "tomorrow"}, "datetime or epoch"),
    ("a", "v", {"expires": True}, "datetime or epoch"),
]
# delete_cookie takes no value, max_age nor expires: the rules about the rest apply to it too.
DELETE_RULES = [
    (name, options, rule)
    for name, value, options, rule in RULES
    if value == "v" and not {"max_age", "expires"} & options.keys()
]


@pytest.mark.parametrize(("name", "value", "options", "rule"), RULES)
def test_invalid_set_cookie_arguments_are_refused_with_the_rule(
    name: str, value: str, options: dict[str, Any], rule: str
) -> None:
    w = fresh_writer()
    with pytest.raises(ValueError, match=re.escape(rule)):
        w.set_cookie(name, value, **options)
    assert w.response.headers.get_all("set-cookie") == []


@pytest.mark.parametrize(("name", "options", "rule"), DELETE_RULES)
def test_invalid_delete_cookie_arguments_are_refused_with_the_rule(
    name: str, options: dict[str, Any], rule: str
) -> None:
    w = fresh_writer()
    with pytest.raises(ValueError, match=re.escape(rule)):
        w.delete_cookie(name, **options)
    assert w.response.headers.get_all("set-cookie") == []


@pytest.mark.parametrize(
    ("name", "value", "options"),
    [
        ("a", "x" * 4095, {}),
        ("a" * 2048, "x" * 2048, {}),
        ("a", '"quoted"', {}),
        ("a", "", {}),
        ("__Host-a", "v", {}),
        ("__Secure-a", "v", {"path": "/app", "domain": "example.com"}),
        ("__hostile", "v", {"secure": False}),
        ("a", "v", {"domain": ".example.com"}),
        ("a", "v", {"domain": "xn--exmple-cua.com"}),
        ("a", "v", {"path": "/a%20b/c?d"}),
        ("a", "v", {"path": "/" + "a" * 1023}),
        ("a", "v", {"max_age": 0}),
        ("a", "v", {"expires": 0.5}),
    ],
)
def test_valid_cookie_arguments_are_accepted(
    name: str, value: str, options: dict[str, Any]
) -> None:
    w = fresh_writer()
    w.set_cookie(name, value, **options)
    [line] = w.response.headers.get_all("set-cookie")
    assert line.startswith(f"{name}={value};")


# -- a real server on each runtime, and the ASGI adapter -----------------------------------------


async def login_and_echo(req: Request, w: ResponseWriter) -> ResponseWritten:
    w.set_cookie("sid", "abc", max_age=60)
    w.set_cookie("theme", req.cookies.get("theme", "light"), httponly=False)
    w.set_text(json.dumps(dict(req.cookies)))
    return await w.send()


async def test_cookies_through_a_real_server_on_each_runtime(serving: Serving) -> None:
    async with serving(login_and_echo) as server, connected(server.port) as c:
        await c.send(request_with(b"theme=dark; b c=junk; lang=en"))
        raw = await c.read_until(b"}")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert json.loads(body) == {"theme": "dark", "lang": "en"}
    assert re.findall(rb"(?im)^set-cookie: ([^\r\n]*)\r$", head) == [
        b"sid=abc; Max-Age=60; Path=/; Secure; HttpOnly; SameSite=Lax",
        b"theme=dark; Path=/; Secure; SameSite=Lax",
    ]


async def test_cookies_through_the_asgi_adapter() -> None:
    app = to_asgi(login_and_echo)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "https",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"cookie", b"theme=dark; [bad]=1"),
            (b"cookie", b"lang=en; theme=ignored"),
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 443),
    }
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    with anyio.fail_after(5):
        await app(scope, receive, send)
    start, body = sent[0], b"".join(m.get("body", b"") for m in sent[1:])
    assert json.loads(body) == {"theme": "dark", "lang": "en"}
    assert [v for n, v in start["headers"] if n.lower() == b"set-cookie"] == [
        b"sid=abc; Max-Age=60; Path=/; Secure; HttpOnly; SameSite=Lax",
        b"theme=dark; Path=/; Secure; SameSite=Lax",
    ]


async def test_test_client_response_keeps_each_set_cookie() -> None:
    client = AsyncTestClient(login_and_echo)
    resp: TestResponse = await client.get("/", headers={"cookie": "theme=dark"})
    assert len(resp.headers.get_all("set-cookie")) == 2
