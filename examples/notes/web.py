"""Small HTTP helpers the notes routes share: JSON bodies, timestamps, entity tags."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from tophat import Glitch, Request

__all__ = ["etag_matches", "json_object", "rfc3339", "unauthorized"]


async def json_object(req: Request) -> dict[str, Any]:
    """The request's body as a JSON object.

    Raises:
        Glitch: 415 when the body is not declared JSON (RFC 9110 §15.5.16); 400 when it is
            not a JSON object.
    """
    media_type = (req.headers.get("content-type") or "").partition(";")[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise Glitch(
            415, "send the body as JSON (Content-Type: application/json)",
            headers={"accept": "application/json"},
        )  # fmt: skip
    try:
        value = json.loads(await req.body())
    except (ValueError, UnicodeDecodeError) as exc:
        raise Glitch(400, "the body is not valid JSON") from exc
    if not isinstance(value, dict):
        raise Glitch(400, "the body must be a JSON object")
    return value


def rfc3339(when: datetime) -> str:
    """``2025-01-31T12:00:00.123456Z``: RFC 3339, in UTC, to the microsecond."""
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _tags(field: str) -> list[str]:
    # RFC 9110 §8.8.3: #entity-tag, each [ "W/" ] DQUOTE *etagc DQUOTE (no comma inside ours).
    return [t.strip(" \t") for t in field.split(",") if t.strip(" \t")]


def etag_matches(field: str, etag: str, *, weak: bool) -> bool:
    """Whether an ``If-Match`` (``weak=False``: strong comparison, RFC 9110 §13.1.1) or an
    ``If-None-Match`` (``weak=True``: weak comparison, §13.1.2) field names ``etag`` (a
    strong tag of ours); ``*`` matches any current representation."""
    for tag in _tags(field):
        if tag == "*" or tag == etag:
            return True
        if weak and tag.startswith("W/") and tag[2:] == etag:
            return True
    return False


def unauthorized(req: Request, message: str, cookie_name: str) -> Glitch:
    """A 401; RFC 9110 §15.5.2: it MUST carry a WWW-Authenticate challenge."""
    return Glitch(401, message, headers={"www-authenticate": f'Cookie realm="{cookie_name}"'})
