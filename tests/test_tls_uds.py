"""TLS, Unix domain sockets and custom streams, on each runtime (asyncio, uvloop, trio).

The certificate is self-signed, made with ``cryptography`` for this test session; clients trust
exactly it. The CLI tests at the end run ``python -m tophat`` with ``--ssl-certfile`` and
``--uds`` in a subprocess, on each runtime.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import http.client
import ipaddress
import json
import logging
import os
import socket
import ssl
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from servers import (
    HOST,
    RUNTIMES,
    Client,
    Runtime,
    Serving,
    StreamClient,
    cli,
    connected,
    free_port,
    stops_cleanly,
)

import tophat
from tophat import Phase, Request, ResponseWriter, ResponseWritten, ServerOpts, StreamTimeout
from tophat.testing import parse_responses

# Fixtures ``runtime``, ``serving`` and ``no_error_logs`` come from conftest.py.
pytestmark = pytest.mark.usefixtures("no_error_logs")


async def whoami(req: Request, w: ResponseWriter) -> ResponseWritten:
    """Answers with what the server knows of the connection."""
    w.set_json({"scheme": req.scheme, "client": req.client, "server": req.server, "path": req.path})
    return await w.send()


# -- TLS ------------------------------------------------------------------------------------------


class Cert:
    def __init__(self, certfile: Path, keyfile: Path) -> None:
        self.certfile = certfile
        self.keyfile = keyfile

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.certfile, self.keyfile)
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.certfile))


@pytest.fixture(scope="session")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Cert:
    """A self-signed certificate for localhost and 127.0.0.1, and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tophat test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    where = tmp_path_factory.mktemp("tls")
    certfile, keyfile = where / "cert.pem", where / "key.pem"
    certfile.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Cert(certfile, keyfile)


@contextlib.asynccontextmanager
async def tls_connected(port: int, cert: Cert) -> AsyncIterator[StreamClient]:
    stream = await anyio.connect_tcp(
        HOST, port, ssl_context=cert.client_context(), tls_hostname="localhost"
    )
    client = StreamClient(stream)
    try:
        yield client
    finally:
        await client.close()


def get(path: str = "", *extra: str) -> bytes:
    fields = "".join(f"{field}\r\n" for field in extra)
    return f"GET /{path} HTTP/1.1\r\nHost: t\r\n{fields}\r\n".encode()


async def test_tls_serves_requests_with_scheme_https(serving: Serving, cert: Cert) -> None:
    async with serving(whoami, ssl=cert.server_context()) as server:
        with anyio.fail_after(5):
            async with tls_connected(server.port, cert) as c:
                for path in ("a", "b"):  # two requests: the connection is kept alive
                    await c.send(get(path))
                    status, _, body = await c.response()
                    assert status == 200
                    seen = json.loads(body)
                    assert seen["scheme"] == "https"
                    assert seen["path"] == f"/{path}"
                    assert seen["client"][0] == HOST
                    assert seen["server"] == [HOST, server.port]


async def test_tls_connection_close_ends_with_close_notify(serving: Serving, cert: Cert) -> None:
    # RFC 9112 §9.8: a TLS connection is closed with close_notify alerts, not a bare TCP close
    # (anyio's TLS stream raises BrokenResourceError on one); the client says goodbye first.
    async with serving(whoami, ssl=cert.server_context()) as server:
        with anyio.fail_after(5):
            async with tls_connected(server.port, cert) as c:
                await c.send(get("bye", "Connection: close"))
                status, headers, _ = await c.response()
                assert (status, headers["connection"]) == (200, "close")
                assert isinstance(c.stream, anyio.streams.tls.TLSStream)
                await c.stream.unwrap()  # close_notify both ways, or this raises


