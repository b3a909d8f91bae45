"""``await req.form()``: an HTML form's fields and files, read within limits.

Two encodings (RFC 9110 §8.3 Content-Type; anything else is 415):

* ``application/x-www-form-urlencoded``: parsed by the standard library
  (``urllib.parse.parse_qsl``); the body is read within ``max_total`` (it is held whole) and
  must be UTF-8; each name and value within ``max_field_size``, at most ``max_parts`` pairs.
* ``multipart/form-data`` (RFC 7578), through ``tophat.http.multipart`` (the ``forms`` extra):
  fields are decoded (UTF-8, or the part's own ``charset``), files kept as
  :class:`UploadFile`: in memory up to ``spool_threshold``, then in a temporary file on disk.

Temporary files are deleted when the request ends, whatever way it ends: the response sent,
the handler raised, or it was cancelled because its client left (``Request.on_end``, run by the
exchange). Writing to them is plain blocking file I/O on the event loop: the http layer runs
on any async library and may import none, and a write of one received piece (at most
``ServerOpts.read_size``, 64 KiB) into the page cache takes microseconds. Reading an upload back
is blocking too (``read()``, ``save()``): for a large one, call them through your runtime's
thread helper (``asyncio.to_thread``, ``trio.to_thread.run_sync``), or stream the parts
straight to storage with ``req.multipart()`` instead of spooling them.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
import unicodedata
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import BinaryIO
from urllib.parse import parse_qsl

from tophat.glitch import Glitch
from tophat.http.headers import Headers
from tophat.http.multipart import FormLimits, MultipartReader, boundary_of, parse_params, too_large

__all__ = ["FormData", "FormLimits", "UploadFile", "read_form", "safe_filename"]

OnEnd = Callable[[Callable[[], object]], None]
Read = Callable[[], Awaitable[bytes | None]]  # the next piece of the body, None at its end


class UploadFile:
    """A file sent in a ``multipart/form-data`` form, spooled to disk past a size.

    Attributes:
        name: the form field's name.
        filename: the file name exactly as the client sent it: never a path to trust
            (``../../etc/passwd`` is a valid one). :func:`safe_filename` makes one safe to use.
        content_type: the part's ``Content-Type`` as sent, ``None`` when absent.
        headers: the part's header fields.
        size: the content's length in bytes.
    """

    __slots__ = (
        "_fd",
        "_file",
        "_path",
        "_threshold",
        "content_type",
        "filename",
        "headers",
        "name",
        "size",
    )

    def __init__(self, name: str, filename: str, headers: Headers, threshold: int) -> None:
        self.name = name
        self.filename = filename
        self.headers = headers
        self.content_type = headers.get("content-type")
        self.size = 0
        self._threshold = threshold
        # In memory (a BytesIO) until past the threshold, then in a temporary file: written
        # through a descriptor while the part arrives, opened for reading when asked.
        self._file: BinaryIO | None = io.BytesIO()
        self._fd: int | None = None
        self._path: str | None = None

    @property
    def on_disk(self) -> str | None:
        """The temporary file's path once the content went to disk, else ``None``. It is
        deleted when the request ends: copy or ``save()`` what you keep."""
        return self._path

    def write(self, data: bytes) -> None:
        """Add received content (the form reader's, while it reads the part)."""
        self.size += len(data)
        if self._fd is None:
            assert isinstance(self._file, io.BytesIO)
            if self.size <= self._threshold:
                self._file.write(data)
                return
            self._fd, self._path = tempfile.mkstemp(prefix="tophat-upload-")
            data = self._file.getvalue() + data
            self._file = None
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]

    def finish(self) -> None:
        """The content is complete (the form reader calls this at the part's end)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._file is not None:
            self._file.seek(0)

    @property
    def file(self) -> BinaryIO:
        """The content as a binary file object (``shutil.copyfileobj(upload.file, out)``)."""
        if self._file is None:
            if self._path is None:
                raise ValueError("the upload was closed (at the end of its request)")
            self._file = open(self._path, "rb")  # noqa: SIM115 (closed by close())
        return self._file

    def read(self, size: int = -1) -> bytes:
        """Read up to ``size`` bytes (all that is left by default) from the current position."""
        return self.file.read(size)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Move the read position (``whence`` as for ``io.IOBase.seek``); returns it."""
        return self.file.seek(offset, whence)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Copy the whole content to ``path`` (the read position is kept)."""
        if self._path is not None:
            shutil.copyfile(self._path, path)
            return
        assert isinstance(self._file, io.BytesIO)
        with open(path, "wb") as out:
            out.write(self._file.getbuffer())

    def close(self) -> None:
        """Close the content and delete its temporary file (the request's end does this)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._file is not None:
            self._file.close()
        if self._path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path)
            self._path = None

    def __repr__(self) -> str:
        return f"<UploadFile name={self.name!r} filename={self.filename!r} size={self.size}>"


