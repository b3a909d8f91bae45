"""The notes app's front-end (examples/notes/static/) driven end to end by headless Chromium.

The app runs as a user runs it, ``python -m tophat examples.notes:app``, on a free loopback
port against an SQLite file in the test's temporary directory, once per request parser (h11 on
asyncio, httptools on uvloop). Chromium reaches it at ``http://127.0.0.1:P``: a secure context
for Chromium, so the app's ``Secure`` login cookie is kept over plain http on loopback.

* the acceptance scenario (issue 16, acceptance 3): sign up, create a note, see it appear in a
  second tab through ``/api/events`` (and its edit and deletion), upload a file and download
  it back byte for byte, log out (the other tab's session is gone too);
* the page's own duties: problem+json errors shown (title and the ``errors`` fields), user text
  escaped (a title of markup stays text), conditional edits (a stale edit is refused with 412
  and shown), "More" through ``next_cursor``, search, delete, log in again;
* what the server sends the page: a strict Content-Security-Policy, ETag revalidation (304)
  and compression, checked on the wire.

Skipped when Chromium or chromedriver is missing (as tests/test_browser.py is); a test that
needs a route the app does not have yet skips naming that route.
"""

from __future__ import annotations

import csv
import gzip
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    # Background tabs keep their timers and streams: the second tab must see events live.
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
]
WAIT = 10.0

_missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
needs_chromium = pytest.mark.skipif(
    bool(_missing),
    reason=f"real-browser tests need {' and '.join(_missing)}: "
    "apt-get install -y chromium chromium-driver",
)
pytestmark = pytest.mark.slow

T = TypeVar("T")


# -- the app, served by the CLI -----------------------------------------------------------------


@dataclass
class App:
    url: str
    port: int
    log: Path
    proc: subprocess.Popen[bytes]

    def request(
        self, method: str, path: str, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """One request on its own connection: (status, headers with lower-case names, body)."""
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nConnection: close\r\n"
        for name, value in (headers or {}).items():
            head += f"{name}: {value}\r\n"
        data = b""
        with socket.create_connection(("127.0.0.1", self.port), timeout=WAIT) as s:
            s.sendall(head.encode("latin-1") + b"\r\n")
            while chunk := s.recv(65536):
                data += chunk
        raw_head, _, body = data.partition(b"\r\n\r\n")
        lines = raw_head.decode("latin-1").split("\r\n")
        fields: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        if fields.get("transfer-encoding") == "chunked":
            body = _unchunk(body)
        return int(lines[0].split(" ")[1]), fields, body

    def has_route(self, method: str, path: str) -> bool:
        """Whether the app has a route for ``path`` (401 without a login): not the 404 or
        405 of the static files mounted at ``/``."""
        return self.request(method, path)[0] not in (404, 405)


def _unchunk(data: bytes) -> bytes:
    out = b""
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return out
        out, data = out + data[:size], data[size + 2 :]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def app(tmp_path: Path, parser: str) -> Iterator[App]:
    """The notes app on a free port (httptools runs on uvloop, h11 on asyncio)."""
    port = _free_port()
    log = tmp_path / "server.log"
    parser = parser if parser in ("h11", "httptools") else "h11"
    runtime = "uvloop" if parser == "httptools" else "asyncio"
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "NOTES_DATABASE_URL": f"sqlite:///{tmp_path / 'data' / 'notes.db'}",
        "NOTES_SECRET_KEY": secrets.token_urlsafe(32),
        "XDG_DATA_HOME": str(tmp_path / "xdg"),  # nothing may land in the real home
    }
    env.pop("NOTES_ALLOWED_ORIGINS", None)
    argv = [
        sys.executable,
        "-m",
        "tophat",
        "examples.notes:app",
        "--host",
        "127.0.0.1",
    ]
    argv += ["--port", str(port), "--parser", parser, "--runtime", runtime]
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while "listening on" not in log.read_text(errors="replace"):
            assert proc.poll() is None, f"the app exited: {log.read_text(errors='replace')}"
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.05)
        yield App(f"http://127.0.0.1:{port}", port, log, proc)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    # Open event streams end cleanly on shutdown: no traceback, no error line, exit 0.
    text = log.read_text(errors="replace")
    assert "Traceback" not in text, text
    assert not re.search(r"\bERROR\b|\bCRITICAL\b", text), text
    assert proc.returncode == 0, text


