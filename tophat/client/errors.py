"""The client's errors, and the :class:`Timeout` limits whose breach raises :class:`ClientTimeout`.

Re-exported by :mod:`tophat.client`; import them from there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

TimeoutPhase = Literal["connect", "read", "write"]


class ClientError(Exception):
    """Base class of every error the client raises."""


class ClientTimeout(ClientError, TimeoutError):
    """Connecting, or one read or write, took longer than its :class:`Timeout`."""

    def __init__(self, phase: TimeoutPhase, seconds: float | None = None) -> None:
        after = "" if seconds is None else f" after {seconds:g}s"
        super().__init__(f"{phase} timed out{after}")
        self.phase = phase
        self.seconds = seconds


class ClientConnectionError(ClientError, ConnectionError):
    """The connection could not be made, broke, or can no longer carry a request."""


class ClientProtocolError(ClientError):
    """The server's bytes are not a valid HTTP/1.1 response (h11 refused them)."""


@dataclass(frozen=True, slots=True)
class Timeout:
    """Seconds allowed to connect, and for each single read and write (``None``: no limit).

    ``Timeout(5)`` applies 5 seconds to all three.
    """

    connect: float | None = None
    read: float | None = None
    write: float | None = None

    @classmethod
    def of(cls, value: Timeout | float | None) -> Timeout:
        if isinstance(value, Timeout):
            return value
        return cls(value, value, value)