class FormData(Mapping[str, "str | UploadFile"]):
    """A form's fields (``str``) and files (:class:`UploadFile`), read-only, in order.

    ``form["name"]`` and ``form.get("name")`` give the first value of a name (as
    ``req.query`` does); ``form.get_all("name")`` (alias ``getall``) every value; iterating
    gives each name once; ``form.items()`` one pair per name, ``form.multi_items()`` every pair.
    """

    __slots__ = ("_first", "_pairs")

    def __init__(self, pairs: list[tuple[str, str | UploadFile]]) -> None:
        self._pairs = pairs
        self._first: dict[str, str | UploadFile] = {}
        for name, value in pairs:
            self._first.setdefault(name, value)

    def __getitem__(self, name: str) -> str | UploadFile:
        return self._first[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._first)

    def __len__(self) -> int:
        return len(self._first)

    def get_all(self, name: str) -> list[str | UploadFile]:
        return [value for key, value in self._pairs if key == name]

    getall = get_all

    def multi_items(self) -> list[tuple[str, str | UploadFile]]:
        return list(self._pairs)

    def __repr__(self) -> str:
        return f"FormData({self._pairs!r})"


async def read_form(
    content_type: str | None, read: Read, on_end: OnEnd, limits: FormLimits
) -> FormData:
    """Read a form with ``read`` (the request body's pieces), as ``content_type`` says.

    Raises:
        Glitch: 415 for another content type, 400 for a malformed body, 413 past a limit.
        MissingFormsExtra: for ``multipart/form-data`` without the ``forms`` extra.
    """
    kind = parse_params(content_type or "")[0]
    if kind == "application/x-www-form-urlencoded":
        return await _urlencoded(read, limits)
    if kind == "multipart/form-data":
        reader = MultipartReader(read, boundary_of(content_type or ""), limits)
        return await _multipart(reader, on_end, limits.spool_threshold)
    # RFC 9110 §15.5.16: 415 for content in a format the target does not support.
    raise Glitch(
        415,
        "expected a form: application/x-www-form-urlencoded or multipart/form-data",
        headers={"accept-post": "application/x-www-form-urlencoded, multipart/form-data"},
    )


async def _urlencoded(read: Read, limits: FormLimits) -> FormData:
    pieces, total, limit = [], 0, limits.max_total
    while (piece := await read()) is not None:
        total += len(piece)
        if limit is not None and total > limit:
            raise too_large("the form", "max_total", limit)
        pieces.append(piece)
    try:
        text = b"".join(pieces).decode("utf-8")
        pairs = parse_qsl(
            text, keep_blank_values=True, max_num_fields=limits.max_parts, errors="strict"
        )
    except UnicodeDecodeError as exc:
        raise Glitch(400, "the form is not valid UTF-8", cause=exc) from exc
    except ValueError as exc:  # (parse_qsl: "Max number of fields exceeded")
        raise Glitch(413, f"more than max_parts ({limits.max_parts}) fields") from exc
    for name, value in pairs:
        if max(len(name), len(value)) > limits.max_field_size:
            raise too_large(f"field {name[:40]!r}", "max_field_size", limits.max_field_size)
    return FormData(list(pairs))


async def _multipart(reader: MultipartReader, on_end: OnEnd, threshold: int) -> FormData:
    pairs: list[tuple[str, str | UploadFile]] = []
    async for part in reader:
        if part.filename is None:
            charset = parse_params(part.content_type or "")[1].get("charset", "utf-8")
            data = await part.read()
            try:
                pairs.append((part.name, data.decode(charset)))
            except (LookupError, UnicodeDecodeError) as exc:
                raise Glitch(400, f"field {part.name!r} is not valid {charset}") from exc
            continue
        upload = UploadFile(part.name, part.filename, part.headers, threshold)
        on_end(upload.close)  # registered first: deleted even if the client leaves mid-part
        async for chunk in part:
            upload.write(chunk)
        upload.finish()
        pairs.append((part.name, upload))
    return FormData(pairs)


_UNSAFE = str.maketrans({c: "_" for c in '/\\:*?"<>|'})


def safe_filename(filename: str, default: str = "upload") -> str:
    """A file name to store an upload under: the last path segment of ``filename``, NFC
    normalized, without control characters or ``/\\:*?"<>|``, no leading dots (no hidden
    file, no ``..``), at most 255 bytes of UTF-8; ``default`` when nothing is left.

    ``"../../etc/passwd"`` gives ``"passwd"``, ``"C:\\\\Users\\\\me\\\\cv.pdf"`` ``"cv.pdf"``.
    """
    name = unicodedata.normalize("NFC", filename).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c.isprintable()).translate(_UNSAFE).strip(" .")
    while len(name.encode()) > 255:
        name = name[:-1]
    return name or default
