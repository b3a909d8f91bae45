"""File responses (``ResponseWriter.set_file``) on the wire: validators, conditional requests
(RFC 9110 §13.2.2 order), ranges (§14: 206, multipart/byteranges, 416), HEAD, descriptors,
zero-copy sendfile on asyncio's plain TCP (pieces elsewhere), a file changing under a
response, the ASGI adapter, and ``curl -C -`` resuming a download."""

from __future__ import annotations

import asyncio
import contextlib
import email.parser
import io
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import servers
from servers import Runtime, asgi_messages
from test_tls_uds import Cert, cert, sock_path, tls_connected  # noqa: F401 (fixtures)

from tophat import Request, ResponseWriter, ResponseWritten
from tophat.asgi import to_asgi
from tophat.http.conditional import http_date, parse_http_date
from tophat.http.files import FileBody
from tophat.http.ranges import parse_range
from tophat.testing import AsyncTestClient, TestResponse, parse_responses

DATA = bytes(range(256)) * 4  # 1000 bytes below, cut from this
SIZE = 1000
MTIME = 1_700_000_000  # Tue, 14 Nov 2023 22:13:20 GMT: an old file (strong validators)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    p = tmp_path / "notes.txt"
    p.write_bytes(DATA[:SIZE])
    os.utime(p, (MTIME, MTIME))
    return p


def etag_of(p: Path) -> str:
    st = os.stat(p)
    return f'"{st.st_mtime_ns:x}-{st.st_size:x}-{st.st_ino:x}"'


def file_app(source: Any, **kw: Any) -> Any:
    async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.insert_header("cache-control", "max-age=60")
        w.insert_header("vary", "accept-language")
        w.set_file(source() if callable(source) else source, **kw)
        return await w.send()

    return endpoint


async def get(app: Any, method: str = "GET", **headers: str) -> TestResponse:
    fields = "".join(f"{k.replace('_', '-')}: {v}\r\n" for k, v in headers.items())
    raw = await AsyncTestClient(app).raw(f"{method} / HTTP/1.1\r\nHost: x\r\n{fields}\r\n".encode())
    [resp] = parse_responses(raw, [method])
    resp.raw = raw
    return resp


def fds_on(p: Path) -> int:
    """Descriptors of this process open on ``p``."""
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            n += os.readlink(f"/proc/self/fd/{fd}") == str(p)
    return n


# -- whole files, HEAD ------------------------------------------------------------------------


async def test_get_sends_the_file_with_length_type_and_strong_validators(path: Path) -> None:
    resp = await get(file_app(path))
    assert resp.status == 200
    assert resp.body == DATA[:SIZE]
    assert resp.headers["content-length"] == "1000"
    assert resp.headers["content-type"] == "text/plain; charset=utf-8"
    assert resp.headers["last-modified"] == "Tue, 14 Nov 2023 22:13:20 GMT"
    assert resp.headers["etag"] == etag_of(path)
    assert resp.headers["accept-ranges"] == "bytes"
    assert resp.headers["cache-control"] == "max-age=60"


async def test_head_sends_the_same_head_and_no_body(path: Path) -> None:
    get_ = await get(file_app(path))
    head = await get(file_app(path), "HEAD")
    assert head.status == 200 and head.body == b""
    assert head.raw.endswith(b"\r\n\r\n")
    assert {k: v for k, v in head.headers.items() if k != "date"} == {
        k: v for k, v in get_.headers.items() if k != "date"
    }


async def test_a_file_less_than_a_second_old_gets_weak_validators(tmp_path: Path) -> None:
    p = tmp_path / "fresh.bin"
    p.write_bytes(b"x" * 10)
    resp = await get(file_app(p), range="bytes=0-1", if_range=http_date(os.stat(p).st_mtime))
    assert resp.headers["etag"] == "W/" + etag_of(p)
    assert resp.status == 200  # a date is no strong validator for a file this young
    weak = await get(file_app(p), range="bytes=0-1", if_range="W/" + etag_of(p))
    assert weak.status == 200  # If-Range compares strongly: a weak tag never matches
    assert (await get(file_app(p), if_none_match="W/" + etag_of(p))).status == 304


