"""tophat's H11Parser (h11.Connection, one per request, with byte checks) gives the events of
one h11.Connection, for the same bytes fed in the same pieces: a differential test. And its own
refusals (the checks h11 does not make) do not depend on how the bytes are split.

Requests are generated from a grammar of valid and broken pieces (request lines, fields,
Content-Length and chunked bodies, pipelining, early end of input) and split at random points.

Two differences are intended. Ours ignores one empty line (CRLF) before a request-line (RFC 9112
§2.2, a SHOULD), where h11 refuses it (and waits on a lone CR, which may start that line); the
reference below does the same on top of h11.Connection. And ours refuses what llhttp refuses in
the lines h11 delimits (bare LF line endings, obs-fold, chunk lines outside RFC 9112 §7.1's
grammar, trailer fields the strict layer refuses): the generator below sends none of those;
test_refusals_do_not_depend_on_the_reads below, tests/test_parse_hostile.py and
tests/test_h11_leniency.py test them.
"""

from __future__ import annotations

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tophat.parsers.events import CLOSED, NEED_DATA, End, Head, ParseError
from tophat.parsers.h11_parser import H11Parser

LINES = st.sampled_from(
    [
        b"GET / HTTP/1.1",
        b"GET /a?b=c HTTP/1.1",
        b"POST /p HTTP/1.1",
        b"GET / HTTP/1.0",
        b"GET  / HTTP/1.1",
        b"GET / HTTP/1.1 ",
        b"G\x01T / HTTP/1.1",
        b"",
    ]
)
FIELDS = st.lists(
    st.sampled_from(
        [
            b"Host: a",
            b"host: b",
            b"X-A: 1",
            b"X-B:  spaced  ",
            b"Content-Length: 3",
            b"Content-Length: 0",
            b"Content-Length: x",
            b"Transfer-Encoding: chunked",
            b"Transfer-Encoding: gzip",
            b"Bad Name: 1",
            b"X-C: a\x01b",
        ]
    ),
    max_size=5,
)
BODIES = st.sampled_from(
    [b"", b"abc", b"3\r\nabc\r\n0\r\n\r\n", b"1\r\na\r\n0\r\nX-T: 1\r\n\r\n", b"zz\r\n", b"ab"]
)


@st.composite
def streams(draw: st.DrawFn) -> bytes:
    out = b""
    for _ in range(draw(st.integers(1, 3))):
        head = draw(LINES) + b"\r\n" + b"".join(f + b"\r\n" for f in draw(FIELDS)) + b"\r\n"
        out += head + draw(BODIES)
    return out


def _ours(data: bytes, cuts: list[int], eof: bool) -> list[object]:
    parser = H11Parser(16 * 1024)
    events: list[object] = []
    pieces = _split(data, cuts) + ([b""] if eof else [])
    for piece in pieces:
        parser.feed(piece)
        while True:
            try:
                event = parser.next_event()
            except ParseError:
                events.append("error")
                return events
            if event is NEED_DATA:
                break
            if event is CLOSED:
                events.append("closed")
                return events
            if isinstance(event, Head):
                events.append(("head", event.method, event.target, event.http_version,
                               event.headers))  # fmt: skip
                if not _has_content(event.headers):
                    parser.end_without_content()
                    events.append("end")
                    parser.next_cycle()
            elif isinstance(event, End):
                events.append("end")
                parser.next_cycle()
            else:
                events.append(("data", event))
    return events


def _theirs(data: bytes, cuts: list[int], eof: bool) -> list[object]:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=16 * 1024)
    events: list[object] = []
    skipped = False  # an empty line before this request's line was ignored
    pieces = _split(data, cuts) + ([b""] if eof else [])
    for piece in pieces:
        conn.receive_data(piece)
        while True:
            bare_lf = conn.trailing_data[0][:1] == b"\n"  # (an empty line ours refuses)
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                if str(exc) == "no request line received" and not skipped and not bare_lf:
                    skipped = True  # h11 consumed the empty line: go on with what follows
                    conn = _next_cycle(conn)
                    continue
                if conn.trailing_data == (b"\r", False) and not skipped:
                    conn = _next_cycle(conn)  # a lone CR may start that empty line: wait
                    break
                events.append("error")
                return events
            if event is h11.NEED_DATA:
                break
            if event is h11.PAUSED:
                # h11 waits for our response; we start a fresh cycle with what is left.
                conn = _next_cycle(conn)
                continue
            if isinstance(event, h11.ConnectionClosed):
                events.append("closed")
                return events
            if isinstance(event, h11.Request):
                skipped = False
                fields = [(n.lower(), v) for n, v in event.headers.raw_items()]
                events.append(("head", event.method, event.target, event.http_version, fields))
            elif isinstance(event, h11.EndOfMessage):
                events.append("end")
                conn = _next_cycle(conn)
            elif isinstance(event, h11.Data):
                events.append(("data", bytes(event.data)))
    return events


def _next_cycle(conn: h11.Connection) -> h11.Connection:
    """A fresh Connection holding what ``conn`` received after its request (as tophat does)."""
    rest, closed = conn.trailing_data
    fresh = h11.Connection(h11.SERVER, max_incomplete_event_size=16 * 1024)
    if rest:  # (receive_data(b"") would mean the end of input)
        fresh.receive_data(rest)
    if closed:
        fresh.receive_data(b"")
    return fresh


