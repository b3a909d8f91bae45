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

from collections.abc import Callable, Iterator
from typing import Any, TypeVar, overload
from urllib.parse import parse_qsl

from tophat.http.params import MISSING, PARSERS, TypedGetters

__all__ = ["MAX_ITEMS", "Query"]

T = TypeVar("T")
D = TypeVar("D")

_ITEMS: dict[object, str] = {int: "integers", float: "numbers", bool: "booleans", str: "values"}
#: Default most items ``get_list`` takes: a bound, as every limit here (secure defaults).
MAX_ITEMS = 100


class Query(TypedGetters):
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
        default: Any = MISSING,
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
            if default is MISSING:
                self._missing(name, f"a list of {kind}")
            return default
        if len(values) > max_items:
            self._bad(name, f"expected at most {max_items} {kind}, got {len(values)}")
        parse = PARSERS.get(item)
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
