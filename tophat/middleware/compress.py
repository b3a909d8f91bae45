"""Response compression (RFC 9110 §8.4 content codings), safe for streams: a middleware factory.

A JSON API whose clients send ``Accept-Encoding: gzip, br``::

    app = chain(compress())(router)  # gzip always; br and zstd with the compress extra

What it does, and why:

* **Negotiation** (RFC 9110 §12.5.3). ``Accept-Encoding`` with q-values, ``*``, ``x-gzip``
  for gzip (§8.4.1.3) and ``identity``. The highest q wins; on a tie the server's order
  decides, by default zstd, then br, then gzip: zstd and br make text 10-25 % smaller than
  gzip at the same speed or better (zstd is the faster of the two), and gzip is what every
  client reads. A coding is offered only when its package is installed. Identity is sent
  when the client prefers it (``gzip;q=0.5, identity``), and also when the request has **no**
  ``Accept-Encoding``: the RFC lets a server send any coding then, but a client that says
  nothing is an old or minimal one (curl without ``--compressed``, a script, a probe), and
  identity is what it can surely read (nginx, Apache and Starlette do the same). When the
  client refuses identity (``identity;q=0``) but accepts no coding that applies, identity is
  sent all the same: RFC 9110 §12.1 lets a server disregard a negotiation header rather than
  answer 406, which would turn a working response into an error.
* **What is left alone**: a body shorter than ``min_size`` (when its length is known); a
  response that already has a ``Content-Encoding`` (the application encoded it); one with
  ``Cache-Control: no-transform`` (RFC 9111 §5.2.2.6); 204, 205 and 304 (no content); a
  range response (206, or any with ``Content-Range``: its byte offsets are the identity's);
  a ``Content-Type`` that does not compress (images, video, archives: see
  ``content_types``), or none.
* ``Vary: Accept-Encoding`` (RFC 9110 §12.5.5) goes on every response that would be
  compressed for some client, **also when this client did not accept** a coding: a cache
  must not give the identity response to a client that asked for gzip, or the reverse. It
  goes on 304s too (RFC 9110 §15.4.5: a 304 carries the Vary its 200 would).
* **HEAD** gets the head a GET would (RFC 9110 §9.3.2): the same ``Content-Encoding``,
  ``Vary``, ``ETag`` and length (a whole body is compressed to know it); its body, never
  sent, is never read.
* **Strong ETags** are suffixed with the coding (``"abc"`` -> ``"abc-gzip"``), not made weak:
  a strong validator names one representation's bytes (RFC 9110 §8.8.1) and the gzip bytes are
  another representation; a weak one would make every ``If-Match`` of a client that got the
  compressed response fail (§13.1.1: strong comparison), so a JSON API's optimistic
  concurrency (``PUT`` with ``If-Match``) would answer 412 for ever. The suffix is taken off
  again on the way in: ``If-Match`` loses any of this middleware's suffixes (it asks about the
  resource's state), ``If-None-Match`` only the one of the coding this request negotiates (a
  304 must mean "the representation you have is the one you would get"), and a 304 answered
  for a suffixed tag carries it back. ``If-Range`` is left as sent: a range of the identity
  bytes must not be appended to a compressed partial copy, so a suffixed tag there never
  matches and the whole response is sent (§13.1.5). Weak ETags stay: a weak validator may be
  shared by representations that mean the same (§8.8.1). A compressed response loses
  ``Accept-Ranges`` (its ranges would be the identity's), as nginx does.
* **Streaming**: a body of bytes up to 256 KiB is compressed in one go and sent with its new
  ``Content-Length`` (sent as identity if compressing does not make it smaller); a larger or
  streamed one is compressed piece by piece and sent chunked, each piece **flushed** through
  the compressor (``Z_SYNC_FLUSH`` and its br and zstd equivalents), so a server-sent event
  reaches the client when it is yielded, not when a buffer fills. Memory per response is the
  compressor's state (a few hundred KiB to a few MiB, see ``_codings``), whatever the length.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable

from tophat._extras import MissingExtra
from tophat.http.endpoint import Endpoint
from tophat.http.headers import Headers
from tophat.http.request import Request
from tophat.http.writer import Response, ResponseWriter, ResponseWritten
from tophat.middleware import Middleware, vary_hook
from tophat.middleware._codings import CODINGS, Codec, Coding, Stream, load
from tophat.middleware._negotiation import (
    CACHE_MAX,
    DEFAULT_CONTENT_TYPES,
    choose,
    parse_accept_encoding,
    type_predicate,
)

__all__ = ["DEFAULT_CONTENT_TYPES", "compress"]


_WHOLE_MAX = 256 * 1024  # a bytes body up to this is compressed in one go (~2 ms at gzip 6)
_PIECE = 64 * 1024  # a larger one is compressed and sent in pieces of this size
_EMPTY = frozenset((204, 205))  # no content, no validators to keep (304: below)
# RFC 9110 §8.8.3: entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE (etagc excludes DQUOTE).
_ETAG = re.compile(r'(W/)?"([^"]*)"')
# RFC 9111 §5.2.2.6 (a directive of a comma-separated list, in any letter case).
_NO_TRANSFORM = re.compile(r"(?:^|,)[ \t]*no-transform[ \t]*(?:,|$)", re.IGNORECASE)
_EXTRAS = {"br": "brotli", "zstd": "zstandard"}
_add_vary = vary_hook("Accept-Encoding")  # checked and joined once


def compress(
    *,
    min_size: int = 512,
    encodings: Iterable[Coding] | None = None,
    gzip_level: int = 6,
    brotli_quality: int = 4,
    zstd_level: int = 3,
    content_types: Iterable[str] | Callable[[str], bool] = DEFAULT_CONTENT_TYPES,
) -> Middleware:
    """Build a compression middleware.

    Args:
        min_size: bodies shorter than this many bytes (when their length is known) are sent
            as they are: their head costs more than compressing saves.
        encodings: the codings to offer, in the server's order of preference for equal
            q-values (``"zstd"``, ``"br"``, ``"gzip"``). Default: all three, br and zstd only
            if their package is installed (the ``compress`` extra).
        gzip_level: 1 (fastest) to 9 (smallest).
        brotli_quality: 0 to 11. The default 4 is the usual choice for responses made on the
            fly (11 is for files compressed once, ahead of time).
        zstd_level: 1 to 19 (levels above 19 need a window browsers refuse, RFC 9659).
        content_types: the media types to compress: patterns (``"text/*"``, ``"+json"``,
            ``"application/json"``) or a function of the media type (lower case, without
            parameters) that says yes or no.

    Raises:
        ValueError: for a level out of range, an unknown coding, a malformed pattern.
        RuntimeError: when ``encodings`` names br or zstd and its package is missing (one line
            naming the extra; ``tophat.MissingExtra`` lives below the runtimes, which this
            layer may not import, and is a RuntimeError too).
    """
    if min_size < 0:
        raise ValueError("min_size must be >= 0 bytes")
    _check_level("gzip_level", gzip_level, 1, 9)
    _check_level("brotli_quality", brotli_quality, 0, 11)
    _check_level("zstd_level", zstd_level, 1, 19)
    levels: dict[Coding, int] = {"gzip": gzip_level, "br": brotli_quality, "zstd": zstd_level}
    codecs = _codecs(encodings, levels)
    offered = tuple(codecs)
    compressible = type_predicate(content_types)
    # Accept-Encoding value -> the coding chosen (bounded: a client may send anything).
    chosen: dict[str, Coding | None] = {}

    def negotiate(value: str) -> Coding | None:
        try:
            return chosen[value]
        except KeyError:
            coding = choose(parse_accept_encoding(value), offered)
            if len(chosen) < CACHE_MAX:
                chosen[value] = coding
            return coding

    def hook_for(
        req: Request, coding: Coding | None, revalidated: set[str]
    ) -> Callable[[Response], None]:
        head = req.method == "HEAD"

        def encode(response: Response) -> None:
            codec = None if coding is None else codecs[coding]
            _encode(response, codec, head, revalidated, min_size, compressible)

        return encode

    def middleware(endpoint: Endpoint) -> Endpoint:
        async def compress_endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
            h = req.headers
            values = h.get_all("accept-encoding")
            coding = (
                negotiate(values[0] if len(values) == 1 else ", ".join(values)) if values else None
            )
            revalidated: set[str] = set()
            if "if-match" in h:
                _untag(h, "if-match", tuple("-" + c for c in offered), None)
            if coding is not None and "if-none-match" in h:
                _untag(h, "if-none-match", ("-" + coding,), revalidated)
            w.before_send(hook_for(req, coding, revalidated))
            return await endpoint(req, w)

        return compress_endpoint

    return middleware


def _check_level(name: str, level: int, low: int, high: int) -> None:
    if not isinstance(level, int) or not low <= level <= high:
        raise ValueError(f"{name} must be an int from {low} to {high}, got {level!r}")


def _codecs(encodings: Iterable[Coding] | None, levels: dict[Coding, int]) -> dict[Coding, Codec]:
    """The codecs to offer, in order of preference."""
    if encodings is None:
        loaded = {c: load(c, levels[c]) for c in CODINGS}
        return {c: codec for c, codec in loaded.items() if codec is not None}
    if isinstance(encodings, str):
        raise ValueError("encodings must be a list of codings, e.g. ['br', 'gzip'], not a string")
    out: dict[Coding, Codec] = {}
    for name in encodings:
        if name not in CODINGS:
            raise ValueError(f"encodings: {name!r} is not one of {', '.join(CODINGS)}")
        codec = load(name, levels[name])
        if codec is None:
            raise MissingExtra(
                f"compress(encodings=[{name!r}]) needs {_EXTRAS[name]}: "
                "pip install 'tophat[compress]'"
            )
        out[name] = codec
    if not out:
        raise ValueError("encodings must name at least one coding")
    return out


def _untag(headers: Headers, name: str, suffixes: tuple[str, ...], found: set[str] | None) -> None:
    """Take this middleware's coding suffixes off the entity tags in the request's ``name``
    field, so that the endpoint compares them with its own; the opaque tags unsuffixed go
    into ``found``."""
    value = ", ".join(headers.get_all(name))

    def untag(m: re.Match[str]) -> str:
        opaque = m[2]
        for suffix in suffixes:
            if opaque.endswith(suffix):
                opaque = opaque[: -len(suffix)]
                if found is not None:
                    found.add(opaque)
                return f'{m[1] or ""}"{opaque}"'
        return m[0]

    rewritten = _ETAG.sub(untag, value)
    if rewritten != value:
        headers.set(name, rewritten)


def _encode(
    response: Response,
    codec: Codec | None,
    head: bool,
    revalidated: set[str],
    min_size: int,
    compressible: Callable[[str], bool],
) -> None:
    """The ``before_send`` hook: decide, and compress ``response`` in place."""
    status = response.status
    if status in _EMPTY:
        return
    h = response.headers
    content_type = etag = None
    for lname, _, value in h.fields():  # one pass over the fields
        if lname == "content-type":
            content_type = value
        elif lname == "etag":
            etag = value
        elif lname in ("content-encoding", "content-range"):
            return  # encoded already, or a range of the identity
        elif lname == "cache-control" and _NO_TRANSFORM.search(value):
            return
    if status == 304:
        # RFC 9110 §15.4.5: the Vary and ETag a 200 would have had. (A 304 often has no
        # Content-Type: then the 200's is unknown, and Vary is the safe side.)
        if content_type is None or compressible(content_type):
            _add_vary(response)
            if codec is not None and etag is not None:
                m = _ETAG.fullmatch(etag)
                if m is not None and not m[1] and m[2] in revalidated:
                    h.set("etag", f'"{m[2]}-{codec.name}"')
        return
    if status == 206 or content_type is None or not compressible(content_type):
        return
    body = response.body
    length = response.length
    if length is not None and length < min_size:
        return
    _add_vary(response)  # from here on, the encoding depends on Accept-Encoding
    if codec is None:
        return
    if isinstance(body, bytes) and len(body) <= _WHOLE_MAX:
        data = codec.whole(body)
        if len(data) >= len(body):
            return  # no smaller: send it as it is
        response.body = data
        response.length = len(data)
    else:
        response.length = None  # sent chunked: its length is known only at the end
        if not head:  # (a HEAD's body is never read, only closed by the server)
            response.body = _Encoded(body, codec.stream())
    h.set("content-encoding", codec.name)
    h.remove("accept-ranges")
    if etag is not None:
        m = _ETAG.fullmatch(etag.strip(" \t"))
        if m is None:
            h.remove("etag")  # a malformed tag cannot be told apart from the identity's
        elif not m[1]:
            h.set("etag", f'"{m[2]}-{codec.name}"')


class _Encoded:
    """A body compressed as it is read: each piece of ``body`` goes out compressed and
    flushed, as soon as it comes. Closing it closes ``body``, read or not."""

    __slots__ = ("_body", "_it", "_offset", "_stream")

    def __init__(self, body: bytes | AsyncIterable[bytes], stream: Stream) -> None:
        self._body = body
        self._it: AsyncIterator[bytes] | None = None
        self._offset = 0  # for a bytes body: the next piece's start
        self._stream: Stream | None = stream

    def __aiter__(self) -> _Encoded:
        return self

    async def __anext__(self) -> bytes:
        while (stream := self._stream) is not None:
            piece = await self._next()
            if piece is None:
                self._stream = None
                return stream.finish()
            if piece:
                out = stream.piece(piece)
                if out:
                    return out
        raise StopAsyncIteration

    async def _next(self) -> bytes | None:
        body = self._body
        if isinstance(body, bytes):
            start = self._offset
            if start >= len(body):
                return None
            self._offset = start + _PIECE
            return body[start : start + _PIECE]
        if self._it is None:
            self._it = body.__aiter__()
        try:
            return await self._it.__anext__()
        except StopAsyncIteration:
            return None

    async def aclose(self) -> None:
        self._stream = None
        target = self._it if self._it is not None else self._body
        close = getattr(target, "aclose", None)
        if close is not None:
            await close()
