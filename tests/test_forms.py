"""Forms and uploads on the wire: ``await req.form()`` (urlencoded and multipart/form-data),
``req.multipart()`` streaming, every limit's refusal, temporary files removed however the
request ends, the missing ``forms`` extra, and the ASGI adapter."""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import json
import logging
import os
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import anyio
import pytest
from servers import connected

from tophat import Glitch, Request, ResponseWriter, ResponseWritten, ServerOpts
from tophat.asgi import Message, to_asgi
from tophat.http.forms import UploadFile, safe_filename
from tophat.testing import AsyncTestClient, TestResponse

B = "----tophatBoundary7MA4YWxk"
MULTIPART = f"multipart/form-data; boundary={B}"


def part(name: str, data: bytes, filename: str | None = None, *extra: str) -> bytes:
    """One multipart part, by hand (RFC 7578 §4.2)."""
    disposition = f'form-data; name="{name}"'
    if filename is not None:
        disposition += f'; filename="{filename}"'
    head = [f"Content-Disposition: {disposition}", *extra]
    return f"--{B}\r\n".encode() + "\r\n".join(head).encode() + b"\r\n\r\n" + data + b"\r\n"


def body(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{B}--\r\n".encode()


def request(content: bytes, content_type: str = MULTIPART, path: str = "/") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nhost: t\r\ncontent-type: {content_type}\r\n"
        f"content-length: {len(content)}\r\n\r\n"
    ).encode() + content


def describe(value: str | UploadFile) -> Any:
    if isinstance(value, str):
        return value
    data = value.read()
    return {
        "filename": value.filename,
        "content_type": value.content_type,
        "size": value.size,
        "sha256": hashlib.sha256(data).hexdigest(),
        "on_disk": value.on_disk is not None,
    }


SEEN: list[str] = []  # temporary files the handlers saw


async def echo(req: Request, w: ResponseWriter) -> ResponseWritten:
    """The form as JSON: every (name, value) pair, files described."""
    form = await req.form(spool_threshold=1024)
    for value in form.values():
        if isinstance(value, UploadFile) and value.on_disk:
            assert os.path.exists(value.on_disk)
            SEEN.append(value.on_disk)
    if req.path == "/raise":
        raise RuntimeError("the handler fails after reading the form")
    w.set_json([[name, describe(value)] for name, value in form.multi_items()])
    return await w.send()


async def post(content: bytes, content_type: str = MULTIPART, **kw: Any) -> TestResponse:
    client = AsyncTestClient(echo)
    return await client.post("/", content=content, headers={"content-type": content_type}, **kw)


