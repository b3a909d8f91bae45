"""In-memory byte streams: two connected ends that satisfy :class:`~tophat.Stream`.

Nothing here starts a task or reads a clock, so they work under asyncio and trio alike.
"""

from __future__ import annotations

import collections
from typing import Any

from tophat._asynclib import AsyncioDeadline, TrioDeadline, new_deadline, new_event
from tophat.server.stream import StreamClosed

__all__ = ["MemoryStream", "memory_stream_pair"]


class _Pipe:
    """One direction of an in-memory stream: pieces are delivered as they were written."""

    def __init__(self) -> None:
        self.pieces: collections.deque[bytes] = collections.deque()
        self.closed = False
        self._waiter: Any = None

    def _wake(self) -> None:
        if self._waiter is not None:
            self._waiter.set()
            self._waiter = None

    def write(self, data: bytes) -> None:
        if self.closed:
            raise StreamClosed("the other side closed the stream")
        if data:
            self.pieces.append(bytes(data))
            self._wake()

    def close(self) -> None:
        self.closed = True
        self._wake()

    async def read(self, max_bytes: int | None) -> bytes:
        while not self.pieces:
            if self.closed:
                return b""
            self._waiter = new_event()
            await self._waiter.wait()
        data = self.pieces.popleft()
        if max_bytes is not None and len(data) > max_bytes:
            self.pieces.appendleft(data[max_bytes:])
            data = data[:max_bytes]
        return data


class MemoryStream:
    """One end of an in-memory byte stream; satisfies the :class:`~tophat.Stream` protocol."""

    def __init__(self, incoming: _Pipe, outgoing: _Pipe) -> None:
        self._in = incoming
        self._out = outgoing

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        return await self._in.read(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self._out.write(bytes(data))

    def send_eof(self) -> None:
        """Half-close: the other side reads end of input; we can still receive."""
        self._out.close()

    async def aclose(self) -> None:
        self._out.close()
        self._in.closed = True
        self._in.pieces.clear()
        self._in._wake()

    def new_event(self) -> Any:
        """An event of the running async library (for ``req.disconnected.wait()``; an
        in-memory client never leaves while a request is handled, so it is never set)."""
        return new_event()

    def deadline(self, seconds: float) -> AsyncioDeadline | TrioDeadline | None:
        """A deadline of the running library, for ``ServerOpts.handler_timeout`` (the server
        asks its stream for one: the stream's runtime owns the clock)."""
        return new_deadline(seconds)

    def take_all(self) -> bytes:
        """Everything received and not yet read (no waiting)."""
        data = b"".join(self._in.pieces)
        self._in.pieces.clear()
        return data


def memory_stream_pair() -> tuple[MemoryStream, MemoryStream]:
    """Two connected in-memory streams: ``(client_end, server_end)``."""
    a, b = _Pipe(), _Pipe()
    return MemoryStream(a, b), MemoryStream(b, a)
