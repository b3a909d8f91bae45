"""Case-insensitive, multi-valued, order-preserving HTTP header fields."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, overload

__all__ = ["Field", "HeaderError", "Headers"]

# RFC 9110 §5.1: field-name = token; tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-"
# / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 9110 §5.5: field-value = *field-content; a field value never contains CR, LF or NUL, and
# we also refuse the other control characters (except HTAB) that no recipient accepts.
# Refusing them when a header is *set* is what makes response splitting impossible.
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]|[^\x00-\xff]")


class HeaderError(ValueError):
    """A header name or value that must never be sent (e.g. contains CR, LF or NUL)."""


# Names that passed check_name -> their lower-case form. Applications use a few dozen names,
# set on every response: remembering them saves a regex match and a lower() each time.
_KNOWN_NAMES: dict[str, str] = {}


def check_name(name: str) -> str:
    """``name`` lower-cased, after checking it is a token."""
    known = _KNOWN_NAMES.get(name) if isinstance(name, str) else None
    if known is not None:
        return known
    if not isinstance(name, str) or _TOKEN.fullmatch(name) is None:
        raise HeaderError(f"invalid header name {name!r}: it must be an RFC 9110 token")
    if len(_KNOWN_NAMES) < 1024:
        _KNOWN_NAMES[name] = name.lower()
    return name.lower()


# Values that passed check_value -> their stripped form, for short values (content types,
# cache directives, ...), which responses set again and again: saves a regex search per set.
_KNOWN_VALUES: dict[str, str] = {}


def check_value(value: str) -> str:
    known = _KNOWN_VALUES.get(value) if type(value) is str else None
    if known is not None:
        return known
    if not isinstance(value, str):
        raise HeaderError(f"header value must be str, not {type(value).__name__}")
    if _BAD_VALUE.search(value) is not None:
        raise HeaderError(
            f"invalid header value {value!r}: CR, LF, NUL, other control characters "
            "and characters outside Latin-1 are refused"
        )
    # RFC 9110 §5.5: leading and trailing whitespace is not part of the field value.
    stripped = value.strip(" \t")
    if len(value) <= 64 and len(_KNOWN_VALUES) < 1024:
        _KNOWN_VALUES[value] = stripped
    return stripped


class Field(tuple[str, str, str]):
    """One header field, validated once: ``(lower-case name, name as given, value)``.

    Building a Field runs the same checks as :meth:`Headers.set` (the one validation point for
    what reaches the wire); :meth:`Headers.set_field` and :meth:`Headers.set_fields` then store
    it as it is. For fields known at configuration time (CORS's allow headers, a default
    content type), so that each request pays no check.

    >>> Field("Vary", "Origin")
    Field('Vary', 'Origin')
    """

    __slots__ = ()

    def __new__(cls, name: str, value: str) -> Field:
        return tuple.__new__(cls, (check_name(name), name, check_value(value)))

    def __repr__(self) -> str:
        return f"Field({self[1]!r}, {self[2]!r})"


class Headers:
    """Header fields: case-insensitive lookup, several values per name, order kept.

    Iterating yields ``(name, value)`` pairs in the order they were received or added, with
    names as given (request header names arrive lower-cased from the parser).

    Every field set through the writing methods is validated (:func:`check_name`,
    :func:`check_value`, or once in advance as a :class:`Field`): that is what makes response
    splitting impossible. Only fields received from a peer skip it (:meth:`from_wire`,
    :meth:`from_sent`), since the parser or the sender already checked them.

    >>> h = Headers([("Accept", "text/html"), ("accept", "text/plain")])
    >>> h.get("ACCEPT"), h.get_all("accept")
    ('text/html', ['text/html', 'text/plain'])
    """

    __slots__ = ("_items", "_raw")

    _items: list[tuple[str, str, str]]  # (lower-cased name, name as given, value)
    _raw: list[tuple[bytes, bytes]] | None  # fields as parsed, not decoded yet (from_wire)

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] | None = None) -> None:
        self._items = []
        if items is not None:
            pairs = items.items() if isinstance(items, Mapping) else items
            for name, value in pairs:
                self.add(name, value)

    # -- constructors for fields already checked (no validation: read the conditions) -----

    @classmethod
    def from_wire(cls, raw: list[tuple[bytes, bytes]]) -> Headers:
        """Fields received from a peer, as a parser gives them: lower-case names, Latin-1.

        Not validated: only for fields a parser already checked (h11, the strict layer, an
        ASGI server). They are decoded on first use: many endpoints never look at most
        requests' fields (~0.2 µs per field saved then).
        """
        h = cls.__new__(cls)
        h._raw = raw
        return h

    @classmethod
    def from_sent(cls, fields: list[tuple[str, str]]) -> Headers:
        """The ``(name, value)`` fields of a response that went out (``ResponseWritten``).

        Not validated: each was checked when set, or is one the server made (framing, Date).
        """
        h = cls.__new__(cls)
        h._items = [(name.lower(), name, value) for name, value in fields]
        return h

    if not TYPE_CHECKING:  # (hidden from type checkers: no attribute should look valid)

        def __getattr__(self, name: str) -> list[tuple[str, str, str]]:
            # Only called while ``_items`` is unset, i.e. for fields made by from_wire.
            if name != "_items":
                raise AttributeError(name)
            raw = object.__getattribute__(self, "_raw")
            self._raw = None
            self._items = [(n := k.decode("latin-1"), n, v.decode("latin-1")) for k, v in raw]
            return self._items

    # -- reading ---------------------------------------------------------------------------

    @overload
    def get(self, name: str) -> str | None: ...
    @overload
    def get(self, name: str, default: str) -> str: ...
    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name``, or ``default`` when absent."""
        key = name.lower()
        for lname, _, value in self._items:
            if lname == key:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, in order (empty when absent)."""
        key = name.lower()
        return [value for lname, _, value in self._items if lname == key]

    def get_list(self, name: str) -> list[str]:
        """Every comma-separated element of a list-based field (RFC 9110 §5.6.1), trimmed.

        Empty elements are dropped, as the RFC requires recipients to do.
        """
        out: list[str] = []
        for value in self.get_all(name):
            out.extend(part.strip(" \t") for part in value.split(",") if part.strip(" \t"))
        return out

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = name.lower()
        return any(lname == key for lname, _, _ in self._items)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for _, name, value in self._items:
            yield name, value

    def items(self) -> list[tuple[str, str]]:
        return [(name, value) for _, name, value in self._items]

    def keys(self) -> list[str]:
        return [name for _, name, _ in self._items]

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(n, v) for n, _, v in self._items] == [(n, v) for n, _, v in other._items]

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Headers({self.items()!r})"

    def copy(self) -> Headers:
        h = Headers.__new__(Headers)
        h._items = list(self._items)
        return h

    def fields(self) -> Iterator[tuple[str, str, str]]:
        """The fields as ``(lower-case name, name as given, value)``, in order, for
        serializers: no pair is built (the name to match on and the name to send both there).
        """
        return iter(self._items)

    # -- writing (validated: no response splitting) ----------------------------------------

    def add(self, name: str, value: str) -> None:
        """Append a value, keeping any existing ones."""
        self._items.append((check_name(name), name, check_value(value)))

    def set(self, name: str, value: str) -> None:
        """Replace every value of ``name`` with ``value`` (kept at the first one's position)."""
        self._set((check_name(name), name, check_value(value)))

    def add_field(self, field: Field) -> None:
        """``add`` for a :class:`Field`, checked when it was built: no check per call."""
        self._items.append(field)

    def set_field(self, field: Field) -> None:
        """``set`` for a :class:`Field`, checked when it was built: no check per call."""
        self._set(field)

    def set_fields(self, fields: list[Field]) -> None:
        """``set_field`` for each of ``fields`` (names distinct); on headers still empty (a
        middleware that runs first, as CORS usually does) they are appended in one go."""
        items = self._items
        if not items:
            items.extend(fields)
            return
        for field in fields:
            self._set(field)

    def _set(self, field: tuple[str, str, str]) -> None:
        key = field[0]
        items = self._items
        for i, (lname, _, _) in enumerate(items):
            if lname == key:
                items[i] = field
                if any(t[0] == key for t in items[i + 1 :]):
                    items[i + 1 :] = [t for t in items[i + 1 :] if t[0] != key]
                return
        items.append(field)

    def setdefault(self, name: str, value: str) -> str:
        existing = self.get(name)
        if existing is not None:
            return existing
        self.add(name, value)
        return self.get(name, value)

    def remove(self, name: str) -> None:
        """Remove every value of ``name`` (no error when absent)."""
        key = name.lower()
        self._items = [t for t in self._items if t[0] != key]

    def __setitem__(self, name: str, value: str) -> None:
        self.set(name, value)

    def __delitem__(self, name: str) -> None:
        if name not in self:
            raise KeyError(name)
        self.remove(name)
