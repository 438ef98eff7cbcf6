"""Failed logins per client address: an address that keeps guessing keys (or
account numbers) cools off. Within the cooling time the login server answers
Status 0 at once, without a database read, so a guessing client costs the
database nothing and learns nothing."""

from __future__ import annotations

import logging

from serverlink.protocol.status import LoginStatus
from serverlink.windows import FixedWindows

log = logging.getLogger("serverlink.login")

#: Addresses counted at most (past it, those whose window or cooling ended go).
MAX_ADDRESSES = 10_000

#: Statuses that count as a failed login attempt for the per-address limit.
FAILED_LOGIN = frozenset(
    {LoginStatus.FAIL, LoginStatus.ACCOUNT_MISS, LoginStatus.SESSION_MISS, LoginStatus.STATUS_MISS}
)


class FailedLogins:
    """Failed logins per client address in a fixed window; past the limit the
    address cools off (logged once per cooling)."""

    def __init__(self, limit: int, window: float, cooldown: float) -> None:
        self.limit = limit
        self.window = window
        self.cooldown = cooldown
        self._failures = FixedWindows(window, max_keys=MAX_ADDRESSES)
        self._cool_until: dict[str, float] = {}
        self.cooling_refusals = 0

    def cooling(self, ip: str, now: float) -> bool:
        until = self._cool_until.get(ip)
        return until is not None and until > now

    def failed(self, ip: str, now: float) -> None:
        if not self.limit:
            return
        count, _ = self._failures.add(ip, now)
        if count >= self.limit and not self.cooling(ip, now):
            if len(self._cool_until) >= MAX_ADDRESSES:
                for cooled in [a for a, until in self._cool_until.items() if until <= now]:
                    del self._cool_until[cooled]
            self._cool_until[ip] = now + self.cooldown
            log.warning(
                "%s: %d failed logins within %g s: its logins are refused for %g s",
                ip,
                count,
                self.window,
                self.cooldown,
            )
