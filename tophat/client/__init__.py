"""A minimal HTTP/1.1 client on h11: send requests over any stream, or to host:port.

The core, :class:`ClientConnection`, speaks HTTP over anything with the three
:class:`~tophat.Stream` methods and never touches a runtime or a clock (like ``accept`` on the
server side). :func:`connect` opens a TCP (or TLS) connection on whichever library is running,
asyncio or trio, and wraps it as a stream; the runtime that owns the clock applies the timeouts
there and raises :class:`ClientTimeout`. :class:`Client` keeps one idle connection per origin::

    async with Client("http://127.0.0.1:8000") as client:
        resp = await client.get("/hello")
        assert resp.status == 200 and resp.text == "hello"
        async with client.stream("GET", "/big") as resp:
            async for chunk in resp.stream():
                ...

Or over a stream you already have (one connection, requests one after another)::

    conn = ClientConnection(stream, host="example")
    resp = await conn.request("POST", "/echo", body=b"hi")
    data = await resp.body()   # the connection is free for the next request once it is read

This module holds :func:`connect` and :class:`Client`; the rest lives in private modules and is
re-exported here (import it from ``tophat.client``): the errors and :class:`Timeout`
(``_client_errors``), :class:`ClientConnection` (``_client_connection``),
:class:`ClientResponse` (``_client_response``) and the asyncio and trio stream adapters
(``_client_transport``).
"""

from __future__ import annotations

import contextlib
import json as _json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from tophat._asynclib import current

# Body, HeadersLike and TimeoutPhase: the type aliases of the public signatures, kept
# importable from here as before the split (``as`` marks them re-exported for mypy and ruff).
from tophat.client.connection import Body as Body
from tophat.client.connection import ClientConnection
from tophat.client.connection import HeadersLike as HeadersLike
from tophat.client.errors import (
    ClientConnectionError,
    ClientError,
    ClientProtocolError,
    ClientTimeout,
    Timeout,
)
from tophat.client.errors import TimeoutPhase as TimeoutPhase
from tophat.client.response import ClientResponse
from tophat.client.transport import AsyncioStream, TrioStream
from tophat.http.headers import Headers
from tophat.server.stream import Stream

if TYPE_CHECKING:
    from ssl import SSLContext

__all__ = [
    "Client",
    "ClientConnection",
    "ClientConnectionError",
    "ClientError",
    "ClientProtocolError",
    "ClientResponse",
    "ClientTimeout",
    "Timeout",
    "connect",
]

# RFC 9112 §9.3.1: a user agent MUST NOT automatically retry a request with a non-idempotent
# method (RFC 9110 §9.2.2 lists the idempotent ones).
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


async def connect(
    host: str,
    port: int,
    *,
    ssl: SSLContext | None = None,
    timeout: Timeout | float | None = None,
) -> ClientConnection:
    """Open a connection on the running library (asyncio, uvloop or trio).

    Args:
        host, port: where to connect; ``host`` (with a non-default port) is the ``Host`` header.
        ssl: speak TLS with this context (the server name checked is ``host``).
        timeout: seconds to connect and for each read and write, or a :class:`Timeout`.

    Raises:
        ClientTimeout: connecting took too long.
        ClientConnectionError: the connection was refused or failed.
    """
    limits = Timeout.of(timeout)
    if current() == "asyncio":
        stream: Stream = await AsyncioStream.open(host, port, ssl, limits)
    else:
        stream = await TrioStream.open(host, port, ssl, limits)
    default = _DEFAULT_PORTS["https" if ssl is not None else "http"]
    name = f"[{host}]" if ":" in host else host
    return ClientConnection(stream, host=name if port == default else f"{name}:{port}")


# -- Client: one idle connection per origin -----------------------------------------------------


