"""Real-browser proof of CORS and Identity: headless Chromium, driven through WebDriver.

A page on ``http://localhost:P`` calls a tophat API on ``http://127.0.0.1:A``: another origin and
another *site*, so the API's cookie is a third-party cookie. The page (``browser/page.html``) is
served by tophat too, and again on ``http://localhost:Q``, an origin the API does not allow.

The scenario runs in two fresh Chromium profiles:

* third-party cookies allowed (pref ``profile.cookie_controls_mode: 0``);
* Chromium's default policy. In this Chromium (Debian's build, 156) that default is
  ``cookie_controls_mode: 1``, "block third-party cookies", so a cross-site login only sticks
  with ``SameSite=None; Secure; Partitioned`` (CHIPS).

In each, a control API whose identity cookie is ``SameSite=None; Secure`` but *not* partitioned
proves which policy is really in force: it stays logged in only where third-party cookies are
allowed. Chromium treats 127.0.0.1 and localhost as secure contexts, so Secure cookies work over
plain http on loopback. Nothing here touches anything but 127.0.0.1/localhost.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from tophat import (
    Endpoint,
    Glitch,
    Request,
    ResponseWriter,
    ResponseWritten,
    Server,
    start_server,
)
from tophat.middleware import Middleware, chain
from tophat.middleware.cors import cors
from tophat.middleware.identity import Identity
from tophat.router import Router

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
PAGE = Path(__file__).parent / "browser" / "page.html"
TOKEN = "let-me-in"
FAILED_TO_FETCH = "TypeError: Failed to fetch"
# Chromium's pref profile.cookie_controls_mode (content_settings::CookieControlsMode):
# 0 allows third-party cookies, 1 blocks them (this Chromium's default), 2 blocks in incognito.
ALLOW_3PC = 0
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]

_missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
pytestmark = pytest.mark.skipif(
    bool(_missing),
    reason=f"real-browser tests need {' and '.join(_missing)}: "
    "apt-get install -y chromium chromium-driver",
)

T = TypeVar("T")


# -- servers on an asyncio loop of their own, in a background thread -------------------------


class LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="tophat-servers")
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def loop() -> Iterator[LoopThread]:
    lt = LoopThread()
    try:
        yield lt
    finally:
        lt.close()


@dataclass
class Api:
    """One API server: what it holds and every request that reached it (preflights included)."""

    identity: Identity
    items: dict[int, str] = field(default_factory=lambda: {1: "hat"})
    seen: list[tuple[str, str, str | None]] = field(default_factory=list)
    url: str = ""

    def requests_for(self, path: str) -> list[str]:
        return [method for method, p, _ in self.seen if p == path]


def recording(api: Api) -> Middleware:
    def wrap(endpoint: Endpoint) -> Endpoint:
        async def record(req: Request, w: ResponseWriter) -> ResponseWritten:
            api.seen.append((req.method, req.path, req.headers.get("origin")))
            return await endpoint(req, w)

        return record

    return wrap


def api_endpoint(api: Api, page_origin: str, forget_unpartitioned: Identity) -> Endpoint:
    router = Router()
    identity = api.identity

    async def login(req: Request, w: ResponseWriter) -> ResponseWritten:
        user = await req.text()
        identity.set_auth_token(user, w)
        w.set_text(f"logged in as {user}")
        return await w.send()

    async def logout(req: Request, w: ResponseWriter) -> ResponseWritten:
        identity.forget(w)
        w.set_text("logged out")
        return await w.send()

    async def logout_unpartitioned(req: Request, w: ResponseWriter) -> ResponseWritten:
        # The same cookie name, but the removal lacks "Partitioned": what forget() must not do.
        forget_unpartitioned.forget(w)
        w.set_text("logged out?")
        return await w.send()

    async def me(req: Request, w: ResponseWriter) -> ResponseWritten:
        user = identity.authorized_user(req)
        if user is None:
            raise Glitch(401, "not logged in")
        w.set_text(user)
        return await w.send()

    async def list_items(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.insert_header("x-total", str(len(api.items)))
        w.insert_header("x-internal", "not exposed")
        w.set_json(api.items)
        return await w.send()

    async def put_item(req: Request, w: ResponseWriter) -> ResponseWritten:
        if req.headers.get("x-token") != TOKEN:
            raise Glitch(403, "x-token required")
        api.items[req.params["id"]] = await req.text()
        w.set_status(204)
        return await w.send()

    router.post("/login", login)
    router.post("/logout", logout)
    router.post("/logout-unpartitioned", logout_unpartitioned)
    router.get("/me", me)
    router.get("/items", list_items)
    router.put("/items/:id<int>", put_item)
    return chain(
        recording(api),
        cors(
            allow_origins=[page_origin],
            allow_credentials=True,
            allow_methods=["GET", "PUT", "POST"],
            allow_headers=["x-token"],
            expose_headers=["x-total"],
        ),
        identity.middleware,
    )(router)


def page_endpoint() -> Endpoint:
    html = PAGE.read_bytes()
    router = Router()

    async def page(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.insert_header("content-type", "text/html; charset=utf-8")
        w.set_body(html)
        return await w.send()

    router.get("/", page)
    return router


@dataclass
class Site:
    page: str  # the allowed page, on localhost
    foreign_page: str  # the same page on an origin the APIs do not allow
    api: Api  # identity cookie SameSite=None; Secure; Partitioned
    control: Api  # identity cookie SameSite=None; Secure, not partitioned


@pytest.fixture
def site(loop: LoopThread) -> Iterator[Site]:
    servers: list[Server] = []

    def serve(endpoint: Endpoint) -> int:
        server = loop.run(start_server(endpoint, "127.0.0.1", 0))
        servers.append(server)
        return server.port

    try:
        page_port = serve(page_endpoint())
        foreign_port = serve(page_endpoint())
        page_origin = f"http://localhost:{page_port}"
        key = secrets.token_urlsafe(48)
        api = Api(Identity(key, cookie_name="auth", same_site="none", partitioned=True))
        control = Api(Identity(secrets.token_urlsafe(48), cookie_name="ctl", same_site="none"))
        twin = Identity(key, cookie_name="auth", same_site="none")
        for a in (api, control):
            a.url = f"http://127.0.0.1:{serve(api_endpoint(a, page_origin, twin))}"
        yield Site(f"{page_origin}/", f"http://localhost:{foreign_port}/", api, control)
    finally:
        for server in servers:
            loop.run(server.shutdown(grace=1))


# -- the browser ------------------------------------------------------------------------------


def chromium(
    monkeypatch: pytest.MonkeyPatch, profile_dir: Path, cookie_controls_mode: int | None
) -> webdriver.Chrome:
    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must never download anything
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile_dir}")  # a fresh, empty profile
    if cookie_controls_mode is not None:
        options.add_experimental_option(
            "prefs", {"profile.cookie_controls_mode": cookie_controls_mode}
        )
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(10)
    driver.set_script_timeout(10)
    return driver


def call(driver: webdriver.Chrome, url: str, **init: Any) -> dict[str, Any]:
    """fetch(url, init) with credentials from the open page: what the page sees, or the error."""
    result: dict[str, Any] = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "window.call(arguments[0], arguments[1]).then(done);",
        url,
        init,
    )
    return result


def api_cookies(driver: webdriver.Chrome, name: str) -> list[dict[str, Any]]:
    """The browser's cookies called ``name`` for the API host, partitioned ones included."""
    cookies: list[dict[str, Any]] = driver.execute_cdp_cmd("Storage.getCookies", {})["cookies"]
    return [c for c in cookies if c["domain"] == "127.0.0.1" and c["name"] == name]


