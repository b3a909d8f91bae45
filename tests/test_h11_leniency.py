"""Pins the h11 behaviours that tophat's strict layer (tophat/server/validate.py) relies on, and
what tophat.parsers.h11_parser reads from h11.Connection's public API.

If a new h11 release changes one of these, this file says which assumption broke, before a
wire test fails for a less obvious reason. (pyproject.toml allows any h11 0.x from 0.16.)
"""

from __future__ import annotations

import h11
import pytest


def _first_event(data: bytes, **kw: int) -> h11.Event | type[h11.NEED_DATA]:
    conn = h11.Connection(h11.SERVER, **kw)
    conn.receive_data(data)
    return conn.next_event()


@pytest.mark.parametrize(
    "head",
    [
        # Content-Length with Transfer-Encoding: accepted, Transfer-Encoding wins.
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        # Any d.d version.
        b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.2\r\nHost: a\r\n\r\n",
        # Transfer-Encoding in HTTP/1.0.
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        # CONNECT, fragments, asterisk-form with GET, a Host that is no host.
        b"CONNECT a:80 HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET * HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a b@c\r\n\r\n",
        # Control characters other than CR, LF, NUL in a value.
        b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n",
        # Duplicate singleton headers other than Host.
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Type: a\r\nContent-Type: b\r\n\r\n",
    ],
)
def test_h11_accepts_what_the_strict_layer_must_refuse(head: bytes) -> None:
    assert isinstance(_first_event(head), h11.Request)


def test_h11_head_limit_applies_only_to_an_incomplete_head() -> None:
    big = b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X-Pad: " + b"a" * 5000 + b"\r\n\r\n"
    assert isinstance(_first_event(big, max_incomplete_event_size=1000), h11.Request)
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=1000)
    conn.receive_data(big[:2000])
    with pytest.raises(h11.RemoteProtocolError) as info:
        conn.next_event()
    assert info.value.error_status_hint == 431


@pytest.mark.parametrize(
    "fields",
    [b"Transfer-Encoding: gzip, chunked\r\n", b"Transfer-Encoding: chunked\r\n" * 2],
    ids=["a-coding-but-chunked", "two-fields"],
)
def test_h11_refuses_transfer_encodings_while_parsing_the_head_with_501(fields: bytes) -> None:
    # H11Parser answers h11's 501 with 400: in h11 0.16 a refused Transfer-Encoding is the only
    # 501 (tophat.parsers.h11_parser._status), and h11 drops the codings.
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(b"POST / HTTP/1.1\r\nHost: a\r\n" + fields + b"\r\n")
    with pytest.raises(h11.RemoteProtocolError) as info:
        conn.next_event()
    assert info.value.error_status_hint == 501
    assert "Transfer-Encoding" in str(info.value)


# -- What H11Parser reads from h11.Connection's public state -----------------------------------


def test_h11_connection_holds_all_of_an_incomplete_head_and_the_rest_after_a_request() -> None:
    # H11Parser mirrors the bytes of a head it feeds (for its byte checks): h11 holds them all
    # until the head is complete, then exactly what follows it (the head's size is the
    # difference).
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(b"POST / HTTP/1.1\r\nHost: a\r\n")
    assert conn.next_event() is h11.NEED_DATA
    assert conn.trailing_data == (b"POST / HTTP/1.1\r\nHost: a\r\n", False)
    conn.receive_data(b"Content-Length: 3\r\n\r\nabcGET")
    assert isinstance(conn.next_event(), h11.Request)
    assert conn.trailing_data == (b"abcGET", False)
    data = conn.next_event()  # at most what the body has left: one Data when it all arrived
    assert isinstance(data, h11.Data) and bytes(data.data) == b"abc"
    assert conn.trailing_data == (b"GET", False)
    # (Its end takes no bytes: H11Parser's next Connection starts from the trailing data.)
    assert isinstance(conn.next_event(), h11.EndOfMessage)
    assert conn.trailing_data == (b"GET", False)
    assert conn.their_state is h11.DONE


def test_h11_connection_end_without_content_takes_no_bytes() -> None:
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /next")
    assert isinstance(conn.next_event(), h11.Request)
    assert isinstance(conn.next_event(), h11.EndOfMessage)
    assert conn.trailing_data == (b"GET /next", False)
    assert conn.next_event() is h11.PAUSED  # the next request waits for start_next_cycle


def test_h11_connection_consumes_chunk_framing_before_each_events_data() -> None:
    # H11Parser checks a chunked body's framing as what each event consumed (trailing_data
    # before and after) less the event's data, which ends it: the CRLF after a chunk's data, a
    # chunk line (taken whole), at the end the last chunk line and the trailer section.
    body = b"3;x\rz\r\nabc\r\n1\r\nd\r\n0\r\nX-T: 1\r\n\r\nrest"
    seen: list[tuple[str, bytes]] = []
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert isinstance(conn.next_event(), h11.Request)
    held = b""
    fed = 0
    for cut in (2, 8, 12, 16, len(body)):  # inside a chunk line, its data, a CRLF
        conn.receive_data(body[fed:cut])
        held += body[fed:cut]
        fed = cut
        while True:
            event = conn.next_event()
            rest = conn.trailing_data[0]
            assert held.endswith(rest)
            taken = held[: len(held) - len(rest)]
            held = rest
            if isinstance(event, h11.Data):
                assert taken.endswith(bytes(event.data))
                taken = taken[: len(taken) - len(event.data)]
            seen.append((type(event).__name__, taken))
            if event is h11.NEED_DATA or isinstance(event, h11.EndOfMessage):
                break
        if seen[-1][0] == "EndOfMessage":
            break
    assert seen == [
        ("NEED_DATA", b""),  # "3;" is not a whole chunk line yet
        ("Data", b"3;x\rz\r\n"),  # the line, then "a": h11 took the bare CR in the extension
        ("NEED_DATA", b""),
        ("Data", b""),  # "bc"
        ("NEED_DATA", b"\r\n"),  # the CRLF ending the chunk's data, alone
        ("Data", b"1\r\n"),
        ("NEED_DATA", b""),
        ("EndOfMessage", b"\r\n0\r\nX-T: 1\r\n\r\n"),
    ]
    assert held == b"rest"


def test_h11_connection_refuses_an_empty_line_before_a_request_line_and_a_lone_cr() -> None:
    # H11Parser ignores one CRLF before a request-line itself (RFC 9112 §2.2), and waits on a
    # lone CR; h11 refuses a second empty line, a bare LF one, and a CR not followed by LF.
    for data in (
        b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"\nGET / HTTP/1.1\r\n",
        b"\r",
        b"\rGET",
    ):
        conn = h11.Connection(h11.SERVER)
        conn.receive_data(data)
        with pytest.raises(h11.RemoteProtocolError) as info:
            conn.next_event()
        assert info.value.error_status_hint == 400


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\nHost: a\n\n",  # bare LF line endings
        b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n folded\r\n\r\n",  # obs-fold
    ],
)
def test_h11_accepts_head_lines_the_strict_buffer_refuses(data: bytes) -> None:
    assert isinstance(_first_event(data), h11.Request)
