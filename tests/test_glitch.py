"""Glitch on the wire: an exception that becomes the response, and every other failure mode.

Raw request bytes in through ``tophat.testing.AsyncTestClient``; exact response bytes (Date value
masked) or the parsed response out; logs checked with ``caplog``.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import AsyncIterator, Callable

import pytest

from tophat import Endpoint, Glitch, Request, ResponseWriter, ResponseWritten, ServerOpts
from tophat.glitch import awaiting, call, catching, ok_or, reason_phrase
from tophat.testing import AsyncTestClient, parse_responses

GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
FOLLOW_UP = b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n"
VERBOSE = ServerOpts(verbose_glitch=True)

_DATE_LINE = re.compile(rb"\r\ndate: [^\r\n]*\r\n", re.IGNORECASE)


def masked(out: bytes) -> bytes:
    """``out`` with every Date header value replaced by ``<DATE>``."""
    return _DATE_LINE.sub(b"\r\ndate: <DATE>\r\n", out)


def glitch_response(status: int, body: bytes, extra: bytes = b"") -> bytes:
    """The bytes of a Glitch response with no headers from the handler (Date masked)."""
    return (
        b"HTTP/1.1 %d %s\r\n%scontent-type: text/plain; charset=utf-8\r\ndate: <DATE>\r\n"
        b"content-length: %d\r\n\r\n%s"
        % (status, reason_phrase(status).encode(), extra, len(body), body)
    )


def raising(make: Callable[[], BaseException]) -> Endpoint:
    async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
        raise make()

    return endpoint


def error_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "tophat.error"]


# -- a Glitch is its response -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("glitch", "status", "body"),
    [
        (lambda: Glitch(404), 404, b"Not Found"),
        (lambda: Glitch(400, "bad id"), 400, b"bad id"),
        (lambda: Glitch(503), 503, b"Service Unavailable"),
        (lambda: Glitch(), 500, b"Internal Server Error"),
        (lambda: Glitch(418, "short and stout"), 418, b"short and stout"),
        (lambda: Glitch(409, ""), 409, b""),
    ],
)
async def test_glitch_becomes_its_status_and_text_body(
    glitch: Callable[[], Glitch], status: int, body: bytes
) -> None:
    out = await AsyncTestClient(raising(glitch)).raw(GET + FOLLOW_UP)
    # A Glitch is an ordinary response: the connection stays open for the next request.
    assert masked(out) == glitch_response(status, body) * 2


async def test_glitch_keeps_headers_set_on_the_writer_and_adds_its_own() -> None:
    async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.insert_header("access-control-allow-origin", "https://app.example")
        w.insert_header("x-replaced", "by the writer")
        w.set_json({"half": "built"})  # the body and its content-type give way to the glitch's
        raise Glitch(409, "taken", headers={"retry-after": "5", "x-replaced": "by the glitch"})

    out = await AsyncTestClient(endpoint).raw(GET)
    assert masked(out) == (
        b"HTTP/1.1 409 Conflict\r\n"
        b"access-control-allow-origin: https://app.example\r\n"
        b"x-replaced: by the glitch\r\n"
        b"retry-after: 5\r\n"
        b"content-type: text/plain; charset=utf-8\r\n"
        b"date: <DATE>\r\ncontent-length: 5\r\n\r\ntaken"
    )


@pytest.mark.parametrize(
    ("raise_it", "quiet", "verbose"),
    [
        (
            lambda exc: Glitch(400, "bad id", cause=exc),
            b"bad id",
            b"bad id: ValueError: secret detail",
        ),
        (
            lambda exc: Glitch(400, cause=exc),
            b"Bad Request",
            b"Bad Request: ValueError: secret detail",
        ),
    ],
)
@pytest.mark.parametrize("verbose_glitch", [False, True])
async def test_glitch_cause_reaches_the_body_only_when_verbose(
    raise_it: Callable[[Exception], Glitch], quiet: bytes, verbose: bytes, verbose_glitch: bool
) -> None:
    async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
        raise raise_it(ValueError("secret detail"))

    out = await AsyncTestClient(endpoint, ServerOpts(verbose_glitch=verbose_glitch)).raw(GET)
    assert masked(out) == glitch_response(400, verbose if verbose_glitch else quiet)


@pytest.mark.parametrize("verbose_glitch", [False, True])
async def test_raise_from_sets_the_glitch_cause(verbose_glitch: bool) -> None:
    async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
        try:
            int("x1")
        except ValueError as exc:
            raise Glitch(422, "id must be a number") from exc
        raise AssertionError("unreachable")

    out = await AsyncTestClient(endpoint, ServerOpts(verbose_glitch=verbose_glitch)).raw(GET)
    [resp] = parse_responses(out)
    assert resp.status == 422
    cause = ": ValueError: invalid literal for int() with base 10: 'x1'"
    assert resp.text == "id must be a number" + (cause if verbose_glitch else "")


def test_glitch_refuses_a_status_outside_100_to_599() -> None:
    for bad in (0, 99, 600, 1000):
        with pytest.raises(ValueError):
            Glitch(bad)
    with pytest.raises(ValueError):
        Glitch("404")


async def test_glitch_with_an_informational_status_still_gets_a_final_response() -> None:
    # A 1xx is never a final response (RFC 9110 §15.2); raising Glitch(103) is a handler bug,
    # which the server must answer like any other bug: 500, and accept() returns normally.
    out = await AsyncTestClient(raising(lambda: Glitch(103))).raw(GET)
    [resp] = parse_responses(out)
    assert resp.status == 500


# -- convenience constructors -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("factory", "status"),
    [
        (Glitch.bad_request, 400),
        (Glitch.forbidden, 403),
        (Glitch.not_found, 404),
        (Glitch.conflict, 409),
        (Glitch.unprocessable, 422),
        (Glitch.too_many_requests, 429),
        (Glitch.internal, 500),
        (Glitch.bad_gateway, 502),
        (Glitch.service_unavailable, 503),
    ],
)
async def test_convenience_constructors_give_their_status(
    factory: Callable[..., Glitch], status: int
) -> None:
    default = await AsyncTestClient(raising(factory)).raw(GET)
    assert masked(default) == glitch_response(status, reason_phrase(status).encode())
    custom = await AsyncTestClient(raising(lambda: factory("why"))).raw(GET)
    assert masked(custom) == glitch_response(status, b"why")


async def test_method_not_allowed_sends_allow() -> None:
    # RFC 9110 §15.5.6: the origin server MUST generate an Allow header field in a 405.
    endpoint = raising(lambda: Glitch.method_not_allowed(["GET", "HEAD"]))
    out = await AsyncTestClient(endpoint).raw(GET)
    assert masked(out) == glitch_response(405, b"Method Not Allowed", b"allow: GET, HEAD\r\n")


async def test_unauthorized_requires_and_sends_a_challenge() -> None:
    # RFC 9110 §15.5.2: a 401 MUST carry WWW-Authenticate with at least one challenge.
    endpoint = raising(lambda: Glitch.unauthorized(challenge='Bearer realm="api"'))
    out = await AsyncTestClient(endpoint).raw(GET)
    challenge = b'www-authenticate: Bearer realm="api"\r\n'
    assert masked(out) == glitch_response(401, b"Unauthorized", challenge)
    with pytest.raises(TypeError):
        Glitch.unauthorized()  # type: ignore[call-arg]


# -- helpers ------------------------------------------------------------------------------------

USERS = {"ada": "Ada Lovelace", "zero": ""}


async def find_user(req: Request, w: ResponseWriter) -> ResponseWritten:
    name = ok_or(USERS.get(req.path.rsplit("/", 1)[1]), 404, "no such user")
    w.set_text(f"[{name}]")
    return await w.send()


@pytest.mark.parametrize(
    ("target", "status", "body"),
    [
        (b"/users/ada", 200, b"[Ada Lovelace]"),
        (b"/users/zero", 200, b"[]"),  # a falsy value is still a value
        (b"/users/bob", 404, b"no such user"),
    ],
)
async def test_ok_or_turns_none_into_a_glitch(target: bytes, status: int, body: bytes) -> None:
    out = await AsyncTestClient(find_user).raw(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % target)
    [resp] = parse_responses(out)
    assert (resp.status, resp.body) == (status, body)


async def parse_json(req: Request, w: ResponseWriter) -> ResponseWritten:
    raw = await req.body()
    with catching(400, "invalid JSON"):
        payload = json.loads(raw)
        if payload == "teapot":
            raise Glitch(418)
    w.set_json(payload)
    return await w.send()


def post(body: bytes) -> bytes:
    return b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


@pytest.mark.parametrize(
    ("body", "verbose_glitch", "status", "text"),
    [
        (b'{"a": 1}', False, 200, '{"a": 1}'),
        (b"{nope", False, 400, "invalid JSON"),
        (
            b"{nope",
            True,
            400,
            "invalid JSON: JSONDecodeError: Expecting property name enclosed "
            "in double quotes: line 1 column 2 (char 1)",
        ),
        # A Glitch raised inside the block passes through unchanged.
        (b'"teapot"', False, 418, "I'm a Teapot"),
    ],
)
async def test_catching_turns_errors_in_its_block_into_a_glitch(
    body: bytes, verbose_glitch: bool, status: int, text: str
) -> None:
    out = await AsyncTestClient(parse_json, ServerOpts(verbose_glitch=verbose_glitch)).raw(
        post(body)
    )
    [resp] = parse_responses(out, ["POST"])
    assert (resp.status, resp.text) == (status, text)


async def test_catching_converts_only_the_errors_it_names() -> None:
    async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
        with catching(400, "bad key", errors=KeyError):
            {}["missing"]
        return await w.send()

    async def other(req: Request, w: ResponseWriter) -> ResponseWritten:
        with catching(400, "bad key", errors=KeyError):
            raise OSError("disk on fire")
        return await w.send()

    [named] = parse_responses(await AsyncTestClient(endpoint).raw(GET))
    [unnamed] = parse_responses(await AsyncTestClient(other).raw(GET))
    assert (named.status, named.text) == (400, "bad key")
    assert (unnamed.status, unnamed.text) == (500, "Internal Server Error")


async def test_catching_works_as_a_decorator() -> None:
    @catching(422, "not a number")
    def parse(text: str) -> int:
        return int(text)

    async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.set_text(str(parse(req.query.get("n", ""))))
        return await w.send()

    out = await AsyncTestClient(endpoint).raw(
        b"GET /?n=41 HTTP/1.1\r\nHost: x\r\n\r\nGET /?n=x HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    assert [(r.status, r.text) for r in parse_responses(out)] == [
        (200, "41"),
        (422, "not a number"),
    ]


async def test_call_returns_the_value_or_raises_a_glitch() -> None:
    async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
        hex_int = functools.partial(int, base=16)
        n = call(hex_int, req.query.get("id", ""), status=400, message="id must be a number")
        w.set_text(str(n))
        return await w.send()

    out = await AsyncTestClient(endpoint).raw(
        b"GET /?id=ff HTTP/1.1\r\nHost: x\r\n\r\nGET /?id=zz HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    assert [(r.status, r.text) for r in parse_responses(out)] == [
        (200, "255"),
        (400, "id must be a number"),
    ]


async def test_call_turns_only_the_named_errors_into_the_glitch() -> None:
    """A bug (here a TypeError) is not the client's fault: with ``errors=`` it stays a 500."""

    def parse(raw: str) -> int:
        if raw == "bug":
            raise TypeError("a bug in parse")
        return int(raw)

    async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
        n = call(parse, req.query.get("id", ""), status=400, message="bad id", errors=ValueError)
        w.set_text(str(n))
        return await w.send()

    out = await AsyncTestClient(endpoint).raw(
        b"GET /?id=7 HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /?id=x HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /?id=bug HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    assert [(r.status, r.text) for r in parse_responses(out)] == [
        (200, "7"),
        (400, "bad id"),
        (500, "Internal Server Error"),
    ]