def needs_route(app: App, method: str, path: str, what: str) -> None:
    if not app.has_route(method, path):
        pytest.skip(f"the notes app has no {method} {path} yet ({what})")


# -- the browser --------------------------------------------------------------------------------


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[webdriver.Chrome]:
    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must never download anything
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")  # fresh and empty
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(WAIT)
    driver.set_script_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: webdriver.Chrome, what: str, check: Callable[[], T | None]) -> T:
    """``check()``'s first truthy value within WAIT seconds; fails naming ``what``."""
    try:
        result = WebDriverWait(
            driver, WAIT, poll_frequency=0.05, ignored_exceptions=[StaleElementReferenceException]
        ).until(lambda _: check())
    except TimeoutException:
        error = driver.find_element(By.ID, "error")
        shown = error.text if error.is_displayed() else "(none)"
        raise AssertionError(f"timed out waiting for {what}; error shown: {shown}") from None
    assert result is not None
    return result


def el(driver: webdriver.Chrome, element_id: str) -> WebElement:
    return driver.find_element(By.ID, element_id)


def open_page(driver: webdriver.Chrome, url: str) -> None:
    driver.get(url + "/")
    wait_for(
        driver,
        "the page to start",
        lambda: driver.find_element(By.CSS_SELECTOR, "body[data-ready]"),
    )


def fill(element: WebElement, text: str) -> None:
    element.clear()
    element.send_keys(text)


def authenticate(driver: webdriver.Chrome, how: str, username: str, password: str) -> None:
    fill(el(driver, "username"), username)
    fill(el(driver, "password"), password)
    el(driver, how).click()


def signed_in_as(driver: webdriver.Chrome, username: str) -> None:
    wait_for(
        driver,
        f"{username} to be signed in",
        lambda: el(driver, "session").is_displayed() and el(driver, "whoami").text == username,
    )


def error_shown(driver: webdriver.Chrome, what: str) -> str:
    """The error box's text, once it shows."""
    return wait_for(
        driver,
        what,
        lambda: el(driver, "error").text if el(driver, "error").is_displayed() else None,
    )


def note_titled(driver: webdriver.Chrome, title: str) -> WebElement | None:
    """The note shown with this title (read in one script call: the list changes live)."""
    found: WebElement | None = driver.execute_script(
        """
        for (const a of document.querySelectorAll("#notes article.note")) {
          if (a.querySelector(".note-title").textContent === arguments[0]) return a;
        }
        return null;
        """,
        title,
    )
    return found


def titles(driver: webdriver.Chrome) -> list[str]:
    shown: list[str] = driver.execute_script(
        'return [...document.querySelectorAll("#notes .note-title")].map((e) => e.textContent);'
    )
    return shown


def shown_editor(note: WebElement) -> WebElement | None:
    """The note's title field, once its editor shows."""
    field = note.find_element(By.CSS_SELECTOR, ".edit-title")
    return field if field.is_displayed() else None


def finished_downloads(downloads: Path) -> list[Path] | None:
    """The files in ``downloads`` once none is still being written."""
    done = list(downloads.iterdir())
    return done if done and not any(p.suffix == ".crdownload" for p in done) else None


def create_note(driver: webdriver.Chrome, title: str, body: str) -> WebElement:
    fill(el(driver, "new-title"), title)
    fill(el(driver, "new-body"), body)
    el(driver, "create").click()
    return wait_for(driver, f"note {title!r} to show", lambda: note_titled(driver, title))


def page_fetch(driver: webdriver.Chrome, method: str, path: str, **init: Any) -> dict[str, Any]:
    """A same-origin fetch from the open page: {status, etag, body}."""
    result: dict[str, Any] = driver.execute_async_script(
        """
        const [method, path, init, done] = arguments;
        fetch(path, {method, credentials: "same-origin", ...init}).then(
          async (r) => done({status: r.status, etag: r.headers.get("etag"), body: await r.text()}),
          (e) => done({error: String(e)}),
        );
        """,
        method,
        path,
        init,
    )
    return result


def page_faults(driver: webdriver.Chrome) -> list[str]:
    """Console lines of a Content-Security-Policy violation or an uncaught script error."""
    log: list[dict[str, Any]] = driver.get_log("browser")  # type: ignore[no-untyped-call]
    lines = [str(e["message"]) for e in log]
    return [m for m in lines if re.search(r"Content Security Policy|Uncaught", m)]


