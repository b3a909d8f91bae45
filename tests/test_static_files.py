"""``tophat.static.static_files`` on the wire: safe path resolution (every traversal attempt is
the router's 404), hidden files, symlinks, index files and directory redirects, methods,
Cache-Control, precompressed siblings chosen by Accept-Encoding, HEAD; alone and mounted
under a Router prefix, in memory on every runtime and through a real server.

(``tests/test_static.py`` is the static *checks*: mypy, ruff.)
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from urllib.parse import unquote

import anyio
import pytest
from servers import Serving, connected

from tophat import Headers, Request, ResponseWriter, ResponseWritten
from tophat.asgi import Message, to_asgi
from tophat.router import Router
from tophat.static import StaticFiles, static_files
from tophat.testing import AsyncTestClient, TestResponse, parse_responses

CSS = b"body { color: teal }\n" * 20
CSS_BR = b"<brotli bytes of site.css>"
CSS_GZ = b"<gzip bytes of site.css>"
JS_GZ = b"<gzip bytes of app.js>"
SECRET = b"the secret outside the root\n"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """``tmp_path/public`` (the root) beside ``tmp_path/secret.txt`` and ``tmp_path/outside/``,
    which no URL may reach unless ``follow_symlinks``."""
    (tmp_path / "secret.txt").write_bytes(SECRET)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_bytes(SECRET)
    root = tmp_path / "public"
    files = {
        "index.html": b"<h1>home</h1>",
        "css/site.css": CSS,
        "css/site.css.br": CSS_BR,
        "css/site.css.gz": CSS_GZ,
        "js/app.js": b"console.log(1)",
        "js/app.js.gz": JS_GZ,
        "data.bin": bytes(range(256)) * 4,
        "docs/index.html": b"<h1>docs</h1>",
        "docs/guide.txt": b"guide",
        "assets/logo.svg": b"<svg/>",
        ".secret": b"hidden",
        ".git/config": b"[core]",
        ".well-known/security.txt": b"Contact: x",
        "%2e": b"a file named %2e",
        "caf\u00e9.txt": b"accents",
        # Names a POSIX file system allows, which other systems read as a path: refused here
        # too (the same rules everywhere), and proof that the refusal is not just a miss.
        "css\\site.css": b"a backslash in the name",
        "C:/Windows/win.ini": b"a directory named C:",
        "c:\\windows\\win.ini": b"a backslash in the name",
    }
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (root / "empty").mkdir()
    os.symlink(root / "css" / "site.css", root / "link_in.css")
    os.symlink(tmp_path / "secret.txt", root / "link_out.txt")
    os.symlink(tmp_path / "outside", root / "dirlink_out")
    os.symlink(root / "docs", root / "dirlink_in")
    os.mkfifo(root / "fifo")
    # Files a second old or more get strong validators (set_file makes younger ones weak).
    old = time.time() - 60
    for path in root.rglob("*"):
        os.utime(path, (old, old), follow_symlinks=False)
    return root


def app_of(root: Path, **kw: object) -> Router:
    """The site mounted at ``/static`` beside an ordinary route."""
    router = Router()

    @router.get("/hello")
    async def hello(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.set_text("hello")
        return await w.send()

    router.mount("/static", static_files(root, **kw))  # type: ignore[arg-type]
    return router


async def get(app: object, path: str, method: str = "GET", **headers: str) -> TestResponse:
    """One raw request (the path exactly as written: no client normalizes it)."""
    lines = "".join(f"{k.replace('_', '-')}: {v}\r\n" for k, v in headers.items())
    data = f"{method} {path} HTTP/1.1\r\nHost: t\r\n{lines}\r\n".encode("latin-1")
    out = await AsyncTestClient(app).raw(data)  # type: ignore[arg-type]
    (resp,) = parse_responses(out, [method])
    return resp


# Every way we know of to name something outside the root, or a file the rules refuse, by a
# path: each must get exactly the response a missing file gets.
TRAVERSALS = [
    "/../secret.txt",
    "/%2e%2e/secret.txt",
    "/%2E%2e/secret.txt",
    "/css/%2e%2e/%2e%2e/secret.txt",
    "/%2e%2e%2fsecret.txt",
    "/..%2Fsecret.txt",
    "/..%5csecret.txt",
    "/%5c..%5csecret.txt",
    "/css%5csite.css",  # a backslash is not a separator, even to a file that exists
    "/index.html%00",
    "/index.html%00.png",
    "/%00/index.html",
    "/%252e%252e/secret.txt",  # double-encoded: decoded once, a name "%2e%2e", not a dot
    "/%25252e%25252e/secret.txt",
    "//secret.txt",
    "//etc/passwd",
    "/%2fetc%2fpasswd",
    "/%2F%2E%2E%2Fsecret.txt",
    "/C:/Windows/win.ini",
    "/c:%5cwindows%5cwin.ini",
    "/C%3A/secret.txt",
    "/./index.html",
    "/css/./site.css",
    "/css//site.css",
    "/%2e/index.html",
    "/%c0%ae%c0%ae/secret.txt",  # overlong UTF-8 for "..": invalid UTF-8, refused
    "/%ff",
    "/link_out.txt",
    "/dirlink_out/secret.txt",
    "/fifo",
    "/css/site.css/",
    "/index.html/",
    "/css/site.css%0a",
    "/css/site.css%09",
]


async def test_every_traversal_attempt_is_the_404_a_missing_file_gets(site: Path) -> None:
    app = static_files(site)
    missing = await get(app, "/no-such-file")
    assert missing.status == 404
    answers = {path: await get(app, path) for path in TRAVERSALS}
    assert {p: r.status for p, r in answers.items()} == dict.fromkeys(TRAVERSALS, 404)
    # Byte for byte what a missing file gets (but the Date): nothing is learned about the tree.
    assert {p: r.body for p, r in answers.items()} == dict.fromkeys(TRAVERSALS, missing.body)
    assert {
        p: sorted((k, v) for k, v in r.headers if k != "date") for p, r in answers.items()
    } == dict.fromkeys(TRAVERSALS, sorted((k, v) for k, v in missing.headers if k != "date"))


async def test_every_traversal_attempt_is_a_404_under_a_mount_too(site: Path) -> None:
    app = app_of(site)
    answers = {path: (await get(app, "/static" + path)).status for path in TRAVERSALS}
    assert answers == dict.fromkeys(TRAVERSALS, 404)
    assert (await get(app, "/static/css/site.css")).body == CSS  # (the mount itself works)


async def test_the_same_files_by_their_plain_names_are_served(site: Path) -> None:
    # The counterpart of the traversal table: the refusals are about the path, not the files.
    app = static_files(site, follow_symlinks=False)
    for path, body in [
        ("/css/site.css", CSS),
        ("/index.html", b"<h1>home</h1>"),
        ("/%25%32%65", b"a file named %2e"),  # decoded once: the name "%2e" is a file here
        ("/%252e", b"a file named %2e"),
        ("/caf%C3%A9.txt", b"accents"),
        ("/link_in.css", CSS),  # a symlink inside the root is followed
        ("/dirlink_in/guide.txt", b"guide"),
        ("/css/site.css?v=3", CSS),  # the query is not part of the name
    ]:
        resp = await get(app, path)
        assert (path, resp.status, resp.body) == (path, 200, body)


async def test_a_raw_backslash_in_the_target_is_a_404_too(site: Path) -> None:
    # Unencoded: both parsers let a backslash through to the endpoint, which refuses it.
    paths = ["/..\\secret.txt", "/css\\site.css", "/\\secret.txt", "/c:\\windows\\win.ini"]
    answers = {path: (await get(static_files(site), path)).status for path in paths}
    assert answers == dict.fromkeys(paths, 404)


async def test_symlinks_out_of_the_root_are_followed_only_with_follow_symlinks(
    site: Path,
) -> None:
    app = static_files(site, follow_symlinks=True)
    assert (await get(app, "/link_out.txt")).body == SECRET
    assert (await get(app, "/dirlink_out/secret.txt")).body == SECRET
    # The URL still cannot climb: follow_symlinks trusts the tree's links, not the client.
    assert (await get(app, "/../secret.txt")).status == 404
    assert (await get(app, "/%2e%2e/secret.txt")).status == 404


async def test_a_root_reached_through_a_symlink_is_resolved_on_each_request(
    site: Path, tmp_path: Path
) -> None:
    # The deploy pattern: "current" -> a release; switching the link serves the new tree.
    release2 = tmp_path / "release2"
    release2.mkdir()
    (release2 / "index.html").write_bytes(b"release 2")
    current = tmp_path / "current"
    os.symlink(site, current)
    app = static_files(current)
    assert (await get(app, "/index.html")).body == b"<h1>home</h1>"
    current.unlink()
    os.symlink(release2, current)
    assert (await get(app, "/index.html")).body == b"release 2"
    assert (await get(app, "/css/site.css")).status == 404


async def test_hidden_names_are_404_unless_allowed(site: Path) -> None:
    hidden = ["/.secret", "/%2esecret", "/.git/config", "/.git/", "/.well-known/security.txt"]
    app = static_files(site)
    assert {p: (await get(app, p)).status for p in hidden} == dict.fromkeys(hidden, 404)
    allowing = static_files(site, allow_hidden=True)
    assert (await get(allowing, "/.secret")).body == b"hidden"
    assert (await get(allowing, "/.well-known/security.txt")).body == b"Contact: x"
    # Dot segments are never names, hidden files allowed or not.
    assert (await get(allowing, "/.well-known/../.secret")).status == 404
    assert (await get(allowing, "/%2e%2e/secret.txt")).status == 404


async def test_a_directory_sends_its_index_and_its_slashless_url_redirects(site: Path) -> None:
    app = static_files(site)
    assert (await get(app, "/")).body == b"<h1>home</h1>"
    docs = await get(app, "/docs/")
    assert (docs.status, docs.body) == (200, b"<h1>docs</h1>")
    assert docs.headers["content-type"] == "text/html; charset=utf-8"
    moved = await get(app, "/docs")
    assert (moved.status, moved.headers["location"], moved.body) == (301, "./docs/", b"")
    assert (await get(app, "/docs?lang=fr")).headers["location"] == "./docs/?lang=fr"
    assert (await get(app, "/dirlink_in")).headers["location"] == "./dirlink_in/"
    head = await get(app, "/docs", "HEAD")
    assert (head.status, head.headers["location"]) == (301, "./docs/")
    # A directory without the index is a missing file: no redirect to a 404, no listing.
    assert (await get(app, "/empty")).status == 404
    assert (await get(app, "/empty/")).status == 404
    assert (await get(app, "/css/")).status == 404


async def test_without_an_index_directories_are_404(site: Path) -> None:
    app = static_files(site, index=None)
    assert {p: (await get(app, p)).status for p in ["/", "/docs", "/docs/"]} == {
        "/": 404,
        "/docs": 404,
        "/docs/": 404,
    }
    assert (await get(app, "/docs/index.html")).body == b"<h1>docs</h1>"


async def test_a_mounted_root_redirects_to_its_slash_and_serves_the_index(site: Path) -> None:
    app = app_of(site)
    moved = await get(app, "/static")
    assert (moved.status, moved.headers["location"]) == (301, "./static/")
    assert (await get(app, "/static?x=1")).headers["location"] == "./static/?x=1"
    assert (await get(app, "/static/")).body == b"<h1>home</h1>"
    assert (await get(app, "/static/docs")).headers["location"] == "./docs/"
    assert (await get(app, "/static/docs/")).body == b"<h1>docs</h1>"
    assert (await get(app, "/hello")).body == b"hello"  # the router's own routes still win
    assert (await get(app, "/nothing")).status == 404
    # Absolute-form targets (RFC 9112 §3.2.2) name the same resources.
    assert (await get(app, "http://t/static")).headers["location"] == "./static/"
    assert (await get(app, "http://t/static/")).body == b"<h1>home</h1>"


async def test_methods_other_than_get_and_head_are_answered_as_the_router_answers(
    site: Path,
) -> None:
    router = Router()

    @router.get("/page")
    async def page(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.set_text("page")
        return await w.send()

    for app, path in [(static_files(site), "/index.html"), (app_of(site), "/static/index.html")]:
        for method in ["POST", "PUT", "DELETE", "PATCH"]:
            ours, routers = await get(app, path, method), await get(router, "/page", method)
            assert (ours.status, ours.headers["allow"]) == (405, "GET, HEAD, OPTIONS")
            assert (routers.status, routers.headers["allow"]) == (405, "GET, HEAD, OPTIONS")
            assert ours.body == routers.body
        options = await get(app, path, "OPTIONS")
        assert (options.status, options.headers["allow"], options.body) == (
            204,
            "GET, HEAD, OPTIONS",
            b"",
        )
        # Nothing there: a 404 whatever the method (a 405 would say something exists).
        assert (await get(app, path + "x", "POST")).status == 404
        assert (await get(app, path.replace("index.html", "../x"), "DELETE")).status == 404


async def test_head_has_the_get_headers_and_no_body(site: Path) -> None:
    app = static_files(site, cache_control="max-age=60")
    for path in ["/css/site.css", "/", "/data.bin"]:
        got, head = await get(app, path), await get(app, path, "HEAD")
        assert (head.status, head.body) == (200, b"")
        assert dict(h for h in head.headers if h[0] != "date") == dict(
            h for h in got.headers if h[0] != "date"
        )
        assert int(head.headers["content-length"]) == len(got.body) > 0


async def test_a_file_carries_its_type_length_and_validators(site: Path) -> None:
    resp = await get(static_files(site), "/css/site.css")
    assert resp.status == 200 and resp.body == CSS
    assert resp.headers["content-type"] == "text/css; charset=utf-8"
    assert resp.headers["content-length"] == str(len(CSS))
    assert resp.headers["etag"].startswith('"')  # strong: the file is older than a second
    assert "last-modified" in resp.headers
    assert resp.headers["accept-ranges"] == "bytes"
    assert "content-encoding" not in resp.headers
    assert (await get(static_files(site), "/data.bin")).headers[
        "content-type"
    ] == "application/octet-stream"


async def test_conditional_requests_and_ranges_apply(site: Path) -> None:
    app = static_files(site, cache_control="public, max-age=600")
    first = await get(app, "/data.bin")
    etag = first.headers["etag"]
    again = await get(app, "/data.bin", if_none_match=etag)
    assert (again.status, again.body, again.headers["etag"]) == (304, b"", etag)
    assert again.headers["cache-control"] == "public, max-age=600"  # RFC 9110 §15.4.5
    part = await get(app, "/data.bin", range="bytes=10-19")
    assert (part.status, part.body) == (206, first.body[10:20])
    assert part.headers["content-range"] == f"bytes 10-19/{len(first.body)}"
    assert (await get(app, "/data.bin", if_match='"other"')).status == 412


@pytest.mark.parametrize(
    ("cache_control", "expected"),
    [
        (None, {"/css/site.css": None, "/assets/logo.svg": None, "/": None}),
        (
            "public, max-age=3600",
            {
                "/css/site.css": "public, max-age=3600",
                "/assets/logo.svg": "public, max-age=3600",
                "/": "public, max-age=3600",
            },
        ),
        (
            lambda path: "immutable" if path.startswith("assets/") else f"no-cache; {path}",
            {
                "/css/site.css": "no-cache; css/site.css",
                "/assets/logo.svg": "immutable",
                "/": "no-cache; index.html",
                "/docs/": "no-cache; docs/index.html",
            },
        ),
        (lambda path: None, {"/css/site.css": None}),
    ],
    ids=["none", "one-value", "by-path", "function-none"],
)
async def test_cache_control_is_configurable(
    site: Path, cache_control: object, expected: dict[str, str | None]
) -> None:
    # (the "no-cache; path" values only show which path the function was given)
    app = static_files(site, cache_control=cache_control)  # type: ignore[arg-type]
    got = {p: (await get(app, p)).headers.get("cache-control") for p in expected}
    assert got == expected
    assert (await get(app, "/missing")).headers.get("cache-control") is None


# Accept-Encoding -> the coding of /css/site.css (which has .br and .gz siblings) and of
# /js/app.js (only .gz).
SELECTION = [
    (None, None, None),  # no field: the file as it is
    ("", None, None),  # RFC 9110 §12.5.3: empty means no coding wanted
    ("gzip", "gzip", "gzip"),
    ("br", "br", None),
    ("gzip, br", "br", "gzip"),
    ("gzip, deflate, br, zstd", "br", "gzip"),
    ("BR", "br", None),  # codings are case-insensitive
    ("x-gzip", "gzip", "gzip"),  # RFC 9110 §8.4.1.3
    ("br;q=0.5, gzip", "gzip", "gzip"),
    ("br;q=0.5, gzip;q=0.8", "gzip", "gzip"),
    ("br ; q=0.9 , gzip ; q=0.1", "br", "gzip"),
    ("gzip;q=0, br;q=0", None, None),
    ("*", "br", "gzip"),
    ("*;q=0", None, None),  # nothing accepted, not even identity: sent as it is anyway
    ("br;q=0, *", "gzip", "gzip"),
    ("identity;q=0", None, None),  # no coding it names: the file as it is
    ("gzip;q=0.5, identity", None, None),  # the client prefers it uncompressed
    ("gzip;q=0.5, identity;q=0.5", "gzip", "gzip"),  # a tie goes to the smaller file
    ("gzip, identity;q=0", "gzip", "gzip"),
    ("deflate", None, None),
    ("gzip;q=1.0001", None, None),  # a malformed q refuses its coding
    ("gzip;q=2", None, None),
    ("gzip;q=abc, br", "br", None),
    ("br;q=0.001", "br", None),
    (",, gzip ,", "gzip", "gzip"),  # empty list members are ignored
]


@pytest.mark.parametrize(("accept", "css", "js"), SELECTION)
async def test_a_precompressed_sibling_is_chosen_by_accept_encoding(
    site: Path, accept: str | None, css: str | None, js: str | None
) -> None:
    app = static_files(site)
    headers = {} if accept is None else {"accept_encoding": accept}
    plain = (await get(app, "/css/site.css")).headers["etag"]
    bodies = {None: CSS, "br": CSS_BR, "gzip": CSS_GZ}
    for path, want, body_of in [
        ("/css/site.css", css, bodies),
        ("/js/app.js", js, {None: b"console.log(1)", "gzip": JS_GZ}),
    ]:
        resp = await get(app, path, **headers)
        assert (path, resp.status, resp.headers.get("content-encoding")) == (path, 200, want)
        assert resp.body == body_of[want]
        assert resp.headers["content-length"] == str(len(body_of[want]))
        assert resp.headers["vary"] == "Accept-Encoding"
    resp = await get(app, "/css/site.css", **headers)
    # The original's type, and an ETag of its own for each encoding.
    assert resp.headers["content-type"] == "text/css; charset=utf-8"
    assert (resp.headers["etag"] == plain) == (css is None)


async def test_precompressed_off_sends_the_file_as_it_is_without_vary(site: Path) -> None:
    resp = await get(static_files(site, precompressed=False), "/css/site.css", accept_encoding="br")
    assert (resp.body, resp.headers.get("content-encoding"), resp.headers.get("vary")) == (
        CSS,
        None,
        None,
    )
    # A sibling asked for by name is what it is: a compressed file, not an encoding.
    gz = await get(static_files(site), "/css/site.css.gz", accept_encoding="gzip")
    assert (gz.body, gz.headers["content-type"], gz.headers.get("content-encoding")) == (
        CSS_GZ,
        "application/gzip",
        None,
    )


async def test_a_compressed_response_has_its_own_validators_and_ranges(site: Path) -> None:
    app = static_files(site)
    br = await get(app, "/css/site.css", accept_encoding="br")
    etag = br.headers["etag"]
    same = await get(app, "/css/site.css", accept_encoding="br", if_none_match=etag)
    assert (same.status, same.headers["etag"], same.headers["vary"]) == (
        304,
        etag,
        "Accept-Encoding",
    )
    assert "content-encoding" not in same.headers  # RFC 9110 §15.4.5: no representation metadata
    unsatisfiable = await get(app, "/css/site.css", accept_encoding="br", range="bytes=999-")
    assert (unsatisfiable.status, unsatisfiable.headers.get("content-encoding")) == (416, None)
    # The uncompressed file does not match the br tag: a cache gets the right bytes.
    plain = await get(app, "/css/site.css", if_none_match=etag)
    assert (plain.status, plain.body) == (200, CSS)
    part = await get(app, "/css/site.css", accept_encoding="br", range="bytes=0-3")
    assert (part.status, part.body, part.headers["content-encoding"]) == (206, CSS_BR[:4], "br")
    head = await get(app, "/css/site.css", "HEAD", accept_encoding="gzip")
    assert (head.body, head.headers["content-encoding"]) == (b"", "gzip")
    assert head.headers["content-length"] == str(len(CSS_GZ))


async def test_a_precompressed_sibling_that_is_a_symlink_out_is_not_used(
    site: Path, tmp_path: Path
) -> None:
    (tmp_path / "evil.br").write_bytes(b"not the css")
    os.unlink(site / "css" / "site.css.br")
    os.symlink(tmp_path / "evil.br", site / "css" / "site.css.br")
    resp = await get(static_files(site), "/css/site.css", accept_encoding="br, gzip")
    assert (resp.headers["content-encoding"], resp.body) == ("gzip", CSS_GZ)


def test_configuration_mistakes_fail_when_the_app_is_built(site: Path) -> None:
    with pytest.raises(ValueError, match="is not a directory"):
        static_files(site / "missing")
    with pytest.raises(ValueError, match="is not a directory"):
        static_files(site / "index.html")
    for index in ["", "a/b.html", "..", "x\\y", "x\x00"]:
        with pytest.raises(ValueError, match="must be a file name"):
            static_files(site, index=index)
    with pytest.raises(ValueError):
        static_files(site, cache_control="max-age=1\r\nx-injected: 1")
    with pytest.raises(ValueError, match="cache_control"):
        static_files(site, cache_control=3600)  # type: ignore[arg-type]


async def test_a_file_removed_after_resolution_is_a_404(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    resolve = StaticFiles.resolve

    def resolve_then_remove(self: StaticFiles, raw_path: str, target: str) -> object:
        found = resolve(self, raw_path, target)
        os.unlink(site / "docs" / "guide.txt")
        return found

    monkeypatch.setattr(StaticFiles, "resolve", resolve_then_remove)
    app = static_files(site, cache_control="max-age=31536000, immutable")
    gone = await get(app, "/docs/guide.txt", accept_encoding="gzip")
    assert (gone.status, gone.headers.get("cache-control")) == (404, None)  # never cached


async def test_files_are_served_by_a_real_server(site: Path, serving: Serving) -> None:
    # The native server's file path (sendfile where the runtime can), on each runtime.
    async with serving(app_of(site)) as server, connected(server.port) as c:
        await c.send(b"GET /static/data.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        status, headers, body = await c.response()
        assert (status, body) == (200, (site / "data.bin").read_bytes())
        await c.send(b"GET /static/css/site.css HTTP/1.1\r\nHost: t\r\nAccept-Encoding: br\r\n\r\n")
        status, headers, body = await c.response()
        assert (status, headers["content-encoding"], body) == (200, "br", CSS_BR)
        await c.send(b"GET /static/%2e%2e/secret.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        status, headers, body = await c.response()
        assert status == 404 and SECRET not in body


async def asgi_get(app: object, raw_path: bytes, *headers: tuple[bytes, bytes]) -> TestResponse:
    """One GET through the ASGI adapter, the scope as an ASGI server makes it."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": unquote(raw_path.decode(), errors="surrogateescape"),
        "raw_path": raw_path,
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"t"), *headers],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 9999),
    }
    sent: list[Message] = []
    done = anyio.Event()
    requests = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> Message:
        if requests:
            return requests.pop()
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            done.set()

    with anyio.fail_after(5):
        await to_asgi(app)(scope, receive, send)  # type: ignore[arg-type]
    start = sent[0]
    fields = [(k.decode(), v.decode("latin-1")) for k, v in start["headers"]]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return TestResponse(start["status"], "", Headers(fields), body, "1.1")


async def test_the_asgi_adapter_serves_the_same_answers(site: Path) -> None:
    app = app_of(site)
    resp = await asgi_get(app, b"/static/css/site.css", (b"accept-encoding", b"gzip, br"))
    assert (resp.status, resp.headers["content-encoding"], resp.body) == (200, "br", CSS_BR)
    assert (await asgi_get(app, b"/static/data.bin")).body == (site / "data.bin").read_bytes()
    for path in [b"/static/%2e%2e/secret.txt", b"/static/..%2fsecret.txt", b"/static/.secret"]:
        assert (await asgi_get(app, path)).status == 404
    moved = await asgi_get(app, b"/static/docs")
    assert (moved.status, moved.headers["location"]) == (301, "./docs/")