async def fetch(key: str) -> str:
    if key == "down":
        raise ConnectionRefusedError("db at 10.0.0.7:5432 refused")
    return key.upper()


async def test_awaiting_returns_the_result_or_raises_a_glitch() -> None:
    async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
        row = await awaiting(
            fetch(req.query.get("k", "")), status=503, message="database unavailable"
        )
        w.set_text(row)
        return await w.send()

    out = await AsyncTestClient(endpoint).raw(
        b"GET /?k=up HTTP/1.1\r\nHost: x\r\n\r\nGET /?k=down HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    assert [(r.status, r.text) for r in parse_responses(out)] == [
        (200, "UP"),
        (503, "database unavailable"),
    ]
    assert b"10.0.0.7" not in out


# -- logging ------------------------------------------------------------------------------------


async def test_client_error_glitch_is_not_logged_as_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG, logger="tophat"):
        await AsyncTestClient(raising(lambda: Glitch(404))).raw(GET)
    assert error_records(caplog) == []


async def test_server_error_glitch_with_a_cause_is_logged_once_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    endpoint = raising(lambda: Glitch(502, "upstream", cause=ValueError("bad gateway detail")))
    with caplog.at_level(logging.DEBUG, logger="tophat"):
        out = await AsyncTestClient(endpoint).raw(GET)
    assert masked(out) == glitch_response(502, b"upstream")
    [record] = error_records(caplog)
    assert record.exc_info is not None and isinstance(record.exc_info[1], ValueError)


