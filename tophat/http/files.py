"""File responses: what ``ResponseWriter.set_file`` sends, and the file body the server streams.

:func:`prepare_file` looks at the file (one ``stat``; the file is opened only when its bytes
are sent, so a HEAD, a 304, a 412 or a 416 never opens it) and at the request, and decides the
response: status, validators, conditional requests (:mod:`tophat.http.conditional`) and ranges
(:mod:`tophat.http.ranges`). :class:`FileBody` is the body: an async iterable of bytes that
reads the file in bounded pieces, and that the native server sends with zero-copy
``sendfile`` instead where its stream can (``tophat.server.sender``).

Validators. ``Last-Modified`` is the file's mtime in whole seconds, never later than now
(RFC 9110 §8.8.2.1: a server MUST NOT send a Last-Modified later than its Date). The ETag is
``"<mtime_ns>-<size>-<inode>"`` in hex: a strong validator must change whenever the bytes do,
and a write changes the mtime and usually the size, an atomic replace (write a temporary file,
rename it over) the inode. (nginx and Apache 2.4 leave the inode out so that servers with
their own copies of the files agree on tags; we prefer never to call two different contents
equal.) One case escapes: two writes of the same size within the file system's timestamp
granularity (a few ms on ext4). So while the file is less than a second old both validators
are weak, as Apache does: the ETag goes out as ``W/"..."`` and a date in ``If-Range`` does not
match (RFC 9110 §8.8.2.2: a date is strong only if the file cannot have changed twice within
that second).

Reads. Pieces of ``chunk_size`` (64 KiB) are read with ``os.pread`` on the event loop's
thread: from the page cache that takes microseconds, less than a hop to a worker thread would
cost; a file on a slow network file system would block the loop for each piece.
"""

from __future__ import annotations

import errno
import mimetypes
import os
import stat
import time
from collections.abc import AsyncIterable, Sequence
from dataclasses import dataclass
from typing import IO, Protocol
from urllib.parse import quote

from tophat.http.conditional import evaluate, http_date, if_range_holds
from tophat.http.headers import Headers
from tophat.http.ranges import content_range, multipart_parts, parse_range

__all__ = [
    "FileBody",
    "FileChanged",
    "FileReply",
    "FileSource",
    "content_disposition",
    "guess_type",
    "prepare_file",
    "set_file",
]

FileSource = str | os.PathLike[str] | IO[bytes]
Segment = bytes | tuple[int, int]  # bytes to send, or (offset, count) of the file

# mimetypes reports a compressed file (x.tar.gz) as its inner type plus an encoding; the bytes
# on disk are the compressed ones, so the file is sent as what it is (never with a
# Content-Encoding: a browser would decompress the download).
_ENCODED_TYPES = {
    "gzip": "application/gzip",
    "bzip2": "application/x-bzip2",
    "xz": "application/x-xz",
    "br": "application/x-brotli",
    "compress": "application/x-compress",
}
# RFC 8187 §3.2.1: attr-char, what an ext-value keeps unencoded.
_ATTR_CHAR = "!#$&+-.^_`|~"
# Fields that describe a representation: a 304 or a refusal drops them (RFC 9110 §15.4.5).
_REPRESENTATION = ("content-type", "content-disposition", "content-range", "accept-ranges")


class _Response(Protocol):
    status: int
    headers: Headers
    body: bytes | FileBody | AsyncIterable[bytes]
    length: int | None


class _Request(Protocol):
    @property
    def method(self) -> str: ...

    @property
    def headers(self) -> Headers: ...


class FileChanged(Exception):
    """The file changed (shrank, or was replaced) after its response was decided: what the
    head promised cannot be sent, so the connection is closed instead."""


