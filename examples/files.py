"""File downloads that resume: ``set_file`` answers Range, If-Range and conditional requests.

Run: python -m tophat examples.files:app --port 8000
     curl 127.0.0.1:8000/                                   -> the files on offer
     curl -O -C - 127.0.0.1:8000/files/LICENSE              -> a download; interrupt it and run
                                                               the same line again: it resumes
     curl -r 0-99 127.0.0.1:8000/files/LICENSE              -> 206, the first 100 bytes
     curl -I 127.0.0.1:8000/files/LICENSE                   -> HEAD: the length, ETag, no body
     curl -H 'If-None-Match: <that etag>' -i 127.0.0.1:8000/files/LICENSE  -> 304

The names are a fixed table, never joined to a path: serving a whole directory safely is
``tophat.static.static_files``'s job.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tophat import Glitch, Request, ResponseWriter, ResponseWritten
from tophat.router import Router

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
FILES = {
    "LICENSE": ROOT / "LICENSE",
    "README.md": ROOT / "README.md",
    "hello.py": ROOT / "examples" / "hello.py",
}

app = Router()


@app.get("/")
async def index(req: Request, w: ResponseWriter) -> ResponseWritten:
    w.set_text("".join(f"/files/{name}\n" for name in FILES))
    return await w.send()


@app.get("/files/:name")
async def download(req: Request, w: ResponseWriter) -> ResponseWritten:
    name = req.params["name"]
    path = FILES.get(name)
    if path is None:
        raise Glitch(404, f"no file named {name!r}")
    # Revalidate on each use: an unchanged file costs a 304 and no body.
    w.insert_header("cache-control", "no-cache")
    w.set_file(path, filename=name)  # Content-Disposition: attachment; filename="..."
    done = await w.send()
    log.info("%s: %d, %d bytes", name, done.status, done.bytes_written)
    return done
