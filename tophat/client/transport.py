"""The client's runtime adapters: asyncio and trio connections as a :class:`~tophat.Stream`.

They own the clock (each read, write and the connect has its :class:`Timeout`, breached as
:class:`ClientTimeout`) and the sockets; :func:`tophat.client.connect` picks one for the
library it runs on (``tophat._asynclib.current()``).
"""

from __future__ import annotations

import contextlib
import select
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from tophat._asynclib import MissingExtra
from tophat.client.errors import (
    ClientConnectionError,
    ClientError,
    ClientTimeout,
    Timeout,
    TimeoutPhase,
)
from tophat.server.stream import StreamClosed

if TYPE_CHECKING:
    import asyncio
    from ssl import SSLContext

_HIGH_WATER = 256 * 1024  # asyncio adapter: pause reading above this much unread input
_CLOSE_GRACE = 1.0  # trio adapter: how long a TLS close_notify may take


# -- runtime adapters: the clock, the sockets ---------------------------------------------------


class AsyncioStream:
    """An ``asyncio.Protocol`` as a :class:`~tophat.Stream` (cf. the server's ``_Conn``).

    A Protocol rather than StreamReader/Writer: we own the buffer, so ``peer_closed`` can see
    stray input or end of input without a private attribute.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, limits: Timeout) -> None:
        import asyncio

        self._asyncio = asyncio
        self._loop = loop
        self._limits = limits
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._eof = False
        self._lost = False
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._drain: asyncio.Future[None] | None = None

    @classmethod
    async def open(
        cls, host: str, port: int, ssl: SSLContext | None, limits: Timeout
    ) -> AsyncioStream:
        import asyncio

        loop = asyncio.get_running_loop()
        self = cls(loop, limits)
        protocol: Any = self  # an asyncio.Protocol by duck typing (asyncio is imported late)
        opening = loop.create_connection(
            lambda: protocol, host, port, ssl=ssl, server_hostname=host if ssl else None
        )
        try:
            await asyncio.wait_for(opening, limits.connect)
        except asyncio.TimeoutError:
            raise ClientTimeout("connect", limits.connect) from None
        except OSError as exc:
            raise ClientConnectionError(f"cannot connect to {host}:{port}: {exc}") from exc
        return self

    # protocol callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) > _HIGH_WATER and not self._paused and self._transport:
            self._paused = True
            self._transport.pause_reading()
        self._wake(self._waiter)

    def eof_received(self) -> bool:
        self._eof = True
        self._wake(self._waiter)
        return False  # let the transport close: we never write after the server's FIN

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = self._eof = True
        self._wake(self._waiter)
        self._wake(self._drain)  # send_all sees _lost once woken

    def pause_writing(self) -> None:
        self._drain = self._loop.create_future()

    def resume_writing(self) -> None:
        self._wake(self._drain)
        self._drain = None

    @staticmethod
    def _wake(fut: asyncio.Future[None] | None) -> None:
        if fut is not None and not fut.done():
            fut.set_result(None)

    # the Stream
    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        while not self._buffer:
            if self._eof:
                return b""
            self._waiter = self._loop.create_future()
            try:
                await self._wait(self._waiter, "read", self._limits.read)
            finally:
                self._waiter = None
        size = len(self._buffer) if max_bytes is None else max_bytes
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        if self._paused and len(self._buffer) < _HIGH_WATER // 4 and self._transport:
            self._paused = False
            self._transport.resume_reading()
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        transport = self._transport
        if self._lost or transport is None or transport.is_closing():
            raise StreamClosed("connection closed")
        transport.write(data)
        if self._drain is not None:
            await self._wait(self._drain, "write", self._limits.write)
            if self._lost:
                raise StreamClosed("connection lost while sending")

    async def _wait(
        self, fut: asyncio.Future[None], phase: TimeoutPhase, limit: float | None
    ) -> None:
        try:
            # shield: a timeout must not cancel the shared drain future
            await self._asyncio.wait_for(self._asyncio.shield(fut), limit)
        except self._asyncio.TimeoutError:
            raise ClientTimeout(phase, limit) from None

    async def aclose(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    def peer_closed(self) -> bool:
        return self._eof or bool(self._buffer)


class TrioStream:
    """A trio stream with per-call deadlines, trio's errors turned into ``StreamClosed``."""

    def __init__(self, stream: Any, limits: Timeout, sock: Any) -> None:
        import trio

        self._trio = trio
        self._stream = stream
        self._limits = limits
        self._sock = sock  # the plain TCP socket to poll, or None under TLS

    @classmethod
    async def open(
        cls, host: str, port: int, ssl: SSLContext | None, limits: Timeout
    ) -> TrioStream:
        try:
            import trio
        except ImportError:
            raise MissingExtra(
                "the client on trio needs trio: pip install 'tophat[trio]'"
            ) from None
        try:
            with _deadline(trio, "connect", limits.connect):
                stream: Any = await trio.open_tcp_stream(host, port)
                sock = stream.socket
                if ssl is not None:
                    stream = trio.SSLStream(
                        stream, ssl, server_hostname=host, https_compatible=True
                    )
                    await stream.do_handshake()
                    sock = None  # TLS records (e.g. session tickets) make the socket readable
        except ClientError:
            raise
        except OSError as exc:
            raise ClientConnectionError(f"cannot connect to {host}:{port}: {exc}") from exc
        except trio.BrokenResourceError as exc:
            raise ClientConnectionError(f"TLS handshake with {host}:{port} failed: {exc}") from exc
        return cls(stream, limits, sock)

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        trio = self._trio
        with _deadline(trio, "read", self._limits.read):
            try:
                data: bytes = await self._stream.receive_some(max_bytes)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise StreamClosed(str(exc)) from exc
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        trio = self._trio
        with _deadline(trio, "write", self._limits.write):
            try:
                await self._stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise StreamClosed(str(exc)) from exc

    async def aclose(self) -> None:
        trio = self._trio
        with trio.move_on_after(_CLOSE_GRACE), contextlib.suppress(trio.BrokenResourceError):
            await self._stream.aclose()

    def peer_closed(self) -> bool:
        if self._sock is None:
            return False
        # poll, not select: select() cannot watch a descriptor numbered 1024 or above.
        poller = select.poll()
        poller.register(self._sock.fileno(), select.POLLIN)
        return bool(poller.poll(0))


@contextlib.contextmanager
def _deadline(trio: Any, phase: TimeoutPhase, limit: float | None) -> Iterator[None]:
    if limit is None:
        yield
        return
    try:
        with trio.fail_after(limit):
            yield
    except trio.TooSlowError:
        raise ClientTimeout(phase, limit) from None
