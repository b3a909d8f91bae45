"""The byte-stream protocol ``accept`` needs, and the exceptions a stream adapter raises.

A stream is anything with these three methods::

    async def receive_some(self, max_bytes: int | None = None) -> bytes   # b"" at end of input
    async def send_all(self, data: bytes | bytearray | memoryview) -> None
    async def aclose(self) -> None

Optionally it may have ``set_phase(phase)``: ``accept`` calls it before each read and write with
one of ``"idle"`` (waiting between requests), ``"head"`` (reading a request head), ``"body"``
(reading a request body) or ``"write"`` (sending). The runtime that owns the clock uses it to
apply the matching timeout from ``ServerOpts`` and, when time runs out, raises
:class:`StreamTimeout` from the pending call. ``accept`` turns that into a 408 or a close.
``accept`` also calls it with ``"handler"`` once a request has been read whole while its endpoint
runs: no read follows until the phase changes again to one of the reading phases (a write may),
so the runtime may watch the connection meanwhile for the client leaving.

The client leaving (a close or a reset) while a request is handled is reported the other way:
the runtime calls ``Connection.peer_gone()`` when it learns it, at once (asyncio's transport
callbacks; trio's watch during the ``"handler"`` phase). The endpoint sees it through
``req.disconnected``, and the runtime cancels an endpoint still running
``ServerOpts.disconnect_grace`` seconds later. For ``await req.disconnected.wait()`` the stream
provides ``new_event()``, returning an event of its runtime (``asyncio.Event``, ``trio.Event``).

Optionally it may also have ``send_nowait(*pieces) -> bool``: send the pieces (bytes), in
order, at once when that needs no waiting and return True; return False, having sent nothing,
otherwise (backpressure, or a closed stream), and ``accept`` falls back to ``send_all``. It
saves a coroutine per write (and, for a head and a large body, a copy or a system call).

Optionally it may also have ``async sendfile(file, offset, count) -> int``: send ``count``
bytes of the open binary ``file`` from ``offset`` without copying them through Python (the
``sendfile`` system call), returning how many it sent (fewer only if the file ended first).
The server uses it for ``ResponseWriter.set_file`` bodies; a stream that cannot do it on this
connection (TLS, an event loop without it) raises :class:`SendfileUnavailable` having sent
nothing, and the server reads the file in pieces through ``send_all`` instead.

A stream signals a broken connection by raising ``OSError`` (``ConnectionError`` included) or
:class:`StreamClosed`. trio's ``SocketStream`` has the three methods but raises
``trio.BrokenResourceError`` instead, so it needs a thin adapter that maps that (and
``trio.ClosedResourceError``) to :class:`StreamClosed` — ``tophat.runtime.trio.connection`` is
one, and ``tests/test_tls_uds.py`` shows a minimal custom stream over a socket pair.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, runtime_checkable

__all__ = [
    "Phase",
    "SendfileUnavailable",
    "Stream",
    "StreamClosed",
    "StreamTimeout",
    "socket_address",
]

Phase = Literal["idle", "head", "body", "write", "handler"]


@runtime_checkable
class Stream(Protocol):
    async def receive_some(self, max_bytes: int | None = None) -> bytes: ...
    async def send_all(self, data: bytes | bytearray | memoryview) -> None: ...
    async def aclose(self) -> None: ...


class StreamTimeout(TimeoutError):
    """Raised by a stream adapter when the current phase's timeout ran out."""

    def __init__(self, phase: Phase) -> None:
        super().__init__(f"timed out in phase {phase!r}")
        self.phase = phase


class StreamClosed(ConnectionError):
    """Raised by a stream adapter when the connection is gone."""


class SendfileUnavailable(Exception):
    """Raised by a stream's ``sendfile`` that cannot send a file on this connection (nothing
    was sent): the server falls back to reading the file in pieces."""


def socket_address(addr: Any) -> tuple[str, int] | None:
    """``(host, port)`` of a socket address, for ``Request.client`` / ``.server``; None for a
    Unix socket's. An IPv4 one is that tuple already (kept, not copied: memory per connection);
    an IPv6 one loses its flow info and scope id."""
    if not isinstance(addr, tuple):
        return None
    return addr if len(addr) == 2 else (addr[0], addr[1])
