"""RFC 9112 server requirements, one wire-level test each.

Raw request bytes in (through ``tophat.testing.AsyncTestClient``), the exact bytes or the parsed
responses out; every test runs against both parsers (conftest's autouse ``parser`` fixture).
Where the two parsers allow different, RFC-conforming behaviour (docs/parsers.md), the test
states each parser's expectation.

Two deviations remain on purpose, pinned as ``xfail(strict=True)`` (``refused_by_the_parser``):
BWS in chunk extensions and empty elements in Transfer-Encoding. Both parsers refuse them, and
tophat never hand-rolls a parser: such a request gets a clean 400 and a close (which
``test_*_served_or_refused_cleanly`` pins).

More RFC 9112 requirements are covered in tests/test_accept.py, tests/test_server.py,
tests/test_writer.py and tests/test_fuzz.py; HEAD refusals and ignored Upgrades (RFC 9110
§9.3.2, §7.8, with RFC 9112 §6.3 framing) in tests/test_rfc9110.py.
"""

from __future__ import annotations

import pytest
from test_accept import Recorder
from test_accept import exchange as accept_exchange

from tophat.testing import TestResponse, parse_responses

FOLLOW_UP = b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n"


async def exchange(data: bytes | list[bytes]) -> tuple[bytes, Recorder]:
    return await accept_exchange(data, read_body=True)


DEVIATION = "both parsers refuse it; we do not hand-roll a parser: a clean 400 and close"


def refused_by_the_parser(
    request: pytest.FixtureRequest, parser: str, parsers: tuple[str, ...]
) -> None:
    """Mark this run xfail (strict) when it runs with one of ``parsers``, which refuse it."""
    if parser in parsers:
        request.applymarker(pytest.mark.xfail(strict=True, reason=DEVIATION))


def refused_and_closed(out: bytes, rec: Recorder, status: int, method: str = "GET") -> TestResponse:
    # parse_responses raises when bytes follow a response that closes the connection.
    [resp] = parse_responses(out, [method])
    assert resp.status == status, out
    assert resp.headers["connection"].lower() == "close", out
    assert rec.requests == [], rec.targets
    return resp


BOTH = ("h11", "httptools")


# -- RFC 9112 §5.1 / RFC 9110 §5.5: OWS around a field value is not part of it ------------------
#
# §5.1: "A field line value might be preceded and/or followed by optional whitespace (OWS) ...
# The field line value does not include that leading or trailing whitespace: OWS occurring
# before the first non-whitespace octet of the field line value, or after the last
# non-whitespace octet of the field line value, is excluded by parsers when extracting the
# field line value from a field line."  RFC 9110 §5.5: "a field parsing implementation MUST
# exclude such whitespace prior to evaluating the field value."
#
# h11 strips both. llhttp strips the leading OWS but keeps the trailing OWS, so tophat's
# httptools adapter strips trailing SP and HTAB from every header and trailer value; a Host
# value with trailing OWS is then valid, not refused with 400 "Invalid Host header".


async def test_trailing_ows_after_host_is_not_part_of_its_value() -> None:
    out, rec = await exchange(b"GET / HTTP/1.1\r\nHost: example.com \t\r\n\r\n" + FOLLOW_UP)
    assert [r.status for r in parse_responses(out)] == [200, 200], out
    assert rec.requests[0].headers.get("host") == "example.com"
    assert rec.requests[0].host == "example.com"


async def test_trailing_ows_is_not_part_of_a_header_field_value() -> None:
    out, rec = await exchange(
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A: v \t\r\nConnection: close \r\n\r\n"
    )
    [resp] = parse_responses(out)
    assert resp.status == 200
    [req] = rec.requests
    assert (req.headers.get("x-a"), req.headers.get("connection")) == ("v", "close")


async def test_trailing_ows_is_not_part_of_a_trailer_field_value() -> None:
    out, rec = await exchange(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\nX-T: 1 \t\r\n\r\n"
    )
    [resp] = parse_responses(out, ["POST"])
    assert resp.status == 200
    assert rec.bodies == [b"abc"]
    trailers = rec.requests[0].trailers
    assert trailers is not None and trailers.get("x-t") == "1"


# -- RFC 9112 §7.1.1 + RFC 9110 §5.6.3: BWS in chunk extensions (a deviation we keep) ------------
#
# §7.1.1: chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] ).
# RFC 9110 §5.6.3: "A sender MUST NOT generate BWS in messages. A recipient MUST parse for such
# bad whitespace and remove it before interpreting the protocol element."  §7.1.1: "A recipient
# MUST ignore unrecognized chunk extensions."
#
# So a recipient MUST accept "3 ;ext=1" as a 3-octet chunk. llhttp takes no BWS at all; h11's
# chunk-header regex takes anything after the ";", but tophat checks each chunk line h11 finds
# against §7.1's grammar without BWS, as llhttp reads it, so that both parsers refuse the same
# chunk lines (parsers/h11_parser.py, _CHUNK_LINE). tophat does not meet this MUST, on purpose: it
# never hand-rolls a parser, only a non-conforming sender puts BWS there (the sender MUST NOT),
# and the request gets a clean 400 "Invalid request body" and a close (the endpoint has seen
# the head; its body read fails), never a misframed body. The refused runs are strict xfails.

