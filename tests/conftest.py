"""Shared fixtures: every async test runs on each backend in ``anyio_backend``.

In-memory tests (through ``tophat.testing``) touch no runtime, so they run on asyncio, asyncio
with uvloop, and trio. Tests of one runtime pin ``anyio_backend`` in their module.
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


@pytest.fixture(params=PARSERS, autouse=True)
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs once per request parser: ServerOpts(parser="auto") resolves to it."""
    monkeypatch.setattr(_parse, "AUTO", request.param)
    return str(request.param)


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
