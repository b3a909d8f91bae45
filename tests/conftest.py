"""Shared fixtures: every async test runs on each backend in ``anyio_backend``.

In-memory tests (through ``tophat.testing``) touch no runtime, so they run on asyncio *and*
trio. Tests of the asyncio runtime pin ``anyio_backend`` to ``"asyncio"`` in their module.
"""

from __future__ import annotations

import inspect

import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if isinstance(item, pytest.Function) and inspect.iscoroutinefunction(item.obj):
            item.add_marker(pytest.mark.anyio)
