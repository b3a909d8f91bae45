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

**Only the headers your proxy sets are read.** A proxy passes on every header it does not set
or clear, so a header it leaves alone is written by the client. Hence one family of headers,
named by ``headers=``, and nothing else:

=================  ============================================================================
``headers=``       read
=================  ============================================================================
``"x-forwarded"``  ``X-Forwarded-For``, ``X-Forwarded-Proto`` (the default: what nginx, HAProxy
                   and most load balancers set); ``X-Forwarded-Host`` too, only with
                   ``x_forwarded_host=True`` (few proxies set it; many pass the client's on)
``"forwarded"``    ``Forwarded`` (RFC 7239), ``for=``, ``proto=`` and ``host=``
=================  ============================================================================

The other family is never read, present or not, well-formed or not: a client's
``Forwarded: for=6.6.6.6`` next to nginx's ``X-Forwarded-For`` changes nothing. Still, configure
the proxy to set or clear every one of these headers (``docs/deployment.md`` shows nginx), so
that no other code behind it reads a client's.

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

**A malformed header from a trusted peer is refused**: an entry the walk reaches that is not an
address, a broken quoted string, a repeated parameter. The request gets a ``400`` (the endpoint
does not run) and one line is logged at INFO on ``tophat.proxy``: the proxy is misconfigured, or
passed on something it should have replaced, and guessing the client from another header, or
taking the proxy for the client, would be wrong either way. A forwarded host that is not a valid
``host[:port]`` or a proto other than ``http``/``https`` is dropped on its own (logged at
DEBUG). Headers from an untrusted peer are ignored (left in ``req.headers`` untouched, never
applied).

Parsing takes time linear in the header's length, whatever its content (see ``_forwarded``).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from typing import Literal

from tophat.glitch import Glitch
from tophat.http.endpoint import Endpoint
from tophat.http.headers import Headers
from tophat.http.request import Request
from tophat.http.writer import ResponseWriter, ResponseWritten
from tophat.middleware import Middleware
from tophat.middleware._forwarded import (
    Forward,
    Keep,
    Malformed,
    peer_addr,
    valid_host,
    walk_forwarded,
    walk_x_forwarded,
)

__all__ = ["FORWARDED_HOST_KEY", "PEER_KEY", "HeaderFamily", "forwarded_host", "proxy_headers"]

log = logging.getLogger("tophat.proxy")

#: ``req.ext`` key of the host a trusted proxy forwarded (validated ``host[:port]``).
FORWARDED_HOST_KEY = "tophat.proxy.host"
#: ``req.ext`` key of the immediate peer's address, kept when forwarded values were applied.
PEER_KEY = "tophat.proxy.peer"

_LOOPBACK = ("127.0.0.1", "::1")
_SCHEMES = {"http": "http", "https": "https"}


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


HeaderFamily = Literal["x-forwarded", "forwarded"]

# What each family reads, and the header named when one of its values is malformed (only the
# client list can be: a proto or host that is not valid is dropped on its own).
_FAMILIES: dict[str, tuple[str, ...]] = {
    "x-forwarded": ("x-forwarded-for", "x-forwarded-proto"),
    "forwarded": ("forwarded",),
}
_CLIENT_FIELD = {"x-forwarded": "X-Forwarded-For", "forwarded": "Forwarded"}


def proxy_headers(
    trusted: Iterable[str] | None = None,
    *,
    headers: HeaderFamily | None = None,
    x_forwarded_host: bool = False,
    use_forwarded: bool | None = None,
    use_x_forwarded: bool | None = None,
    trust_unix_socket: bool = False,
    trust_all: bool = False,
) -> Middleware:
    """Build a middleware that applies forwarding headers sent by trusted proxies.

    Args:
        trusted: addresses and CIDR networks of your proxies, e.g.
            ``["127.0.0.1", "::1", "10.0.0.0/8"]``. Default: loopback only (``127.0.0.1``,
            ``::1``). An IPv4-mapped IPv6 peer (``::ffff:127.0.0.1``) matches its IPv4 form.
        headers: the one family of headers your proxy sets: ``"x-forwarded"`` (the default:
            ``X-Forwarded-For`` and ``X-Forwarded-Proto``) or ``"forwarded"`` (RFC 7239
            ``Forwarded``). The other family is never read.
        x_forwarded_host: also read ``X-Forwarded-Host`` (with ``headers="x-forwarded"``).
            Only if your proxy sets or clears it: most pass a client's on.
        use_forwarded: the older spelling: ``True`` means ``headers="forwarded"``, ``False``
            means ``headers="x-forwarded"``.
        use_x_forwarded: the older spelling: ``True`` means ``headers="x-forwarded"``,
            ``False`` means ``headers="forwarded"``.
        trust_unix_socket: trust peers without an address (``req.client is None``): the
            server listens on a Unix domain socket, which a proxy on the same host connects to.
            Only the proxy should be able to open that socket (mind its file permissions).
        trust_all: **dangerous**: trust every peer and every address in the chain, so the
            client is the *leftmost* entry — which any client can forge unless the proxy in
            front replaces (not appends to) the headers and nothing reaches the server except
            through it. Prefer listing the network your load balancer lives in.

    Raises:
        ValueError: for an entry that is not an address or network (host names are not
            resolved), a ``'*'`` entry (use ``trust_all``), nothing to trust, an unknown
            ``headers`` family, or switches that ask for both families, or none, or
            ``X-Forwarded-Host`` with ``Forwarded``.

    A malformed header from a trusted peer makes the request a 400 (see the module's text).

    Example::

        app = proxy_headers(["10.0.0.0/8"])(router)
        # peer 10.0.0.5 sends "X-Forwarded-For: 6.6.6.6, 203.0.113.7, 10.0.0.9"
        # -> req.client == ("203.0.113.7", 0): 10.0.0.9 is a proxy, 6.6.6.6 is forged
    """
    family = _family(headers, use_forwarded, use_x_forwarded)
    if x_forwarded_host and family != "x-forwarded":
        raise ValueError(
            "x_forwarded_host=True goes with headers='x-forwarded'; with headers='forwarded' "
            "the host is Forwarded's host= parameter"
        )
    if trust_all and trusted is not None:
        raise ValueError("trust_all=True trusts every address; leave trusted unset with it")
    v4, v6 = _networks(_LOOPBACK if trusted is None else trusted)
    if not (v4 or v6 or trust_unix_socket or trust_all):
        raise ValueError(
            "trusted is empty: no peer would ever be believed; list your proxies' addresses "
            "(or pass trust_unix_socket=True for a proxy on a Unix socket)"
        )
    trust_no_address = trust_unix_socket or trust_all
    read_names = (*_FAMILIES[family], *(("x-forwarded-host",) if x_forwarded_host else ()))
    client_field = _CLIENT_FIELD[family]

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
        addr = peer_addr(host)
        return addr is not None and ip_trusted(*addr)

    def read_forwarded(fields: Headers) -> Forward | None:
        lines = fields.get_all("forwarded")
        return walk_forwarded(", ".join(lines), ip_trusted) if lines else None

    def read_x_forwarded(fields: Headers) -> Forward | None:
        return walk_x_forwarded(fields, ip_trusted, read_host=x_forwarded_host)

    read = read_forwarded if family == "forwarded" else read_x_forwarded

    def forward(req: Request) -> None:
        try:
            found = read(req.headers)
        except Malformed as exc:
            # No fallback, to the other family or to the peer's address: either would be a
            # guess about who the client is. One line, at INFO: the proxy needs fixing.
            log.info("refusing a request from %s: bad %s: %s", _peer(req.client), client_field, exc)
            raise Glitch(400, f"Invalid {client_field} header", cause=exc) from None
        if found is None:
            return
        req.ext[PEER_KEY] = req.client
        if found.client is not Keep.CLIENT:
            req.client = found.client
        if found.proto is not None:
            scheme = _SCHEMES.get(found.proto.lower())
            if scheme is None:
                log.debug("ignoring forwarded proto %r", found.proto[:100])
            else:
                req.scheme = scheme
        if found.host is not None:
            if valid_host(found.host):
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
                name in req.headers for name in read_names
            ):
                log.debug("ignoring forwarding headers from untrusted peer %s", _peer(peer))
            return await endpoint(req, w)

        return proxy_endpoint

    return middleware


