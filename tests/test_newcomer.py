"""What a newcomer copies from the docs works as written: ports, imports, commands."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

from tophat.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.py") if p.name != "__init__.py")
# A served example's module docstring names the command that serves it, then curl lines (or a
# browser URL) against that server: 127.0.0.1:PORT.
SERVE = re.compile(r"python -m tophat (examples\.[\w.]+:\w+)((?:\\\n|[^\n])*)")
PORT_FLAG = re.compile(r"--port[ =](\d+)")
LOOPBACK_URL = re.compile(r"(?:http://)?127\.0\.0\.1:(\d+)")


def _docstring(path: Path) -> str:
    return ast.get_docstring(ast.parse(path.read_text())) or ""


def _served_port(command_tail: str) -> int:
    """The port the CLI listens on for a command's flags (its default when none is given)."""
    flag = PORT_FLAG.search(command_tail)
    default: int = build_parser().get_default("port")
    return int(flag.group(1)) if flag else default


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_an_examples_urls_use_the_port_its_run_line_serves_on(path: Path) -> None:
    doc = _docstring(path)
    commands = SERVE.findall(doc)
    urls = {int(port) for port in LOOPBACK_URL.findall(doc)}
    if not urls:
        return
    assert commands, f"{path.name}: URLs {sorted(urls)} but no 'python -m tophat' line"
    served = {_served_port(tail) for _, tail in commands}
    assert urls <= served, (
        f"{path.name}: the docstring's URLs use port(s) {sorted(urls - served)}, "
        f"its 'python -m tophat' line serves on {sorted(served)}"
    )


def test_every_run_line_names_an_endpoint_that_exists() -> None:
    for path in EXAMPLES:
        for target, _ in SERVE.findall(_docstring(path)):
            module, attr = target.split(":")
            assert callable(getattr(importlib.import_module(module), attr)), target


def test_echo_docstring_says_how_to_echo_a_body_over_the_default_limit() -> None:
    # curl -T bigfile past max_body_size (16 MiB) gets a 413, not its file back
    assert "--max-body-size none" in _docstring(ROOT / "examples" / "echo.py")


def _readme() -> str:
    return (ROOT / "README.md").read_text()


def _readme_python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", _readme(), re.S)


def test_every_name_the_readme_imports_exists() -> None:
    imported = 0
    for block in _readme_python_blocks():
        try:
            tree = ast.parse(block)
        except SyntaxError:  # "Serving any stream" lists method signatures, not code
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module != "__future__":
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name), f"from {node.module} import {alias.name}"
                    imported += 1
    assert imported >= 10  # the README's blocks were found and read


def test_the_readme_says_where_the_glitch_helpers_are() -> None:
    # "use the helpers ok_or(...), call(...), catching(...)": a newcomer needs the import
    assert "from tophat.glitch import call, catching, ok_or" in _readme()
    from tophat.glitch import call, catching, ok_or

    assert all(callable(f) for f in (call, catching, ok_or))


def test_every_app_the_readme_serves_exists() -> None:
    targets = set(re.findall(r"python -m tophat (examples\.[\w.]+):(\w+)", _readme()))
    assert ("examples.hello", "app") in targets  # the smallest example, named in "The two commands"
    for module, attr in targets:
        assert callable(getattr(importlib.import_module(module), attr)), f"{module}:{attr}"
