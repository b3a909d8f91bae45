"""One request/response exchange, as both the native server and the ASGI adapter run it.

Running the endpoint, turning a Glitch or any other exception into a response (or into a
close, once the response started), and logging each failure exactly once are the same whether
the bytes go out through ``accept`` or through an ASGI server. Each side supplies an
:class:`ExchangeSink`.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator
from types import TracebackType
from typing import Protocol

from tophat.glitch import Glitch
from tophat.http.endpoint import Endpoint
from tophat.http.problem import render_glitch
from tophat.http.request import REQUEST_ID_KEY, ROUTE_KEY, Request
from tophat.http.writer import Response, ResponseWriter
from tophat.parsers.events import ParseError
from tophat.server.opts import ServerOpts
from tophat.server.respond import STARTED_KEY

__all__ = [
    "Aborted",
    "Deadline",
    "ExchangeSink",
    "Logged",
    "aborted",
    "aclose",
    "for_log",
    "handler_deadline",
    "log_glitch",
    "name_of",
    "next_piece",
    "where",
]


log = logging.getLogger("tophat.connection")
error_log = logging.getLogger("tophat.error")


class Aborted(Exception):
    """The response could not be completed (already logged); the connection must close."""


def aborted(exc: Exception) -> Aborted:
    """Log a response broken on the wire (a body off its declared length, a file changed
    under it) once, and give the ``Aborted`` that closes its connection (native and ASGI)."""
    error_log.error("%s; closing the connection", exc)
    return Aborted(str(exc))


class Logged(Glitch):
    """A Glitch standing for an error that was already logged with its traceback."""

    def __init__(self, glitch: Glitch) -> None:
        super().__init__(glitch.status, glitch.message, headers=glitch.headers)


class ExchangeSink(Protocol):
    """What an exchange needs from the side that carries it."""

    @property
    def started(self) -> bool:
        """Whether the response head went out (after that, no other response is possible)."""
        ...

    @property
    def gone(self) -> bool:
        """Whether the client is known to have left."""
        ...

    @property
    def verbose_glitch(self) -> bool:
        """Whether a Glitch's cause goes into the response body."""
        ...

    @property
    def opts(self) -> ServerOpts:
        """The server's options (``error_format`` is read from them)."""
        ...

    def mark_close(self) -> None:
        """The connection cannot carry another request."""

    async def send_response(self, response: Response) -> tuple[int, list[tuple[str, str]], int]: ...


class Deadline(Protocol):
    """``ServerOpts.handler_timeout`` for one endpoint run, as the carrier's runtime makes it
    (``tophat._asynclib``: a task cancelled by a timer on asyncio, a cancel scope on trio). A
    ``with`` block: cancel what runs inside ``seconds`` after it began, unless ``stop()`` came
    first; on the way out, swallow that cancellation (only that one) and say ``expired``."""

    @property
    def seconds(self) -> float: ...

    @property
    def expired(self) -> bool: ...

    def stop(self) -> None: ...

    def __enter__(self) -> object: ...

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool: ...


_warned_no_deadline: set[type] = set()


def handler_deadline(stream: object, timeout: float | None) -> Deadline | None:
    """The deadline of one endpoint run on ``stream`` (``ServerOpts.handler_timeout``), made by
    the stream's optional ``deadline(seconds)`` method: the server imports no runtime, the
    stream's runtime owns the clock. None when off (and, warned once, for a stream without it).
    """
    if timeout is None:
        return None
    make = getattr(stream, "deadline", None)
    if make is None:
        if type(stream) not in _warned_no_deadline:
            _warned_no_deadline.add(type(stream))
            log.warning("%s has no deadline(): handler_timeout does not apply", type(stream))
        return None
    deadline: Deadline = make(timeout)
    return deadline


class _Until:
    """The writer's sink while a deadline runs: the response's start (``w.send()``) stops it,
    so a started response, a stream or an SSE feed, is never cut by it."""

    __slots__ = ("_deadline", "_sink")

    def __init__(self, sink: ExchangeSink, deadline: Deadline) -> None:
        self._sink = sink
        self._deadline = deadline

    async def send_response(self, response: Response) -> tuple[int, list[tuple[str, str]], int]:
        self._deadline.stop()
        return await self._sink.send_response(response)


