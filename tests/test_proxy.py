"""Proxy headers: Forwarded (RFC 7239) or X-Forwarded-* — only the family configured — believed
only from trusted peers, the chain walked right to left, forged values ignored, malformed ones
from a trusted peer refused, configuration checked early; the nginx config of
docs/deployment.md run as nginx would.

Most tests drive the middleware directly on a ``Request`` (it never awaits, so its coroutine
runs to the end on the first ``send``); the wire tests go through ``accept`` over an in-memory
stream with the peer address a runtime would pass, on every backend.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Coroutine, Iterable
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tophat import Endpoint, Glitch, Request, ResponseWriter, ResponseWritten, accept
from tophat.http.headers import Headers
from tophat.middleware import Middleware, chain
from tophat.middleware.proxy import FORWARDED_HOST_KEY, PEER_KEY, forwarded_host, proxy_headers
from tophat.testing import AsyncTestClient, TestResponse, memory_stream_pair, parse_responses

PROXY = ("10.0.0.5", 51000)  # the immediate peer in most tests: a trusted load balancer
CLIENT = "203.0.113.7"  # a public address: never trusted
TRUSTED = ["127.0.0.1", "::1", "10.0.0.0/8"]

Peer = tuple[str, int] | None


def through(
    middleware: Middleware,
    headers: Iterable[tuple[str, str]] = (),
    *,
    peer: Peer = PROXY,
    scheme: str = "http",
    target: str = "/",
) -> Request:
    """Run ``middleware`` on a request from ``peer``; return the request the endpoint saw."""
    seen: list[Request] = []

    async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
        seen.append(req)
        return cast(ResponseWritten, None)

    h = Headers([("host", "internal:8000"), *headers])
    req = Request("GET", target, h, client=peer, scheme=scheme)
    run = middleware(endpoint)(req, cast(ResponseWriter, None))
    coro = cast(Coroutine[Any, Any, ResponseWritten], run)
    with pytest.raises(StopIteration):
        coro.send(None)
    assert seen == [req]
    return req


def fwd(fields: Iterable[tuple[str, str]] = (), *, peer: Peer = PROXY, **config: Any) -> Request:
    """``fields`` through ``proxy_headers(**config)`` (trusting ``TRUSTED`` unless told)."""
    config.setdefault("trusted", TRUSTED)
    return through(proxy_headers(**config), fields, peer=peer)


def rfc(fields: Iterable[tuple[str, str]] = (), *, peer: Peer = PROXY, **config: Any) -> Request:
    """:func:`fwd` with the proxy configured to set ``Forwarded``."""
    return fwd(fields, peer=peer, headers="forwarded", **config)


# The configuration that reads a header: Forwarded, or the X-Forwarded-* family, host included.
READS = {
    "forwarded": {"headers": "forwarded"},
    "x-forwarded-for": {"x_forwarded_host": True},
    "x-forwarded-proto": {"x_forwarded_host": True},
    "x-forwarded-host": {"x_forwarded_host": True},
}


def untouched(req: Request, peer: Peer = PROXY, scheme: str = "http") -> bool:
    return (
        req.client == peer
        and req.scheme == scheme
        and PEER_KEY not in req.ext
        and FORWARDED_HOST_KEY not in req.ext
    )


# -- each header kind from a trusted peer --------------------------------------------------------


def test_forwarded_from_a_trusted_peer_sets_client_scheme_and_host() -> None:
    req = rfc([("forwarded", f"for={CLIENT};proto=https;host=shop.example")])
    assert req.client == (CLIENT, 0)
    assert req.scheme == "https"
    assert forwarded_host(req) == "shop.example"
    assert req.ext[PEER_KEY] == PROXY  # the proxy's own address is kept
    assert req.host == "shop.example"  # the middleware sets Request.host too


def test_x_forwarded_headers_from_a_trusted_peer_set_client_scheme_and_host() -> None:
    req = fwd(
        [
            ("x-forwarded-for", CLIENT),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "shop.example:8443"),
        ],
        x_forwarded_host=True,
    )
    assert (req.client, req.scheme, forwarded_host(req)) == (
        (CLIENT, 0),
        "https",
        "shop.example:8443",
    )
    assert req.ext[PEER_KEY] == PROXY


def test_default_trusts_only_a_proxy_on_loopback() -> None:
    headers = [("x-forwarded-for", CLIENT)]
    assert fwd(headers, peer=("127.0.0.1", 5000), trusted=None).client == (CLIENT, 0)
    assert fwd(headers, peer=("::1", 5000), trusted=None).client == (CLIENT, 0)
    assert untouched(fwd(headers, peer=PROXY, trusted=None))


def test_a_trusted_peer_without_forwarding_headers_changes_nothing() -> None:
    assert untouched(fwd([("x-other", "1")]))


# -- untrusted peers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        [("forwarded", "for=1.2.3.4;proto=https;host=evil.example")],
        [
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.example"),
        ],
    ],
    ids=["forwarded", "x-forwarded"],
)
def test_headers_from_an_untrusted_peer_are_ignored(headers: list[tuple[str, str]]) -> None:
    peer = (CLIENT, 40000)
    req = fwd(headers, peer=peer, **READS[headers[0][0]])
    assert untouched(req, peer)
    assert forwarded_host(req) == "internal:8000"
    assert req.headers.get_all(headers[0][0]) == [headers[0][1]]  # left as received


def test_an_untrusted_peer_is_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="tophat.proxy"):
        fwd([("x-forwarded-for", "1.2.3.4")], peer=(CLIENT, 40000))
    assert [r.name for r in caplog.records] == ["tophat.proxy"]
    assert "untrusted peer 203.0.113.7:40000" in caplog.records[0].getMessage()


def test_a_peer_that_is_not_an_ip_address_is_not_trusted() -> None:
    assert untouched(fwd([("x-forwarded-for", CLIENT)], peer=("localhost", 1)), ("localhost", 1))


# -- the chain, right to left ---------------------------------------------------------------------


def test_a_forged_leftmost_x_forwarded_for_is_ignored() -> None:
    # The client sent "X-Forwarded-For: 6.6.6.6"; the proxy appended the address it saw.
    req = fwd([("x-forwarded-for", f"6.6.6.6, {CLIENT}")])
    assert req.client == (CLIENT, 0)


def test_a_forged_leftmost_forwarded_element_is_ignored() -> None:
    req = rfc([("forwarded", f"for=6.6.6.6;proto=https, for={CLIENT};proto=http")])
    assert (req.client, req.scheme) == ((CLIENT, 0), "http")


def test_multiple_trusted_hops_are_skipped() -> None:
    xff = fwd([("x-forwarded-for", f"6.6.6.6, {CLIENT}, 10.1.2.3, 10.0.0.9")])
    assert xff.client == (CLIENT, 0)
    forwarded = rfc(
        [("forwarded", f'for=6.6.6.6, for="{CLIENT}:5555", for=10.1.2.3, for=10.0.0.9')]
    )
    assert forwarded.client == (CLIENT, 5555)


def test_several_header_lines_form_one_list_in_order() -> None:
    xff = fwd([("x-forwarded-for", f"6.6.6.6, {CLIENT}"), ("x-forwarded-for", "10.0.0.9")])
    assert xff.client == (CLIENT, 0)
    forwarded = rfc([("forwarded", f"for={CLIENT}"), ("forwarded", "for=10.0.0.9")])
    assert forwarded.client == (CLIENT, 0)


def test_when_every_hop_is_trusted_the_leftmost_is_the_client() -> None:
    # A request from inside the trusted network, through two proxies.
    req = fwd([("x-forwarded-for", "10.9.9.9, 10.0.0.9")])
    assert req.client == ("10.9.9.9", 0)
    assert rfc([("forwarded", "for=127.0.0.1, for=10.0.0.9")]).client == ("127.0.0.1", 0)


def test_junk_left_of_the_client_is_never_read() -> None:
    # What the client put in front cannot void the header and make it look like the proxy.
    assert fwd([("x-forwarded-for", f"not an address!, {CLIENT}")]).client == (CLIENT, 0)
    assert rfc([("forwarded", f'for="6.6.6.6, for={CLIENT}')]).client == (CLIENT, 0)
    assert rfc([("forwarded", 'a=";b, for="[2001:db8::1]:80"')]).client == ("2001:db8::1", 80)


def test_a_quoted_comma_does_not_split_an_element() -> None:
    req = rfc([("forwarded", f'for=6.6.6.6, for={CLIENT};ext="a, for=10.0.0.1"')])
    assert req.client == (CLIENT, 0)


def test_proto_and_host_come_from_the_element_of_the_client() -> None:
    # The client-facing proxy saw https and the public host; the inner hop was plain http.
    req = rfc(
        [("forwarded", f"for={CLIENT};proto=https;host=shop.example, for=10.0.0.9;proto=http")]
    )
    assert (req.client, req.scheme, forwarded_host(req)) == ((CLIENT, 0), "https", "shop.example")


@pytest.mark.parametrize(
    ("proto", "scheme"),
    [
        ("https", "https"),  # one value, set by the edge proxy
        ("https, http", "https"),  # right-aligned with X-Forwarded-For: the client's hop
        ("https, https, http", "https"),  # a forged extra value at the left end
        ("https, http, http, http", "http"),  # more hops than X-Forwarded-For: still aligned
    ],
)
def test_x_forwarded_proto_lists_are_right_aligned_with_x_forwarded_for(
    proto: str, scheme: str
) -> None:
    req = fwd([("x-forwarded-for", f"{CLIENT}, 10.0.0.9"), ("x-forwarded-proto", proto)])
    assert (req.client, req.scheme) == ((CLIENT, 0), scheme)


def test_x_forwarded_proto_list_shorter_than_the_hops_is_ignored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    headers = [
        ("x-forwarded-for", f"{CLIENT}, 10.0.0.8, 10.0.0.9"),
        ("x-forwarded-proto", "https, https"),
    ]
    with caplog.at_level(logging.DEBUG, logger="tophat.proxy"):
        req = fwd(headers)
    assert (req.client, req.scheme) == ((CLIENT, 0), "http")
    assert "X-Forwarded-Proto" in caplog.text


def test_x_forwarded_proto_and_host_without_x_forwarded_for() -> None:
    req = fwd(
        [("x-forwarded-proto", "https"), ("x-forwarded-host", "shop.example")],
        x_forwarded_host=True,
    )
    assert (req.client, req.scheme, forwarded_host(req)) == (PROXY, "https", "shop.example")


# -- node forms: IPv6, ports, obfuscated, unknown ------------------------------------------------


@pytest.mark.parametrize(
    ("header", "value", "client"),
    [
        ("forwarded", 'for="[2001:db8:cafe::17]:4711"', ("2001:db8:cafe::17", 4711)),
        ("forwarded", 'for="[2001:DB8:0:0::17]"', ("2001:db8::17", 0)),  # canonical form
        ("forwarded", 'for="1.2.3.4"', ("1.2.3.4", 0)),
        ("forwarded", "For=1.2.3.4", ("1.2.3.4", 0)),  # parameter names are case-insensitive
        ("forwarded", 'for="1.2.3.4:80"', ("1.2.3.4", 80)),
        ("forwarded", 'for="\\1.2.3.4"', ("1.2.3.4", 0)),  # quoted-pair
        ("x-forwarded-for", "2001:db8::1", ("2001:db8::1", 0)),
        ("x-forwarded-for", "[2001:db8::1]:8080", ("2001:db8::1", 8080)),
        ("x-forwarded-for", "1.2.3.4:8080", ("1.2.3.4", 8080)),
    ],
)
def test_address_forms(header: str, value: str, client: tuple[str, int]) -> None:
    assert fwd([(header, value)], **READS[header]).client == client


def test_trusted_ipv6_hops_and_peers() -> None:
    trusted = ["2001:db8:1::/48", "::1"]
    req = fwd(
        [("x-forwarded-for", "2001:db8:2::7, 2001:db8:1::9")], peer=("::1", 1), trusted=trusted
    )
    assert req.client == ("2001:db8:2::7", 0)
    req = rfc(
        [("forwarded", 'for="[2001:db8:2::7]", for="[2001:db8:1::9]:443"')],
        peer=("2001:db8:1::1", 1),
        trusted=trusted,
    )
    assert req.client == ("2001:db8:2::7", 0)


def test_an_ipv4_mapped_peer_matches_its_ipv4_network() -> None:
    # A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d.
    req = fwd([("x-forwarded-for", CLIENT)], peer=("::ffff:10.0.0.5", 1))
    assert req.client == (CLIENT, 0)
    assert fwd([("x-forwarded-for", f"{CLIENT}, ::ffff:10.0.0.9")]).client == (CLIENT, 0)


def test_an_obfuscated_identifier_becomes_the_client_and_stops_the_walk() -> None:
    # RFC 7239 §6.3: the proxy hides the address; clients can still be told apart.
    assert rfc([("forwarded", "for=_hidden, for=10.0.0.9")]).client == ("_hidden", 0)
    assert rfc([("forwarded", 'for="_hidden:_port"')]).client == ("_hidden", 0)
    assert rfc([("forwarded", 'for="_hidden:81"')]).client == ("_hidden", 81)
    assert fwd([("x-forwarded-for", f"{CLIENT}, _gateway")]).client == ("_gateway", 0)


def test_unknown_makes_the_client_none() -> None:
    # RFC 7239 §6.2: the proxy does not know; claiming the proxy's own address would be wrong.
    req = rfc([("forwarded", f"for={CLIENT}, for=unknown;proto=https")])
    assert (req.client, req.scheme, req.ext[PEER_KEY]) == (None, "https", PROXY)
    assert fwd([("x-forwarded-for", "UNKNOWN")]).client is None


def test_an_element_without_for_keeps_the_client_and_applies_the_rest() -> None:
    req = rfc([("forwarded", "proto=https;host=shop.example")])
    assert (req.client, req.scheme, forwarded_host(req)) == (PROXY, "https", "shop.example")


# -- one family of headers: the one the proxy sets (issue 11, finding 5) -------------------------

# What nginx passes on with `proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;` and
# `proxy_set_header X-Forwarded-Proto $scheme;` and nothing else: its own two headers, and
# whatever else the client sent.
NGINX_XFF = [("x-forwarded-for", CLIENT), ("x-forwarded-proto", "https")]
LOCAL_NGINX = ("127.0.0.1", 40123)


def test_a_clients_forwarded_is_not_read_by_default() -> None:
    # The case: proxy_headers(["127.0.0.1"]) behind nginx setting X-Forwarded-*.
    spoof = [("forwarded", "for=6.6.6.6;proto=http;host=evil.example"), *NGINX_XFF]
    req = fwd(spoof, peer=LOCAL_NGINX, trusted=["127.0.0.1"])
    assert (req.client, req.scheme, forwarded_host(req)) == ((CLIENT, 0), "https", "internal:8000")


def test_a_clients_malformed_forwarded_does_not_void_x_forwarded_for() -> None:
    req = fwd([("forwarded", 'for="'), *NGINX_XFF], peer=LOCAL_NGINX, trusted=["127.0.0.1"])
    assert (req.client, req.scheme) == ((CLIENT, 0), "https")
    assert req.ext[PEER_KEY] == LOCAL_NGINX


def test_a_clients_x_forwarded_host_is_not_read_by_default() -> None:
    spoof = [*NGINX_XFF, ("x-forwarded-host", "evil.example")]
    req = fwd(spoof, peer=LOCAL_NGINX, trusted=["127.0.0.1"])
    assert (req.client, forwarded_host(req)) == ((CLIENT, 0), "internal:8000")
    assert FORWARDED_HOST_KEY not in req.ext
    # Read when the proxy is said to set it.
    req = fwd(spoof, peer=LOCAL_NGINX, trusted=["127.0.0.1"], x_forwarded_host=True)
    assert forwarded_host(req) == "evil.example"


def test_with_forwarded_configured_x_forwarded_headers_are_not_read() -> None:
    spoof = [
        ("x-forwarded-for", "6.6.6.6"),
        ("x-forwarded-proto", "http"),
        ("x-forwarded-host", "evil.example"),
        ("forwarded", f"for={CLIENT};proto=https;host=shop.example"),
    ]
    req = rfc(spoof)
    assert (req.client, req.scheme, forwarded_host(req)) == ((CLIENT, 0), "https", "shop.example")
    # Without Forwarded, nothing is applied.
    assert untouched(rfc(spoof[:3]))


def test_a_malformed_forwarded_from_a_trusted_peer_is_refused_not_replaced() -> None:
    with pytest.raises(Glitch) as refused:
        rfc([("forwarded", "for=[::1]"), ("x-forwarded-for", "6.6.6.6")])
    assert (refused.value.status, refused.value.message) == (400, "Invalid Forwarded header")


def test_the_older_switches_pick_one_family() -> None:
    both = [("forwarded", "for=1.1.1.1"), ("x-forwarded-for", "2.2.2.2")]
    assert fwd(both, use_forwarded=False).client == ("2.2.2.2", 0)
    assert fwd(both, use_x_forwarded=True).client == ("2.2.2.2", 0)
    assert fwd(both, use_x_forwarded=False).client == ("1.1.1.1", 0)
    assert fwd(both, use_forwarded=True).client == ("1.1.1.1", 0)
    assert fwd(both, use_forwarded=True, use_x_forwarded=False).client == ("1.1.1.1", 0)
    assert fwd(both, headers="forwarded", use_forwarded=True).client == ("1.1.1.1", 0)
    assert untouched(fwd([("x-forwarded-for", "2.2.2.2")], use_x_forwarded=False))
    assert untouched(fwd([("forwarded", "for=1.1.1.1")], use_forwarded=False))


# -- malformed values -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("forwarded", "for=[::1]"),  # IPv6 must be quoted: ':' and '[' are not token characters
        ("forwarded", 'for="2001:db8::1"'),  # and bracketed
        ("forwarded", 'for="[1.2.3.4]"'),
        ("forwarded", "for=1.2.3.4;for=5.6.7.8"),  # RFC 7239 §4: once per element
        ("forwarded", 'for="1.2.3.4'),  # unterminated quoted string
        ("forwarded", 'for="1.2.3.4\\"'),  # the closing quote is escaped
        ("forwarded", 'for="1.2.3.4"x'),
        ("forwarded", "for=1.2.3.4 proto=https"),
        ("forwarded", "for = 1.2.3.4"),
        ("forwarded", "for=999.1.1.1"),
        ("forwarded", "for=01.2.3.4"),  # leading zeros are ambiguous (octal?)
        ("forwarded", 'for="1.2.3.4:65536"'),
        ("forwarded", 'for="1.2.3.4:1_0"'),
        ("forwarded", "for=localhost"),
        ("forwarded", "for=_"),
        ("forwarded", 'for="[2001:db8::1]:"'),
        ("forwarded", 'for="[fe80::1%eth0]"'),
        ("forwarded", ",,"),  # no element at all
        ("forwarded", f"for={CLIENT}, for=10.0.0.9, for=bogus"),  # the peer's own entry
        ("forwarded", "for=bogus, for=10.0.0.9"),  # reached through a trusted hop
        ("forwarded", "for=1.2.3.4" + " ; " * 32 + "!"),  # the (exponential before)
        ("x-forwarded-for", "not-an-ip"),
        ("x-forwarded-for", f"{CLIENT}, 10.0.0.9, 1.2.3.4.5"),
        ("x-forwarded-for", "[2001:db8::1"),
        ("x-forwarded-for", "1.2.3.4:99999"),
        ("x-forwarded-for", "fe80::1%eth0"),
        ("x-forwarded-for", ":" * 2000 + "g"),  # the (cubic before)
    ],
)
def test_malformed_headers_from_a_trusted_peer_are_refused_and_logged_once_at_info(
    header: str, value: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="tophat.proxy"), pytest.raises(Glitch) as refused:
        fwd([(header, value), ("x-forwarded-proto", "https")], **READS[header])
    field = "Forwarded" if header == "forwarded" else "X-Forwarded-For"
    assert (refused.value.status, refused.value.message) == (400, f"Invalid {field} header")
    assert [(r.name, r.levelno) for r in caplog.records] == [("tophat.proxy", logging.INFO)]
    assert f"refusing a request from 10.0.0.5:51000: bad {field}:" in caplog.records[0].getMessage()


# -- proto and host -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("proto", "scheme"),
    [("https", "https"), ("HTTPS", "https"), ("Http", "http"), ("wss", "x"), ("ftp", "x")],
)
def test_only_http_and_https_set_the_scheme(proto: str, scheme: str) -> None:
    for name, value in (("forwarded", f"proto={proto}"), ("x-forwarded-proto", proto)):
        req = through(proxy_headers(TRUSTED, **READS[name]), [(name, value)], scheme="x")
        assert req.scheme == scheme


def test_a_forwarded_http_downgrades_a_tls_connection_from_a_trusted_proxy() -> None:
    # The proxy terminates TLS for the client... or not: it says what the client used.
    req = through(proxy_headers(TRUSTED), [("x-forwarded-proto", "http")], scheme="https")
    assert req.scheme == "http"


@pytest.mark.parametrize(
    "host",
    [
        "shop.example",
        "shop.example:8443",
        "SHOP.example",
        "192.0.2.1:80",
        "[2001:db8::1]",
        "[2001:db8::1]:443",
        "xn--caf-dma.example",
        "a%20b",
    ],
)
def test_valid_forwarded_hosts_are_kept(host: str) -> None:
    assert forwarded_host(fwd([("x-forwarded-host", host)], x_forwarded_host=True)) == host
    assert forwarded_host(rfc([("forwarded", f'host="{host}"')])) == host


@pytest.mark.parametrize(
    "host",
    [
        "shop.example/evil",
        "user@shop.example",
        "shop.example:",
        "shop.example:123456",
        "shop example",
        "[zz::1]",
        "[2001:db8::1",
        "a%zz",
        "shop.example;x",
        ":80",
    ],
)
def test_invalid_forwarded_hosts_are_dropped_alone(
    host: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="tophat.proxy"):
        req = fwd([("x-forwarded-for", CLIENT), ("x-forwarded-host", host)], x_forwarded_host=True)
    assert req.client == (CLIENT, 0)  # the rest still applies
    assert FORWARDED_HOST_KEY not in req.ext
    assert forwarded_host(req) == "internal:8000"
    assert "ignoring forwarded host" in caplog.text


def test_forwarded_host_falls_back_to_the_target_host() -> None:
    req = through(proxy_headers(TRUSTED), target="http://absolute.example/x")
    assert forwarded_host(req) == "absolute.example"


# -- Unix sockets and trust_all -------------------------------------------------------------------


def test_a_unix_socket_peer_is_trusted_only_when_asked() -> None:
    headers = [("x-forwarded-for", CLIENT), ("x-forwarded-proto", "https")]
    assert untouched(fwd(headers, peer=None), None)
    req = fwd(headers, peer=None, trust_unix_socket=True)
    assert (req.client, req.scheme, req.ext[PEER_KEY]) == ((CLIENT, 0), "https", None)
    # A Unix socket alone is a valid configuration.
    only_uds = fwd(headers, peer=None, trusted=[], trust_unix_socket=True)
    assert only_uds.client == (CLIENT, 0)
    assert untouched(
        fwd(headers, peer=("127.0.0.1", 1), trusted=[], trust_unix_socket=True), ("127.0.0.1", 1)
    )


def test_trust_all_believes_every_peer_and_takes_the_leftmost_entry() -> None:
    headers = [("x-forwarded-for", f"6.6.6.6, {CLIENT}")]
    req = fwd(headers, peer=("198.51.100.1", 1), trusted=None, trust_all=True)
    assert req.client == ("6.6.6.6", 0)  # forgeable: the documented price of trust_all
    assert fwd(headers, peer=None, trusted=None, trust_all=True).client == ("6.6.6.6", 0)


# -- configuration errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"trusted": "10.0.0.0/8"}, r"not a single string; write trusted=\['10.0.0.0/8'\]"),
        ({"trusted": ["*"]}, "pass trust_all=True"),
        ({"trusted": ["localhost"]}, "not an IP address or CIDR network.*not resolved"),
        ({"trusted": ["10.0.0.1/8"]}, "did you mean '10.0.0.0/8'"),
        ({"trusted": ["10.0.0.0/33"]}, "not an IP address or CIDR network"),
        ({"trusted": [""]}, "not an IP address"),
        ({"trusted": [10]}, "is not a string"),
        ({"trusted": []}, "trusted is empty"),
        ({"use_forwarded": False, "use_x_forwarded": False}, "nothing would be read"),
        ({"use_forwarded": True, "use_x_forwarded": True}, "both on.*headers='x-forwarded'"),
        ({"headers": "x-forwarded", "use_forwarded": True}, "contradicts"),
        ({"headers": "X-Forwarded-For"}, "expected 'x-forwarded'.*or 'forwarded'"),
        ({"headers": "forwarded", "x_forwarded_host": True}, "goes with headers='x-forwarded'"),
        ({"trusted": ["10.0.0.0/8"], "trust_all": True}, "leave trusted unset"),
    ],
)
def test_configuration_errors_are_raised_at_construction(
    config: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        proxy_headers(**config)


def test_whitespace_around_trusted_entries_is_allowed() -> None:
    assert fwd([("x-forwarded-for", CLIENT)], trusted=[" 10.0.0.0/8 "]).client == (CLIENT, 0)


# -- a request or a 400, never another exception -------------------------------------------------

_HEADER_TEXT = st.text(
    st.sampled_from([*'0123456789abcdef.:[]_,;="\\ \t-unknowfrpth', "\x80", "é"]),
    max_size=60,
)


@settings(max_examples=400, deadline=None)
@given(
    forwarded=st.lists(_HEADER_TEXT, max_size=3),
    xff=st.lists(_HEADER_TEXT, max_size=3),
    proto=st.lists(_HEADER_TEXT, max_size=2),
    host=st.lists(_HEADER_TEXT, max_size=2),
)
def test_any_header_values_give_a_request_or_a_400_never_another_exception(
    forwarded: list[str], xff: list[str], proto: list[str], host: list[str]
) -> None:
    headers = [
        *(("forwarded", v.strip(" \t")) for v in forwarded),
        *(("x-forwarded-for", v.strip(" \t")) for v in xff),
        *(("x-forwarded-proto", v.strip(" \t")) for v in proto),
        *(("x-forwarded-host", v.strip(" \t")) for v in host),
    ]
    for config in READS["forwarded"], READS["x-forwarded-for"]:
        try:
            req = through(proxy_headers(TRUSTED, **config), headers)
        except Glitch as glitch:
            assert glitch.status == 400
            continue
        assert req.scheme in ("http", "https")
        assert req.client is None or (
            isinstance(req.client[0], str) and 0 <= req.client[1] <= 65535
        )
        if req.client != PROXY:
            assert req.ext[PEER_KEY] == PROXY


# -- on the wire, on every runtime ----------------------------------------------------------------


async def echo(req: Request, w: ResponseWriter) -> ResponseWritten:
    w.set_json(
        {
            "client": list(req.client) if req.client else None,
            "scheme": req.scheme,
            "host": forwarded_host(req),
        }
    )
    return await w.send()


async def respond(app: Endpoint, head: str, *, peer: Peer, scheme: str = "http") -> TestResponse:
    """The response to ``GET /`` with the header lines ``head``, from ``peer``, over ``accept``."""
    client, server = memory_stream_pair()
    await client.send_all(f"GET / HTTP/1.1\r\n{head}\r\n".encode("latin-1"))
    client.send_eof()
    await accept(server, app, client=peer, server=("10.0.0.2", 8000), scheme=scheme)
    [resp] = parse_responses(client.take_all())
    return resp


async def serve(app: Endpoint, headers: str, *, peer: Peer, scheme: str = "http") -> dict[str, Any]:
    resp = await respond(app, f"Host: internal\r\n{headers}", peer=peer, scheme=scheme)
    assert resp.status == 200
    result: dict[str, Any] = resp.json()
    return result


async def test_on_the_wire_a_trusted_proxy_is_believed() -> None:
    app = proxy_headers(TRUSTED, x_forwarded_host=True)(echo)
    headers = (
        f"X-Forwarded-For: 6.6.6.6, {CLIENT}\r\nX-Forwarded-Proto: https\r\n"
        "X-Forwarded-Host: shop.example\r\n"
    )
    assert await serve(app, headers, peer=PROXY) == {
        "client": [CLIENT, 0],
        "scheme": "https",
        "host": "shop.example",
    }
    app = proxy_headers(TRUSTED, headers="forwarded")(echo)
    forwarded = 'Forwarded: for="[2001:db8::1]:4711";proto=https, for=10.0.0.9\r\n'
    assert (await serve(app, forwarded, peer=("::1", 1)))["client"] == ["2001:db8::1", 4711]


async def test_on_the_wire_an_untrusted_peer_is_not() -> None:
    app = proxy_headers(TRUSTED, headers="forwarded")(echo)
    headers = "Forwarded: for=6.6.6.6;proto=http;host=evil.example\r\n"
    assert await serve(app, headers, peer=(CLIENT, 40000), scheme="https") == {
        "client": [CLIENT, 40000],
        "scheme": "https",
        "host": "internal",
    }


async def test_on_the_wire_a_malformed_header_from_a_trusted_proxy_is_answered_400() -> None:
    for config, field in (
        ({}, "X-Forwarded-For: 1.2.3.4.5"),
        ({"headers": "forwarded"}, 'Forwarded: for="'),
    ):
        app = proxy_headers(TRUSTED, **config)(echo)
        resp = await respond(app, f"Host: internal\r\n{field}\r\n", peer=PROXY)
        name = field.partition(":")[0]
        assert (resp.status, resp.body) == (400, f"Invalid {name} header".encode())


async def test_on_the_wire_a_unix_socket_proxy() -> None:
    app = proxy_headers(trust_unix_socket=True)(echo)
    result = await serve(app, f"X-Forwarded-For: {CLIENT}\r\n", peer=None)
    assert result["client"] == [CLIENT, 0]


async def test_test_client_peer_is_loopback_so_the_default_trusts_it() -> None:
    # AsyncTestClient connects from 127.0.0.1, a proxy on the same host for the default config.
    app = chain(proxy_headers())(echo)
    resp = await AsyncTestClient(app).get("/", headers={"x-forwarded-for": CLIENT})
    assert resp.json()["client"] == [CLIENT, 0]


# -- the nginx config of docs/deployment.md, as nginx runs it ------------------------------------

DEPLOYMENT = Path(__file__).resolve().parent.parent / "docs" / "deployment.md"
# The middleware docs/deployment.md puts behind its nginx (which connects over a Unix socket).
DOCUMENTED_MIDDLEWARE = "proxy_headers(trust_unix_socket=True)"
# Every header proxy_headers can be configured to read.
READABLE = ("forwarded", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host")


def nginx_config() -> dict[str, str]:
    """The ``proxy_set_header`` directives of the nginx block in docs/deployment.md."""
    [block] = re.findall(r"```nginx\n(.*?)```", DEPLOYMENT.read_text(), re.DOTALL)
    directives = re.findall(
        r'^\s*proxy_set_header\s+(\S+)\s+("[^"]*"|[^\s;]+)\s*;', block, re.MULTILINE
    )
    return {name.lower(): value.strip('"') for name, value in directives}


def through_nginx(
    fields: list[tuple[str, str]], *, remote_addr: str, scheme: str, host: str
) -> list[tuple[str, str]]:
    """The header fields nginx sends upstream for a request with ``fields``, by that config.

    nginx's proxy module replaces a field named by ``proxy_set_header`` with the directive's
    value, and sends no such field at all when the value is empty; it passes every other field
    of the client's on as it came. ``$proxy_add_x_forwarded_for`` is the client's
    X-Forwarded-For (its lines joined with ", "), then ", " and ``$remote_addr``; or
    ``$remote_addr`` alone. (A variable not listed here fails the test: add it.)
    """
    config = nginx_config()
    xff = ", ".join(v for n, v in fields if n.lower() == "x-forwarded-for")
    variables = {
        "host": host,
        "remote_addr": remote_addr,
        "scheme": scheme,
        "proxy_add_x_forwarded_for": f"{xff}, {remote_addr}" if xff else remote_addr,
    }
    sent = [(n, re.sub(r"\$(\w+)", lambda m: variables[m[1]], v)) for n, v in config.items()]
    return [(n, v) for n, v in sent if v] + [(n, v) for n, v in fields if n.lower() not in config]


def test_the_documented_nginx_config_sets_or_clears_every_header_the_middleware_reads() -> None:
    config = nginx_config()
    assert [name for name in READABLE if name not in config] == []
    assert DOCUMENTED_MIDDLEWARE in DEPLOYMENT.read_text()


SPOOFS = {
    "forwarded": [("Forwarded", "for=6.6.6.6;proto=http;host=evil.example")],
    "malformed-forwarded": [("Forwarded", 'for="')],
    "x-forwarded": [
        ("X-Forwarded-For", "6.6.6.6"),
        ("X-Forwarded-Proto", "http"),
        ("X-Forwarded-Host", "evil.example"),
    ],
    "trusted-address": [("X-Forwarded-For", "127.0.0.1"), ("X-Forwarded-For", "::1")],
    "malformed-x-forwarded-for": [("X-Forwarded-For", 'for="')],
    "everything": [
        ("Forwarded", "for=6.6.6.6;proto=http;host=evil.example"),
        ("X-Forwarded-For", "6.6.6.6, 127.0.0.1"),
        ("X-Forwarded-Proto", "http"),
        ("X-Forwarded-Host", "evil.example"),
        ("Forwarded", 'for="'),
    ],
}


@pytest.mark.parametrize("spoof", SPOOFS.values(), ids=list(SPOOFS))
async def test_behind_the_documented_nginx_a_client_cannot_set_its_address_scheme_or_host(
    spoof: list[tuple[str, str]],
) -> None:
    # Issue 11, finding 5: the client's own forwarding headers, as nginx passes them on.
    fields = through_nginx(
        [("Host", "api.example.com"), ("Accept", "*/*"), *spoof],
        remote_addr=CLIENT,
        scheme="https",
        host="api.example.com",
    )
    app = proxy_headers(trust_unix_socket=True)(echo)  # DOCUMENTED_MIDDLEWARE
    head = "".join(f"{name}: {value}\r\n" for name, value in fields)
    resp = await respond(app, head, peer=None)  # nginx connects over the Unix socket
    assert resp.status == 200
    assert resp.json() == {"client": [CLIENT, 0], "scheme": "https", "host": "api.example.com"}