async def test_tls_client_that_closes_first_leaves_no_warning(
    serving: Serving,
    cert: Cert,
    caplog: pytest.LogCaptureFixture,
    request: pytest.FixtureRequest,
    runtime: Runtime,
) -> None:
    async with serving(whoami, ssl=cert.server_context()) as server:
        with anyio.fail_after(5):
            async with tls_connected(server.port, cert) as c:
                await c.send(get())
                assert (await c.response())[0] == 200
                assert isinstance(c.stream, anyio.streams.tls.TLSStream)
                await c.stream.unwrap()  # our close_notify, then the server's
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == []


async def test_plain_http_to_the_tls_port_gets_no_response_and_no_crash(
    serving: Serving, cert: Cert
) -> None:
    async with serving(whoami, ssl=cert.server_context()) as server:
        with anyio.fail_after(5):
            async with connected(server.port) as plain:
                await plain.send(get("plain"))
                out = await plain.read_all()  # a TLS alert at most, then the end
            assert b"HTTP/" not in out
            # The server is unharmed.
            async with tls_connected(server.port, cert) as c:
                await c.send(get("after"))
                assert (await c.response())[0] == 200


async def test_tls_client_that_hangs_up_mid_handshake_disturbs_nothing(
    serving: Serving, cert: Cert
) -> None:
    async with serving(whoami, ssl=cert.server_context()) as server:
        with anyio.fail_after(5):
            for how in ("close", "reset"):
                c = await Client.connect(server.port)
                await c.send(b"\x16\x03\x01\x00\xa0\x01\x00\x00\x9c\x03\x03")  # half a hello
                await (c.reset() if how == "reset" else c.close())
            async with tls_connected(server.port, cert) as ok:
                await ok.send(get("ok"))
                assert (await ok.response())[0] == 200


@pytest.mark.parametrize("how", ["connection-close", "idle-timeout"])
async def test_tls_close_sends_close_notify_at_once(serving: Serving, cert: Cert, how: str) -> None:
    # RFC 9112 §9.6: close in stages. Over TLS the first stage is close_notify (TLS's end of
    # data), so a client reading until the end gets it at once, not after the linger.
    async with (
        serving(whoami, ssl=cert.server_context(), keep_alive_timeout=0.2) as server,
        tls_connected(server.port, cert) as c,
    ):
        if how == "connection-close":
            await c.send(get("bye", "Connection: close"))
        else:
            await c.send(get("then-nothing"))
        assert (await c.response())[0] == 200
        with anyio.fail_after(1):
            assert await c.recv() == b""  # close_notify: a clean end, not a broken stream


async def test_tls_handshake_that_stalls_is_closed_after_head_timeout(
    serving: Serving, cert: Cert, request: pytest.FixtureRequest, runtime: Runtime
) -> None:
    async with (
        serving(whoami, ssl=cert.server_context(), head_timeout=0.2) as server,
        connected(server.port) as c,
    ):
        with anyio.fail_after(1):
            assert await c.read_all() == b""


async def test_tls_refusal_reaches_a_client_that_is_still_sending(
    serving: Serving, cert: Cert
) -> None:
    # RFC 9112 §9.6, over TLS: the 413 and close_notify must reach a client still sending its
    # body, not a reset that erases them (the server discards what follows, then closes).
    async with (
        serving(whoami, ssl=cert.server_context(), max_body_size=1000) as server,
        tls_connected(server.port, cert) as c,
    ):
        with anyio.fail_after(5):
            head = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4000000\r\n\r\n"
            async with anyio.create_task_group() as tg:

                async def send_body() -> None:
                    with contextlib.suppress(anyio.BrokenResourceError, OSError):
                        await c.send(head + b"x" * 4_000_000)

                tg.start_soon(send_body)
                status, headers, _ = await c.response("POST")
                assert (status, headers["connection"]) == (413, "close")
                tg.cancel_scope.cancel()


async def test_tls_partial_head_that_stalls_gets_408(serving: Serving, cert: Cert) -> None:
    async with (
        serving(whoami, ssl=cert.server_context(), head_timeout=0.2) as server,
        tls_connected(server.port, cert) as c,
    ):
        with anyio.fail_after(3):
            await c.send(b"GET / HTTP/1.1\r\nHost: t\r\n")
            status, headers, _ = await c.response()
        assert (status, headers["connection"]) == (408, "close")