async def run_endpoint(
    endpoint: Endpoint, request: Request, sink: ExchangeSink, deadline: Deadline | None = None
) -> None:
    """Run ``endpoint``; make sure the client gets exactly one response, or a close.

    With a ``deadline`` (see :func:`handler_deadline`), an endpoint that has not called
    ``w.send()`` when it expires is cancelled and the client gets a 503 (then a close: the
    endpoint stopped at any point, perhaps inside a read of the request body).

    The request's ``on_end`` callbacks (temporary upload files) run when this returns or is
    cancelled (a departed client, a shutdown).
    """
    # (One coroutine, the try/finally around its whole body: a wrapper coroutine costs ~0.1 µs
    # a request, timed on this machine; this runs for every request.)
    try:
        if sink.opts.access_log:
            request.ext[STARTED_KEY] = time.perf_counter()  # (the access log's duration)
        writer = ResponseWriter(sink if deadline is None else _Until(sink, deadline), request)
        try:
            if deadline is None:
                result = await endpoint(request, writer)
            else:
                result = None
                with deadline:
                    result = await endpoint(request, writer)
                if deadline.expired and not sink.started:
                    await _expired(endpoint, request, sink, writer, deadline.seconds)
                    return
        except Glitch as glitch:
            if sink.started:
                sink.mark_close()
                log.info(
                    "%s raised after its response started; closing: %s",
                    where(endpoint, request),
                    glitch,
                )
                return
            log_glitch(glitch, endpoint, request)
            await respond_with_glitch(sink, writer, glitch, request)
            return
        except Aborted:
            return  # logged where it happened
        except OSError as exc:
            if sink.started or sink.gone:
                # The client went away: nothing to answer, nobody to tell.
                sink.mark_close()
                log.debug("client gone while the endpoint ran: %r", exc)
                return
            error_log.exception("unhandled error in endpoint %s", where(endpoint, request))
            await respond_with_glitch(sink, writer, Logged(Glitch(500)), request)
            return
        except Exception:
            if sink.started:
                sink.mark_close()
                error_log.exception(
                    "endpoint %s raised after its response started; closing the connection",
                    where(endpoint, request),
                )
                return
            error_log.exception("unhandled error in endpoint %s", where(endpoint, request))
            await respond_with_glitch(sink, writer, Logged(Glitch(500)), request)
            return
        if not sink.started:
            error_log.error(
                "endpoint %s returned %r without sending a response (call `await w.send()`)",
                where(endpoint, request),
                result,
            )
            await respond_with_glitch(sink, writer, Logged(Glitch(500)), request)
    finally:
        request.close()


async def _expired(
    endpoint: Endpoint, request: Request, sink: ExchangeSink, writer: ResponseWriter, after: float
) -> None:
    error_log.error(
        "endpoint %s did not start its response within %g s (ServerOpts.handler_timeout): "
        "cancelled; answering 503",
        where(endpoint, request),
        after,
        # (logged after the endpoint, and a request_id() middleware's context, ended)
        extra={"request_id": request.ext.get(REQUEST_ID_KEY)},
    )
    sink.mark_close()
    await respond_with_glitch(sink, writer, Logged(Glitch(503)), request)


async def respond_with_glitch(
    sink: ExchangeSink, writer: ResponseWriter, glitch: Glitch, request: Request
) -> None:
    """Send ``glitch`` as the response, keeping headers the handler already set (CORS, …);
    its body is text or problem+json, as ``ServerOpts.error_format`` and the request's Accept
    say (``tophat.http.problem``)."""
    response = writer.response
    response.status = glitch.status
    for name in ("content-type", "content-encoding", "content-language"):
        response.headers.remove(name)
    for name, value in glitch.headers:
        response.headers.set(name, value)
    error_format = sink.opts.error_format
    accept = request.headers.get_all("accept") if error_format == "negotiate" else None
    render_glitch(
        glitch, response, ", ".join(accept) if accept else None, error_format, sink.verbose_glitch
    )
    try:
        writer.run_before_send()
    except Exception:
        error_log.exception("a before_send hook failed while sending an error response")
    # Not writer.send(): the writer may already count as sent if its own send() failed before
    # any byte went out (a streamed body that raised before its first piece).
    await sink.send_response(response)


