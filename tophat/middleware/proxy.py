"""Proxy headers: believe ``Forwarded`` / ``X-Forwarded-*`` only from proxies you name.

::

    app = proxy_headers(["127.0.0.1", "::1", "10.0.0.0/8"])(router)

Behind a reverse proxy every connection comes from the proxy; the proxy says who the client
was in a header. Anyone can send that header, so it is believed only when the *immediate peer*
(``req.client``) is one of the ``trusted`` addresses or networks. Then:

* ``req.client`` becomes ``(address, port)`` of the client (port ``0`` when not forwarded);
* ``req.scheme`` becomes the forwarded protocol, when it is ``http`` or ``https``;
* the forwarded host is stored in ``req.ext[FORWARDED_HOST_KEY]``; read it with
  :func:`forwarded_host`, which falls back to ``req.host``;
* the original peer is kept in ``req.ext[PEER_KEY]``.

Which address is the client, and why: each proxy *appends* the address it received the
request from, so the list reads ``client, proxy1, proxy2`` and our peer is the proxy after the
last one. Only the right end was written by proxies we trust; the left end is whatever the
client sent. So the list is walked **right to left**, skipping addresses that are themselves
trusted proxies, and the first address that is not is the client. A client that puts a forged
address at the left gets its real address (appended by the first proxy) reported instead.
When every entry is trusted, the leftmost one is the client. Only the entries the walk reaches
are parsed, so junk at the client-controlled left end can never void the header.

``Forwarded`` (RFC 7239) and the ``X-Forwarded-*`` conventions:

* ``Forwarded: for=192.0.2.60;proto=https;host=example.com, for="[2001:db8::1]:4711"``.
  Parameter names are case-insensitive, values are tokens or quoted strings, IPv6 is bracketed
  and quoted, ports are optional. ``for=unknown`` makes ``req.client`` ``None`` (§6.2: the
  proxy does not know); an obfuscated identifier (``for=_hidden``, §6.3) becomes
  ``req.client == ("_hidden", 0)``; an element without ``for=`` leaves ``req.client`` alone.
  ``proto=`` and ``host=`` are read from the same element as the client: they were written by
  the proxy that faced the client. ``by=`` and extension parameters are checked for syntax only.
* ``X-Forwarded-For: client, proxy1`` (a comma list, maybe over several header lines; IPv4,
  IPv6 bare or bracketed, with an optional port). ``X-Forwarded-Proto`` and
  ``X-Forwarded-Host`` are read either as one value set by the edge proxy, or — when they are
  lists — right-aligned with ``X-Forwarded-For`` (proxies that append append to both).

**If a trusted peer sends ``Forwarded``, the ``X-Forwarded-*`` headers are not read at all**,
even when ``Forwarded`` turns out malformed: a proxy that speaks RFC 7239 is the authority, and
the other headers may be the client's. Turn off the kind your proxy does not set
(``use_forwarded=False`` or ``use_x_forwarded=False``): a header your proxy neither sets nor
strips is a header the client writes.

Malformed headers from a trusted peer (an entry the walk reaches that is not an address, a
broken quoted string, a repeated parameter) are ignored as a whole and logged at DEBUG on
``tophat.proxy``; the request goes on with the peer's own address. A forwarded host that is not
a valid ``host[:port]`` or a proto other than ``http``/``https`` is dropped on its own.
Headers from an untrusted peer are ignored (left in ``req.headers`` untouched, never applied).
"""

from __future__ import annotations

import enum
import ipaddress
import logging
import re
import socket
from collections.abc import Callable, Iterable
from typing import NamedTuple

from .._connection import Endpoint
from .._headers import Headers
from .._request import Request
from .._writer import ResponseWriter, ResponseWritten
from . import Middleware

__all__ = ["FORWARDED_HOST_KEY", "PEER_KEY", "forwarded_host", "proxy_headers"]

log = logging.getLogger("tophat.proxy")

#: ``req.ext`` key of the host a trusted proxy forwarded (validated ``host[:port]``).
FORWARDED_HOST_KEY = "tophat.proxy.host"
#: ``req.ext`` key of the immediate peer's address, kept when forwarded values were applied.
PEER_KEY = "tophat.proxy.peer"

# Addresses are compared as integers: ipaddress objects cost microseconds per request to build,
# inet_pton a fraction of one. (version, value); networks are (value, mask) pairs.
_Addr = tuple[int, int]
_Trusted = Callable[[int, int], bool]
_LOOPBACK = ("127.0.0.1", "::1")

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
_SCHEMES = {"http": "http", "https": "https"}
_X_FORWARDED = ("x-forwarded-for", "x-forwarded-proto", "x-forwarded-host")


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