class FileBody:
    """A file's bytes as a response body: segments of bytes and ``(offset, count)`` ranges of
    the file, read in pieces of ``chunk_size``. Opened on first use, closed by :meth:`aclose`
    (the server calls it when the response ends, also on errors and cancellation).
    """

    __slots__ = ("_file", "_identity", "_index", "_left", "_path", "_pos", "chunk_size", "segments")

    def __init__(
        self,
        source: str | IO[bytes],
        identity: tuple[int, int, int, int] | None,
        segments: Sequence[Segment],
        chunk_size: int,
    ) -> None:
        self._path = source if isinstance(source, str) else None
        self._file: IO[bytes] | None = None if isinstance(source, str) else source
        self._identity = identity
        self.segments = tuple(segments)
        self.chunk_size = chunk_size
        self._index = 0  # the segment being read
        self._pos = 0  # its next offset
        self._left = -1  # its bytes still to read (-1: not started)

    def __repr__(self) -> str:
        return f"<FileBody {self._path or self._file!r} {len(self.segments)} segments>"

    def open(self) -> IO[bytes]:
        """The open file, opened now if needed and checked to be the one the response was
        decided for (else :class:`FileChanged`)."""
        if self._file is None:
            assert self._path is not None
            # O_NONBLOCK: a file replaced by a FIFO since the stat would block open() for ever;
            # a regular file ignores it.
            fd = os.open(self._path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
            self._file = open(fd, "rb", buffering=0)  # noqa: SIM115 (closed by aclose)
            try:
                self.check()
            except BaseException:
                self.close()
                raise
        return self._file

    @property
    def has_fileno(self) -> bool:
        """Whether the file is an OS file (for ``sendfile``; an in-memory one is not)."""
        return self._identity is not None

    def check(self) -> None:
        """Raise :class:`FileChanged` if the open file is no longer the one the response's
        validators and length describe."""
        if self._identity is None or self._file is None:
            return
        if _identity(os.fstat(self._file.fileno())) != self._identity:
            raise FileChanged(f"{self._path or self._file!r} changed while being sent")

    def read(self, offset: int, count: int) -> bytes:
        """Up to ``count`` bytes at ``offset`` (fewer only at the end of the file)."""
        file = self.open()
        if self._identity is not None:
            return os.pread(file.fileno(), count, offset)
        file.seek(offset)
        return file.read(count)

    def close(self) -> None:
        file, self._file = self._file, None
        self._path = None  # (closed for good: a later open() fails)
        if file is not None:
            file.close()

    async def aclose(self) -> None:
        self.close()

    def __aiter__(self) -> FileBody:
        return self

    async def __anext__(self) -> bytes:
        try:
            return self._next()
        except BaseException:  # StopAsyncIteration, FileChanged, an OSError: closed now
            self.close()
            raise

    def _next(self) -> bytes:
        while self._index < len(self.segments):
            segment = self.segments[self._index]
            if isinstance(segment, bytes):
                self._index += 1
                return segment
            if self._left < 0:
                self._pos, self._left = segment
            if self._left == 0:
                self._index += 1
                self._left = -1
                continue
            n = min(self._left, self.chunk_size)
            if n == self._left:
                self.check()  # the last piece of this range: is it still the same file?
            data = self.read(self._pos, n)
            if len(data) < n:
                raise FileChanged(f"{self._path or self._file!r} shrank while being sent")
            self._pos += n
            self._left -= n
            return data
        raise StopAsyncIteration


def set_file(
    response: _Response,
    source: FileSource,
    request: _Request | None,
    *,
    content_type: str | None,
    filename: str | None,
    inline: bool,
    chunk_size: int,
) -> None:
    """``ResponseWriter.set_file``: decide the response (:func:`prepare_file`) and set it."""
    reply = prepare_file(
        source,
        request,
        response.status,
        response.headers,
        content_type=content_type,
        filename=filename,
        inline=inline,
        chunk_size=chunk_size,
    )
    for name in reply.remove:
        response.headers.remove(name)
    for name, value in reply.fields:
        response.headers.set(name, value)
    response.status = reply.status
    response.body = reply.body
    response.length = reply.length


@dataclass(frozen=True, slots=True)
class FileReply:
    """What ``set_file`` puts into the response."""

    status: int
    fields: list[tuple[str, str]]  # set (replacing)
    remove: tuple[str, ...]  # removed
    body: FileBody | bytes
    length: int


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def content_disposition(filename: str, inline: bool) -> str:
    """``Content-Disposition`` naming ``filename`` (RFC 6266 §4.1): a quoted ASCII fallback
    for old clients and, if it is not plain ASCII, ``filename*`` in UTF-8 (RFC 8187)."""
    kind = "inline" if inline else "attachment"
    fallback = "".join(
        c if " " <= c <= "~" and c not in '"\\%' else "_" for c in filename.replace("/", "_")
    )
    value = f'{kind}; filename="{fallback}"'
    if fallback != filename:
        value += "; filename*=UTF-8''" + quote(filename, safe=_ATTR_CHAR)
    return value


def guess_type(name: str) -> str:
    """The Content-Type for a file name (stdlib ``mimetypes``), with ``charset=utf-8`` for
    text (RFC 9110 §8.3.1 lets the sender say; UTF-8 is what text files are today)."""
    kind, encoding = mimetypes.guess_type(name, strict=False)
    if encoding is not None:
        return _ENCODED_TYPES.get(encoding, "application/octet-stream")
    if kind is None:
        return "application/octet-stream"
    return kind + "; charset=utf-8" if kind.startswith("text/") else kind


def prepare_file(
    source: FileSource,
    request: _Request | None,
    status: int,
    headers: Headers,
    *,
    content_type: str | None,
    filename: str | None,
    inline: bool,
    chunk_size: int,
) -> FileReply:
    """Decide the response for sending ``source`` (see ``ResponseWriter.set_file``)."""
    if chunk_size < 1:
        raise ValueError("chunk_size must be >= 1")
    identity: tuple[int, int, int, int] | None = None
    mtime: float | None = None
    if isinstance(source, str | os.PathLike):
        path = os.fspath(source)
        st = os.stat(path)
        name: str | None = path
        opened: str | IO[bytes] = path
    else:
        opened = source
        name = source.name if isinstance(getattr(source, "name", None), str) else None
        st = None
        try:
            st = os.fstat(source.fileno())
        except (AttributeError, OSError, ValueError):  # (io.UnsupportedOperation: an OSError)
            size = source.seek(0, os.SEEK_END)
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory", name)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{name!r} is not a regular file")
        identity, size, mtime = _identity(st), st.st_size, st.st_mtime
    fields: list[tuple[str, str]] = []
    if content_type is not None:
        fields.append(("content-type", content_type))
    elif "content-type" not in headers:
        content_type = guess_type(filename or name or "")
        fields.append(("content-type", content_type))
    else:
        content_type = headers.get("content-type")
    if filename is not None:
        fields.append(("content-disposition", content_disposition(filename, inline)))
    etag = last_modified = None
    strong = False
    if identity is not None and mtime is not None:
        now = time.time()
        last_modified = int(min(mtime, now))  # RFC 9110 §8.8.2.1: never later than now
        strong = mtime <= now - 1  # (see the module doc)
        _, ino, _, mtime_ns = identity
        etag = f'{"" if strong else "W/"}"{mtime_ns:x}-{size:x}-{ino:x}"'
        fields.append(("last-modified", http_date(last_modified)))
        fields.append(("etag", etag))

    def whole() -> FileReply:
        if not size and not isinstance(opened, str):
            opened.close()  # (nothing to send: the caller's file is closed now)
        body = FileBody(opened, identity, [(0, size)], chunk_size) if size else b""
        return FileReply(status, fields, (), body, size)

    def refuse(code: int, *extra: tuple[str, str]) -> FileReply:
        if not isinstance(opened, str):
            opened.close()  # (sending nothing of it: the caller's file is closed now)
        # RFC 9110 §15.4.5: a 304 keeps the validators (and Cache-Control, Vary, ... which
        # set_file leaves alone); a 412 or 416 describes no representation either.
        keep = [f for f in fields if f[0] in ("etag", "last-modified")] if code == 304 else []
        return FileReply(code, keep + list(extra), _REPRESENTATION, b"", 0)

    if request is None or status != 200:
        # RFC 9110 §13.2.1: preconditions apply only to a response that would be 2xx; and a
        # Range only to a 200 (§14.2). A custom error page, say, is sent whole.
        return whole()
    fields.append(("accept-ranges", "bytes"))
    h = request.headers
    method = request.method
    verdict = evaluate(
        method,
        h.get_all("if-match"),
        h.get_all("if-unmodified-since"),
        h.get_all("if-none-match"),
        h.get_all("if-modified-since"),
        etag,
        last_modified,
    )
    if verdict != 200:
        return refuse(verdict)
    ranges = h.get_all("range")
    # RFC 9110 §14.2: GET is the only method for which range handling is defined; a server
    # MUST ignore a Range received with another. Range is a singleton: two lines are invalid.
    if method != "GET" or len(ranges) != 1:
        return whole()
    if_range = h.get_all("if-range")
    # §13.1.5: If-Range makes the Range apply only if the representation is unchanged.
    if if_range and not (
        len(if_range) == 1 and if_range_holds(if_range[0], etag, last_modified, strong)
    ):
        return whole()
    chosen = parse_range(ranges[0], size)
    if chosen is None:
        return whole()
    if not chosen:
        # §15.5.17: a 416 SHOULD carry "Content-Range: bytes */<length>".
        return refuse(416, ("content-range", f"bytes */{size}"))
    if len(chosen) == 1:
        start, end = chosen[0]
        fields.append(("content-range", content_range(start, end, size)))
        body = FileBody(opened, identity, [(start, end - start)], chunk_size)
        return FileReply(206, fields, (), body, end - start)
    kind, segments, length = multipart_parts(chosen, size, content_type)
    fields = [f for f in fields if f[0] != "content-type"] + [("content-type", kind)]
    return FileReply(206, fields, (), FileBody(opened, identity, segments, chunk_size), length)
