"""Pins the h11 behaviours that tophat's strict layer (tophat/server/validate.py) relies on.

If a new h11 release changes one of these, this file says which assumption broke, before a
wire test fails for a less obvious reason.
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


def test_h11_refuses_every_transfer_coding_but_chunked_while_parsing_the_head() -> None:
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")
    with pytest.raises(h11.RemoteProtocolError) as info:
        conn.next_event()
    assert info.value.error_status_hint == 501
    assert "Transfer-Encoding" in str(info.value)


def test_h11_readers_that_tophat_calls_directly() -> None:
    # tophat.parsers.h11_parser.H11Parser runs h11's readers over a ReceiveBuffer without
    # h11.Connection.
    from h11._readers import ChunkedReader, ContentLengthReader, maybe_read_from_IDLE_client
    from h11._receivebuffer import ReceiveBuffer

    buf = ReceiveBuffer()
    buf += b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET"
    request = maybe_read_from_IDLE_client(buf)
    assert isinstance(request, h11.Request)
    assert len(buf) == len(b"abcGET")
    reader = ContentLengthReader(3)
    data = reader(buf)
    assert isinstance(data, h11.Data) and bytes(data.data) == b"abc"
    assert isinstance(reader(buf), h11.EndOfMessage)
    assert bytes(buf) == b"GET"
    assert maybe_read_from_IDLE_client(buf) is None  # an incomplete head: wait for more
    chunked = ChunkedReader()
    buf = ReceiveBuffer()
    buf += b"3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n"
    assert bytes(chunked(buf).data) == b"abc"  # type: ignore[union-attr]
    end = chunked(buf)
    assert isinstance(end, h11.EndOfMessage) and list(end.headers) == [(b"x-t", b"1")]
    with pytest.raises(h11.RemoteProtocolError):
        ContentLengthReader(5).read_eof()
    with pytest.raises(h11.LocalProtocolError) as info:
        buf = ReceiveBuffer()
        buf += b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n"
        maybe_read_from_IDLE_client(buf)
    assert info.value.error_status_hint == 501


def test_h11_receive_buffer_internals_the_strict_buffer_relies_on() -> None:
    # tophat.parsers.h11_parser._StrictBuffer overrides maybe_extract_lines (head and trailer
    # sections) and
    # maybe_extract_next_line (chunk lines only) and reads _data. It tells a bare LF from a
    # CRLF by size: h11 splits a section at LF and takes one CR off the end of each line.
    from h11._readers import ChunkedReader
    from h11._receivebuffer import ReceiveBuffer

    buf = ReceiveBuffer()
    buf += b"A\r\nB\nC\r\r\n\r\nrest"
    assert buf.maybe_extract_lines() == [b"A", b"B", b"C\r"]
    assert bytes(buf._data) == b"rest"
    buf = ReceiveBuffer()
    buf += b"\n"
    assert buf.maybe_extract_lines() == []  # a bare LF alone is an empty line to h11
    assert not buf

    calls: list[str] = []

    class Spy(ReceiveBuffer):
        def maybe_extract_next_line(self) -> bytearray | None:
            calls.append("line")
            return super().maybe_extract_next_line()

        def maybe_extract_lines(self) -> list[bytearray] | None:
            calls.append("lines")
            return super().maybe_extract_lines()

    spy = Spy()
    spy += b"3;x\rz\r\nabc\r\n0\r\nX: 1\r\n\r\n"
    reader = ChunkedReader()
    assert bytes(reader(spy).data) == b"abc"  # type: ignore[union-attr]  # h11 takes the CR
    assert isinstance(reader(spy), h11.EndOfMessage)
    assert calls == ["line", "line", "lines"]


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\nHost: a\n\n",  # bare LF line endings
        b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n folded\r\n\r\n",  # obs-fold
    ],
)
def test_h11_accepts_head_lines_the_strict_buffer_refuses(data: bytes) -> None:
    assert isinstance(_first_event(data), h11.Request)