PROFILES = {
    "third-party-cookies-allowed": ALLOW_3PC,
    "chromium-default-policy": None,
}


@pytest.mark.slow
@pytest.mark.parametrize("profile", list(PROFILES))
def test_cross_site_cors_and_login_in_chromium(
    profile: str, site: Site, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    driver = chromium(monkeypatch, tmp_path / "profile", PROFILES[profile])
    try:
        _scenario(driver, site, third_party_cookies_allowed=profile.endswith("allowed"))
    finally:
        driver.quit()


def _scenario(driver: webdriver.Chrome, site: Site, *, third_party_cookies_allowed: bool) -> None:
    api, origin = site.api, site.page.rstrip("/")
    driver.get(site.page)

    # A credentialed simple request: no preflight, the answer readable, x-total exposed and
    # nothing else beyond the safelisted headers.
    r = call(driver, f"{api.url}/items")
    assert r.get("status") == 200, r
    assert json.loads(r["body"]) == {"1": "hat"}
    assert r["headers"]["x-total"] == "1"
    assert r["headers"]["x-internal"] is None, "x-internal is not exposed"
    assert r["headers"]["content-type"] == "application/json"
    assert api.seen[-1] == ("GET", "/items", origin)
    assert api.requests_for("/items") == ["GET"], "a simple request is not preflighted"

    # A PUT with a custom header: preflighted, then sent with the header.
    r = call(driver, f"{api.url}/items/2", method="PUT", headers={"x-token": TOKEN}, body="cap")
    assert r.get("status") == 204, r
    assert api.requests_for("/items/2") == ["OPTIONS", "PUT"]
    assert api.items[2] == "cap"
    # Without the header the endpoint refuses, and the page can read the refusal.
    r = call(driver, f"{api.url}/items/3", method="PUT", body="scarf")
    assert (r.get("status"), r.get("body")) == (403, "x-token required"), r
    assert 3 not in api.items
    r = call(driver, f"{api.url}/items")
    assert r["headers"]["x-total"] == "2", r

    # Login keeps the user logged in through a Partitioned cookie, whatever the cookie policy.
    r = call(driver, f"{api.url}/me")
    assert (r.get("status"), r.get("body")) == (401, "not logged in"), r
    r = call(driver, f"{api.url}/login", method="POST", body="ada")
    assert (r.get("status"), r.get("body")) == (200, "logged in as ada"), r
    r = call(driver, f"{api.url}/me")
    assert (r.get("status"), r.get("body")) == (200, "ada"), "the partitioned login did not stick"
    [cookie] = api_cookies(driver, "auth")
    assert cookie["partitionKey"]["topLevelSite"] == "http://localhost", cookie
    assert (cookie["sameSite"], cookie["secure"], cookie["httpOnly"]) == ("None", True, True)

    # A removal without "Partitioned" does not reach the partitioned cookie: that is why
    # forget() repeats every attribute. (This proves the logout check below can fail.)
    r = call(driver, f"{api.url}/logout-unpartitioned", method="POST")
    assert r.get("status") == 200, r
    r = call(driver, f"{api.url}/me")
    assert (r.get("status"), r.get("body")) == (200, "ada"), r

    # Logout, then the authenticated request fails.
    r = call(driver, f"{api.url}/logout", method="POST")
    assert (r.get("status"), r.get("body")) == (200, "logged out"), r
    r = call(driver, f"{api.url}/me")
    assert (r.get("status"), r.get("body")) == (401, "not logged in"), "still logged in"
    assert api_cookies(driver, "auth") == [], "the browser kept the cookie"

    # The control: a SameSite=None cookie *without* Partitioned is a plain third-party cookie.
    ctl = site.control
    r = call(driver, f"{ctl.url}/login", method="POST", body="bob")
    assert (r.get("status"), r.get("body")) == (200, "logged in as bob"), r
    r = call(driver, f"{ctl.url}/me")
    stored = api_cookies(driver, "ctl")
    if third_party_cookies_allowed:
        assert (r.get("status"), r.get("body")) == (200, "bob"), (
            "third-party cookies should be allowed in this profile"
        )
        assert [c.get("partitionKey") for c in stored] == [None], stored
        r = call(driver, f"{ctl.url}/logout", method="POST")
        assert r.get("status") == 200, r
        r = call(driver, f"{ctl.url}/me")
        assert (r.get("status"), r.get("body")) == (401, "not logged in"), r
    else:
        assert (r.get("status"), r.get("body")) == (401, "not logged in"), (
            "Chromium's default policy here should block an unpartitioned third-party cookie"
        )
        assert stored == [], "Chromium stored a blocked third-party cookie"

    # A page on an origin the API does not allow: the browser sends the simple request but
    # withholds the answer; it refuses the PUT at the preflight, so the PUT is never sent.
    driver.get(site.foreign_page)
    foreign = site.foreign_page.rstrip("/")
    r = call(driver, f"{api.url}/items")
    assert r == {"error": FAILED_TO_FETCH}
    assert api.seen[-1] == ("GET", "/items", foreign)
    r = call(driver, f"{api.url}/items/4", method="PUT", headers={"x-token": TOKEN}, body="x")
    assert r == {"error": FAILED_TO_FETCH}
    assert api.requests_for("/items/4") == ["OPTIONS"]
    assert 4 not in api.items


# -- an upload through a form, and the download back (issue 15) --------------------------------


@pytest.mark.slow
def test_chromium_uploads_a_file_through_a_form_and_downloads_it(
    loop: LoopThread, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import os
    import time

    from selenium.webdriver.common.by import By

    from examples import upload

    data = os.urandom(3 * 1024 * 1024)  # past the 1 MiB spool threshold: on disk on the way
    source = tmp_path / "résumé 1.bin"
    source.write_bytes(data)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    server = loop.run(start_server(upload.app, "127.0.0.1", 0))
    driver = chromium(monkeypatch, tmp_path / "profile", None)
    try:
        driver.execute_cdp_cmd(
            "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
        )
        driver.get(f"http://127.0.0.1:{server.port}/")
        driver.find_element(By.NAME, "note").send_keys("from chromium")
        driver.find_element(By.NAME, "file").send_keys(str(source))
        driver.find_element(By.TAG_NAME, "button").click()
        # 303 to /files/<name>, sent as an attachment: Chromium downloads it.
        target = downloads / source.name
        deadline = time.monotonic() + 20
        while not (target.is_file() and target.stat().st_size == len(data)):
            assert time.monotonic() < deadline, sorted(p.name for p in downloads.iterdir())
            time.sleep(0.1)
        assert target.read_bytes() == data
        assert (upload.STORE / source.name).read_bytes() == data  # stored under its safe name
    finally:
        driver.quit()
        loop.run(server.shutdown(grace=1))
        (upload.STORE / source.name).unlink(missing_ok=True)