# -- other exceptions ---------------------------------------------------------------------------


async def leaky(req: Request, w: ResponseWriter) -> ResponseWritten:
    w.insert_header("x-kept", "yes")
    raise KeyError("password=hunter2")


async def test_any_other_exception_is_a_500_without_internal_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG, logger="tophat"):
        out = await AsyncTestClient(leaky).raw(GET + FOLLOW_UP)
    assert b"hunter2" not in out and b"KeyError" not in out
    response = glitch_response(500, b"Internal Server Error", b"x-kept: yes\r\n")
    assert masked(out) == response * 2
    # Logged exactly once per failure, with the traceback.
    records = error_records(caplog)
    assert len(records) == 2
    for record in records:
        assert record.exc_info is not None and isinstance(record.exc_info[1], KeyError)
        assert "leaky" in record.getMessage()


async def test_endpoint_returning_without_sending_is_a_500_and_a_log_naming_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Api:
        async def forgetful(self, req: Request, w: ResponseWriter) -> ResponseWritten:
            w.set_text("never sent")
            return None  # type: ignore[return-value]

    with caplog.at_level(logging.DEBUG, logger="tophat"):
        out = await AsyncTestClient(Api().forgetful).raw(GET)
    assert masked(out) == glitch_response(500, b"Internal Server Error")
    [record] = error_records(caplog)
    assert Api.forgetful.__qualname__ in record.getMessage()