async def test_tls_client_that_does_not_read_is_closed_after_the_write_timeout(
    serving: Serving, cert: Cert
) -> None:
    closed = anyio.Event()

    async def firehose(req: Request, w: ResponseWriter) -> ResponseWritten:
        async def pieces() -> AsyncIterator[bytes]:
            try:
                while True:
                    yield b"x" * 65536
            finally:
                closed.set()

        w.set_body(pieces())
        return await w.send()

    async with (
        serving(firehose, ssl=cert.server_context(), write_timeout=0.2) as server,
        tls_connected(server.port, cert) as c,
    ):
        await c.send(get())
        with anyio.fail_after(5):
            await closed.wait()  # the handler's stream was abandoned


async def test_tls_connections_beyond_the_limit_get_503(serving: Serving, cert: Cert) -> None:
    async with (
        serving(whoami, ssl=cert.server_context(), max_connections=1) as server,
        tls_connected(server.port, cert) as first,
    ):
        with anyio.fail_after(5):
            await first.send(get("first"))
            assert (await first.response())[0] == 200
            async with tls_connected(server.port, cert) as extra:
                await extra.send(get("extra"))
                status, headers, _ = await extra.response()
            assert (status, headers["connection"]) == (503, "close")
            await first.send(get("again"))
            assert (await first.response())[0] == 200


async def test_tls_shutdown_closes_idle_connections_at_once(serving: Serving, cert: Cert) -> None:
    async with (
        serving(whoami, ssl=cert.server_context(), keep_alive_timeout=30) as server,
        tls_connected(server.port, cert) as c,
    ):
        await c.send(get())
        assert (await c.response())[0] == 200
        with anyio.fail_after(2):
            await server.shutdown(5.0)
            assert await c.recv() == b""


# -- Unix domain sockets --------------------------------------------------------------------------


@pytest.fixture
def sock_path(tmp_path: Path) -> Iterator[str]:
    """A path for a Unix socket (short enough for sun_path's ~107 bytes)."""
    path = tmp_path / "s.sock"
    if len(os.fsencode(path)) < 100:
        yield str(path)
        return
    with tempfile.TemporaryDirectory(prefix="tophat-") as short:
        yield os.path.join(short, "s.sock")


async def test_unix_socket_serves_requests_without_a_client_address(
    serving: Serving, sock_path: str
) -> None:
    async with serving(whoami, uds=sock_path) as server:
        assert server.sockets[0].family == socket.AF_UNIX
        with anyio.fail_after(5):
            async with connected(uds=sock_path) as c:
                for path in ("a", "b"):
                    await c.send(get(path))
                    status, _, body = await c.response()
                    assert status == 200
                    seen = json.loads(body)
                    assert seen == {
                        "scheme": "http",
                        "client": None,
                        "server": None,
                        "path": f"/{path}",
                    }


async def test_unix_socket_path_is_reusable_after_shutdown(
    serving: Serving, sock_path: str, runtime: Runtime
) -> None:
    for round in range(2):
        async with serving(whoami, uds=sock_path):
            with anyio.fail_after(5):
                async with connected(uds=sock_path) as c:
                    await c.send(get(str(round)))
                    assert (await c.response())[0] == 200
    assert not os.path.exists(sock_path)  # each runtime removes the socket file it made


async def test_a_stale_socket_file_is_replaced_but_other_files_are_not(
    serving: Serving, sock_path: str
) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(sock_path)
    stale.close()  # the file stays: a socket nobody listens on
    async with serving(whoami, uds=sock_path):
        with anyio.fail_after(5):
            async with connected(uds=sock_path) as c:
                await c.send(get())
                assert (await c.response())[0] == 200
    with contextlib.suppress(FileNotFoundError):
        os.unlink(sock_path)
    Path(sock_path).write_text("not a socket")
    with pytest.raises(OSError):
        async with serving(whoami, uds=sock_path):
            pass  # pragma: no cover
    assert Path(sock_path).read_text() == "not a socket"


