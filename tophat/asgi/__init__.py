"""to_asgi(): run a tophat endpoint as an ASGI 3 application (uvicorn, hypercorn, gunicorn).

The ASGI server owns the socket, the parser, keep-alive, timeouts and the Date and Server
headers; the adapter turns one ``http`` scope into a :class:`~tophat.Request` whose body is
pulled from ``receive()``, and is the writer's sink, turning the response into
``http.response.start`` / ``http.response.body`` messages. Endpoint errors are answered exactly
as :func:`tophat.accept` answers them (same statuses, bodies and kept headers)::

    from tophat.asgi import to_asgi

    app = to_asgi(router, lifespan=lifespan)
    # uvicorn mod:app  |  hypercorn mod:app  |  gunicorn -k uvicorn.workers.UvicornWorker mod:app

``lifespan`` is the same setup/teardown ``tophat.serve`` takes (``tophat.Lifespan``), run on
ASGI's lifespan messages: the same code serves natively and under an ASGI server. (The older
``on_startup``/``on_shutdown`` hook lists still work, inside it.)

A client that goes away surfaces to the handler as :class:`ClientDisconnected` (an
``OSError``): from ``req.body()``/``req.stream()``, and from ``w.send()`` while a streamed
response is being sent. ASGI servers silently drop what is sent after a disconnect, so while a
streamed body is sent a watcher listens for ``http.disconnect`` (reading at most one request
message ahead of the handler).

Works on asyncio (uvloop included) and trio (``hypercorn -k trio``).
"""

from __future__ import annotations

import inspect
import logging
import sys
from collections.abc import Callable, Iterable

from tophat.asgi.exchange import ClientDisconnected, Exchange
from tophat.asgi.types import ASGIApp, Message, Receive, Scope, Send
from tophat.http.endpoint import Endpoint
from tophat.server.exchange import name_of as _name
from tophat.server.lifespan import Lifespan, LifespanFailed, LifespanScope
from tophat.server.opts import ServerOpts

__all__ = ["ASGIApp", "ClientDisconnected", "Message", "Receive", "Scope", "Send", "to_asgi"]

Hook = Callable[[], object]  # an async (or plain) callable run at startup or shutdown

error_log = logging.getLogger("tophat.error")


def to_asgi(
    endpoint: Endpoint,
    *,
    opts: ServerOpts | None = None,
    on_startup: Iterable[Hook] = (),
    on_shutdown: Iterable[Hook] = (),
    date_header: bool = False,
    lifespan: Lifespan | None = None,
) -> ASGIApp:
    """Wrap ``endpoint`` as an ASGI 3 application serving ``http`` and ``lifespan`` scopes.

    Args:
        endpoint: ``async (Request, ResponseWriter) -> ResponseWritten`` (a router, for one).
        opts: ``max_body_size`` (413) and ``verbose_glitch`` apply; head limits, timeouts,
            connection limits, ``server_header`` and ``access_log`` are the ASGI server's
            business and are ignored here.
        on_startup: callables run in order at lifespan startup; an exception stops there and
            is reported as ``lifespan.startup.failed`` with its text (the server then exits).
        on_shutdown: callables run in order at lifespan shutdown (all of them, even after one
            fails; the first failure is reported as ``lifespan.shutdown.failed``).
        date_header: add a ``Date`` header (RFC 9110 §6.6.1). Off by default: uvicorn and
            hypercorn add their own, and uvicorn would send two.
        lifespan: setup at lifespan startup, teardown at lifespan shutdown (``tophat.Lifespan``,
            as ``tophat.serve`` takes it). It wraps the hooks: its setup runs before
            ``on_startup``, its teardown after ``on_shutdown``. A setup that raises is reported
            as ``lifespan.startup.failed``; a teardown that raises as
            ``lifespan.shutdown.failed``; both are logged with their traceback.

    Raises:
        TypeError: when the endpoint or a hook is not callable.
    """
    if not callable(endpoint):
        raise TypeError(f"endpoint must be an async callable, not {type(endpoint).__name__}")
    startup, shutdown = tuple(on_startup), tuple(on_shutdown)
    for hook in (*startup, *shutdown):
        if not callable(hook):
            raise TypeError(f"lifespan hooks must be callables, not {type(hook).__name__}")
    LifespanScope(lifespan)  # (raises TypeError now for a lifespan that is not callable)
    return _App(endpoint, opts or ServerOpts(), startup, shutdown, date_header, lifespan)


class _App:
    """The ASGI application ``to_asgi`` returns."""

    __slots__ = ("date_header", "endpoint", "lifespan", "on_shutdown", "on_startup", "opts")

    def __init__(
        self,
        endpoint: Endpoint,
        opts: ServerOpts,
        on_startup: tuple[Hook, ...],
        on_shutdown: tuple[Hook, ...],
        date_header: bool,
        lifespan: Lifespan | None,
    ) -> None:
        self.lifespan = lifespan
        self.endpoint = endpoint
        self.opts = opts
        self.on_startup = on_startup
        self.on_shutdown = on_shutdown
        self.date_header = date_header

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await Exchange(self, scope, receive, send).run()
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            # Refuse cleanly (the server answers 403) rather than raise and log a traceback.
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1000})
        else:
            raise ValueError(f"tophat.asgi: unsupported ASGI scope type {kind!r}")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        # One task runs the whole lifespan scope, so the lifespan is entered and left in the
        # same task, as an ``async with`` would.
        scope = LifespanScope(self.lifespan)
        entered = False
        try:
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    try:
                        await scope.__aenter__()
                    except LifespanFailed as exc:
                        await send({"type": "lifespan.startup.failed", "message": exc.reason})
                        return
                    entered = True
                    failure = await _run_hooks(self.on_startup, "startup", stop_at_first=True)
                    if failure is not None:
                        entered = False
                        await _leave(scope)  # what the lifespan set up is torn down
                        await send({"type": "lifespan.startup.failed", "message": failure})
                        return
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    failure = await _run_hooks(self.on_shutdown, "shutdown", stop_at_first=False)
                    entered = False
                    teardown = await _leave(scope)
                    failure = failure or teardown  # (the first one, in the order they ran)
                    if failure is not None:
                        await send({"type": "lifespan.shutdown.failed", "message": failure})
                    else:
                        await send({"type": "lifespan.shutdown.complete"})
                    return
        finally:
            if entered:  # cancelled (the ASGI server went away without a shutdown message)
                await scope.__aexit__(*sys.exc_info())


async def _leave(scope: LifespanScope) -> str | None:
    """Run the lifespan's teardown; return its failure's text, or None."""
    try:
        await scope.__aexit__(None, None, None)
    except LifespanFailed as exc:
        return exc.reason
    return None


async def _run_hooks(hooks: tuple[Hook, ...], phase: str, *, stop_at_first: bool) -> str | None:
    """Run ``hooks``; return the first failure's text (``"ValueError: ..."``), or None."""
    failure: str | None = None
    for hook in hooks:
        try:
            result = hook()
            if inspect.isawaitable(result):
                await result
        except Exception as exc:
            error_log.exception("lifespan %s hook %s failed", phase, _name(hook))
            failure = failure or f"{type(exc).__name__}: {exc}"
            if stop_at_first:
                break
    return failure
