"""A directory served over HTTP: ``static_files(root)`` is an endpoint, mounted under a prefix.

::

    router = Router()
    router.mount("/static", static_files("public", cache_control="public, max-age=3600"))

``GET /static/css/site.css`` sends ``public/css/site.css`` through ``ResponseWriter.set_file``
(validators, conditional requests, ranges, HEAD without opening the file). Used alone, the
endpoint serves the request's whole path.

**The path.** A request names a file by its path: split on ``/`` *before* decoding, each
segment percent-decoded exactly once, as strict UTF-8. Every refusal is a plain 404, the
router's, so a client learns nothing about the tree (a 400 or 403 would tell it that a name
was recognised as dangerous, or that a file exists). Refused:

* ``.`` and ``..`` segments, however spelled (``%2e%2E``): a well-behaved client removes dot
  segments before sending (RFC 3986 §5.2.4), so one that arrives is an attempt to climb;
* a segment that decodes to a ``/`` or ``\\`` (``%2F``, ``%5C``: a separator on some system),
  to a control character (``%00``: NUL truncates a C path), or that looks like a drive
  (``C:``); on Windows also ``:`` anywhere (alternate data streams) and device names;
* empty segments (``/a//b``): one URL per file, and no ``//`` that could read as a host;
* names starting with ``.`` (``.git``, ``.env``), unless ``allow_hidden``;
* anything that is not a regular file or, with ``index``, a directory (a FIFO would block
  the server, a device would be read);
* a file that only exists through a symlink pointing out of ``root`` (see ``follow_symlinks``).

A double-encoded ``%252e`` decodes once to the three characters ``%2e``: a name like any
other, never a dot.

**Directories.** With ``index`` (``"index.html"``), ``/docs/`` sends ``docs/index.html``, and
``/docs`` is redirected to ``docs/`` (301, with a relative ``Location`` and the query kept), as
nginx and Apache do: served at ``/docs``, the page's relative links (``style.css``) would
resolve against ``/`` instead of ``/docs/``. The redirect is only made when the index file
exists, so a directory without one is a 404 like a missing file. There is no listing.

**Methods.** GET and HEAD. OPTIONS gets 204 with ``Allow``, anything else 405 with ``Allow``,
exactly as the router answers a path it has only a GET route for (RFC 9110 §15.5.6: a 405
MUST carry Allow); a path with nothing behind it is a 404 whatever the method.

**Precompressed files.** With ``precompressed``, a client whose ``Accept-Encoding`` accepts
``br`` or ``gzip`` gets ``site.css.br`` or ``site.css.gz`` when such a sibling exists, with
``Content-Encoding``, the original's ``Content-Type``, and the sibling's own ``ETag`` (another
file: another tag, RFC 9110 §8.8.3: a strong tag differs between encodings). The client's
preference (q-values, ``*``, ``identity;q=0``) decides; on a tie, ``br`` before ``gzip``
before none. Every file response then carries ``Vary: Accept-Encoding`` (RFC 9110 §12.5.5),
whether a sibling exists or not: a sibling may appear with the next deploy, and a cache that
kept an uncompressed copy keyed on nothing would keep serving it. The sibling is trusted to
hold the same content: keep it up to date with the original.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, unquote_to_bytes

from tophat.glitch import Glitch
from tophat.http.files import guess_type
from tophat.http.headers import Field
from tophat.http.request import Request
from tophat.http.writer import ResponseWriter, ResponseWritten
from tophat.middleware import add_vary

__all__ = ["CacheControl", "StaticFiles", "static_files"]

log = logging.getLogger("tophat.static")

#: ``cache_control``: one value for every file, or a function of the file's path relative to
#: the root (``"assets/app.3f2a.js"``, ``/``-separated) giving a value or ``None`` (none sent).
CacheControl = str | Callable[[str], str | None] | None

_ALLOW = ["GET", "HEAD", "OPTIONS"]  # what the router's Allow says for a GET route
_ALLOW_VALUE = ", ".join(_ALLOW)
_WINDOWS = os.name == "nt"
# A decoded segment refused everywhere: a separator on some system, a control character, or
# (at its start) a drive. A file name with one of these cannot be served: the price of the
# same rules on every platform.
_BAD_SEGMENT = re.compile(r"[/\\\x00-\x1f\x7f]|^[A-Za-z]:")
# Windows: ':' opens an alternate data stream; device names are devices in any directory,
# whatever the extension; a trailing dot or space is dropped by the file system.
_BAD_ON_WINDOWS = re.compile(r"[:*?\"<>|]|[. ]$|^(?:CON|PRN|AUX|NUL|COM\d|LPT\d)(?:\.|$)", re.I)
# The precompressed siblings: (coding, file suffix), in the order preferred on a tie.
_CODINGS = (("br", ".br"), ("gzip", ".gz"))
# RFC 9110 §12.4.2: qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ).
_QVALUE = re.compile(r"0(?:\.\d{0,3})?|1(?:\.0{0,3})?")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


@dataclass(frozen=True, slots=True)
class Found:
    """A file to send: where it is, and its path under the root as the URL named it."""

    path: str  # to open (the resolved path when symlinks are contained)
    name: str  # relative, "/"-separated: for cache_control and the content type


@dataclass(frozen=True, slots=True)
class Redirect:
    """A directory named without its trailing slash: where to send the client."""

    location: str


def accepted_codings(values: list[str]) -> list[str]:
    """The precompressed codings (``br``, ``gzip``) a client accepts, best first, each only
    when it is preferred to no coding at all (RFC 9110 §12.5.3).

    Without an ``Accept-Encoding`` field the answer is none: any coding would be allowed, but
    a client that sent none (curl, a script) may well not decode one. A member that does not
    parse counts as refused, so a malformed field gets the file as it is.

    >>> accepted_codings(["gzip, br;q=0.9"]), accepted_codings(["*;q=0.1, identity;q=0.5"])
    (['gzip', 'br'], [])
    """
    if not values:
        return []
    q: dict[str, float] = {}
    for member in ",".join(values).split(","):
        coding, *params = (p.strip(" \t") for p in member.split(";"))
        if not coding:
            continue  # RFC 9110 §5.6.1: empty list members are ignored
        value = 1.0
        for param in params:
            key, _, raw = param.partition("=")
            if key.strip(" \t").lower() == "q":
                m = _QVALUE.fullmatch(raw.strip(" \t"))
                value = float(m.group()) if m is not None else 0.0
        coding = coding.lower() if _TOKEN.fullmatch(coding) else ""
        if coding == "x-gzip":  # RFC 9110 §8.4.1.3: equivalent to gzip
            coding = "gzip"
        q.setdefault(coding, value)  # the first mention of a coding counts
    star = q.get("*")
    # §12.5.3: identity is always acceptable (the fallback here even when refused: an
    # unwanted body helps a client more than a 406). Its q only competes when the client
    # gave one, by name or through "*": "gzip;q=0.5" alone still prefers gzip.
    identity = q.get("identity", star or 0.0)
    ranked = sorted((-q.get(c, star or 0.0), i, c) for i, (c, _) in enumerate(_CODINGS))
    return [c for neg, _, c in ranked if -neg > 0 and -neg >= identity]


def _segments(raw_path: str) -> tuple[list[str], bool] | None:
    """The decoded segments of a path and whether it ends with ``/``; None if refused."""
    if raw_path[:1] != "/":
        return None  # (the asterisk-form "*")
    raws = raw_path[1:].split("/")
    slash = raws[-1] == ""
    if slash:
        raws.pop()
    names = []
    for raw in raws:
        try:
            name = unquote_to_bytes(raw).decode() if "%" in raw else raw  # once, strict UTF-8
        except UnicodeDecodeError:
            return None
        if name in ("", ".", "..") or _BAD_SEGMENT.search(name):
            return None
        if _WINDOWS and _BAD_ON_WINDOWS.search(name):
            return None
        names.append(name)
    return names, slash


class StaticFiles:
    """The endpoint :func:`static_files` returns."""

    __slots__ = (
        "_cache_control",
        "_cache_field",
        "allow_hidden",
        "follow_symlinks",
        "index",
        "precompressed",
        "root",
    )

    def __init__(
        self,
        root: str,
        index: str | None,
        allow_hidden: bool,
        follow_symlinks: bool,
        cache_control: CacheControl,
        precompressed: bool,
    ) -> None:
        self.root = root
        self.index = index
        self.allow_hidden = allow_hidden
        self.follow_symlinks = follow_symlinks
        self.precompressed = precompressed
        self._cache_control = cache_control
        self._cache_field = (
            Field("cache-control", cache_control) if isinstance(cache_control, str) else None
        )

    def __repr__(self) -> str:
        return f"<static_files {self.root!r}>"

    # -- resolving a path ---------------------------------------------------------------------

    def resolve(self, raw_path: str, target: str) -> Found | Redirect | None:
        """What ``raw_path`` (still percent-encoded) names under the root; None: a 404.

        ``target`` is the request-target, for the one case the path cannot tell: a mount's
        prefix with or without its trailing slash (both reach the endpoint as ``/``).
        """
        parsed = _segments(raw_path)
        if parsed is None:
            return None
        names, slash = parsed
        if not self.allow_hidden and any(n[0] == "." for n in names):
            return None
        root = self._real_root()
        if root is None:
            return None
        found = self._lookup(root, os.path.join(root, *names))
        if found is None:
            return None
        st, path = found
        rel = "/".join(names)
        if stat.S_ISREG(st.st_mode):
            return None if slash else Found(path, rel)
        if not stat.S_ISDIR(st.st_mode) or self.index is None:
            return None
        found = self._lookup(root, os.path.join(path, self.index))
        if found is None or not stat.S_ISREG(found[0].st_mode):
            return None  # no index: a 404, like a missing file (and no redirect to one)
        if not slash or (not names and not _target_ends_with_slash(target)):
            return Redirect(_to_directory(raw_path, target))
        return Found(found[1], f"{rel}/{self.index}" if rel else self.index)

    def _real_root(self) -> str | None:
        # Resolved on each request, as the file paths are: a root reached through a symlink
        # that a deploy switches ("current" -> "release-42") serves the new tree at once.
        if self.follow_symlinks:
            return self.root
        try:
            return os.path.realpath(self.root, strict=True)
        except OSError:
            return None

    def _lookup(self, root: str, path: str) -> tuple[os.stat_result, str] | None:
        """``path``'s status and the path to open, if it exists inside ``root``: resolved,
        unless symlinks may lead anywhere. Opening the resolved path opens what was checked
        (unless the tree changes in between: whoever can change it can serve anything)."""
        try:
            st = os.stat(path)
        except (OSError, ValueError):  # missing, not a directory, a loop, too long, denied
            return None
        if self.follow_symlinks:
            return st, path
        real = os.path.realpath(path)
        if real != root and not real.startswith(root if root.endswith(os.sep) else root + os.sep):
            log.debug("refused %.200r: a symlink out of the root", path)
            return None
        return st, real

    def _sibling(self, found: Found, codings: list[str]) -> tuple[str, str] | None:
        """The first precompressed sibling there is for ``codings``: (coding, its path)."""
        root = self._real_root()
        if root is None:
            return None
        suffixes = dict(_CODINGS)
        for coding in codings:
            sibling = self._lookup(root, found.path + suffixes[coding])
            if sibling is not None and stat.S_ISREG(sibling[0].st_mode):
                return coding, sibling[1]
        return None

    # -- the endpoint -------------------------------------------------------------------------

    async def __call__(self, req: Request, w: ResponseWriter) -> ResponseWritten:
        target = self.resolve(req.raw_path, req.target)
        if target is None:
            raise Glitch.not_found()
        method = req.method
        if method not in ("GET", "HEAD"):
            if method == "OPTIONS":
                w.set_status(204)
                w.insert_header("allow", _ALLOW_VALUE)
                return await w.send()
            raise Glitch.method_not_allowed(_ALLOW)
        if isinstance(target, Redirect):
            # 301, not 308: only GET and HEAD get here, and 301 is what every client knows.
            w.set_status(301)
            w.insert_header("location", target.location)
            return await w.send()
        return await self._send(req, w, target)

    async def _send(self, req: Request, w: ResponseWriter, found: Found) -> ResponseWritten:
        path, coding = found.path, None
        if self.precompressed:
            add_vary(w.response.headers, "Accept-Encoding")
            codings = accepted_codings(req.headers.get_all("accept-encoding"))
            sibling = self._sibling(found, codings) if codings else None
            if sibling is not None:
                coding, path = sibling
        try:
            w.set_file(path, content_type=guess_type(found.name))
        except (OSError, ValueError):  # gone (or replaced by a directory, a FIFO) since
            raise Glitch.not_found() from None  # (before Cache-Control: a 404 is not cached)
        if coding is not None and w.response.status in (200, 206):
            # Not on a 304 (RFC 9110 §15.4.5: no representation metadata but the validators,
            # Cache-Control, Vary, ...) nor on a 412 or 416, which have no content.
            w.insert_header("content-encoding", coding)
        # On a 304 too: it updates the cached response's freshness (§15.4.5).
        if self._cache_field is not None:
            w.response.headers.set_field(self._cache_field)
        elif self._cache_control is not None and not isinstance(self._cache_control, str):
            value = self._cache_control(found.name)
            if value is not None:
                w.insert_header("cache-control", value)
        return await w.send()


def _target_ends_with_slash(target: str) -> bool:
    """Whether the path of a request-target (origin- or absolute-form) ends with ``/``."""
    path = target.partition("?")[0]
    if path[:1] != "/":  # absolute-form: scheme://authority[/path]
        rest = path.partition("://")[2]
        path = rest[rest.find("/") :] if "/" in rest else "/"
    return path.endswith("/")


def _to_directory(raw_path: str, target: str) -> str:
    """A relative Location adding the trailing ``/`` to the path's last segment.

    Relative (RFC 9110 §10.2.2 allows it), so it is right behind any proxy or prefix; ``./``
    keeps a segment holding ``:`` from reading as a scheme. At a mount's prefix (``raw_path``
    is ``/``) the last segment is the target's.
    """
    path, _, query = target.partition("?")
    if raw_path != "/":
        path = raw_path
    elif path[:1] != "/":
        path = path.partition("://")[2]
    last = path.rsplit("/", 1)[-1]
    location = "./" + quote(last, safe="!$&'()*+,;=:@%") + "/"
    return location + "?" + query if query else location


def static_files(
    root: str | os.PathLike[str],
    *,
    index: str | None = "index.html",
    allow_hidden: bool = False,
    follow_symlinks: bool = False,
    cache_control: CacheControl = None,
    precompressed: bool = True,
) -> StaticFiles:
    """An endpoint serving the files under ``root``; see the module doc for the rules.

    Args:
        root: the directory. It must exist when this is called.
        index: the file sent for a directory's URL (``/docs/``); ``None``: directories are
            404s.
        allow_hidden: serve names starting with ``.`` (``/.well-known/...``).
        follow_symlinks: off, a symlink is followed only when its target is inside ``root``
            (resolved), and one leading out is a 404, as Starlette's ``follow_symlink=False``;
            on, symlinks may lead anywhere: the tree's links are trusted (a shared assets
            directory linked in). The URL never climbs out either way: ``..`` is refused.
        cache_control: the ``Cache-Control`` value for every file, or a function of the
            file's relative path returning one (or ``None``); ``None``: none sent.
        precompressed: send a ``.br`` or ``.gz`` sibling to a client that accepts it.

    Raises:
        ValueError: if ``root`` is not a directory, ``index`` is not a plain file name, or
            ``cache_control`` is not a valid field value.

    Example::

        def cache(path: str) -> str | None:
            if path.startswith("assets/"):  # fingerprinted names: they never change
                return "public, max-age=31536000, immutable"
            return "no-cache"  # the pages: revalidated each time (ETag, Last-Modified)

        router.mount("/", static_files("dist", cache_control=cache))
    """
    path = os.path.abspath(os.fspath(root))
    if not os.path.isdir(path):
        raise ValueError(f"static_files: {path!r} is not a directory (pass the folder to serve)")
    if index is not None and (
        index in ("", ".", "..")
        or _BAD_SEGMENT.search(index)
        or (_WINDOWS and _BAD_ON_WINDOWS.search(index))
    ):
        raise ValueError(f"static_files: index={index!r} must be a file name, e.g. 'index.html'")
    if isinstance(cache_control, str):
        Field("cache-control", cache_control)  # raises HeaderError (a ValueError) if invalid
    elif cache_control is not None and not callable(cache_control):
        raise ValueError("static_files: cache_control must be a str, a function or None")
    return StaticFiles(path, index, allow_hidden, follow_symlinks, cache_control, precompressed)
