"""Account passwords: scrypt (n=2**14, r=8, p=1), stored as base64(salt16 + dk32).

48 bytes of base64 is exactly 64 characters, the width of ``account.userpass``
(CHAR(64)). An account without a password stores ``''``, which no password verifies.

``hash_password`` costs about 16 MiB and some tens of milliseconds of CPU: on an
event loop, call it through ``asyncio.to_thread``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
KEY_BYTES = 32
HASH_LENGTH = 64  # len(base64(16 + 32 bytes))


def _derive(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=SCRYPT_N,
        r=SCRYPT_R,
        p=SCRYPT_P,
        dklen=KEY_BYTES,
    )


def hash_password(password: str) -> str:
    """A fresh-salted scrypt hash of ``password``: 64 printable characters."""
    salt = secrets.token_bytes(SALT_BYTES)
    return base64.b64encode(salt + _derive(password, salt)).decode("ascii")


def verify_password(password: str, stored: str) -> bool:
    """True if ``password`` matches ``stored`` (a ``hash_password`` result). An empty or
    malformed ``stored`` never matches. Constant-time comparison."""
    stored = stored.strip()
    if len(stored) != HASH_LENGTH:
        return False
    try:
        raw = base64.b64decode(stored, validate=True)
    except (binascii.Error, ValueError):
        return False
    if len(raw) != SALT_BYTES + KEY_BYTES:
        return False
    salt, expected = raw[:SALT_BYTES], raw[SALT_BYTES:]
    return hmac.compare_digest(_derive(password, salt), expected)
