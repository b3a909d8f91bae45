"""tophat.middleware.compress on the wire: Accept-Encoding negotiation, every rule that leaves a
response alone, Vary, ETags and the conditional fields, byte-exact round trips for gzip, br and
zstd, HEAD, and streams flushed piece by piece (an SSE event through gzip arrives before the
next one exists) over real sockets on each runtime."""

from __future__ import annotations

import gzip
import json
import os
import zlib
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import anyio
import brotli
import pytest
import zstandard
from servers import Serving, connected
from test_asgi import Peer, call, http_scope

from tophat import Glitch, Request, ResponseWriter, ResponseWritten, ServerSentEvent
from tophat.asgi import to_asgi
from tophat.middleware import _codings, chain
from tophat.middleware.compress import compress
from tophat.testing import AsyncTestClient, TestResponse

# A JSON body well over min_size, which compresses well.
DOC = json.dumps([{"id": i, "name": f"item {i}", "tags": ["a", "b"]} for i in range(120)]).encode()
ALL = ("zstd", "br", "gzip")


def decode(coding: str | None, data: bytes) -> bytes:
    """``data`` decoded as a client does (a streamed zstd frame has no content size)."""
    if coding is None:
        return data
    if coding == "gzip":
        return gzip.decompress(data)
    if coding == "br":
        return bytes(brotli.decompress(data))
    assert coding == "zstd"
    return bytes(zstandard.ZstdDecompressor().decompressobj().decompress(data))


def endpoint(
    body: bytes | Callable[[], AsyncIterator[bytes]] = DOC,
    *,
    status: int = 200,
    headers: Iterable[tuple[str, str]] = (("content-type", "application/json"),),
    length: int | None = None,
) -> Callable[[Request, ResponseWriter], Any]:
    async def handler(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.set_status(status)
        for name, value in headers:
            w.append_header(name, value)
        w.set_body(body if isinstance(body, bytes) else body(), length=length)
        return await w.send()

    return handler


async def get(
    app: Any, accept_encoding: str | None = "gzip", method: str = "GET", **headers: str
) -> TestResponse:
    fields = {name.replace("_", "-"): value for name, value in headers.items()}
    if accept_encoding is not None:
        fields["accept-encoding"] = accept_encoding
    return await AsyncTestClient(app).request(method, "/", headers=fields)


def coding_of(resp: TestResponse) -> str | None:
    return resp.headers.get("content-encoding")


# -- negotiation (RFC 9110 §12.5.3) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("accept_encoding", "expected"),
    [
        (None, None),  # no header: identity, what any client reads
        ("", None),  # empty: "does not want any content coding"
        ("gzip", "gzip"),
        ("GZip", "gzip"),  # codings are case-insensitive
        ("x-gzip", "gzip"),  # §8.4.1.3: equivalent to gzip
        ("br", "br"),
        ("zstd", "zstd"),
        ("gzip, deflate, br, zstd", "zstd"),  # a tie: the server's order (zstd, br, gzip)
        ("gzip, br", "br"),
        ("gzip;q=1.0, br;q=0.5", "gzip"),
        ("br;q=0.9, gzip", "gzip"),
        ("gzip ; q=0.8 , br ; q=0.9", "br"),  # OWS around ";" and ","
        ("gzip;Q=0.5, br;q=0.4", "gzip"),  # "q=" is case-insensitive
        ("gzip;q=0", None),  # q=0: not acceptable
        ("deflate, compress", None),  # nothing we offer
        ("compress, gzip;q=0.001", "gzip"),
        ("*", "zstd"),
        ("*;q=0.5, gzip", "gzip"),
        ("*, gzip;q=0", "zstd"),
        ("*;q=0", None),  # nothing acceptable, identity included: identity all the same
        ("identity;q=0", None),  # idem (§12.1: disregard rather than 406)
        ("gzip;q=0.1, identity;q=0", "gzip"),
        ("gzip;q=0.5, identity", None),  # the client prefers identity
        ("gzip;q=0.5, identity;q=0.5", "gzip"),  # a tie with identity goes to the coding
        ("gzip;q=2", None),  # a malformed q-value drops its member
        ("gzip;q=0.1234", None),  # more than three decimals: malformed
        ("gzip;level=1", None),  # not a weight: malformed
        (",, gzip ,,", "gzip"),  # empty list members are ignored (§5.6.1)
        ("gzip;q=0.5, gzip", "gzip"),  # listed twice: the first counts
    ],
)
async def test_accept_encoding_negotiation(accept_encoding: str | None, expected: str) -> None:
    resp = await get(compress()(endpoint()), accept_encoding)
    assert resp.status == 200
    assert coding_of(resp) == expected
    assert decode(expected, resp.body) == DOC
    assert resp.headers["vary"] == "Accept-Encoding"  # whatever was chosen


