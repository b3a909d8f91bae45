"""Shared fixtures: every async test runs on each backend in ``anyio_backend``, and each test
that may parse a request in this process runs on each parser (``parser``).

In-memory tests (through ``tophat.testing``) touch no runtime, so they run on asyncio, asyncio
with uvloop, and trio. Tests of one runtime pin ``anyio_backend`` in their module. Static
checks and tests whose server is a child process run once (see ``pytest_generate_tests``).
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
from collections.abc import Iterator

import pytest
from servers import Runtime, Serving, running, runtime_of

from tophat import parsers as _parse

BACKENDS = [
    pytest.param("asyncio", id="asyncio"),
    pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
    pytest.param("trio", id="trio"),
]


PARSERS = os.environ.get("TOPHAT_TEST_PARSERS", "h11,httptools").split(",")

# A test runs once per request parser when a request may be parsed in this process. These run
# once: nothing in them parses a request here, or the server runs in a child process that picks
# its own parser (the CLI's default) — the fixture's parameter would only repeat them.
ONE_PARSER_MODULES = {
    "test_architecture": "reads the source and runs import-linter",
    "test_static": "runs mypy and ruff",
    "test_cli": "checks arguments; parses no request",
    "test_h11_leniency": "pins what h11 itself accepts",
    "test_parse_h11": "makes its H11Parser itself",
    "test_asgi_spec": "calls the ASGI app directly: the ASGI server's parser is not ours",
    "test_client_rfc": "the client against scripted servers: no tophat server parses",
    "test_router_property": "calls the Router directly",
    "test_workers": "the server runs in child processes",
    "test_newcomer": "reads the docs and examples; parses no request",
    "test_packaging": "builds and checks the distributions",
    "test_reload": "the server runs in child processes",
}
ONE_PARSER_TESTS = {
    ("test_asgi", "test_gunicorn_with_a_uvicorn_worker_serves_the_app"): "child process",
    ("test_examples", "test_every_example_runs_with_the_cli"): "child process",
    ("test_server", "test_cli_stops_cleanly_on_signal"): "child process",
    ("test_server", "test_cli_answers_pipelined_requests_in_order"): "child process",
    ("test_server", "test_cli_lets_the_request_in_flight_finish_on_sigint"): "child process",
    ("test_server", "test_cli_second_sigint_stops_at_once"): "child process",
    ("test_tls_uds", "test_cli_serves_tls"): "child process",
    ("test_tls_uds", "test_cli_serves_a_unix_socket"): "child process",
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``parser`` (autouse, so every test has it) over PARSERS where it matters.

    A child process that should use a parser is given ``parser`` on its command line (as
    test_shutdown_load and test_proxy_hostile do); those tests still run once per parser.
    """
    module = metafunc.module.__name__.rpartition(".")[2]
    if (
        "parser" not in metafunc.fixturenames
        or "parser" in vars(metafunc.module)  # the module overrides the fixture
        or _parametrizes_parser(metafunc)  # the test parametrizes it itself
        or module in ONE_PARSER_MODULES
        or (module, metafunc.function.__name__) in ONE_PARSER_TESTS
    ):
        return
    metafunc.parametrize("parser", PARSERS, indirect=True)


def _parametrizes_parser(metafunc: pytest.Metafunc) -> bool:
    for mark in metafunc.definition.iter_markers("parametrize"):
        names = mark.args[0] if mark.args else mark.kwargs["argnames"]
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",")]
        if "parser" in names:
            return True
    return False


@pytest.fixture(autouse=True)
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The request parser ``ServerOpts(parser="auto")`` resolves to in this test.

    Parametrized by ``pytest_generate_tests`` where a request may be parsed in this process;
    elsewhere the default, unchanged.
    """
    name = getattr(request, "param", None)
    if name is None:
        return _parse.AUTO
    monkeypatch.setattr(_parse, "AUTO", name)
    return str(name)


@pytest.fixture(params=BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> object:
    return request.param


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> None:
    # Mark every coroutine test for the anyio plugin before it collects them (the plugin
    # decides at collection time whether a test needs the anyio_backend fixture).
    inner = getattr(getattr(obj, "hypothesis", None), "inner_test", obj)  # @given wraps it
    if name.startswith("test") and inspect.iscoroutinefunction(inner):
        pytest.mark.anyio(obj)


# -- servers on the test's runtime (tests/servers.py) -------------------------------------------


@pytest.fixture
def runtime(anyio_backend: object) -> Runtime:
    return runtime_of(anyio_backend)


@pytest.fixture
def serving(runtime: Runtime) -> Serving:
    """``serving(endpoint, **opts)``: a server on this test's runtime (see servers.running)."""
    return functools.partial(running, runtime)


@pytest.fixture
def no_error_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Nothing a client does may make the server log at ERROR (or crash a task)."""
    yield
    errors = [
        f"{r.name}: {r.getMessage()}"
        for when in ("setup", "call", "teardown")
        for r in caplog.get_records(when)
        if r.levelno >= logging.ERROR
    ]
    assert errors == []