class Client:
    """Requests to one or more origins, reusing one idle keep-alive connection per origin.

    ``url`` arguments are paths joined to ``base_url`` (or ``host``/``port``), or absolute
    ``http://`` / ``https://`` URLs. ``request()`` and the method shortcuts read the whole body
    (so the connection is free again); ``stream()`` gives the body piece by piece.

    A request that fails on a reused connection before any response arrived (the server
    closed it while idle) is sent again on a new connection if its method is idempotent and its
    body is bytes.

    Args:
        base_url: e.g. ``"http://127.0.0.1:8000"`` (a path in it prefixes every request path).
        host, port: instead of ``base_url`` (plain HTTP).
        headers: sent with every request (a request's own headers of the same name win).
        timeout: seconds to connect and for each read and write, or a :class:`Timeout`.
        ssl: the TLS context for ``https`` (default: ``ssl.create_default_context()``).
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        host: str | None = None,
        port: int | None = None,
        headers: HeadersLike | None = None,
        timeout: Timeout | float | None = None,
        ssl: SSLContext | None = None,
    ) -> None:
        if base_url is not None and host is not None:
            raise ValueError("give base_url or host/port, not both")
        if base_url is None and host is not None:
            bracketed = f"[{host}]" if ":" in host and not host.startswith("[") else host  # IPv6
            base_url = f"http://{bracketed}:{port or 80}"
        self._base = _Origin.parse(base_url) if base_url is not None else None
        self._headers = Headers(headers)
        self._timeout = Timeout.of(timeout)
        self._ssl = ssl
        self._idle: dict[tuple[str, str, int], ClientConnection] = {}

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: HeadersLike | None = None,
        body: Body = b"",
        json: Any = None,
    ) -> ClientResponse:
        """Send a request and read the whole response body before returning."""
        async with self.stream(method, url, headers=headers, body=body, json=json) as resp:
            await resp.body()
        return resp

    async def get(self, url: str, **kw: Any) -> ClientResponse:
        return await self.request("GET", url, **kw)

    async def head(self, url: str, **kw: Any) -> ClientResponse:
        return await self.request("HEAD", url, **kw)

    async def post(self, url: str, **kw: Any) -> ClientResponse:
        return await self.request("POST", url, **kw)

    async def put(self, url: str, **kw: Any) -> ClientResponse:
        return await self.request("PUT", url, **kw)

    async def patch(self, url: str, **kw: Any) -> ClientResponse:
        return await self.request("PATCH", url, **kw)

    async def delete(self, url: str, **kw: Any) -> ClientResponse:
        return await self.request("DELETE", url, **kw)

    @contextlib.asynccontextmanager
    async def stream(
        self,
        method: str,
        url: str,
        *,
        headers: HeadersLike | None = None,
        body: Body = b"",
        json: Any = None,
    ) -> AsyncIterator[ClientResponse]:
        """Send a request; the response's body is read inside the ``async with`` block."""
        origin, target = self._resolve(url)
        h = self._headers.copy()
        given = Headers(headers)  # once: ``headers`` may be a one-shot iterable
        for name in {name.lower() for name, _ in given}:
            h.remove(name)
        for name, value in given:
            h.add(name, value)
        if json is not None:
            body = _json.dumps(json, separators=(",", ":")).encode()
            h.setdefault("Content-Type", "application/json")
        conn, resp = await self._send(origin, method, target, h, body)
        try:
            yield resp
        finally:
            await resp.aclose()
            await self._release(origin, conn)

    async def aclose(self) -> None:
        """Close every idle connection."""
        idle, self._idle = self._idle, {}
        for conn in idle.values():
            await conn.aclose()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _resolve(self, url: str) -> tuple[_Origin, str]:
        if url[:8].lower().startswith(("http://", "https://")):  # schemes ignore case
            origin = _Origin.parse(url)
            parts = urlsplit(url)
            return origin, (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if self._base is None:
            raise ValueError(f"{url!r} is not an absolute URL and the client has no base_url")
        # A path without its leading "/" is still under the base path, not glued to its end;
        # a fragment is never sent (RFC 9112 §3.2.1: path and query only).
        url = url.partition("#")[0]
        return self._base, self._base.prefix + (url if url.startswith("/") else "/" + url)

    async def _send(
        self, origin: _Origin, method: str, target: str, h: Headers, body: Body
    ) -> tuple[ClientConnection, ClientResponse]:
        conn = self._idle.pop(origin.key, None)
        if conn is not None and (not conn.reusable or conn.peer_closed()):
            await conn.aclose()
            conn = None
        if conn is not None:
            try:
                return conn, await conn.request(method, target, headers=h, body=body)
            except ClientConnectionError:
                replayable = isinstance(body, bytes | bytearray | memoryview)
                if not (replayable and method in _IDEMPOTENT):
                    raise
        ssl = self._ssl if self._ssl is not None else origin.default_ssl()
        conn = await connect(origin.host, origin.port, ssl=ssl, timeout=self._timeout)
        try:
            return conn, await conn.request(method, target, headers=h, body=body)
        except BaseException:
            with contextlib.suppress(Exception):
                await conn.aclose()
            raise

    async def _release(self, origin: _Origin, conn: ClientConnection) -> None:
        if conn.reusable and origin.key not in self._idle:
            self._idle[origin.key] = conn
        else:
            await conn.aclose()


@dataclass(frozen=True, slots=True)
class _Origin:
    scheme: str
    host: str
    port: int
    prefix: str  # the base URL's path, without a trailing slash

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.scheme, self.host, self.port)

    @classmethod
    def parse(cls, url: str) -> _Origin:
        parts = urlsplit(url)
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise ValueError(f"{url!r}: expected http://host[:port][/path] or https://...")
        port = parts.port or _DEFAULT_PORTS[parts.scheme]
        return cls(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))

    def default_ssl(self) -> SSLContext | None:
        if self.scheme != "https":
            return None
        import ssl

        return ssl.create_default_context()
