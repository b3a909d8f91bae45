"""Parsing ``Forwarded`` (RFC 7239) and ``X-Forwarded-*`` for :mod:`tophat.middleware.proxy`.

The grammar, the address checks, and the right-to-left walks that find the client, and the
proto and host its proxy saw, given a predicate saying which addresses are trusted. A malformed
entry the walk reaches raises :class:`Malformed`; what that means for the request is the
middleware's business.

Every function here takes time linear in the length of its input, whatever the input: the
values come from the network (a client's own ``Forwarded`` reaches us behind a proxy that
appends to it). The header is split on its delimiters by a reader that never goes back,
addresses are checked by :mod:`ipaddress`, and the few regular expressions left are a single
character class under a single quantifier. (Issue 11: the former element pattern, with optional
whitespace at both ends of a repeated group, took exponential time on ``for=1.2.3.4`` followed
by ``" ; "`` x 32 and ``!``; the bare-IPv6 pattern, three overlapping classes, cubic time on
``":" * 2000 + "g"``; either froze the event loop.)
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import logging
import re
import socket
from collections.abc import Callable, Iterator
from typing import NamedTuple

from tophat.http.headers import Headers

log = logging.getLogger("tophat.proxy")

# Addresses are compared as integers (version, value); networks are (value, mask) pairs.
_Addr = tuple[int, int]
_Trusted = Callable[[int, int], bool]

# Runs, matched forward over the *reversed* header value (see _elements); each is one character
# class under one quantifier, so a match costs the length of the run and nothing more.
_TOKEN_RUN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]*")  # RFC 9110 §5.6.2 tchar
_OWS_RUN = re.compile(r"[ \t]*")  # RFC 9110 §5.6.3
_BACKSLASH_RUN = re.compile(r"\\*")
# RFC 9110 §5.6.4: qdtext and the escaped character of a quoted-pair, together: HTAB, SP, VCHAR,
# obs-text. Where '"' and '\' may stand is settled by the quote scan, not by this class.
_QUOTED_TEXT = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)
# RFC 7239 §6: node = nodename [ ":" node-port ]; nodename = IPv4address / "[" IPv6address "]"
# / "unknown" / obfnode; obfnode and obfport = "_" 1*( ALPHA / DIGIT / "." / "_" / "-" );
# node-port = port / obfport, port = 1*5DIGIT.
_OBFUSCATED = re.compile(r"_[A-Za-z0-9._-]+")
_PORT = re.compile(r"[0-9]{1,5}")
_IP6_TEXT = re.compile(r"[0-9A-Fa-f:.]+")
# RFC 9110 §7.2 Host = uri-host [ ":" port ] (RFC 3986 §3.2.2). Stricter than the Host check in
# accept() on purpose: the value usually ends up in redirects and absolute links, so names are
# limited to unreserved characters and %-escapes (no sub-delims), and the host is not empty.
# The two alternatives never start with the same character: no backtracking into the repetition.
_REG_NAME = re.compile(r"(?:[A-Za-z0-9\-._~]|%[0-9A-Fa-f]{2})+")


class Keep(enum.Enum):
    CLIENT = "keep req.client as it is"


class _Node(NamedTuple):
    """A parsed ``for=`` or ``X-Forwarded-For`` entry."""

    host: str | None  # None: "unknown"
    port: int  # 0 when absent or obfuscated
    addr: _Addr | None  # None: "unknown" or an obfuscated identifier


class Forward(NamedTuple):
    """What the walk found: the client, and the proto and host the client-facing proxy saw."""

    client: tuple[str, int] | Keep | None
    proto: str | None
    host: str | None


class Malformed(ValueError):
    """An entry the walk had to read is not well-formed."""


# -- addresses ------------------------------------------------------------------------------------


# ipaddress takes ~2 µs to read an address (inet_pton ~0.2 µs, but what it accepts varies with
# the platform); the addresses a proxy forwards repeat (its own hops, returning clients), so
# valid ones are remembered. Only valid ones: a refusal raises, which the cache does not keep,
# and a valid address is at most 45 characters, so the cache stays small whatever is sent.
_ADDRESS_CACHE = 1024


@functools.lru_cache(maxsize=_ADDRESS_CACHE)
def _ip4(text: str) -> int:
    # ipaddress refuses leading zeros, as RFC 3986 §3.2.2 dec-octet does (some parsers read
    # "010" as octal), and anything but ASCII digits and dots.
    try:
        return int(ipaddress.IPv4Address(text))
    except ValueError:
        raise Malformed(f"not an IPv4 address: {text[:100]!r}") from None


@functools.lru_cache(maxsize=_ADDRESS_CACHE)
def _ip6(text: str) -> tuple[str, int]:
    """The compressed lower-case text and the value of an IPv6 address."""
    # ipaddress would take a zone ("fe80::1%eth0"): no zone crosses a proxy, networks have none.
    if not _IP6_TEXT.fullmatch(text):
        raise Malformed(f"not an IPv6 address: {text[:100]!r}")
    try:
        packed = ipaddress.IPv6Address(text).packed
    except ValueError:
        raise Malformed(f"not an IPv6 address: {text[:100]!r}") from None
    # inet_ntop, not str(): the same text on every Python (str() of an IPv4-mapped address
    # changed in 3.13), and the text this middleware always reported.
    return socket.inet_ntop(socket.AF_INET6, packed), int.from_bytes(packed, "big")


def peer_addr(host: str) -> _Addr | None:
    """A runtime-reported peer address as ``(version, value)``; ``None`` if it is not an IP."""
    # Not from the network but from the socket, on every request: inet_pton is the cheap check.
    try:
        if ":" in host:
            # A link-local peer may carry its zone (fe80::1%eth0); networks have none.
            packed = socket.inet_pton(socket.AF_INET6, host.partition("%")[0])
            return 6, int.from_bytes(packed, "big")
        return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, host), "big")
    except OSError:
        return None


def _port(text: str, node: str) -> int:
    """The port of ``":" node-port`` (``0`` when ``text`` is empty or the port obfuscated)."""
    if not text:
        return 0
    if text[0] == ":":
        if _PORT.fullmatch(text, 1) and int(text[1:]) <= 65535:
            return int(text[1:])
        if _OBFUSCATED.fullmatch(text, 1):
            return 0
    raise Malformed(f"not a node: {node[:100]!r}")


def _parse_node(text: str, *, bare_ip6: bool) -> _Node:
    """An RFC 7239 §6 node; with ``bare_ip6`` (X-Forwarded-For) also IPv6 without brackets."""
    if text[:1] == "[":
        inside, bracket, port = text[1:].partition("]")
        if not bracket:
            raise Malformed(f"not a node: {text[:100]!r}")
        host, value = _ip6(inside)
        return _Node(host, _port(port, text), (6, value))
    if bare_ip6 and text.count(":") > 1:
        host, value = _ip6(text)  # no brackets: no port either
        return _Node(host, 0, (6, value))
    name, colon, port = text.partition(":")
    port_number = _port(colon + port, text)
    if name[:1] == "_":
        if not _OBFUSCATED.fullmatch(name):
            raise Malformed(f"not a node: {text[:100]!r}")
        return _Node(name, port_number, None)
    if name.lower() == "unknown":
        return _Node(None, port_number, None)
    return _Node(name, port_number, (4, _ip4(name)))  # no leading zeros: already canonical


# -- Forwarded ------------------------------------------------------------------------------------


def _elements(value: str) -> Iterator[dict[str, str]]:
    """The forwarded-elements of ``value``, the last first, as ``{lower-case name: value}``.

    RFC 7239 §4 (OWS around ";" is tolerated: seen in the wild)::

        Forwarded         = 1#forwarded-element
        forwarded-element = [ forwarded-pair ] *( ";" [ forwarded-pair ] )
        forwarded-pair    = token "=" value
        value             = token / quoted-string

    The right end of the header was written by the proxies, the left end by whoever sent the
    request, so the value is read from the right, one element per ``next()``: what lies left of
    the elements the walk asks for is never looked at, and an unbalanced quote there cannot
    swallow what the proxies appended. Empty list elements are skipped (RFC 9110 §5.6.1).

    Read from the right, each step is decided by the character at hand, with no going back: a
    token ends at the first character that is not a token character (the grammar puts none
    next to one), and a quoted string that ends at a '"' starts at the nearest '"' left of it
    that no odd run of backslashes escapes (whether a '"' is escaped depends only on the whole
    run of backslashes before it). So every character is read a bounded number of times.
    ``"a, b"`` quoted is one value, not two elements: a comma only ends an element where the
    grammar is between pairs. The element found is the shortest valid one at the right end.

    Raises:
        Malformed: when the element being read is not well-formed.
    """
    rev = value[::-1]  # reading forward in rev is reading value from the right
    size = len(rev)
    pos = 0
    pairs: dict[str, str] = {}
    blank = True  # only OWS since the last comma: an empty list element
    after_pair = False  # a pair was just read: ";", "," or the start of the value comes next
    while True:
        pos = _run_end(_OWS_RUN, rev, pos)
        char = rev[pos] if pos < size else ","  # the start of the value ends an element too
        if char == ",":
            if not blank:
                yield pairs
            if pos >= size:
                return
            pos += 1
            pairs, blank, after_pair = {}, True, False
        elif char == ";":
            pos += 1
            blank, after_pair = False, False
        elif after_pair:
            raise Malformed(f"forwarded-pairs not separated by ';': {_near(rev, pos)}")
        else:
            name, param, pos = _pair(rev, pos)
            if name in pairs:
                # RFC 7239 §4: each parameter MUST NOT occur more than once per element.
                raise Malformed(f"{name}= twice in one element: {_near(rev, pos)}")
            pairs[name] = param
            blank, after_pair = False, True


def _pair(rev: str, pos: int) -> tuple[str, str, int]:
    """The forwarded-pair ending at ``rev[pos]``: lower-case name, value, and where it starts."""
    if rev[pos] == '"':
        start = _opening_quote(rev, pos)
        text = rev[pos + 1 : start][::-1]
        param = _QUOTED_PAIR.sub(r"\1", text) if "\\" in text else text
        end = start + 1
    else:
        end = _run_end(_TOKEN_RUN, rev, pos)
        if end == pos:
            raise Malformed(f"not a token or quoted-string: {_near(rev, pos)}")
        param = rev[pos:end][::-1]
    if end >= len(rev) or rev[end] != "=":
        raise Malformed(f"not a token=value pair: {_near(rev, pos)}")
    name_end = _run_end(_TOKEN_RUN, rev, end + 1)
    if name_end == end + 1:
        raise Malformed(f"a pair without a name: {_near(rev, pos)}")
    return rev[end + 1 : name_end][::-1].lower(), param, name_end


def _opening_quote(rev: str, close: int) -> int:
    """Where the quoted-string whose closing '"' is ``rev[close]`` opens (RFC 9110 §5.6.4).

    quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE, quoted-pair = "\\" ( HTAB / SP /
    VCHAR / obs-text ), and qdtext has neither '"' nor '\\'. So a '"' inside is escaped, which
    is an odd run of backslashes before it; the first '"' before it that is not escaped opens.
    """
    if _run_len(_BACKSLASH_RUN, rev, close + 1) % 2:
        raise Malformed(f"a quoted-string ends with an escaped quote: {_near(rev, close)}")
    pos = close + 1
    while True:
        quote = rev.find('"', pos)
        if quote < 0:
            raise Malformed(f"a quoted-string is not opened: {_near(rev, close)}")
        escapes = _run_len(_BACKSLASH_RUN, rev, quote + 1)
        if escapes % 2 == 0:
            break
        pos = quote + 1 + escapes
    if not _QUOTED_TEXT.fullmatch(rev, close + 1, quote):
        raise Malformed(f"a control character in a quoted-string: {_near(rev, close)}")
    return quote


def _run_end(run: re.Pattern[str], text: str, pos: int) -> int:
    m = run.match(text, pos)
    assert m is not None  # the runs match the empty string
    return m.end()


def _run_len(run: re.Pattern[str], text: str, pos: int) -> int:
    return _run_end(run, text, pos) - pos


def _near(rev: str, pos: int) -> str:
    """Up to 60 characters of the original value around the reversed position ``pos``."""
    at = len(rev) - pos
    return repr(rev[::-1][max(0, at - 40) : at + 20])


def walk_forwarded(value: str, trusted: _Trusted) -> Forward:
    found: tuple[dict[str, str], _Node | None] | None = None
    for params in _elements(value):
        node = _parse_node(params["for"], bare_ip6=False) if "for" in params else None
        found = params, node
        if node is None or node.addr is None or not trusted(*node.addr):
            break
    if found is None:
        raise Malformed("no forwarded-element")
    params, node = found
    if node is None:
        client: tuple[str, int] | Keep | None = Keep.CLIENT
    else:
        client = None if node.host is None else (node.host, node.port)
    return Forward(client, params.get("proto"), params.get("host"))


# -- X-Forwarded-* --------------------------------------------------------------------------------


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


def walk_x_forwarded(headers: Headers, trusted: _Trusted, *, read_host: bool) -> Forward | None:
    chain = headers.get_list("x-forwarded-for")
    protos = headers.get_list("x-forwarded-proto")
    hosts = headers.get_list("x-forwarded-host") if read_host else []
    if not (chain or protos or hosts):
        return None
    client: tuple[str, int] | Keep | None = Keep.CLIENT
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
    return Forward(
        client,
        _aligned(protos, hops, "X-Forwarded-Proto"),
        _aligned(hosts, hops, "X-Forwarded-Host"),
    )


def valid_host(host: str) -> bool:
    if host[:1] == "[":
        inside, bracket, port = host[1:].partition("]")
        if not bracket:
            return False
        try:
            _ip6(inside)
        except Malformed:
            return False
    else:
        name, colon, port = host.partition(":")
        if not _REG_NAME.fullmatch(name):
            return False
        port = colon + port
    return not port or (port[0] == ":" and _PORT.fullmatch(port, 1) is not None)