@pytest.mark.parametrize(
    ("name", "given", "expected"),
    [
        ("a.json", None, "application/json"),
        ("a.html", None, "text/html; charset=utf-8"),
        ("a.tar.gz", None, "application/gzip"),  # the bytes are gzip: no Content-Encoding
        ("a.unknownext", None, "application/octet-stream"),
        ("a.json", "application/x-mine", "application/x-mine"),
    ],
)
async def test_content_type_is_guessed_from_the_name(
    tmp_path: Path, name: str, given: str | None, expected: str
) -> None:
    p = tmp_path / name
    p.write_bytes(b"{}")
    resp = await get(file_app(p, content_type=given))
    assert resp.headers["content-type"] == expected
    assert "content-encoding" not in resp.headers


@pytest.mark.parametrize(
    ("filename", "inline", "expected"),
    [
        ("report 2024.pdf", False, 'attachment; filename="report 2024.pdf"'),
        ("r.pdf", True, 'inline; filename="r.pdf"'),
        (
            'résumé "1".txt',
            False,
            'attachment; filename="r_sum_ _1_.txt"; '
            "filename*=UTF-8''r%C3%A9sum%C3%A9%20%221%22.txt",
        ),
    ],
)
async def test_filename_gives_a_content_disposition(
    path: Path, filename: str, inline: bool, expected: str
) -> None:
    resp = await get(file_app(path, filename=filename, inline=inline))
    assert resp.headers["content-disposition"] == expected
    if filename.endswith(".pdf"):
        assert resp.headers["content-type"] == "application/pdf"


async def test_an_open_file_is_sent_whole_and_closed(path: Path) -> None:
    files: list[Any] = []

    def opener() -> Any:
        files.append(path.open("rb"))
        files[-1].seek(100)  # sent whole anyway
        return files[-1]

    resp = await get(file_app(opener))
    assert resp.body == DATA[:SIZE] and resp.headers["etag"] == etag_of(path)
    head = await get(file_app(opener), "HEAD")
    assert head.headers["content-length"] == "1000"
    ranged = await get(file_app(opener), range="bytes=10-19")
    assert ranged.status == 206 and ranged.body == DATA[10:20]
    not_modified = await get(file_app(opener), if_none_match=etag_of(path))
    assert not_modified.status == 304
    assert len(files) == 4 and all(f.closed for f in files)


async def test_an_in_memory_file_has_a_length_and_ranges_but_no_validators() -> None:
    resp = await get(file_app(lambda: io.BytesIO(DATA[:SIZE])), range="bytes=-5")
    assert resp.status == 206 and resp.body == DATA[SIZE - 5 : SIZE]
    assert "etag" not in resp.headers and "last-modified" not in resp.headers
    full = await get(file_app(lambda: io.BytesIO(DATA[:SIZE]), content_type="x/y"))
    assert full.body == DATA[:SIZE] and full.headers["content-type"] == "x/y"


async def test_an_empty_file_is_an_empty_200_even_with_a_range(tmp_path: Path) -> None:
    p = tmp_path / "empty"
    p.write_bytes(b"")
    resp = await get(file_app(p), range="bytes=-5")
    assert (resp.status, resp.headers["content-length"], resp.body) == (200, "0", b"")


