"""Status codes carried in reply packets (PROTOCOL.md tables)."""

from __future__ import annotations

from enum import IntEnum


class LoginStatus(IntEnum):
    """CS_LOGIN_RES_LOGIN.Status"""

    FAIL = 0  # session key wrong
    OK = 1
    GAME = 2  # account already in game
    ACCOUNT_MISS = 3
    SESSION_MISS = 4  # no session key row
    STATUS_MISS = 5  # no status row
    NOSERVER = 6  # no game/chat server linked right now
    # serverlink's addition (not in the original catalog): the account database
    # or the shared key store did not answer, so the login could not be checked
    # or completed; the client may retry.
    # Original clients treat any status other than 1 as a failed login.
    DB_UNAVAILABLE = 7


class GameLoginStatus(IntEnum):
    """CS_GAME_RES_LOGIN.Status"""

    FAIL = 0  # key or account
    OK = 1
    NO_CHARACTER = 2  # not used by an echo server
    VERSION_MISMATCH = 3


class ChatLoginStatus(IntEnum):
    FAIL = 0
    OK = 1


class ServerType(IntEnum):
    """SS_LOGINSERVER_LOGIN.ServerType"""

    GAME = 1
    CHAT = 2
    MONITOR = 3