CHUNK_EXT_BWS = {
    "bws-before-semicolon": (b"3 ;ext=1\r\nabc\r\n0\r\n\r\n", BOTH),
    "bws-around-equals": (b"3; ext = 1\r\nabc\r\n0\r\n\r\n", BOTH),
    "bws-in-last-chunk": (b"3\r\nabc\r\n0 ; ext\r\n\r\n", BOTH),
}


def chunked_post(chunks: bytes) -> bytes:
    return (
        b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + FOLLOW_UP
    )


@pytest.mark.parametrize("case", CHUNK_EXT_BWS)
async def test_bws_in_chunk_extensions_is_parsed_and_ignored(
    case: str, request: pytest.FixtureRequest, parser: str
) -> None:
    chunks, refusing = CHUNK_EXT_BWS[case]
    refused_by_the_parser(request, parser, refusing)
    out, rec = await exchange(chunked_post(chunks))
    assert [r.status for r in parse_responses(out, ["POST", "GET"])] == [200, 200], out
    assert rec.bodies == [b"abc", b""]


@pytest.mark.parametrize("case", CHUNK_EXT_BWS)
async def test_bws_in_chunk_extensions_is_served_or_refused_cleanly(case: str, parser: str) -> None:
    chunks, refusing = CHUNK_EXT_BWS[case]
    out, rec = await exchange(chunked_post(chunks))
    if parser not in refusing:
        assert [r.status for r in parse_responses(out, ["POST", "GET"])] == [200, 200], out
        return
    [resp] = parse_responses(out, ["POST"])  # one response: the follow-up is not read
    assert (resp.status, resp.body) == (400, b"Invalid request body")
    assert resp.headers["connection"].lower() == "close"
    assert (rec.targets, rec.bodies) == (["/up"], [])


# -- RFC 9110 §5.6.1.2: empty list elements in Transfer-Encoding (a deviation we keep) ----------
#
# RFC 9112 §6.1: Transfer-Encoding = #transfer-coding. RFC 9110 §5.6.1.2: "A recipient MUST
# parse and ignore a reasonable number of empty list elements: enough to handle common mistakes
# by senders that merge values".  So "chunked," and ", chunked" both mean chunked (and chunked is
# final: the request is framed, RFC 9112 §6.3 rule 4 does not apply).
#
# h11 refuses every Transfer-Encoding value but exactly "chunked"; llhttp accepts a leading
# empty element but not a trailing one, and tophat's httptools adapter refuses the leading one
# too, so that both parsers frame the same requests. tophat does not meet this MUST, on
# purpose: it never hand-rolls a parser (Transfer-Encoding is the framing, where a
# disagreement with another hop means request smuggling, RFC 9112 §11.2), and such a request
# gets a clean 400 and a close before the endpoint runs. The refused runs are strict xfails.

TE_EMPTY_ELEMENTS = {
    "trailing-comma": (b"chunked,", BOTH),
    "trailing-comma-space": (b"chunked, ", BOTH),
    "leading-comma": (b", chunked", BOTH),
}


def te_post(value: bytes) -> bytes:
    return (
        b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: %s\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        % value
        + FOLLOW_UP
    )


@pytest.mark.parametrize("case", TE_EMPTY_ELEMENTS)
async def test_empty_list_elements_in_transfer_encoding_are_ignored(
    case: str, request: pytest.FixtureRequest, parser: str
) -> None:
    value, refusing = TE_EMPTY_ELEMENTS[case]
    refused_by_the_parser(request, parser, refusing)
    out, rec = await exchange(te_post(value))
    assert [r.status for r in parse_responses(out, ["POST", "GET"])] == [200, 200], out
    assert rec.bodies == [b"abc", b""]


@pytest.mark.parametrize("case", TE_EMPTY_ELEMENTS)
async def test_empty_list_elements_in_transfer_encoding_are_served_or_refused_cleanly(
    case: str, parser: str
) -> None:
    value, refusing = TE_EMPTY_ELEMENTS[case]
    out, rec = await exchange(te_post(value))
    if parser not in refusing:
        assert [r.status for r in parse_responses(out, ["POST", "GET"])] == [200, 200], out
        return
    refused_and_closed(out, rec, 400, "POST")


