"""Status codes' reason phrases (RFC 9110 §15), one table for the status line and error bodies."""

from __future__ import annotations

from http import HTTPStatus

__all__ = ["reason_phrase"]

# RFC 9110 §15 renamed a few; older Pythons' http.HTTPStatus still has the RFC 7231 phrases.
_PHRASES = {s.value: s.phrase for s in HTTPStatus} | {
    413: "Content Too Large",
    414: "URI Too Long",
    416: "Range Not Satisfiable",
    422: "Unprocessable Content",
}


def reason_phrase(status: int) -> str:
    """The standard reason phrase for ``status`` (empty for unknown codes)."""
    return _PHRASES.get(status, "")
