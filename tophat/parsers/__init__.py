"""The request parsers: h11 (the reference, ``h11_parser``) and httptools (the ``fast`` extra,
``httptools_parser``), behind the event interface of ``events``. ``make_parser`` makes the one
``ServerOpts.parser`` names.
"""

from __future__ import annotations

from typing import Literal

from tophat.parsers.events import DEFAULT_MAX_FIELDS, Parser, ParserName
from tophat.parsers.h11_parser import H11Parser

__all__ = ["AUTO", "make_parser", "preload", "resolve_parser"]


def resolve_parser(name: ParserName) -> Literal["h11", "httptools"]:
    """``auto`` is httptools when the ``fast`` extra is installed, else h11 (the reference)."""
    if name != "auto":
        return name
    return "httptools" if AUTO == "httptools" and _have_httptools() else "h11"


def _have_httptools() -> bool:
    try:
        import httptools  # noqa: F401
    except ImportError:
        return False
    return True


#: What ``parser="auto"`` means in this process: "httptools" (when installed) or "h11".
AUTO: Literal["h11", "httptools"] = "httptools"


def make_parser(
    name: ParserName, max_head_size: int, max_fields: int = DEFAULT_MAX_FIELDS
) -> Parser:
    """A parser; ``max_head_size`` and ``max_fields`` bound a head and its trailer section
    together (the trailers of a chunked request count against the head's limits)."""
    if resolve_parser(name) == "httptools":
        from tophat.parsers.httptools_parser import HttptoolsParser  # (an optional extra)

        return HttptoolsParser(max_head_size, max_fields)
    return H11Parser(max_head_size, max_fields)


def preload(name: ParserName) -> None:
    """Import what the parser ``name`` needs now, when a server starts: the first connection
    must not import a module (out of descriptors, an import fails, and so did every connection
    accepted meanwhile: they stayed open, unserved)."""
    make_parser(name, 1)