# -- RFC 9112 §3.2: an invalid Host value gets 400 ----------------------------------------------
#
# "A server MUST respond with a 400 (Bad Request) status code to any HTTP/1.1 request message
# that lacks a Host header field and to any request message that contains more than one Host
# header field line or a Host header field with an invalid field value."
# Host = uri-host [ ":" port ]; uri-host = IP-literal / IPv4address / reg-name (RFC 3986);
# reg-name = *( unreserved / pct-encoded / sub-delims ); pct-encoded = "%" HEXDIG HEXDIG;
# IP-literal = "[" ( IPv6address / IPvFuture ) "]".  tophat's strict layer lets "%" into a
# reg-name only as the start of two hex digits, and checks the text of an IPv6 literal as an
# IPv6address; valid values of each form are served.


@pytest.mark.parametrize(
    "host",
    [
        b"%zz",  # "%" not followed by two hex digits
        b"example%2",  # truncated pct-encoding
        b"[:]",  # not an IPv6address
        b"[1.2.3.4]",  # an IPv4 address is no IP-literal
    ],
)
async def test_host_with_an_invalid_value_is_refused_with_400(host: bytes) -> None:
    out, rec = await exchange(b"GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % host + FOLLOW_UP)
    refused_and_closed(out, rec, 400)


@pytest.mark.parametrize(
    "host",
    [
        b"ex%2Dample",  # pct-encoded
        b"[::1]",
        b"[fe80::1]:8080",
        b"[::ffff:1.2.3.4]",  # an IPv6address may end in an IPv4 address
        b"[v1.x]",  # IPvFuture
    ],
)
async def test_host_with_a_valid_pct_encoding_or_ip_literal_is_served(host: bytes) -> None:
    out, rec = await exchange(b"GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % host)
    assert [r.status for r in parse_responses(out)] == [200], out
    assert [r.host for r in rec.requests] == [host.decode()]


# -- RFC 9112 §2.2: empty lines before a request-line (SHOULD) -----------------------------------
#
# "In the interest of robustness, a server that is expecting to receive and parse a request-line
# SHOULD ignore at least one empty line (CRLF) received prior to the request-line."
# (As after a POST body from an old client that ends it with an extra CRLF.) Both parsers
# ignore one empty line before each request-line, and a second one gets 400 and a close: h11
# refuses any, and tophat ignores the one h11 consumed before refusing; llhttp skips any number,
# and tophat's adapter counts what it skipped. (An empty line that never ends would otherwise
# hold a connection open: tests/test_parse_hostile.py.)


@pytest.mark.parametrize(
    ("data", "method"),
    [
        (b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n" + FOLLOW_UP, "GET"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc\r\n" + FOLLOW_UP, "POST"),
        (b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n\r\n" + FOLLOW_UP, "GET"),
    ],
    ids=["before-the-first-request", "after-a-post-body", "one-before-each-request"],
)
async def test_an_empty_line_before_a_request_line_is_ignored(data: bytes, method: str) -> None:
    out, rec = await exchange(data)
    assert [r.status for r in parse_responses(out, [method, "GET"])] == [200, 200], out
    assert rec.targets == ["/", "/after"]


@pytest.mark.parametrize(
    "data",
    [
        b"\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
    ids=["before-the-first-request", "before-the-second-request"],
)
async def test_a_second_empty_line_before_a_request_line_gets_400(data: bytes) -> None:
    out, rec = await exchange(data)
    served = [] if data.startswith(b"\r\n") else ["/"]
    *ok, refusal = parse_responses(out)  # parse_responses: nothing follows the close
    assert [r.status for r in ok] == [200] * len(served), out
    assert (refusal.status, refusal.headers["connection"].lower()) == (400, "close"), out
    assert rec.targets == served


# -- RFC 9112 §2.2 + RFC 9110 §15.6.6: a bare LF ending an HTTP/1.1 request-line -----------------
#
# §2.2: a recipient MAY accept a bare LF as a line terminator; otherwise, input that "does not
# match the HTTP-message grammar ... the server SHOULD respond with a 400 (Bad Request) response
# and close the connection." RFC 9110 §15.6.6: 505 means the server does not support "the major
# version of HTTP that was used in the request message", and HTTP/1.1 is supported: a bare LF
# after it never gets 505. llhttp refuses a bare LF; h11 accepts it (the MAY), but tophat
# refuses it there too (parsers that disagree on where a line ends are how requests get
# smuggled, RFC 9112 §11.2): 400 and a close from both.


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\nHost: x\n\n",
        b"GET / HTTP/1.1\nHost: x\r\n\r\n",
    ],
    ids=["all-bare-lf", "bare-lf-after-version"],
)
async def test_a_bare_lf_after_a_supported_version_never_gets_505(data: bytes) -> None:
    out, rec = await exchange(data)
    assert out.startswith(b"HTTP/1.1 400 Bad Request\r\n"), out
    refused_and_closed(out, rec, 400)
