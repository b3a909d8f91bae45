"""A static site beside a JSON API: ``static_files`` mounted at the root of a router.

Run it with ``python -m tophat examples.static_site:app --port 8000`` and open
http://127.0.0.1:8000/.

The router's own routes (``/api/time``) rank above the mount, so the API and the site share
one origin. Assets under ``assets/`` are cached for a year (give them fingerprinted names when
they change); pages are revalidated on each visit (``no-cache``: the browser asks with the
``ETag`` and gets a 304 while the file is unchanged). Precompress the assets once, and clients
that accept it get the ``.br`` or ``.gz`` file with ``Content-Encoding``::

    gzip -k9 examples/site/assets/site.css     # writes site.css.gz beside site.css
"""

from __future__ import annotations

import time
from pathlib import Path

from tophat import Request, ResponseWriter, ResponseWritten
from tophat.router import Router
from tophat.static import static_files

SITE = Path(__file__).parent / "site"


def cache_control(path: str) -> str:
    """``Cache-Control`` for a file, by its path under the site (``assets/site.css``)."""
    if path.startswith("assets/"):
        return "public, max-age=31536000, immutable"
    return "no-cache"


app = Router()


@app.get("/api/time")
async def now(req: Request, w: ResponseWriter) -> ResponseWritten:
    w.set_json({"now": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    return await w.send()


app.mount("/", static_files(SITE, cache_control=cache_control))
