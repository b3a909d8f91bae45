"""Request ids: one id per request, taken from the client or made, in handlers, logs and the
response. A middleware factory::

    app = chain(request_id(), cors(...))(router)       # outermost: every response has the id

    async def show(req: Request, w: ResponseWriter) -> ResponseWritten:
        log.info("showing %s", req.params["id"])        # the record carries request_id
        w.set_json({"request": current_request_id()})   # or req.ext[REQUEST_ID_KEY]
        return await w.send()

What it does, and why:

* An incoming ``X-Request-ID`` (a proxy's, a load balancer's, a calling service's) is kept
  when it is valid, so one id follows a request across services: 1 to 128 characters of
  ``[A-Za-z0-9._:-]``. That covers UUIDs, hex ids (nginx's ``$request_id``, W3C trace ids),
  ULIDs, base64url and Cloudflare's ``cf-ray``, and keeps an id one inert token in any log
  format (no space, quote, ``=``, ``,`` or ``;``, nothing a terminal or a log parser reads).
  The bound keeps a client from padding every log line. An invalid, oversized or repeated
  field is *replaced* by a new id, not refused: the id is for our logs, and a 400 would break
  a client over a header it may not control. The replacement is logged at DEBUG
  (``tophat.request_id``). ``trust_incoming=False`` always makes a new one (for a server
  facing clients that should not choose what appears in its logs).
* A new id is 128 random bits as 32 hex digits (nginx's ``$request_id`` format): unique across
  workers, machines and restarts with no coordination (a counter repeats), and not guessable.
  ``generate=`` takes your own (a UUIDv7 or a ULID for ids that sort by time); its output must
  pass the same check, verified once here.
* Handlers read it at ``req.ext[REQUEST_ID_KEY]`` or from :func:`current_request_id`, a
  context variable set for the endpoint's duration (with the connection's task: other
  requests never see it).
* Log records get it through :class:`RequestIdFilter`, which sets ``record.request_id`` (``"-"``
  outside a request). Attach it to a *handler* so every record that handler emits has it,
  whichever logger made it::

      handler = logging.StreamHandler()
      handler.addFilter(RequestIdFilter())
      handler.setFormatter(logging.Formatter("%(asctime)s %(request_id)s %(message)s"))
      logging.getLogger().addHandler(handler)

  The access log (``ServerOpts.access_log``) shows it as ``id=...`` and carries it as the
  record's ``request_id`` attribute.
* The response echoes it in the same header, set before the endpoint runs, so error responses
  (a Glitch, a 500, the handler deadline's 503) carry it too.
"""

from __future__ import annotations

import contextvars
import logging
import os
import re
from collections.abc import Callable

from tophat.http.endpoint import Endpoint
from tophat.http.headers import check_name
from tophat.http.request import REQUEST_ID_KEY, Request
from tophat.http.writer import ResponseWriter, ResponseWritten
from tophat.middleware import Middleware

__all__ = [
    "MAX_LENGTH",
    "REQUEST_ID_KEY",
    "RequestIdFilter",
    "current_request_id",
    "new_request_id",
    "request_id",
]

log = logging.getLogger("tophat.request_id")

#: Longest id accepted from a client.
MAX_LENGTH = 128
_VALID = re.compile(rf"[A-Za-z0-9._:-]{{1,{MAX_LENGTH}}}")

_current: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "tophat_request_id", default=None
)


def current_request_id() -> str | None:
    """The id of the request being handled in this task, or None outside one."""
    return _current.get()


def new_request_id() -> str:
    """A new id: 128 random bits, 32 lower-case hex digits."""
    return os.urandom(16).hex()


class RequestIdFilter(logging.Filter):
    """Set ``record.request_id`` to the current request's id, ``"-"`` outside a request.

    A record that already has one (the access log's, written after the endpoint returned) keeps
    it. It never drops a record.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = _current.get() or "-"
        return True


def request_id(
    *,
    header: str = "x-request-id",
    trust_incoming: bool = True,
    generate: Callable[[], str] = new_request_id,
) -> Middleware:
    """A middleware giving every request an id (see the module doc).

    Args:
        header: the request field read and the response field set.
        trust_incoming: keep a valid id the client sent; False: always make a new one.
        generate: makes a new id; it must return 1 to 128 characters of ``[A-Za-z0-9._:-]``.

    Raises:
        HeaderError: if ``header`` is not a field name.
        ValueError: if ``generate()`` returns an id that would not pass the check.
    """
    check_name(header)
    sample = generate()
    if not isinstance(sample, str) or not _VALID.fullmatch(sample):
        raise ValueError(
            f"request_id(generate=...): it returned {sample!r}; an id is 1 to {MAX_LENGTH} "
            "characters of A-Z, a-z, 0-9, '.', '_', ':' and '-'"
        )
    header = header.lower()

    def middleware(next_: Endpoint) -> Endpoint:
        async def with_request_id(req: Request, w: ResponseWriter) -> ResponseWritten:
            rid = None
            if trust_incoming:
                sent = req.headers.get_all(header)
                if len(sent) == 1 and _VALID.fullmatch(sent[0]):
                    rid = sent[0]
                elif sent:
                    # (repr: escaped; cut: bounded. Several fields: which one would be right?)
                    log.debug(
                        "replacing an invalid %s: %.80r (%d field(s))", header, sent, len(sent)
                    )
            if rid is None:
                rid = generate()
            req.ext[REQUEST_ID_KEY] = rid
            w.insert_header(header, rid)
            token = _current.set(rid)
            try:
                return await next_(req, w)
            finally:
                _current.reset(token)

        return with_request_id

    return middleware
