"""Parsing ``Forwarded`` (RFC 7239) and ``X-Forwarded-*`` for :mod:`tophat.middleware.proxy`.

The grammar (regexes), IPv4/IPv6 address helpers, and the right-to-left walks that find the
client, and the proto and host its proxy saw, given a predicate saying which addresses are
trusted. A malformed entry the walk reaches raises :class:`_Malformed`; how the headers are
applied to the request is the middleware's business.
"""

from __future__ import annotations

import enum
import logging
import re
import socket
from collections.abc import Callable
from typing import NamedTuple

from .._headers import Headers

log = logging.getLogger("tophat.proxy")

# Addresses are compared as integers: ipaddress objects cost microseconds per request to build,
# inet_pton a fraction of one. (version, value); networks are (value, mask) pairs.
_Addr = tuple[int, int]
_Trusted = Callable[[int, int], bool]

# RFC 9110 §5.6.2 token, §5.6.4 quoted-string (qdtext and quoted-pair, obs-text included).
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = r'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"'
_OWS = r"[ \t]*"
# RFC 7239 §4: forwarded-element = [ forwarded-pair ] *( ";" [ forwarded-pair ] ),
# forwarded-pair = token "=" value. OWS around ";" is tolerated (seen in the wild).
_PAIR = re.compile(rf"({_TOKEN})=(?:({_TOKEN})|\"((?:[^\"\\]|\\.)*)\")")
_ELEMENT = re.compile(
    rf"{_OWS}(?:{_TOKEN}=(?:{_TOKEN}|{_QUOTED}))?"
    rf"(?:{_OWS};{_OWS}(?:{_TOKEN}=(?:{_TOKEN}|{_QUOTED}))?)*{_OWS}"
)
_ESCAPE = re.compile(r"\\(.)")
# RFC 7239 §6: node = nodename [ ":" node-port ]; nodename = IPv4address / "[" IPv6address "]"
# / "unknown" / obfnode; obfnode and obfport = "_" 1*( ALPHA / DIGIT / "." / "_" / "-" ).
# X-Forwarded-For uses the same forms, plus IPv6 without brackets (and then without a port).
# inet_pton does the range checks; leading zeros are refused here, as RFC 3986 §3.2.2
# dec-octet does (some parsers read "010" as octal).
_DEC_OCTET = r"(?:0|[1-9][0-9]{0,2})"
_NODE = re.compile(
    rf"(?:({_DEC_OCTET}(?:\.{_DEC_OCTET}){{3}})|\[([0-9A-Fa-f:.]+)\]|(_[A-Za-z0-9._-]+)"
    r"|((?i:unknown)))(?::([0-9]{1,5}|_[A-Za-z0-9._-]+))?"
)
_BARE_IP6 = re.compile(r"[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*")
# RFC 9110 §7.2 Host = uri-host [ ":" port ] (RFC 3986 §3.2.2). Stricter than the Host check in
# accept() on purpose: the value usually ends up in redirects and absolute links, so names are
# limited to unreserved characters and %-escapes (no sub-delims), and the host is not empty.
_HOST = re.compile(
    r"(?:\[(?P<ip6>[0-9A-Fa-f:.]+)\]|(?:[A-Za-z0-9\-._~]|%[0-9A-Fa-f]{2})+)(?::[0-9]{1,5})?"
)


class _Keep(enum.Enum):
    CLIENT = "keep req.client as it is"


class _Node(NamedTuple):
    """A parsed ``for=`` or ``X-Forwarded-For`` entry."""

    host: str | None  # None: "unknown"
    port: int  # 0 when absent or obfuscated
    addr: _Addr | None  # None: "unknown" or an obfuscated identifier


class _Forward(NamedTuple):
    """What the walk found: the client, and the proto and host the client-facing proxy saw."""

    client: tuple[str, int] | _Keep | None
    proto: str | None
    host: str | None


class _Malformed(ValueError):
    """An entry the walk had to read is not well-formed."""


def _ip4(text: str) -> int:
    try:
        return int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big")
    except OSError:
        raise _Malformed(f"not an IPv4 address: {text[:100]!r}") from None


def _ip6(text: str) -> tuple[str, int]:
    """The compressed lower-case text (as inet_ntop prints it) and the value of an IPv6 address."""
    try:
        packed = socket.inet_pton(socket.AF_INET6, text)
    except OSError:
        raise _Malformed(f"not an IPv6 address: {text[:100]!r}") from None
    return socket.inet_ntop(socket.AF_INET6, packed), int.from_bytes(packed, "big")


def _peer_addr(host: str) -> _Addr | None:
    """A runtime-reported peer address as ``(version, value)``; ``None`` if it is not an IP."""
    try:
        if ":" in host:
            # A link-local peer may carry its zone (fe80::1%eth0); networks have none.
            packed = socket.inet_pton(socket.AF_INET6, host.partition("%")[0])
            return 6, int.from_bytes(packed, "big")
        return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, host), "big")
    except OSError:
        return None