# -- the acceptance scenario ---------------------------------------------------------------------


@needs_chromium
def test_sign_up_see_a_note_live_in_a_second_tab_upload_download_and_log_out(
    app: App, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    needs_route(app, "GET", "/api/events", "server-sent events, for the second tab")
    # Without the file routes, the rest still runs, and the test ends skipped naming them.
    has_files = app.has_route("POST", "/api/notes/1/files")
    driver = browser
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )

    # Tab A: sign up; its event stream opens.
    open_page(driver, app.url)
    assert el(driver, "auth").is_displayed()
    authenticate(driver, "signup", "grace_h", "a long passphrase")
    signed_in_as(driver, "grace_h")
    wait_for(driver, "tab A's event stream", lambda: el(driver, "live").text == "live")
    tab_a = driver.current_window_handle

    # Tab B: the same browser, so the same cookie: signed in without asking, stream open.
    driver.switch_to.new_window("tab")
    tab_b = driver.current_window_handle
    open_page(driver, app.url)
    signed_in_as(driver, "grace_h")
    wait_for(driver, "tab B's event stream", lambda: el(driver, "live").text == "live")
    assert titles(driver) == []
    driver.execute_script("window.sameDocument = true")  # proves B is never reloaded

    # A note made in tab A appears in tab B, pushed over /api/events.
    driver.switch_to.window(tab_a)
    create_note(driver, "Meeting notes", "Tuesday: ship the notes app.")
    driver.switch_to.window(tab_b)
    note_b = wait_for(driver, "the note in tab B", lambda: note_titled(driver, "Meeting notes"))
    assert note_b.find_element(By.CSS_SELECTOR, ".note-body").text == "Tuesday: ship the notes app."
    assert driver.execute_script("return window.sameDocument") is True

    # An edit in tab B reaches tab A (updated), conditionally on the ETag B read.
    note_b.find_element(By.CSS_SELECTOR, ".edit").click()
    title_input = wait_for(driver, "the editor", lambda: shown_editor(note_b))
    fill(title_input, "Meeting notes (final)")
    note_b.find_element(By.CSS_SELECTOR, ".save").click()
    wait_for(driver, "the edit in tab B", lambda: note_titled(driver, "Meeting notes (final)"))
    driver.switch_to.window(tab_a)
    wait_for(driver, "the edit in tab A", lambda: note_titled(driver, "Meeting notes (final)"))

    if has_files:
        upload_and_download(driver, tmp_path, downloads)

    # A deletion in tab A leaves tab B's list too.
    marker = create_note(driver, "Scratch", "to be deleted")
    driver.switch_to.window(tab_b)
    wait_for(driver, "Scratch in tab B", lambda: note_titled(driver, "Scratch"))
    driver.switch_to.window(tab_a)
    marker.find_element(By.CSS_SELECTOR, ".delete").click()
    wait_for(driver, "Scratch gone from tab A", lambda: note_titled(driver, "Scratch") is None)
    driver.switch_to.window(tab_b)
    wait_for(driver, "Scratch gone from tab B", lambda: note_titled(driver, "Scratch") is None)
    assert driver.execute_script("return window.sameDocument") is True

    # Log out in tab A: back to the form, the session ended on the server.
    driver.switch_to.window(tab_a)
    el(driver, "logout").click()
    wait_for(driver, "the login form", lambda: el(driver, "auth").is_displayed())
    assert not el(driver, "app").is_displayed()
    assert page_fetch(driver, "GET", "/api/me")["status"] == 401
    # Tab B shared that session: its next request is refused and it shows the login form.
    driver.switch_to.window(tab_b)
    fill(el(driver, "new-title"), "after logout")
    el(driver, "create").click()
    wait_for(driver, "tab B signed out", lambda: el(driver, "auth").is_displayed())
    assert error_shown(driver, "the 401 problem")
    open_page(driver, app.url)
    assert el(driver, "auth").is_displayed(), "a reload is still signed out"
    assert page_faults(driver) == []
    if not has_files:
        pytest.skip(
            "the notes app has no POST /api/notes/:id/files yet: upload and download "
            "untested (everything else above passed)"
        )


