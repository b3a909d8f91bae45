"""The test clients' cookie jar: the standard library's ``http.cookiejar`` plus the rules of
RFC 6265bis that it lacks.

Why the standard library's jar: it already parses ``Set-Cookie`` as browsers do (lenient
attribute parsing, ``Expires`` in the date formats seen in the wild, ``Max-Age`` over
``Expires``), keeps cookies by domain, path and name, forgets them when they expire, deletes one
on ``Max-Age=0`` or a past ``Expires``, path-matches on segment boundaries and sends the longer
paths first (RFC 6265 §5.3, §5.4). What it lacks is added here, in :class:`CookiePolicy6265` and
:class:`CookieJar6265`:

* host-only cookies: one set without ``Domain`` goes back to its own host only (§5.3 step 6;
  the standard library's ``DomainStrictNonDomain`` switch, off by default);
* ``Secure``: set over plain http it is ignored, and plain http cannot replace a ``Secure``
  cookie (RFC 6265bis §5.7, the "secure-only-flag" steps); it is never sent over plain http;
* the ``__Secure-`` and ``__Host-`` name prefixes (RFC 6265bis §4.1.3), matched without regard
  to case as the latest drafts do;
* a ``Path`` that does not start with ``/`` means the default path (RFC 6265 §5.2.4);
* a name and value longer than 4096 octets together are ignored (RFC 6265bis §5.7).

A deletion (``Max-Age=0``, a past ``Expires``) passes the domain check and the ``Secure``
rules too (the standard library applies it before any check). Its ``Secure`` attribute and its
prefix are not looked at: the standard library does not keep them for a deletion.

``SameSite`` does not apply: every request of a test client is same-site.
"""

from __future__ import annotations

import http.cookiejar as cj
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import suppress
from http.client import HTTPResponse
from typing import cast
from urllib.parse import urlsplit

from tophat.http.headers import Headers

__all__ = ["CookieJar6265", "CookiePolicy6265", "Cookies"]

#: RFC 6265bis §5.7: "If the sum of the lengths of the name string and the value string is
#: more than 4096 octets, abort these steps and ignore the set-cookie-string entirely."
MAX_NAME_AND_VALUE = 4096
_SECURE_SCHEMES = ("https", "wss")


def _bare(domain: str) -> str:
    return domain.lstrip(".")


def _domains_match(a: str, b: str) -> bool:
    """Either domain domain-matches the other (RFC 6265bis §5.7, the secure-only steps)."""
    a, b = _bare(a), _bare(b)
    return a == b or a.endswith("." + b) or b.endswith("." + a)


def _path_matches(request_path: str, cookie_path: str) -> bool:
    """RFC 6265 §5.1.4 path-match."""
    if request_path == cookie_path:
        return True
    return request_path.startswith(cookie_path) and (
        cookie_path.endswith("/") or request_path[len(cookie_path)] == "/"
    )


def _default_path(url: str) -> str:
    """RFC 6265 §5.1.4 default-path: the request path up to, not including, its last '/'."""
    path = urlsplit(url).path
    if not path.startswith("/"):
        return "/"
    return path[: path.rfind("/")] or "/"


class CookiePolicy6265(cj.DefaultCookiePolicy):
    """``DefaultCookiePolicy`` with host-only cookies and RFC 6265bis' ``Secure`` and prefix
    rules (see the module doc)."""

    def __init__(self, jar: cj.CookieJar) -> None:
        super().__init__(
            strict_ns_domain=cj.DefaultCookiePolicy.DomainStrictNonDomain,
            secure_protocols=_SECURE_SCHEMES,
        )
        self.jar = jar

    def secure_origin(self, request: urllib.request.Request) -> bool:
        return request.type in _SECURE_SCHEMES

    def set_ok(self, cookie: cj.Cookie, request: urllib.request.Request) -> bool:
        if not super().set_ok(cookie, request):
            return False
        if cookie.secure and not self.secure_origin(request):
            return False  # bis §5.7: a Secure cookie from a non-secure origin is ignored
        if len(cookie.name) + len(cookie.value or "") > MAX_NAME_AND_VALUE:
            return False
        name = cookie.name.lower()
        if name.startswith("__secure-") and not cookie.secure:
            return False  # bis §4.1.3.1: __Secure- requires the Secure attribute
        if name.startswith("__host-") and not (
            cookie.secure
            and not cookie.domain_specified
            and cookie.path_specified
            and cookie.path == "/"
        ):
            return False  # bis §4.1.3.2: __Host- requires Secure, no Domain and Path=/
        return cookie.secure or not self.shadows_secure(cookie, request)

    def delete_ok(self, domain: str, path: str, name: str, request: urllib.request.Request) -> bool:
        """May this response delete the cookie ``(domain, path, name)``? The checks of a set
        that the standard library skips for a deletion: its domain, and bis' secure-only rule."""
        specified = domain.startswith(".")
        probe = cj.Cookie(
            0, name, None, None, False, domain, specified, specified, path, True,
            False, None, True, None, None, {},
        )  # fmt: skip
        return self.set_ok_domain(probe, request) and not self.shadows_secure(probe, request)

    def shadows_secure(self, cookie: cj.Cookie, request: urllib.request.Request) -> bool:
        """RFC 6265bis §5.7: over a non-secure origin, a cookie is ignored when the store has a
        Secure one of that name whose domain matches it (either way) and whose path the new
        cookie's path path-matches: plain http cannot overwrite or shadow a Secure cookie."""
        if self.secure_origin(request):
            return False
        return any(
            old.secure
            and old.name == cookie.name
            and _domains_match(old.domain, cookie.domain)
            and _path_matches(cookie.path, old.path)
            for old in self.jar
        )


