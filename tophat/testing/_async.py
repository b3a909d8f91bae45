"""``AsyncTestClient``: requests from an async test, served in memory by ``accept``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import TracebackType

from typing_extensions import Self, Unpack

from tophat.http.endpoint import Endpoint
from tophat.http.headers import Headers
from tophat.server.connection import accept
from tophat.server.lifespan import Lifespan
from tophat.server.opts import ServerOpts
from tophat.testing._cookies import Cookies
from tophat.testing._lifespan import ClientLifespan
from tophat.testing._memory import memory_stream_pair
from tophat.testing._response import TestResponse
from tophat.testing._session import HeaderItems, RequestOptions, Session

__all__ = ["AsyncTestClient"]


class AsyncTestClient:
    """Drive an endpoint through ``accept`` over an in-memory stream, from async code.

    The request API (``get``, ``post``, ..., ``request``; ``params=``, ``json=``,
    ``content=``, ``data=``, ``headers=``) and the cookie jar are :class:`TestClient`'s; see
    there. Each call serves one fresh connection: the request bytes are queued, the client side
    is half-closed, and ``accept`` runs until it returns, on the caller's event loop (asyncio
    or trio).

    Raw bytes in, raw bytes out::

        out = await AsyncTestClient(app).raw(b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
        assert out.startswith(b"HTTP/1.1 200 OK\\r\\n")

    Args:
        endpoint: the app.
        opts: the server options (limits, timeouts, ``verbose_glitch``, ...).
        base_url: where relative URLs go. Its scheme is what the server sees as ``req.scheme``
            and what the jar applies ``Secure`` by. ``http://testserver`` here, the default
            of the wire tests written against this client; :class:`TestClient` emulates
            ``https://testserver`` (see there why): pass ``base_url="https://testserver"``
            for its behaviour, e.g. to keep ``Identity``'s ``Secure`` cookies.
        headers: header fields sent with every request (``client.headers``, a
            :class:`~tophat.Headers` you may change).
        cookies: cookies to start with, as if the base URL had set them.
        client, server: the peer and local addresses the server sees.
        lifespan: the app's startup and shutdown (what ``serve(..., lifespan=)`` and the
            CLI run): its setup runs on the test's loop on ``async with`` or before the first
            request, its teardown at the end of ``async with`` or on :meth:`aclose`. A setup
            that raises raises ``tophat.LifespanFailed`` (its ``__cause__`` the error) from
            ``async with`` or that request; a teardown that raises, from the exit or
            :meth:`aclose`. Setup and teardown run in the task that enters and the task that
            closes: with ``async with``, one task, as a task group opened around the
            lifespan's ``yield`` requires.

    Raises:
        TypeError: ``lifespan`` is not callable.
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        endpoint: Endpoint,
        opts: ServerOpts | None = None,
        *,
        base_url: str = "http://testserver",
        headers: HeaderItems | None = None,
        cookies: Mapping[str, str] | None = None,
        client: tuple[str, int] | None = ("127.0.0.1", 40000),
        server: tuple[str, int] | None = ("127.0.0.1", 9999),
        lifespan: Lifespan | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.opts = opts or ServerOpts()
        self.client = client
        self.server = server
        self.session = Session(base_url, headers, cookies)
        self._lifespan = None if lifespan is None else ClientLifespan(lifespan)
        self._closed = False

    async def __aenter__(self) -> Self:
        if self._lifespan is not None:
            await self._lifespan.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close(exc_type, exc)

    async def aclose(self) -> None:
        """Run the lifespan's teardown (if its setup ran); the client cannot be used
        afterwards. Idempotent.

        Raises:
            LifespanFailed: the teardown raised (logged once; the error is the ``__cause__``).
        """
        await self._close(None, None)

    async def _close(self, exc_type: type[BaseException] | None, exc: BaseException | None) -> None:
        self._closed = True
        if self._lifespan is not None:
            await self._lifespan.stop(exc_type, exc)

    @property
    def base_url(self) -> str:
        return self.session.base_url

    @property
    def scheme(self) -> str:
        """The base URL's scheme: ``req.scheme`` for :meth:`raw` requests."""
        return self.session.scheme

    @property
    def headers(self) -> Headers:
        """The header fields sent with every request (a request's own fields replace them)."""
        return self.session.headers

    @property
    def cookies(self) -> Cookies:
        """The cookie jar: what the responses set, sent back where RFC 6265 says."""
        return self.session.cookies

    async def raw(
        self, data: bytes | Iterable[bytes], *, close: bool = True, scheme: str | None = None
    ) -> bytes:
        """Send raw request bytes (one piece, or several pieces delivered one read each); the
        bytes the server wrote, exactly. No cookie is added or kept.

        Args:
            close: half-close the client side after the bytes (else the server sees no end).
            scheme: ``req.scheme`` for this connection (default: the base URL's).
        """
        if self._closed:
            raise RuntimeError("this AsyncTestClient is closed")
        if self._lifespan is not None and not self._lifespan.running:
            await self._lifespan.start()
        client, server = memory_stream_pair()
        for piece in [data] if isinstance(data, bytes | bytearray) else data:
            await client.send_all(piece)
        if close:
            client.send_eof()
        await accept(
            server,
            self.endpoint,
            self.opts,
            client=self.client,
            server=self.server,
            scheme=scheme or self.scheme,
        )
        return client.take_all()

    async def request(
        self, method: str, url: str, **options: Unpack[RequestOptions]
    ) -> TestResponse:
        """Send one request, return its parsed response (``resp.raw``: the bytes as sent).

        ``url`` is a path (``/items?x=1``), joined to the base URL, or an absolute
        ``http://`` or ``https://`` URL (its host is the ``Host``, its scheme ``req.scheme``).
        The options are :class:`RequestOptions`. The jar's cookies for the URL are sent, and
        the response's ``Set-Cookie`` fields go to the jar.
        """
        prepared = self.session.prepare(method, url, options)
        out = await self.raw(prepared.data, scheme=prepared.scheme)
        return self.session.finish(prepared, out)

    async def get(self, url: str, **options: Unpack[RequestOptions]) -> TestResponse:
        """``GET url``: see :meth:`request`."""
        return await self.request("GET", url, **options)

    async def post(self, url: str, **options: Unpack[RequestOptions]) -> TestResponse:
        """``POST url``: see :meth:`request`."""
        return await self.request("POST", url, **options)

    async def put(self, url: str, **options: Unpack[RequestOptions]) -> TestResponse:
        """``PUT url``: see :meth:`request`."""
        return await self.request("PUT", url, **options)

    async def patch(self, url: str, **options: Unpack[RequestOptions]) -> TestResponse:
        """``PATCH url``: see :meth:`request`."""
        return await self.request("PATCH", url, **options)

    async def delete(self, url: str, **options: Unpack[RequestOptions]) -> TestResponse:
        """``DELETE url``: see :meth:`request`."""
        return await self.request("DELETE", url, **options)

    async def head(self, url: str, **options: Unpack[RequestOptions]) -> TestResponse:
        """``HEAD url``: see :meth:`request`."""
        return await self.request("HEAD", url, **options)

    async def options(self, url: str, **options: Unpack[RequestOptions]) -> TestResponse:
        """``OPTIONS url``: see :meth:`request`."""
        return await self.request("OPTIONS", url, **options)
