"""The architecture of docs/architecture.md, checked: layers, cycles, module size, private parts.

* ``lint-imports`` runs the import-linter contracts of ``pyproject.toml`` (the layers, what
  router and middleware may import, no runtime library below the runtimes), and a deliberate
  violation of each makes it fail;
* the rest reads the source with :mod:`ast`, imports inside functions included: no import cycle
  among ``tophat`` modules, no module over ``MAX_LINES``, no ``from x import _y`` across modules,
  no import of another package's private module (``h11._readers``), and no access to another
  module's private attribute (``obj._x`` where ``obj`` is not ``self``/``cls`` and nothing in the
  module defines ``_x``).

Where the code does not meet a rule yet, the exception is named in an allowlist below with its
reason; an entry that no longer applies fails its test too, so the lists only ever shrink.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "tophat"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

#: STYLE.md: "One concept per module; past ~400 lines, split."
MAX_LINES = 400

# -- allowlists: each entry is a violation that remains, and why (shrink them, never grow) -----

#: Modules longer than MAX_LINES.
LONG_MODULES: dict[str, str] = {}

#: Import cycles, each named by its modules (a strongly connected component of the graph).
CYCLES: dict[frozenset[str], str] = {}

#: (importing module, "source.module._name"): a private name imported from another module.
PRIVATE_NAME_IMPORTS: dict[tuple[str, str], str] = {}

#: (importing module, "dependency._private.module").
PRIVATE_DEPENDENCY_MODULES: dict[tuple[str, str], str] = {}

#: (module, "_attribute"): another module's private attribute read or written here.
PRIVATE_ATTRIBUTES: dict[tuple[str, str], str] = {}

#: Names with a leading underscore that are public API of the standard library.
PUBLIC_DESPITE_UNDERSCORE = frozenset(
    {
        "_exit",  # os._exit: the documented way for a forked child to leave without cleanup
        "_replace",  # namedtuple / dataclass-like public methods
        "_asdict",
        "_fields",
        "_make",
    }
)


# -- the import-linter contracts ---------------------------------------------------------------


def _lint_imports(cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_import_contracts_are_kept() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "broken" not in result.stdout.lower().replace("0 broken", "")


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        # http is the bottom layer: it may not reach up into the server.
        ("http/headers.py", "import tophat.server.connection", "Layers"),
        # a middleware imports http and glitch only, never a parser (nor h11 through one).
        ("middleware/cors.py", "import tophat.parsers.events", "Router and middleware"),
        ("router.py", "import h11", "Router and middleware"),
        # the server never imports a runtime library.
        ("server/validate.py", "import asyncio", "No runtime"),
    ],
)
def test_a_violation_breaks_the_import_contracts(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    """The check can fail: the same contracts on a copy of the package with one bad import."""
    shutil.copytree(PACKAGE, tmp_path / "tophat", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "tophat" / module
    target.write_text(target.read_text() + f"\n{line}  # deliberate violation\n")
    # The copy comes first on the path, before the editable install of the real package.
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = _lint_imports(tmp_path, env)
    assert result.returncode != 0, result.stdout + result.stderr
    broken = result.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken, result.stdout
    assert f"tophat.{module.removesuffix('.py').replace('/', '.')}" in broken, result.stdout


# -- reading the source ------------------------------------------------------------------------


@dataclass(frozen=True)
class Module:
    name: str  # tophat.server.connection
    path: Path
    is_package: bool

    @property
    def package(self) -> str:
        return self.name if self.is_package else self.name.rpartition(".")[0]


@cache
def modules() -> dict[str, Module]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        name = ".".join(parts)
        found[name] = Module(name, path, is_package)
    return found


@cache
def tree(name: str) -> ast.Module:
    return ast.parse(modules()[name].path.read_text(), filename=str(modules()[name].path))


@dataclass(frozen=True)
class Import:
    module: str  # the module imported from (absolute)
    names: tuple[str, ...]  # for ``from module import a, b``; () for ``import module``


def imports(name: str) -> Iterator[Import]:
    """Every import statement of the module, at any depth (in functions, under TYPE_CHECKING)."""
    mod = modules()[name]
    for node in ast.walk(tree(name)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(alias.name, ())
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = mod.package.split(".")
                base = base[: len(base) - node.level + 1]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            yield Import(source, tuple(alias.name for alias in node.names))


def imported_modules(name: str) -> set[str]:
    """The tophat modules this one imports: ``from tophat.http import serialize`` imports the
    module ``tophat.http.serialize``; ``from tophat.http.headers import Headers``,
    ``tophat.http.headers``. (A parent package's ``__init__`` runs too, but that is how packages
    work, not coupling: like import-linter, we do not count it.)"""
    known = modules()
    out = set()
    for imp in imports(name):
        if not imp.module.startswith("tophat"):
            continue
        subs = [f"{imp.module}.{n}" for n in imp.names if f"{imp.module}.{n}" in known]
        out.update(subs)
        if imp.module in known and (len(subs) < len(imp.names) or not imp.names):
            out.add(imp.module)
    out.discard(name)
    return out


def test_the_package_has_modules_to_check() -> None:
    assert {"tophat", "tophat.server.connection", "tophat.http.headers"} <= modules().keys()
    assert "tophat.http.headers" in imported_modules("tophat.server.connection")


def long_modules() -> set[str]:
    return {n for n, m in modules().items() if len(m.path.read_text().splitlines()) > MAX_LINES}


def _check(found: set[Any], allowed: Mapping[Any, str], what: str) -> None:
    new = sorted(found - allowed.keys(), key=repr)
    assert new == [], f"{what}:\n" + "\n".join(map(repr, new))
    stale = sorted(allowed.keys() - found, key=repr)
    assert stale == [], "fixed, take them off the allowlist:\n" + "\n".join(map(repr, stale))


def test_no_module_is_longer_than_max_lines() -> None:
    _check(long_modules(), LONG_MODULES, f"modules over {MAX_LINES} lines (split them)")


def _cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(frozenset(component))
    return found


def test_the_cycle_finder_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert _cycles(graph) == [frozenset("abc")]


def import_cycles() -> set[frozenset[str]]:
    return set(_cycles({name: imported_modules(name) for name in modules()}))


def test_no_import_cycles() -> None:
    _check(import_cycles(), CYCLES, "import cycles (imports in functions count)")


def private_name_imports() -> set[tuple[str, str]]:
    """``from tophat.x import _y`` reaches into x. A private *module* may be imported within its
    own package (``tophat.middleware._forwarded`` by ``tophat.middleware.proxy``)."""
    found = set()
    for name, mod in modules().items():
        for imp in imports(name):
            if not imp.module.startswith("tophat"):
                continue
            parts = imp.module.split(".")
            for at, part in enumerate(parts):
                owner = ".".join(parts[:at])
                if _is_private(part) and not (mod.package + ".").startswith(owner + "."):
                    found.add((name, imp.module))
            for n in imp.names:
                full = f"{imp.module}.{n}"
                if _is_private(n) and not (full in modules() and mod.package == imp.module):
                    found.add((name, full))
    return found


def test_no_private_names_imported_across_modules() -> None:
    _check(private_name_imports(), PRIVATE_NAME_IMPORTS, "private names imported")


def private_dependency_modules() -> set[tuple[str, str]]:
    """Imports of a private module of another package: ``h11._readers``, ``_socket``."""
    found = set()
    for name in modules():
        for imp in imports(name):
            if imp.module.startswith("tophat") or imp.module == "__future__":
                continue
            for full in [imp.module, *(f"{imp.module}.{n}" for n in imp.names)]:
                parts = full.split(".")
                private = [at for at, part in enumerate(parts) if _is_private(part)]
                if private:
                    found.add((name, ".".join(parts[: private[0] + 1])))
    return found


def test_no_private_modules_of_dependencies_are_imported() -> None:
    """h11 (and every other dependency) through its public API only."""
    _check(private_dependency_modules(), PRIVATE_DEPENDENCY_MODULES, "private modules imported")


def _defined_here(module: ast.Module) -> set[str]:
    """Private names this module defines: functions, classes, module and class variables,
    ``self._x``/``cls._x`` assignments, and ``__slots__`` entries."""
    names = set()
    for node in ast.walk(module):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                names.add(node.attr)
        elif (  # __slots__ entries
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value.startswith("_")
            and node.value.isidentifier()
        ):
            names.add(node.value)
    return names


def _is_private(attr: str) -> bool:
    return attr.startswith("_") and not attr.startswith("__")


def private_attributes() -> set[tuple[str, str]]:
    """A heuristic, without types: ``obj._x`` where ``obj`` is not ``self`` or ``cls`` and the
    module does not itself define ``_x`` reaches into another module's object (reading or
    writing it). Another instance of a class of this module (``other._items`` in
    ``Headers.__eq__``) is fine: the module defines ``_items``."""
    found = set()
    for name in modules():
        module = tree(name)
        defined = _defined_here(module)
        for node in ast.walk(module):
            if not isinstance(node, ast.Attribute) or not _is_private(node.attr):
                continue
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            if node.attr in defined or node.attr in PUBLIC_DESPITE_UNDERSCORE:
                continue
            found.add((name, node.attr))
    return found


def test_no_private_attributes_of_other_modules_are_used() -> None:
    _check(private_attributes(), PRIVATE_ATTRIBUTES, "another module's private attributes used")


def test_the_private_attribute_heuristic_sees_a_read_across_modules() -> None:
    module = ast.parse("def f(conn):\n    conn._end_linger()\n    self._ok = 1\n")
    assert "_end_linger" not in _defined_here(module)
    assert "_ok" in _defined_here(module)
