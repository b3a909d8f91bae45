"""ResponseWriter on the wire: what each setter puts in the bytes the server writes.

Every test drives ``accept`` through ``tophat.testing.AsyncTestClient`` with raw request bytes and
asserts on the exact response bytes (Date value masked) or on the parsed response.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable
from email.utils import parsedate_to_datetime
from typing import Any

import pytest

from tophat import (
    Endpoint,
    HeaderError,
    Headers,
    Request,
    ResponseWriter,
    ResponseWritten,
    ServerOpts,
    ServerSentEvent,
)
from tophat.http.headers import Field
from tophat.testing import AsyncTestClient, parse_responses

GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
HEAD = b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"
GET_10 = b"GET / HTTP/1.0\r\n\r\n"
FOLLOW_UP = b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n"

Handler = Callable[[Request, ResponseWriter], None]

_DATE_LINE = re.compile(rb"\r\ndate: [^\r\n]*\r\n", re.IGNORECASE)


def masked(out: bytes) -> bytes:
    """``out`` with every Date header value replaced by ``<DATE>``."""
    return _DATE_LINE.sub(b"\r\ndate: <DATE>\r\n", out)


def endpoint_of(prepare: Handler, written: list[ResponseWritten] | None = None) -> Endpoint:
    """An endpoint that calls ``prepare(req, w)``, sends, and records the ResponseWritten."""

    async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
        prepare(req, w)
        done = await w.send()
        if written is not None:
            written.append(done)
        return done

    return endpoint


async def serve(prepare: Handler, request: bytes | list[bytes] = GET, **opts: Any) -> bytes:
    return await AsyncTestClient(endpoint_of(prepare), ServerOpts(**opts)).raw(request)


async def pieces(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def events(items: Iterable[ServerSentEvent | str]) -> AsyncIterator[ServerSentEvent | str]:
    for item in items:
        yield item


def nothing(req: Request, w: ResponseWriter) -> None:
    pass


# -- status -------------------------------------------------------------------------------------


async def test_untouched_writer_sends_200_with_empty_body() -> None:
    out = await serve(nothing)
    assert masked(out) == b"HTTP/1.1 200 OK\r\ndate: <DATE>\r\ncontent-length: 0\r\n\r\n"


@pytest.mark.parametrize(
    ("setter", "status", "status_line"),
    [
        ("set_status", 201, b"HTTP/1.1 201 Created\r\n"),
        ("set_status", 404, b"HTTP/1.1 404 Not Found\r\n"),
        ("set_status", 202, b"HTTP/1.1 202 Accepted\r\n"),
        ("set_status", 503, b"HTTP/1.1 503 Service Unavailable\r\n"),
    ],
)
async def test_set_status_sets_the_status_line(
    setter: str, status: int, status_line: bytes
) -> None:
    out = await serve(lambda req, w: getattr(w, setter)(status))
    assert masked(out) == status_line + b"date: <DATE>\r\ncontent-length: 0\r\n\r\n"


async def test_set_status_refuses_informational_and_out_of_range_codes() -> None:
    refused: list[int] = []

    def prepare(req: Request, w: ResponseWriter) -> None:
        for bad in (100, 101, 199, 600, 99, 0):
            try:
                w.set_status(bad)
            except ValueError:
                refused.append(bad)

    out = await serve(prepare)
    assert refused == [100, 101, 199, 600, 99, 0]
    assert out.startswith(b"HTTP/1.1 200 OK\r\n")


# -- headers ------------------------------------------------------------------------------------


async def test_insert_header_replaces_every_earlier_value() -> None:
    def prepare(req: Request, w: ResponseWriter) -> None:
        w.append_header("x-a", "1")
        w.append_header("x-a", "2")
        w.insert_header("X-A", "3")

    out = await serve(prepare)
    assert masked(out) == (
        b"HTTP/1.1 200 OK\r\nX-A: 3\r\ndate: <DATE>\r\ncontent-length: 0\r\n\r\n"
    )


async def test_append_header_keeps_every_set_cookie_in_order() -> None:
    def prepare(req: Request, w: ResponseWriter) -> None:
        w.append_header("Set-Cookie", "a=1; HttpOnly")
        w.append_header("Set-Cookie", "b=2; Secure")

    out = await serve(prepare)
    assert masked(out) == (
        b"HTTP/1.1 200 OK\r\n"
        b"Set-Cookie: a=1; HttpOnly\r\n"
        b"Set-Cookie: b=2; Secure\r\n"
        b"date: <DATE>\r\ncontent-length: 0\r\n\r\n"
    )
    [resp] = parse_responses(out)
    assert resp.headers.get_all("set-cookie") == ["a=1; HttpOnly", "b=2; Secure"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("x-a", "v\r\nx-injected: 1"),
        ("x-a", "v\nx-injected: 1"),
        ("x-a", "v\rx-injected: 1"),
        ("x-a", "v\x00x-injected"),
        ("x-a\r\nx-injected", "1"),
        ("x-a\nx-injected", "1"),
        ("x-a\x00x-injected", "1"),
        ("x-injected:", "1"),
        ("", "x-injected"),
    ],
)
async def test_header_with_cr_lf_or_nul_is_refused_when_set_and_never_sent(
    name: str, value: str
) -> None:
    errors: list[HeaderError] = []

    def prepare(req: Request, w: ResponseWriter) -> None:
        for setter in (w.insert_header, w.append_header):
            try:
                setter(name, value)
            except HeaderError as exc:
                errors.append(exc)

    out = await serve(prepare)
    assert len(errors) == 2
    assert b"injected" not in out
    assert masked(out) == b"HTTP/1.1 200 OK\r\ndate: <DATE>\r\ncontent-length: 0\r\n\r\n"


def test_a_field_is_checked_once_when_built_and_set_as_it_is() -> None:
    # Field is the validation point for fields set without a per-call check (CORS, Vary).
    with pytest.raises(HeaderError):
        Field("x-a", "v\r\nx-injected: 1")
    with pytest.raises(HeaderError):
        Field("x a", "v")
    h = Headers([("X-A", "old"), ("x-b", "1"), ("x-a", "older")])
    h.set_fields([Field("x-a", " new "), Field("X-C", "3")])
    assert h.items() == [("x-a", "new"), ("x-b", "1"), ("X-C", "3")]
    empty = Headers()
    empty.set_fields([Field("x-a", "1")])
    empty.add_field(Field("x-a", "2"))
    assert empty.get_all("X-A") == ["1", "2"]
    assert list(empty.fields()) == [("x-a", "x-a", "1"), ("x-a", "x-a", "2")]


async def test_uncaught_header_error_becomes_500_without_the_header() -> None:
    out = await serve(lambda req, w: w.insert_header("x-a", "v\r\nx-injected: 1"))
    [resp] = parse_responses(out)
    assert resp.status == 500
    assert b"injected" not in out


async def test_date_header_is_an_imf_fixdate_of_now() -> None:
    out = await serve(nothing)
    [resp] = parse_responses(out)
    date = resp.headers["date"]
    # RFC 9110 §5.6.7: IMF-fixdate = day-name "," SP date1 SP time-of-day SP GMT
    assert re.fullmatch(
        r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} "
        r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT",
        date,
    )
    assert abs(parsedate_to_datetime(date).timestamp() - time.time()) < 60
    assert len(resp.headers.get_all("date")) == 1


async def test_date_set_by_the_handler_is_sent_instead_of_the_servers() -> None:
    out = await serve(lambda req, w: w.insert_header("Date", "Wed, 21 Oct 2015 07:28:00 GMT"))
    assert out == (
        b"HTTP/1.1 200 OK\r\nDate: Wed, 21 Oct 2015 07:28:00 GMT\r\ncontent-length: 0\r\n\r\n"
    )


async def test_no_server_header_by_default() -> None:
    [resp] = parse_responses(await serve(nothing))
    assert "server" not in resp.headers


async def test_server_header_sent_when_configured() -> None:
    out = await serve(nothing, server_header="tophat-test/1")
    assert masked(out) == (
        b"HTTP/1.1 200 OK\r\ndate: <DATE>\r\nserver: tophat-test/1\r\ncontent-length: 0\r\n\r\n"
    )


async def test_server_header_set_by_the_handler_wins_over_the_configured_one() -> None:
    out = await serve(lambda req, w: w.insert_header("Server", "mine"), server_header="theirs")
    [resp] = parse_responses(out)
    assert resp.headers.get_all("server") == ["mine"]


# -- bodies -------------------------------------------------------------------------------------


async def test_bytes_body_is_sent_with_content_length() -> None:
    out = await serve(lambda req, w: w.set_body(b"\x00\x01binary\xff"))
    assert masked(out) == (
        b"HTTP/1.1 200 OK\r\ndate: <DATE>\r\ncontent-length: 9\r\n\r\n\x00\x01binary\xff"
    )


async def test_str_body_is_utf8_and_text_plain() -> None:
    out = await serve(lambda req, w: w.set_body("héllo"))
    assert masked(out) == (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"date: <DATE>\r\ncontent-length: 6\r\n\r\nh\xc3\xa9llo"
    )


async def test_str_body_keeps_a_content_type_set_before() -> None:
    def prepare(req: Request, w: ResponseWriter) -> None:
        w.insert_header("Content-Type", "text/html; charset=utf-8")
        w.set_body("<p>hi</p>")

    [resp] = parse_responses(await serve(prepare))
    assert resp.headers.get_all("content-type") == ["text/html; charset=utf-8"]
    assert resp.body == b"<p>hi</p>"


async def test_set_body_refuses_a_length_that_does_not_match_bytes() -> None:
    refused: list[Exception] = []

    def prepare(req: Request, w: ResponseWriter) -> None:
        try:
            w.set_body(b"abc", length=4)
        except ValueError as exc:
            refused.append(exc)

    out = await serve(prepare)
    assert len(refused) == 1
    assert masked(out) == b"HTTP/1.1 200 OK\r\ndate: <DATE>\r\ncontent-length: 0\r\n\r\n"


async def test_stream_without_length_is_chunked_on_http11() -> None:
    out = await serve(lambda req, w: w.set_body(pieces(b"abc", b"", b"de")))
    # The empty piece must not end the body early (a zero-size chunk is the last chunk).
    assert masked(out) == (
        b"HTTP/1.1 200 OK\r\ndate: <DATE>\r\ntransfer-encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )


async def test_chunked_stream_keeps_the_connection_alive() -> None:
    out = await serve(lambda req, w: w.set_body(pieces(b"abc")), GET + FOLLOW_UP)
    assert [r.body for r in parse_responses(out)] == [b"abc", b"abc"]


async def test_stream_without_length_is_close_delimited_on_http10() -> None:
    # RFC 9112 §6.3 (7): without Content-Length or chunked, the body ends when the server closes;
    # an HTTP/1.0 client does not understand chunked.
    out = await serve(lambda req, w: w.set_body(pieces(b"abc", b"de")), GET_10 + GET_10)
    assert masked(out) == (b"HTTP/1.1 200 OK\r\ndate: <DATE>\r\nconnection: close\r\n\r\nabcde")


async def test_stream_with_length_is_sent_with_content_length() -> None:
    out = await serve(lambda req, w: w.set_body(pieces(b"abc", b"de"), length=5), GET + FOLLOW_UP)
    first = b"HTTP/1.1 200 OK\r\ndate: <DATE>\r\ncontent-length: 5\r\n\r\nabcde"
    assert masked(out) == first + first


async def test_stream_shorter_than_its_length_closes_without_a_second_response() -> None:
    out = await serve(lambda req, w: w.set_body(pieces(b"abc", b"de"), length=10), GET + FOLLOW_UP)
    assert masked(out) == b"HTTP/1.1 200 OK\r\ndate: <DATE>\r\ncontent-length: 10\r\n\r\nabcde"


async def test_stream_longer_than_its_length_closes_without_a_second_response() -> None:
    out = await serve(lambda req, w: w.set_body(pieces(b"abc", b"de"), length=3), GET + FOLLOW_UP)
    # The piece that would overrun the declared length is not sent at all.
    assert masked(out) == b"HTTP/1.1 200 OK\r\ndate: <DATE>\r\ncontent-length: 3\r\n\r\nabc"


async def test_set_text_sends_text_plain_utf8() -> None:
    out = await serve(lambda req, w: w.set_text("Grüße"))
    assert masked(out) == (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"date: <DATE>\r\ncontent-length: 7\r\n\r\nGr\xc3\xbc\xc3\x9fe"
    )


async def test_set_text_with_a_content_type_replaces_an_earlier_one() -> None:
    def prepare(req: Request, w: ResponseWriter) -> None:
        w.insert_header("content-type", "application/octet-stream")
        w.set_text("<b>x</b>", "text/html; charset=utf-8")

    [resp] = parse_responses(await serve(prepare))
    assert resp.headers.get_all("content-type") == ["text/html; charset=utf-8"]
    assert resp.body == b"<b>x</b>"


async def test_set_json_sends_application_json() -> None:
    obj = {"a": [1, 2.5, None], "é": True}
    out = await serve(lambda req, w: w.set_json(obj))
    body = json.dumps(obj).encode()
    assert masked(out) == (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ndate: <DATE>\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    [resp] = parse_responses(out)
    assert resp.json() == obj


async def test_set_json_uses_the_given_dumps() -> None:
    out = await serve(lambda req, w: w.set_json({"b": 1, "a": 2}, dumps=_compact_sorted))
    [resp] = parse_responses(out)
    assert resp.body == b'{"a":2,"b":1}'


def _compact_sorted(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True)


# -- server-sent events -------------------------------------------------------------------------


async def test_sse_sends_each_event_as_one_chunk_with_exact_field_lines() -> None:
    items: list[ServerSentEvent | str] = [
        "hello",
        ServerSentEvent(data="line one\nline two\r\nline three"),
        ServerSentEvent(data="x", event="update", id="7", retry=1500),
        ServerSentEvent(comment="keep-alive"),
        ServerSentEvent(data="d", comment="c1\nc2"),
    ]
    expected_events = [
        b"data: hello\n\n",
        b"data: line one\ndata: line two\ndata: line three\n\n",
        b"event: update\nid: 7\nretry: 1500\ndata: x\n\n",
        b": keep-alive\n\n",
        b": c1\n: c2\ndata: d\n\n",
    ]
    out = await serve(lambda req, w: w.set_sse(events(items)))
    head, _, body = masked(out).partition(b"\r\n\r\n")
    assert head == (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
        b"cache-control: no-cache\r\ndate: <DATE>\r\ntransfer-encoding: chunked"
    )
    # The stream opens with a comment line (ignored by clients) so the head goes out at once.
    chunks = [b": stream open\n\n", *expected_events]
    assert body == b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"


def test_sse_event_name_or_id_with_a_line_break_is_refused() -> None:
    for bad in ("a\nb", "a\rb", "a\x00b"):
        with pytest.raises(ValueError):
            ServerSentEvent(data="x", event=bad)
        with pytest.raises(ValueError):
            ServerSentEvent(data="x", id=bad)


# -- HEAD, 204, 304 -----------------------------------------------------------------------------


async def test_head_gets_the_get_headers_and_no_body() -> None:
    get = await serve(lambda req, w: w.set_text("hello"))
    head = await serve(lambda req, w: w.set_text("hello"), HEAD)
    assert masked(head) == (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"date: <DATE>\r\ncontent-length: 5\r\n\r\n"
    )
    assert masked(get) == masked(head) + b"hello"


@pytest.mark.parametrize("length", [5, None])
async def test_head_with_a_streamed_body_sends_no_body_bytes(length: int | None) -> None:
    # A GET follows on the same connection: any stray body byte would corrupt its parse.
    out = await serve(
        lambda req, w: w.set_body(pieces(b"hel", b"lo"), length=length), HEAD + FOLLOW_UP
    )
    head_resp, get_resp = parse_responses(out, ["HEAD", "GET"])
    assert head_resp.body == b""
    assert get_resp.body == b"hello"
    if length is not None:
        assert head_resp.headers["content-length"] == "5"


@pytest.mark.parametrize("status", [204, 304])
@pytest.mark.parametrize("streamed", [False, True])
async def test_204_and_304_never_carry_body_or_content_length(status: int, streamed: bool) -> None:
    def prepare(req: Request, w: ResponseWriter) -> None:
        w.set_status(status)
        w.insert_header("Content-Length", "5")
        if streamed:
            w.set_body(pieces(b"hel", b"lo"), length=5)
        else:
            w.set_body(b"hello")

    out = await serve(prepare, GET + FOLLOW_UP)
    reason = {204: b"No Content", 304: b"Not Modified"}[status]
    first = b"HTTP/1.1 %d %s\r\ndate: <DATE>\r\n\r\n" % (status, reason)
    assert masked(out) == first + first


# -- framing headers set by hand ----------------------------------------------------------------


async def test_user_set_framing_headers_are_ignored_for_a_bytes_body() -> None:
    def prepare(req: Request, w: ResponseWriter) -> None:
        w.insert_header("Content-Length", "100")
        w.append_header("Transfer-Encoding", "chunked")
        w.set_body(b"hello")

    out = await serve(prepare, GET + FOLLOW_UP)
    first = b"HTTP/1.1 200 OK\r\ndate: <DATE>\r\ncontent-length: 5\r\n\r\nhello"
    assert masked(out) == first + first


async def test_user_set_content_length_is_ignored_for_a_stream() -> None:
    def prepare(req: Request, w: ResponseWriter) -> None:
        w.insert_header("content-length", "20")
        w.set_body(pieces(b"hello"))

    out = await serve(prepare)
    assert masked(out) == (
        b"HTTP/1.1 200 OK\r\ndate: <DATE>\r\ntransfer-encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n"
    )


# -- send() and ResponseWritten -----------------------------------------------------------------


async def test_second_send_raises_and_sends_nothing() -> None:
    errors: list[RuntimeError] = []

    async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.set_text("once")
        done = await w.send()
        try:
            await w.send()
        except RuntimeError as exc:
            errors.append(exc)
        return done

    out = await AsyncTestClient(endpoint).raw(GET + FOLLOW_UP)
    assert len(errors) == 2
    assert [r.body for r in parse_responses(out)] == [b"once", b"once"]


async def test_response_written_reports_status_and_body_bytes() -> None:
    written: list[ResponseWritten] = []

    def prepare(req: Request, w: ResponseWriter) -> None:
        w.set_status(201)
        w.set_body(b"hello")

    await AsyncTestClient(endpoint_of(prepare, written)).raw(GET)
    [done] = written
    assert (done.status, done.bytes_written) == (201, 5)


async def test_response_written_counts_body_bytes_without_chunk_framing() -> None:
    written: list[ResponseWritten] = []

    def prepare(req: Request, w: ResponseWriter) -> None:
        w.set_body(pieces(b"abc", b"defg"))

    await AsyncTestClient(endpoint_of(prepare, written)).raw(GET)
    assert written[0].bytes_written == 7


@pytest.mark.parametrize("streamed", [False, True])
async def test_response_written_counts_zero_bytes_for_head(streamed: bool) -> None:
    written: list[ResponseWritten] = []

    def prepare(req: Request, w: ResponseWriter) -> None:
        w.set_body(pieces(b"hello") if streamed else b"hello")

    await AsyncTestClient(endpoint_of(prepare, written)).raw(HEAD)
    assert (written[0].status, written[0].bytes_written) == (200, 0)


async def test_response_written_counts_zero_bytes_for_204() -> None:
    written: list[ResponseWritten] = []

    def prepare(req: Request, w: ResponseWriter) -> None:
        w.set_status(204)
        w.set_body(b"hello")

    await AsyncTestClient(endpoint_of(prepare, written)).raw(GET)
    assert (written[0].status, written[0].bytes_written) == (204, 0)


async def test_response_written_headers_are_the_headers_sent() -> None:
    # ResponseWritten's docstring: "headers: the header fields sent, framing and Date included".
    written: list[ResponseWritten] = []

    def prepare(req: Request, w: ResponseWriter) -> None:
        w.insert_header("x-a", "1")
        w.insert_header("Content-Length", "99")  # ignored on the wire, so not "sent" either
        w.set_body(b"hello")

    out = await AsyncTestClient(endpoint_of(prepare, written)).raw(GET)
    [resp] = parse_responses(out)
    sent = [(name.lower(), value) for name, value in written[0].headers]
    assert sent == [(name.lower(), value) for name, value in resp.headers]


def test_response_written_cannot_be_made_by_user_code() -> None:
    with pytest.raises(TypeError):
        ResponseWritten(object(), 200, Headers(), 0)
    with pytest.raises(TypeError):
        ResponseWritten(None, 200, Headers(), 0)
