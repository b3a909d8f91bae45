"""The front-end: ``static/`` (one HTML page, its script and style sheet) served at ``/``.

Plain HTML and JavaScript, no build step and nothing from another origin. The files go out
through ``tophat.static.static_files`` (ETag and Last-Modified, so a reload is a 304 each;
``no-cache``: the names are not fingerprinted, so every use revalidates) and are compressed by
the app's ``compress()`` like the JSON. The API's own routes rank above this mount.

Every response from here carries a strict Content-Security-Policy: scripts, styles, fetches and
the event stream from this origin only, no inline script or style, no plugins, no framing, no
``<base>``, forms posting only here. The page escapes user data itself (``textContent``, never
``innerHTML``); the policy is the second wall should a bug ever let markup through.
"""

from __future__ import annotations

from pathlib import Path

from tophat import Endpoint, Request, ResponseWriter, ResponseWritten
from tophat.static import static_files

__all__ = ["CONTENT_SECURITY_POLICY", "STATIC", "frontend"]

STATIC = Path(__file__).parent / "static"

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",  # fetch, EventSource (connect-src), script, style, img, font
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",  # no clickjacking: the page may not be framed anywhere
    ]
)
_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",  # a file is run or styled only as its declared type
    "referrer-policy": "same-origin",
}


def frontend() -> Endpoint:
    """The endpoint serving ``static/`` (mount it at ``/``) with the security headers."""
    files = static_files(STATIC, cache_control="no-cache")

    async def serve_frontend(req: Request, w: ResponseWriter) -> ResponseWritten:
        for name, value in _HEADERS.items():
            w.insert_header(name, value)
        return await files(req, w)

    return serve_frontend
