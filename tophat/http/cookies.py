"""Cookies (RFC 6265bis): the ``Cookie`` request header read into a mapping, and ``Set-Cookie``
lines built and checked before they can reach the wire.

Reading is lenient where browsers are (a value may hold spaces or commas that a script put
there) and drops only what is malformed, one pair at a time. Writing is strict: what a browser
would silently ignore (a bad name, a value it would cut, a ``__Host-`` cookie with a Domain, a
``SameSite=None`` cookie without ``Secure``) is a ``ValueError`` at the call, naming the rule.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime, formatdate
from typing import Literal

from tophat.http.headers import Headers

__all__ = [
    "MAX_ATTRIBUTE_SIZE",
    "MAX_COOKIE_SIZE",
    "Cookies",
    "SameSite",
    "check_cookie_name",
    "delete_cookie_line",
    "parse_cookies",
    "prefix_problem",
    "put_set_cookie",
    "set_cookie_line",
]

SameSite = Literal["lax", "strict", "none"]

# RFC 6265bis §5.6: a user agent ignores a cookie whose name and value together are longer
# than 4096 octets, and an attribute whose value is longer than 1024 octets.
MAX_COOKIE_SIZE = 4096
MAX_ATTRIBUTE_SIZE = 1024

# RFC 6265bis §4.1.1: cookie-name = token (RFC 9110 §5.6.2).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 6265bis §4.1.1: cookie-value = *cookie-octet / ( DQUOTE *cookie-octet DQUOTE ), where
# cookie-octet = %x21 / %x23-2B / %x2D-3A / %x3C-5B / %x5D-7E: US-ASCII without controls,
# whitespace, DQUOTE, comma, semicolon and backslash.
_COOKIE_OCTETS = r"[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*"
_VALUE = re.compile(f'{_COOKIE_OCTETS}|"{_COOKIE_OCTETS}"')
# RFC 6265bis §5.6 (parsing Set-Cookie): a cookie whose name or value holds a control
# character other than HTAB is ignored entirely. We drop such a pair on reading.
_CTL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# RFC 6265bis §4.1.1: path-value = *av-octet, any CHAR except CTLs or ";". Non-ASCII must be
# percent-encoded: a browser compares paths octet by octet against the encoded request path.
_PATH = re.compile(r"/[\x20-\x3a\x3c-\x7e]*")
# A Domain is a host name (RFC 6265bis §4.1.2.3: domain-value = <subdomain>, a leading dot
# ignored). Letters, digits, "-" and "." only: an internationalized name goes in its A-label
# (punycode) form, as a browser compares it after IDNA conversion.
_DOMAIN = re.compile(r"\.?[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")
_PATH_RULE = (
    "it starts with '/' and holds printable US-ASCII without ';' (percent-encode the rest; "
    "RFC 6265bis §4.1.1 path-value)"
)
_DOMAIN_RULE = (
    "a host name of letters, digits, '-' and '.' (an internationalized name in its punycode "
    "form), or None for a host-only cookie (RFC 6265bis §4.1.2.3)"
)
_SAME_SITE: dict[str, str] = {"lax": "Lax", "strict": "Strict", "none": "None"}


# -- reading: the Cookie header ---------------------------------------------------------------


class Cookies(Mapping[str, str]):
    """The cookies a request carries: ``name -> value`` (``str`` both).

    Where a name appears more than once, the mapping gives the first: a browser sends the
    cookie with the longest matching Path first, and among equal paths the oldest first
    (RFC 6265bis §5.8.3, the retrieval algorithm), so the first is the most specific one.
    That order is not proof of origin (a sibling subdomain can plant a same-name cookie with
    a longer Path): code that must not be fooled reads :meth:`get_all` and compares, as
    ``Identity`` does.

    >>> c = parse_cookies(["theme=dark; sid=abc", "sid=older"])
    >>> c["sid"], c.get_all("sid"), list(c)
    ('abc', ['abc', 'older'], ['theme', 'sid'])
    """

    __slots__ = ("_first", "_pairs")

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._pairs = pairs
        self._first: dict[str, str] | None = None  # built on first use (Identity needs none)

    def _mapping(self) -> dict[str, str]:
        if self._first is None:
            first: dict[str, str] = {}
            for name, value in self._pairs:
                first.setdefault(name, value)
            self._first = first
        return self._first

    def __getitem__(self, name: str) -> str:
        return self._mapping()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._mapping())

    def __len__(self) -> int:
        return len(self._mapping())

    def __contains__(self, name: object) -> bool:
        return name in self._mapping()

    def get_all(self, name: str) -> list[str]:
        """Every value sent under ``name``, in the order the browser sent them."""
        return [value for key, value in self._pairs if key == name]

    def __repr__(self) -> str:
        # Names only: cookie values are credentials, and reprs end up in logs.
        return f"Cookies({list(self._mapping())!r})"


def parse_cookies(header_values: Iterable[str]) -> Cookies:
    """Read every ``Cookie`` field line (RFC 6265bis §4.2.1: ``name=value`` pairs joined by
    ``"; "``; browsers send one line, HTTP/2 proxies may split it into several).

    Each pair is read on its own; a malformed one is dropped and its neighbours kept:

    * no ``=``: a nameless cookie (RFC 6265bis §5.8.3 sends ``=v`` as just ``v``); it
      cannot be addressed by name, so it is dropped;
    * a name that is not an RFC 9110 token (``a b``, ``a,b``, non-ASCII);
    * a control character other than HTAB in the value (RFC 6265bis §5.6: a browser would
      not have stored it, so it is forged or corrupt);
    * a value whose octets are not UTF-8 (the header arrives as Latin-1 text; a browser
      sends a cookie's octets as they were set, which is UTF-8 from any script or server
      that sets non-ASCII).

    Whitespace (SP, HTAB) around names and values is trimmed, as the browser does when it
    parses a cookie (RFC 6265bis §5.6). A value wrapped in one pair of DQUOTEs loses them:
    the grammar makes them a wrapper (``DQUOTE *cookie-octet DQUOTE``), not content, and
    servers that quote (Python's ``http.cookies``) mean the inner text. There is no escape
    syntax in cookies, so backslashes are kept as they are.
    """
    pairs: list[tuple[str, str]] = []
    known = _KNOWN_NAMES
    for header in header_values:
        # The usual header is printable ASCII (no control character, not even HTAB): two
        # C-speed checks for the whole line, none per value (measured: 0.5 -> 0.1 µs a line).
        plain = header.isascii() and header.isprintable()
        for piece in header.split(";"):
            name, eq, value = piece.partition("=")
            if not eq:
                continue
            name = name.strip(" \t")
            if name not in known:
                if _TOKEN.fullmatch(name) is None:
                    continue
                if len(known) < 1024:
                    known.add(name)
            value = value.strip(" \t")
            if value[:1] == '"' and len(value) > 1 and value[-1] == '"':
                value = value[1:-1]
            if not plain:
                if _CTL.search(value) is not None:
                    continue
                if not value.isascii():
                    try:
                        value = value.encode("latin-1").decode("utf-8")
                    except UnicodeError:
                        continue
            pairs.append((name, value))
    return Cookies(pairs)


# Names that passed the token check: an application reads the same few cookie names on every
# request. Bounded, and only valid names enter.
_KNOWN_NAMES: set[str] = set()


# -- writing: Set-Cookie ----------------------------------------------------------------------


def check_cookie_name(name: str) -> None:
    """Raise ``ValueError`` unless ``name`` is an RFC 9110 token (RFC 6265bis §4.1.1)."""
    if not isinstance(name, str) or _TOKEN.fullmatch(name) is None:
        raise ValueError(
            f"cookie name {name!r} is not an RFC 9110 token (RFC 6265bis §4.1.1): use letters, "
            "digits and !#$%&'*+-.^_`|~ (e.g. 'session_id')"
        )


# RFC 6265bis §4.1.3: a browser stores a cookie whose name starts with one of these prefixes
# (matched case-insensitively) only when its attributes satisfy the prefix, and otherwise
# drops it without a word. A __Host- cookie cannot be set by a sibling subdomain, a parent
# domain or a plain-http page, so nobody can toss one beside yours.
_PREFIXES: tuple[tuple[str, str], ...] = (
    # (prefix, lower-case; what it requires, in words)
    ("__host-", "secure=True, path='/' and no domain"),
    ("__secure-", "secure=True"),
)


def prefix_problem(name: str, *, secure: bool, path: str, domain: str | None) -> str | None:
    """Why ``name``'s prefix forbids these attributes, or None when it allows them (or has
    no prefix). The message says how to fix it."""
    lower = name.lower()
    for prefix, requires in _PREFIXES:
        if lower.startswith(prefix):
            allowed = secure and (prefix != "__host-" or (path == "/" and not domain))
            if not allowed:
                return (
                    f"cookie name {name!r} has the {name[: len(prefix)]!r} prefix, which "
                    f"requires {requires} (RFC 6265bis §4.1.3; browsers drop the cookie "
                    "otherwise)"
                )
    return None


def _check_attribute(what: str, value: str, pattern: re.Pattern[str], rule: str) -> None:
    if len(value.encode()) > MAX_ATTRIBUTE_SIZE:
        raise ValueError(
            f"cookie {what} is over {MAX_ATTRIBUTE_SIZE} bytes: browsers ignore such an "
            "attribute (RFC 6265bis §5.6), so the cookie would not be scoped as asked"
        )
    if pattern.fullmatch(value) is None:
        raise ValueError(f"cookie {what} {value!r} is invalid: {rule}")


def _expires_text(expires: datetime | float) -> str:
    # RFC 6265bis §4.1.1: sane-cookie-date = IMF-fixdate (RFC 9110 §5.6.7).
    if isinstance(expires, datetime):
        if expires.tzinfo is None or expires.utcoffset() is None:
            raise ValueError(
                "cookie expires must be an aware datetime (e.g. datetime.now(timezone.utc) + "
                "timedelta(days=1)) or seconds since the epoch: a naive one names no instant"
            )
        return format_datetime(expires.astimezone(timezone.utc), usegmt=True)
    if isinstance(expires, bool) or not isinstance(expires, int | float):
        raise ValueError(f"cookie expires must be a datetime or epoch seconds, not {expires!r}")
    return formatdate(expires, usegmt=True)


def set_cookie_line(
    name: str,
    value: str,
    *,
    max_age: int | timedelta | None = None,
    expires: datetime | float | None = None,
    path: str = "/",
    domain: str | None = None,
    secure: bool = True,
    httponly: bool = True,
    samesite: SameSite | None = "lax",
    partitioned: bool = False,
) -> str:
    """The value of one ``Set-Cookie`` field, checked (see ``ResponseWriter.set_cookie``).

    Attributes come in a fixed order: ``name=value; Expires; Max-Age; Domain; Path; Secure;
    HttpOnly; SameSite; Partitioned`` (RFC 6265bis puts no meaning in the order).

    Raises:
        ValueError: naming the rule a browser would enforce by dropping the cookie.
    """
    check_cookie_name(name)
    if not isinstance(value, str) or _VALUE.fullmatch(value) is None:
        raise ValueError(
            f"cookie value for {name!r} has characters a cookie cannot carry (RFC 6265bis "
            "§4.1.1 cookie-octet: printable US-ASCII without space, '\"', ',', ';' and '\\'): "
            "encode it first, e.g. urllib.parse.quote(value) or base64.urlsafe_b64encode"
        )
    size = len(name) + len(value)  # both ASCII by now: characters are octets
    if size > MAX_COOKIE_SIZE:
        raise ValueError(
            f"cookie {name!r} is {size} bytes (name and value): browsers ignore a cookie over "
            f"{MAX_COOKIE_SIZE} bytes (RFC 6265bis §5.6); keep large data on the server"
        )
    if samesite is not None and samesite not in _SAME_SITE:
        raise ValueError(f"samesite must be 'lax', 'strict', 'none' or None, not {samesite!r}")
    if samesite == "none" and not secure:
        raise ValueError(
            "samesite='none' requires secure=True (RFC 6265bis §5.7: browsers ignore a "
            "SameSite=None cookie that is not Secure)"
        )
    if partitioned and not secure:
        raise ValueError(
            "partitioned=True requires secure=True (CHIPS: browsers reject a Partitioned "
            "cookie that is not Secure)"
        )
    _check_attribute("path", path, _PATH, _PATH_RULE)
    if domain is not None:
        _check_attribute("domain", domain, _DOMAIN, _DOMAIN_RULE)
    problem = prefix_problem(name, secure=secure, path=path, domain=domain)
    if problem is not None:
        raise ValueError(problem)

    parts = [f"{name}={value}"]
    if expires is not None:
        parts.append("Expires=" + _expires_text(expires))
    if max_age is not None:
        seconds = int(max_age.total_seconds()) if isinstance(max_age, timedelta) else max_age
        if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 0:
            raise ValueError(
                f"cookie max_age must be a non-negative int of seconds or a timedelta, not "
                f"{max_age!r} (to remove a cookie, use delete_cookie)"
            )
        # (RFC 6265bis §5.6.2: browsers cap the lifetime at 400 days; we send what we're told.)
        parts.append(f"Max-Age={seconds}")
    if domain is not None:
        parts.append("Domain=" + domain)
    parts.append("Path=" + path)
    if secure:
        parts.append("Secure")
    if httponly:
        parts.append("HttpOnly")
    if samesite is not None:
        parts.append("SameSite=" + _SAME_SITE[samesite])
    if partitioned:
        parts.append("Partitioned")
    return "; ".join(parts)


def delete_cookie_line(
    name: str,
    *,
    path: str = "/",
    domain: str | None = None,
    secure: bool = True,
    httponly: bool = True,
    samesite: SameSite | None = "lax",
    partitioned: bool = False,
) -> str:
    """The ``Set-Cookie`` value that removes a cookie: an empty value, ``Max-Age=0`` and an
    ``Expires`` at the epoch (for clients that know only Expires), with the attributes the
    browser matches on repeated: name, Domain and Path identify the cookie (RFC 6265bis
    §5.7, storage), a ``__Host-``/``__Secure-`` name needs ``Secure`` to be accepted at all,
    and a partitioned cookie is replaced only from the same partition (``Partitioned``)."""
    return set_cookie_line(
        name,
        "",
        max_age=0,
        expires=0,
        path=path,
        domain=domain,
        secure=secure,
        httponly=httponly,
        samesite=samesite,
        partitioned=partitioned,
    )


def put_set_cookie(headers: Headers, name: str, line: str) -> None:
    """Add a ``Set-Cookie`` field line, replacing one this response already sets for ``name``.

    RFC 6265bis §4.1.1: "Servers SHOULD NOT include more than one Set-Cookie header field in
    the same response with the same cookie-name" (a logout after a rolling refresh would
    otherwise leave the outcome to the browser's order). Each cookie stays its own field
    line: Set-Cookie is never folded into one line (RFC 9110 §5.3).
    """
    prefix = name + "="
    existing = headers.get_all("set-cookie")
    if any(v.startswith(prefix) for v in existing):
        headers.remove("set-cookie")
        for value in existing:
            if not value.startswith(prefix):
                headers.add("set-cookie", value)
    headers.add("set-cookie", line)
