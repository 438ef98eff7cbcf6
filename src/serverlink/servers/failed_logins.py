"""Failed logins per client address: an address that keeps guessing keys (or
account numbers) cools off. Within the cooling time the login server answers
Status 0 at once, without a database read, so a guessing client costs the
database nothing and learns nothing."""

from __future__ import annotations

import logging

from serverlink.protocol.status import LoginStatus

log = logging.getLogger("serverlink.login")

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
        self._by_ip: dict[str, list[float]] = {}  # ip -> [window start, count, cool until]
        self.cooling_refusals = 0

    def cooling(self, ip: str, now: float) -> bool:
        entry = self._by_ip.get(ip)
        return entry is not None and entry[2] > now

    def failed(self, ip: str, now: float) -> None:
        if not self.limit:
            return
        entry = self._by_ip.get(ip)
        if entry is None or now - entry[0] > self.window:
            if len(self._by_ip) > 10_000:
                self._prune(now)
            entry = self._by_ip[ip] = [now, 0.0, 0.0]
        entry[1] += 1
        if entry[1] >= self.limit and entry[2] <= now:
            entry[2] = now + self.cooldown
            log.warning(
                "%s: %d failed logins within %g s: its logins are refused for %g s",
                ip,
                int(entry[1]),
                self.window,
                self.cooldown,
            )

    def _prune(self, now: float) -> None:
        for ip, (start, _, until) in list(self._by_ip.items()):
            if now - start > self.window and until <= now:
                del self._by_ip[ip]
