"""Identity: log in, say hello to the logged-in user, log out (as in the Rust crate's example).

Run: TOPHAT_SECRET=$(python -c 'import secrets; print(secrets.token_urlsafe(48))') \\
     python -m tophat examples.identity:app --port 8000
     curl -i -c jar -X POST '127.0.0.1:8000/login?user=ada'
     curl -i -b jar 127.0.0.1:8000/hello          -> hello, ada
     curl -i -b jar -X POST 127.0.0.1:8000/logout
     curl -i 127.0.0.1:8000/private               -> 401 (the ready-made "required" middleware)

The cookie is ``__Host-tophat-auth``: Secure, Path=/, no Domain, so no other site (a sibling
subdomain, a plain-http page) can set one of that name. Browsers treat 127.0.0.1 and localhost
as secure, so it works on loopback over plain http; curl sends it back regardless. A user name
is 1 to 64 printable characters (422 otherwise): it travels in the cookie on every request, and
a cookie holds at most 4096 bytes (RFC 6265bis §5.6).
"""

from __future__ import annotations

import os
import secrets

from tophat import Glitch, Request, ResponseWriter, ResponseWritten
from tophat.middleware import chain
from tophat.middleware.identity import Identity
from tophat.router import Router

# A fresh random key per process when none is configured: logins do not survive a restart.
identity = Identity(
    os.environ.get("TOPHAT_SECRET") or secrets.token_urlsafe(48),
    max_age=3600,
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
    identity.set_auth_token(user, w)
    w.set_text(f"logged in as {user}")
    return await w.send()


@router.post("/logout")
async def logout(req: Request, w: ResponseWriter) -> ResponseWritten:
    identity.forget(w)
    w.set_text("logged out")
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