def _family(
    headers: str | None, use_forwarded: bool | None, use_x_forwarded: bool | None
) -> HeaderFamily:
    """The one header family to read, from ``headers=`` or the older two switches."""
    if headers is not None and headers not in _FAMILIES:
        raise ValueError(
            f"headers={headers!r}: expected 'x-forwarded' (X-Forwarded-For/-Proto) or "
            "'forwarded' (RFC 7239), whichever your proxy sets"
        )
    if use_forwarded is None and use_x_forwarded is None:
        return "forwarded" if headers == "forwarded" else "x-forwarded"
    # One switch given: the other is its opposite. Both given: they must pick one family.
    rfc = use_forwarded if use_forwarded is not None else not use_x_forwarded
    x = use_x_forwarded if use_x_forwarded is not None else not use_forwarded
    if rfc and x:
        raise ValueError(
            "use_forwarded and use_x_forwarded are both on: a client could send the family your "
            "proxy does not set; pass headers='x-forwarded' or headers='forwarded'"
        )
    if not (rfc or x):
        raise ValueError("use_forwarded and use_x_forwarded are both off: nothing would be read")
    family: HeaderFamily = "forwarded" if rfc else "x-forwarded"
    if headers is not None and headers != family:
        raise ValueError(
            f"headers={headers!r} contradicts use_forwarded/use_x_forwarded; pass headers= only"
        )
    return family


def forwarded_host(req: Request) -> str | None:
    """The host the client asked for: the one a trusted proxy forwarded, else ``req.host``."""
    host: str | None = req.ext.get(FORWARDED_HOST_KEY)
    return host if host is not None else req.host


def _peer(peer: tuple[str, int] | None) -> str:
    return "unix socket" if peer is None else f"{peer[0]}:{peer[1]}"