def _has_content(fields: list[tuple[bytes, bytes]]) -> bool:
    return any(
        n == b"transfer-encoding" or (n == b"content-length" and v.strip(b"0") != b"")
        for n, v in fields
    )


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, last = [], 0
    for p in points:
        out.append(data[last:p])
        last = p
    out.append(data[last:])
    return [piece for piece in out if piece]


def _merge_data(events: list[object]) -> list[object]:
    # h11 may cut a body into other pieces than we do when the input is split: compare bodies
    # as the bytes between a head and its end.
    out: list[object] = []
    for event in events:
        if isinstance(event, tuple) and event[0] == "data" and out and isinstance(out[-1], tuple) \
                and out[-1][0] == "data":  # fmt: skip
            out[-1] = ("data", out[-1][1] + event[1])
        else:
            out.append(event)
    return out


@settings(max_examples=500, deadline=None)
@given(data=streams(), cuts=st.lists(st.integers(0, 400), max_size=4), eof=st.booleans())
def test_h11parser_events_equal_h11_connection_events(
    data: bytes, cuts: list[int], eof: bool
) -> None:
    assert _merge_data(_ours(data, cuts, eof)) == _merge_data(_theirs(data, cuts, eof))


# -- our own refusals, however the bytes arrive ---------------------------------------------------

POST = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
REFUSED = {
    "bare-lf-in-head": b"GET / HTTP/1.1\r\nHost: a\nX: 1\r\n\r\n",
    "bare-lf-ending-head": b"GET / HTTP/1.1\r\nHost: a\r\n\n",
    "obs-fold-in-head": b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n folded\r\n\r\n",
    # A bare LF and an extra line (a fold, or a Content-Length h11 merges) leave as many CRLFs
    # as a clean head's lines: the count that spares the usual head a search must not pass them.
    "bare-lf-and-fold": b"GET / HTTP/1.1\nHost: a\r\nX: 1\r\n folded\r\n\r\n",
    "bare-lf-and-merged-length": b"GET / HTTP/1.1\nHost: a\r\nContent-Length: 0\r\n"
    b"Content-Length: 0\r\n\r\n",
    "two-empty-lines": b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    "bare-lf-empty-line": b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    "size-ows": POST + b"3 \r\nabc\r\n0\r\n\r\n",
    "bare-cr-in-ext": POST + b"3;x=1\rz\r\nabc\r\n0\r\n\r\n",
    "second-chunk-line": POST + b"3\r\nabc\r\n2;=\r\nde\r\n0\r\n\r\n",
    "last-chunk-line": POST + b"3\r\nabc\r\n0;a b\r\n\r\n",
    "bare-lf-ending-trailers": POST + b"3\r\nabc\r\n0\r\n\n",
    "bare-lf-in-trailers": POST + b"0\r\nX-T: 1\n\r\n",
    "obs-fold-in-trailers": POST + b"0\r\nX-T: 1\r\n f\r\n\r\n",
}


@pytest.mark.parametrize("data", REFUSED.values(), ids=list(REFUSED))
def test_refusals_do_not_depend_on_the_reads(data: bytes) -> None:
    whole = _ours(data, [], False)
    assert whole[-1] == "error"
    for cut in range(1, len(data)):
        assert _merge_data(_ours(data, [cut], False)) == _merge_data(whole), cut
    assert _merge_data(_ours(data, list(range(len(data))), False)) == _merge_data(whole)


@pytest.mark.parametrize("first", [b"", b"\r\n"], ids=["no-empty-line", "one-empty-line"])
def test_pipelined_requests_are_read_from_what_the_last_one_left(first: bytes) -> None:
    post = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
    data = first + POST + b"1\r\nz\r\n0\r\nX-T: 1\r\n\r\n" + b"\r\n" + post + GET
    parser = H11Parser(16 * 1024)
    parser.feed(data)
    head = parser.next_event()
    assert isinstance(head, Head) and head.size == len(POST)
    assert parser.next_event() == b"z"
    end = parser.next_event()
    assert isinstance(end, End) and end.trailers == [(b"x-t", b"1")]
    assert parser.holds_next()
    parser.next_cycle()
    head = parser.next_event()
    assert isinstance(head, Head) and head.method == b"POST"
    assert parser.take_whole_body(3) == b"abc"
    assert parser.holds_next()
    parser.next_cycle()
    head = parser.next_event()
    assert isinstance(head, Head) and head.method == b"GET"
    parser.end_without_content()
    assert not parser.holds_next()
    parser.next_cycle()
    assert parser.next_event() is NEED_DATA and parser.buffered() == 0
    parser.feed(b"\r")  # may start the one empty line: wait
    assert parser.next_event() is NEED_DATA and parser.buffered() == 1
    parser.feed(b"\nHEAD / HT")
    assert parser.next_event() is NEED_DATA and parser.buffered() == 2 + 9
    assert parser.head_pending()
    parser.feed(b"")
    with pytest.raises(ParseError):
        parser.next_event()


GET = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
