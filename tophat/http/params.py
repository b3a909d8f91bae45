"""Typed parameter values: the strict text parsers, the getters that answer a missing or bad
value with ``Glitch(400)``, and :class:`Params`, a request's path parameters.

The rules are in :mod:`tophat.http.query`'s doc; :class:`~tophat.http.query.Query` has the
same getters, plus ``get_list``.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NoReturn, TypeVar, overload

from tophat.glitch import Glitch

__all__ = [
    "MISSING",
    "NO_PARAMS",
    "PARSERS",
    "Params",
    "TypedGetters",
    "as_params",
    "parse_bool",
    "parse_float",
    "parse_int",
]

D = TypeVar("D")
S = TypeVar("S", bound=str)
E = TypeVar("E", bound=enum.Enum)


class _Missing(enum.Enum):
    MISSING = enum.auto()


MISSING = _Missing.MISSING

_INT = re.compile(r"[-+]?[0-9]+")
_FLOAT = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_BOOLS = {"true": True, "1": True, "yes": True, "on": True}
_BOOLS |= {"false": False, "0": False, "no": False, "off": False}


def _number(kind: str, min: float | None, max: float | None) -> str:
    if min is not None and max is not None:
        return f"{kind} between {min} and {max}"
    if min is not None:
        return f"{kind} of at least {min}"
    if max is not None:
        return f"{kind} of at most {max}"
    return kind


def _in_range(value: float, min: float | None, max: float | None) -> bool:
    return (min is None or value >= min) and (max is None or value <= max)


def parse_int(text: str) -> int | None:
    """``text`` as an int, or None when it is not one (strictly, see the module doc)."""
    if not _INT.fullmatch(text):
        return None
    try:
        return int(text)
    except ValueError:  # past Python's int-parsing digit limit (CVE-2020-10735 guard)
        return None


def parse_float(text: str) -> float | None:
    """``text`` as a finite float, or None."""
    if not _FLOAT.fullmatch(text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def parse_bool(text: str) -> bool | None:
    """``text`` as a bool (true/false, 1/0, yes/no, on/off, any case), or None."""
    return _BOOLS.get(text.lower()) if text.isascii() else None


class TypedGetters:
    """The typed getters, over ``_one(name)`` (the raw value, or None when missing)."""

    __slots__ = ()
    _where = "parameter"

    def _one(self, name: str, expected: str) -> Any:  # pragma: no cover (abstract)
        raise NotImplementedError

    def _bad(self, name: str, message: str) -> NoReturn:
        raise Glitch.bad_request(
            f"{self._where} {name!r}: {message}",
            errors=[{"field": name, "message": message}],
        )

    def _missing(self, name: str, expected: str) -> NoReturn:
        self._bad(name, f"missing, expected {expected}")

    @overload
    def get_int(self, name: str, *, min: int | None = ..., max: int | None = ...) -> int: ...
    @overload
    def get_int(
        self, name: str, *, default: D, min: int | None = ..., max: int | None = ...
    ) -> int | D: ...
    def get_int(
        self,
        name: str,
        *,
        default: Any = MISSING,
        min: int | None = None,
        max: int | None = None,
    ) -> Any:
        """The parameter as an int in ``[min, max]``; ``default`` when missing.

        Raises:
            Glitch: 400 when missing without a default, not an integer, or out of range.
        """
        expected = _number("an integer", min, max)
        raw = self._one(name, expected)
        if raw is None:
            if default is MISSING:
                self._missing(name, expected)
            return default
        value = raw if isinstance(raw, int) and not isinstance(raw, bool) else None
        if value is None and isinstance(raw, str):
            value = parse_int(raw)
        if value is None or not _in_range(value, min, max):
            self._bad(name, f"expected {expected}")
        return value

    @overload
    def get_float(
        self, name: str, *, min: float | None = ..., max: float | None = ...
    ) -> float: ...
    @overload
    def get_float(
        self, name: str, *, default: D, min: float | None = ..., max: float | None = ...
    ) -> float | D: ...
    def get_float(
        self,
        name: str,
        *,
        default: Any = MISSING,
        min: float | None = None,
        max: float | None = None,
    ) -> Any:
        """The parameter as a finite float in ``[min, max]``; ``default`` when missing.

        Raises:
            Glitch: 400 when missing without a default, not a finite number, or out of range.
        """
        expected = _number("a number", min, max)
        raw = self._one(name, expected)
        if raw is None:
            if default is MISSING:
                self._missing(name, expected)
            return default
        value = parse_float(raw) if isinstance(raw, str) else None
        if value is None or not _in_range(value, min, max):
            self._bad(name, f"expected {expected}")
        return value

    @overload
    def get_bool(self, name: str) -> bool: ...
    @overload
    def get_bool(self, name: str, *, default: D) -> bool | D: ...
    def get_bool(self, name: str, *, default: Any = MISSING) -> Any:
        """The parameter as a bool: ``true``/``false``, ``1``/``0``, ``yes``/``no``,
        ``on``/``off``, in any letter case; ``default`` when missing.

        Raises:
            Glitch: 400 when missing without a default, or another value.
        """
        expected = "true or false"
        raw = self._one(name, expected)
        if raw is None:
            if default is MISSING:
                self._missing(name, expected)
            return default
        value = parse_bool(raw) if isinstance(raw, str) else None
        if value is None:
            self._bad(name, f"expected {expected}")
        return value

    @overload
    def get_choice(  # type: ignore[overload-overlap]  # (a StrEnum fits both: same result)
        self, name: str, choices: type[E]
    ) -> E: ...
    @overload
    def get_choice(  # type: ignore[overload-overlap]  # (the same)
        self, name: str, choices: type[E], *, default: D
    ) -> E | D: ...
    @overload
    def get_choice(self, name: str, choices: Iterable[S]) -> S: ...
    @overload
    def get_choice(self, name: str, choices: Iterable[S], *, default: S) -> S: ...
    @overload
    def get_choice(self, name: str, choices: Iterable[S], *, default: D) -> S | D: ...
    def get_choice(self, name: str, choices: Any, *, default: Any = MISSING) -> Any:
        """The parameter, one of ``choices`` (exactly, letter case included); ``default``
        when missing.

        ``choices`` is strings (``("asc", "desc")``; a ``Literal`` type for them makes the
        result that type), or an Enum class whose values are strings: its member is returned.

        Raises:
            Glitch: 400 when missing without a default, or not one of them.
            TypeError: when ``choices`` is a str, or an Enum with a value that is not one.
        """
        if isinstance(choices, str):
            raise TypeError("choices is a collection of strings, not one string")
        table: dict[str, Any] = {}
        for choice in choices:
            key = choice.value if isinstance(choice, enum.Enum) else choice
            if not isinstance(key, str):
                raise TypeError(f"choices are strings (or Enum values that are), not {key!r}")
            table[key] = choice
        expected = "one of " + ", ".join(repr(key) for key in table)
        raw = self._one(name, expected)
        if raw is None:
            if default is MISSING:
                self._missing(name, expected)
            return default
        if not isinstance(raw, str) or raw not in table:
            self._bad(name, f"expected {expected}")
        return table[raw]


PARSERS: dict[object, Callable[[str], Any]] = {
    int: parse_int,
    float: parse_float,
    bool: parse_bool,
    str: lambda text: text,
}


class Params(dict[str, Any], TypedGetters):
    """A request's path parameters (``req.params``): a read-only mapping of what the router
    captured (converted by ``<int>``/``<uuid>``), with the typed getters of :class:`Query`.

    A name the route does not capture raises ``KeyError`` (a bug, so a 500), unlike a missing
    query parameter.
    """

    __slots__ = ()
    _where = "path parameter"

    def _one(self, name: str, expected: str) -> Any:
        value = self[name]  # KeyError: the route has no such parameter
        return value if value != "" else None

    def _refuse(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError("req.params is read-only (set req.params to a new mapping instead)")

    __setitem__ = __delitem__ = _refuse
    clear = pop = popitem = setdefault = update = __ior__ = _refuse

    def __repr__(self) -> str:
        return f"Params({dict.__repr__(self)})"


#: ``req.params`` of a request no router matched (shared: read-only).
NO_PARAMS = Params()


def as_params(params: Mapping[str, Any]) -> Params:
    """``params`` as :class:`Params` (itself when it already is)."""
    return params if isinstance(params, Params) else Params(params)
