"""Request: what the client asked for, with a body read lazily from the connection."""

from __future__ import annotations

import json as _json
import logging
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import unquote

from tophat.http.charset import charset
from tophat.http.cookies import Cookies, parse_cookies
from tophat.http.headers import Headers
from tophat.http.params import NO_PARAMS, Params, as_params
from tophat.http.query import Query

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from typing_extensions import Unpack

    from tophat.http.forms import FormData
    from tophat.http.multipart import FormLimitArgs, MultipartReader

__all__ = [
    "DATA_KEY",
    "NEVER_DISCONNECTED",
    "NEVER_STOPPING",
    "ROUTE_KEY",
    "Query",
    "Request",
    "Stopping",
]

T = TypeVar("T")

#: ``req.ext`` key of the shared-data map a router installs (see ``Request.data``).
DATA_KEY = "tophat.data"
#: ``req.ext`` key of the route the innermost router chose (a ``tophat.router.Route``: its
#: ``pattern`` and ``endpoint``), read by the error log to name the handler.
ROUTE_KEY = "tophat.route"
#: ``req.ext`` key of the request's id, set by ``tophat.middleware.request_id`` and read by the
#: access log and the error log (here, below both: the server may not import a middleware).
REQUEST_ID_KEY = "tophat.request_id"


class _BodySource(Protocol):
    """What the connection gives a request to read its body from."""

    async def read_body(self) -> bytes | None:
        """The next piece of the body, or ``None`` once it is complete."""
        ...

    @property
    def trailers(self) -> Headers | None: ...


class Stopping(Protocol):
    """A runtime's shutdown signal (``asyncio.Event`` and ``trio.Event`` both fit)."""

    def is_set(self) -> bool: ...
    async def wait(self) -> Any: ...


class _Never:
    """A signal that is never set, for a request with no connection able to set it."""

    __slots__ = ("_what",)

    def __init__(self, what: str) -> None:
        self._what = what

    def is_set(self) -> bool:
        return False

    async def wait(self) -> None:
        raise RuntimeError(f"this connection has no {self._what} signal to wait for")


NEVER_STOPPING = _Never("shutdown")
NEVER_DISCONNECTED = _Never("disconnect")


class _NoBody:
    __slots__ = ()
    trailers = None

    async def read_body(self) -> bytes | None:
        return None