async def test_a_status_set_before_is_kept_and_the_file_sent_whole(path: Path) -> None:
    async def not_found(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.set_status(404)
        w.set_file(path)
        return await w.send()

    resp = await get(not_found, range="bytes=0-1", if_none_match="*")
    assert resp.status == 404 and resp.body == DATA[:SIZE]


async def test_a_missing_file_or_a_directory_is_a_500(tmp_path: Path) -> None:
    assert (await get(file_app(tmp_path / "nope"))).status == 500
    assert (await get(file_app(tmp_path))).status == 500


async def test_a_file_replaced_before_it_is_sent_is_a_500_not_another_body(path: Path) -> None:
    async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.set_file(path)
        other = path.with_suffix(".new")
        other.write_bytes(b"y" * SIZE)
        os.replace(other, path)  # same size, another inode: not what the validators describe
        return await w.send()

    assert (await get(endpoint)).status == 500


async def test_a_file_shrinking_while_sent_closes_the_connection(path: Path) -> None:
    async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.set_file(path, chunk_size=100)
        body = w.response.body
        assert isinstance(body, FileBody)

        async def shrinking() -> Any:
            async for piece in body:
                yield piece
                os.truncate(path, 250)

        w.set_body(shrinking(), length=SIZE)
        return await w.send()

    raw = await AsyncTestClient(endpoint).raw(
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"content-length: 1000" in head
    assert body == DATA[:200]  # then the close: no second response on this connection
    assert fds_on(path) == 0


# -- conditional requests (RFC 9110 §13.2.2) ----------------------------------------------------

LM = "Tue, 14 Nov 2023 22:13:20 GMT"
EARLIER = "Tue, 14 Nov 2023 22:13:19 GMT"
LATER = "Tue, 14 Nov 2023 22:13:21 GMT"


@pytest.mark.parametrize(
    ("method", "headers", "status"),
    [
        ("GET", {"if_none_match": "ETAG"}, 304),
        ("GET", {"if_none_match": '"x", ETAG'}, 304),
        ("GET", {"if_none_match": "W/ETAG"}, 304),  # weak comparison
        ("GET", {"if_none_match": "*"}, 304),
        ("GET", {"if_none_match": '"other"'}, 200),
        ("HEAD", {"if_none_match": "ETAG"}, 304),
        ("POST", {"if_none_match": "ETAG"}, 412),  # not GET/HEAD: 412
        ("GET", {"if_match": "ETAG"}, 200),
        ("GET", {"if_match": "*"}, 200),
        ("GET", {"if_match": '"other"'}, 412),
        ("GET", {"if_match": "W/ETAG"}, 412),  # strong comparison
        ("GET", {"if_match": "not a tag"}, 412),
        ("GET", {"if_modified_since": LM}, 304),
        ("GET", {"if_modified_since": LATER}, 304),
        ("GET", {"if_modified_since": EARLIER}, 200),
        ("GET", {"if_modified_since": "Tuesday, 14-Nov-23 22:13:20 GMT"}, 304),  # RFC 850
        ("GET", {"if_modified_since": "Tue Nov 14 22:13:20 2023"}, 304),  # asctime
        ("GET", {"if_modified_since": "yesterday"}, 200),  # invalid: ignored
        ("POST", {"if_modified_since": LM}, 200),  # only GET and HEAD
        ("GET", {"if_unmodified_since": EARLIER}, 412),
        ("GET", {"if_unmodified_since": LM}, 200),
        ("PUT", {"if_unmodified_since": EARLIER}, 412),
        ("GET", {"if_unmodified_since": "nonsense"}, 200),
        # The order: If-Match before If-None-Match, If-Match hides If-Unmodified-Since,
        # If-None-Match hides If-Modified-Since.
        ("GET", {"if_match": '"other"', "if_none_match": "ETAG"}, 412),
        ("GET", {"if_match": "ETAG", "if_unmodified_since": EARLIER}, 200),
        ("GET", {"if_match": "ETAG", "if_none_match": "ETAG"}, 304),
        ("GET", {"if_none_match": '"other"', "if_modified_since": LM}, 200),
        ("GET", {"if_unmodified_since": EARLIER, "if_none_match": "ETAG"}, 412),
    ],
)
async def test_conditional_requests_in_rfc_9110_order(
    path: Path, method: str, headers: dict[str, str], status: int
) -> None:
    given = {k: v.replace("ETAG", etag_of(path)) for k, v in headers.items()}
    resp = await get(file_app(path), method, **given)
    assert resp.status == status
    if status == 200:
        assert resp.body == (b"" if method == "HEAD" else DATA[:SIZE])
    else:
        assert resp.body == b""


async def test_304_keeps_validators_cache_control_and_vary_and_has_no_body(path: Path) -> None:
    resp = await get(file_app(path, filename="n.txt"), if_none_match=etag_of(path))
    head = resp.raw.decode().split("\r\n")
    assert head[0] == "HTTP/1.1 304 Not Modified"
    names = sorted(line.split(":")[0] for line in head[1:] if line)
    assert names == ["cache-control", "date", "etag", "last-modified", "vary"]
    assert resp.raw.endswith(b"\r\n\r\n")


async def test_412_has_an_empty_body_and_no_representation_fields(path: Path) -> None:
    resp = await get(file_app(path), if_match='"nope"')
    assert resp.status == 412 and resp.headers["content-length"] == "0"
    assert "content-type" not in resp.headers and "etag" not in resp.headers


# -- ranges (RFC 9110 §14) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "status", "content_range", "start", "end"),
    [
        ("bytes=0-9", 206, "bytes 0-9/1000", 0, 10),
        ("bytes=990-", 206, "bytes 990-999/1000", 990, 1000),
        ("bytes=-10", 206, "bytes 990-999/1000", 990, 1000),
        ("bytes=-5000", 206, "bytes 0-999/1000", 0, 1000),
        ("bytes=995-2000", 206, "bytes 995-999/1000", 995, 1000),
        ("BYTES = 5-5", 206, "bytes 5-5/1000", 5, 6),
        ("bytes=0-3, 2-9", 206, "bytes 0-9/1000", 0, 10),  # overlapping: coalesced
        ("bytes=5-9,0-4", 206, "bytes 0-9/1000", 0, 10),  # adjacent, out of order: one part
        ("bytes=1000-, 2000-3000", 416, "bytes */1000", 0, 0),
        ("bytes=-0", 416, "bytes */1000", 0, 0),
        ("bytes=5-1", 200, None, 0, 1000),  # invalid: ignored
        ("items=0-1", 200, None, 0, 1000),  # another unit: ignored
        ("bytes=", 200, None, 0, 1000),
        ("bytes=a-b", 200, None, 0, 1000),
        ("bytes=" + ",".join(f"{i * 10}-{i * 10}" for i in range(17)), 200, None, 0, 1000),
    ],
)
async def test_single_ranges_and_the_ones_ignored(
    path: Path, value: str, status: int, content_range: str | None, start: int, end: int
) -> None:
    resp = await get(file_app(path), range=value)
    assert resp.status == status
    assert resp.headers.get("content-range") == content_range
    assert resp.body == DATA[start:end]
    assert resp.headers["content-length"] == str(end - start)


async def test_range_applies_only_to_get(path: Path) -> None:
    head = await get(file_app(path), "HEAD", range="bytes=0-9")
    assert head.status == 200 and head.headers["content-length"] == "1000"
    post = await get(file_app(path), "POST", range="bytes=0-9")
    assert post.status == 200 and post.body == DATA[:SIZE]


def parts_of(resp: TestResponse) -> list[tuple[str, str, bytes]]:
    kind = resp.headers["content-type"]
    assert kind.startswith("multipart/byteranges; boundary=")
    message = email.parser.BytesParser().parsebytes(
        b"content-type: " + kind.encode() + b"\r\n\r\n" + resp.body
    )
    out = []
    for part in message.get_payload():
        payload = part.get_payload(decode=True)
        out.append((part["content-type"], part["content-range"], payload))
    return out


async def test_several_ranges_get_multipart_byteranges(path: Path) -> None:
    resp = await get(file_app(path), range="bytes=900-, 0-0, 10-19, 5000-6000")
    assert resp.status == 206
    assert "content-range" not in resp.headers
    assert int(resp.headers["content-length"]) == len(resp.body)
    boundary = resp.headers["content-type"].split("boundary=")[1]
    assert resp.body.startswith(f"--{boundary}\r\n".encode())
    assert resp.body.endswith(f"\r\n--{boundary}--\r\n".encode())
    assert (
        parts_of(resp)
        == [  # ascending, the unsatisfiable one left out
            ("text/plain; charset=utf-8", "bytes 0-0/1000", DATA[0:1]),
            ("text/plain; charset=utf-8", "bytes 10-19/1000", DATA[10:20]),
            ("text/plain; charset=utf-8", "bytes 900-999/1000", DATA[900:1000]),
        ]
    )


@pytest.mark.parametrize(
    ("if_range", "status"),
    [
        ("ETAG", 206),
        ('"stale-etag"', 200),  # the representation changed: the whole file
        ("W/ETAG", 200),  # If-Range needs a strong match
        (LM, 206),  # an old file's Last-Modified is a strong validator
        (EARLIER, 200),
        (LATER, 200),  # a date matches only when equal
        ("garbage", 200),
    ],
)
async def test_if_range_decides_whether_the_range_applies(
    path: Path, if_range: str, status: int
) -> None:
    resp = await get(
        file_app(path), range="bytes=0-9", if_range=if_range.replace("ETAG", etag_of(path))
    )
    assert resp.status == status
    assert resp.body == (DATA[:10] if status == 206 else DATA[:SIZE])


def test_parse_range_table() -> None:
    assert parse_range("bytes=0-99, -100, 50-149", 1000) == [(0, 150), (900, 1000)]
    assert parse_range("bytes=0-0,,2-2", 10) == [(0, 1), (2, 3)]
    assert parse_range("bytes=9-", 10) == [(9, 10)]
    assert parse_range("bytes=10-", 10) == []
    assert parse_range("bytes=-", 10) is None
    assert parse_range("bytes=1-2-3", 10) is None
    assert parse_range("bytes=" + "1" * 19 + "-", 10) is None  # absurd numbers: invalid
    assert parse_range("bytes=0-" + "9" * 18, 10) == [(0, 10)]


def test_http_dates_in_all_three_formats_and_nothing_else() -> None:
    assert parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT") == 784111777
    assert parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT") == 784111777
    assert parse_http_date("Sun Nov  6 08:49:37 1994") == 784111777
    for bad in ("Sun, 06 Nov 1994 08:49:37 +0100", "Sun, 06 Nov 1994 08:49:37 GMT, x", "", "0"):
        assert parse_http_date(bad) is None, bad
    assert http_date(784111777) == "Sun, 06 Nov 1994 08:49:37 GMT"


# -- descriptors --------------------------------------------------------------------------------


@pytest.mark.parametrize("parser", ["h11"], indirect=True)  # (no parser difference to see)
async def test_head_and_304_leak_no_descriptor(path: Path) -> None:
    client = AsyncTestClient(file_app(path))
    before = len(os.listdir("/proc/self/fd"))
    tag = etag_of(path).encode()
    for i in range(1000):
        extra = b"If-None-Match: " + tag + b"\r\n" if i % 2 else b""
        method = b"GET" if i % 2 else b"HEAD"
        out = await client.raw(method + b" / HTTP/1.1\r\nHost: x\r\n" + extra + b"\r\n")
        assert out.startswith(b"HTTP/1.1 304" if i % 2 else b"HTTP/1.1 200")
        assert fds_on(path) == 0  # not even opened
    assert len(os.listdir("/proc/self/fd")) == before


# -- real sockets: sendfile where the transport allows ----------------------------------------


@pytest.fixture
def sendfile_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The counts asked of asyncio's ``loop.sendfile``."""
    calls: list[int] = []
    original = asyncio.BaseEventLoop.sendfile

    async def counting(
        self: Any, transport: Any, file: Any, offset: int, count: Any, **kw: Any
    ) -> int:
        calls.append(count)
        return await original(self, transport, file, offset, count, **kw)

    monkeypatch.setattr(asyncio.BaseEventLoop, "sendfile", counting)
    return calls


@pytest.fixture
def big(tmp_path: Path) -> Iterator[tuple[Path, bytes]]:
    data = os.urandom(3 * 1024 * 1024 + 17)
    p = tmp_path / "big.bin"
    p.write_bytes(data)
    os.utime(p, (MTIME, MTIME))
    yield p, data


async def fetch(port: int, request: bytes) -> bytes:
    async with servers.connected(port) as client:
        await client.send(request)
        return await client.read_all()


async def test_big_file_over_a_socket_is_exact_with_sendfile_on_asyncio(
    serving: Any, runtime: Runtime, big: tuple[Path, bytes], sendfile_calls: list[int]
) -> None:
    p, data = big
    async with serving(file_app(p)) as server:
        raw = await fetch(
            server.port,
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"  # two on one connection: framing holds
            b"GET / HTTP/1.1\r\nHost: x\r\nRange: bytes=1-2, 2000000-\r\nConnection: close\r\n\r\n",
        )
    first, second = parse_responses(raw, ["GET", "GET"])
    assert first.status == 200 and first.body == data
    assert second.status == 206
    assert [part[2] for part in parts_of(second)] == [data[1:3], data[2000000:]]
    if runtime == "asyncio":
        # Zero-copy, in bounded pieces (256 KiB): 13 for the whole file, 5 for the ranges.
        assert len(sendfile_calls) == 13 + 1 + 5 and max(sendfile_calls) == 256 * 1024
    else:
        assert sendfile_calls == []  # uvloop has no loop.sendfile, trio none: read in pieces
    assert fds_on(p) == 0


async def test_a_file_shrinking_mid_send_closes_the_connection_on_a_socket(
    serving: Any, big: tuple[Path, bytes]
) -> None:
    p, data = big
    async with serving(file_app(p)) as server, servers.connected(server.port, rcvbuf=4096) as c:
        await c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        got = await c.read_until(b"\r\n\r\n")
        assert b"content-length: 3145745" in got
        os.truncate(p, 1024 * 1024)  # the server is blocked on our full window meanwhile
        body = await c.read_all()
    assert len(body) < len(data) - 1024  # cut short, then closed (read_all saw the end)
    assert data.startswith(body[:1024])
    with anyio.fail_after(2):
        while fds_on(p):
            await anyio.sleep(0.01)


async def test_a_client_leaving_mid_download_closes_the_file(
    serving: Any, big: tuple[Path, bytes]
) -> None:
    p, _ = big
    async with serving(file_app(p)) as server:
        async with servers.connected(server.port, rcvbuf=4096) as c:
            await c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            await c.read_until(b"\r\n\r\n")
            await c.reset()
        with anyio.fail_after(5):
            while fds_on(p):
                await anyio.sleep(0.01)


async def test_tls_reads_the_file_in_pieces(
    serving: Any,
    big: tuple[Path, bytes],
    cert: Cert,  # noqa: F811 (test_tls_uds's fixture)
    sendfile_calls: list[int],
) -> None:
    p, data = big
    server_context = cert.server_context()
    async with (
        serving(file_app(p), ssl=server_context) as server,
        tls_connected(server.port, cert) as c,
    ):
        await c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, body = await c.response()
        await c.send(b"GET / HTTP/1.1\r\nHost: x\r\nRange: bytes=-2\r\n\r\n")
        status2, _, body2 = await c.response()
    assert (status, status2) == (200, 206)
    assert body == data and body2 == data[-2:]
    assert sendfile_calls == []  # the bytes must pass through the TLS layer
    assert fds_on(p) == 0


async def test_a_unix_socket_gets_sendfile_on_asyncio(
    serving: Any,
    runtime: Runtime,
    big: tuple[Path, bytes],
    sock_path: str,  # noqa: F811 (test_tls_uds's fixture)
    sendfile_calls: list[int],
) -> None:
    p, data = big
    async with serving(file_app(p), uds=sock_path), servers.connected(uds=sock_path) as c:
        await c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, body = await c.response()
    assert status == 200 and body == data
    assert len(sendfile_calls) == (13 if runtime == "asyncio" else 0)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_curl_resumes_a_download(
    serving: Any, big: tuple[Path, bytes], tmp_path: Path
) -> None:
    p, data = big
    out = tmp_path / "download"
    out.write_bytes(data[:1_000_000])  # an interrupted download
    async with serving(file_app(p)) as server:
        url = f"http://127.0.0.1:{server.port}/"
        done = await anyio.to_thread.run_sync(
            lambda: subprocess.run(
                ["curl", "-sS", "-C", "-", "-o", str(out), "-D", "-", url],
                capture_output=True,
                timeout=20,
            )
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(b"HTTP/1.1 206 Partial Content\r\n")
    assert b"content-range: bytes 1000000-3145744/3145745" in done.stdout
    assert out.read_bytes() == data


# -- the ASGI adapter -------------------------------------------------------------------------


async def asgi_get(
    app: Any, method: str = "GET", headers: list[tuple[bytes, bytes]] | None = None
) -> tuple[int, dict[bytes, bytes], bytes]:
    sent = await asgi_messages(app, method, "/", headers or [])
    start, *bodies = sent
    assert bodies[-1]["more_body"] is False
    return start["status"], dict(start["headers"]), b"".join(m["body"] for m in bodies)


async def test_the_asgi_adapter_sends_files_ranges_and_304(path: Path) -> None:
    app = to_asgi(file_app(path))
    status, headers, body = await asgi_get(app)
    assert (status, headers[b"content-length"], body) == (200, b"1000", DATA[:SIZE])
    assert headers[b"etag"] == etag_of(path).encode()
    status, headers, body = await asgi_get(app, headers=[(b"range", b"bytes=-3")])
    assert (status, headers[b"content-range"], body) == (206, b"bytes 997-999/1000", DATA[997:SIZE])
    tag = etag_of(path).encode()
    status, headers, body = await asgi_get(app, headers=[(b"if-none-match", tag)])
    assert (status, body) == (304, b"") and b"content-length" not in headers
    status, headers, body = await asgi_get(app, "HEAD")
    assert (status, headers[b"content-length"], body) == (200, b"1000", b"")
    status, headers, body = await asgi_get(
        app, headers=[(b"range", b"bytes=0-1"), (b"if-range", b'"stale"')]
    )
    assert (status, body) == (200, DATA[:SIZE])
    assert fds_on(path) == 0


def test_the_file_body_reads_in_bounded_pieces(path: Path) -> None:
    body = FileBody(str(path), None, [(0, SIZE)], 64)

    async def pieces() -> list[bytes]:
        return [piece async for piece in body]

    got = anyio.run(pieces)
    assert b"".join(got) == DATA[:SIZE] and max(map(len, got)) == 64
    assert time.time() > 0


async def test_a_file_shrinking_under_the_asgi_adapter_is_logged_once_and_never_finished(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.set_file(path, chunk_size=100)
        body = w.response.body
        assert isinstance(body, FileBody)

        async def shrinking() -> Any:
            async for piece in body:
                yield piece
                os.truncate(path, 250)

        w.set_body(shrinking(), length=SIZE)
        return await w.send()

    sent: list[Any] = []
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET"}
    scope |= {"scheme": "http", "path": "/", "raw_path": b"/", "query_string": b""}
    scope |= {"root_path": "", "headers": [(b"host", b"x")], "client": None, "server": None}

    async def receive() -> Any:
        await anyio.sleep_forever()

    async def send(message: Any) -> None:
        sent.append(message)

    with anyio.fail_after(5):
        await to_asgi(endpoint)(scope, receive, send)
    assert sent[0]["status"] == 200
    assert b"".join(m.get("body", b"") for m in sent[1:]) == DATA[:200]
    assert all(m.get("more_body") for m in sent[1:])  # never ended: the server must close
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "shrank while being sent" in errors[0].getMessage()
    assert fds_on(path) == 0
