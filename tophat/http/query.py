"""Query and path parameters, with typed getters that answer a bad value with a 400.

``req.query.get_int("limit", default=20, min=1, max=100)`` returns an ``int`` in range, the
default when the parameter is absent, or raises ``Glitch(400)`` naming the parameter and what
was expected, with an ``errors`` member, so a JSON client gets::

    {"type": "about:blank", "title": "Bad Request", "status": 400,
     "detail": "query parameter 'limit': expected an integer between 1 and 100",
     "errors": [{"field": "limit", "message": "expected an integer between 1 and 100"}]}

The rules, the same for every getter:

* **Absent or empty is missing.** ``?limit=`` is what an HTML form sends for a field left
  empty: it means "not given", so the default applies. Missing with no default is a 400.
* **One value.** ``?limit=5&limit=500`` is a 400, not the first or the last: layers that
  disagree on which one counts (a proxy's check, the application's read) are how parameter
  pollution slips through, so the strict choice is to refuse. ``get_list`` takes repeats.
* **Strict text.** Integers are ASCII digits with an optional sign (no ``_``, no spaces, no
  other scripts' digits, all of which ``int()`` accepts); floats are decimal literals and
  finite (no ``nan``, ``inf``, or ``1e999`` which overflows to inf); booleans are ``true``/
  ``false``, ``1``/``0``, ``yes``/``no``, ``on``/``off`` in any letter case.
* **The value is never echoed** in the error: it is the client's own input, and the message
  says what was expected, which is what a client can act on.

Path parameters (``req.params``) have the same getters: the router's converters
(``:id<int>``, ``:id<uuid>``) already convert, and answer a value that does not fit with a 404
(no such resource); the getters add what they lack: bounds, floats, booleans, choices, and a
static type (``req.params["id"]`` is ``Any``). A path parameter the route does not have is a
bug in the application, not the client's: ``KeyError``, hence a 500.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NoReturn, TypeVar, overload
from urllib.parse import parse_qsl

from tophat.glitch import Glitch

__all__ = ["Params", "Query"]

T = TypeVar("T")
D = TypeVar("D")
S = TypeVar("S", bound=str)
E = TypeVar("E", bound=enum.Enum)


class _Missing(enum.Enum):
    MISSING = enum.auto()


_MISSING = _Missing.MISSING

_INT = re.compile(r"[-+]?[0-9]+")
_FLOAT = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_BOOLS = {"true": True, "1": True, "yes": True, "on": True}
_BOOLS |= {"false": False, "0": False, "no": False, "off": False}
_ITEMS: dict[object, str] = {int: "integers", float: "numbers", bool: "booleans", str: "values"}
#: Default most items ``get_list`` takes: a bound, as every limit here (secure defaults).
MAX_ITEMS = 100


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


class _Typed:
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
        default: Any = _MISSING,
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
            if default is _MISSING:
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
        default: Any = _MISSING,
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
            if default is _MISSING:
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
    def get_bool(self, name: str, *, default: Any = _MISSING) -> Any:
        """The parameter as a bool: ``true``/``false``, ``1``/``0``, ``yes``/``no``,
        ``on``/``off``, in any letter case; ``default`` when missing.

        Raises:
            Glitch: 400 when missing without a default, or another value.
        """
        expected = "true or false"
        raw = self._one(name, expected)
        if raw is None:
            if default is _MISSING:
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
    def get_choice(self, name: str, choices: Any, *, default: Any = _MISSING) -> Any:
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
            if default is _MISSING:
                self._missing(name, expected)
            return default
        if not isinstance(raw, str) or raw not in table:
            self._bad(name, f"expected {expected}")
        return table[raw]


class Query(_Typed):
    """Parsed query string: several values per name, order kept; typed getters that answer
    a missing or bad value with a 400 (see the module doc).

    >>> q = Query("a=1&b=2&a=3&limit=20")
    >>> q.get("a"), q.get_all("a"), "b" in q, q.get_int("limit", min=1, max=100)
    ('1', ['1', '3'], True, 20)
    """

    __slots__ = ("_pairs",)
    _where = "query parameter"

    def __init__(self, query_string: str) -> None:
        self._pairs = parse_qsl(query_string, keep_blank_values=True)

    def get(self, name: str, default: str | None = None) -> str | None:
        for key, value in self._pairs:
            if key == name:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        return [value for key, value in self._pairs if key == name]

    def items(self) -> list[tuple[str, str]]:
        return list(self._pairs)

    def _one(self, name: str, expected: str) -> str | None:
        values = [value for key, value in self._pairs if key == name and value]
        if len(values) > 1:
            self._bad(name, f"expected a single value ({expected}), got {len(values)}")
        return values[0] if values else None

    @overload
    def get_list(
        self, name: str, *, max_items: int = ..., split: str | None = ...
    ) -> list[str]: ...
    @overload
    def get_list(
        self, name: str, item: Callable[[str], T], *, max_items: int = ..., split: str | None = ...
    ) -> list[T]: ...
    @overload
    def get_list(
        self, name: str, *, default: D, max_items: int = ..., split: str | None = ...
    ) -> list[str] | D: ...
    @overload
    def get_list(
        self,
        name: str,
        item: Callable[[str], T],
        *,
        default: D,
        max_items: int = ...,
        split: str | None = ...,
    ) -> list[T] | D: ...
    def get_list(
        self,
        name: str,
        item: Callable[[str], Any] = str,
        *,
        default: Any = _MISSING,
        max_items: int = MAX_ITEMS,
        split: str | None = None,
    ) -> Any:
        """Every value of a repeated parameter (``?tag=a&tag=b``), each converted by ``item``.

        Repeated keys are the list form HTML forms (a multiple select, checkboxes), httpx,
        requests and OpenAPI's default (``style=form, explode=true``) produce, and a value
        may then hold any character, commas included. ``split=","`` also splits each value
        (OpenAPI ``explode=false``: ``?tag=a,b``) for clients that send that. Empty values
        and pieces are skipped; none left is missing.

        ``item`` is ``str`` (the default), ``int``, ``float`` or ``bool``, read as
        :meth:`get_int`, :meth:`get_float` and :meth:`get_bool` read them, or any callable
        that raises ``ValueError`` on a bad value (``uuid.UUID``, ``datetime.date.fromisoformat``).

        Raises:
            Glitch: 400 when missing without a default, over ``max_items`` values, or a
                value ``item`` refuses.
        """
        kind = _ITEMS.get(item) or f"{getattr(item, '__name__', 'valid')} values"
        values = [value for key, value in self._pairs if key == name and value]
        if split is not None:
            values = [piece for value in values for piece in value.split(split) if piece]
        if not values:
            if default is _MISSING:
                self._missing(name, f"a list of {kind}")
            return default
        if len(values) > max_items:
            self._bad(name, f"expected at most {max_items} {kind}, got {len(values)}")
        parse = _PARSERS.get(item)
        out: list[Any] = []
        for index, value in enumerate(values, 1):
            if parse is not None:
                converted = parse(value)
            else:
                try:
                    converted = item(value)
                except ValueError:
                    converted = None
            if converted is None:
                self._bad(name, f"expected a list of {kind}; item {index} is not one")
            out.append(converted)
        return out

    def __contains__(self, name: object) -> bool:
        return any(key == name for key, _ in self._pairs)

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(key for key, _ in self._pairs))

    def __len__(self) -> int:
        return len(self._pairs)

    def __repr__(self) -> str:
        return f"Query({self._pairs!r})"


_PARSERS: dict[object, Callable[[str], Any]] = {
    int: parse_int,
    float: parse_float,
    bool: parse_bool,
    str: lambda text: text,
}


class Params(dict[str, Any], _Typed):
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