def cross_check(content: bytes) -> list[list[Any]]:
    """What the stdlib email package makes of the same multipart body."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {MULTIPART}\r\n\r\n".encode() + content
    )
    out: list[list[Any]] = []
    for item in message.iter_parts():
        name = item.get_param("name", header="content-disposition")
        data = item.get_payload(decode=True)
        assert isinstance(data, bytes)
        if item.get_filename() is None:
            out.append([name, data.decode()])
        else:
            out.append([name, hashlib.sha256(data).hexdigest()])
    return out


@pytest.fixture(autouse=True)
def _no_leftover_files() -> Any:
    SEEN.clear()
    yield
    assert [p for p in SEEN if os.path.exists(p)] == []


# -- urlencoded --------------------------------------------------------------------------------


async def test_urlencoded_fields_repeats_blanks_and_utf8() -> None:
    resp = await post(b"a=1&b=&a=2&name=J%C3%BCrgen+K&e", "application/x-www-form-urlencoded")
    assert resp.status == 200
    assert resp.json() == [["a", "1"], ["b", ""], ["a", "2"], ["name", "Jürgen K"], ["e", ""]]


async def test_form_mapping_get_getall_iteration() -> None:
    async def app(req: Request, w: ResponseWriter) -> ResponseWritten:
        form = await req.form()
        assert form is await req.form()  # read once, kept
        w.set_json(
            {
                "get": form.get("a"),
                "getall": form.getall("a"),
                "get_all": form.get_all("a"),
                "missing": form.get("zz", "default"),
                "names": list(form),
                "len": len(form),
            }
        )
        return await w.send()

    resp = await AsyncTestClient(app).post("/", data={"a": ["1", "2"], "b": "x"})
    assert resp.json() == {
        "get": "1",
        "getall": ["1", "2"],
        "get_all": ["1", "2"],
        "missing": "default",
        "names": ["a", "b"],
        "len": 2,
    }


@pytest.mark.parametrize(
    ("content", "limits", "status", "reason"),
    [
        (b"a=1&b=2&c=3", {"max_parts": 2}, 413, "more than max_parts (2) fields"),
        (b"a=12345", {"max_field_size": 4}, 413, "field 'a' is larger than max_field_size"),
        (b"a=1&b=2", {"max_total": 5}, 413, "the form is larger than max_total (5 bytes)"),
        (b"a=%FF", {}, 400, "the form is not valid UTF-8"),
        (b"a=\xff", {}, 400, "the form is not valid UTF-8"),
    ],
)
async def test_urlencoded_limits_are_refused(
    content: bytes, limits: dict[str, int], status: int, reason: str
) -> None:
    async def app(req: Request, w: ResponseWriter) -> ResponseWritten:
        await req.form(**limits)
        raise AssertionError("refused before")

    resp = await AsyncTestClient(app).post(
        "/", content=content, headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert (resp.status, reason in resp.text) == (status, True), resp.text


async def test_not_a_form_is_415_with_accept_post() -> None:
    resp = await post(b"{}", "application/json")
    assert resp.status == 415
    assert resp.headers.get("accept-post") == (
        "application/x-www-form-urlencoded, multipart/form-data"
    )


# -- multipart ---------------------------------------------------------------------------------


async def test_multipart_fields_and_files_match_the_email_package() -> None:
    upload = bytes(range(256)) * 3 + b"\r\n--not-the-boundary\r\n"
    content = body(
        part("title", "Grüße".encode()),
        part("doc", upload, "report.bin", "Content-Type: application/octet-stream"),
        part("title", b""),
        part("empty", b"", ""),
    )
    resp = await post(content)
    assert resp.status == 200, resp.text
    got = resp.json()
    assert got == [
        ["title", "Grüße"],
        [
            "doc",
            {
                "filename": "report.bin",
                "content_type": "application/octet-stream",
                "size": len(upload),
                "sha256": hashlib.sha256(upload).hexdigest(),
                "on_disk": False,
            },
        ],
        ["title", ""],
        [
            "empty",
            {
                "filename": "",
                "content_type": None,
                "size": 0,
                "sha256": hashlib.sha256(b"").hexdigest(),
                "on_disk": False,
            },
        ],
    ]
    simple = [[n, v if isinstance(v, str) else v["sha256"]] for n, v in got]
    assert simple == cross_check(content)


async def test_multipart_body_fed_byte_by_byte() -> None:
    content = body(part("a", b"1"), part("f", b"x" * 3000, "f.txt"))
    out = await AsyncTestClient(echo).raw([bytes([b]) for b in request(content)])
    assert out.startswith(b"HTTP/1.1 200 "), out[:200]
    assert b'"size":3000' in out.replace(b" ", b"") and b'"on_disk":true' in out.replace(b" ", b"")
    assert len(SEEN) == 1


async def test_upload_past_the_spool_threshold_is_on_disk_then_removed() -> None:
    data = os.urandom(300_000)
    resp = await post(body(part("f", data, "big.bin")))
    assert resp.status == 200
    assert resp.json()[0][1]["on_disk"] is True
    assert resp.json()[0][1]["sha256"] == hashlib.sha256(data).hexdigest()
    assert len(SEEN) == 1  # existed during the handler; the fixture checks it is gone now


async def test_temp_file_removed_when_the_handler_raises(caplog: pytest.LogCaptureFixture) -> None:
    client = AsyncTestClient(echo)
    resp = await client.post(
        "/raise", content=body(part("f", b"y" * 5000, "a")), headers={"content-type": MULTIPART}
    )
    assert resp.status == 500
    assert len(SEEN) == 1 and not os.path.exists(SEEN[0])


async def test_temp_file_removed_when_the_body_is_cut_short() -> None:
    created: list[str] = []

    async def app(req: Request, w: ResponseWriter) -> ResponseWritten:
        real = UploadFile.write

        def spy(self: UploadFile, data: bytes) -> None:
            real(self, data)
            if self.on_disk and self.on_disk not in created:
                created.append(self.on_disk)

        UploadFile.write = spy  # type: ignore[method-assign]
        try:
            await req.form(spool_threshold=100)
        finally:
            UploadFile.write = real  # type: ignore[method-assign]
        raise AssertionError("the body was cut")

    whole = request(body(part("f", b"z" * 20_000, "a")))
    out = await AsyncTestClient(app).raw(whole[:-5000])  # then the client half-closes
    assert out.startswith(b"HTTP/1.1 400 "), out[:100]
    assert len(created) == 1 and not os.path.exists(created[0])


async def test_temp_file_removed_when_the_client_leaves(serving: Any) -> None:
    seen = anyio.Event()
    paths: list[str] = []

    async def app(req: Request, w: ResponseWriter) -> ResponseWritten:
        form = await req.form(spool_threshold=100)
        upload = form["f"]
        assert isinstance(upload, UploadFile) and upload.on_disk
        paths.append(upload.on_disk)
        seen.set()
        await anyio.sleep(60)  # cancelled disconnect_grace after the client left
        raise AssertionError("not reached")

    async with serving(app, disconnect_grace=0.1) as server, connected(server.port) as c:
        await c.send(request(body(part("f", b"q" * 10_000, "a"))))
        with anyio.fail_after(5):
            await seen.wait()
        assert os.path.exists(paths[0])
        await c.close()
        with anyio.fail_after(5):
            while os.path.exists(paths[0]):
                await anyio.sleep(0.02)


@pytest.mark.parametrize(
    ("parts", "limits", "status", "reason"),
    [
        ([part(f"p{i}", b"x") for i in range(4)], {"max_parts": 3}, 413, "max_parts (3)"),
        ([part("a", b"x" * 11)], {"max_field_size": 10}, 413, "field 'a' is larger than"),
        ([part("f", b"x" * 11, "f")], {"max_file_size": 10}, 413, "file 'f' is larger than"),
        ([part("a", b"x" * 600)], {"max_total": 500}, 413, "the form is larger than max_total"),
        (
            [part("a", b"x", None, *[f"X-H{i}: {'v' * 50}" for i in range(10)])],
            {"max_part_header_size": 300},
            413,
            "a part's header is larger than max_part_header_size",
        ),
        (
            [part("a", b"x", None, "X-Long: " + "v" * 2000)],
            {"max_part_header_size": 300},
            413,
            "a part's header is larger than max_part_header_size",
        ),
    ],
)
async def test_multipart_limits_are_refused_with_a_reason(
    parts: list[bytes], limits: dict[str, int], status: int, reason: str
) -> None:
    async def app(req: Request, w: ResponseWriter) -> ResponseWritten:
        await req.form(**limits)
        raise AssertionError("refused before")

    out = await AsyncTestClient(app).raw(request(body(*parts)))
    head, _, text = out.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode()), out[:200]
    assert reason.encode() in text, text


@pytest.mark.parametrize(
    ("content", "content_type", "reason"),
    [
        (part("a", b"1"), MULTIPART, "ends before its closing boundary"),
        (b"garbage" + body(part("a", b"1")), MULTIPART, "malformed multipart body"),
        (body(part("a", b"1")), "multipart/form-data", "valid boundary"),
        (body(part("a", b"1")), "multipart/form-data; boundary=" + "b" * 71, "valid boundary"),
        (
            body(f'--{B}\r\nContent-Disposition: attachment; name="a"\r\n\r\n1\r\n'.encode()),
            MULTIPART,
            "Content-Disposition: form-data; name=",
        ),
        (body(part("a", b"\xff")), MULTIPART, "field 'a' is not valid utf-8"),
        (
            body(part("a", b"x", "f", "Content-Transfer-Encoding: base64")),
            MULTIPART,
            "Content-Transfer-Encoding 'base64' is not supported",
        ),
    ],
)
async def test_malformed_multipart_is_400(content: bytes, content_type: str, reason: str) -> None:
    out = await AsyncTestClient(echo).raw(request(content, content_type))
    head, _, text = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), out[:200]
    assert reason.encode() in text, text


async def test_ten_thousand_parts_are_refused_without_memory_growth() -> None:
    peaks: list[int] = []

    async def app(req: Request, w: ResponseWriter) -> ResponseWritten:
        # Measured in the handler: the test client's in-memory stream holds the whole body.
        tracemalloc.start()
        try:
            await req.form()
        finally:
            peaks.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
        raise AssertionError("refused before")

    for count in (10_000, 50_000):
        content = body(*[part(f"field{i}", b"v") for i in range(count)])
        pieces = [content[i : i + 65536] for i in range(0, len(content), 65536)]
        head = request(b"").replace(b"content-length: 0", b"content-length: %d" % len(content))
        out = await AsyncTestClient(app, ServerOpts(max_body_size=None)).raw([head, *pieces])
        assert out.startswith(b"HTTP/1.1 413 "), out[:200]
        assert b"more than max_parts (1000) parts" in out
    # What the server holds is the 1000 fields kept and one read's worth of parser events
    # (~0.6 MB, measured), whether the body has 10 000 parts (850 kB) or 50 000 (4.4 MB).
    assert peaks[0] < 1_000_000, peaks
    assert peaks[1] < peaks[0] * 1.3, peaks


# -- streaming parts ---------------------------------------------------------------------------


async def test_streaming_iterator_yields_parts_and_chunks() -> None:
    data = os.urandom(200_000)

    async def app(req: Request, w: ResponseWriter) -> ResponseWritten:
        seen: list[Any] = []
        async for p in req.multipart():
            if p.filename is None:
                seen.append([p.name, (await p.read()).decode()])
            elif p.name == "skipped":
                seen.append([p.name, "skipped"])  # not read: skipped when moving on
            else:
                digest, chunks = hashlib.sha256(), 0
                async for chunk in p:
                    digest.update(chunk)
                    chunks += 1
                seen.append([p.name, p.filename, p.content_type, p.size, digest.hexdigest()])
                seen.append(["several chunks", chunks > 1])
        w.set_json(seen)
        return await w.send()

    content = body(
        part("a", b"1"),
        part("skipped", b"s" * 100_000, "s.bin"),
        part("f", data, "f.bin", "Content-Type: image/png"),
        part("b", b"2"),
    )
    pieces = [content[i : i + 8192] for i in range(0, len(content), 8192)]
    head = request(b"").replace(b"content-length: 0", b"content-length: %d" % len(content))
    out = await AsyncTestClient(app).raw([head, *pieces])
    assert out.startswith(b"HTTP/1.1 200 "), out[:300]
    assert json.loads(out.partition(b"\r\n\r\n")[2]) == [
        ["a", "1"],
        ["skipped", "skipped"],
        ["f", "f.bin", "image/png", len(data), hashlib.sha256(data).hexdigest()],
        ["several chunks", True],
        ["b", "2"],
    ]


async def test_streaming_iterator_applies_the_limits() -> None:
    async def app(req: Request, w: ResponseWriter) -> ResponseWritten:
        async for p in req.multipart(max_file_size=10):
            async for _ in p:
                pass
        raise AssertionError("refused before")

    out = await AsyncTestClient(app).raw(request(body(part("f", b"x" * 100, "f"))))
    assert out.startswith(b"HTTP/1.1 413 ") and b"max_file_size (10 bytes)" in out


async def test_streaming_iterator_refuses_another_content_type() -> None:
    async def app(req: Request, w: ResponseWriter) -> ResponseWritten:
        async for _ in req.multipart():
            pass
        raise AssertionError("refused before")

    out = await AsyncTestClient(app).raw(request(b"a=1", "application/x-www-form-urlencoded"))
    assert out.startswith(b"HTTP/1.1 415 ")


# -- the uploaded file -------------------------------------------------------------------------


@pytest.mark.parametrize("size", [10, 5000])  # in memory, on disk
async def test_upload_file_read_seek_save(size: int, tmp_path: Path) -> None:
    data = os.urandom(size)

    async def app(req: Request, w: ResponseWriter) -> ResponseWritten:
        upload = (await req.form(spool_threshold=1000))["f"]
        assert isinstance(upload, UploadFile)
        assert upload.read(3) == data[:3]
        assert upload.seek(0) == 0
        assert upload.read() == data
        upload.save(tmp_path / "saved")
        assert upload.read() == b""  # the position is kept
        w.set_text("ok")
        return await w.send()

    out = await AsyncTestClient(app).raw(request(body(part("f", data, "x"))))
    assert out.startswith(b"HTTP/1.1 200 ")
    assert (tmp_path / "saved").read_bytes() == data


def test_safe_filename() -> None:
    assert safe_filename("../../etc/passwd") == "passwd"
    assert safe_filename("C:\\Users\\me\\cv.pdf") == "cv.pdf"
    assert safe_filename(".bashrc") == "bashrc"
    assert safe_filename("..") == "upload"
    assert safe_filename("a\x00b\nc?.txt") == "abc_.txt"
    assert safe_filename("e\u0301.txt") == "\u00e9.txt"  # NFC
    assert len(safe_filename("é" * 300).encode()) <= 255


# -- the forms extra ---------------------------------------------------------------------------


async def test_missing_extra_is_one_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("python_multipart", "python_multipart.multipart", "python_multipart.exceptions"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails
    with caplog.at_level(logging.ERROR, "tophat.error"):
        resp = await post(body(part("a", b"1")))
    assert resp.status == 500
    assert "pip install 'tophat[forms]'" in caplog.text
    # Urlencoded forms need no extra.
    ok = await post(b"a=1", "application/x-www-form-urlencoded")
    assert ok.json() == [["a", "1"]]


# -- ASGI ---------------------------------------------------------------------------------------


async def test_forms_through_the_asgi_adapter() -> None:
    data = os.urandom(5000)
    content = body(part("a", b"1"), part("f", data, "f.bin"))
    pieces = [content[i : i + 1000] for i in range(0, len(content), 1000)]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"t"), (b"content-type", MULTIPART.encode())],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 80),
    }
    sent: list[Message] = []

    async def receive() -> Message:
        piece = pieces.pop(0)
        return {"type": "http.request", "body": piece, "more_body": bool(pieces)}

    async def send(message: Message) -> None:
        sent.append(message)

    with anyio.fail_after(5):
        await to_asgi(echo)(scope, receive, send)
    assert sent[0]["status"] == 200
    got = json.loads(b"".join(m.get("body", b"") for m in sent[1:]))
    assert got[1][1]["sha256"] == hashlib.sha256(data).hexdigest() and got[1][1]["on_disk"]
    assert len(SEEN) == 1 and not os.path.exists(SEEN[0])


async def test_glitch_from_form_keeps_headers_set_before() -> None:
    async def app(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.insert_header("x-kept", "1")
        try:
            await req.form(max_parts=1)
        except Glitch as glitch:
            assert glitch.status == 413
            raise
        raise AssertionError("refused before")

    out = await AsyncTestClient(app).raw(request(body(part("a", b"1"), part("b", b"2"))))
    assert out.startswith(b"HTTP/1.1 413 ") and b"x-kept: 1" in out
