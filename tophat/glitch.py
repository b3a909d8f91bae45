"""Glitch: an exception that *is* an HTTP response.

Raise a :class:`Glitch` from an endpoint and the server answers with its status, its message as a
``text/plain`` body and its headers — keeping headers the handler already set on the writer (CORS
headers, for instance). The cause's text reaches the client only with
``ServerOpts(verbose_glitch=True)``; otherwise it is only logged.

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
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import TypeVar

from typing_extensions import TypeVarTuple, Unpack

from tophat.http.headers import Headers
from tophat.http.status import reason_phrase

__all__ = ["Glitch", "awaiting", "call", "catching", "ok_or", "reason_phrase"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


class Glitch(Exception):
    """An HTTP error response, raised.

    Args:
        status: the response status (400-599 in practice; any final code 200-599 is accepted,
            e.g. a 303 with a Location header).
        message: text for the body; defaults to the reason phrase (``"Not Found"``).
        headers: extra headers for the response, added to those already set on the writer.
        cause: the underlying exception; its text is shown only with ``verbose_glitch``.
            ``raise Glitch(...) from exc`` sets it too.

    Raises:
        ValueError: for a status outside 200-599.
    """

    status: int
    message: str | None
    headers: Headers

    def __init__(
        self,
        status: int = 500,
        message: str | None = None,
        *,
        headers: Mapping[str, str] | list[tuple[str, str]] | Headers | None = None,
        cause: BaseException | None = None,
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

    def __str__(self) -> str:
        return f"{self.status} {self.message or reason_phrase(self.status)}"

    def __repr__(self) -> str:
        return f"Glitch({self.status!r}, {self.message!r})"

    # -- common statuses --------------------------------------------------------------------

    @classmethod
    def bad_request(cls, message: str | None = None) -> Glitch:
        return cls(400, message)

    @classmethod
    def unauthorized(cls, message: str | None = None, *, challenge: str) -> Glitch:
        """401; ``challenge`` is the WWW-Authenticate value, e.g. ``'Bearer realm="api"'``.

        RFC 9110 §15.5.2: a 401 MUST carry WWW-Authenticate with at least one challenge, so
        it is required here.
        """
        return cls(401, message, headers=[("WWW-Authenticate", challenge)])

    @classmethod
    def forbidden(cls, message: str | None = None) -> Glitch:
        return cls(403, message)

    @classmethod
    def not_found(cls, message: str | None = None) -> Glitch:
        return cls(404, message)

    @classmethod
    def method_not_allowed(cls, allow: list[str], message: str | None = None) -> Glitch:
        # RFC 9110 §15.5.6: the origin server MUST generate an Allow header field in a 405.
        return cls(405, message, headers=[("Allow", ", ".join(allow))])

    @classmethod
    def conflict(cls, message: str | None = None) -> Glitch:
        return cls(409, message)

    @classmethod
    def unprocessable(cls, message: str | None = None) -> Glitch:
        return cls(422, message)

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
