"""serve(): run a server until SIGINT/SIGTERM on the runtime you name, in one or N processes.

This is the blocking entry point (the CLI calls it). To serve inside a loop you already run,
use the runtime's coroutine: ``tophat.serve_asyncio`` (asyncio or uvloop) or
``tophat.serve_trio``.
"""

from __future__ import annotations

import asyncio
import functools
import socket
from ssl import SSLContext
from typing import Any, Literal

from ._connection import Endpoint
from ._opts import ServerOpts

__all__ = ["Runtime", "serve", "serve_trio"]

Runtime = Literal["asyncio", "uvloop", "trio"]
RUNTIMES: tuple[Runtime, ...] = ("asyncio", "uvloop", "trio")


class MissingExtra(RuntimeError):
    """A runtime was asked for whose optional dependency is not installed."""


def _import_uvloop() -> Any:
    try:
        import uvloop
    except ImportError:
        raise MissingExtra("runtime 'uvloop' needs uvloop: pip install 'tophat[fast]'") from None
    return uvloop


def _import_trio() -> Any:
    try:
        import trio
    except ImportError:
        raise MissingExtra("runtime 'trio' needs trio: pip install 'tophat[trio]'") from None
    return trio


async def serve_trio(
    endpoint: Endpoint, host: str = "127.0.0.1", port: int = 9999, **kw: Any
) -> None:
    """Serve on the running trio loop (see ``tophat._trio.serve`` for the arguments)."""
    _import_trio()
    from . import _trio

    await _trio.serve(endpoint, host, port, **kw)


def check_runtime(runtime: str) -> None:
    """Fail early, with the extra to install, when ``runtime`` cannot run here."""
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    if runtime == "uvloop":
        _import_uvloop()
    elif runtime == "trio":
        _import_trio()


def run_one(
    endpoint: Endpoint,
    host: str,
    port: int,
    *,
    opts: ServerOpts | None,
    runtime: Runtime,
    ssl: SSLContext | None,
    uds: str | None,
    sock: socket.socket | None,
) -> None:
    """Serve in this process on ``runtime`` until a signal stops it."""
    check_runtime(runtime)
    kw: dict[str, Any] = {"opts": opts, "ssl": ssl, "uds": uds, "sock": sock}
    if runtime == "trio":
        trio = _import_trio()
        trio.run(functools.partial(serve_trio, endpoint, host, port, **kw))
        return
    from ._asyncio import serve as serve_asyncio

    main = serve_asyncio(endpoint, host, port, **kw)
    if runtime == "uvloop":
        _import_uvloop().run(main)
    else:
        asyncio.run(main)


def serve(
    endpoint: Endpoint,
    host: str = "127.0.0.1",
    port: int = 9999,
    *,
    opts: ServerOpts | None = None,
    runtime: Runtime = "asyncio",
    workers: int = 1,
    ssl: SSLContext | None = None,
    uds: str | None = None,
    sock: socket.socket | None = None,
) -> None:
    """Serve ``endpoint`` until SIGINT or SIGTERM, then stop gracefully. Blocks.

    Args:
        endpoint: ``async (Request, ResponseWriter) -> ResponseWritten``.
        host, port: where to listen.
        opts: limits and timeouts (``ServerOpts()`` by default).
        runtime: ``"asyncio"``, ``"uvloop"`` (the ``fast`` extra) or ``"trio"`` (the ``trio``
            extra).
        workers: processes serving the same port; above 1 a supervisor restarts any that dies.
        ssl: serve TLS with this context.
        uds: listen on a Unix domain socket at this path instead of host/port.
        sock: an already-bound listening socket to serve instead.

    Raises:
        MissingExtra: when the runtime's package is not installed (the message names the extra).
    """
    check_runtime(runtime)
    if workers < 1:
        raise ValueError("workers must be >= 1")
    if workers == 1:
        run_one(endpoint, host, port, opts=opts, runtime=runtime, ssl=ssl, uds=uds, sock=sock)
        return
    from ._workers import supervise

    supervise(endpoint, host, port, opts=opts, runtime=runtime, workers=workers, ssl=ssl, uds=uds)
