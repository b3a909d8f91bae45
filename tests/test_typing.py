"""The user-style typed app (tests/data/typed_app.py) works as well as it type-checks: its own
tests pass, on every runtime and parser. ``mypy --strict`` over it, over ``examples/``, and the
refusal of handlers that are not endpoints are in test_static.py (run once)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("tophat_tests_typed_app", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


typed_app = _load(Path(__file__).parent / "data" / "typed_app.py")


async def test_typed_app_finds_an_item_by_its_typed_id() -> None:
    await typed_app.test_an_item_is_found_by_its_typed_id()


async def test_typed_app_puts_an_item_only_after_a_login() -> None:
    await typed_app.test_putting_an_item_needs_a_login()
