"""What both test clients share: the base URL, default headers and cookie jar, a request's
options turned into the bytes sent, and the bytes the server wrote turned into a response."""

from __future__ import annotations

import json as _json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias
from urllib.parse import quote, urlencode, urlsplit

from typing_extensions import TypedDict

from tophat.http.headers import Headers
from tophat.testing._cookies import CookieJar6265, Cookies
from tophat.testing._response import TestResponse, parse_responses

__all__ = ["HeaderItems", "Params", "Prepared", "RequestOptions", "Session"]

ParamValue: TypeAlias = "str | int | float | bool | None"
Params: TypeAlias = (
    "Mapping[str, ParamValue | Sequence[ParamValue]] | Sequence[tuple[str, ParamValue]] | str"
)
HeaderItems: TypeAlias = "Mapping[str, str] | Iterable[tuple[str, str]]"


class RequestOptions(TypedDict, total=False):
    """The keyword arguments of every request method (``get``, ``post``, ..., ``request``).

    * ``params``: query parameters, a mapping (a list value repeats the name) or a sequence of
      pairs, percent-encoded (UTF-8) and appended to any query already in the URL; or a string,
      appended as it is.
    * ``headers``: header fields; a name given here replaces the client's default fields of
      that name. An explicit ``cookie`` field replaces the jar's cookies for this request.
    * ``json``: a value sent as JSON (``Content-Type: application/json``; None sends nothing).
    * ``content``: the body, bytes or a str (sent as UTF-8). ``body`` is the same option under
      the name the wire tests use.
    * ``data``: a form, a mapping or a sequence of pairs sent as
      ``application/x-www-form-urlencoded``; bytes or a str are sent as they are.
    * ``version``: ``"1.1"`` (the default) or ``"1.0"``.

    At most one of ``json``, ``content``/``body`` and ``data``.
    """

    params: Params
    headers: HeaderItems
    json: Any
    content: bytes | str
    body: bytes | str
    data: bytes | str | Mapping[str, ParamValue | Sequence[ParamValue]]
    version: str


_BODY_OPTIONS = ("json", "content", "body", "data")
_KNOWN = frozenset(RequestOptions.__annotations__)
_DEFAULT_PORTS = {"http": 80, "https": 443}
#: RFC 9110 §8.6: "A user agent SHOULD send Content-Length in a request when the method
#: defines a meaning for enclosed content and it is not sending Transfer-Encoding."
_CONTENT_METHODS = frozenset({"POST", "PUT", "PATCH"})
#: RFC 3986 §3.3/§3.4: what may stay as it is in a path or a query ('%' keeps escapes made by
#: the caller; everything else, spaces and non-ASCII included, is percent-encoded as UTF-8).
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_QUERY_SAFE = _PATH_SAFE + "?"


@dataclass(frozen=True, slots=True)
class Prepared:
    """A request ready to send: its method, absolute URL, scheme and the bytes on the wire."""

    method: str
    url: str
    scheme: str
    data: bytes


