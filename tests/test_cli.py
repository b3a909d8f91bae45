"""The command line: every mistake is one ``error:`` line and exit status 2, never a traceback;
the target must be an endpoint; the ServerOpts flags reach the server; ``--version``,
``--log-config`` and the ``tophat`` console script. (``--reload``: tests/test_reload.py.)

Refusals run ``python -m tophat`` in a subprocess, as a user would; a missing extra is made
missing there by a ``sys.modules[name] = None`` prelude.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from servers import HOST, ROOT, cli, free_port

from tophat import MissingExtra, __version__, serve
from tophat.__main__ import main
from tophat.cli import build_parser
from tophat.runtime.serve import check_runtime


def run_cli(
    *args: str, cwd: Path = ROOT, missing: Sequence[str] = (), timeout: float = 20
) -> subprocess.CompletedProcess[str]:
    """``python -m tophat ARGS`` to its end, with the modules in ``missing`` not importable."""
    if missing:
        prelude = "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in missing)
        code = prelude + "from tophat.cli import main\nsys.exit(main())"
        cmd = [sys.executable, "-c", code, *args]
    else:
        cmd = [sys.executable, "-m", "tophat", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def assert_refused(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """Exit status 2, and stderr is exactly one ``error: ...`` line containing ``fragments``."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0]
    assert result.returncode == 2, result.stderr


# -- the target --------------------------------------------------------------------------------

TARGETS = """
import functools
from tophat.middleware import chain
from tophat.middleware.cors import cors
from tophat.router import Router

def sync_function(req, w): ...
async def one_argument(req): ...
async def three_arguments(req, w, extra): ...
async def endpoint(req, w):
    w.set_text("ok")
    return await w.send()
class Endpoint:
    async def __call__(self, req, w):
        return await endpoint(req, w)
class SyncCall:
    def __call__(self, req, w): ...
class OneArgumentCall:
    async def __call__(self, req): ...
instance = Endpoint()
sync_instance = SyncCall()
one_argument_instance = OneArgumentCall()
router = Router()
router.get("/", endpoint)
chained = chain(cors(allow_origins=["https://a.example"]))(router)
async def with_extra(req, w, extra):
    return await endpoint(req, w)
partial = functools.partial(with_extra, extra=1)
lambda_ = lambda req, w: None
number = 3
@functools.wraps(endpoint)
def wraps_an_endpoint(req, w):
    return endpoint(req, w)
"""


@pytest.fixture(scope="module")
def targets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("targets")
    (where / "targets.py").write_text(TARGETS)
    return where


@pytest.mark.parametrize(
    ("attr", "found"),
    [
        ("sync_function", "is a sync function"),
        ("lambda_", "is a sync function"),
        ("one_argument", "is an async function taking (req)"),
        ("three_arguments", "is an async function taking (req, w, extra)"),
        ("Endpoint", "is a class (Endpoint), not an instance"),
        ("sync_instance", "is an instance of SyncCall whose __call__ is not async"),
        ("one_argument_instance", "is an instance of OneArgumentCall whose __call__ takes (req)"),
        ("number", "is an int, not callable"),
        ("functools", "is a module"),
    ],
)
def test_a_target_that_is_not_an_endpoint_is_refused_naming_what_it_is(
    targets: Path, attr: str, found: str
) -> None:
    result = run_cli(f"targets:{attr}", "--port", "0", cwd=targets)
    assert_refused(result, f"targets:{attr} {found}", '"async def app(req, w)"')


def test_a_sync_function_is_refused_in_one_line_naming_it(targets: Path) -> None:
    result = run_cli("targets:sync_function", cwd=targets)
    assert result.stderr == (
        'error: targets:sync_function is a sync function; an endpoint is "async def app(req, w)"\n'
    )
    assert result.returncode == 2


