"""Error bodies: a Glitch as ``text/plain`` or as RFC 9457 ``application/problem+json``.

Which one a response gets is ``ServerOpts.error_format``: ``"text"`` or ``"json"`` always, or
``"negotiate"`` (the default), which reads the request's Accept (RFC 9110 §12.5.1) and sends
problem+json only when the client prefers JSON:

* each of ours, ``text/plain`` and JSON (``application/problem+json`` or
  ``application/json``: a client that asks for JSON can read a problem object), takes the
  q-value of the most specific media range that matches it (``text/plain`` > ``text/*`` >
  ``*/*``; RFC 9110 §12.5.1: "media ranges can be overridden by more specific media ranges");
* JSON wins on a higher q-value; at equal q, on a more specific range (``application/json,
  */*``); at equal specificity, on coming first in the field (``application/json,
  text/plain, */*``, as axios sends). Everything else, a missing or empty Accept included,
  gives ``text/plain``, as before. So ``*/*`` alone (curl) and a browser's
  ``text/html,...,*/*;q=0.8`` keep getting text: JSON is only sent to a client that named it.
  The order of ties follows the ``negotiator`` package (Express, Koa): q, then specificity,
  then position.

A negotiated error response to a request with an Accept field says ``Vary: Accept`` (RFC 9110
§12.5.5: its content depends on the field). One without the field gets none, so the bytes of
such a response are what they were before negotiation existed; every client in use (curl,
browsers, httpx, requests) sends Accept, so what a cache stores carries the Vary. An Accept
that no format satisfies gets text rather than a 406: RFC 9110 §12.5.1 allows disregarding the
field, and an error is better delivered than replaced by another one.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Literal

from tophat.glitch import Glitch
from tophat.http.headers import Field
from tophat.http.writer import Response

__all__ = ["PROBLEM_JSON", "ErrorFormat", "prefers_json", "render_glitch"]

ErrorFormat = Literal["negotiate", "json", "text"]

PROBLEM_JSON = "application/problem+json"
_TEXT_FIELD = Field("content-type", "text/plain; charset=utf-8")
_JSON_FIELD = Field("content-type", PROBLEM_JSON)  # RFC 8259 §11: no charset parameter

# RFC 9110 §12.4.2: qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
_QVALUE = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-z]+")

# Our media types, each with the kind of body it stands for.
_OURS = (
    ("text", "plain", False),
    ("application", "problem+json", True),
    ("application", "json", True),
)


def render_glitch(
    glitch: Glitch,
    response: Response,
    accept: str | None,
    error_format: ErrorFormat,
    verbose: bool,
) -> None:
    """Put ``glitch``'s body and Content-Type on ``response``, in the format chosen.

    ``accept`` is the request's Accept value (several fields joined with ", "), read only when
    ``error_format`` is ``"negotiate"``; then ``Vary: Accept`` is added too.
    """
    if error_format == "negotiate":
        as_json = False
        if accept is not None:
            as_json = prefers_json(accept)
            _vary_on_accept(response)
    else:
        as_json = error_format == "json"
    if as_json:
        # Compact; non-ASCII as UTF-8 (RFC 8259 §8.1: JSON exchanged between systems is UTF-8).
        body = json.dumps(
            glitch.problem(verbose), ensure_ascii=False, separators=(",", ":")
        ).encode()
        response.headers.set_field(_JSON_FIELD)
    else:
        body = glitch.body_text(verbose).encode()
        response.headers.set_field(_TEXT_FIELD)
    response.body = body
    response.length = len(body)


def _vary_on_accept(response: Response) -> None:
    headers = response.headers
    vary = headers.get_list("vary")
    if not vary:
        headers.set("vary", "Accept")
    elif "*" not in vary and "accept" not in (v.lower() for v in vary):
        headers.set("vary", ", ".join([*vary, "Accept"]))


@functools.lru_cache(maxsize=128)  # (clients send few distinct values; bounded all the same)
def prefers_json(accept: str) -> bool:
    """Whether an Accept value prefers JSON to ``text/plain`` (see the module doc).

    >>> prefers_json("application/json"), prefers_json("*/*"), prefers_json("text/*, */*")
    (True, False, False)
    """
    # Per kind (False: text, True: JSON), the best (specificity, q, -position) seen, and the
    # rank that decides: (q, specificity, -position).
    found: dict[tuple[str, str], tuple[int, float, int]] = {}
    # (A quoted parameter value holding a comma splits its range in two; both halves are
    # then malformed and ignored. No media range we match needs such a parameter.)
    for position, element in enumerate(accept.split(",")):
        media_range, *params = element.split(";")
        main, _, sub = media_range.strip(" \t").lower().partition("/")
        if not (_TOKEN.fullmatch(main) and _TOKEN.fullmatch(sub)) or (main == "*" != sub):
            continue  # not a media range: ignored, as a recipient may (RFC 9110 §12.5.1)
        q = 1.0
        for param in params:
            name, _, value = param.strip(" \t").partition("=")
            if name.rstrip(" \t").lower() == "q":
                value = value.strip(" \t")
                q = float(value) if _QVALUE.fullmatch(value) else -1.0
                break  # RFC 9110 §12.5.1: "q" ends the media type's own parameters
        if q < 0:
            continue  # a malformed weight: the range is ignored
        specificity = 0 if main == "*" else 1 if sub == "*" else 2
        for ours_main, ours_sub, _ in _OURS:
            if specificity == 0 or (main == ours_main and (specificity == 1 or sub == ours_sub)):
                key = (ours_main, ours_sub)
                seen = found.get(key)
                # The most specific range decides; among equal ones, the first.
                if seen is None or specificity > seen[0]:
                    found[key] = (specificity, q, -position)
    best: dict[bool, tuple[float, int, int]] = {}
    for ours_main, ours_sub, is_json in _OURS:
        seen = found.get((ours_main, ours_sub))
        if seen is not None:
            rank = (seen[1], seen[0], seen[2])
            if is_json not in best or rank > best[is_json]:
                best[is_json] = rank
    json_rank = best.get(True)
    if json_rank is None or json_rank[0] <= 0:
        return False  # q=0: "not acceptable" (RFC 9110 §12.4.2)
    text_rank = best.get(False)
    return text_rank is None or json_rank > text_rank
