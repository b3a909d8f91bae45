"""Identity: who is logged in, kept in a signed, timestamped cookie (itsdangerous).

::

    # Keys: random, from the environment; make one with
    #   python -c 'import secrets; print(secrets.token_urlsafe(32))'
    identity = Identity([os.environ["AUTH_KEY"], os.environ["AUTH_KEY_PREVIOUS"]], max_age=3600)
    app = chain(identity.middleware)(router)

    async def login(req, w):
        identity.set_auth_token("ada", w)
        ...
    async def hello(req, w):
        user = identity.authorized_user(req)  # None when anonymous (read once per request)

Secure by default: ``HttpOnly``, ``Secure``, ``SameSite=Lax``. Expiry is enforced on the server
from the signed timestamp, whatever the browser sends back; a tampered, truncated, expired or
foreign-key cookie is simply "anonymous" (never a 500), the reason logged at debug level. The
cookie is written with ``ResponseWriter.set_cookie`` / ``delete_cookie`` and read from
``req.cookies`` (``tophat/http/cookies.py``): one cookie writer, one set of checks.

The cookie is named ``__Host-tophat-auth`` by default (``__Secure-`` or no prefix when the
attributes forbid ``__Host-``; see :class:`Identity`), so no sibling subdomain or plain-http
page can plant one beside it. Should a request still carry several cookies of that name that
verify for *different* users (cookie tossing), nobody is logged in, and one line is logged at
info level per such request.

Stateless by default: a signed cookie stays valid until it expires, even after ``forget``
(someone who copied it can replay it). For logout that holds, give a ``session_check``: login
puts a session token of yours in the signed cookie (``set_auth_token(user, w,
session=...)``), and every request's ``(user, session)`` is checked against your store (a
session table, a per-user session version for "log out everywhere"), which every worker and
machine shares. Verdicts are cached per worker for ``session_check_ttl`` seconds (0: ask
every time), in a bounded LRU, so the store is asked once per session per ttl.

Keys are refused at construction when shorter than 32 bytes or predictable: a conservative
entropy estimate (repeats, sequences, keyboard runs and placeholder words count for a few
bits) must reach 128 bits. It catches patterns, not every human-made phrase: generate keys.

Cross-site use (a page on another site calling this API with credentials) needs
``same_site="none"`` (which requires ``secure=True``) and, under Chromium's third-party-cookie
blocking, ``partitioned=True`` (CHIPS). ``forget`` repeats every attribute, or a partitioned
cookie would survive logout.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Literal

from tophat.glitch import Glitch
from tophat.http.cookies import MAX_COOKIE_SIZE, prefix_problem, set_cookie_line
from tophat.http.endpoint import Endpoint
from tophat.http.request import Request
from tophat.http.writer import ResponseWriter, ResponseWritten
from tophat.middleware import Middleware, vary_hook
from tophat.middleware._identity_logins import Login, SignedLogins, Verdicts
from tophat.middleware._key_strength import key_bytes as _key_bytes

__all__ = ["MAX_COOKIE_SIZE", "SESSION_KEY", "USER_KEY", "Identity", "SessionCheck"]

log = logging.getLogger("tophat.identity")

#: ``req.ext`` key where ``Identity.middleware`` puts the authorized user (or None).
USER_KEY = "tophat.identity.user"
#: ``req.ext`` key of the authorized user's session token (None without one).
SESSION_KEY = "tophat.identity.session"
_SIGNED_AT_KEY = "tophat.identity.signed_at"

#: ``check(user, session)``: True while that login stands, False once revoked. Sync or async.
SessionCheck = Callable[[str, str], bool | Awaitable[bool]]
_DEFAULT_NAME = "tophat-auth"
_ANONYMOUS = (None, 0.0, None)


def _default_cookie_name(secure: bool, path: str, domain: str | None) -> str:
    """The strongest prefix the attributes allow (RFC 6265bis §4.1.3): __Host-, else
    __Secure-, else none."""
    for prefix in ("__Host-", "__Secure-"):
        if prefix_problem(prefix, secure=secure, path=path, domain=domain) is None:
            return prefix + _DEFAULT_NAME
    return _DEFAULT_NAME


_vary_cookie = vary_hook("Cookie")  # built once: the per-request hook checks no name


class Identity:
    """Signed-cookie identity.

    Args:
        secret_key: a key, or a list of keys *newest first*: the first signs, every one
            verifies (rotate by putting the new key in front and dropping the oldest later).
        cookie_name: the cookie's name. By default the strongest prefix the attributes
            allow (RFC 6265bis §4.1.3), so that no other site can set a cookie of that name:

            ===================================================  ==========================
            attributes                                           default name
            ===================================================  ==========================
            ``secure=True``, ``path="/"``, no ``domain`` (the    ``__Host-tophat-auth``
            defaults)
            ``secure=True`` with another path or a domain        ``__Secure-tophat-auth``
            ``secure=False`` (plain-http development)            ``tophat-auth``
            ===================================================  ==========================

            The effective name is ``identity.cookie_name``. A name you give that starts with
            ``__Host-`` or ``__Secure-`` (any case) must have the attributes its prefix
            requires, or browsers would drop the cookie without a word.
        max_age: how long a login lasts (seconds or a timedelta); enforced on the server.
        path, domain: cookie scope.
        secure, http_only, same_site, partitioned: cookie attributes (see the module doc).
        salt: namespaces the signature, so another itsdangerous use of the same key cannot
            mint identity cookies.
        rolling: re-issue the cookie when more than half of ``max_age`` has passed, so active
            users stay logged in.
        session_check: ``check(user, session) -> bool`` (or an async one): True while the
            login stands. With it, every login must carry ``session=`` and a cookie without
            one is anonymous; a check that returns anything but a true value refuses the
            login, and one that raises fails the request (a 500): a store that cannot
            answer lets nobody in. An async check needs :attr:`middleware` (or
            :attr:`required`) in front of the endpoints that read the user.
        session_check_ttl: seconds a verdict is reused by this worker (0: check on every
            request). A revocation holds everywhere within this time; :meth:`invalidate`
            makes it immediate on the worker that revoked.
        session_cache_size: how many ``(user, session)`` verdicts a worker keeps (LRU).

    Raises:
        ValueError: for an empty, short or predictable key (see ``_key_strength.py``),
            ``same_site="none"`` or ``partitioned`` without ``secure``, a bad cookie name, a
            prefixed name whose attributes forbid the prefix, a path or domain over 1024
            bytes or with characters a cookie attribute cannot hold, a negative ttl or a
            cache size under 1.
    """

    def __init__(
        self,
        secret_key: str | bytes | Sequence[str | bytes],
        *,
        cookie_name: str | None = None,
        max_age: int | timedelta = 86400,
        path: str = "/",
        domain: str | None = None,
        secure: bool = True,
        http_only: bool = True,
        same_site: Literal["lax", "strict", "none"] = "lax",
        partitioned: bool = False,
        salt: str = "tophat.identity",
        rolling: bool = False,
        session_check: SessionCheck | None = None,
        session_check_ttl: float = 5.0,
        session_cache_size: int = 4096,
    ) -> None:
        keys = [secret_key] if isinstance(secret_key, str | bytes) else list(secret_key)
        if not keys:
            raise ValueError("Identity needs at least one secret key")
        key_bytes = [_key_bytes(k) for k in keys]
        if same_site not in ("lax", "strict", "none"):
            raise ValueError("same_site must be 'lax', 'strict' or 'none'")
        if cookie_name is None:
            cookie_name = _default_cookie_name(secure, path, domain)
        self.cookie_name = cookie_name
        self.path = path
        self.domain = domain
        self.secure = secure
        self.http_only = http_only
        self.same_site = same_site
        self.partitioned = partitioned
        # Every rule set_cookie enforces (name, prefix, attributes), checked now rather than
        # at the first login; the ValueError names the rule.
        set_cookie_line(
            cookie_name,
            "",
            path=path,
            domain=domain,
            secure=secure,
            httponly=http_only,
            samesite=same_site,
            partitioned=partitioned,
        )
        self.max_age = int(max_age.total_seconds()) if isinstance(max_age, timedelta) else max_age
        if self.max_age <= 0:
            raise ValueError("max_age must be positive")
        self.rolling = rolling
        self.session_check = session_check
        self._verdicts = Verdicts(session_check_ttl, session_cache_size)
        self._logins = SignedLogins(key_bytes, salt=salt, max_age=self.max_age)

    # -- cookies ------------------------------------------------------------------------------

    def set_auth_token(self, user: str, w: ResponseWriter, *, session: str | None = None) -> None:
        """Log ``user`` in: set the signed cookie on the response.

        Args:
            session: your token for this login (a session id your store keeps, or a per-user
                session version), signed into the cookie and passed to ``session_check``.
                Required when there is a ``session_check``.

        Raises:
            ValueError: for an empty user or session, a missing session, or a cookie over
                4096 bytes.
        """
        if not isinstance(user, str) or not user:
            raise ValueError("user must be a non-empty string")
        if session is None and self.session_check is not None:
            raise ValueError(
                "this Identity has a session_check: pass session= (the token your check "
                "looks up) to set_auth_token"
            )
        if session is not None and (not isinstance(session, str) or not session):
            raise ValueError("session must be a non-empty string")
        token = self._logins.sign(user, session)
        size = len(self.cookie_name) + len(token)
        if size > MAX_COOKIE_SIZE:  # RFC 6265bis §5.6: browsers ignore a larger cookie
            raise ValueError(
                f"the identity cookie would be {size} bytes (name and value); browsers drop "
                f"cookies over {MAX_COOKIE_SIZE} bytes, so keep the user identifier and the "
                "session short"
            )
        # Expires too, for clients that know only Expires.
        w.set_cookie(
            self.cookie_name,
            token,
            max_age=self.max_age,
            expires=time.time() + self.max_age,
            path=self.path,
            domain=self.domain,
            secure=self.secure,
            httponly=self.http_only,
            samesite=self.same_site,
            partitioned=self.partitioned,
        )

    def forget(self, w: ResponseWriter) -> None:
        """Log out: expire the cookie, with the same name, path, domain and attributes.

        With a ``session_check``, also revoke the session in your store (and call
        :meth:`invalidate`): the cookie a client copied stays signed until it expires.
        """
        w.delete_cookie(
            self.cookie_name,
            path=self.path,
            domain=self.domain,
            secure=self.secure,
            httponly=self.http_only,
            samesite=self.same_site,
            partitioned=self.partitioned,
        )

    def invalidate(self, user: str, session: str | None = None) -> None:
        """Drop this worker's cached verdicts for ``user`` (one ``session``, or all), so a
        revocation you just stored holds here on the next request. Other workers see it
        within ``session_check_ttl``."""
        self._verdicts.drop(user, session)

    # -- server-side revocation ---------------------------------------------------------------

    def _start(self, req: Request) -> tuple[Login | None, tuple[str, str] | None]:
        """The login the cookies prove, and the (user, session) the check must still be asked
        about (None: no check, or a verdict cached). A refused login comes back as None."""
        login = self._logins.among(req.cookies.get_all(self.cookie_name), self.cookie_name)
        if login is None or self.session_check is None:
            return login, None
        if login.session is None:
            log.debug("identity cookie carries no session, and a session_check is set")
            return None, None
        key = (login.user, login.session)
        verdict = self._verdicts.get(key)
        if verdict is None:
            return login, key
        return (login if verdict else None), None

    def _settle(
        self, req: Request, login: Login | None, key: tuple[str, str] | None, result: object
    ) -> None:
        if key is not None and not self._verdicts.put(key, result):
            login = None
        req.ext[USER_KEY], req.ext[_SIGNED_AT_KEY], req.ext[SESSION_KEY] = login or _ANONYMOUS

    async def _resolve(self, req: Request) -> None:
        """Read the identity into ``req.ext``, awaiting an async session check."""
        if _SIGNED_AT_KEY in req.ext:
            return
        login, key = self._start(req)
        result: object = None
        check = self.session_check
        if key is not None and check is not None:
            result = check(*key)
            if inspect.isawaitable(result):
                result = await result
        self._settle(req, login, key, result)

    def authorized_user(self, req: Request) -> str | None:
        """The logged-in user, or None. (Cached on the request once read.)

        Raises:
            RuntimeError: when an async ``session_check`` has not run for this request
                (put :attr:`middleware` in front of the endpoint).
        """
        if _SIGNED_AT_KEY not in req.ext:
            login, key = self._start(req)
            result: object = None
            check = self.session_check
            if key is not None and check is not None:
                result = check(*key)
                if inspect.isawaitable(result):
                    if inspect.iscoroutine(result):
                        result.close()  # it will never be awaited: no "never awaited" warning
                    raise RuntimeError(
                        "Identity's session_check is async: put identity.middleware in front "
                        "of this endpoint (it awaits the check before the endpoint runs)"
                    )
            self._settle(req, login, key, result)
        user: str | None = req.ext[USER_KEY]
        return user

    def authorized_session(self, req: Request) -> str | None:
        """The session token of the logged-in user's cookie (None when anonymous or when the
        login carries none): what logout revokes in your store."""
        self.authorized_user(req)
        session: str | None = req.ext[SESSION_KEY]
        return session

    # -- middleware ---------------------------------------------------------------------------

    @property
    def middleware(self) -> Middleware:
        """Reads the identity for every request (awaiting an async ``session_check``):
        ``identity.authorized_user(req)`` in endpoints then costs nothing more.

        Adds ``Vary: Cookie`` (the response depends on who asks) and, with ``rolling``,
        re-issues an ageing cookie.
        """

        def wrap(endpoint: Endpoint) -> Endpoint:
            async def identity_endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
                await self._resolve(req)
                user: str | None = req.ext[USER_KEY]
                w.before_send(_vary_cookie)  # at send time: the endpoint cannot drop it
                if user is not None and self.rolling:
                    signed_at: float = req.ext[_SIGNED_AT_KEY]
                    if time.time() - signed_at > self.max_age / 2:
                        self.set_auth_token(user, w, session=req.ext[SESSION_KEY])
                return await endpoint(req, w)

            return identity_endpoint

        return wrap

    @property
    def required(self) -> Middleware:
        """Like :attr:`middleware`, but answers 401 when nobody is logged in."""
        inner = self.middleware

        def wrap(endpoint: Endpoint) -> Endpoint:
            async def require(req: Request, w: ResponseWriter) -> ResponseWritten:
                if self.authorized_user(req) is None:
                    # RFC 9110 §15.5.2: a 401 MUST carry WWW-Authenticate with a challenge.
                    raise Glitch(
                        401,
                        "Not logged in",
                        headers={"www-authenticate": f'Cookie realm="{self.cookie_name}"'},
                    )
                return await endpoint(req, w)

            return inner(require)

        return wrap