async def test_accept_encoding_on_several_lines_is_one_list() -> None:
    raw = await AsyncTestClient(compress()(endpoint())).raw(
        b"GET / HTTP/1.1\r\nHost: x\r\nAccept-Encoding: br;q=0.1\r\nAccept-Encoding: gzip\r\n\r\n"
    )
    assert b"\r\ncontent-encoding: gzip\r\n" in raw


@pytest.mark.parametrize(
    ("encodings", "accept_encoding", "expected"),
    [
        (("gzip",), "br", None),
        (("gzip",), "br, gzip", "gzip"),
        (("gzip", "br"), "br, gzip, zstd", "gzip"),  # the configured order breaks the tie
        (("br", "gzip"), "gzip, br", "br"),
    ],
)
async def test_encodings_sets_what_is_offered_and_the_order_of_preference(
    encodings: tuple[Any, ...], accept_encoding: str, expected: str | None
) -> None:
    resp = await get(compress(encodings=encodings)(endpoint()), accept_encoding)
    assert coding_of(resp) == expected


def test_without_the_extra_only_gzip_is_offered_and_asking_for_br_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_codings, "_PROVIDERS", {"br": ("no_such_brotli",), "zstd": ("nope",)})
    resp = anyio.run(get, compress()(endpoint()), "zstd, br, gzip")
    assert coding_of(resp) == "gzip"
    with pytest.raises(RuntimeError, match=r"needs brotli: pip install 'tophat\[compress\]'$"):
        compress(encodings=["br", "gzip"])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"min_size": -1}, "min_size"),
        ({"gzip_level": 0}, "gzip_level"),
        ({"gzip_level": 10}, "gzip_level"),
        ({"brotli_quality": 12}, "brotli_quality"),
        ({"zstd_level": 20}, "zstd_level"),
        ({"encodings": ["deflate"]}, "not one of"),
        ({"encodings": "gzip"}, "not a string"),
        ({"encodings": []}, "at least one"),
        ({"content_types": ["text"]}, "not 'type/subtype'"),
        ({"content_types": ["*/json"]}, "not 'type/subtype'"),
        ({"content_types": "text/*"}, "not a string"),
    ],
)
def test_a_bad_configuration_fails_when_the_middleware_is_built(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        compress(**options)


# -- what is left alone ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("handler", "why"),
    [
        (endpoint(DOC[:511]), "shorter than min_size"),
        (endpoint(headers=[("content-type", "image/png")]), "a type that does not compress"),
        (endpoint(headers=[]), "no Content-Type"),
        (endpoint(status=204, body=b""), "204"),
        (endpoint(status=205), "205"),
        (
            endpoint(headers=[("content-type", "text/plain"), ("content-encoding", "br")]),
            "encoded by the application",
        ),
        (
            endpoint(headers=[("content-type", "text/plain"), ("cache-control", "no-transform")]),
            "no-transform",
        ),
        (
            endpoint(
                headers=[("content-type", "text/plain"), ("Cache-Control", "public, No-Transform")]
            ),
            "no-transform among others, any case",
        ),
        (
            endpoint(
                status=206,
                headers=[
                    ("content-type", "text/plain"),
                    ("content-range", f"bytes 0-{len(DOC) - 1}/9999"),
                ],
            ),
            "206",
        ),
        (
            endpoint(
                status=416,
                body=b"x" * 600,
                headers=[("content-type", "text/plain"), ("content-range", "bytes */10")],
            ),
            "any Content-Range",
        ),
    ],
)
async def test_responses_left_alone_have_no_encoding_and_no_vary(handler: Any, why: str) -> None:
    resp = await get(compress()(handler), "gzip, br, zstd")
    expected = "br" if "application" in why else None  # (br: the application's own)
    assert coding_of(resp) == expected, why
    assert "vary" not in resp.headers, why
    if resp.status in (204, 205):
        assert resp.body == b""
    else:
        assert resp.body in (DOC, DOC[:511], b"x" * 600), why