@pytest.mark.parametrize(
    "attr", ["endpoint", "instance", "router", "chained", "partial", "wraps_an_endpoint"]
)
def test_every_kind_of_endpoint_is_served(targets: Path, attr: str) -> None:
    port = free_port()
    with cli("--port", str(port), app=f"targets:{attr}", cwd=targets) as server:
        with socket.create_connection((HOST, port), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        assert data.startswith(b"HTTP/1.1 200 OK\r\n"), data
        assert data.endswith(b"\r\n\r\nok")
        assert server.proc.poll() is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("examples.hello", "expected MODULE:ATTR (e.g. examples.hello:app), got 'examples.hello'"),
        (":app", "expected MODULE:ATTR"),
        ("no_such_module_xyz:app", "no module named 'no_such_module_xyz'"),
        ("examples.no_such_module:app", "no module named 'examples.no_such_module'"),
        ("examples.hello:nope", "'examples.hello' has no attribute 'nope'"),
        ("examples.hello:app.nope", "'examples.hello:app' has no attribute 'nope'"),
    ],
)
def test_a_bad_app_spec_says_what_is_wrong(spec: str, message: str) -> None:
    assert_refused(run_cli(spec), message)


def test_a_module_whose_own_import_fails_names_the_missing_dependency(tmp_path: Path) -> None:
    (tmp_path / "needs_dep.py").write_text("import no_such_dependency_xyz\n")
    assert_refused(
        run_cli("needs_dep:app", cwd=tmp_path),
        "importing 'needs_dep' failed: No module named 'no_such_dependency_xyz'",
    )


# -- values ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "99999"], "argument --port: 99999 is not a port: a port is 0-65535"),
        (["--port", "-1"], "argument --port: -1 is not a port"),
        (["--port", "x"], "argument --port: expected a port number 0-65535, got 'x'"),
        (["--port", ""], "argument --port: expected a port number"),
        (["--workers", "0"], "argument --workers: must be at least 1, got 0"),
        (["--workers", "two"], "argument --workers: expected a whole number, got 'two'"),
        (["--runtime", "tornado"], "argument --runtime: invalid choice: 'tornado'"),
        (["--max-body-size", "1X"], "argument --max-body-size: expected a size"),
        (["--max-body-size", "-5"], "argument --max-body-size: expected a size"),
        (["--max-head-size", "0"], "argument --max-head-size: must be at least 1 bytes"),
        (["--max-head-size", "none"], "argument --max-head-size: expected a size"),
        (["--max-header-count", "1.5"], "argument --max-header-count: expected a whole number"),
        (["--max-target-length", "0K"], "argument --max-target-length: must be at least 1"),
        (["--head-timeout", "0"], "argument --head-timeout: must be more than 0 seconds"),
        (["--head-timeout", "-1"], "argument --head-timeout: expected a duration"),
        (["--body-timeout", "soon"], "argument --body-timeout: expected a duration"),
        (["--keep-alive-timeout", "2d"], "argument --keep-alive-timeout: expected a duration"),
        (["--write-timeout", "100000"], "argument --write-timeout: at most 86400 seconds"),
        (["--write-timeout", "inf"], "argument --write-timeout: expected a duration"),
        (["--max-connections", "0"], "argument --max-connections: must be at least 1"),
        (["--shutdown-grace", "none"], "argument --shutdown-grace: expected a duration"),
        (["--shutdown-grace", "-1"], "argument --shutdown-grace: expected a duration"),
        (["--disconnect-grace", "2x"], "argument --disconnect-grace: expected a duration"),
        (["--log-level", "loud"], "argument --log-level: invalid choice: 'loud'"),
        (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
        (["--reload-dir", "."], "--reload-dir needs --reload"),
        (["--reload", "--workers", "2"], "--reload runs one server process: drop --workers"),
    ],
)
def test_a_bad_value_is_one_error_line(args: list[str], message: str) -> None:
    assert_refused(run_cli("examples.hello:app", *args), message)


def test_no_target_at_all_is_one_error_line() -> None:
    assert_refused(run_cli(), "the following arguments are required: MODULE:ATTR")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1048576", 1 << 20),
        ("512K", 512 << 10),
        ("100M", 100 << 20),
        ("100m", 100 << 20),
        ("100MiB", 100 << 20),
        ("100MB", 100 << 20),
        ("1G", 1 << 30),
        ("1.5G", 3 << 29),
        ("0", 0),
        ("none", None),
        ("NONE", None),
    ],
)
def test_max_body_size_reads_units_and_none(text: str, value: int | None) -> None:
    assert build_parser().parse_args(["m:a", "--max-body-size", text]).max_body_size == value


