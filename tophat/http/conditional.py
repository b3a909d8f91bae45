"""Conditional requests (RFC 9110 §13): validators, HTTP dates, and the evaluation order.

Pure functions over header values; :mod:`tophat.http.files` applies them to a file. The
evaluation follows RFC 9110 §13.2.2 step by step:

1. ``If-Match`` present: false -> 412.
2. Else ``If-Unmodified-Since`` present (a valid date, and a Last-Modified known): modified
   since -> 412.
3. ``If-None-Match`` present: a match -> 304 for GET and HEAD, 412 for any other method.
4. Else, for GET and HEAD, ``If-Modified-Since`` (a valid date): not modified since -> 304.
5. (Then ``If-Range`` decides whether a ``Range`` applies: :func:`if_range_holds`.)
"""

from __future__ import annotations

import re
from calendar import timegm
from email.utils import formatdate
from typing import Literal

__all__ = ["etag_matches", "evaluate", "http_date", "if_range_holds", "parse_http_date"]

# RFC 9110 §8.8.3: entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE; etagc = %x21 / %x23-7E / obs-text.
# One member of a list, with the OWS and comma around it (RFC 9110 §5.6.1: empty members are
# allowed and ignored).
_ETAG_MEMBER = re.compile(r'[ \t]*(?:(W/)?"([\x21\x23-\x7e\x80-\xff]*)")?[ \t]*(?:,|$)')

# RFC 9110 §5.6.7: a recipient MUST accept all three formats of HTTP-date (and none else).
_DAY = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_MONTH = r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_TIME = r"(\d\d):(\d\d):(\d\d)"
_IMF_FIXDATE = re.compile(rf"{_DAY}, (\d\d) {_MONTH} (\d{{4}}) {_TIME} GMT")
_RFC850 = re.compile(
    rf"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), (\d\d)-{_MONTH}-(\d\d) "
    rf"{_TIME} GMT"
)
_ASCTIME = re.compile(rf"{_DAY} {_MONTH} ([ \d]\d) {_TIME} (\d{{4}})")
_MONTHS = {m: i for i, m in enumerate(_MONTH[1:-1].split("|"), 1)}

Verdict = Literal[200, 304, 412]


def http_date(seconds: float) -> str:
    """An IMF-fixdate (RFC 9110 §5.6.7), e.g. ``Sun, 06 Nov 1994 08:49:37 GMT``."""
    return formatdate(seconds, usegmt=True)


def parse_http_date(value: str) -> int | None:
    """Seconds since the epoch of an HTTP-date in any of its three formats; None if invalid
    (an invalid date makes the field it is in ignored, RFC 9110 §13.1.3 and §13.1.4)."""
    value = value.strip(" \t")
    m = _IMF_FIXDATE.fullmatch(value)
    if m is not None:
        day, month, year, hh, mm, ss = m.groups()
    elif (m := _RFC850.fullmatch(value)) is not None:
        day, month, yy, hh, mm, ss = m.groups()
        # RFC 9110 §5.6.7: a two-digit year that appears more than 50 years in the future is
        # in the past century. (Relative to 2000-2099, the dates this code will see.)
        year = str(2000 + int(yy) if int(yy) < 50 else 1900 + int(yy))
    elif (m := _ASCTIME.fullmatch(value)) is not None:
        month, day, hh, mm, ss, year = m.groups()
    else:
        return None
    try:
        fields = (int(year), _MONTHS[month], int(day), int(hh), int(mm), int(ss))
        if not (1 <= fields[2] <= 31 and fields[3] < 24 and fields[4] < 60 and fields[5] <= 60):
            return None
        return timegm((*fields, 0, 0, 0))
    except (ValueError, OverflowError):
        return None


def _tags(value: str) -> list[tuple[bool, str]] | None:
    """The ``(weak, opaque-tag)`` members of an entity-tag list; None if it is malformed."""
    tags: list[tuple[bool, str]] = []
    pos, end = 0, len(value)
    while pos < end:
        m = _ETAG_MEMBER.match(value, pos)
        if m is None or m.end() == pos:
            return None
        if m.group(2) is not None:
            tags.append((m.group(1) is not None, m.group(2)))
        pos = m.end()
    return tags


def _split(etag: str) -> tuple[bool, str]:
    weak = etag.startswith("W/")
    return weak, etag[3:-1] if weak else etag[1:-1]


def etag_matches(header: str, etag: str | None, *, strong: bool) -> bool:
    """Whether the entity-tag list ``header`` (or ``*``) matches ``etag``.

    RFC 9110 §8.8.3.2: strong comparison (``If-Match``, ``If-Range``): both tags strong and
    their opaque-tags equal; weak comparison (``If-None-Match``): the opaque-tags equal.
    ``*`` matches any current representation. A malformed list matches nothing.
    """
    if header.strip(" \t") == "*":
        return True
    if etag is None:
        return False
    tags = _tags(header)
    if not tags:
        return False
    weak, opaque = _split(etag)
    if strong:
        return not weak and (False, opaque) in tags
    return any(tag == opaque for _, tag in tags)


def _one(values: list[str]) -> str | None:
    # A date field with more than one line is invalid (RFC 9110 §13.1.3: more than one member).
    return values[0] if len(values) == 1 else None


def evaluate(
    method: str,
    if_match: list[str],
    if_unmodified_since: list[str],
    if_none_match: list[str],
    if_modified_since: list[str],
    etag: str | None,
    last_modified: int | None,
) -> Verdict:
    """RFC 9110 §13.2.2: 200 (go on), 304 (not modified) or 412 (precondition failed).

    Each argument after ``method`` is the list of that field's lines in the request;
    ``last_modified`` is in whole seconds.
    """
    # Step 1. §13.1.1: "*" is true when a current representation exists (a file does).
    if if_match:
        if not etag_matches(", ".join(if_match), etag, strong=True):
            return 412
    # Step 2. §13.1.4: ignored with If-Match, with an invalid date, or without Last-Modified.
    elif if_unmodified_since and last_modified is not None:
        date = parse_http_date(_one(if_unmodified_since) or "")
        if date is not None and last_modified > date:
            return 412
    # Step 3. A match makes the condition false.
    if if_none_match:
        if etag_matches(", ".join(if_none_match), etag, strong=False):
            return 304 if method in ("GET", "HEAD") else 412
    # Step 4. §13.1.3: only for GET and HEAD, only without If-None-Match.
    elif if_modified_since and last_modified is not None and method in ("GET", "HEAD"):
        date = parse_http_date(_one(if_modified_since) or "")
        if date is not None and last_modified <= date:
            return 304
    return 200


def if_range_holds(
    value: str, etag: str | None, last_modified: int | None, strong_date: bool
) -> bool:
    """RFC 9110 §13.1.5: whether ``If-Range: value`` lets the ``Range`` apply.

    An entity-tag holds on a strong match (a weak tag never does). A date holds only if it is
    a strong validator and equals Last-Modified exactly; ``strong_date`` says whether ours is
    one (§8.8.2.2: the file did not change again within that second, see files.py). Anything
    else, a malformed value included, does not hold: the whole representation is sent, which
    is always correct.
    """
    value = value.strip(" \t")
    if value.startswith(('"', 'W/"')):
        tags = _tags(value)
        return tags is not None and len(tags) == 1 and etag_matches(value, etag, strong=True)
    date = parse_http_date(value)
    return strong_date and date is not None and date == last_modified