# -- a custom stream ------------------------------------------------------------------------------


class SocketPairStream:
    """The adapter recipe: ``accept`` over anything that moves bytes.

    Three methods (``receive_some``, ``send_all``, ``aclose``), broken connections as
    ``OSError``, and, optionally, ``set_phase`` to apply the matching timeout and raise
    :class:`~tophat.StreamTimeout` when it runs out. This one wraps a non-blocking socket and
    waits with anyio, so it runs on every backend.
    """

    def __init__(self, sock: socket.socket, opts: ServerOpts) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.phase: Phase = "idle"
        self.timeouts: dict[Phase, float | None] = {
            "idle": opts.keep_alive_timeout,
            "head": opts.head_timeout,  # simplified: per read, not from the first byte
            "body": opts.body_timeout,
            "write": opts.write_timeout,
        }

    def set_phase(self, phase: Phase) -> None:
        self.phase = phase

    @contextlib.contextmanager
    def _deadline(self) -> Iterator[None]:
        timeout = self.timeouts[self.phase]
        try:
            with anyio.fail_after(timeout):
                yield
        except TimeoutError as exc:
            raise StreamTimeout(self.phase) from exc

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        with self._deadline():
            while True:
                try:
                    return self.sock.recv(max_bytes or 65536)
                except BlockingIOError:
                    await anyio.wait_readable(self.sock)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        with self._deadline():
            while view:
                try:
                    view = view[self.sock.send(view) :]
                except BlockingIOError:
                    await anyio.wait_writable(self.sock)

    async def aclose(self) -> None:
        if self.sock.fileno() != -1:
            anyio.notify_closing(self.sock)
            self.sock.close()
        await anyio.sleep(0)


async def test_serving_over_a_custom_stream() -> None:
    opts = ServerOpts(keep_alive_timeout=0.2)
    ours, theirs = socket.socketpair()
    stream = SocketPairStream(ours, opts)
    assert isinstance(stream, tophat.Stream)
    client = Client()
    client.sock = theirs
    theirs.setblocking(False)
    try:
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(functools.partial(tophat.accept, stream, whoami, opts))
                for path in ("a", "b"):
                    await client.send(get(path))
                    status, _, body = await client.response()
                    assert status == 200
                    seen = json.loads(body)
                    assert (seen["client"], seen["path"]) == (None, f"/{path}")
                # Then nothing: the idle timeout ends accept(), which closes the stream.
                await client.expect_eof()
        assert ours.fileno() == -1
    finally:
        await client.close()


# -- the CLI --------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_cli_serves_tls(runtime: str, cert: Cert) -> None:
    port = free_port()
    args = ["--port", str(port), "--runtime", runtime]
    args += ["--ssl-certfile", str(cert.certfile), "--ssl-keyfile", str(cert.keyfile)]
    with cli(*args) as server:
        assert f"listening on https://{HOST}:{port}" in server.stderr.decode()
        conn = http.client.HTTPSConnection(HOST, port, timeout=5, context=cert.client_context())
        try:
            conn.request("GET", "/")
            resp = conn.getresponse()
            assert (resp.status, resp.read()) == (200, b"Hello, world!")
        finally:
            conn.close()
        stops_cleanly(server)


@pytest.mark.slow
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_cli_serves_a_unix_socket(runtime: str, sock_path: str) -> None:
    with cli("--uds", sock_path, "--runtime", runtime) as server:
        assert f"listening on http+unix:{sock_path}" in server.stderr.decode()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(sock_path)
            s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            out = b""
            while data := s.recv(65536):
                out += data
        [resp] = parse_responses(out)
        assert (resp.status, resp.body) == (200, b"Hello, world!")
        stops_cleanly(server)
