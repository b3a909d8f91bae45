"""tophat.testing's clients: TestClient from plain ``def`` tests (asyncio, uvloop, trio) and from
async tests; AsyncTestClient's same request API; the cookie jar's RFC 6265(bis) rules; what
goes on the wire (the request the server parsed, the exact bytes it wrote); close() releasing
the loop and its threads; the README's "Testing your app" example, run as written.

What the server saw is echoed back by the app below (``/echo``), so each assertion is about the
request as parsed on the other side of the in-memory connection, not about the client's state.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
import sniffio

from tophat import (
    LifespanFailed,
    MissingExtra,
    Request,
    ResponseWriter,
    ResponseWritten,
    ServerOpts,
)
from tophat.middleware import chain
from tophat.middleware.identity import Identity
from tophat.router import Router
from tophat.testing import AsyncTestClient, TestClient, parse_responses

ROOT = Path(__file__).resolve().parent.parent
RUNTIMES = ["asyncio", "uvloop", "trio"]


@pytest.fixture
def parser() -> str:
    """One run per test: these tests are about the client; the parsers have their own suites."""
    return "auto"


# -- the app: it echoes what it was sent, and sets the cookies it is told to --------------------


async def echo(req: Request, w: ResponseWriter) -> ResponseWritten:
    w.set_json(
        {
            "method": req.method,
            "target": req.target,
            "path": req.path,
            "scheme": req.scheme,
            "headers": [[n, v] for n, v in req.headers],
            "body": (await req.body()).decode("latin-1"),
            "library": sniffio.current_async_library(),
        }
    )
    return await w.send()


async def set_cookies(req: Request, w: ResponseWriter) -> ResponseWritten:
    """Each ``c`` query value becomes a Set-Cookie field, as written."""
    for value in req.query.get_all("c"):
        w.append_header("set-cookie", value)
    w.set_text("set")
    return await w.send()


async def created(req: Request, w: ResponseWriter) -> ResponseWritten:
    w.set_status(201)
    w.set_json({"got": await req.json()})
    return await w.send()


app = Router()
app.at("GET", "/set", set_cookies)
app.at("GET", "/echo/dir/set", set_cookies)
app.at("POST", "/items", created)
for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PROPFIND"):
    app.at(method, "/*rest", echo)


def header(seen: dict[str, Any], name: str) -> list[str]:
    return [v for n, v in seen["headers"] if n == name]


def cookie_sent(client: TestClient, url: str) -> str | None:
    sent = header(client.get(url if "://" in url else "/echo" + url).json(), "cookie")
    assert len(sent) <= 1
    return sent[0] if sent else None


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


# -- plain synchronous tests, on each runtime ----------------------------------------------------


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_plain_test_posts_json_and_reads_json_text_and_headers(runtime: Any) -> None:
    with TestClient(app, runtime=runtime) as client:
        resp = client.post("/items", json={"name": "hat", "size": 7})
        assert resp.status == 201
        assert resp.headers.get("content-type") == "application/json"
        assert resp.json() == {"got": {"name": "hat", "size": 7}}
        assert resp.text == '{"got": {"name": "hat", "size": 7}}'
        seen = client.get("/echo").json()
    # The app really ran on the runtime asked for.
    assert seen["library"] == ("trio" if runtime == "trio" else "asyncio")


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_app_keeps_one_loop_for_the_clients_life(runtime: Any) -> None:
    loops: list[object] = []

    async def which_loop(req: Request, w: ResponseWriter) -> ResponseWritten:
        if sniffio.current_async_library() == "trio":
            import trio

            loops.append(trio.lowlevel.current_trio_token())
        else:
            loops.append(asyncio.get_running_loop())
        w.set_text("ok")
        return await w.send()

    with TestClient(which_loop, runtime=runtime) as client:
        for _ in range(3):
            assert client.get("/").text == "ok"
    assert len(loops) == 3 and loops[0] is loops[1] is loops[2]


def test_every_method_is_sent_as_named(client: TestClient) -> None:
    for method, call in [
        ("GET", client.get),
        ("POST", client.post),
        ("PUT", client.put),
        ("PATCH", client.patch),
        ("DELETE", client.delete),
        ("OPTIONS", client.options),
    ]:
        assert call("/echo").json()["method"] == method
    assert client.request("PROPFIND", "/echo").json()["method"] == "PROPFIND"
    head = client.head("/echo")
    assert (head.status, head.body) == (200, b"")
    assert int(head.headers["content-length"]) > 0  # a GET's length, no content


def test_params_are_percent_encoded_and_appended_to_the_query(client: TestClient) -> None:
    seen = client.get(
        "/echo?keep=1",
        params={"a": ["1 2", "&="], "u": "café", "flag": True, "none": None, "n": 3},
    ).json()
    assert seen["target"] == "/echo?keep=1&a=1%202&a=%26%3D&u=caf%C3%A9&flag=true&none=&n=3"
    pairs = client.get("/echo", params=[("b", "/"), ("b", "+")]).json()
    assert pairs["target"] == "/echo?b=%2F&b=%2B"


def test_a_path_with_spaces_and_non_ascii_is_percent_encoded(client: TestClient) -> None:
    seen = client.get("/a b/café").json()
    assert (seen["target"], seen["path"]) == ("/a%20b/caf%C3%A9", "/a b/café")


def test_content_data_and_json_bodies_are_framed_and_typed(client: TestClient) -> None:
    raw = client.post("/echo", content=b"\x00\xff").json()
    assert (raw["body"], header(raw, "content-length")) == ("\x00\xff", ["2"])
    assert header(raw, "content-type") == []
    text = client.put("/echo", content="é").json()
    assert text["body"] == "é".encode().decode("latin-1")
    form = client.post("/echo", data={"name": "Ada L", "tag": ["a", "b"]}).json()
    assert form["body"] == "name=Ada+L&tag=a&tag=b"
    assert header(form, "content-type") == ["application/x-www-form-urlencoded"]
    as_json = client.patch("/echo", json=[1, "two"]).json()
    assert (as_json["body"], header(as_json, "content-type")) == ('[1,"two"]', ["application/json"])
    # RFC 9110 §8.6: a POST without content still says Content-Length: 0; a GET does not.
    assert header(client.post("/echo").json(), "content-length") == ["0"]
    assert header(client.get("/echo").json(), "content-length") == []
    with pytest.raises(TypeError, match="at most one"):
        client.post("/echo", json={}, content=b"x")


def test_default_headers_are_sent_and_a_requests_own_replace_them() -> None:
    with TestClient(app, headers={"accept": "text/plain", "x-app": "1"}) as client:
        client.headers.add("x-added", "later")
        seen = client.get("/echo", headers={"ACCEPT": "application/json"}).json()
    assert seen["headers"][0] == ["host", "testserver"]  # RFC 9112 §3.2: Host first
    assert header(seen, "accept") == ["application/json"]
    assert (header(seen, "x-app"), header(seen, "x-added")) == (["1"], ["later"])


def test_the_server_sees_the_base_urls_scheme_and_host() -> None:
    with TestClient(app) as default:
        seen = default.get("/echo").json()
        assert (seen["scheme"], header(seen, "host")) == ("https", ["testserver"])
        other = default.get("http://api.example.com:8080/x").json()
        assert (other["scheme"], header(other, "host")) == ("http", ["api.example.com:8080"])
    with TestClient(app, base_url="http://example.com:80/api/") as prefixed:
        seen = prefixed.get("/v1").json()
        assert (seen["scheme"], header(seen, "host"), seen["path"]) == (
            "http",
            ["example.com"],  # the scheme's default port is left out
            "/api/v1",
        )


def test_response_raw_is_the_exact_bytes_the_server_wrote(client: TestClient) -> None:
    resp = client.post("/items", json={"a": 1})
    assert resp.raw.startswith(b"HTTP/1.1 201 Created\r\n")
    assert resp.raw.endswith(b'\r\n\r\n{"got": {"a": 1}}')
    [again] = parse_responses(resp.raw, ["POST"])
    assert (again.status, again.body, again.headers) == (resp.status, resp.body, resp.headers)
    assert resp.url == "https://testserver/items"


def test_raw_bytes_in_bytes_out_on_the_sync_client(client: TestClient) -> None:
    out = client.raw(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\nGET /echo HTTP/1.0\r\n\r\n")
    first, second = parse_responses(out)
    assert (first.json()["target"], second.headers.get("connection")) == ("/echo", "close")
    assert client.raw([b"GET / HT", b"TP/1.1\r\nHost: x\r\n\r\n"]).startswith(b"HTTP/1.1 200 ")
    refused = client.raw(b"GET / HTTP/1.1\r\n\r\n")  # RFC 9112 §3.2: Host is required
    assert refused.startswith(b"HTTP/1.1 400 ")


def test_a_missing_runtime_library_is_named_with_its_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "trio", None)  # import trio now raises ImportError
    with pytest.raises(MissingExtra, match=r"needs trio: pip install 'tophat\[trio\]'"):
        TestClient(app, runtime="trio")


# -- from inside an async test --------------------------------------------------------------------


@pytest.mark.parametrize("runtime", ["asyncio", "trio"])
async def test_the_sync_client_works_inside_an_async_test(runtime: Any) -> None:
    # The test's own loop (asyncio, uvloop or trio) runs in this thread: the client's loop
    # runs in a thread of its own, and the app's answers come back the same.
    before = set(threading.enumerate())
    with TestClient(app, runtime=runtime) as client:
        assert client.post("/items", json=[1]).json() == {"got": [1]}
        client.get("/set", params={"c": "sid=1; Path=/"})
        assert cookie_sent(client, "/") == "sid=1"
    assert set(threading.enumerate()) == before


async def test_the_async_client_has_the_same_api_and_jar() -> None:
    client = AsyncTestClient(app, base_url="https://testserver")
    resp = await client.post("/items", json={"name": "hat"}, headers={"x-a": "1"})
    assert (resp.status, resp.json()) == (201, {"got": {"name": "hat"}})
    await client.get("/set", params={"c": ["a=1; Path=/", "b=2; Path=/other"]})
    seen = (await client.get("/echo", params={"q": "x y"})).json()
    assert (header(seen, "cookie"), seen["target"]) == (["a=1"], "/echo?q=x%20y")
    assert dict(client.cookies) == {"a": "1", "b": "2"}
    for call in (client.put, client.patch, client.delete, client.options, client.head):
        assert (await call("/echo")).status == 200


async def test_the_async_client_keeps_its_http_default_for_the_wire_tests() -> None:
    client = AsyncTestClient(app)
    seen = (await client.get("/echo")).json()
    assert (seen["scheme"], header(seen, "host")) == ("http", ["testserver"])


# -- close(): the loop, its tasks and the client's threads are released -------------------------


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_close_cancels_what_the_app_left_running_and_joins_the_threads(runtime: Any) -> None:
    events: list[str] = []

    async def forever() -> None:
        try:
            if sniffio.current_async_library() == "trio":
                import trio

                await trio.sleep_forever()
            else:
                await asyncio.Event().wait()
        finally:
            events.append("cancelled")

    async def spawn(req: Request, w: ResponseWriter) -> ResponseWritten:
        if sniffio.current_async_library() == "trio":
            import trio

            # (Not trio.to_thread: trio keeps its idle worker threads, by design, across runs.)
            trio.lowlevel.spawn_system_task(forever)
        else:
            tasks.append(asyncio.get_running_loop().create_task(forever()))
            await asyncio.get_running_loop().run_in_executor(None, time.sleep, 0)
        w.set_text("spawned")
        return await w.send()

    tasks: list[asyncio.Task[None]] = []
    before = set(threading.enumerate())
    client = TestClient(spawn, runtime=runtime)
    assert client.get("/").text == "spawned"
    client.close()
    assert events == ["cancelled"]
    assert set(threading.enumerate()) == before  # the executor's and the trio thread joined
    with pytest.raises(RuntimeError, match="closed"):
        client.get("/")
    client.close()  # idempotent


def test_a_client_dropped_without_close_still_frees_its_thread() -> None:
    before = set(threading.enumerate())
    client = TestClient(app, runtime="trio")
    client.get("/echo")
    assert len(set(threading.enumerate()) - before) == 1
    del client  # the finalizer closes the portal: no ResourceWarning, no thread left
    assert set(threading.enumerate()) == before


def test_calling_the_sync_client_from_the_app_it_runs_is_refused() -> None:
    holder: list[TestClient] = []

    async def reentrant(req: Request, w: ResponseWriter) -> ResponseWritten:
        try:
            holder[0].get("/")
        except RuntimeError as exc:
            w.set_text(str(exc))
        return await w.send()

    for runtime in ("asyncio", "trio"):
        with TestClient(reentrant, runtime=runtime) as client:
            holder[:] = [client]
            assert "use AsyncTestClient" in client.get("/").text
    holder.clear()


# -- the cookie jar -----------------------------------------------------------------------------


def set_cookie(client: TestClient, *values: str, url: str = "/set") -> None:
    assert client.get(url, params={"c": list(values)}).status == 200


def test_path_scopes_a_cookie_to_its_path_on_segment_boundaries(client: TestClient) -> None:
    set_cookie(client, "p=1; Path=/echo/a")
    assert cookie_sent(client, "/a") == "p=1"
    assert cookie_sent(client, "/a/b") == "p=1"
    assert cookie_sent(client, "/ab") is None  # RFC 6265 §5.1.4: not a path-match
    assert cookie_sent(client, "/") is None


def test_without_path_a_cookie_gets_the_default_path(client: TestClient) -> None:
    set_cookie(client, "d=1", "bad=2; Path=relative", url="https://testserver/echo/dir/set")
    # RFC 6265 §5.1.4: the request path up to its last '/'; a Path not starting with '/'
    # means the same (§5.2.4).
    assert cookie_sent(client, "/dir/x") == "d=1; bad=2"
    assert cookie_sent(client, "/other") is None


def test_longer_paths_are_sent_first(client: TestClient) -> None:
    set_cookie(client, "n=root; Path=/", "n=deep; Path=/echo/deep")
    assert cookie_sent(client, "/deep/x") == "n=deep; n=root"
    with pytest.raises(LookupError, match="several cookies named 'n'"):
        client.cookies.get("n")
    assert client.cookies.get("n", path="/echo/deep") == "deep"


def test_max_age_and_expires_expire_a_cookie(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_cookie(
        client,
        "short=1; Max-Age=60; Path=/",
        "dated=1; Expires=Wed, 21 Oct 2099 07:28:00 GMT; Path=/",
        "gone=1; Expires=Wed, 21 Oct 2015 07:28:00 GMT; Path=/",  # in the past: not stored
        "wins=1; Expires=Wed, 21 Oct 2015 07:28:00 GMT; Max-Age=600; Path=/",  # §5.3: Max-Age
    )
    assert cookie_sent(client, "/") == "short=1; dated=1; wins=1"
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 61)
    assert cookie_sent(client, "/") == "dated=1; wins=1"


def test_max_age_zero_deletes_the_cookie(client: TestClient) -> None:
    set_cookie(client, "sid=abc; Path=/", "keep=1; Path=/")
    set_cookie(client, "sid=; Max-Age=0; Path=/")
    assert cookie_sent(client, "/") == "keep=1"
    assert "sid" not in client.cookies


def test_secure_cookies_are_sent_over_https_only() -> None:
    with TestClient(app) as client:  # https://testserver
        set_cookie(client, "s=1; Secure; Path=/", "plain=1; Path=/")
        assert cookie_sent(client, "/") == "s=1; plain=1"
        assert cookie_sent(client, "http://testserver/echo") == "plain=1"
        # RFC 6265bis §5.7: plain http cannot overwrite (or delete) a Secure cookie.
        set_cookie(client, "s=evil; Path=/", "s=; Max-Age=0; Path=/", url="http://testserver/set")
        assert client.cookies["s"] == "1"


def test_plain_http_drops_a_secure_cookie() -> None:
    with TestClient(app, base_url="http://testserver") as client:
        set_cookie(client, "s=1; Secure; Path=/", "plain=1; Path=/")
        assert (list(client.cookies), cookie_sent(client, "/")) == (["plain"], "plain=1")


def test_a_cookie_without_domain_is_host_only_and_domain_widens_it() -> None:
    with TestClient(app, base_url="https://example.com") as client:
        set_cookie(client, "host=1; Path=/", "wide=1; Domain=example.com; Path=/")
        set_cookie(client, "alien=1; Domain=other.org; Path=/")  # not the host's: refused
        assert cookie_sent(client, "/") == "host=1; wide=1"
        assert cookie_sent(client, "https://api.example.com/echo") == "wide=1"
        assert cookie_sent(client, "https://other.org/echo") is None
        # A response from the subdomain cannot delete the parent's host-only cookie.
        set_cookie(client, "host=; Max-Age=0; Path=/", url="https://api.example.com/set")
        assert client.cookies.get("host") == "1"
        # Nor can another site delete a cookie of this domain (deletions are checked too).
        set_cookie(client, "wide=; Max-Age=0; Domain=example.com", url="https://other.org/set")
        assert client.cookies.get("wide") == "1"


@pytest.mark.parametrize(
    ("set_cookie_value", "kept"),
    [
        ("__Host-a=1; Secure; Path=/", True),
        ("__Host-a=1; Path=/", False),  # RFC 6265bis §4.1.3.2: needs Secure,
        ("__Host-a=1; Secure", False),  # Path=/ given,
        ("__Host-a=1; Secure; Path=/echo", False),  # exactly "/",
        ("__Host-a=1; Secure; Path=/; Domain=testserver", False),  # and no Domain
        ("__HOST-a=1; Path=/", False),  # prefixes match without regard to case
        ("__Secure-a=1; Secure; Path=/echo", True),
        ("__Secure-a=1; Path=/", False),  # §4.1.3.1: needs Secure
        ("__secure-a=1; Path=/", False),
    ],
)
def test_cookie_name_prefixes_are_enforced(set_cookie_value: str, kept: bool) -> None:
    with TestClient(app) as client:
        set_cookie(client, set_cookie_value)
        assert (len(client.cookies) == 1) is kept


def test_an_explicit_cookie_header_replaces_the_jars(client: TestClient) -> None:
    set_cookie(client, "jar=1; Path=/")
    seen = client.get("/echo", headers={"cookie": "mine=2"}).json()
    assert header(seen, "cookie") == ["mine=2"]


def test_the_jar_can_be_filled_and_emptied_by_hand() -> None:
    with TestClient(app, cookies={"theme": "dark"}) as client:
        client.cookies.set("__Host-sid", "x", secure=True)
        assert cookie_sent(client, "/") == "theme=dark; __Host-sid=x"
        with pytest.raises(ValueError, match="refused"):
            client.cookies.set("__Host-bad", "x")  # not Secure
        client.cookies.delete("theme")
        assert dict(client.cookies) == {"__Host-sid": "x"}
        client.cookies.clear()
        assert cookie_sent(client, "/") is None


def test_an_identity_login_survives_across_requests_by_default() -> None:
    # Identity's default cookie is __Host-tophat-auth; Secure: kept because the client
    # emulates https://testserver; dropped over plain http, as a browser would.
    ident = Identity(secrets.token_bytes(32))

    async def login(req: Request, w: ResponseWriter) -> ResponseWritten:
        ident.set_auth_token("ada", w)
        w.set_text("in")
        return await w.send()

    async def whoami(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.set_text(ident.authorized_user(req) or "stranger")
        return await w.send()

    async def logout(req: Request, w: ResponseWriter) -> ResponseWritten:
        ident.forget(w)
        w.set_text("out")
        return await w.send()

    router = Router()
    router.post("/login", login)
    router.get("/me", whoami)
    router.post("/logout", logout)
    site = chain(ident.middleware)(router)
    with TestClient(site) as client:
        client.post("/login")
        assert client.get("/me").text == "ada"
        client.post("/logout")
        assert (client.get("/me").text, len(client.cookies)) == ("stranger", 0)
    with TestClient(site, base_url="http://testserver") as plain:
        plain.post("/login")
        assert plain.get("/me").text == "stranger"


# -- the README's example, extracted and run as written -----------------------------------------


def readme_testing_example() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Testing your app\n", 1)[1].split("\n## ", 1)[0]
    [code] = re.findall(r"```python\n(.*?)```", section, re.S)
    return str(code)


def test_the_readme_testing_example_passes_with_pytest(tmp_path: Path) -> None:
    (tmp_path / "test_readme_example.py").write_text(readme_testing_example())
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error", "."],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"\b[3-9] passed\b", done.stdout), done.stdout


def test_the_readme_example_is_checked_for_real() -> None:
    # The extraction finds the section's one python block (a renamed heading fails here).
    code = readme_testing_example()
    assert "TestClient" in code and "def test_" in code
    assert textwrap.dedent(code) == code


def test_the_readme_testing_example_is_mypy_strict_clean(tmp_path: Path) -> None:
    example = tmp_path / "test_readme_example.py"
    example.write_text(readme_testing_example())
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "cache"), example],
        env={**os.environ, "MYPYPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# -- the server's options apply in memory too ------------------------------------------------------


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_handler_timeout_applies_to_the_in_memory_connection(
    runtime: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async def slow(req: Request, w: ResponseWriter) -> ResponseWritten:
        if sniffio.current_async_library() == "trio":
            import trio

            await trio.sleep(5)
        else:
            await asyncio.sleep(5)
        return await w.send()

    started = time.monotonic()
    with TestClient(slow, ServerOpts(handler_timeout=0.05), runtime=runtime) as client:
        assert client.get("/").status == 503
    assert time.monotonic() - started < 2
    assert "has no deadline()" not in caplog.text


# -- lifespan=: the app's startup and shutdown around the client's requests ---------------------


def loop_identity() -> object:
    """The running loop (asyncio, uvloop) or trio run: what a pool is bound to."""
    if sniffio.current_async_library() == "trio":
        import trio

        return trio.lowlevel.current_trio_token()
    return asyncio.get_running_loop()


class Pool:
    """Stands for a database pool: bound to the loop that opened it, with a task of its own."""

    def __init__(self) -> None:
        self.loop = loop_identity()
        self.alive = False
        self.closed = False

    async def keepalive(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        self.alive = True
        task_status.started()
        await anyio.sleep_forever()


class PoolApp:
    """An app whose lifespan opens a Pool, inside a task group (which anyio only lets the task
    that opened it close: setup and teardown must run in one task); ``log`` is what ran."""

    def __init__(self, fail: str | None = None) -> None:
        self.fail = fail
        self.log: list[str] = []
        self.pool: Pool | None = None

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        self.log.append("setup")
        if self.fail == "setup":
            raise ConnectionRefusedError("no database")
        pool = Pool()
        async with anyio.create_task_group() as tasks:
            await tasks.start(pool.keepalive)
            self.pool = pool
            try:
                yield
            finally:
                tasks.cancel_scope.cancel()
        pool.closed = True
        self.log.append("teardown")
        if self.fail == "teardown":
            raise RuntimeError("the pool would not close")

    async def __call__(self, req: Request, w: ResponseWriter) -> ResponseWritten:
        pool = self.pool
        assert pool is not None and not pool.closed
        self.log.append(f"request {req.path}")
        w.set_json({"same_loop": pool.loop is loop_identity(), "alive": pool.alive})
        return await w.send()


def lifespan_failed(excinfo: pytest.ExceptionInfo[LifespanFailed], phase: str) -> BaseException:
    assert excinfo.value.phase == phase
    cause = excinfo.value.__cause__
    assert cause is not None
    return cause


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_sync_clients_lifespan_wraps_its_requests_on_the_apps_loop(runtime: Any) -> None:
    pool_app = PoolApp()
    with TestClient(pool_app, runtime=runtime, lifespan=pool_app.lifespan) as client:
        assert pool_app.log == ["setup"]  # on `with`, before any request
        assert client.get("/a").json() == {"same_loop": True, "alive": True}
        assert client.get("/b").json() == {"same_loop": True, "alive": True}
    assert pool_app.log == ["setup", "request /a", "request /b", "teardown"]
    assert pool_app.pool is not None and pool_app.pool.closed


@pytest.mark.parametrize("runtime", ["asyncio", "trio"])
def test_without_with_the_setup_runs_before_the_first_request_and_teardown_at_close(
    runtime: Any,
) -> None:
    pool_app = PoolApp()
    client = TestClient(pool_app, runtime=runtime, lifespan=pool_app.lifespan)
    assert pool_app.log == []  # nothing runs when the client is made
    assert client.raw(b"GET /raw HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 200 ")
    assert client.get("/a").json() == {"same_loop": True, "alive": True}
    assert pool_app.log == ["setup", "request /raw", "request /a"]
    client.close()
    client.close()  # idempotent: one teardown
    assert pool_app.log == ["setup", "request /raw", "request /a", "teardown"]


@pytest.mark.parametrize("runtime", ["asyncio", "trio"])
def test_a_failing_setup_raises_lifespan_failed_from_with_and_closes_the_client(
    runtime: Any,
) -> None:
    pool_app = PoolApp(fail="setup")
    before = set(threading.enumerate())
    client = TestClient(pool_app, runtime=runtime, lifespan=pool_app.lifespan)
    with pytest.raises(LifespanFailed) as excinfo, client:
        pytest.fail("the block must not run")
    assert isinstance(lifespan_failed(excinfo, "setup"), ConnectionRefusedError)
    assert pool_app.log == ["setup"]
    assert set(threading.enumerate()) == before  # closed: its loop and thread are gone
    with pytest.raises(RuntimeError, match="closed"):
        client.get("/")


@pytest.mark.parametrize("runtime", ["asyncio", "trio"])
def test_a_failing_setup_raises_from_the_first_request_and_the_next_tries_again(
    runtime: Any,
) -> None:
    pool_app = PoolApp(fail="setup")
    client = TestClient(pool_app, runtime=runtime, lifespan=pool_app.lifespan)
    with pytest.raises(LifespanFailed) as excinfo:
        client.get("/a")
    assert str(lifespan_failed(excinfo, "setup")) == "no database"
    pool_app.fail = None  # (the database is up now)
    assert client.get("/b").json() == {"same_loop": True, "alive": True}
    client.close()
    assert pool_app.log == ["setup", "setup", "request /b", "teardown"]


@pytest.mark.parametrize("runtime", ["asyncio", "trio"])
def test_a_failing_teardown_raises_from_close_after_closing_the_loop(runtime: Any) -> None:
    pool_app = PoolApp(fail="teardown")
    before = set(threading.enumerate())
    client = TestClient(pool_app, runtime=runtime, lifespan=pool_app.lifespan)
    assert client.get("/a").status == 200
    with pytest.raises(LifespanFailed) as excinfo:
        client.close()
    assert str(lifespan_failed(excinfo, "teardown")) == "the pool would not close"
    assert pool_app.log == ["setup", "request /a", "teardown"]
    assert set(threading.enumerate()) == before
    with (
        pytest.raises(LifespanFailed),
        TestClient(pool_app, runtime=runtime, lifespan=pool_app.lifespan) as client,
    ):
        client.get("/b")


@pytest.mark.parametrize("runtime", ["asyncio", "trio"])
def test_a_client_dropped_without_close_still_runs_the_teardown(runtime: Any) -> None:
    pool_app = PoolApp()
    client = TestClient(pool_app, runtime=runtime, lifespan=pool_app.lifespan)
    assert client.get("/a").status == 200
    del client  # the finalizer: the teardown in its task, then the loop closed
    assert pool_app.log == ["setup", "request /a", "teardown"]


def test_an_error_in_the_block_is_not_hidden_by_a_failing_teardown() -> None:
    pool_app = PoolApp(fail="teardown")
    with (
        pytest.raises(KeyError, match="the test's own"),
        TestClient(pool_app, lifespan=pool_app.lifespan) as client,
    ):
        client.get("/a")
        raise KeyError("the test's own")
    assert pool_app.log == ["setup", "request /a", "teardown"]  # it ran, and was logged


def test_a_lifespan_that_is_not_callable_is_refused_when_the_client_is_made() -> None:
    with pytest.raises(TypeError, match="lifespan must be a function"):
        TestClient(app, lifespan=object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="lifespan must be a function"):
        AsyncTestClient(app, lifespan=object())  # type: ignore[arg-type]


async def test_the_async_clients_lifespan_wraps_async_with_on_the_tests_loop() -> None:
    pool_app = PoolApp()
    async with AsyncTestClient(pool_app, lifespan=pool_app.lifespan) as client:
        assert pool_app.log == ["setup"]
        assert (await client.get("/a")).json() == {"same_loop": True, "alive": True}
        assert pool_app.pool is not None and pool_app.pool.loop is loop_identity()
    assert pool_app.log == ["setup", "request /a", "teardown"]
    with pytest.raises(RuntimeError, match="closed"):
        await client.get("/b")


async def test_the_async_client_sets_up_once_for_concurrent_first_requests() -> None:
    pool_app = PoolApp()
    client = AsyncTestClient(pool_app, lifespan=pool_app.lifespan)
    statuses: list[int] = []

    async def get(path: str) -> None:
        statuses.append((await client.get(path)).status)

    # (an anyio task group opened in a request's task could not be closed by aclose(): enter
    # it with async with, or as here, in the test's own task, before the concurrent ones)
    await client.__aenter__()
    async with anyio.create_task_group() as tasks:
        for path in ("/a", "/b", "/c"):
            tasks.start_soon(get, path)
    await client.aclose()
    await client.aclose()  # idempotent
    assert statuses == [200, 200, 200]
    assert pool_app.log[0] == "setup" and pool_app.log.count("setup") == 1
    assert pool_app.log[-1] == "teardown" and len(pool_app.log) == 5


async def test_the_async_clients_failing_setup_and_teardown_raise_lifespan_failed() -> None:
    pool_app = PoolApp(fail="setup")
    with pytest.raises(LifespanFailed) as excinfo:
        async with AsyncTestClient(pool_app, lifespan=pool_app.lifespan):
            pytest.fail("the block must not run")
    assert isinstance(lifespan_failed(excinfo, "setup"), ConnectionRefusedError)
    pool_app = PoolApp(fail="teardown")
    client = AsyncTestClient(pool_app, lifespan=pool_app.lifespan)
    assert (await client.get("/a")).status == 200  # set up by the first request
    with pytest.raises(LifespanFailed) as excinfo:
        await client.aclose()
    assert str(lifespan_failed(excinfo, "teardown")) == "the pool would not close"
    assert pool_app.log == ["setup", "request /a", "teardown"]
