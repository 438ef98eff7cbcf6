"""Which linked server a client is sent to.

Each serverlink server reports its players and capacity with every heartbeat;
between reports the login server counts the clients it placed there itself,
so a burst of logins does not all go to the server that looked emptiest at the
last report. A placement counts for one or two periods of ``PLACED_FOR``: by
then its client has arrived (and may have left again); counting every
placement until the next report, seconds away, made a server under fast
relogins (thousands a second) look full. The order of preference:

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


#: Seconds a placement counts toward its server's load before a report covers it.
PLACED_FOR = 1.0


class Placement:
    def __init__(self) -> None:
        #: By server: [its last report's time, this period's start, clients placed in
        #: this period, in the one before]; a new report starts over.
        self._placed: dict[LinkedServer, list[float]] = {}

    def _counts(self, server: LinkedServer, now: float) -> list[float]:
        counts = self._placed.get(server)
        if counts is None or counts[0] != server.last_heard:  # a new report counts them
            counts = self._placed[server] = [server.last_heard, now, 0, 0]
        elif now - counts[1] >= PLACED_FOR:
            counts[3] = counts[2] if now - counts[1] < 2 * PLACED_FOR else 0
            counts[1], counts[2] = now, 0
        return counts

    def placed(self, server: LinkedServer) -> None:
        """A client was handed to ``server``."""
        for gone in [s for s in self._placed if s.session.closed]:
            del self._placed[gone]
        self._counts(server, time.monotonic())[2] += 1

    def unplaced(self, server: LinkedServer) -> None:
        """A client counted for ``server`` did not go there after all (its key
        did not reach it)."""
        counts = self._counts(server, time.monotonic())
        if counts[2] > 0:
            counts[2] -= 1
        elif counts[3] > 0:
            counts[3] -= 1

    def load(self, server: LinkedServer, now: float) -> int:
        """Its players at its last report, and the clients placed there since
        (within ``PLACED_FOR``)."""
        counts = self._counts(server, now)
        return server.players + int(counts[2] + counts[3])

    def order(self, servers: Iterable[LinkedServer]) -> list[LinkedServer]:
        """The servers a client may be sent to, best first."""
        now = time.monotonic()
        ranked: list[tuple[bool, float, float, LinkedServer]] = []
        for s in servers:
            if s.draining or s.session.closed:
                continue
            if s.capacity:
                load = self.load(s, now)
                if load >= s.capacity:
                    continue
                free = (s.capacity - load) / s.capacity
            else:
                free = UNKNOWN_FREE
            ranked.append((s.late_until > now, -free, random.random(), s))
        ranked.sort(key=lambda r: r[:3])
        return [r[3] for r in ranked]