def _text(value: ParamValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _pairs(
    items: Mapping[str, ParamValue | Sequence[ParamValue]] | Sequence[tuple[str, ParamValue]],
) -> list[tuple[str, str]]:
    if not isinstance(items, Mapping):
        return [(name, _text(value)) for name, value in items]
    out: list[tuple[str, str]] = []
    for name, value in items.items():
        if isinstance(value, list | tuple):
            out += [(name, _text(v)) for v in value]
        else:
            out.append((name, _text(value)))  # type: ignore[arg-type]  # a str is no sequence here
    return out


def _origin(url: str) -> tuple[str, str, str]:
    """``(scheme, authority, path prefix)`` of an http or https URL, the authority lower-cased
    and without the scheme's default port."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"{url!r} is not an http:// or https:// URL with a host")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    port = parts.port
    authority = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    return scheme, authority, parts.path.rstrip("/")


def _body(options: RequestOptions) -> tuple[bytes, str | None]:
    """The content and its ``Content-Type`` (None: none to add)."""
    given = [name for name in _BODY_OPTIONS if options.get(name) is not None]
    if len(given) > 1:
        raise TypeError(f"pass at most one of json=, content= (body=) and data=, not {given}")
    if not given:
        return b"", None
    name = given[0]
    value = options[name]  # type: ignore[literal-required]
    if name == "json":
        return _json.dumps(value, separators=(",", ":")).encode(), "application/json"
    if isinstance(value, str):
        return value.encode(), None
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value), None
    if name == "data":
        return urlencode(_pairs(value)).encode(), "application/x-www-form-urlencoded"
    raise TypeError(f"{name}= takes bytes or a str, not {type(value).__name__}")


class Session:
    """A client's state (base URL, default headers, cookie jar) and its request encoding.

    Args:
        base_url: where a relative URL goes: ``scheme://host[:port][/prefix]``; its scheme is
            the one the server sees (``req.scheme``) and the one the jar applies ``Secure`` by.
        headers: default header fields sent with every request.
        cookies: cookies to start with, as if the base URL had set them (``Path=/``).
    """

    def __init__(
        self,
        base_url: str,
        headers: HeaderItems | None = None,
        cookies: Mapping[str, str] | None = None,
    ) -> None:
        self.scheme, self.authority, self.prefix = _origin(base_url)
        self.base_url = f"{self.scheme}://{self.authority}{self.prefix}"
        self.headers = Headers(headers)
        self.jar = CookieJar6265()
        self.cookies = Cookies(self.jar, f"{self.scheme}://{self.authority}")
        for name, value in (cookies or {}).items():
            self.cookies.set(name, value)

    def prepare(self, method: str, url: str, options: RequestOptions) -> Prepared:
        """The bytes of the request ``method url`` with ``options`` (cookies from the jar)."""
        unknown = options.keys() - _KNOWN
        if unknown:
            raise TypeError(f"unknown request options: {sorted(unknown)}")
        if "://" in url:
            scheme, authority, path = _origin(url)
            query = urlsplit(url).query
        else:
            parts = urlsplit(url if url.startswith("/") else "/" + url)
            scheme, authority = self.scheme, self.authority
            path, query = self.prefix + parts.path, parts.query
        target = quote(path or "/", safe=_PATH_SAFE)
        query = quote(query, safe=_QUERY_SAFE)
        params = options.get("params")
        if params:
            extra = (
                params if isinstance(params, str) else urlencode(_pairs(params), quote_via=quote)
            )
            query = f"{query}&{extra}" if query else extra
        if query:
            target += "?" + query
        full_url = f"{scheme}://{authority}{target}"

        content, content_type = _body(options)
        given = Headers(options.get("headers"))
        fields = Headers([(n, v) for n, v in self.headers if n not in given])
        for n, v in given:
            fields.add(n, v)
        if "host" not in fields:
            # RFC 9112 §3.2: "A user agent SHOULD generate Host as the first field line".
            fields = Headers([("host", authority), *fields])
        if content_type is not None and "content-type" not in fields:
            fields.add("content-type", content_type)
        framed = "content-length" in fields or "transfer-encoding" in fields
        if not framed and (content or method in _CONTENT_METHODS):
            fields.add("content-length", str(len(content)))
        if "cookie" not in fields:
            cookie = self.jar.header_for(full_url)
            if cookie is not None:
                fields.add("cookie", cookie)

        version = options.get("version", "1.1")
        head = f"{method} {target} HTTP/{version}\r\n"
        head += "".join(f"{n}: {v}\r\n" for n, v in fields) + "\r\n"
        return Prepared(method, full_url, scheme, head.encode("latin-1") + content)

    def finish(self, prepared: Prepared, out: bytes) -> TestResponse:
        """The response in ``out`` (the bytes the server wrote); its cookies go to the jar."""
        responses = parse_responses(out, [prepared.method])
        if len(responses) != 1:
            raise AssertionError(f"expected one response, got {len(responses)}: {out!r}")
        resp = responses[0]
        resp.raw = out
        resp.url = prepared.url
        self.jar.extract(resp.headers, prepared.url)
        return resp