async def test_min_size_is_inclusive_and_configurable() -> None:
    at = await get(compress(min_size=100)(endpoint(DOC[:100])))
    below = await get(compress(min_size=100)(endpoint(DOC[:99])))
    assert (coding_of(at), coding_of(below)) == ("gzip", None)
    assert decode("gzip", at.body) == DOC[:100]


async def test_a_streamed_body_of_known_small_length_is_left_alone() -> None:
    async def small() -> AsyncIterator[bytes]:
        yield DOC[:100]

    resp = await get(compress()(endpoint(small, length=100)))
    assert coding_of(resp) is None
    assert resp.headers["content-length"] == "100"


async def test_a_body_that_does_not_get_smaller_is_sent_as_it_is_with_vary() -> None:
    noise = os.urandom(4000)
    resp = await get(compress()(endpoint(noise, headers=[("content-type", "text/plain")])))
    assert coding_of(resp) is None
    assert resp.body == noise
    assert resp.headers["vary"] == "Accept-Encoding"


@pytest.mark.parametrize(
    ("content_types", "content_type", "compressed"),
    [
        (None, "text/html; charset=utf-8", True),
        (None, "TEXT/CSS", True),
        (None, "application/problem+json", True),
        (None, "image/svg+xml", True),
        (None, "text/event-stream", True),
        (None, "application/octet-stream", False),
        (None, "image/jpeg", False),
        (None, "font/woff2", False),
        (["application/vnd.api+json"], "application/vnd.api+json", True),
        (["application/vnd.api+json"], "text/plain", False),
        (["image/*"], "image/png", True),
        (lambda t: t == "application/x-custom", "application/x-custom; v=1", True),
        (lambda t: t == "application/x-custom", "application/json", False),
    ],
)
async def test_content_types_chooses_what_is_compressed(
    content_types: Any, content_type: str, compressed: bool
) -> None:
    options = {} if content_types is None else {"content_types": content_types}
    resp = await get(compress(**options)(endpoint(headers=[("content-type", content_type)])))
    assert (coding_of(resp) == "gzip") is compressed
    assert ("vary" in resp.headers) is compressed


# -- Vary -----------------------------------------------------------------------------------


@pytest.mark.parametrize("accept_encoding", [None, "", "gzip", "identity", "gzip;q=0", "br"])
async def test_vary_is_on_every_response_whose_encoding_depends_on_accept_encoding(
    accept_encoding: str | None,
) -> None:
    resp = await get(compress(encodings=["gzip"])(endpoint()), accept_encoding)
    assert resp.headers.get_all("vary") == ["Accept-Encoding"]


@pytest.mark.parametrize(
    ("existing", "merged"),
    [
        ("Origin", "Origin, Accept-Encoding"),
        ("accept-encoding", "accept-encoding"),
        ("Origin, Accept-Encoding", "Origin, Accept-Encoding"),
        ("*", "*"),
    ],
)
async def test_vary_merges_with_the_endpoints(existing: str, merged: str) -> None:
    handler = endpoint(headers=[("content-type", "text/plain"), ("vary", existing)])
    resp = await get(compress()(handler), None)
    assert resp.headers.get_all("vary") == [merged]


# -- ETag and the conditional fields --------------------------------------------------------


