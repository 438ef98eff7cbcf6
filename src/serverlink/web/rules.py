"""What the account web API accepts: the fields' rules and the rate limits.

A userid and a nickname travel in the protocol's ``WCHAR ID[20]`` and
``WCHAR Nickname[20]`` fields, which the encoder cuts to 19 UTF-16 code units
so that a NUL always ends them (``protocol.packets.encode_wstr``): a longer
name would reach the game cut. 19 units are at most 19 characters, well
within the schema's CHAR(64).
"""

from __future__ import annotations

import math
import re
import unicodedata
from typing import Any, get_args

from serverlink.protocol.packets import WStr20
from serverlink.windows import FixedWindows

#: UTF-16 code units of a userid or a nickname at most: the protocol's ID and
#: Nickname fields (WCHAR[20]), less the unit ``encode_wstr`` keeps for the NUL.
NAME_UNITS: int = get_args(WStr20)[1].units - 1
PASSWORD_MIN = 8
PASSWORD_MAX = 128  # characters; scrypt's cost does not depend on it, the body limit does

#: A userid: ASCII letters and digits, then also '_', '.', '-' (no look-alikes:
#: it is what a player types to sign in).
USERID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class FieldError(ValueError):
    """A request field that breaks its rule: the API's 400 with ``code``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le", errors="surrogatepass")) // 2


def text_field(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        raise FieldError("invalid_request", f"{name} is required, as a string")
    return value


def check_userid(value: str) -> str:
    if not 1 <= len(value) <= NAME_UNITS or USERID.fullmatch(value) is None:
        raise FieldError(
            "invalid_userid",
            f"userid: 1 to {NAME_UNITS} characters, ASCII letters and digits, "
            "then also '_', '.' and '-'",
        )
    return value


def check_nickname(value: str) -> str:
    """Letters, digits, marks, '_', '-' and inner spaces of any script, NFC
    normalised; at most ``NAME_UNITS`` UTF-16 units (a character outside the BMP
    takes two)."""
    value = unicodedata.normalize("NFC", value)
    allowed = all(
        ch in "_- " or unicodedata.category(ch)[0] in "LMN" for ch in value
    ) and value == value.strip(" ")
    if not value or not allowed or utf16_units(value) > NAME_UNITS:
        raise FieldError(
            "invalid_nickname",
            f"nickname: 1 to {NAME_UNITS} UTF-16 units of letters, digits, '_', '-' "
            "and spaces between them",
        )
    return value


def check_password(value: str) -> str:
    if not PASSWORD_MIN <= len(value) <= PASSWORD_MAX or "\0" in value:
        raise FieldError(
            "invalid_password",
            f"password: {PASSWORD_MIN} to {PASSWORD_MAX} characters, no NUL",
        )
    return value


class RateLimit:
    """At most ``limit`` requests per key (an address, a userid) in a fixed window
    of ``window`` seconds; 0: no limit. Memory stays bounded (``FixedWindows``)."""

    def __init__(self, limit: int, window: float, max_keys: int = 100_000) -> None:
        self.limit = limit
        self.requests = FixedWindows(window, max_keys)
        self.refused = 0

    def retry_after(self, key: str, now: float) -> int:
        """Count a request for ``key``: 0 if it may go on, else the whole seconds
        until its window ends (the 429's Retry-After)."""
        if not self.limit:
            return 0
        count, window_end = self.requests.add(key, now)
        if count <= self.limit:
            return 0
        self.refused += 1
        return max(1, math.ceil(window_end - now))