class Request:
    """An HTTP request as received.

    Attributes:
        method: the method exactly as sent (case-sensitive, RFC 9110 §9.1).
        target: the raw request-target from the request line.
        raw_path: the path part of the target, still percent-encoded.
        query_string: the part after ``?`` (undecoded), ``""`` when absent.
        version: ``"1.0"`` or ``"1.1"``.
        headers: the header fields.
        client: the peer's ``(host, port)`` when the runtime knows it.
        server: the local ``(host, port)`` when the runtime knows it.
        scheme: ``"http"`` or ``"https"``.
        ext: free storage for middleware and the router.
        params: path parameters captured by the router (empty without one), with typed
            getters: ``req.params.get_int("id", min=1)`` (``tophat.http.query``).
        root_path: the prefix a mounting router took off the path (``""`` when not mounted).
        stopping: the server's shutdown signal; long-running handlers (streams, SSE) watch it.
        disconnected: set once the client closed or reset the connection while this request
            was handled (``is_set()``, ``await disconnected.wait()``). Nobody can receive a
            response any more: stop the work. An endpoint still running
            ``ServerOpts.disconnect_grace`` seconds later is cancelled. A client that
            half-closes its side right after its request counts as gone (as behind nginx,
            which stops proxying on that); one that pipelined more requests first does not.
    """

    __slots__ = (
        "_body",
        "_consumed",
        "_cookies",
        "_form",
        "_host",
        "_on_end",
        "_params",
        "_path",
        "_query",
        "_raw_path",
        "_source",
        "client",
        "disconnected",
        "ext",
        "headers",
        "method",
        "query_string",
        "root_path",
        "scheme",
        "server",
        "stopping",
        "target",
        "version",
    )

    def __init__(
        self,
        method: str,
        target: str,
        headers: Headers,
        version: str = "1.1",
        client: tuple[str, int] | None = None,
        server: tuple[str, int] | None = None,
        scheme: str = "http",
        body: bytes | _BodySource | None = None,
        stopping: Stopping = NEVER_STOPPING,
        disconnected: Stopping = NEVER_DISCONNECTED,
    ) -> None:
        self.method = method
        self.target = target
        self.headers = headers
        self.version = version
        self.client = client
        self.server = server
        self.scheme = scheme
        self.stopping = stopping
        self.disconnected = disconnected
        self.ext: dict[str, Any] = {}
        self._host: str | None = None
        self._params: Params = NO_PARAMS
        # (origin-form, the usual one, needs no conversion)
        path, _, self.query_string = (
            target if target[:1] == "/" else _origin_path(target)
        ).partition("?")
        # (The raw_path setter's two lines inline: one call less, -1.5k instructions a request.)
        self._raw_path = path
        self._path: str | None = None if "%" in path else path
        self._query: Query | None = None
        self._cookies: Cookies | None = None
        self.root_path = ""
        if isinstance(body, bytes):
            self._body: bytes | None = body
            self._source: _BodySource = _NoBody()
        else:
            self._body = None
            self._source = body if body is not None else _NoBody()
        self._consumed = False
        self._form: FormData | None = None
        # (Made by the first on_end(): few requests have one; close() then allocates nothing.)
        self._on_end: list[Callable[[], object]] | None = None

    @property
    def raw_path(self) -> str:
        return self._raw_path

    @raw_path.setter
    def raw_path(self, raw_path: str) -> None:
        self._raw_path = raw_path
        # Decoded now when there is nothing to decode (most paths), else on first use.
        self._path = None if "%" in raw_path else raw_path

    @property
    def path(self) -> str:
        """The percent-decoded path (invalid escapes stay as they are; UTF-8 assumed)."""
        if self._path is None:
            self._path = unquote(self._raw_path, errors="surrogateescape")
        return self._path

    @property
    def query(self) -> Query:
        if self._query is None:
            self._query = Query(self.query_string)
        return self._query

    @property
    def params(self) -> Params:
        return self._params

    @params.setter
    def params(self, params: Mapping[str, Any]) -> None:
        # (A router's dict becomes a read-only Params here: one small copy, per routed
        # request with parameters only; the empty one is shared.)
        self._params = as_params(params)

    @property
    def cookies(self) -> Cookies:
        """The request's cookies, ``name -> value``, read from every ``Cookie`` field once.

        A malformed pair is dropped alone; where a name repeats, the first wins
        (``cookies.get_all(name)`` gives every value). See ``tophat.http.cookies``.
        """
        if self._cookies is None:
            self._cookies = parse_cookies(self.headers.get_all("cookie"))
        return self._cookies

    @property
    def host(self) -> str | None:
        """The target host: from an absolute-form target, else the Host header (RFC 9112 §3.2.2).

        Middleware may set it (the proxy-headers middleware sets the forwarded host); setting
        ``None`` goes back to the derived value.
        """
        if self._host is not None:
            return self._host
        if self.target[:1] != "/" and "://" in self.target:
            return self.target.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0] or None
        return self.headers.get("host")

    @host.setter
    def host(self, value: str | None) -> None:
        self._host = value

    def data(self, cls: type[T]) -> T:
        """The object of type ``cls`` shared through ``Router.data`` (typed, no globals).

        Raises:
            LookupError: when no router on the way registered data of that type.
        """
        shared = self.ext.get(DATA_KEY)
        if not shared or cls not in shared:
            raise LookupError(
                f"no shared data of type {cls.__name__}; register it with router.data(obj)"
            )
        value: T = shared[cls]
        return value

    @property
    def trailers(self) -> Headers | None:
        """Trailer fields of a chunked body, once the body was read to the end."""
        return self._source.trailers

    # -- body ---------------------------------------------------------------------------------

    async def stream(self) -> AsyncIterator[bytes]:
        """Yield the body piece by piece as it arrives, without buffering it.

        Raises:
            RuntimeError: if the body was already streamed.
            Glitch: 413 past ``max_body_size``, 408 on a body timeout, 400 on bad framing.
        """
        if self._body is not None:
            if self._body:
                yield self._body
            return
        if self._consumed:
            raise RuntimeError("the request body was already read with stream()")
        self._consumed = True
        read = self._source.read_body
        while (chunk := await read()) is not None:
            if chunk:
                yield chunk

    async def body(self) -> bytes:
        """The whole body, read and kept (later calls return the same bytes)."""
        if self._body is None:
            if self._consumed:
                raise RuntimeError("the request body was already read with stream()")
            self._consumed = True
            # Read directly, not through stream(): no async generator, and a body that
            # arrived in one piece is kept as is (no list, no join).
            read = self._source.read_body
            first = await read()
            if first is None:
                self._body = b""
            elif (piece := await read()) is None:
                self._body = first
            else:
                pieces = [first, piece]
                while (piece := await read()) is not None:
                    pieces.append(piece)
                self._body = b"".join(pieces)
        return self._body

    async def text(self) -> str:
        """The body decoded with the Content-Type charset (UTF-8 by default)."""
        return (await self.body()).decode(charset(self.headers.get("content-type")), "replace")

    async def json(self) -> Any:
        """The body parsed as JSON (``json.JSONDecodeError`` when it is not)."""
        return _json.loads(await self.body())

    async def form(self, **limits: Unpack[FormLimitArgs]) -> FormData:
        """The form in the body, urlencoded or ``multipart/form-data`` (the ``forms`` extra),
        read once and kept: ``(await req.form()).get("name")`` is a ``str`` or an
        ``UploadFile``. Limits (``tophat.http.multipart.FormLimits``) are keyword arguments.

        Raises:
            Glitch: 415 (not a form), 400 (malformed), 413 (past a limit).
            MissingFormsExtra: for multipart without the ``forms`` extra.
        """
        if self._form is None:
            from tophat.http.forms import FormLimits, read_form

            content_type = self.headers.get("content-type")
            self._form = await read_form(
                content_type, self._reader(), self.on_end, FormLimits(**limits)
            )
        return self._form

    def multipart(self, **limits: Unpack[FormLimitArgs]) -> MultipartReader:
        """The parts of a ``multipart/form-data`` body as they arrive, nothing spooled:
        ``async for part in req.multipart(): async for chunk in part: ...`` (same limits and
        errors as :meth:`form`; 415 for another content type)."""
        from tophat.glitch import Glitch
        from tophat.http.multipart import FormLimits, MultipartReader, boundary_of, parse_params

        content_type = self.headers.get("content-type") or ""
        if parse_params(content_type)[0] != "multipart/form-data":
            raise Glitch(415, "expected multipart/form-data")
        return MultipartReader(self._reader(), boundary_of(content_type), FormLimits(**limits))

    def _reader(self) -> Callable[[], Awaitable[bytes | None]]:
        # The body's pieces for a form, as stream() gives them, but as a plain coroutine
        # function: a reader that stops early (a refusal) leaves no async generator to
        # finalize (which trio reports).
        if self._body is not None:
            left = [self._body]

            async def read() -> bytes | None:
                return left.pop() if left else None

            return read
        if self._consumed:
            raise RuntimeError("the request body was already read with stream()")
        self._consumed = True
        return self._source.read_body

    def on_end(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` when this request's exchange ends: its response sent, its
        endpoint raised or was cancelled (temporary upload files are deleted this way)."""
        if self._on_end is None:
            self._on_end = []
        self._on_end.append(callback)

    def close(self) -> None:
        """Run the ``on_end`` callbacks, last added first (the exchange calls this)."""
        callbacks, self._on_end = self._on_end, None
        for callback in reversed(callbacks or ()):
            try:
                callback()
            except Exception:
                logging.getLogger("tophat.error").exception("a request on_end callback failed")

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.target!r} HTTP/{self.version}>"


def _origin_path(target: str) -> str:
    """The ``path?query`` part of a request-target of any form (RFC 9112 §3.2)."""
    if target[:1] == "/":
        return target
    if target == "*":  # asterisk-form (OPTIONS *)
        return "*"
    scheme_sep = target.find("://")
    if scheme_sep > 0:  # absolute-form: scheme://authority/path?query
        rest = target[scheme_sep + 3 :]
        cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
        path = rest[cut:]
        return path if path[:1] == "/" else "/" + path
    return target  # authority-form; only CONNECT uses it and accept() refuses CONNECT