def tagged(etag: str = '"v1"', seen: list[dict[str, str]] | None = None) -> Any:
    """An endpoint with an ETag that answers If-None-Match itself (weak comparison, as
    RFC 9110 §13.1.2 says) and records the conditional fields it was given."""

    async def handler(req: Request, w: ResponseWriter) -> ResponseWritten:
        if seen is not None:
            seen.append({k: v for k, v in req.headers if k.startswith("if-")})
        w.insert_header("etag", etag)
        w.insert_header("accept-ranges", "bytes")
        tags = [
            t.strip().removeprefix("W/") for t in req.headers.get("if-none-match", "").split(",")
        ]
        if etag.removeprefix("W/") in tags:
            w.set_status(304)
            return await w.send()
        w.set_json(json.loads(DOC))
        return await w.send()

    return handler


@pytest.mark.parametrize("coding", ALL)
async def test_a_strong_etag_gets_the_codings_suffix_and_accept_ranges_goes(coding: str) -> None:
    resp = await get(compress()(tagged()), coding)
    assert (coding_of(resp), resp.headers["etag"]) == (coding, f'"v1-{coding}"')
    assert "accept-ranges" not in resp.headers  # ranges would be of the identity's bytes
    identity = await get(compress()(tagged()), None)
    assert (identity.headers["etag"], identity.headers["accept-ranges"]) == ('"v1"', "bytes")


async def test_a_weak_etag_stays_as_it_is() -> None:
    resp = await get(compress()(tagged('W/"v1"')))
    assert (coding_of(resp), resp.headers["etag"]) == ("gzip", 'W/"v1"')


async def test_a_malformed_etag_is_dropped_from_an_encoded_response() -> None:
    resp = await get(compress()(tagged("v1")))
    assert coding_of(resp) == "gzip"
    assert "etag" not in resp.headers


async def test_if_none_match_with_the_suffixed_tag_gets_a_304_that_carries_it_back() -> None:
    seen: list[dict[str, str]] = []
    app = compress()(tagged(seen=seen))
    first = await get(app, "gzip")
    resp = await get(app, "gzip", if_none_match=first.headers["etag"])
    assert seen[-1]["if-none-match"] == '"v1"'  # the endpoint compares its own tag
    assert resp.status == 304
    assert resp.headers["etag"] == '"v1-gzip"'  # RFC 9110 §15.4.5: the tag the 200 had
    assert resp.headers["vary"] == "Accept-Encoding"
    # A shared cache holding both representations asks with both tags.
    both = await get(app, "gzip", if_none_match='"v1", "v1-gzip"')
    assert (both.status, both.headers["etag"]) == (304, '"v1-gzip"')


async def test_if_none_match_for_another_coding_is_not_a_match() -> None:
    # The client holds the gzip bytes but would now get br: a 304 would keep the wrong ones.
    seen: list[dict[str, str]] = []
    resp = await get(compress()(tagged(seen=seen)), "br", if_none_match='"v1-gzip"')
    assert seen[-1]["if-none-match"] == '"v1-gzip"'
    assert (resp.status, coding_of(resp), resp.headers["etag"]) == (200, "br", '"v1-br"')


async def test_if_match_loses_any_suffix_and_if_range_none() -> None:
    seen: list[dict[str, str]] = []
    app = compress()(tagged(seen=seen))
    await get(app, None, "PUT", if_match='"v1-zstd", W/"v0-gzip", "other"')
    assert seen[-1]["if-match"] == '"v1", W/"v0", "other"'
    await get(app, "gzip", if_range='"v1-gzip"', range="bytes=10-")
    assert seen[-1]["if-range"] == '"v1-gzip"'  # a range of identity bytes must not match


# -- round trips: whole bodies, large ones, streams -----------------------------------------


@pytest.mark.parametrize("coding", ALL)
async def test_a_whole_body_round_trips_with_its_new_length(coding: str) -> None:
    resp = await get(compress()(endpoint()), coding)
    assert coding_of(resp) == coding
    assert int(resp.headers["content-length"]) == len(resp.body) < len(DOC)
    assert "transfer-encoding" not in resp.headers
    assert decode(coding, resp.body) == DOC


