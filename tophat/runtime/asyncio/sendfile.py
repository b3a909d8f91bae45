"""Zero-copy file bodies on asyncio: the ``sendfile`` of the stream protocol (``server/stream.py``).

``loop.sendfile`` hands the file to the kernel (``os.sendfile``) on the standard event loop's
plain TCP and Unix transports. Over TLS the bytes must pass through the encryption, and uvloop
has no ``loop.sendfile`` (its transports also own their socket, so we cannot call
``os.sendfile`` on it ourselves): there we raise :class:`SendfileUnavailable`, having sent
nothing, and the server reads the file in pieces instead.
"""

from __future__ import annotations

import asyncio
from asyncio.selector_events import BaseSelectorEventLoop
from typing import IO

from tophat.server.stream import SendfileUnavailable, StreamClosed, StreamTimeout

__all__ = ["send_file"]


async def send_file(
    loop: asyncio.AbstractEventLoop,
    transport: asyncio.Transport | None,
    tls: bool,
    timeout: float | None,
    file: IO[bytes],
    offset: int,
    count: int,
) -> int:
    """Send ``count`` bytes of ``file`` from ``offset`` on ``transport``; return how many went
    (fewer only at the end of the file). ``timeout`` (the write timeout) bounds the call: the
    server sends a file in bounded pieces, so it bounds the wait for each piece's progress.
    """
    if transport is None or transport.is_closing():
        raise StreamClosed("connection closed")
    if tls or not isinstance(loop, BaseSelectorEventLoop):
        raise SendfileUnavailable("no zero-copy sendfile on this connection")
    # fallback=False: asyncio's own fallback would read the file into memory whole per call.
    work = loop.sendfile(transport, file, offset, count, fallback=False)
    try:
        return await (work if timeout is None else asyncio.wait_for(work, timeout))
    except asyncio.TimeoutError:
        raise StreamTimeout("write") from None
    except RuntimeError as exc:  # (asyncio.SendfileNotAvailableError included)
        # Raised before anything was sent: the transport closing, or no native sendfile.
        if transport.is_closing():
            raise StreamClosed("connection closed") from exc
        raise SendfileUnavailable(str(exc)) from exc