def _networks(trusted: Iterable[str]) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Parse the trusted entries into ``(value, mask)`` pairs for IPv4 and for IPv6."""
    if isinstance(trusted, str):
        raise ValueError(
            f"trusted must be a list of addresses or networks, not a single string; "
            f"write trusted=[{trusted!r}]"
        )
    v4: list[tuple[int, int]] = []
    v6: list[tuple[int, int]] = []
    for entry in trusted:
        if not isinstance(entry, str):
            raise ValueError(f"trusted: {entry!r} is not a string like '10.0.0.0/8' or '::1'")
        text = entry.strip()
        if text == "*":
            raise ValueError(
                "trusted: '*' would let every client set its own address and scheme; list your "
                "proxies' addresses or networks, or, if no client can reach the server except "
                "through your proxies, pass trust_all=True (read its warning first)"
            )
        try:
            net = ipaddress.ip_network(text)
        except ValueError:
            try:
                loose = ipaddress.ip_network(text, strict=False)
            except ValueError:
                raise ValueError(
                    f"trusted: {entry!r} is not an IP address or CIDR network (e.g. '10.0.0.0/8', "
                    "'::1'); host names are not resolved"
                ) from None
            raise ValueError(
                f"trusted: {entry!r} has bits set past its prefix; did you mean {str(loose)!r}?"
            ) from None
        pair = (int(net.network_address), int(net.netmask))
        (v4 if net.version == 4 else v6).append(pair)
    return v4, v6


def proxy_headers(
    trusted: Iterable[str] | None = None,
    *,
    use_forwarded: bool = True,
    use_x_forwarded: bool = True,
    trust_unix_socket: bool = False,
    trust_all: bool = False,
) -> Middleware:
    """Build a middleware that applies forwarding headers sent by trusted proxies.

    Args:
        trusted: addresses and CIDR networks of your proxies, e.g.
            ``["127.0.0.1", "::1", "10.0.0.0/8"]``. Default: loopback only (``127.0.0.1``,
            ``::1``). An IPv4-mapped IPv6 peer (``::ffff:127.0.0.1``) matches its IPv4 form.
        use_forwarded: read ``Forwarded`` (RFC 7239). When a trusted peer sends it, the
            ``X-Forwarded-*`` headers are not read.
        use_x_forwarded: read ``X-Forwarded-For``, ``X-Forwarded-Proto``, ``X-Forwarded-Host``.
        trust_unix_socket: trust peers without an address (``req.client is None``): the
            server listens on a Unix domain socket, which a proxy on the same host connects to.
            Only the proxy should be able to open that socket (mind its file permissions).
        trust_all: **dangerous**: trust every peer and every address in the chain, so the
            client is the *leftmost* entry — which any client can forge unless the proxy in
            front replaces (not appends to) the headers and nothing reaches the server except
            through it. Prefer listing the network your load balancer lives in.

    Raises:
        ValueError: for an entry that is not an address or network (host names are not
            resolved), a ``'*'`` entry (use ``trust_all``), nothing to trust, or no header kind.

    Example::

        app = proxy_headers(["10.0.0.0/8"], use_forwarded=False)(router)
        # peer 10.0.0.5 sends "X-Forwarded-For: 6.6.6.6, 203.0.113.7, 10.0.0.9"
        # -> req.client == ("203.0.113.7", 0): 10.0.0.9 is a proxy, 6.6.6.6 is forged
    """
    if not (use_forwarded or use_x_forwarded):
        raise ValueError("use_forwarded and use_x_forwarded are both off: nothing would be read")
    if trust_all and trusted is not None:
        raise ValueError("trust_all=True trusts every address; leave trusted unset with it")
    v4, v6 = _networks(_LOOPBACK if trusted is None else trusted)
    if not (v4 or v6 or trust_unix_socket or trust_all):
        raise ValueError(
            "trusted is empty: no peer would ever be believed; list your proxies' addresses "
            "(or pass trust_unix_socket=True for a proxy on a Unix socket)"
        )
    trust_no_address = trust_unix_socket or trust_all

    def ip_trusted(version: int, value: int) -> bool:
        if trust_all:
            return True
        if version == 6:
            for net, mask in v6:
                if value & mask == net:
                    return True
            if value >> 32 != 0xFFFF:
                return False
            value &= 0xFFFFFFFF  # IPv4-mapped (::ffff:a.b.c.d): a dual-stack socket's IPv4 peer
        return any(value & mask == net for net, mask in v4)

    def peer_trusted(host: str) -> bool:
        addr = _peer_addr(host)
        return addr is not None and ip_trusted(*addr)

    def forward(req: Request) -> None:
        headers = req.headers
        lines = headers.get_all("forwarded") if use_forwarded else None
        try:
            if lines:
                found: _Forward | None = _walk_forwarded(", ".join(lines), ip_trusted)
            elif use_x_forwarded:
                found = _walk_x_forwarded(headers, ip_trusted)
            else:
                return
        except _Malformed as exc:
            log.debug("ignoring forwarding headers from %s: %s", _peer(req.client), exc)
            return
        if found is None:
            return
        req.ext[PEER_KEY] = req.client
        if found.client is not _Keep.CLIENT:
            req.client = found.client
        if found.proto is not None:
            scheme = _SCHEMES.get(found.proto.lower())
            if scheme is None:
                log.debug("ignoring forwarded proto %r", found.proto[:100])
            else:
                req.scheme = scheme
        if found.host is not None:
            if _valid_host(found.host):
                req.ext[FORWARDED_HOST_KEY] = found.host
                req.host = found.host
            else:
                log.debug("ignoring forwarded host %r", found.host[:100])

    def middleware(endpoint: Endpoint) -> Endpoint:
        async def proxy_endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
            peer = req.client
            if peer_trusted(peer[0]) if peer is not None else trust_no_address:
                forward(req)
            elif log.isEnabledFor(logging.DEBUG) and any(
                name in req.headers for name in ("forwarded", *_X_FORWARDED)
            ):
                log.debug("ignoring forwarding headers from untrusted peer %s", _peer(peer))
            return await endpoint(req, w)

        return proxy_endpoint

    return middleware


def forwarded_host(req: Request) -> str | None:
    """The host the client asked for: the one a trusted proxy forwarded, else ``req.host``."""
    host: str | None = req.ext.get(FORWARDED_HOST_KEY)
    return host if host is not None else req.host


def _peer(peer: tuple[str, int] | None) -> str:
    return "unix socket" if peer is None else f"{peer[0]}:{peer[1]}"
