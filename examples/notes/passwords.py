"""Password hashes: ``hashlib.scrypt`` (RFC 7914), salted, with the parameters in each hash.

A hash reads ``scrypt$n=32768,r=8,p=1$SALT$KEY`` (salt and key base64), so the cost can be
raised later: old hashes still verify with their own parameters, and a login whose hash is
cheaper than the current setting stores a new one (``needs_rehash``).

The default cost, n=2**15, r=8, p=1, takes 32 MiB and about 0.1 s per hash: what OWASP's
password storage cheat sheet lists as its minimum for scrypt is n=2**17 with 128 MiB; this
example halves memory twice so a small machine with several workers is not swapped out by a
burst of logins (raise ``Settings.scrypt_n`` on a larger one). Hashing runs in a thread.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from examples.notes.offload import run_sync

__all__ = ["hash_password", "needs_rehash", "verify_password"]

_R, _P, _KEY_LEN, _SALT_LEN = 8, 1, 32, 16


def _derive(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r + (1 << 20), dklen=_KEY_LEN
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def hash_password(password: str, n: int) -> str:
    """A new salted hash of ``password`` at cost ``n`` (a power of two)."""
    salt = secrets.token_bytes(_SALT_LEN)
    key = await run_sync(lambda: _derive(password, salt, n, _R, _P))
    return f"scrypt$n={n},r={_R},p={_P}${_b64(salt)}${_b64(key)}"


def _parse(stored: str) -> tuple[int, int, int, bytes, bytes] | None:
    try:
        scheme, params, salt, key = stored.split("$")
        values = dict(item.split("=") for item in params.split(","))
        return (
            int(values["n"]),
            int(values["r"]),
            int(values["p"]),
            base64.b64decode(salt, validate=True),
            base64.b64decode(key, validate=True),
        ) if scheme == "scrypt" else None  # fmt: skip
    except (ValueError, KeyError):
        return None


async def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (compared in constant time)."""
    parsed = _parse(stored)
    if parsed is None:
        return False
    n, r, p, salt, key = parsed
    derived = await run_sync(lambda: _derive(password, salt, n, r, p))
    return hmac.compare_digest(derived, key)


def needs_rehash(stored: str, n: int) -> bool:
    """Whether ``stored`` was made at a lower cost than ``n``."""
    parsed = _parse(stored)
    return parsed is None or parsed[0] < n


#: A hash to check unknown usernames against, so "no such user" takes as long as "wrong
#: password" and the response time does not tell which usernames exist.
def dummy_hash(n: int) -> str:
    return f"scrypt$n={n},r={_R},p={_P}${_b64(bytes(_SALT_LEN))}${_b64(bytes(_KEY_LEN))}"
