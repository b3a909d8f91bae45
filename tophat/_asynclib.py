"""Which async library runs the current task, for the edges that serve either (the ASGI adapter,
the client, the in-memory test streams). The server itself never asks: its runtime tells it.

A module of its own at the top of the package, beside no layer, so that ``tophat.asgi``,
``tophat.client`` and ``tophat.testing`` share one answer without importing each other. It
imports neither library at module level: trio is optional.
"""

from __future__ import annotations

from typing import Literal, Protocol

__all__ = ["Event", "MissingExtra", "current", "new_event"]


class MissingExtra(RuntimeError):
    """An optional async library (uvloop, trio) was asked for and is not installed; the message
    names the extra to install. (Here, below the runtimes and the client, which both raise it.)"""


class Event(Protocol):
    """A one-shot event: ``asyncio.Event`` and ``trio.Event`` both fit."""

    def set(self) -> None: ...
    def is_set(self) -> bool: ...
    async def wait(self) -> object: ...


def current() -> Literal["asyncio", "trio"]:
    """``"asyncio"`` when an asyncio loop runs in this thread (uvloop included), else
    ``"trio"``, the only other library tophat runs on."""
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return "trio"
    return "asyncio"


def new_event() -> Event:
    """A one-shot event (``set()``, ``is_set()``, ``await wait()``) of the running library."""
    if current() == "asyncio":
        import asyncio

        return asyncio.Event()
    import trio

    return trio.Event()