@pytest.mark.parametrize("coding", ALL)
async def test_a_large_body_is_compressed_in_pieces_and_sent_chunked(coding: str) -> None:
    big = DOC * 200  # ~1 MiB, over the 256 KiB done in one go
    resp = await get(compress()(endpoint(big)), coding)
    assert coding_of(resp) == coding
    assert resp.headers["transfer-encoding"] == "chunked"
    assert "content-length" not in resp.headers
    assert decode(coding, resp.body) == big


@pytest.mark.parametrize("coding", ALL)
@pytest.mark.parametrize("known", [True, False])
async def test_a_streamed_body_round_trips_chunked(coding: str, known: bool) -> None:
    pieces = [DOC[i : i + 700] for i in range(0, len(DOC), 700)] + [b"", b"end"]

    async def stream() -> AsyncIterator[bytes]:
        for piece in pieces:
            yield piece

    total = sum(map(len, pieces))
    resp = await get(compress()(endpoint(stream, length=total if known else None)), coding)
    assert coding_of(resp) == coding
    assert resp.headers["transfer-encoding"] == "chunked"
    assert decode(coding, resp.body) == b"".join(pieces)


@pytest.mark.parametrize("coding", ALL)
async def test_an_empty_stream_is_a_valid_empty_encoding(coding: str) -> None:
    async def nothing() -> AsyncIterator[bytes]:
        return
        yield b""

    resp = await get(compress()(endpoint(nothing)), coding)
    assert coding_of(resp) == coding
    assert decode(coding, resp.body) == b""


async def test_a_stream_that_fails_before_its_first_piece_gets_a_plain_500() -> None:
    async def broken() -> AsyncIterator[bytes]:
        raise RuntimeError("no data")
        yield b""

    resp = await get(compress()(endpoint(broken)), "gzip")
    assert resp.status == 500
    assert coding_of(resp) is None
    assert resp.text == "Internal Server Error"


async def test_a_large_glitch_body_is_compressed_as_any_other() -> None:
    async def refuse(req: Request, w: ResponseWriter) -> ResponseWritten:
        raise Glitch(422, "x" * 2000)

    resp = await get(compress()(refuse), "gzip")
    assert resp.status == 422
    assert coding_of(resp) == "gzip"
    assert decode("gzip", resp.body).endswith(b"x" * 2000)


# -- HEAD -----------------------------------------------------------------------------------


def without_date(resp: TestResponse) -> list[tuple[str, str]]:
    return [(n, v) for n, v in resp.headers if n.lower() != "date"]


@pytest.mark.parametrize("kind", ["whole", "large", "stream"])
async def test_head_gets_the_head_a_get_gets_and_its_stream_is_never_read(kind: str) -> None:
    pulled: list[str] = []

    async def stream() -> AsyncIterator[bytes]:
        pulled.append("read")
        yield DOC

    body: Any = {"whole": DOC, "large": DOC * 200, "stream": stream}[kind]
    app = compress()(tagged() if kind == "whole" else endpoint(body))
    got = await get(app, "gzip")
    pulled.clear()
    head = await get(app, "gzip", "HEAD")
    assert head.body == b""
    assert without_date(head) == without_date(got)
    assert pulled == []


# -- streams flushed piece by piece, over real sockets on every runtime ---------------------


async def read_until(c: Any, inflate: Any, wanted: bytes, got: bytearray) -> None:
    while wanted not in got:
        piece = await c.piece()
        assert piece is not None, f"the body ended before {wanted!r}: {bytes(got)!r}"
        got += inflate.decompress(piece)


