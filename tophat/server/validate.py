"""The strict layer on top of h11: what RFC 9110/9112 forbid and h11 lets through.

h11 is a parser, not a policy. Measured against h11 0.16 (tests/test_h11_leniency.py pins each):

* it accepts any ``HTTP/d.d`` version (``HTTP/2.0``, ``HTTP/1.2``);
* it accepts Content-Length together with Transfer-Encoding and lets Transfer-Encoding win;
* it accepts Transfer-Encoding in an HTTP/1.0 request;
* it treats CONNECT like any request (authority-form target, no tunnel);
* it accepts a fragment (``#``) in the target and any target form with any method;
* it does not check the Host value's syntax;
* its head-size limit applies only while a head is incomplete, so a head that arrives in one
  piece is never measured;
* it has no header-count or target-length limit;
* it accepts control characters other than CR, LF and NUL in field values;
* it answers 501 to every Transfer-Encoding but ``chunked``, where RFC 9112 §6.3 requires 400
  when chunked is not the final coding (``chunked, gzip``); our h11 parser answers 400 for
  all of them (``_status`` in ``tophat/parsers/h11_parser.py``).

``check_request`` returns ``None`` or the ``(status, reason)`` to refuse the request with; every
refusal closes the connection, because after a malformed head the framing of whatever follows
cannot be trusted (RFC 9112 §11.2 on request smuggling).
"""

from __future__ import annotations

import ipaddress
import re
from operator import itemgetter

from tophat.parsers.events import Head
from tophat.server.opts import ServerOpts

__all__ = ["Fields", "Refusal", "check_request", "check_trailers", "declared_too_large"]

Refusal = tuple[int, str]

# RFC 9112 §2.3: "HTTP/1.0" and "HTTP/1.1" are the versions this server speaks. RFC 9110 §15.6.6:
# 505 is for a major version the server does not support; for an unknown minor version of 1.x
# RFC 9110 §2.5 lets us treat it as the highest 1.x we support — but h11 would then frame the
# exchange as 1.1 on the client's word only, so we refuse every other version.
_VERSIONS = frozenset((b"1.0", b"1.1"))

# RFC 9110 §5.3: a sender MUST NOT generate several field lines with the same name unless the
# field is list-based. For these singletons, several lines mean the request is ambiguous (two
# Content-Types, two Authorizations: which one did the client mean?), so we refuse them.
# (h11 itself refuses duplicate Host and differing Content-Length and merges identical
# Content-Length lines, which RFC 9112 §6.3 allows.)
_SINGLETONS = frozenset(
    (
        b"host",
        b"content-length",
        b"content-type",
        b"authorization",
        b"proxy-authorization",
        b"range",
        b"if-range",
        b"if-modified-since",
        b"if-unmodified-since",
        b"max-forwards",
        b"origin",
        b"referer",
        b"user-agent",
        b"from",
        b"date",
    )
)

# The fields the checks and the connection look at.
_WATCHED = _SINGLETONS | {b"transfer-encoding", b"connection", b"expect"}

# RFC 3986 §3.2: host = IP-literal / IPv4address / reg-name; port = *DIGIT. A reg-name's "%"
# starts a pct-encoded octet; an IPv6 literal's text is checked by _valid_host.
_HOST = re.compile(
    rb"(?:\[(?P<ip6>[0-9A-Fa-f:.]+)\]|\[v[0-9A-Fa-f]+\.[A-Za-z0-9\-._~!$&'()*+,;=:]+\]"
    rb"|(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*)(?::[0-9]*)?"
)
# RFC 9112 §3.2.2 absolute-form = absolute-URI; only http and https name this server's resources.
# RFC 3986 §3.2: the authority ends at the first "/", "?" or "#". absolute-URI has no fragment
# (§4.3), so a target with "#" is refused before this pattern runs, and the pattern is matched
# at the start only, with nothing after the authority: it never backtracks. (Under fullmatch,
# "([^/?#]*)[^#]*" re-scanned the rest of the target for every authority length it gave back:
# 0.2 s of loop time for an 8 KB target ending in "#".)
_ABSOLUTE = re.compile(rb"(?i:https?)://([^/?#]*)")


