"""Identity: log in, say hello to the logged-in user, log out, and log out everywhere.

Run: export TOPHAT_SECRET=$(python -c 'import secrets; print(secrets.token_urlsafe(48))')
     python -m tophat examples.identity:app --port 8000 --workers 2
     curl -i -c jar -X POST '127.0.0.1:8000/login?user=ada'
     curl -i -b jar 127.0.0.1:8000/hello          -> hello, ada
     cp jar stolen                                   (someone copies the cookie)
     curl -i -b jar -X POST 127.0.0.1:8000/logout
     curl -i -b stolen 127.0.0.1:8000/hello       -> hello, stranger (within 5 s, any worker)
     curl -i 127.0.0.1:8000/private               -> 401 (the ready-made "required" middleware)
     curl -i -b jar -X POST 127.0.0.1:8000/logout-everywhere   (every session of that user)

The cookie is ``__Host-tophat-auth``: Secure, Path=/, no Domain, so no other site (a sibling
subdomain, a plain-http page) can set one of that name. Browsers treat 127.0.0.1 and localhost
as secure, so it works on loopback over plain http; curl sends it back regardless. A user name
is 1 to 64 printable characters (422 otherwise): it travels in the cookie on every request, and
a cookie holds at most 4096 bytes (RFC 6265bis §5.6).

Logout holds on the server: each login gets a session id, kept in a SQLite file every worker
(and every machine sharing the file) reads, and signed into the cookie; ``session_check`` asks
the file whether it still stands. Logout deletes that row, "log out everywhere" all the user's
rows. Each worker reuses an answer for ``TOPHAT_SESSION_TTL`` seconds (default 5; 0: ask on
every request). The file is ``TOPHAT_SESSIONS`` (default: ``tophat-identity-sessions.sqlite3``
in the temp directory). With several workers, set ``TOPHAT_SECRET``: without it each worker
makes its own key, and a cookie from one is a stranger's to the others.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import tempfile
from contextlib import closing

from tophat import Glitch, Request, ResponseWriter, ResponseWritten
from tophat.middleware import chain
from tophat.middleware.identity import Identity
from tophat.router import Router


class Sessions:
    """Who is logged in where: one row per login, shared by every process through a file.

    A connection per call keeps it safe across forked workers (a SQLite connection must not
    cross a fork); an application with an async database would give ``session_check`` an
    async function that asks its pool instead.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        with closing(self._connect()) as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, user TEXT NOT NULL)"
            )

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=5, isolation_level=None)  # autocommit

    def start(self, user: str) -> str:
        session = secrets.token_urlsafe(16)
        with closing(self._connect()) as db:
            db.execute("INSERT INTO sessions (id, user) VALUES (?, ?)", (session, user))
        return session

    def stands(self, user: str, session: str) -> bool:
        with closing(self._connect()) as db:
            row = db.execute(
                "SELECT 1 FROM sessions WHERE id = ? AND user = ?", (session, user)
            ).fetchone()
        return row is not None

    def end(self, session: str) -> None:
        with closing(self._connect()) as db:
            db.execute("DELETE FROM sessions WHERE id = ?", (session,))

    def end_all(self, user: str) -> None:
        with closing(self._connect()) as db:
            db.execute("DELETE FROM sessions WHERE user = ?", (user,))


sessions = Sessions(
    os.environ.get("TOPHAT_SESSIONS")
    or os.path.join(tempfile.gettempdir(), "tophat-identity-sessions.sqlite3")
)
# A fresh random key per process when none is configured: logins do not survive a restart.
identity = Identity(
    os.environ.get("TOPHAT_SECRET") or secrets.token_urlsafe(48),
    max_age=3600,
    session_check=sessions.stands,
    session_check_ttl=float(os.environ.get("TOPHAT_SESSION_TTL", "5")),
)
MAX_USER_LENGTH = 64

router = Router()


@router.post("/login")
async def login(req: Request, w: ResponseWriter) -> ResponseWritten:
    user = req.query.get("user") or (await req.text()).strip()
    if not user:
        raise Glitch.bad_request("say who you are: /login?user=NAME")
    if len(user) > MAX_USER_LENGTH or not user.isprintable():
        raise Glitch.unprocessable(
            f"a user name is 1 to {MAX_USER_LENGTH} printable characters "
            f"(got {len(user)} characters)"
        )
    identity.set_auth_token(user, w, session=sessions.start(user))
    w.set_text(f"logged in as {user}")
    return await w.send()


@router.post("/logout")
async def logout(req: Request, w: ResponseWriter) -> ResponseWritten:
    user, session = identity.authorized_user(req), identity.authorized_session(req)
    if user is not None and session is not None:
        sessions.end(session)  # the cookie a client kept is refused from now on
        identity.invalidate(user, session)  # at once on this worker, the others within the ttl
    identity.forget(w)
    w.set_text("logged out")
    return await w.send()


@router.post("/logout-everywhere")
async def logout_everywhere(req: Request, w: ResponseWriter) -> ResponseWritten:
    user = identity.authorized_user(req)
    if user is None:
        raise Glitch(401, "Not logged in", headers={"www-authenticate": 'Cookie realm="login"'})
    sessions.end_all(user)
    identity.invalidate(user)
    identity.forget(w)
    w.set_text(f"logged out everywhere: {user}")
    return await w.send()


@router.get("/hello")
async def hello(req: Request, w: ResponseWriter) -> ResponseWritten:
    user = identity.authorized_user(req)
    w.set_text(f"hello, {user}" if user else "hello, stranger")
    return await w.send()


private = Router()


@private.get("/")
async def private_page(req: Request, w: ResponseWriter) -> ResponseWritten:
    w.set_text(f"secret things for {identity.authorized_user(req)}")
    return await w.send()


router.mount("/private", chain(identity.required)(private))
app = chain(identity.middleware)(router)
