"""Glitch: an exception that *is* an HTTP response.

Raise a :class:`Glitch` from an endpoint and the server answers with its status, its message as
the body and its headers — keeping headers the handler already set on the writer (CORS headers,
for instance). The body is ``text/plain``, or an RFC 9457 problem details object
(``application/problem+json``: ``type``, ``title``, ``status``, ``detail`` and the Glitch's
extension members) when the request's Accept prefers JSON (``ServerOpts.error_format``). The
cause's text reaches the client only with ``ServerOpts(verbose_glitch=True)``; otherwise it is
only logged::

    raise Glitch.unprocessable([{"field": "title", "message": "must not be empty"}])
    # Accept: application/json -> 422 application/problem+json
    # {"type":"about:blank","title":"Unprocessable Content","status":422,
    #  "detail":"title: must not be empty",
    #  "errors":[{"field":"title","message":"must not be empty"}]}

The helpers chain onto values the way the Rust crate's ``GlitchExt`` does. One style for all:
what is checked first, then ``status`` and ``message`` (positional or keyword), then
``errors=`` (which exceptions become the Glitch; others propagate as bugs)::

    user = ok_or(users.get(uid), 404, "no such user")                  # None -> 404
    n = call(int, raw, status=400, message="id must be a number", errors=ValueError)
    row = await awaiting(db.fetch(uid), 503, "database unavailable", errors=OSError)
    with catching(400, "invalid JSON", errors=ValueError):
        payload = json.loads(raw)
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from typing_extensions import TypeVarTuple, Unpack

from tophat.http.headers import Headers
from tophat.http.status import reason_phrase

__all__ = ["ABOUT_BLANK", "Glitch", "awaiting", "call", "catching", "ok_or", "reason_phrase"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

#: RFC 9457 §4.2.1: the default problem type, "no additional semantics beyond the status code".
ABOUT_BLANK = "about:blank"
#: RFC 9457 §3.1: the standard members; an extension may not take their names.
_RESERVED = frozenset({"type", "title", "status", "detail", "instance"})
#: RFC 9457 §3.2: extension member names SHOULD start with a letter, be made of ALPHA, DIGIT
#: and "_", and be three characters or longer (so they can be XML names). Held to it: a name
#: outside it fails when the Glitch is made, not in a client's parser.
_MEMBER_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{2,}\Z")
_NO_EXTENSIONS: Mapping[str, Any] = {}


class Glitch(Exception):
    """An HTTP error response, raised.

    Args:
        status: the response status (400-599 in practice; any final code 200-599 is accepted,
            e.g. a 303 with a Location header).
        message: text for the body (the problem's ``detail``); defaults to the reason phrase
            (``"Not Found"``) as text, and to no ``detail`` in problem+json.
        headers: extra headers for the response, added to those already set on the writer.
        cause: the underlying exception; its text is shown only with ``verbose_glitch``.
            ``raise Glitch(...) from exc`` sets it too.
        type: the problem type, a URI reference (RFC 9457 §3.1.1); ``"about:blank"`` (the
            default) means the status says it all.
        title: the problem type's short summary, only with a ``type`` of your own (with
            ``about:blank`` the title is the status phrase, RFC 9457 §4.2.1).
        instance: a URI reference for this occurrence (RFC 9457 §3.1.5).
        extensions: more members of the problem object, e.g. ``{"errors": [...]}`` or
            ``{"balance": 30}``: JSON values, names of three or more letters, digits and
            ``_`` starting with a letter, none of the standard member names.

    Raises:
        ValueError: for a status outside 200-599, a title with ``about:blank``, or an
            extension member name that is reserved or not a name RFC 9457 §3.2 allows.
        TypeError: for extensions that are not JSON values.
    """

    status: int
    message: str | None
    headers: Headers
    type: str
    title: str | None
    instance: str | None
    extensions: Mapping[str, Any]

    def __init__(
        self,
        status: int = 500,
        message: str | None = None,
        *,
        headers: Mapping[str, str] | list[tuple[str, str]] | Headers | None = None,
        cause: BaseException | None = None,
        type: str = ABOUT_BLANK,
        title: str | None = None,
        instance: str | None = None,
        extensions: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(status, int) or not 200 <= status <= 599:
            # A 1xx is not a final response: it cannot stand for the answer to a request.
            raise ValueError(f"Glitch status must be an int in 200-599, got {status!r}")
        super().__init__(status, message)
        self.status = status
        self.message = message
        self.headers = headers.copy() if isinstance(headers, Headers) else Headers(headers)
        if cause is not None:
            self.__cause__ = cause
        if not isinstance(type, str) or not type:
            raise ValueError("Glitch type must be a non-empty URI reference")
        if title is not None and type == ABOUT_BLANK:
            raise ValueError(
                "a Glitch title goes with a type of your own: with about:blank the title is the "
                "status phrase (RFC 9457 §4.2.1); put this occurrence's text in the message"
            )
        self.type = type
        self.title = title
        self.instance = instance
        self.extensions = _NO_EXTENSIONS if not extensions else _checked(extensions)

    @property
    def cause(self) -> BaseException | None:
        return self.__cause__

    def body_text(self, verbose: bool) -> str:
        """The body sent to the client: the message, plus the cause only when verbose."""
        text = self.message if self.message is not None else reason_phrase(self.status)
        if verbose and self.__cause__ is not None:
            cause = self.__cause__
            text = f"{text}: {type(cause).__name__}: {cause}" if text else str(cause)
        return text

    def problem(self, verbose: bool = False) -> dict[str, Any]:
        """This Glitch as an RFC 9457 problem details object (what problem+json sends).

        ``detail`` is the message (with the cause only when ``verbose``), absent when there is
        neither; extension members follow the standard ones.
        """
        title = self.title if self.title is not None else reason_phrase(self.status)
        problem: dict[str, Any] = {"type": self.type, "title": title, "status": self.status}
        if self.message is not None or (verbose and self.__cause__ is not None):
            detail = self.body_text(verbose)
            if detail:
                problem["detail"] = detail
        if self.instance is not None:
            problem["instance"] = self.instance
        if self.extensions:
            problem.update(self.extensions)
        return problem

    def __str__(self) -> str:
        return f"{self.status} {self.message or reason_phrase(self.status)}"

    def __repr__(self) -> str:
        return f"Glitch({self.status!r}, {self.message!r})"

    # -- common statuses --------------------------------------------------------------------

    @classmethod
    def bad_request(
        cls, message: str | None = None, *, errors: Sequence[Mapping[str, Any]] | None = None
    ) -> Glitch:
        """400; ``errors`` (e.g. ``[{"field": "limit", "message": "..."}]``) becomes the
        problem's ``errors`` member, and the message when there is none."""
        return cls._with_errors(400, message, errors)

    @classmethod
    def unauthorized(cls, message: str | None = None, *, challenge: str) -> Glitch:
        """401; ``challenge`` is the WWW-Authenticate value, e.g. ``'Bearer realm="api"'``.

        RFC 9110 §15.5.2: a 401 MUST carry WWW-Authenticate with at least one challenge, so
        it is required here.
        """
        return cls(401, message, headers=[("www-authenticate", challenge)])

    @classmethod
    def forbidden(cls, message: str | None = None) -> Glitch:
        return cls(403, message)

    @classmethod
    def not_found(cls, message: str | None = None) -> Glitch:
        return cls(404, message)

    @classmethod
    def method_not_allowed(cls, allow: list[str], message: str | None = None) -> Glitch:
        # RFC 9110 §15.5.6: the origin server MUST generate an Allow header field in a 405.
        return cls(405, message, headers=[("allow", ", ".join(allow))])

    @classmethod
    def conflict(cls, message: str | None = None) -> Glitch:
        return cls(409, message)

    @classmethod
    def unprocessable(
        cls,
        message: str | Sequence[Mapping[str, Any]] | None = None,
        *,
        errors: Sequence[Mapping[str, Any]] | None = None,
    ) -> Glitch:
        """422, for a request whose content is well-formed but invalid.

        ``Glitch.unprocessable([{"field": "title", "message": "must not be empty"}])`` (or
        ``errors=`` beside a message) puts the list in the problem's ``errors`` member; without
        a message, the text body says ``title: must not be empty``.
        """
        if message is not None and not isinstance(message, str):
            message, errors = None, message
        return cls._with_errors(422, message, errors)

    @classmethod
    def _with_errors(
        cls, status: int, message: str | None, errors: Sequence[Mapping[str, Any]] | None
    ) -> Glitch:
        if errors is None:
            return cls(status, message)
        if isinstance(errors, str | Mapping):
            raise TypeError("errors is a list of objects, e.g. [{'field': ..., 'message': ...}]")
        errors = [dict(e) for e in errors]
        if message is None:
            said = [
                f"{e['field']}: {e['message']}" if e.get("field") else e["message"]
                for e in errors
                if isinstance(e.get("message"), str) and isinstance(e.get("field", ""), str)
            ]
            message = "; ".join(said) or None
        return cls(status, message, extensions={"errors": errors})

    @classmethod
    def too_many_requests(cls, message: str | None = None) -> Glitch:
        return cls(429, message)

    @classmethod
    def internal(cls, message: str | None = None) -> Glitch:
        return cls(500, message)

    @classmethod
    def bad_gateway(cls, message: str | None = None) -> Glitch:
        return cls(502, message)

    @classmethod
    def service_unavailable(cls, message: str | None = None) -> Glitch:
        return cls(503, message)


