"""``TestClient``: requests from a plain synchronous test, the app served in memory on an
event loop the client keeps."""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Mapping
from types import TracebackType

from typing_extensions import Self, Unpack

from tophat.http.endpoint import Endpoint
from tophat.http.headers import Headers
from tophat.server.lifespan import Lifespan
from tophat.server.opts import ServerOpts
from tophat.testing._async import AsyncTestClient
from tophat.testing._cookies import Cookies
from tophat.testing._lifespan import ClientLifespan
from tophat.testing._portal import Portal, Runtime
from tophat.testing._response import TestResponse
from tophat.testing._session import HeaderItems, RequestOptions

__all__ = ["TestClient"]


class TestClient:
    """Call an app from a plain ``def`` test: no server, no socket, no ``await``.

    ::

        def test_items() -> None:
            with TestClient(app) as client:
                resp = client.post("/items", json={"name": "hat"})
                assert resp.status == 201 and resp.json() == {"id": 1, "name": "hat"}
                assert client.get("/items", params={"name": "hat"}).json() == [...]

    Each request is served on a fresh in-memory connection by the real ``accept`` (the parser,
    the strict checks, the framing: what a socket would get). The app runs on an event loop of
    ``runtime`` that the client keeps from its first request to :meth:`close` (or the end of
    ``with``), so what the app keeps between requests (a pool, an event, a task) stays on one
    loop. asyncio runs in the test's thread; trio, or any runtime when the test itself is
    ``async def`` (an event loop already runs in its thread), in a thread of the client's.
    From async code, prefer :class:`AsyncTestClient`, which runs on the test's own loop.

    **Cookies** are kept per client (``client.cookies``) and follow ``Set-Cookie`` as a
    browser does: ``Domain`` (else host-only), ``Path``, ``Expires``/``Max-Age`` (``Max-Age=0``
    deletes), ``Secure``, the ``__Host-`` and ``__Secure-`` prefixes (RFC 6265bis).

    **Why https://testserver by default**: tophat's cookies are ``Secure`` by default
    (``Identity`` names its cookie ``__Host-tophat-auth``), and a jar that follows the rules
    drops a ``Secure`` cookie set over plain http, so a login would not survive its response.
    So the client emulates TLS, as production runs: the server sees ``req.scheme == "https"``
    (the in-memory connection is passed to ``accept`` as a TLS one) and the jar accepts and
    sends ``Secure`` cookies. Pass ``base_url="http://testserver"`` to test plain-http
    behaviour (``Secure`` cookies are then dropped, as a browser drops them), or an absolute
    ``http://...`` URL to one request.

    Args:
        app: the endpoint (a ``Router``, a middleware chain, a handler).
        opts: the server options (limits, timeouts, ``verbose_glitch``, ...).
        runtime: ``"asyncio"``, ``"uvloop"`` (the ``fast`` extra) or ``"trio"`` (the
            ``trio`` extra).
        base_url: where relative URLs go, ``scheme://host[:port][/prefix]``.
        headers: header fields sent with every request (``client.headers``, a
            :class:`~tophat.Headers` you may change); a request's own fields of a name replace
            them.
        cookies: cookies to start with, as if the base URL had set them (``Path=/``).
        client, server: the peer and local addresses the server sees (``req.client``).
        lifespan: the app's startup and shutdown, as ``serve(..., lifespan=)`` and the CLI
            run it: its setup runs on the client's loop on ``with`` or before the first
            request, so what it opens (a pool bound to that loop) works in the handlers; its
            teardown runs at :meth:`close` or the end of ``with``. Both run in one task of
            their own (a task group or cancel scope around the ``yield`` works). A setup that
            raises raises ``tophat.LifespanFailed`` (its ``__cause__`` the error) from
            ``with`` or that request (the next request tries again); a teardown that raises,
            from :meth:`close` or the end of ``with`` (unless the block raised: that error
            goes on, the teardown's is logged).

    Raises:
        MissingExtra: the runtime's library is not installed.
        TypeError: ``lifespan`` is not callable.
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        app: Endpoint,
        opts: ServerOpts | None = None,
        *,
        runtime: Runtime = "asyncio",
        base_url: str = "https://testserver",
        headers: HeaderItems | None = None,
        cookies: Mapping[str, str] | None = None,
        client: tuple[str, int] | None = ("127.0.0.1", 40000),
        server: tuple[str, int] | None = ("127.0.0.1", 9999),
        lifespan: Lifespan | None = None,
    ) -> None:
        # (the lifespan is the sync client's: it runs in a task of its own on the portal)
        self.async_client = AsyncTestClient(
            app, opts, base_url=base_url, headers=headers, cookies=cookies, client=client,
            server=server,
        )  # fmt: skip
        self._lifespan = None if lifespan is None else ClientLifespan(lifespan)
        self._portal = Portal(runtime)
        # A client dropped without close() still ends its lifespan and frees its loop and
        # thread (and at exit).
        self._finalizer = weakref.finalize(self, _shut_down, self._portal, self._lifespan)

    @property
    def runtime(self) -> Runtime:
        return self._portal.runtime

    @property
    def base_url(self) -> str:
        return self.async_client.base_url

    @property
    def headers(self) -> Headers:
        """The header fields sent with every request (a request's own fields replace them)."""
        return self.async_client.headers

    @property
    def cookies(self) -> Cookies:
        """The cookie jar: what the responses set, sent back where RFC 6265 says."""
        return self.async_client.cookies

    def raw(
        self, data: bytes | Iterable[bytes], *, close: bool = True, scheme: str | None = None
    ) -> bytes:
        """Send raw request bytes (one piece, or several pieces delivered one read each); the
        bytes the server wrote, exactly. No cookie is added or kept.

        Args:
            close: half-close the client side after the bytes (else the server sees no end).
            scheme: ``req.scheme`` for this connection (default: the base URL's).
        """
        self._start()
        return self._portal.call(self.async_client.raw, data, close=close, scheme=scheme)

    def _start(self) -> None:
        if self._lifespan is not None and not self._lifespan.running:
            self._portal.call(self._lifespan.start, self._portal.spawn)

    def request(self, method: str, url: str, **options: Unpack[RequestOptions]) -> TestResponse:
        """Send one request, return its parsed response.

        Args:
            method: the method, as sent.
            url: a path (``/items?x=1``; spaces and non-ASCII are percent-encoded as UTF-8),
                joined to the base URL, or an absolute ``http://`` or ``https://`` URL (its host
                is the ``Host`` field, its scheme ``req.scheme``).
            options: ``params=``, ``headers=``, ``json=``, ``content=``, ``data=``,
                ``version=``: see :class:`~tophat.testing.RequestOptions`.

        Returns:
            The response: ``.status``, ``.headers``, ``.body``, ``.text``, ``.json()`` and
            ``.raw``, the bytes the server wrote. Its ``Set-Cookie`` fields are in the jar.
        """
        self._start()
        return self._portal.call(self.async_client.request, method, url, **options)

    def get(self, url: str, **options: Unpack[RequestOptions]) -> TestResponse:
        """``GET url``: see :meth:`request`."""
        return self.request("GET", url, **options)

    def post(self, url: str, **options: Unpack[RequestOptions]) -> TestResponse:
        """``POST url``: see :meth:`request`."""
        return self.request("POST", url, **options)

    def put(self, url: str, **options: Unpack[RequestOptions]) -> TestResponse:
        """``PUT url``: see :meth:`request`."""
        return self.request("PUT", url, **options)

    def patch(self, url: str, **options: Unpack[RequestOptions]) -> TestResponse:
        """``PATCH url``: see :meth:`request`."""
        return self.request("PATCH", url, **options)

    def delete(self, url: str, **options: Unpack[RequestOptions]) -> TestResponse:
        """``DELETE url``: see :meth:`request`."""
        return self.request("DELETE", url, **options)

    def head(self, url: str, **options: Unpack[RequestOptions]) -> TestResponse:
        """``HEAD url``: see :meth:`request`."""
        return self.request("HEAD", url, **options)

    def options(self, url: str, **options: Unpack[RequestOptions]) -> TestResponse:
        """``OPTIONS url``: see :meth:`request`."""
        return self.request("OPTIONS", url, **options)

    def close(self) -> None:
        """Run the lifespan's teardown (if its setup ran), cancel what the app left running on
        the client's loop, close the loop and join the client's threads. The client cannot be
        used afterwards. Idempotent.

        Raises:
            LifespanFailed: the lifespan's teardown raised (logged once; the error is the
                ``__cause__``). The loop is closed all the same.
        """
        self._close(None, None)

    def _close(self, exc_type: type[BaseException] | None, exc: BaseException | None) -> None:
        try:
            _stop(self._portal, self._lifespan, exc_type, exc)
        finally:
            self._finalizer()

    def __enter__(self) -> Self:
        """Run the lifespan's setup, if there is one.

        Raises:
            LifespanFailed: it raised (logged once); the client is closed.
        """
        try:
            self._start()
        except BaseException:
            self._finalizer()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._close(exc_type, exc)


def _stop(
    portal: Portal,
    lifespan: ClientLifespan | None,
    exc_type: type[BaseException] | None = None,
    exc: BaseException | None = None,
) -> None:
    """The lifespan's teardown, in its own task, before the portal cancels what is left."""
    if lifespan is not None and lifespan.running:
        portal.call(lifespan.stop, exc_type, exc)


def _shut_down(portal: Portal, lifespan: ClientLifespan | None) -> None:
    try:
        _stop(portal, lifespan)
    except Exception:  # (a client dropped unclosed: the teardown's failure was logged)
        pass
    finally:
        portal.close()