@pytest.mark.parametrize(
    ("text", "value"),
    [("30", 30.0), ("2.5", 2.5), ("2.5s", 2.5), ("500ms", 0.5), ("2m", 120.0), ("none", None)],
)
def test_a_timeout_reads_seconds_units_and_none(text: str, value: float | None) -> None:
    assert build_parser().parse_args(["m:a", "--head-timeout", text]).head_timeout == value


def test_every_limit_flag_sets_its_server_opts_field() -> None:
    from tophat.cli._options import OPTS_FLAGS, opts_kwargs

    args = build_parser().parse_args(
        ["m:a", "--max-body-size", "1K", "--keep-alive-timeout", "none", "--shutdown-grace", "0"]
    )
    assert opts_kwargs(args) == {
        "max_body_size": 1024,
        "keep_alive_timeout": None,
        "shutdown_grace": 0.0,
    }
    from dataclasses import fields

    from tophat import ServerOpts

    names = {f.name for f in fields(ServerOpts)}
    assert {f.field for f in OPTS_FLAGS} <= names  # each row names a real field


def _post(port: int, body: bytes) -> bytes:
    with socket.create_connection((HOST, port), timeout=10) as s:
        s.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
        )

        def send() -> None:
            # (the 413, and the close, may come before all of it is sent)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                s.sendall(body)

        sender = threading.Thread(target=send)  # the echo answers while the body arrives
        sender.start()
        data = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := s.recv(1 << 20):
                data += chunk
        sender.join()
    return data


def test_max_body_size_flag_reaches_the_server() -> None:
    # The issue: examples/echo.py met a 413 at 16 MiB with no way round it from the CLI.
    big = b"x" * (17 << 20)
    port = free_port()
    with cli("--port", str(port), "--max-body-size", "32M", app="examples.echo:app"):
        data = _post(port, big)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert data.endswith(b"\r\n0\r\n\r\n") and len(data) > len(big)
    port = free_port()
    with cli("--port", str(port), "--max-body-size", "1K", app="examples.echo:app"):
        assert _post(port, b"x" * 1025).startswith(b"HTTP/1.1 413 ")


def test_keep_alive_timeout_flag_reaches_the_server() -> None:
    port = free_port()
    with (
        cli("--port", str(port), "--keep-alive-timeout", "200ms"),
        socket.create_connection((HOST, port), timeout=5) as s,
    ):
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        started = time.monotonic()
        data = b""
        while chunk := s.recv(65536):  # the server closes the idle connection: EOF
            data += chunk
        waited = time.monotonic() - started
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert waited < 2  # not the default 5 s


# -- files, addresses, extras ------------------------------------------------------------------


