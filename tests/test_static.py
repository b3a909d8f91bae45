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


# -- user code: the router's decorators keep a handler's type (issue 13) -------------------------

#: mypy over code that uses tophat, as a user runs it; tophat itself is type-checked (its types
#: are needed) but its own errors are left to test_mypy_strict_is_clean.
USER_CODE = ("--strict", "--follow-imports=silent")


def test_mypy_strict_is_clean_on_the_examples_and_a_user_style_typed_app() -> None:
    result = _run("mypy", *USER_CODE, "examples", "tests/data/typed_app.py")
    assert result.returncode == 0, result.stdout + result.stderr


# Each handler below is wrong in one way; mypy must refuse it at the line that registers it.
_NOT_ENDPOINTS = """\
from tophat import Request, ResponseWriter, ResponseWritten
from tophat.router import Router

router = Router()


@router.get("/returns-none")  # 7
async def returns_none(req: Request, w: ResponseWriter) -> None:
    await w.send()


@router.post("/swapped")  # 12
async def swapped(w: ResponseWriter, req: Request) -> ResponseWritten:
    return await w.send()


@router.put("/not-async")  # 17
def not_async(req: Request, w: ResponseWriter) -> ResponseWritten:
    raise NotImplementedError


@router.delete("/one-argument")  # 22
async def one_argument(req: Request) -> ResponseWritten:
    raise NotImplementedError


router.patch("/direct", returns_none)  # 27
router.at("GET", "/at", swapped)  # 28
router.mount("/mounted", not_async)  # 29


@router.get("/fine")
async def fine(req: Request, w: ResponseWriter) -> ResponseWritten:
    return await w.send()


reveal_type(fine)  # 37
"""


def test_mypy_refuses_a_handler_that_is_not_an_endpoint(tmp_path: Path) -> None:
    (tmp_path / "not_endpoints.py").write_text(_NOT_ENDPOINTS)
    result = _run("mypy", *USER_CODE, str(tmp_path / "not_endpoints.py"))
    lines = result.stdout.splitlines()
    errors = {
        int(line.split(":")[1]): line.rpartition("[")[2].rstrip("]")
        for line in lines
        if ": error: " in line
    }
    # The decorator refuses the function (type-var), it does not merely go untyped.
    expected = dict.fromkeys([7, 12, 17, 22], "type-var") | dict.fromkeys([27, 28, 29], "arg-type")
    assert errors == expected, result.stdout + result.stderr
    # ... and a decorated endpoint keeps its own signature, not just "an Endpoint".
    [revealed] = [line for line in lines if ":37: note: Revealed type is" in line]
    assert (
        '"def (req: tophat.http.request.Request, w: tophat.http.writer.ResponseWriter) -> '
        'typing.Coroutine[Any, Any, tophat.http.writer.ResponseWritten]"' in revealed
    ), result.stdout
