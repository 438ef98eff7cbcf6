"""Which linked server a client is sent to.

Each serverlink server reports its players and capacity with every heartbeat;
between reports the login server counts the clients it placed there itself,
so a burst of logins does not all go to the server that looked emptiest at the
last report. The order of preference:

1. servers that are not draining, not full and not late to answer hand-offs;
2. among them, the largest free share of capacity (an original server, which
   reports nothing, counts as half free); ties broken at random;
3. late servers come last, tried only when no other is left; draining and full
   servers are never chosen.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable

from serverlink.servers.lan import LinkedServer

#: The free share assumed for a server that reports no load (an original C++ server).
UNKNOWN_FREE = 0.5


class Placement:
    def __init__(self) -> None:
        #: Clients placed on a server since its last report (the report's time), by server.
        self._placed: dict[LinkedServer, tuple[float, int]] = {}

    def placed(self, server: LinkedServer) -> None:
        """A client was handed to ``server``."""
        for gone in [s for s in self._placed if s.session.closed]:
            del self._placed[gone]
        self._placed[server] = (server.last_heard, self._since_report(server) + 1)

    def unplaced(self, server: LinkedServer) -> None:
        """A client counted for ``server`` did not go there after all (its key
        did not reach it)."""
        stamp, count = self._placed.get(server, (0.0, 0))
        if stamp == server.last_heard and count > 0:
            self._placed[server] = (stamp, count - 1)

    def _since_report(self, server: LinkedServer) -> int:
        stamp, count = self._placed.get(server, (0.0, 0))
        return count if stamp == server.last_heard else 0  # a new report counts them

    def load(self, server: LinkedServer) -> int:
        return server.players + self._since_report(server)

    def order(self, servers: Iterable[LinkedServer]) -> list[LinkedServer]:
        """The servers a client may be sent to, best first."""
        now = time.monotonic()
        ranked: list[tuple[bool, float, float, LinkedServer]] = []
        for s in servers:
            if s.draining or s.session.closed:
                continue
            if s.capacity:
                load = self.load(s)
                if load >= s.capacity:
                    continue
                free = (s.capacity - load) / s.capacity
            else:
                free = UNKNOWN_FREE
            ranked.append((s.late_until > now, -free, random.random(), s))
        ranked.sort(key=lambda r: r[:3])
        return [r[3] for r in ranked]
