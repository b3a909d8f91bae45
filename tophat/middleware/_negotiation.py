"""Content negotiation for ``compress()``: ``Accept-Encoding`` (RFC 9110 §12.5.3) and which
media types compress."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from tophat.middleware._codings import Coding

__all__ = [
    "CACHE_MAX",
    "DEFAULT_CONTENT_TYPES",
    "choose",
    "parse_accept_encoding",
    "type_predicate",
]

#: Media types compressed by default: ``type/*`` a whole top-level type, ``+suffix`` a
#: structured syntax suffix (RFC 6838 §4.2.8), else one exact type. Text and the text-based
#: formats; not images, audio, video, archives or WOFF fonts, which are compressed already.
DEFAULT_CONTENT_TYPES: tuple[str, ...] = (
    "text/*",  # html, css, csv, plain, javascript, event-stream (SSE), ...
    "+json",  # problem+json, ld+json, manifest+json, ...
    "+xml",  # svg+xml, atom+xml, rss+xml, xhtml+xml, ...
    "application/json",
    "application/x-ndjson",
    "application/javascript",
    "application/ecmascript",
    "application/x-javascript",
    "application/xml",
    "application/yaml",
    "application/wasm",
    "application/vnd.ms-fontobject",
    "font/ttf",
    "font/otf",
    "image/bmp",
    "image/x-icon",
    "image/vnd.microsoft.icon",
)

CACHE_MAX = 256  # distinct Accept-Encoding / Content-Type values remembered per middleware
# x-gzip: RFC 9110 §8.4.1.3 (a recipient SHOULD consider it equivalent to gzip).
_ALIASES = {"x-gzip": "gzip"}
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-z]+")
# RFC 9110 §12.4.2: qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
_QVALUE = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")


def type_predicate(content_types: Iterable[str] | Callable[[str], bool]) -> Callable[[str], bool]:
    """Whether a ``Content-Type`` field value compresses (remembered per distinct value)."""
    if callable(content_types):
        test = content_types
    else:
        if isinstance(content_types, str):
            raise ValueError("content_types must be a list of patterns, not a string")
        exact, tops, suffixes = set(), set(), set()
        for pattern in content_types:
            p = pattern.lower()
            top, slash, sub = p.partition("/")
            if p.startswith("+") and _TOKEN.fullmatch(p[1:]):
                suffixes.add(p)
            elif slash and _TOKEN.fullmatch(top) and top != "*" and sub == "*":
                tops.add(top)
            elif slash and top != "*" and _TOKEN.fullmatch(top) and _TOKEN.fullmatch(sub):
                exact.add(p)
            else:
                raise ValueError(
                    f"content_types: {pattern!r} is not 'type/subtype', 'type/*' or '+suffix'"
                )

        def test(media_type: str) -> bool:
            top, _, sub = media_type.partition("/")
            plus = sub.rfind("+")
            return media_type in exact or top in tops or (plus >= 0 and sub[plus:] in suffixes)

    seen: dict[str, bool] = {}

    def compressible(value: str) -> bool:
        try:
            return seen[value]
        except KeyError:
            yes = bool(test(value.partition(";")[0].strip(" \t").lower()))
            if len(seen) < CACHE_MAX:
                seen[value] = yes
            return yes

    return compressible


def parse_accept_encoding(value: str) -> dict[str, float]:
    """The q-value of each coding listed (lower case; ``x-gzip`` as ``gzip``; ``*``,
    ``identity``). A malformed member is skipped, so its coding counts as not listed; when a
    coding is listed twice, the first wins.

    >>> parse_accept_encoding("gzip;q=0.8, br, identity;q=0, x-bad;q=2")
    {'gzip': 0.8, 'br': 1.0, 'identity': 0.0}
    """
    weights: dict[str, float] = {}
    for member in value.split(","):
        coding, *params = member.split(";")
        coding = coding.strip(" \t").lower()
        if not _TOKEN.fullmatch(coding):
            continue  # (an empty member too: RFC 9110 §5.6.1 says to ignore those)
        q = 1.0
        for param in params:
            name, eq, qvalue = param.strip(" \t").partition("=")
            if name.lower() != "q" or not eq or not _QVALUE.fullmatch(qvalue):
                break  # RFC 9110 §12.5.3: codings [ weight ], nothing else
            q = float(qvalue)
        else:
            weights.setdefault(_ALIASES.get(coding, coding), q)
    return weights


def choose(weights: dict[str, float], offered: tuple[Coding, ...]) -> Coding | None:
    """The coding to send (None: identity), per RFC 9110 §12.5.3: a coding not listed takes
    ``*``'s q-value, or is not acceptable; identity is acceptable unless ``identity;q=0``, or
    ``*;q=0`` without an ``identity`` entry. The highest q wins, ``offered``'s order breaks a
    tie between codings, and a tie with identity goes to the coding. Identity competes only
    with a q-value of its own (``identity;q=…``, or ``*``'s): the RFC makes it acceptable by
    default but gives it no weight, and ``gzip;q=0.8, br;q=0.9`` asks for br, not identity.

    >>> choose({"gzip": 1.0, "br": 1.0}, ("zstd", "br", "gzip"))
    'br'
    """
    star = weights.get("*")
    best: Coding | None = None
    best_q = 0.0
    for coding in offered:
        q = weights.get(coding, 0.0 if star is None else star)
        if q > best_q:
            best, best_q = coding, q
    if best is None:
        return None
    identity_q = weights.get("identity", star)
    return None if identity_q is not None and identity_q > best_q else best