async def test_sse_through_gzip_delivers_each_event_before_the_next_is_produced(
    serving: Serving,
) -> None:
    gates = [anyio.Event() for _ in range(4)]

    async def events() -> AsyncIterator[ServerSentEvent]:
        for i, gate in enumerate(gates):
            await gate.wait()  # set by the test only once it has read event i - 1
            yield ServerSentEvent(data=f"event {i}", id=str(i))

    async def feed(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.set_sse(events())
        return await w.send()

    async with serving(chain(compress())(feed)) as server, connected(server.port) as c:
        await c.send(b"GET / HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n")
        with anyio.fail_after(5):
            head = await c.head()
            fields = {n.decode(): v.decode() for n, v in head.headers}
            assert fields["content-encoding"] == "gzip"
            assert fields["transfer-encoding"] == "chunked"
            inflate = zlib.decompressobj(31)  # a streaming gzip reader, as a browser's
            got = bytearray()
            await read_until(c, inflate, b": stream open\n\n", got)
            for i, gate in enumerate(gates):
                gate.set()
                await read_until(c, inflate, f"id: {i}\ndata: event {i}\n\n".encode(), got)
                assert not any(g.is_set() for g in gates[i + 1 :])  # the next is not made yet
            while (piece := await c.piece()) is not None:
                got += inflate.decompress(piece)
    assert inflate.eof  # the gzip trailer came at the end of the stream


@pytest.mark.parametrize("coding", ALL)
async def test_streams_round_trip_over_a_socket(serving: Serving, coding: str) -> None:
    big = os.urandom(50_000).hex().encode()  # text, and 100 KB: several pieces

    async def stream() -> AsyncIterator[bytes]:
        for i in range(0, len(big), 8192):
            yield big[i : i + 8192]

    app = compress()(endpoint(stream, headers=[("content-type", "text/plain")]))
    async with serving(app) as server, connected(server.port) as c:
        for _ in range(2):  # keep-alive: the chunked framing ended right
            await c.send(f"GET / HTTP/1.1\r\nHost: t\r\nAccept-Encoding: {coding}\r\n\r\n".encode())
            with anyio.fail_after(5):
                status, fields, body = await c.response()
            assert (status, fields["content-encoding"]) == (200, coding)
            assert decode(coding, body) == big


async def test_a_client_that_leaves_mid_stream_closes_the_handlers_stream(
    serving: Serving,
) -> None:
    closed = anyio.Event()
    sent_first = anyio.Event()

    async def endless() -> AsyncIterator[bytes]:
        try:
            while True:
                yield b"data: tick\n\n" * 100
                sent_first.set()
                await anyio.sleep(0.01)
        finally:
            closed.set()

    app = compress()(endpoint(endless, headers=[("content-type", "text/event-stream")]))
    async with serving(app) as server:
        async with connected(server.port) as c:
            await c.send(b"GET / HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n")
            with anyio.fail_after(5):
                await c.head()
                await sent_first.wait()
        with anyio.fail_after(5):
            await closed.wait()


# -- the ASGI adapter -----------------------------------------------------------------------


async def test_through_asgi_each_body_message_decodes_to_one_whole_event() -> None:
    async def events() -> AsyncIterator[ServerSentEvent]:
        for i in range(3):
            yield ServerSentEvent(data=f"event {i}")

    async def feed(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.set_sse(events())
        return await w.send()

    scope = http_scope(headers=[(b"host", b"t"), (b"accept-encoding", b"gzip")])
    start, *bodies = await call(to_asgi(compress()(feed)), scope, Peer())
    fields = {bytes(n).decode(): bytes(v).decode() for n, v in start["headers"]}
    assert (fields["content-encoding"], fields["vary"]) == ("gzip", "Accept-Encoding")
    assert "content-length" not in fields
    inflate = zlib.decompressobj(31)
    decoded = [inflate.decompress(m["body"]) for m in bodies if m["body"]]
    events_sent = [b": stream open\n\n", *(f"data: event {i}\n\n".encode() for i in range(3))]
    assert decoded[:4] == events_sent  # each message held exactly one event, flushed
    assert inflate.eof and b"".join(decoded[4:]) == b""


@pytest.mark.parametrize("coding", ALL)
async def test_through_asgi_a_whole_body_has_its_compressed_length(coding: str) -> None:
    scope = http_scope(headers=[(b"host", b"t"), (b"accept-encoding", coding.encode())])
    start, *bodies = await call(to_asgi(compress()(endpoint())), scope, Peer())
    fields = {bytes(n).decode(): bytes(v).decode() for n, v in start["headers"]}
    body = b"".join(m["body"] for m in bodies)
    assert (fields["content-encoding"], int(fields["content-length"])) == (coding, len(body))
    assert decode(coding, body) == DOC


# -- set_file behind compress() -------------------------------------------------------------

TEXT = b"".join(b"line %d of a text file that compresses well\n" % i for i in range(2000))


def file_app(tmp_path: Any) -> Any:
    path = tmp_path / "notes.txt"
    path.write_bytes(TEXT)
    os.utime(path, (1_700_000_000, 1_700_000_000))  # over a second old: a strong ETag

    async def download(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.set_file(path)
        return await w.send()

    return compress()(download)


async def test_a_file_is_gzipped_with_a_suffixed_etag_and_revalidates_to_a_304(
    tmp_path: Any,
) -> None:
    app = file_app(tmp_path)
    plain = await get(app, None)
    etag = plain.headers["etag"]
    assert (plain.status, coding_of(plain), plain.body) == (200, None, TEXT)
    assert plain.headers["vary"] == "Accept-Encoding"
    assert plain.headers["accept-ranges"] == "bytes"
    packed = await get(app, "gzip")
    assert (packed.status, coding_of(packed)) == (200, "gzip")
    assert packed.headers["content-type"] == "text/plain; charset=utf-8"
    assert packed.headers["etag"] == etag[:-1] + '-gzip"'  # RFC 9110 §8.8.3: not the identity's
    assert packed.headers["last-modified"] == plain.headers["last-modified"]
    assert "accept-ranges" not in packed.headers  # its ranges would be the identity's
    assert gzip.decompress(packed.body) == TEXT and len(packed.body) < len(TEXT) / 4
    # The conditional round trip: the client sends back the tag it got.
    again = await get(app, "gzip", if_none_match=packed.headers["etag"])
    assert (again.status, again.body, coding_of(again)) == (304, b"", None)
    assert (again.headers["etag"], again.headers["vary"]) == (
        packed.headers["etag"],
        "Accept-Encoding",
    )
    # The gzip tag names the gzip bytes: a client now getting br must not be told 304.
    other = await get(app, "br", if_none_match=packed.headers["etag"])
    assert (other.status, coding_of(other)) == (200, "br")


async def test_a_range_of_a_file_is_never_compressed(tmp_path: Any) -> None:
    app = file_app(tmp_path)
    etag = (await get(app, None)).headers["etag"]
    part = await get(app, "gzip", range="bytes=100-9099")  # (well over min_size)
    assert (part.status, coding_of(part), part.body) == (206, None, TEXT[100:9100])
    assert part.headers["content-range"] == f"bytes 100-9099/{len(TEXT)}"
    assert (part.headers["content-length"], part.headers["etag"]) == ("9000", etag)
    resumed = await get(app, "gzip", range="bytes=100-", if_range=etag)
    assert (resumed.status, coding_of(resumed), resumed.body) == (206, None, TEXT[100:])
    # An If-Range of the gzip tag is not the identity's: the whole file, compressed (a client
    # holding gzip bytes cannot splice an identity range onto them).
    gz_tag = etag[:-1] + '-gzip"'
    whole = await get(app, "gzip", range="bytes=100-", if_range=gz_tag)
    assert (whole.status, coding_of(whole)) == (200, "gzip")
    assert gzip.decompress(whole.body) == TEXT


async def test_a_file_through_gzip_and_its_range_over_a_socket(
    serving: Serving, tmp_path: Any
) -> None:
    async with serving(file_app(tmp_path)) as server, connected(server.port) as c:
        for extra in ("", "Range: bytes=0-9999\r\n", ""):  # keep-alive: each framed right
            await c.send(
                f"GET / HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n{extra}\r\n".encode()
            )
            with anyio.fail_after(5):
                status, fields, body = await c.response()
            if extra:
                assert (status, "content-encoding" in fields, body) == (206, False, TEXT[:10000])
            else:
                assert (status, fields["content-encoding"]) == (200, "gzip")
                assert gzip.decompress(body) == TEXT
