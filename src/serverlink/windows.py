"""Events counted per key (a client address, a userid) in fixed time windows:
what the login server's failed-login limit and the web API's rate limits share.
Memory stays bounded: past ``max_keys`` keys, those whose window has ended are
dropped."""

from __future__ import annotations


class FixedWindows:
    __slots__ = ("_windows", "max_keys", "window")

    def __init__(self, window: float, max_keys: int = 100_000) -> None:
        self.window = window
        self.max_keys = max_keys
        self._windows: dict[str, list[float]] = {}  # key -> [window start, count]

    def add(self, key: str, now: float) -> tuple[int, float]:
        """Count one event of ``key``: the events of its window so far, and
        when that window ends."""
        entry = self._windows.get(key)
        if entry is None or now - entry[0] >= self.window:
            if len(self._windows) >= self.max_keys:
                self._prune(now)
            entry = self._windows[key] = [now, 0.0]
        entry[1] += 1
        return int(entry[1]), entry[0] + self.window

    def _prune(self, now: float) -> None:
        for key, (start, _) in list(self._windows.items()):
            if now - start >= self.window:
                del self._windows[key]
