"""The package as published: ``python -m build`` makes an sdist and, from it, a wheel; ``twine
check`` passes both; the sdist holds what its own test suite needs (and its tests collect); the
wheel ships ``py.typed``, the license and the ``tophat`` command, and no tests.

The build runs offline (``--no-isolation``: the venv's setuptools, from the test extra) on a copy
of the working tree, so that nothing is written into the checkout.
"""

from __future__ import annotations

import email.parser
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from servers import ROOT

from tophat import __version__

pytestmark = pytest.mark.slow

#: What the test suite reads besides the package (the issue: conftest.py, servers.py and the
#: examples were missing, so the sdist's tests did not collect).
SDIST_NEEDS = [
    "LICENSE",
    "README.md",
    "CHANGELOG.md",
    "pyproject.toml",
    "tophat/py.typed",
    "tests/conftest.py",
    "tests/servers.py",
    "tests/test_packaging.py",
    "tests/data/typed_app.py",
    "tests/browser/page.html",
    "examples/__init__.py",
    "examples/hello.py",
    "docs/architecture.md",
    "docs/deployment.md",
    "bench/perf.py",
]
#: Kept out of the sdist: caches, virtual environments, build output (setuptools adds its
#: tophat.egg-info/ metadata, as to every sdist).
NEVER = ("__pycache__", ".pyc", ".venv", ".git/", ".mypy_cache", ".hypothesis", "build/")
#: Tracked files the sdist leaves out on purpose (CI's entry point needs a git clone anyway).
NOT_SHIPPED = {".gitignore", ".ci/run", ".ci/postgres.sh"}


@pytest.fixture
def parser() -> str:
    """(Overrides conftest's: nothing here parses a request; run once.)"""
    return "auto"


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``python -m build --no-isolation`` of a copy of the working tree: sdist, then the wheel
    built from the unpacked sdist (build's default), in ``dist/``."""
    where = tmp_path_factory.mktemp("packaging")
    source = where / "source"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git",
            ".venv*",
            "build",
            "dist",
            "*.egg-info",
            "__pycache__",
            ".*_cache",
            ".hypothesis",
        ),
    )
    out = where / "dist"
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


def _sdist(dist: Path) -> Path:
    [sdist] = dist.glob("tophat-*.tar.gz")
    return sdist


def _wheel(dist: Path) -> Path:
    [wheel] = dist.glob("tophat-*-py3-none-any.whl")
    return wheel


def _sdist_names(dist: Path) -> set[str]:
    sdist = _sdist(dist)
    prefix = sdist.name.removesuffix(".tar.gz") + "/"
    with tarfile.open(sdist) as tar:
        return {m.name.removeprefix(prefix) for m in tar.getmembers() if m.isfile()}


def test_twine_check_passes_the_sdist_and_the_wheel(dist: Path) -> None:
    files = [str(_sdist(dist)), str(_wheel(dist))]
    result = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *files],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("PASSED") == 2, result.stdout


def test_the_metadata_declares_an_spdx_license_and_the_extras(dist: Path) -> None:
    with zipfile.ZipFile(_wheel(dist)) as whl:
        [name] = [n for n in whl.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = email.parser.Parser().parsestr(whl.read(name).decode())
    assert metadata["License-Expression"] == "MIT"
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert metadata["License"] is None  # the deprecated free-text field is gone
    assert {"fast", "trio", "reload", "test"} <= set(metadata.get_all("Provides-Extra") or [])
    requires = metadata.get_all("Requires-Dist") or []
    assert any(r.startswith("watchfiles") and 'extra == "reload"' in r for r in requires)


def test_the_sdist_holds_what_its_tests_need(dist: Path) -> None:
    names = _sdist_names(dist)
    assert [n for n in SDIST_NEEDS if n not in names] == []
    assert [n for n in names if any(bad in n for bad in NEVER)] == []
    if (ROOT / ".git").exists() and shutil.which("git"):  # (not when run from an sdist)
        tracked = subprocess.run(
            ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.split()
        missing = sorted(set(tracked) - NOT_SHIPPED - names)
        assert missing == [], "tracked files missing from the sdist (see MANIFEST.in)"


def test_the_unpacked_sdists_tests_collect(dist: Path, tmp_path: Path) -> None:
    with tarfile.open(_sdist(dist)) as tar:
        tar.extractall(tmp_path, filter="data")
    [unpacked] = tmp_path.iterdir()
    # Its own tophat first on the path (ahead of this checkout's editable install).
    env = {**os.environ, "PYTHONPATH": str(unpacked), "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=unpacked,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "tests/test_cli.py::" in result.stdout
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_examples.py"],
        cwd=unpacked,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_the_wheel_ships_types_license_and_command_but_no_tests(dist: Path) -> None:
    with zipfile.ZipFile(_wheel(dist)) as whl:
        names = whl.namelist()
        [entry_points] = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = whl.read(entry_points).decode()
    assert "tophat/py.typed" in names
    assert "tophat/cli/__init__.py" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert {n.split("/")[0] for n in names} == {"tophat", f"tophat-{__version__}.dist-info"}
    assert "[console_scripts]\ntophat = tophat.cli:main" in scripts
