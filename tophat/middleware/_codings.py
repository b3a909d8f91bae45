"""The content codings ``compress()`` produces: gzip (stdlib ``zlib``), br and zstd.

Each coding gives a one-shot compressor (a whole body of known size, to send with its new
``Content-Length``) and a streaming one that *flushes* after every piece: ``Z_SYNC_FLUSH``
for gzip, ``BROTLI_OPERATION_FLUSH`` for br, a block flush for zstd. A flush ends the
compressor's current block, so every byte put in so far can be decoded from what came out:
the piece (a server-sent event, a line of a log tail) reaches the client now, not when some
internal buffer fills. Each costs a few bytes (gzip: 4-5) and the matches across the boundary.

Memory is bounded per stream, whatever its length: zlib's default ``memLevel`` 8 and 32 KiB
window take ~256 KiB; brotli's window is capped at 4 MiB (``lgwin`` 22, its default); zstd
levels are capped at 19, whose window is at most 8 MiB (RFC 9659: a zstd content coding MUST
NOT need a window over 8 MiB to decode; browsers refuse larger ones).

br needs the ``brotli`` package (or ``brotlicffi``), zstd ``zstandard`` (or the standard
library's ``compression.zstd``, Python 3.14): the ``compress`` extra. They are looked up
once, when a middleware is built; neither has type stubs, hence the ``Any`` behind the
small :class:`Stream` protocol.
"""

from __future__ import annotations

import importlib
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

__all__ = ["CODINGS", "Codec", "Coding", "Stream", "load"]

Coding = Literal["zstd", "br", "gzip"]
# Every coding compress() knows, in its default order of preference (see compress.py).
CODINGS: tuple[Coding, ...] = ("zstd", "br", "gzip")
# For each optional coding: the modules that provide it, tried in turn.
_PROVIDERS: dict[Coding, tuple[str, ...]] = {
    "br": ("brotli", "brotlicffi"),
    "zstd": ("compression.zstd", "zstandard"),
}


class Stream(Protocol):
    """A streaming compressor for one response body."""

    def piece(self, data: bytes) -> bytes:
        """Compress ``data`` and flush: the result decodes to everything given so far."""
        ...

    def finish(self) -> bytes:
        """The end of the compressed stream (the gzip trailer, the last brotli meta-block)."""
        ...


@dataclass(frozen=True, slots=True)
class Codec:
    """One content coding at one level: compress a whole body, or start a stream."""

    name: Coding
    whole: Callable[[bytes], bytes]
    stream: Callable[[], Stream]


class _Gzip:
    __slots__ = ("_z",)

    def __init__(self, level: int) -> None:
        # wbits 31 = 16 + 15: a gzip member (RFC 1952) around a deflate stream with a 32 KiB
        # window. The header's MTIME is 0 ("no time stamp"): the same body gives the same bytes.
        self._z = zlib.compressobj(level, zlib.DEFLATED, 31)

    def piece(self, data: bytes) -> bytes:
        return self._z.compress(data) + self._z.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        return self._z.flush(zlib.Z_FINISH)


def _gzip(level: int) -> Codec:
    def whole(data: bytes) -> bytes:
        z = zlib.compressobj(level, zlib.DEFLATED, 31)
        return z.compress(data) + z.flush()

    return Codec("gzip", whole, lambda: _Gzip(level))


class _Brotli:
    __slots__ = ("_c",)

    def __init__(self, module: Any, quality: int) -> None:
        self._c = module.Compressor(quality=quality)

    def piece(self, data: bytes) -> bytes:
        out: bytes = self._c.process(data) + self._c.flush()
        return out

    def finish(self) -> bytes:
        out: bytes = self._c.finish()
        return out


def _brotli(module: Any, quality: int) -> Codec:
    def whole(data: bytes) -> bytes:
        out: bytes = module.compress(data, quality=quality)
        return out

    return Codec("br", whole, lambda: _Brotli(module, quality))


class _StdlibZstd:
    """``compression.zstd`` (Python 3.14)."""

    __slots__ = ("_c", "_flush_block")

    def __init__(self, module: Any, level: int) -> None:
        self._c = module.ZstdCompressor(level=level)
        self._flush_block = module.ZstdCompressor.FLUSH_BLOCK

    def piece(self, data: bytes) -> bytes:
        out: bytes = self._c.compress(data, self._flush_block)
        return out

    def finish(self) -> bytes:
        out: bytes = self._c.flush()  # FLUSH_FRAME: the frame's end
        return out


class _Zstandard:
    """The ``zstandard`` package."""

    __slots__ = ("_c", "_flush_block")

    def __init__(self, module: Any, level: int) -> None:
        self._c = module.ZstdCompressor(level=level).compressobj()
        self._flush_block = module.COMPRESSOBJ_FLUSH_BLOCK

    def piece(self, data: bytes) -> bytes:
        out: bytes = self._c.compress(data) + self._c.flush(self._flush_block)
        return out

    def finish(self) -> bytes:
        out: bytes = self._c.flush()  # COMPRESSOBJ_FLUSH_FINISH: the frame's end
        return out


def _zstd(module: Any, level: int) -> Codec:
    if module.__name__ == "compression.zstd":

        def whole(data: bytes) -> bytes:
            out: bytes = module.compress(data, level=level)
            return out

        return Codec("zstd", whole, lambda: _StdlibZstd(module, level))
    # A ZstdCompressor is reusable (its context kept: 4 µs instead of 12 for 600 bytes) but
    # not by two threads at once: one per thread.
    local = threading.local()

    def whole_zstandard(data: bytes) -> bytes:
        try:
            compressor = local.compressor
        except AttributeError:
            compressor = local.compressor = module.ZstdCompressor(level=level)
        out: bytes = compressor.compress(data)
        return out

    return Codec("zstd", whole_zstandard, lambda: _Zstandard(module, level))


def _module(coding: Coding) -> Any | None:
    for name in _PROVIDERS[coding]:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


def load(coding: Coding, level: int) -> Codec | None:
    """The codec for ``coding`` at ``level``; None when its package is not installed."""
    if coding == "gzip":
        return _gzip(level)
    module = _module(coding)
    if module is None:
        return None
    return _brotli(module, level) if coding == "br" else _zstd(module, level)
