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
foreign-key cookie is simply "anonymous" (never a 500), the reason logged at debug level.

The cookie is named ``__Host-tophat-auth`` by default (``__Secure-`` or no prefix when the
attributes forbid ``__Host-``; see :class:`Identity`), so no sibling subdomain or plain-http
page can plant one beside it. Should a request still carry several cookies of that name that
verify for *different* users (cookie tossing), nobody is logged in, and one line is logged at
info level per such request.

Keys are refused at construction when shorter than 32 bytes or predictable: a conservative
entropy estimate (repeats, sequences, keyboard runs and placeholder words count for a few
bits) must reach 128 bits. It catches patterns, not every human-made phrase: generate keys.

Cross-site use (a page on another site calling this API with credentials) needs
``same_site="none"`` (which requires ``secure=True``) and, under Chromium's third-party-cookie
blocking, ``partitioned=True`` (CHIPS). ``forget`` repeats every attribute, or a partitioned
cookie would survive logout.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import timedelta
from email.utils import formatdate
from http.cookies import CookieError, Morsel
from typing import Literal

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from tophat.glitch import Glitch
from tophat.http.endpoint import Endpoint
from tophat.http.request import Request
from tophat.http.writer import ResponseWriter, ResponseWritten
from tophat.middleware import Middleware, vary_hook
from tophat.middleware._key_strength import key_bytes as _key_bytes

__all__ = ["USER_KEY", "Identity"]

log = logging.getLogger("tophat.identity")

#: ``req.ext`` key where ``Identity.middleware`` puts the authorized user (or None).
USER_KEY = "tophat.identity.user"
_SIGNED_AT_KEY = "tophat.identity.signed_at"

# RFC 6265 §6.1: browsers must support at least 4096 bytes per cookie (name, value and
# attributes); Chromium refuses a larger one outright. We refuse it when it is set.
MAX_COOKIE_SIZE = 4096
_VERIFIED_CACHE_SIZE = 1024
# RFC 6265bis §5.6: a user agent ignores an attribute value longer than 1024 octets.
_MAX_ATTRIBUTE_SIZE = 1024
# A browser sends a few cookies of one name at most (one per matching path, domain and
# partition); more are an attack, refused before any signature is checked.
_MAX_SAME_NAME = 8


# RFC 6265bis §4.1.3: user agents store a cookie whose name starts with one of these prefixes
# (matched case-insensitively) only when its attributes satisfy the prefix; otherwise they drop
# it silently. A __Host- cookie cannot be set by a sibling subdomain, a parent domain or a
# plain-http page, so nobody can toss one beside ours.
def _secure_prefix_allowed(secure: bool, path: str, domain: str | None) -> bool:
    return secure


def _host_prefix_allowed(secure: bool, path: str, domain: str | None) -> bool:
    return secure and path == "/" and not domain


_PREFIXES: dict[str, tuple[str, Callable[[bool, str, str | None], bool]]] = {
    # prefix (lower-case): (what it requires, in words; the check)
    "__secure-": ("secure=True", _secure_prefix_allowed),
    "__host-": ("secure=True, path='/' and no domain", _host_prefix_allowed),
}
_DEFAULT_NAME = "tophat-auth"


