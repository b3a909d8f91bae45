"""Secret keys for signing: refused when short or predictable, by a conservative entropy
estimate (used by :class:`~tophat.middleware.identity.Identity`)."""

from __future__ import annotations

import itertools
import math

__all__ = ["MIN_KEY_BITS", "MIN_KEY_BYTES", "estimated_bits", "key_bytes"]

MIN_KEY_BYTES = 32
# NIST SP 800-57 part 1: 112 bits of security strength are acceptable until 2030, 128 beyond;
# an HMAC key cannot give more strength than its entropy. The estimate credits a random-looking
# character with the full log2 of its alphabet, and a repeat, sequence, keyboard run or
# placeholder word with the few bits needed to describe it (as zxcvbn does), so it is
# conservative for patterns and generous to anything else: keys from secrets.token_urlsafe(32),
# token_hex(32) or token_bytes(32) estimated at 224 bits or more in 20 000 samples each;
# "12345678" * 4 at 15, "qwertyuiopasdfghjklzxcvbnm123456" at 37.
MIN_KEY_BITS = 128
_HOW_TO_MAKE_A_KEY = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
# US keyboard rows, plain and shifted: neighbours on a row are a typed run ("qwerty", "asdf").
_KEYBOARD_ROWS = (
    b"`1234567890-=",
    b"qwertyuiop[]\\",
    b"asdfghjkl;'",
    b"zxcvbnm,./",
    b"~!@#$%^&*()_+",
    b"QWERTYUIOP{}|",
    b'ASDFGHJKL:"',
    b"ZXCVBNM<>?",
)
_KEY_NEIGHBOURS = frozenset(
    pair for row in _KEYBOARD_ROWS for a, b in itertools.pairwise(row) for pair in ((a, b), (b, a))
)
# Words of placeholder keys ("change-me-to-a-random-secret-key", "your-secret-key-here"),
# longest first: each costs log2(len) bits, not a few bits per letter.
_WORDS = sorted(
    (
        b"changeme", b"replaceme", b"placeholder", b"password", b"development", b"example",
        b"dummy", b"insecure", b"secret", b"your", b"key", b"test", b"token", b"admin",
        b"tophat", b"default", b"session", b"cookie", b"here", b"change",
    ),
    key=len,
    reverse=True,
)  # fmt: skip
_ALPHABETS = (
    (frozenset(range(ord("a"), ord("z") + 1)), 26),
    (frozenset(range(ord("A"), ord("Z") + 1)), 26),
    (frozenset(range(ord("0"), ord("9") + 1)), 10),
    (frozenset(b" !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"), 33),
)


def _alphabet_bits(data: bytes) -> float:
    """log2 of the alphabet the key draws from (the union of the classes it uses)."""
    present = set(data)
    size = sum(n for chars, n in _ALPHABETS if present & chars)
    if any(b < 0x20 or b > 0x7E for b in present):
        size += 256 - 95  # raw bytes: control characters and non-ASCII
    return math.log2(max(size, 2))


def _run_length(data: bytes, i: int) -> int:
    """Length of the sequence ("abc", "1357", "zyx") or keyboard run starting at ``i``."""
    n = len(data)
    if i + 2 >= n:
        return 0
    step = data[i + 1] - data[i]
    end = i + 1
    if step != 0 and abs(step) <= 5:
        while end + 1 < n and data[end + 1] - data[end] == step:
            end += 1
    best = end - i + 1
    end = i
    while end + 1 < n and (data[end], data[end + 1]) in _KEY_NEIGHBOURS:
        end += 1
    return max(best, end - i + 1)


def _repeat_length(data: bytes, i: int) -> int:
    """Length of the longest-found repeat of earlier bytes starting at ``i`` (overlap allowed,
    as in LZ77: "xxxxxx" is "x" then a repeat of 5)."""
    n = len(data)
    if i == 0 or i + 3 > n:
        return 0
    best = 0
    for j in (data.find(data[i : i + 3], 0, i + 2), data.rfind(data[i : i + 3], 0, i + 2)):
        if 0 <= j < i:
            length = 3
            while i + length < n and data[j + length] == data[i + length]:
                length += 1
            best = max(best, length)
    return best


def estimated_bits(data: bytes, enough: float = math.inf) -> float:
    """A conservative estimate of the entropy of ``data``, in bits (stops past ``enough``).

    Left to right, the longest pattern of 3 bytes or more starting here is taken: a repeat of
    earlier bytes (log2 of where + log2 of how long), a sequence or keyboard run (one free
    character + log2 of its length + 1 bit for the kind), or a placeholder word (log2 of the
    word list + 1 for the case); a byte in no pattern costs log2 of the alphabet.
    """
    char_bits = _alphabet_bits(data)
    lower = data.lower()
    word_bits = math.log2(len(_WORDS)) + 1
    bits, i = 0.0, 0
    while i < len(data) and bits < enough:
        word = next((len(w) for w in _WORDS if lower.startswith(w, i)), 0)
        run, repeat = _run_length(data, i), _repeat_length(data, i)
        longest = max(word, run, repeat)
        if longest < 3:
            bits, i = bits + char_bits, i + 1
            continue
        costs = (
            (word, word_bits),
            (run, char_bits + math.log2(max(run, 1)) + 1),
            (repeat, math.log2(i) + math.log2(repeat) if repeat else math.inf),
        )
        bits += min(cost for length, cost in costs if length == longest)  # the cheaper reading
        i += longest
    return bits


def key_bytes(key: str | bytes) -> bytes:
    data = key.encode() if isinstance(key, str) else bytes(key)
    if len(data) < MIN_KEY_BYTES:
        raise ValueError(
            f"Identity secret keys must be at least {MIN_KEY_BYTES} bytes; generate one with "
            f"{_HOW_TO_MAKE_A_KEY}"
        )
    bits = estimated_bits(data, enough=MIN_KEY_BITS)
    if bits < MIN_KEY_BITS:
        raise ValueError(
            f"Identity secret key is too predictable: about {bits:.0f} bits of entropy by a "
            f"conservative estimate, {MIN_KEY_BITS} needed (repeats, sequences, keyboard runs "
            "and placeholder words count for little). Use random bytes from the environment, "
            f"e.g. generated with {_HOW_TO_MAKE_A_KEY}"
        )
    return data