def _valid_host(host: bytes) -> bool:
    """RFC 9112 §3.2: a Host value (or an absolute-form authority) a server MUST accept."""
    m = _HOST.fullmatch(host)
    if m is None:
        return False
    ip6 = m.group("ip6")
    if ip6 is None:
        return True
    try:
        ipaddress.IPv6Address(ip6.decode("ascii"))  # (no zone id: "%" is not in the pattern)
    except ValueError:
        return False
    return True


# RFC 9110 §5.5: CR, LF and NUL in a field value are dangerous (h11 refuses those); the other
# control characters are invalid too and no legitimate client sends them, so we refuse them.
# A value's bytes translated with this table are 0 where a control character was (HTAB is not
# one), 1 elsewhere.
_CTL_ZERO = bytes(int(b == 0x09 or (0x20 <= b != 0x7F)) for b in range(256))


# "#" as an int: bytes.__contains__ tries its operand as an int first, and a bytes operand
# costs it a formatted TypeError (~0.2 µs a request).
_HASH = ord("#")

_VALID_HOSTS: set[bytes] = set()
_value = itemgetter(1)  # a field's value


class Fields:
    """What the checks and the connection need from a header section, gathered in one pass."""

    __slots__ = (
        "close",
        "content_length",
        "ctl",
        "duplicate",
        "expect_continue",
        "has_content",
        "host",
        "transfer_encoding",
    )

    def __init__(self, headers: list[tuple[bytes, bytes]], values_checked: bool = False) -> None:
        """``values_checked``: the parser already refused control characters in values
        (llhttp does; h11 does not)."""
        # (Locals in the loop, attributes set once, no list or set made before it is needed:
        # this runs for every request.)
        duplicate: bytes | None = None
        host: bytes | None = None
        transfer_encoding: list[bytes] | None = None
        content_length: bytes | None = None
        close = expect_continue = False
        seen: set[bytes] | None = None  # the singletons so far
        for name, value in headers:
            if name not in _WATCHED:
                continue
            if name in _SINGLETONS:
                if seen is None:
                    seen = {name}
                elif name not in seen:
                    seen.add(name)
                elif duplicate is None:
                    duplicate = name
                if name == b"host":
                    if host is None:  # (a second Host is a duplicate: refused)
                        host = value
                elif name == b"content-length":
                    content_length = value
            elif name == b"transfer-encoding":
                if transfer_encoding is None:
                    transfer_encoding = [value]
                else:
                    transfer_encoding.append(value)
            elif name == b"connection":
                close = close or value.lower().find(b"close") >= 0
            else:  # expect
                expect_continue = expect_continue or value.lower().find(b"100-continue") >= 0
        self.duplicate = duplicate
        self.host = host  # the (first) Host value
        self.transfer_encoding = transfer_encoding  # None without one
        self.content_length = content_length
        self.close = close  # a Connection field with the "close" option
        self.expect_continue = expect_continue  # "Expect: 100-continue"
        # Whether the request announces content (RFC 9112 §6.3: by Transfer-Encoding or a
        # non-zero Content-Length).
        self.has_content = transfer_encoding is not None or (
            content_length is not None and content_length.strip(b"0") != b""
        )
        # One pass over every value (HTAB, allowed, joins them) instead of one per field.
        # (map, not a list comprehension: no frame; translate to 0/1 and a search for 0, not a
        # regex search: -0.06 µs for 1 field, -0.45 µs for 8.)
        self.ctl = (
            not values_checked
            and bool(headers)
            and 0 in b"\t".join(map(_value, headers)).translate(_CTL_ZERO)
        )