def upload_and_download(driver: webdriver.Chrome, tmp_path: Path, downloads: Path) -> None:
    """Upload a file to the note from this tab; it is listed and downloads back byte for byte."""
    content = "résumé, line 1\nline 2\n".encode() + bytes(range(256))
    upload = tmp_path / "minutes v1.txt"
    upload.write_bytes(content)
    note_a = wait_for(driver, "the note", lambda: note_titled(driver, "Meeting notes (final)"))
    note_a.find_element(By.CSS_SELECTOR, ".file-input").send_keys(str(upload))
    note_a.find_element(By.CSS_SELECTOR, ".upload-button").click()

    def click_link() -> str | None:
        # The list is drawn again when the "files" event arrives: a stale link is looked
        # up afresh (wait_for retries on StaleElementReferenceException).
        links = note_a.find_elements(By.CSS_SELECTOR, ".file-link")
        if not links:
            return None
        name = links[0].text
        links[0].click()
        return name

    name = wait_for(driver, "the uploaded file's link", click_link)
    assert name.endswith(".txt") and "minutes" in name, name
    [saved] = wait_for(driver, "the download", lambda: finished_downloads(downloads))
    assert saved.read_bytes() == content


# -- the page's own duties ------------------------------------------------------------------------


@needs_chromium
def test_page_shows_problems_escapes_text_edits_conditionally_pages_and_searches(
    app: App, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    driver = browser
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    open_page(driver, app.url)

    # The server's 422 problem reaches the page: its title and the fields it names.
    authenticate(driver, "signup", "X", "short")
    shown = error_shown(driver, "the signup problem")
    assert "username" in shown and "password" in shown, shown
    assert not el(driver, "app").is_displayed()
    authenticate(driver, "signup", "ada", "correct horse battery")
    signed_in_as(driver, "ada")
    assert not el(driver, "error").is_displayed(), "a success clears the error"

    # Markup in a note is text: no element made, no script run.
    evil = '<img src=x onerror="window.pwned=1"><b>bold</b>'
    note = create_note(driver, evil, "<script>window.pwned=2</script>\nsecond line")
    assert note.find_elements(By.CSS_SELECTOR, "img, b, script") == []
    assert note.find_element(By.CSS_SELECTOR, ".note-body").get_property("textContent") == (
        "<script>window.pwned=2</script>\nsecond line"
    )
    assert driver.execute_script("return window.pwned") is None

    # A note the server refuses: 422 with the title field named.
    fill(el(driver, "new-title"), "")
    el(driver, "create").click()
    assert "title" in error_shown(driver, "the note problem")

    # A stale edit: the note changes behind the page's back after the editor opened.
    note.find_element(By.CSS_SELECTOR, ".edit").click()
    title_input = wait_for(driver, "the editor", lambda: shown_editor(note))
    changed = driver.execute_async_script(
        """
        const [path, done] = arguments;
        (async () => {
          const r = await fetch(path, {credentials: "same-origin"});
          const note = await r.json();
          const etag = r.headers.get("etag");
          const w = await fetch(path, {method: "PATCH", credentials: "same-origin",
            headers: {"content-type": "application/json", "if-match": etag},
            body: JSON.stringify({title: "changed elsewhere", body: note.body})});
          return [r.status, etag, w.status];
        })().then(done);
        """,
        f"/api/notes/{note.get_attribute('data-id')}",
    )
    assert changed[0] == 200 and changed[1] and changed[2] == 200, changed
    fill(title_input, "my edit")
    note.find_element(By.CSS_SELECTOR, ".save").click()
    assert "Precondition Failed" in error_shown(driver, "the 412 problem")
    assert title_input.is_displayed(), "the edit stays in the form"
    # Cancel shows the current text; a second try, now on the fresh ETag, goes through.
    note.find_element(By.CSS_SELECTOR, ".cancel").click()
    wait_for(driver, "the current title", lambda: note_titled(driver, "changed elsewhere"))
    note.find_element(By.CSS_SELECTOR, ".edit").click()
    title_input = wait_for(driver, "the editor again", lambda: shown_editor(note))
    assert title_input.get_property("value") == "changed elsewhere"
    fill(title_input, "my edit")
    note.find_element(By.CSS_SELECTOR, ".save").click()
    wait_for(driver, "the saved edit", lambda: note_titled(driver, "my edit"))

    # Pagination: 24 notes in all; the page shows 20, "More" fetches the rest via next_cursor.
    made = driver.execute_async_script(
        """
        const done = arguments[0];
        (async () => {
          for (let i = 0; i < 23; i++) {
            const r = await fetch("/api/notes", {method: "POST", credentials: "same-origin",
              headers: {"content-type": "application/json"},
              body: JSON.stringify({title: `bulk ${i}`, body: i % 2 ? "odd" : "even"})});
            if (r.status !== 201) return r.status;
          }
          return 201;
        })().then(done);
        """
    )
    assert made == 201
    open_page(driver, app.url)
    signed_in_as(driver, "ada")
    wait_for(driver, "the first page", lambda: len(titles(driver)) == 20)
    time.sleep(0.5)  # each note asks for its files: none of that may show an error
    assert not el(driver, "error").is_displayed(), el(driver, "error").text
    assert titles(driver)[:2] == ["bulk 22", "bulk 21"], "newest first"
    assert el(driver, "more").is_displayed()
    el(driver, "more").click()
    wait_for(driver, "the second page", lambda: len(titles(driver)) == 24)
    assert not el(driver, "more").is_displayed()
    assert titles(driver)[-2:] == ["bulk 0", "my edit"]
    assert len(set(titles(driver))) == 24

    # Search: only what matches, then everything again.
    fill(el(driver, "q"), "bulk 1")
    el(driver, "q").submit()
    wait_for(driver, "the search", lambda: len(titles(driver)) == 11)  # bulk 1, bulk 10..19
    assert all(t.startswith("bulk 1") for t in titles(driver))
    el(driver, "search-clear").click()
    wait_for(driver, "the whole list", lambda: len(titles(driver)) == 20)

    # Delete, then log out and back in: the note stays deleted.
    target = wait_for(driver, "bulk 22", lambda: note_titled(driver, "bulk 22"))
    target.find_element(By.CSS_SELECTOR, ".delete").click()
    wait_for(driver, "the deletion", lambda: note_titled(driver, "bulk 22") is None)
    el(driver, "logout").click()
    wait_for(driver, "the login form", lambda: el(driver, "auth").is_displayed())
    authenticate(driver, "login", "ada", "wrong password")
    assert error_shown(driver, "the 401 problem")
    authenticate(driver, "login", "ada", "correct horse battery")
    signed_in_as(driver, "ada")
    wait_for(driver, "the list", lambda: titles(driver)[:1] == ["bulk 21"])

    # Export: the CSV of every note, as the browser saves it.
    el(driver, "export").click()
    [saved] = wait_for(driver, "the CSV", lambda: finished_downloads(downloads))
    with saved.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["id", "title", "body", "created_at", "updated_at"]
    assert [r[1] for r in rows[1:]] == [f"bulk {i}" for i in (21, *range(20, -1, -1))] + ["my edit"]
    assert rows[-1][2] == "<script>window.pwned=2</script>\nsecond line"
    assert page_faults(driver) == []


# -- what the server sends the page (no browser needed) --------------------------------------------


def test_page_and_assets_carry_a_strict_csp_revalidate_with_etags_and_compress(app: App) -> None:
    status, head, body = app.request("GET", "/")
    assert status == 200
    assert head["content-type"] == "text/html; charset=utf-8"
    assert b'<script src="app.js" defer></script>' in body
    assert b"<script>" not in body and b"style=" not in body, "nothing inline: the CSP forbids it"
    csp = head["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, csp
    assert head["x-content-type-options"] == "nosniff"
    assert head["cache-control"] == "no-cache"

    for path, kind in [("/app.js", "javascript"), ("/app.css", "text/css")]:
        status, head, js = app.request("GET", path)
        assert status == 200 and kind in head["content-type"], (path, head)
        etag = head["etag"]
        # Revalidation: the same tag is a 304 with no body.
        status, head, rest = app.request("GET", path, {"if-none-match": etag})
        assert (status, rest) == (304, b""), (path, head)
        # Compressed for a client that accepts gzip, the same bytes once decoded.
        status, head, packed = app.request("GET", path, {"accept-encoding": "gzip"})
        assert status == 200 and head["content-encoding"] == "gzip", (path, head)
        assert "accept-encoding" in head["vary"].lower()
        assert gzip.decompress(packed) == js
        assert head["etag"] != etag, "a compressed representation has its own tag"
        status, _, _ = app.request(
            "GET", path, {"accept-encoding": "gzip", "if-none-match": head["etag"]}
        )
        assert status == 304

    # The API is not shadowed by the files, and a missing file is the usual 404.
    assert app.request("GET", "/api/me", {"accept": "application/json"})[0] == 401
    assert app.request("GET", "/nope.js")[0] == 404
