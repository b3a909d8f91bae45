"""One request/response exchange, as both the native server and the ASGI adapter run it.

Running the endpoint, turning a Glitch or any other exception into a response (or into a
close, once the response started), and logging each failure exactly once are the same whether
the bytes go out through ``accept`` or through an ASGI server. Each side supplies an
:class:`ExchangeSink`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, AsyncIterator
from typing import Protocol

from tophat.glitch import Glitch
from tophat.http.endpoint import Endpoint
from tophat.http.problem import render_glitch
from tophat.http.request import Request
from tophat.http.writer import Response, ResponseWriter
from tophat.server.opts import ServerOpts

__all__ = [
    "Aborted",
    "ExchangeSink",
    "Logged",
    "aclose",
    "name_of",
    "next_piece",
]


log = logging.getLogger("tophat.connection")
error_log = logging.getLogger("tophat.error")


class Aborted(Exception):
    """The response could not be completed (already logged); the connection must close."""


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


async def run_endpoint(endpoint: Endpoint, request: Request, sink: ExchangeSink) -> None:
    """Run ``endpoint``; make sure the client gets exactly one response, or a close."""
    writer = ResponseWriter(sink)
    try:
        result = await endpoint(request, writer)
    except Glitch as glitch:
        if sink.started:
            sink.mark_close()
            log.info("%s raised after its response started; closing: %s", name_of(endpoint), glitch)
            return
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
        error_log.exception("unhandled error in endpoint %s", name_of(endpoint))
        await respond_with_glitch(sink, writer, Logged(Glitch(500)), request)
        return
    except Exception:
        if sink.started:
            sink.mark_close()
            error_log.exception(
                "endpoint %s raised after its response started; closing the connection",
                name_of(endpoint),
            )
            return
        error_log.exception("unhandled error in endpoint %s", name_of(endpoint))
        await respond_with_glitch(sink, writer, Logged(Glitch(500)), request)
        return
    if not sink.started:
        error_log.error(
            "endpoint %s returned %r without sending a response (call `await w.send()`)",
            name_of(endpoint),
            result,
        )
        await respond_with_glitch(sink, writer, Logged(Glitch(500)), request)


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
    if isinstance(glitch, Logged):
        pass  # the error behind it was logged once, with its traceback, where it happened
    elif glitch.status >= 500 and glitch.__cause__ is not None:
        error_log.error("%s: %s", glitch, glitch.__cause__, exc_info=glitch.__cause__)
    elif glitch.status >= 500:
        error_log.error("%s", glitch)
    else:
        log.debug("glitch %s", glitch)
    try:
        writer.run_before_send()
    except Exception:
        error_log.exception("a before_send hook failed while sending an error response")
    # Not writer.send(): the writer may already count as sent if its own send() failed before
    # any byte went out (a streamed body that raised before its first piece).
    await sink.send_response(response)


def name_of(endpoint: object) -> str:
    return getattr(endpoint, "__qualname__", None) or repr(endpoint)


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
