"""Run one server in this process on the runtime you name: ``run_one``, and what it needs.

The runtimes by name (``Runtime``, ``RUNTIMES``), the check that a runtime's optional
dependency is installed (``check_runtime``, raising ``MissingExtra`` with the extra to install),
and ``serve_trio``. ``serve`` (one process or a supervisor) and ``workers`` (each worker process)
both start their server here. A runtime's server module is imported only when that runtime is
asked for; no runtime imports this module.
"""

from __future__ import annotations

import asyncio
import functools
import socket
from ssl import SSLContext
from typing import Any, Literal

from tophat._asynclib import MissingExtra
from tophat.http.endpoint import Endpoint
from tophat.server.lifespan import Lifespan
from tophat.server.opts import ServerOpts

__all__ = ["RUNTIMES", "MissingExtra", "Runtime", "check_runtime", "run_one", "serve_trio"]

Runtime = Literal["asyncio", "uvloop", "trio"]
RUNTIMES: tuple[Runtime, ...] = ("asyncio", "uvloop", "trio")


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
    """Serve on the running trio loop (``tophat.runtime.trio.server.serve`` has the arguments)."""
    _import_trio()
    from tophat.runtime.trio.server import serve

    await serve(endpoint, host, port, **kw)


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
    lifespan: Lifespan | None = None,
) -> None:
    """Serve in this process on ``runtime`` until a signal stops it.

    Raises:
        LifespanFailed: the lifespan's setup or teardown raised (already logged).
    """
    check_runtime(runtime)
    kw: dict[str, Any] = {"opts": opts, "ssl": ssl, "uds": uds, "sock": sock, "lifespan": lifespan}
    if runtime == "trio":
        trio = _import_trio()
        trio.run(functools.partial(serve_trio, endpoint, host, port, **kw))
        return
    from tophat.runtime.asyncio.server import serve as serve_asyncio

    main = serve_asyncio(endpoint, host, port, **kw)
    if runtime == "uvloop":
        _import_uvloop().run(main)
    else:
        asyncio.run(main)
