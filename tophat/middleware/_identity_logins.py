"""What identity cookies prove, and what the application's session check said: the state
behind :class:`~tophat.middleware.identity.Identity`, kept apart from its cookie options.

* :class:`SignedLogins` signs logins and verifies cookie values (itsdangerous), remembering
  genuine ones in a bounded LRU, and settles a request that carries several (cookie tossing).
* :class:`Verdicts` is the per-worker, bounded, time-limited cache of session-check answers.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from typing import NamedTuple

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

__all__ = ["MAX_SAME_NAME", "Login", "SignedLogins", "Verdicts"]

log = logging.getLogger("tophat.identity")

_VERIFIED_CACHE_SIZE = 1024
# A browser sends a few cookies of one name at most (one per matching path, domain and
# partition); more are an attack, refused before any signature is checked.
MAX_SAME_NAME = 8


class Login(NamedTuple):
    """What a genuine identity cookie proves."""

    user: str
    signed_at: float
    session: str | None


class SignedLogins:
    """Sign and verify logins with itsdangerous (HMAC-SHA256, timestamped).

    The payload is the user alone (a JSON string, as before sessions existed, so older
    cookies stay valid) or ``[user, session]``.
    """

    def __init__(self, keys: list[bytes], *, salt: str, max_age: int) -> None:
        self.max_age = max_age
        # Cookies whose signature verified: value -> login. Bounded, least recently used
        # dropped first; only genuine cookies enter, so clients cannot fill it with junk.
        self._verified: OrderedDict[str, Login] = OrderedDict()
        # itsdangerous takes keys oldest to newest and signs with the last one.
        self._serializer = URLSafeTimedSerializer(
            list(reversed(keys)), salt=salt, signer_kwargs={"digest_method": hashlib.sha256}
        )

    def sign(self, user: str, session: str | None) -> str:
        return self._serializer.dumps(user if session is None else [user, session])

    def check(self, value: str) -> Login | None:
        """The login a cookie value proves, or None (the reason logged at debug)."""
        verified = self._verified
        hit = verified.get(value)
        if hit is not None:
            # A cookie whose signature we checked before: only its age can have changed.
            # (Checking the HMAC, base64 and JSON again cost half of a request's time.)
            if 0 <= time.time() - hit.signed_at <= self.max_age:
                verified.move_to_end(value)
                return hit
            del verified[value]
            log.debug("identity cookie expired")
            return None
        try:
            payload, signed_at = self._serializer.loads(
                value, max_age=self.max_age, return_timestamp=True
            )
        except SignatureExpired:
            log.debug("identity cookie expired")
        except BadSignature:
            log.debug("identity cookie has a bad signature (tampered, truncated or old key)")
        except Exception as exc:  # malformed payloads must never become a 500
            log.debug("identity cookie could not be read: %r", exc)
        else:
            user, session = (
                payload
                if isinstance(payload, list) and len(payload) == 2
                else (
                    payload,
                    None,
                )
            )
            if isinstance(user, str) and user and (session is None or isinstance(session, str)):
                verified[value] = hit = Login(user, signed_at.timestamp(), session)
                if len(verified) > _VERIFIED_CACHE_SIZE:
                    verified.popitem(last=False)
                return hit
            log.debug("identity cookie holds no user")
        return None

    def among(self, values: list[str], cookie_name: str) -> Login | None:
        """The login the request's cookies of our name prove, or None.

        Cookie tossing: a sibling subdomain, a parent domain or a plain-http page of this host
        can set a cookie of our name (the Cookie header says nothing of where a cookie came
        from, RFC 6265bis §8.6), with a longer Path so that it is sent first. Taking the first
        valid one would log a victim in as the attacker. Cookies that verify but name
        different users are ambiguous: nobody is logged in. One that does not verify names
        nobody and is ignored (so a tossed junk cookie cannot log anyone out).
        """
        if len(values) == 1:  # the usual case: nothing to compare
            return self.check(values[0])
        if len(values) > MAX_SAME_NAME:
            log.info(
                "identity ambiguous: %d cookies named %s (more than %d); treated as anonymous",
                len(values),
                cookie_name,
                MAX_SAME_NAME,
            )
            return None
        found: dict[str, Login] = {}
        for value in values:
            hit = self.check(value)
            if hit is not None:
                newest = found.get(hit.user)
                if newest is None or hit.signed_at >= newest.signed_at:
                    found[hit.user] = hit  # the newest login of that user
        if len(found) > 1:
            log.info(
                "identity ambiguous: %d valid cookies named %s name %d different users "
                "(cookie tossing?); treated as anonymous",
                len(values),
                cookie_name,
                len(found),
            )
            return None
        return next(iter(found.values()), None)


class Verdicts:
    """``(user, session) -> verdict`` for ``ttl`` seconds, at most ``size`` entries (LRU).

    Both answers are kept: a revoked session stays revoked, and an attacker replaying one
    costs no store query within the ttl. A ttl of 0 keeps nothing.
    """

    def __init__(self, ttl: float, size: int) -> None:
        if ttl < 0:
            raise ValueError("session_check_ttl must be >= 0 seconds (0: check every request)")
        if size < 1:
            raise ValueError("session_cache_size must be at least 1")
        self.ttl = float(ttl)
        self.size = size
        self._entries: OrderedDict[tuple[str, str], tuple[bool, float]] = OrderedDict()

    def get(self, key: tuple[str, str]) -> bool | None:
        """The verdict still fresh for ``key``, or None."""
        hit = self._entries.get(key)
        if hit is None:
            return None
        if time.monotonic() >= hit[1]:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return hit[0]

    def put(self, key: tuple[str, str], result: object) -> bool:
        """Record what the check returned (any true value: the login stands); return it."""
        verdict = bool(result)
        if not verdict:
            log.debug("identity session refused by the session check (revoked)")
        if self.ttl > 0:
            self._entries[key] = (verdict, time.monotonic() + self.ttl)
            self._entries.move_to_end(key)
            if len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return verdict

    def drop(self, user: str, session: str | None = None) -> None:
        """Forget the verdicts for ``user``'s ``session`` (all of them when None)."""
        for key in [k for k in self._entries if k[0] == user and session in (None, k[1])]:
            del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)