def check_request(ev: Head, f: Fields, opts: ServerOpts) -> Refusal | None:
    """The first rule ``ev`` breaks, or ``None`` when the request may be served.

    The order matters: the first refusal wins. Version first (nothing else is meaningful
    without it), then the size limits, then method and target, then the header semantics.
    (One straight function rather than a table of small ones: it runs for every request.)
    """
    version = ev.http_version
    if version not in _VERSIONS:
        return 505, "HTTP Version Not Supported"

    # RFC 9112 §3: a server that receives a request-target longer than any URI it wishes to
    # parse MUST respond with a 414 (URI Too Long) status code.
    target = ev.target
    if len(target) > opts.max_target_length:
        return 414, "URI Too Long"
    if len(ev.headers) > opts.max_header_count:
        return 431, "Too many header fields"
    # The whole head, however it arrived (h11's own limit only applies while it is incomplete).
    if ev.size > opts.max_head_size:
        return 431, "Request header fields too large"

    # CONNECT asks for a tunnel (RFC 9110 §9.3.6); an origin server library has none to give.
    # RFC 9110 §15.6.2: 501 is the response to a method the server does not support.
    if ev.method == b"CONNECT":
        return 501, "CONNECT is not supported"

    if target[:1] == b"/":
        # RFC 9112 §3.2: origin-form = absolute-path [ "?" query ]; a fragment is never sent.
        if _HASH in target:
            return 400, "Fragment in request-target"
    elif target == b"*":
        # RFC 9112 §3.2.4: asterisk-form is only used for a server-wide OPTIONS request.
        if ev.method != b"OPTIONS":
            return 400, "Asterisk-form is only for OPTIONS"
    else:
        m = None if _HASH in target else _ABSOLUTE.match(target)
        if m is None or not m.group(1) or not _valid_host(m.group(1)):
            return 400, "Invalid request-target"

    if f.duplicate is not None:
        return 400, "Duplicate " + f.duplicate.decode() + " header"
    if f.ctl:
        return 400, "Control character in a header value"

    if f.transfer_encoding is not None:
        if f.content_length is not None:
            # RFC 9112 §6.1: a server MAY reject a request that contains both Content-Length
            # and Transfer-Encoding or process it per Transfer-Encoding; either way it MUST
            # close the connection afterwards. Such a request is the classic smuggling probe.
            return 400, "Both Content-Length and Transfer-Encoding"
        if version == b"1.0":
            # RFC 9112 §6.1: a server that receives an HTTP/1.0 message with Transfer-Encoding
            # MUST treat it as if the framing is faulty and close the connection.
            return 400, "Transfer-Encoding in an HTTP/1.0 request"
        # RFC 9112 §6.3: if chunked is not the final transfer coding of a request, its length
        # cannot be determined: 400 and close. §7: chunked MUST NOT be applied twice. §6.1: a
        # coding the server does not understand SHOULD get 501. (h11 refuses all of these
        # before we see them, our h11 parser with 400: see its _status; httptools lets "gzip"
        # through with no body at all.)
        codings = [
            c.strip().lower() for v in f.transfer_encoding for c in v.split(b",") if c.strip()
        ]
        if not codings or codings[-1] != b"chunked" or codings.count(b"chunked") > 1:
            return 400, "Invalid Transfer-Encoding"
        if len(codings) > 1:
            return 501, "Unsupported Transfer-Encoding"

    # RFC 9112 §3.2: a server MUST respond with 400 to an HTTP/1.1 request without Host, and to
    # a request with an invalid Host value (h11 checks the first; httptools neither).
    host = f.host
    if host is None:
        if version == b"1.1":
            return 400, "Missing Host header"
    elif host not in _VALID_HOSTS:
        if not _valid_host(host):
            return 400, "Invalid Host header"
        # A server sees a few Host values again and again: remember them (saves the regex).
        if len(_VALID_HOSTS) < 256 and len(host) <= 255:
            _VALID_HOSTS.add(host)

    # (The call only with a length: -0.5k instructions a request without one.)
    if f.content_length is not None and declared_too_large(f.content_length, opts.max_body_size):
        return 413, "Content Too Large"
    return None