def _default_cookie_name(secure: bool, path: str, domain: str | None) -> str:
    """The strongest prefix the attributes allow: __Host-, else __Secure-, else none."""
    for prefix in ("__Host-", "__Secure-"):
        if _PREFIXES[prefix.lower()][1](secure, path, domain):
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

    Raises:
        ValueError: for an empty, short or predictable key (see ``_key_strength.py``),
            ``same_site="none"`` or ``partitioned`` without ``secure``, a bad cookie name, a
            prefixed name whose attributes forbid the prefix, or a path or domain over 1024
            bytes.
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
    ) -> None:
        keys = [secret_key] if isinstance(secret_key, str | bytes) else list(secret_key)
        if not keys:
            raise ValueError("Identity needs at least one secret key")
        key_bytes = [_key_bytes(k) for k in keys]
        if same_site not in ("lax", "strict", "none"):
            raise ValueError("same_site must be 'lax', 'strict' or 'none'")
        if same_site == "none" and not secure:
            raise ValueError("same_site='none' requires secure=True (browsers reject it otherwise)")
        if partitioned and not secure:
            raise ValueError("partitioned=True requires secure=True (CHIPS cookies must be Secure)")
        if cookie_name is None:
            cookie_name = _default_cookie_name(secure, path, domain)
        for prefix, (requires, allowed) in _PREFIXES.items():
            if cookie_name.lower().startswith(prefix) and not allowed(secure, path, domain):
                raise ValueError(
                    f"cookie_name {cookie_name!r} has the {prefix!r} prefix, which requires "
                    f"{requires} (RFC 6265bis §4.1.3; browsers drop the cookie otherwise): "
                    "change those options or leave cookie_name out to get the default"
                )
        for attribute, value in (("path", path), ("domain", domain or "")):
            if len(value.encode()) > _MAX_ATTRIBUTE_SIZE:
                raise ValueError(
                    f"{attribute} is over {_MAX_ATTRIBUTE_SIZE} bytes: browsers ignore such an "
                    "attribute (RFC 6265bis §5.6), so the cookie would not be scoped as asked"
                )
        probe: Morsel[str] = Morsel()
        try:
            probe.set(cookie_name, "", "")
        except CookieError:
            raise ValueError(
                f"cookie_name {cookie_name!r} is not a valid cookie name; use letters, digits "
                "and '-' or '_' (e.g. 'auth')"
            ) from None
        self.cookie_name = cookie_name
        self.max_age = int(max_age.total_seconds()) if isinstance(max_age, timedelta) else max_age
        if self.max_age <= 0:
            raise ValueError("max_age must be positive")
        self.path = path
        self.domain = domain
        self.secure = secure
        self.http_only = http_only
        self.same_site = same_site
        self.partitioned = partitioned
        self.rolling = rolling
        # Cookies whose signature verified: value -> (user, signed at). Bounded, least recently
        # used dropped first; only genuine cookies enter, so clients cannot fill it with junk.
        self._verified: OrderedDict[str, tuple[str, float]] = OrderedDict()
        # itsdangerous takes keys oldest to newest and signs with the last one.
        self._serializer = URLSafeTimedSerializer(
            list(reversed(key_bytes)),
            salt=salt,
            signer_kwargs={"digest_method": hashlib.sha256},
        )

    # -- cookies ------------------------------------------------------------------------------

    def _set_cookie(self, w: ResponseWriter, value: str, max_age: int) -> None:
        morsel: Morsel[str] = Morsel()
        morsel.set(self.cookie_name, value, value)
        morsel["path"] = self.path
        if self.domain:
            morsel["domain"] = self.domain
        morsel["max-age"] = str(max_age)
        # Expires too, for old clients; a removal dates it at the epoch (RFC 6265 §3.1).
        morsel["expires"] = formatdate(time.time() + max_age if max_age else 0, usegmt=True)
        morsel["secure"] = self.secure
        morsel["httponly"] = self.http_only
        morsel["samesite"] = self.same_site.capitalize()
        header = morsel.OutputString()
        if self.partitioned:
            header += "; Partitioned"  # CHIPS; http.cookies knows it only from Python 3.14
        if len(header.encode()) > MAX_COOKIE_SIZE:
            raise ValueError(
                f"the identity cookie would be {len(header)} bytes; browsers drop cookies over "
                f"{MAX_COOKIE_SIZE} bytes, so keep the user identifier short"
            )
        # One Set-Cookie per name per response (RFC 6265 §4.1.1): a logout after a rolling
        # refresh, or a second login, replaces what this response already carried.
        h = w.response.headers
        others = [v for v in h.get_all("set-cookie") if not v.startswith(self.cookie_name + "=")]
        h.remove("set-cookie")
        for value in [*others, header]:
            h.add("set-cookie", value)

    def set_auth_token(self, user: str, w: ResponseWriter) -> None:
        """Log ``user`` in: set the signed cookie on the response."""
        if not isinstance(user, str) or not user:
            raise ValueError("user must be a non-empty string")
        self._set_cookie(w, self._serializer.dumps(user), self.max_age)

    def forget(self, w: ResponseWriter) -> None:
        """Log out: expire the cookie, with the same name, path, domain and attributes."""
        self._set_cookie(w, "", 0)

    def _cookie_values(self, req: Request) -> list[str]:
        # RFC 6265 §5.4: "name=value" pairs separated by "; ". Several cookies may share our
        # name (other paths, partitioned and not): we try each.
        out = []
        for header in req.headers.get_all("cookie"):
            for pair in header.split(";"):
                name, sep, value = pair.strip().partition("=")
                if sep and name.strip() == self.cookie_name:
                    out.append(value.strip().strip('"'))
        return out

    def _check(self, value: str) -> tuple[str, float] | None:
        """The (user, signed at) a cookie value proves, or None (the reason logged at debug)."""
        verified = self._verified
        hit = verified.get(value)
        if hit is not None:
            # A cookie whose signature we checked before: only its age can have changed.
            # (Checking the HMAC, base64 and JSON again cost half of a request's time.)
            if 0 <= time.time() - hit[1] <= self.max_age:
                verified.move_to_end(value)
                return hit
            del verified[value]
            log.debug("identity cookie expired")
            return None
        try:
            user, signed_at = self._serializer.loads(
                value, max_age=self.max_age, return_timestamp=True
            )
        except SignatureExpired:
            log.debug("identity cookie expired")
        except BadSignature:
            log.debug("identity cookie has a bad signature (tampered, truncated or old key)")
        except Exception as exc:  # malformed payloads must never become a 500
            log.debug("identity cookie could not be read: %r", exc)
        else:
            if isinstance(user, str) and user:
                verified[value] = hit = (user, signed_at.timestamp())
                if len(verified) > _VERIFIED_CACHE_SIZE:
                    verified.popitem(last=False)
                return hit
            log.debug("identity cookie holds no user")
        return None

    def _verify(self, req: Request) -> tuple[str | None, float]:
        # Cookie tossing: a sibling subdomain, a parent domain or a plain-http page of this
        # host can set a cookie of our name (the Cookie header says nothing of where a cookie
        # came from, RFC 6265bis §8.6), with a longer Path so that it is sent first. Taking the
        # first valid one would log a victim in as the attacker. Cookies that verify but name
        # different users are ambiguous: nobody is logged in. One that does not verify names
        # nobody and is ignored (so a tossed junk cookie cannot log anyone out).
        values = self._cookie_values(req)
        if len(values) == 1:  # the usual case: nothing to compare
            return self._check(values[0]) or (None, 0.0)
        if len(values) > _MAX_SAME_NAME:
            log.info(
                "identity ambiguous: %d cookies named %s (more than %d); treated as anonymous",
                len(values),
                self.cookie_name,
                _MAX_SAME_NAME,
            )
            return None, 0.0
        found: dict[str, float] = {}
        for value in values:
            hit = self._check(value)
            if hit is not None:
                found[hit[0]] = max(hit[1], found.get(hit[0], 0.0))  # the newest login
        if len(found) > 1:
            log.info(
                "identity ambiguous: %d valid cookies named %s name %d different users "
                "(cookie tossing?); treated as anonymous",
                len(values),
                self.cookie_name,
                len(found),
            )
            return None, 0.0
        for user, signed_at in found.items():
            return user, signed_at
        return None, 0.0

    def authorized_user(self, req: Request) -> str | None:
        """The logged-in user, or None. (Cached on the request once read.)"""
        if _SIGNED_AT_KEY not in req.ext:
            req.ext[USER_KEY], req.ext[_SIGNED_AT_KEY] = self._verify(req)
        user: str | None = req.ext[USER_KEY]
        return user

    # -- middleware ---------------------------------------------------------------------------

    @property
    def middleware(self) -> Middleware:
        """Reads the identity for every request: ``identity.authorized_user(req)`` in
        endpoints then costs nothing more.

        Adds ``Vary: Cookie`` (the response depends on who asks) and, with ``rolling``,
        re-issues an ageing cookie.
        """

        def wrap(endpoint: Endpoint) -> Endpoint:
            async def identity_endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
                user = self.authorized_user(req)
                w.before_send(_vary_cookie)  # at send time: the endpoint cannot drop it
                if user is not None and self.rolling:
                    signed_at: float = req.ext[_SIGNED_AT_KEY]
                    if time.time() - signed_at > self.max_age / 2:
                        self.set_auth_token(user, w)
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
