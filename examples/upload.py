"""An upload form: ``await req.form()`` for the form, ``req.multipart()`` to stream to storage.

Needs the ``forms`` extra: ``pip install 'tophat[forms]'``.

Run: python -m tophat examples.upload:app --port 8000
     open http://127.0.0.1:8000/                       -> the form; pick a file and send it
     curl -F note=hi -F file=@README.md 127.0.0.1:8000/upload     -> 303 to the file's page
     curl -F file=@README.md 127.0.0.1:8000/stream     -> 201, written part by part, no spool
     curl -O 127.0.0.1:8000/files/README.md            -> the file back (Range, If-Range work)
     curl -F file=@big.iso 127.0.0.1:8000/upload       -> 413 past 16 MiB (the server's
                                                          max_body_size and the form's limit)

Stored files are named by ``safe_filename`` (never the client's name as a path) in a
temporary directory; an upload's own temporary file is deleted when its request ends.
"""

from __future__ import annotations

import html
import tempfile
from pathlib import Path
from urllib.parse import quote

from tophat import Glitch, Request, ResponseWriter, ResponseWritten
from tophat.http.forms import UploadFile, safe_filename
from tophat.router import Router

STORE = Path(tempfile.mkdtemp(prefix="tophat-example-uploads-"))

FORM = """<!doctype html>
<meta charset="utf-8"><title>Upload</title>
<form method="post" action="/upload" enctype="multipart/form-data">
  <p><label>Note <input name="note"></label>
  <p><input type="file" name="file" required>
  <p><button>Upload</button>
</form>
<ul>{files}</ul>
"""


def _link(name: str) -> str:
    return f'<li><a href="/files/{quote(name)}">{html.escape(name)}</a>'


async def page(req: Request, w: ResponseWriter) -> ResponseWritten:
    files = "".join(_link(p.name) for p in sorted(STORE.iterdir()))
    w.insert_header("content-type", "text/html; charset=utf-8")
    w.set_body(FORM.format(files=files))
    return await w.send()


async def upload(req: Request, w: ResponseWriter) -> ResponseWritten:
    form = await req.form()  # files past 1 MiB wait in a temporary file, deleted afterwards
    file = form.get("file")
    if not isinstance(file, UploadFile) or not file.filename:
        raise Glitch(400, "choose a file to upload")
    name = safe_filename(file.filename)
    file.save(STORE / name)  # blocking: fine for small files (see tophat/http/forms.py)
    # RFC 9110 §15.4.4: 303 sends the browser to the result with a GET (no resubmission).
    w.set_status(303)
    w.insert_header("location", f"/files/{quote(name)}")
    w.set_text(f"stored {name} ({file.size} bytes)")
    return await w.send()


async def stream(req: Request, w: ResponseWriter) -> ResponseWritten:
    stored = []
    async for part in req.multipart(max_file_size=64 * 1024 * 1024):
        if part.filename is None:
            continue  # (a field: skipped)
        name = safe_filename(part.filename)
        with open(STORE / name, "wb") as out:
            async for chunk in part:  # each piece as it arrives: nothing held, nothing spooled
                out.write(chunk)
        stored.append({"name": name, "size": part.size})
    w.set_status(201)
    w.set_json(stored)
    return await w.send()


async def download(req: Request, w: ResponseWriter) -> ResponseWritten:
    name = req.params["name"]
    if name != safe_filename(name) or not (STORE / name).is_file():
        raise Glitch(404)
    w.set_file(STORE / name, filename=name)
    return await w.send()


app = Router()
app.get("/", page)
app.post("/upload", upload)
app.post("/stream", stream)
app.get("/files/:name", download)