def _parse_node(text: str, *, bare_ip6: bool) -> _Node:
    m = _NODE.fullmatch(text)
    if m is None:
        if bare_ip6 and _BARE_IP6.fullmatch(text):
            host, value = _ip6(text)
            return _Node(host, 0, (6, value))
        raise _Malformed(f"not a node: {text[:100]!r}")
    ip4, ip6, obf, _unknown, port_text = m.groups()
    port = int(port_text) if port_text and port_text[0] != "_" else 0
    if port > 65535:
        raise _Malformed(f"port out of range: {text[:100]!r}")
    if ip4:
        return _Node(ip4, port, (4, _ip4(ip4)))  # without leading zeros: already canonical
    if ip6:
        host, value = _ip6(ip6)
        return _Node(host, port, (6, value))
    return _Node(obf, port, None)  # obf is None for "unknown"


def _last_element(value: str, end: int) -> tuple[int, str] | None:
    """The last non-empty element of ``value[:end]``, with the index of the comma before it.

    Found from the right, as the shortest suffix after a comma that is a whole element: the
    left end of the header is the client's, and an unbalanced quote there must not swallow what
    the proxies appended. (A comma inside a valid quoted string never starts a valid suffix: the
    suffix would need an opening quote, which inside the quoted string is escaped.)
    """
    pos = end
    while True:
        comma = value.rfind(",", 0, pos)
        if _ELEMENT.fullmatch(value, comma + 1, end):
            text = value[comma + 1 : end]
            if text.strip(" \t"):
                return comma, text
            if comma < 0:  # RFC 9110 §5.6.1: empty list elements are skipped
                return None
            end = pos = comma
        elif comma < 0:
            raise _Malformed(f"not a forwarded-element: {value[:end][-100:]!r}")
        else:
            pos = comma


def _params(element: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for m in _PAIR.finditer(element):
        name = m[1].lower()
        if name in out:
            # RFC 7239 §4: each parameter MUST NOT occur more than once per forwarded-element.
            raise _Malformed(f"{name}= twice in one element: {element[:100]!r}")
        token, quoted = m.group(2, 3)
        if token is None:
            token = _ESCAPE.sub(r"\1", quoted) if "\\" in quoted else quoted
        out[name] = token
    return out


def _walk_forwarded(value: str, trusted: _Trusted) -> _Forward:
    end = len(value)
    found: tuple[dict[str, str], _Node | None] | None = None
    while end >= 0 and (last := _last_element(value, end)) is not None:
        end, element = last
        params = _params(element)
        node = _parse_node(params["for"], bare_ip6=False) if "for" in params else None
        found = params, node
        if node is None or node.addr is None or not trusted(*node.addr):
            break
    if found is None:
        raise _Malformed("no forwarded-element")
    params, node = found
    if node is None:
        client: tuple[str, int] | _Keep | None = _Keep.CLIENT
    else:
        client = None if node.host is None else (node.host, node.port)
    return _Forward(client, params.get("proto"), params.get("host"))


def _aligned(values: list[str], hops: int, name: str) -> str | None:
    """The entry of a list-valued ``X-Forwarded-*`` that goes with the client ``hops`` from the
    right of ``X-Forwarded-For``: a single value is the edge proxy's; a list is right-aligned."""
    if len(values) == 1:
        return values[0]
    if hops < len(values):
        return values[-1 - hops]
    if values:
        log.debug("ignoring %s: %d values for a client %d hops away", name, len(values), hops)
    return None


def _walk_x_forwarded(headers: Headers, trusted: _Trusted) -> _Forward | None:
    chain = headers.get_list("x-forwarded-for")
    protos = headers.get_list("x-forwarded-proto")
    hosts = headers.get_list("x-forwarded-host")
    if not (chain or protos or hosts):
        return None
    client: tuple[str, int] | _Keep | None = _Keep.CLIENT
    hops = 0
    if chain:
        i = len(chain) - 1
        while True:
            node = _parse_node(chain[i], bare_ip6=True)
            if i == 0 or node.addr is None or not trusted(*node.addr):
                break
            i -= 1
        hops = len(chain) - 1 - i
        client = None if node.host is None else (node.host, node.port)
    return _Forward(
        client,
        _aligned(protos, hops, "X-Forwarded-Proto"),
        _aligned(hosts, hops, "X-Forwarded-Host"),
    )


def _valid_host(host: str) -> bool:
    m = _HOST.fullmatch(host)
    if m is None:
        return False
    if m["ip6"] is not None:
        try:
            socket.inet_pton(socket.AF_INET6, m["ip6"])
        except OSError:
            return False
    return True
