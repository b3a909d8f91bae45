"""``MODULE:ATTR``: import the target and check that it is an endpoint before serving it.

A sync function, a class, a coroutine function of one argument or anything else that is not
``async (req, w) -> ...`` would log "listening" and then answer every request with a 500; it is
refused at start-up instead, with one line naming what was found.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from tophat.http.endpoint import Endpoint

__all__ = ["CliError", "endpoint_problem", "load_endpoint", "source_dir"]

SHAPE = '"async def app(req, w)"'


class CliError(Exception):
    """A mistake on the command line: the CLI prints ``error: <message>`` and exits 2."""


def _split(spec: str) -> tuple[str, str]:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise CliError(f"expected MODULE:ATTR (e.g. examples.hello:app), got {spec!r}")
    return module_name, attr


def _importable_from_cwd() -> None:
    # As ``python -m`` does: the app is found relative to where the command runs.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())


def load_endpoint(spec: str) -> Endpoint:
    """Import ``MODULE:ATTR`` (``ATTR`` may be dotted) and return it if it is an endpoint.

    An exception raised by the module's own code while it is imported is not caught: its
    traceback is what the user needs. A module that is not there is a ``CliError``.

    Raises:
        CliError: the spec is malformed, names nothing, or names something that is not an
            endpoint (see ``endpoint_problem``).
    """
    module_name, attr = _split(spec)
    _importable_from_cwd()
    try:
        obj: object = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            raise CliError(
                f"no module named {missing!r} (run from the directory that holds it)"
            ) from None
        raise CliError(f"importing {module_name!r} failed: {exc}") from None
    except ImportError as exc:
        raise CliError(f"importing {module_name!r} failed: {exc}") from None
    seen = module_name
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise CliError(f"{seen!r} has no attribute {part!r}") from None
        seen += ("." if seen != module_name else ":") + part
    problem = endpoint_problem(obj)
    if problem is not None:
        raise CliError(f"{spec} is {problem}; an endpoint is {SHAPE}")
    return cast(Endpoint, obj)


def endpoint_problem(obj: object) -> str | None:
    """What ``obj`` is, if it is not ``async (req, w)``; ``None`` if it is an endpoint.

    Accepted: a coroutine function (or a ``functools.partial`` or ``functools.wraps`` wrapper
    of one) taking two positional arguments, and an object whose ``__call__`` is one — a
    ``Router``, a ``chain(...)``-wrapped endpoint, an instance of your own class.
    """
    if inspect.isclass(obj):
        return f"a class ({obj.__name__}), not an instance"
    if inspect.ismodule(obj):
        return "a module"
    if not callable(obj):
        return f"{_a(type(obj).__name__)}, not callable"
    fn = _coroutine_function(obj)
    if fn is None:
        if inspect.isroutine(obj) or isinstance(obj, functools.partial):
            return "a sync function"
        return f"an instance of {type(obj).__name__} whose __call__ is not async"
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # no signature to read (a builtin): take it on trust
        return None
    try:
        signature.bind(None, None)
    except TypeError:
        params = ", ".join(signature.parameters)
        if fn is obj:
            return f"an async function taking ({params})"
        return f"an instance of {type(obj).__name__} whose __call__ takes ({params})"
    return None


def _a(noun: str) -> str:
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def _coroutine_function(obj: object) -> Callable[..., object] | None:
    fn: Callable[..., Any] = obj  # type: ignore[assignment]  # (callable: checked before)
    if inspect.iscoroutinefunction(fn):
        return fn
    if not inspect.isroutine(fn):
        call = getattr(fn, "__call__", None)  # noqa: B004 - the bound method, to inspect
        if inspect.iscoroutinefunction(call):
            return call
    try:
        inner = inspect.unwrap(fn)
    except ValueError:  # a __wrapped__ cycle
        return None
    # A functools.wraps wrapper of a coroutine function returns its coroutine.
    return fn if inner is not fn and inspect.iscoroutinefunction(inner) else None


def source_dir(spec: str) -> Path:
    """The directory to watch for ``--reload``: the target's top-level package, or the
    directory of a top-level module. Found without importing it.

    Raises:
        CliError: the spec is malformed or its module is not there.
    """
    module_name, _ = _split(spec)
    _importable_from_cwd()
    top = module_name.partition(".")[0]
    try:
        found = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        found = None
    if found is None:
        raise CliError(f"no module named {top!r} (run from the directory that holds it)")
    if found.submodule_search_locations:
        return Path(next(iter(found.submodule_search_locations))).resolve()
    if found.origin is None or not os.path.exists(found.origin):
        raise CliError(f"{top!r} has no source file to watch (a builtin or frozen module)")
    return Path(found.origin).resolve().parent