# -- failures after the response started --------------------------------------------------------


async def test_exception_mid_stream_closes_without_terminating_chunk_or_second_status(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"first"
        yield b"second"
        raise RuntimeError("generator broke")

    async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.set_body(body())
        return await w.send()

    with caplog.at_level(logging.DEBUG, logger="tophat"):
        out = await AsyncTestClient(endpoint).raw(GET + FOLLOW_UP)
    assert masked(out) == (
        b"HTTP/1.1 200 OK\r\ndate: <DATE>\r\ntransfer-encoding: chunked\r\n\r\n"
        b"5\r\nfirst\r\n6\r\nsecond\r\n"
    )
    [record] = error_records(caplog)
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)


async def test_glitch_mid_stream_closes_without_a_second_status_line() -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"first"
        raise Glitch(503)

    async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.set_body(body())
        return await w.send()

    out = await AsyncTestClient(endpoint).raw(GET + FOLLOW_UP)
    assert masked(out) == (
        b"HTTP/1.1 200 OK\r\ndate: <DATE>\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n"
    )


async def test_exception_before_the_first_piece_of_a_stream_is_a_clean_500() -> None:
    async def body() -> AsyncIterator[bytes]:
        raise RuntimeError("failed before any byte")
        yield b"never"  # pragma: no cover

    async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.set_body(body())
        return await w.send()

    out = await AsyncTestClient(endpoint).raw(GET + FOLLOW_UP)
    assert masked(out) == glitch_response(500, b"Internal Server Error") * 2


async def test_exception_after_a_complete_response_closes_without_a_second_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.set_text("done")
        await w.send()
        raise RuntimeError("cleanup failed")

    with caplog.at_level(logging.DEBUG, logger="tophat"):
        out = await AsyncTestClient(endpoint).raw(GET + FOLLOW_UP)
    assert masked(out) == (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"date: <DATE>\r\ncontent-length: 4\r\n\r\ndone"
    )
    [record] = error_records(caplog)
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)
