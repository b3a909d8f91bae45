"""The package type-checks under mypy --strict, lints clean under ruff and is ruff-formatted.

(Run once, not once per parser: see ``ONE_PARSER_MODULES`` in conftest. The import-linter
contracts are checked by ``test_architecture.py``.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_mypy_strict_is_clean() -> None:
    result = _run("mypy", "--strict", "tophat")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_check_is_clean() -> None:
    result = _run("ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_clean() -> None:
    result = _run("ruff", "format", "--check", "tophat", "tests", "examples", "bench")
    assert result.returncode == 0, result.stdout + result.stderr
