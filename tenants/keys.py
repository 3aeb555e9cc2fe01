"""API key format: ``dpp_live_<32 random base62>_<8 checksum>``.

The checksum is the first 5 bytes of SHA-256 of ``dpp_live_<random>`` read as a big-endian
number, written in base62 (``0-9A-Za-z``) and left-padded with ``0`` to 8 characters. A mistyped
key fails the checksum and is refused before any database lookup. At rest only an HMAC-SHA256
of the whole key, keyed with the server pepper, is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
KEY_PREFIX = "dpp_live_"
RANDOM_LENGTH = 32
CHECKSUM_LENGTH = 8
KEY_LENGTH = len(KEY_PREFIX) + RANDOM_LENGTH + 1 + CHECKSUM_LENGTH
DISPLAY_PREFIX_LENGTH = len(KEY_PREFIX) + 4
_ALPHABET_SET = frozenset(ALPHABET)


class InvalidKeyFormat(ValueError):
    """The string is not a well-formed DPP key (wrong shape or checksum)."""


def base62_encode(number: int) -> str:
    if number < 0:
        raise ValueError("base62_encode takes a non-negative integer")
    if number == 0:
        return "0"
    digits = []
    while number:
        number, remainder = divmod(number, 62)
        digits.append(ALPHABET[remainder])
    return "".join(reversed(digits))


def checksum(body: str) -> str:
    """The 8-character checksum of ``dpp_live_<random>``."""
    digest = hashlib.sha256(body.encode("ascii")).digest()[:5]
    return base62_encode(int.from_bytes(digest, "big")).rjust(CHECKSUM_LENGTH, "0")


def generate() -> str:
    random_part = "".join(secrets.choice(ALPHABET) for _ in range(RANDOM_LENGTH))
    body = f"{KEY_PREFIX}{random_part}"
    return f"{body}_{checksum(body)}"


@dataclass(frozen=True)
class ParsedKey:
    raw: str
    random_part: str
    checksum: str


def parse(raw: str) -> ParsedKey:
    """Check shape and checksum; raise InvalidKeyFormat without saying which part failed."""
    if not isinstance(raw, str) or len(raw) != KEY_LENGTH or not raw.startswith(KEY_PREFIX):
        raise InvalidKeyFormat("malformed key")
    random_part = raw[len(KEY_PREFIX):len(KEY_PREFIX) + RANDOM_LENGTH]
    separator = raw[len(KEY_PREFIX) + RANDOM_LENGTH]
    given = raw[-CHECKSUM_LENGTH:]
    if separator != "_" or not set(random_part) <= _ALPHABET_SET or not set(given) <= _ALPHABET_SET:
        raise InvalidKeyFormat("malformed key")
    expected = checksum(f"{KEY_PREFIX}{random_part}")
    if not hmac.compare_digest(given, expected):
        raise InvalidKeyFormat("malformed key")
    return ParsedKey(raw=raw, random_part=random_part, checksum=given)


def hash_key(raw: str, *, pepper: str) -> str:
    return hmac.new(pepper.encode("utf-8"), raw.encode("ascii"), hashlib.sha256).hexdigest()
