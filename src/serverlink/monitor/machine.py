"""The machine's figures (the monitoring server's ServerNo 0): CPU of all
cores, available memory, network bytes per second, kernel memory."""

from __future__ import annotations

import time

import psutil

MB = 2**20


class MachineSampler:
    """Machine-wide figures between successive ``sample()`` calls."""

    def __init__(self) -> None:
        psutil.cpu_percent(None)  # starts the clock: the first sample is over the first interval
        net = psutil.net_io_counters()
        self._net = (net.bytes_recv, net.bytes_sent) if net is not None else (0, 0)
        self._at = time.monotonic()

    def sample(self) -> dict[str, float]:
        now = time.monotonic()
        dt = max(now - self._at, 1e-3)
        net = psutil.net_io_counters()
        recv, sent = (net.bytes_recv, net.bytes_sent) if net is not None else self._net
        recv_rate = max(0, recv - self._net[0]) / dt
        sent_rate = max(0, sent - self._net[1]) / dt
        self._net, self._at = (recv, sent), now
        memory = psutil.virtual_memory()
        return {
            "cpu_total": psutil.cpu_percent(None),
            "memory_available": memory.available / MB,
            "net_recv": recv_rate,
            "net_send": sent_rate,
            # Windows' non-paged pool has no Linux twin; slab is the kernel's own memory.
            "nonpaged": getattr(memory, "slab", 0) / MB,
        }
