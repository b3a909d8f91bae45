"""Accounts and logins: ``/api/signup``, ``/api/login``, ``/api/logout``, ``/api/me``.

A login is a signed cookie (``Identity``) carrying a random session token whose SHA-256 is a
row of the ``sessions`` table. Every request checks that row (``session_check``), so logout,
which deletes it, holds at once on every worker and machine that shares the database: a
copied cookie stops working. (The table keeps the token's hash, so someone who reads the
database cannot log in with what they read.)

Failed logins are counted in the database, per username and per client address, in fixed
windows (``Settings.login_window``): counters in the database hold across workers and
machines, where per-process ones would multiply the allowance by the number of workers.
Past the limit, logins answer 429 with ``Retry-After`` until the window ends; the password
is not even checked then, so a locked-out attacker costs no scrypt. A successful login
clears its username's counter.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
from datetime import timedelta
from typing import Any

from examples.notes.context import Context, current_user
from examples.notes.db import Conflict, now
from examples.notes.passwords import dummy_hash, hash_password, needs_rehash, verify_password
from examples.notes.web import json_object, unauthorized
from tophat import Glitch, Request, ResponseWriter, ResponseWritten
from tophat.router import Router

__all__ = ["routes", "token_hash"]

USERNAME = re.compile(r"[a-z0-9_]{3,32}")
MIN_PASSWORD, MAX_PASSWORD = 8, 1024


def token_hash(token: str) -> str:
    """What the sessions table keeps of a session token."""
    return hashlib.sha256(token.encode()).hexdigest()


def _credentials(body: dict[str, Any], *, new: bool) -> tuple[str, str]:
    """Username and password from the body, or a 422 naming each bad field."""
    errors: list[dict[str, str]] = []
    username, password = body.get("username"), body.get("password")
    if not isinstance(username, str) or (new and not USERNAME.fullmatch(username)):
        errors.append({"field": "username", "message": "3 to 32 of a-z, 0-9 and _"})
    if not isinstance(password, str) or (new and len(password) < MIN_PASSWORD):
        errors.append({"field": "password", "message": f"at least {MIN_PASSWORD} characters"})
    elif len(password) > MAX_PASSWORD:
        errors.append({"field": "password", "message": f"at most {MAX_PASSWORD} characters"})
    if errors:
        raise Glitch.unprocessable(errors)
    assert isinstance(username, str) and isinstance(password, str)
    return username, password


async def _log_in(ctx: Context, user_id: int, username: str, w: ResponseWriter) -> None:
    token = secrets.token_urlsafe(32)
    expires = now() + timedelta(seconds=ctx.settings.session_max_age)
    await ctx.db.create_session(token_hash(token), user_id, expires)
    ctx.identity.set_auth_token(username, w, session=token)


async def signup(req: Request, w: ResponseWriter) -> ResponseWritten:
    ctx = req.data(Context)
    username, password = _credentials(await json_object(req), new=True)
    if await ctx.db.user_by_name(username) is not None:  # (spares a hash; the insert decides)
        raise Glitch.conflict(f"the username {username!r} is taken")
    password_hash = await hash_password(password, ctx.settings.scrypt_n)
    try:
        user = await ctx.db.create_user(username, password_hash)
    except Conflict:
        raise Glitch.conflict(f"the username {username!r} is taken") from None
    await _log_in(ctx, user.id, user.username, w)
    w.set_status(201)
    w.insert_header("location", "/api/me")
    w.set_json({"username": user.username})
    return await w.send()


def _client_address(req: Request) -> str:
    return req.client[0] if req.client is not None else "unknown"


async def _check_limit(ctx: Context, key: str, limit: int) -> None:
    found = await ctx.db.failures(key)
    if found is None:
        return
    count, ends = found
    left = (ends - now()).total_seconds()
    if count >= limit and left > 0:
        # RFC 6585 §4: 429 MAY include Retry-After; here it always does (whole seconds, up).
        raise Glitch(
            429,
            "too many failed logins; try again later",
            headers={"retry-after": str(max(1, math.ceil(left)))},
        )


async def login(req: Request, w: ResponseWriter) -> ResponseWritten:
    ctx = req.data(Context)
    settings = ctx.settings
    username, password = _credentials(await json_object(req), new=False)
    user_key = "user:" + username[:64]
    address_key = "addr:" + _client_address(req)
    await _check_limit(ctx, address_key, settings.login_limit_address)
    await _check_limit(ctx, user_key, settings.login_limit_user)
    user = await ctx.db.user_by_name(username)
    stored = user.password_hash if user is not None else dummy_hash(settings.scrypt_n)
    if not await verify_password(password, stored) or user is None:
        for key in (user_key, address_key):
            await ctx.db.count_failure(key, settings.login_window)
        raise unauthorized(req, "wrong username or password", ctx.identity.cookie_name)
    await ctx.db.clear_failures(user_key)
    if needs_rehash(user.password_hash, settings.scrypt_n):
        await ctx.db.set_password_hash(user.id, await hash_password(password, settings.scrypt_n))
    await _log_in(ctx, user.id, user.username, w)
    w.set_json({"username": user.username})
    return await w.send()


async def logout(req: Request, w: ResponseWriter) -> ResponseWritten:
    """204 whether or not someone was logged in: the client's state is the same after."""
    ctx = req.data(Context)
    identity = ctx.identity
    user, session = identity.authorized_user(req), identity.authorized_session(req)
    if user is not None and session is not None:
        await ctx.db.delete_session(token_hash(session))
        identity.invalidate(user, session)
    identity.forget(w)
    w.set_status(204)
    return await w.send()


async def me(req: Request, w: ResponseWriter) -> ResponseWritten:
    user = await current_user(req)
    w.set_json({"username": user.username})
    return await w.send()


def routes(router: Router) -> None:
    router.post("/api/signup", signup)
    router.post("/api/login", login)
    router.post("/api/logout", logout)
    router.get("/api/me", me)
