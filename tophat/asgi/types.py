"""The ASGI 3 types the adapter speaks, and what an exchange needs of the application."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol

from tophat.http.endpoint import Endpoint
from tophat.server.opts import ServerOpts

__all__ = ["ASGIApp", "AppConfig", "Message", "Receive", "Scope", "Send"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class AppConfig(Protocol):
    """What one exchange reads of the application ``to_asgi`` built."""

    @property
    def endpoint(self) -> Endpoint: ...
    @property
    def opts(self) -> ServerOpts: ...
    @property
    def date_header(self) -> bool: ...
