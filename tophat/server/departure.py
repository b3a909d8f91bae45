"""``req.disconnected``: the event set when the client leaves while its request is handled.

The connection (``connection.py``) makes one ``Disconnected`` per connection, at its first
request, and sets it when the runtime reports the client gone (``Connection.peer_gone``). The
runtime's own event (``asyncio.Event``, ``trio.Event``), made by the stream's ``new_event``, is
created only when an endpoint waits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

__all__ = ["Disconnected", "Event"]


class Event(Protocol):
    """A runtime's event, as ``Disconnected`` uses it."""

    def set(self) -> None: ...
    async def wait(self) -> object: ...


class Disconnected:
    """``req.disconnected``: set once the client closed or reset the connection while a request
    was handled. One per connection (a connection whose client left serves no more requests);
    the runtime's event behind ``wait()`` is made only when someone waits."""

    __slots__ = ("_event", "_is_set", "_new_event")

    def __init__(self, new_event: Callable[[], Event] | None) -> None:
        self._new_event = new_event
        self._event: Event | None = None
        self._is_set = False

    def is_set(self) -> bool:
        return self._is_set

    async def wait(self) -> None:
        if self._is_set:
            return
        if self._event is None:
            if self._new_event is None:
                raise RuntimeError("this connection's stream cannot report a disconnect")
            self._event = self._new_event()
        await self._event.wait()

    def set(self) -> None:
        self._is_set = True
        if self._event is not None:
            self._event.set()