def _self_signed(where: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tophat cli test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = where / f"{name}-cert.pem", where / f"{name}-key.pem"
    certfile.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return certfile, keyfile


@pytest.fixture(scope="module")
def pems(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    where = tmp_path_factory.mktemp("pems")
    cert, key = _self_signed(where, "a")
    _, other_key = _self_signed(where, "b")
    (where / "garbage.pem").write_text("not a certificate\n")
    key_a = key.read_bytes()
    encrypted = serialization.load_pem_private_key(key_a, None).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    (where / "encrypted-key.pem").write_bytes(encrypted)
    return {
        "cert": cert,
        "key": key,
        "other_key": other_key,
        "garbage": where / "garbage.pem",
        "encrypted_key": where / "encrypted-key.pem",
        "dir": where,
    }


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--ssl-certfile", "missing.pem"],
            "--ssl-certfile missing.pem: No such file or directory",
        ),
        (["--ssl-certfile", "{cert}", "--ssl-keyfile", "missing.pem"], "--ssl-keyfile missing.pem"),
        (["--ssl-certfile", "{dir}"], "Is a directory"),
        (["--ssl-keyfile", "{key}"], "--ssl-keyfile needs --ssl-certfile"),
        (["--ssl-certfile", "{garbage}", "--ssl-keyfile", "{key}"], "cannot load a certificate"),
        (["--ssl-certfile", "{cert}"], "cannot load a certificate and its unencrypted private"),
        (["--ssl-certfile", "{cert}", "--ssl-keyfile", "{other_key}"], "is not the key of"),
        (["--ssl-certfile", "{cert}", "--ssl-keyfile", "{encrypted_key}"], "unencrypted"),
    ],
)
def test_a_bad_certificate_or_key_is_one_error_line(
    pems: dict[str, Path], flags: list[str], message: str
) -> None:
    args = [f.format(**pems) for f in flags]
    assert_refused(run_cli("examples.hello:app", "--port", "0", *args), message)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_certificate_is_one_error_line(pems: dict[str, Path], tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_bytes(pems["cert"].read_bytes())
    cert.chmod(0)
    assert_refused(run_cli("examples.hello:app", "--ssl-certfile", str(cert)), "Permission denied")


def test_a_good_certificate_and_key_serve(pems: dict[str, Path]) -> None:
    port = free_port()
    args = ["--port", str(port), "--ssl-certfile", str(pems["cert"])]
    with cli(*args, "--ssl-keyfile", str(pems["key"])) as server:
        assert f"https://{HOST}:{port}".encode() in server.stderr


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind((HOST, 0))
        s.listen()
        yield int(s.getsockname()[1])


def test_a_port_in_use_is_one_error_line(taken_port: int) -> None:
    result = run_cli("examples.hello:app", "--port", str(taken_port))
    assert_refused(result, f"cannot listen on {HOST}:{taken_port}", "address already in use")


@pytest.mark.parametrize(
    ("host", "message"),
    [
        ("no-such-host.invalid", "--host 'no-such-host.invalid' is not an address here"),
        ("300.1.1.1", "--host '300.1.1.1' is not an address here"),
        ("192.0.2.1", "cannot listen on 192.0.2.1:"),  # TEST-NET-1: no interface has it
    ],
)
def test_a_bad_host_is_one_error_line(host: str, message: str) -> None:
    assert_refused(run_cli("examples.hello:app", "--host", host, "--port", "0"), message)


@pytest.mark.parametrize(
    ("args", "missing", "message"),
    [
        (["--runtime", "uvloop"], "uvloop", "pip install 'tophat[fast]'"),
        (["--runtime", "trio"], "trio", "pip install 'tophat[trio]'"),
        (["--parser", "httptools"], "httptools", "pip install 'tophat[fast]'"),
        (["--reload"], "watchfiles", "--reload needs watchfiles: pip install 'tophat[reload]'"),
    ],
)
def test_a_missing_extra_is_one_error_line_naming_it(
    args: list[str], missing: str, message: str
) -> None:
    result = run_cli("examples.hello:app", "--port", "0", *args, missing=[missing])
    assert_refused(result, message)


@pytest.mark.parametrize(
    ("runtime", "extra"), [("uvloop", "tophat[fast]"), ("trio", "tophat[trio]")]
)
def test_a_runtime_whose_extra_is_missing_names_the_extra(
    runtime: str, extra: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, runtime, None)  # makes "import uvloop" fail
    with pytest.raises(MissingExtra, match=extra.replace("[", r"\[").replace("]", r"\]")):
        check_runtime(runtime)
    with pytest.raises(SystemExit) as exited:
        main(["examples.hello:app", "--runtime", runtime])
    assert exited.value.code == 2
    assert f"pip install '{extra}'" in capsys.readouterr().err


def test_an_unknown_runtime_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown runtime"):
        serve(lambda req, w: None, runtime="tornado")  # type: ignore[arg-type,return-value]


# -- --version, --log-config, the console script ------------------------------------------------


def test_version_prints_the_version() -> None:
    result = run_cli("--version")
    assert (result.returncode, result.stdout) == (0, f"tophat {__version__}\n")


def _log_config_json(logfile: Path) -> str:
    return json.dumps(
        {
            "version": 1,
            "formatters": {"plain": {"format": "CUSTOM %(name)s %(message)s"}},
            "handlers": {
                "file": {
                    "class": "logging.FileHandler",
                    "filename": str(logfile),
                    "formatter": "plain",
                }
            },
            "root": {"level": "INFO", "handlers": ["file"]},
        }
    )


def _log_config_ini(logfile: Path) -> str:
    return textwrap.dedent(
        f"""\
        [loggers]
        keys=root
        [handlers]
        keys=file
        [formatters]
        keys=plain
        [logger_root]
        level=INFO
        handlers=file
        [handler_file]
        class=FileHandler
        formatter=plain
        args=({str(logfile)!r},)
        [formatter_plain]
        format=CUSTOM %(name)s %(message)s
        """
    )


@pytest.mark.parametrize(
    ("suffix", "write"), [(".json", _log_config_json), (".ini", _log_config_ini)]
)
def test_log_config_file_configures_logging(suffix: str, write: object, tmp_path: Path) -> None:
    logfile = tmp_path / "server.log"
    config = tmp_path / f"logging{suffix}"
    config.write_text(write(logfile))  # type: ignore[operator]
    port = free_port()
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "tophat", "examples.hello:app"),
            *("--port", str(port), "--log-config", str(config)),
        ],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 10
        while not (logfile.exists() and "listening on" in logfile.read_text()):
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "nothing logged to the file"
            time.sleep(0.05)
        assert (
            f"CUSTOM tophat.server tophat listening on http://{HOST}:{port}" in logfile.read_text()
        )
        # One answer first: the line above is logged just before the signal handlers go in.
        with socket.create_connection((HOST, port), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert s.recv(65536).startswith(b"HTTP/1.1 200 OK\r\n")
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0
    assert "listening" not in err  # the file's handler, not the default one


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (None, "absent.json", "--log-config {path}: No such file or directory"),
        ("{not json", "bad.json", "--log-config {path}: JSONDecodeError"),
        ("[1, 2]", "list.json", "expected a mapping"),
        ('{"version": 1, "handlers": {"h": {"class": "nope.Nope"}}}', "h.json", "ValueError"),
        ("[loggers]\nkeys=root\n", "partial.ini", "--log-config {path}: KeyError"),
        ("version: 1\n", "conf.yaml", "needs PyYAML (pip install pyyaml)"),
    ],
)
def test_a_bad_log_config_is_one_error_line(
    tmp_path: Path, content: str | None, name: str, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    result = run_cli("examples.hello:app", "--log-config", str(path), missing=["yaml"])
    assert_refused(result, message.format(path=path))


def test_the_tophat_console_script_is_python_m_tophat() -> None:
    script = Path(sys.executable).parent / "tophat"
    assert script.exists(), "pip install -e . installs the tophat command"
    result = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, timeout=20, cwd=ROOT
    )
    assert (result.returncode, result.stdout) == (0, f"tophat {__version__}\n")
    result = subprocess.run(
        [str(script), "examples.hello:app", "--port", "99999"],
        capture_output=True,
        text=True,
        timeout=20,
        cwd=ROOT,
    )
    assert_refused(result, "argument --port")
    port = free_port()
    with cli("--port", str(port), command=[str(script)]) as server:
        with socket.create_connection((HOST, port), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        assert data.endswith(b"\r\n\r\nHello, world!")
        assert server.proc.poll() is None


# -- the app module's opts ------------------------------------------------------------------

OPTS_APP = """
from tophat import ServerOpts
from tophat.router import Router

router = Router()

@router.post("/echo")
async def echo(req, w):
    w.set_body(await req.body())
    return await w.send()

app = router
opts = ServerOpts(error_format="json", access_log=True, server_header="optsmod", max_body_size=10)
"""


def _exchange(port: int, request: bytes) -> bytes:
    with socket.create_connection((HOST, port), timeout=5) as s:
        s.sendall(request)
        data = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := s.recv(65536):
                data += chunk
    return data


def _not_found(port: int) -> bytes:
    return _exchange(port, b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")


def _echo(port: int, body: bytes) -> bytes:
    head = b"POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"
    return _exchange(port, head % len(body) + body)


@pytest.fixture(scope="module")
def opts_app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("opts_app")
    (where / "optsmod.py").write_text(OPTS_APP)
    (where / "badopts.py").write_text(
        "async def app(req, w):\n    w.set_text('ok')\n    return await w.send()\n"
        "opts = {'max_body_size': 10}\n"
    )
    return where


def test_a_module_level_opts_is_what_the_app_is_served_with(opts_app: Path) -> None:
    port = free_port()
    with cli("--port", str(port), app="optsmod:app", cwd=opts_app) as server:
        not_found = _not_found(port)
        too_big = _echo(port, b"x" * 11)
        fits = _echo(port, b"x" * 10)
        server.wait_for(b'"POST /echo HTTP/1.1" 200')  # access_log=True
    assert server.stderr.count(b"opts: using optsmod.opts\n") == 1, server.stderr
    head, _, body = not_found.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 404 ")
    assert b"\r\nserver: optsmod\r\n" in head.lower()
    assert b"\r\ncontent-type: application/problem+json\r\n" in head.lower()  # error_format
    assert json.loads(body)["status"] == 404
    assert too_big.startswith(b"HTTP/1.1 413 ")  # max_body_size=10
    assert fits.startswith(b"HTTP/1.1 200 ") and fits.endswith(b"\r\n\r\nxxxxxxxxxx")


def test_a_flag_given_overrides_only_its_own_field_of_the_module_opts(opts_app: Path) -> None:
    port = free_port()
    args = ("--port", str(port), "--max-body-size", "1K", "--no-access-log")
    with cli(*args, app="optsmod:app", cwd=opts_app) as server:
        not_found = _not_found(port)
        fits = _echo(port, b"x" * 11)  # over the module's 10 bytes, under the flag's 1 KiB
        too_big = _echo(port, b"x" * 1025)
        server.proc.terminate()
        log = server.rest_of_stderr()
    assert (
        "opts: using optsmod.opts (--access-log, --max-body-size given on the command line)" in log
    ), log
    assert fits.startswith(b"HTTP/1.1 200 ") and fits.endswith(b"\r\n\r\n" + b"x" * 11)
    assert too_big.startswith(b"HTTP/1.1 413 ")
    head = not_found.partition(b"\r\n\r\n")[0].lower()
    assert b"\r\nserver: optsmod\r\n" in head  # the fields no flag named are the module's
    assert b"\r\ncontent-type: application/problem+json\r\n" in head
    assert "POST /echo" not in log  # --no-access-log turned the module's access_log off


def test_flags_not_given_set_no_server_opts_field() -> None:
    from tophat.cli._options import opts_kwargs

    # (argparse's defaults would override a module's opts: an absent flag must be absent)
    assert opts_kwargs(build_parser().parse_args(["m:a"])) == {}
    args = ["m:a", "--access-log", "--server-header", "s", "--parser", "h11", "--verbose-glitch"]
    assert opts_kwargs(build_parser().parse_args(args)) == {
        "access_log": True,
        "server_header": "s",
        "parser": "h11",
        "verbose_glitch": True,
    }
    off = ["m:a", "--no-access-log", "--no-verbose-glitch"]
    assert opts_kwargs(build_parser().parse_args(off)) == {
        "access_log": False,
        "verbose_glitch": False,
    }


def test_a_module_level_opts_that_is_not_server_opts_is_one_error_line(opts_app: Path) -> None:
    result = run_cli("badopts:app", "--port", "0", cwd=opts_app)
    assert_refused(result, "badopts.opts is a dict", "tophat.ServerOpts", "rename it")


def test_the_help_says_what_the_module_may_define() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    assert "lifespan  a function returning an async context manager" in result.stdout
    assert "opts      a tophat.ServerOpts the app is served with" in result.stdout