def declared_too_large(content_length: bytes | str | None, limit: int | None) -> bool:
    """Whether a declared Content-Length is over ``limit``: such a request is refused (413, and
    a close) before the endpoint runs, by the native server and the ASGI adapter alike.

    A value that is not all ASCII digits is no length (the parsers refuse it; "²".isdigit() is
    True for a str, hence the isascii()).
    """
    return (
        limit is not None
        and content_length is not None
        and content_length.isascii()
        and content_length.isdigit()
        and int(content_length) > limit
    )


# RFC 9110 §6.5.1: "Many fields cannot be processed outside the header section because their
# evaluation is necessary prior to receiving the content, such as those that describe message
# framing, routing, authentication, request modifiers, response controls, or content format. A
# sender MUST NOT generate a trailer field unless the sender knows the corresponding header field
# name's definition permits the field to be sent in trailers."  These request fields are of those
# kinds, and none of their definitions permits a trailer: a request that sends one in its trailer
# section comes from a broken or hostile sender, and is refused (400, close) rather than handing
# the endpoint a Host or an Authorization that arrived after the content.
_NOT_IN_TRAILERS: dict[bytes, str] = {
    # framing (RFC 9112 §6; RFC 9110 §6.6.2 for Trailer itself)
    b"content-length": "framing",
    b"transfer-encoding": "framing",
    b"trailer": "framing",
    # connection management, hop-by-hop (RFC 9110 §7.6.1, §7.8, §10.1.4)
    b"connection": "connection",
    b"keep-alive": "connection",
    b"proxy-connection": "connection",
    b"te": "connection",
    b"upgrade": "connection",
    # routing (RFC 9110 §7.2, §7.6.2)
    b"host": "routing",
    b"max-forwards": "routing",
    # authentication (RFC 9110 §11.6.2, §11.7.2; RFC 6265 §5.4)
    b"authorization": "authentication",
    b"proxy-authorization": "authentication",
    b"cookie": "authentication",
    # request modifiers: controls (RFC 9110 §10.1.1, §14.2), conditionals (§13.1), caching
    # (RFC 9111 §5.2, §5.4) and content negotiation (RFC 9110 §12.5)
    b"expect": "request modifier",
    b"range": "request modifier",
    b"if-match": "request modifier",
    b"if-none-match": "request modifier",
    b"if-modified-since": "request modifier",
    b"if-unmodified-since": "request modifier",
    b"if-range": "request modifier",
    b"cache-control": "request modifier",
    b"pragma": "request modifier",
    b"accept": "request modifier",
    b"accept-charset": "request modifier",
    b"accept-encoding": "request modifier",
    b"accept-language": "request modifier",
    # content format (RFC 9110 §8.3-§8.7, §14.4). Not every content-* field: Content-Digest
    # (RFC 9530 §2) is meant for trailers.
    b"content-type": "content format",
    b"content-encoding": "content format",
    b"content-language": "content format",
    b"content-location": "content format",
    b"content-range": "content format",
}


def check_trailers(trailers: list[tuple[bytes, bytes]], values_checked: bool) -> Refusal | None:
    """The first rule a trailer section breaks, or ``None``.

    Trailer fields pass the checks of header fields (control characters, duplicate singletons;
    the parsers check the grammar, and count the section against the head's limits) and must
    not be a field that RFC 9110 §6.5.1 keeps out of trailers (``_NOT_IN_TRAILERS``).
    """
    f = Fields(trailers, values_checked)
    if f.ctl:
        return 400, "Control character in a trailer value"
    if f.duplicate is not None:
        return 400, "Duplicate " + f.duplicate.decode() + " trailer"
    for name, _ in trailers:
        kind = _NOT_IN_TRAILERS.get(name)
        if kind is not None:
            return 400, f"{name.decode()} ({kind}) is not allowed in trailers"
    return None