def log_glitch(glitch: Glitch, endpoint: Endpoint, request: Request) -> None:
    """Log a Glitch an endpoint raised, once: a 5xx at ERROR on ``tophat.error``, anything
    else at DEBUG on ``tophat.connection`` (a 4xx is the client's mistake, not an error of the
    server's, and as common as traffic); with its cause's traceback when it has one
    (``raise Glitch(...) from exc``, ``call``, ``awaiting``, ``catching``)."""
    logger, level = (error_log, logging.ERROR) if glitch.status >= 500 else (log, logging.DEBUG)
    if not logger.isEnabledFor(level):
        return  # (a 404 per request: nothing formatted unless someone listens)
    cause = glitch.__cause__
    if cause is None:
        logger.log(level, "%s from endpoint %s", for_log(str(glitch)), where(endpoint, request))
        return
    logger.log(
        level,
        "%s from endpoint %s, caused by %s",
        for_log(str(glitch)),
        where(endpoint, request),
        for_log(f"{type(cause).__name__}: {cause}"),
        # Not for the server's own 4xx about the client's connection (a malformed or cut body,
        # a timeout, a reset: a ParseError or an OSError): the message says it all, and a
        # traceback into the parser or the socket would only announce a client leaving.
        exc_info=None
        if level < logging.ERROR and isinstance(cause, ParseError | OSError)
        else cause,
    )


class _Chosen(Protocol):
    """What the error log reads of the route a router chose (``tophat.router.Route``)."""

    @property
    def pattern(self) -> str: ...

    @property
    def endpoint(self) -> object: ...


def where(endpoint: Endpoint, request: Request) -> str:
    """Where an error happened, for a log line: the handler the innermost router chose (else
    ``endpoint``), the method and the path (escaped; no query string: it may hold secrets),
    and the route's pattern, e.g. ``app.get_user for GET /users/42 (route /users/:id)``."""
    route: _Chosen | None = request.ext.get(ROUTE_KEY)
    # (A mounted router restored raw_path and root_path on the way out: this is the full path.)
    target = f"{for_log(request.method, 40)} {for_log(request.root_path + request.raw_path)}"
    if route is None:
        return f"{name_of(endpoint)} for {target}"
    return f"{name_of(route.endpoint)} for {target} (route {for_log(route.pattern)})"


def name_of(endpoint: object) -> str:
    """A callable's module and qualified name (``app.Api.get_user``), through ``__wrapped__``."""
    if callable(endpoint):
        with contextlib.suppress(ValueError):  # (a __wrapped__ cycle)
            endpoint = inspect.unwrap(endpoint)
    name = getattr(endpoint, "__qualname__", None)
    if not isinstance(name, str):
        return for_log(repr(endpoint))
    module = getattr(endpoint, "__module__", None)
    return f"{module}.{name}" if isinstance(module, str) and module != "builtins" else name


def for_log(text: str, limit: int = 200) -> str:
    """``text`` safe for a log line: at most ``limit`` characters (then "..."), and no control
    character (CR, LF, ESC, ...) left raw: a client must not forge or garble log lines."""
    if len(text) > limit:
        text = text[:limit] + "..."
    return text if text.isprintable() else repr(text)[1:-1]


async def next_piece(pieces: AsyncIterator[bytes]) -> bytes | None:
    """The next non-empty piece of a streamed body, or None at its end."""
    async for piece in pieces:
        if piece:
            if not isinstance(piece, bytes | bytearray | memoryview):
                raise TypeError(f"a response body stream yielded {type(piece).__name__}, not bytes")
            return bytes(piece)
    return None


async def open_body(
    body: bytes | AsyncIterable[bytes], no_body: bool
) -> tuple[AsyncIterator[bytes] | None, bytes | None]:
    """For a streamed body: its iterator and first piece (``None``: empty), pulled *before*
    the head is sent, so an error raised before it still gets a proper error response, a
    handler streaming its request body back still triggers ``100 Continue``, and head and
    first piece go out together. A body that will not be sent is closed at once.
    """
    if isinstance(body, bytes):
        return None, None
    if no_body:
        await aclose(body)
        return None, None
    pieces = body.__aiter__()
    try:
        return pieces, await next_piece(pieces)
    except BaseException:
        await aclose(pieces)
        raise


async def aclose(body: object) -> None:
    """Close an async generator (or anything with ``aclose``) we stopped iterating."""
    close = getattr(body, "aclose", None)
    if close is not None:
        await close()