class _SetCookies:
    """What ``CookieJar.make_cookies`` needs of a response: ``info().get_all(name, default)``."""

    def __init__(self, headers: Headers) -> None:
        self._headers = headers

    def info(self) -> _SetCookies:
        return self

    def get_all(self, name: str, default: list[str]) -> list[str]:
        return self._headers.get_all(name) or default


class CookieJar6265(cj.CookieJar):
    """A ``CookieJar`` with :class:`CookiePolicy6265`, fed and read by URL.

    ``extract(headers, url)`` stores what a response to ``url`` sets; ``header_for(url)`` is the
    ``Cookie`` field to send to ``url`` (None when no cookie applies).
    """

    def __init__(self) -> None:
        self.rules = CookiePolicy6265(self)
        super().__init__(self.rules)
        self._deleting: list[tuple[str, str, str]] | None = None

    def clear(
        self, domain: str | None = None, path: str | None = None, name: str | None = None
    ) -> None:
        if self._deleting is not None and domain and path and name:
            # make_cookies deletes an expired cookie at once: note it, to check it first.
            self._deleting.append((domain, path, name))
            return
        super().clear(domain, path, name)

    def extract(self, headers: Headers, url: str) -> None:
        """Store the cookies a response to ``url`` with these header fields sets or deletes."""
        request = urllib.request.Request(url)
        self._deleting = []
        try:
            made = self.make_cookies(cast(HTTPResponse, _SetCookies(headers)), request)
        finally:
            deleting, self._deleting = self._deleting, None
        for domain, path, name in deleting:
            if self.rules.delete_ok(domain, path, name, request):
                with suppress(KeyError):
                    super().clear(domain, path, name)
        for cookie in made:
            if not cookie.path.startswith("/"):  # RFC 6265 §5.2.4: then the default path
                cookie.path, cookie.path_specified = _default_path(url), False
            if self.rules.set_ok(cookie, request):
                self.set_cookie(cookie)

    def header_for(self, url: str) -> str | None:
        """The ``Cookie`` field value for a request to ``url``: the cookies that apply, longer
        paths first; None when there are none. Expired cookies are dropped on the way."""
        request = urllib.request.Request(url)
        self.add_cookie_header(request)
        return request.get_header("Cookie")


def _host_of(cookie: cj.Cookie) -> str:
    """The cookie's domain as set: the standard library stores a dotless host as ``host.local``
    (RFC 2965's effective host name) and a domain cookie with a leading dot."""
    domain = _bare(cookie.domain)
    if not cookie.domain_specified and domain.endswith(".local") and "." not in domain[:-6]:
        return domain[:-6]
    return domain


class Cookies(Mapping[str, str]):
    """The cookies a test client keeps, by name: ``client.cookies["session"]``, ``.get``,
    ``in``, ``len``, iteration over the names; ``set``, ``delete`` and ``clear`` to change them.

    ``jar`` is the :class:`http.cookiejar.CookieJar` itself, for anything else (each cookie's
    domain, path, expiry, ``Secure`` flag).
    """

    def __init__(self, jar: CookieJar6265, origin: str) -> None:
        self.jar = jar
        self._origin = origin

    def _matching(self, name: str, domain: str | None, path: str | None) -> list[cj.Cookie]:
        return [
            c
            for c in self.jar
            if c.name == name
            and (domain is None or _host_of(c) == _bare(domain).lower())
            and (path is None or c.path == path)
        ]

    def get(  # type: ignore[override]  # Mapping.get, plus domain= and path=
        self, name: str, default: str | None = None, *, domain: str | None = None,
        path: str | None = None,
    ) -> str | None:  # fmt: skip
        """The value of the cookie ``name``; ``default`` when there is none.

        Raises:
            LookupError: several cookies have that name (for other domains or paths); pass
                ``domain=`` or ``path=`` to choose.
        """
        found = self._matching(name, domain, path)
        if len(found) > 1:
            where = ", ".join(f"{_host_of(c)}{c.path}" for c in found)
            raise LookupError(f"several cookies named {name!r} ({where}): pass domain= or path=")
        return (found[0].value or "") if found else default

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(c.name for c in self.jar))

    def __len__(self) -> int:
        return len(dict.fromkeys(c.name for c in self.jar))

    def set(
        self,
        name: str,
        value: str,
        *,
        domain: str | None = None,
        path: str = "/",
        secure: bool = False,
    ) -> None:
        """Store a cookie as if the client's origin had sent ``Set-Cookie`` with it (so the same
        rules apply: a ``__Host-`` name needs ``secure=True`` over https, and so on).

        Raises:
            ValueError: the jar refused it (the message says which attributes were given).
        """
        attrs = f"{name}={value}; Path={path}"
        if domain is not None:
            attrs += f"; Domain={domain}"
        if secure:
            attrs += "; Secure"
        self.jar.extract(Headers([("set-cookie", attrs)]), self._origin + path)
        if not self._matching(name, domain, path):
            raise ValueError(f"the cookie jar refused {attrs!r} from {self._origin}")

    def delete(self, name: str, *, domain: str | None = None, path: str | None = None) -> None:
        """Forget the cookies named ``name`` (only those for ``domain`` or ``path`` if given)."""
        for c in self._matching(name, domain, path):
            self.jar.clear(c.domain, c.path, c.name)

    def clear(self) -> None:
        """Forget every cookie."""
        self.jar.clear()

    def __repr__(self) -> str:
        inside = ", ".join(f"{c.name}={c.value} ({_host_of(c)}{c.path})" for c in self.jar)
        return f"<Cookies [{inside}]>"