def _checked(extensions: Mapping[str, Any]) -> Mapping[str, Any]:
    for name in extensions:
        if not isinstance(name, str) or name in _RESERVED or not _MEMBER_NAME.match(name):
            raise ValueError(
                f"Glitch extension member {name!r}: not one of {sorted(_RESERVED)}, and 3+ "
                "letters, digits or '_' starting with a letter (RFC 9457 §3.2)"
            )
    extensions = dict(extensions)
    try:
        # Checked now, where the bug is, rather than when the response is rendered.
        json.dumps(extensions, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"Glitch extensions must be JSON values (no NaN): {exc}") from None
    return extensions


# -- GlitchExt-style helpers ------------------------------------------------------------------

_Errors = type[BaseException] | tuple[type[BaseException], ...]


def ok_or(value: T | None, status: int = 404, message: str | None = None) -> T:
    """Return ``value``, or raise ``Glitch(status, message)`` when it is ``None``.

    >>> ok_or({"a": 1}.get("a"), 404)
    1
    """
    if value is None:
        raise Glitch(status, message)
    return value


@contextlib.contextmanager
def catching(
    status: int = 500, message: str | None = None, *, errors: _Errors = Exception
) -> Iterator[None]:
    """Turn ``errors`` raised inside the ``with`` block into ``Glitch(status, message)``.

    The original exception becomes the Glitch's cause. A Glitch raised inside passes through
    unchanged. Also usable as a decorator on plain functions.
    """
    try:
        yield
    except Glitch:
        raise
    except errors as exc:
        raise Glitch(status, message, cause=exc) from exc


def call(
    fn: Callable[[Unpack[Ts]], T],
    /,
    *args: Unpack[Ts],
    status: int = 500,
    message: str | None = None,
    errors: _Errors = Exception,
) -> T:
    """Return ``fn(*args)``; ``errors`` it raises become ``Glitch(status, message)``.

    Name the errors you expect (``errors=ValueError``): with the default, a ``TypeError`` from a
    bug would become the client's fault too. Keyword arguments for ``fn``: wrap it in
    ``functools.partial``.

    >>> call(int, "42", status=400, message="id must be a number", errors=ValueError)
    42
    """
    with catching(status, message, errors=errors):
        return fn(*args)


async def awaiting(
    aw: Awaitable[T],
    status: int = 500,
    message: str | None = None,
    *,
    errors: _Errors = Exception,
) -> T:
    """Await ``aw``; an exception it raises becomes ``Glitch(status, message)``."""
    with catching(status, message, errors=errors):
        return await aw
