"""Drives the screen: fed one snapshot a second, it redraws the live panel, or
in quiet mode logs one summary line every ``interval`` seconds (rates then
averaged over that interval)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from rich.console import Console
from rich.live import Live

from serverlink.logs import SUMMARY
from serverlink.monitor.screen import ScreenSpec, View, render_screen, summary_line
from serverlink.monitor.stats import ProcessSampler, RateTracker


class Monitor:
    """Live screen or quiet lines for one server (or one set of workers).

    ``live=True`` on a console that is not a terminal falls back to quiet lines:
    a redrawn panel means nothing in a log file or a CI job.
    """

    def __init__(
        self,
        spec: ScreenSpec,
        console: Console,
        *,
        address: str,
        live: bool = True,
        interval: float = 5.0,
        pids: Callable[[], Iterable[int]] = lambda: [os.getpid()],
        workers: int = 0,
        logger: logging.Logger | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spec = spec
        self.console = console
        self.address = address
        self.live_wanted = live and console.is_terminal and not console.is_dumb_terminal
        self.interval = max(0.1, interval)
        self.pids = pids
        self.workers = workers
        self.log = logger or logging.getLogger(SUMMARY)
        self.clock = clock
        self.started = clock()
        self.worker_restarts = 0
        self._rates = RateTracker()
        self._sampler = ProcessSampler()
        self._live: Live | None = None
        self._last_line = self.started
        self._last_view: View | None = None

    @property
    def is_live(self) -> bool:
        return self._live is not None

    def start(self, snapshot: Mapping[str, Any] | None = None) -> None:
        now = self.clock()
        self._rates.update(snapshot or {}, now)
        self._sampler.sample(self.pids())
        self._last_line = now
        if self.live_wanted:
            self._live = Live(
                console=self.console,
                auto_refresh=False,
                transient=False,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._live.start()
            self._live.update(render_screen(self.spec, self._view(snapshot or {}, now)))
            self._live.refresh()

    def update(self, snapshot: Mapping[str, Any]) -> None:
        """Called about once a second with the current snapshot."""
        now = self.clock()
        if self._live is not None:
            self._rates.update(snapshot, now)
            self._live.update(render_screen(self.spec, self._view(snapshot, now)), refresh=True)
        elif now - self._last_line >= self.interval - 0.05:
            self._rates.update(snapshot, now)
            self._last_line = now
            self.log.info("%s", summary_line(self.spec, self._view(snapshot, now)))

    def stop(self, snapshot: Mapping[str, Any] | None = None) -> None:
        """Leave the last screen on the terminal (or log a last line)."""
        now = self.clock()
        if self._live is not None:
            if snapshot is not None:
                self._rates.update(snapshot, now)
                self._live.update(render_screen(self.spec, self._view(snapshot, now)))
            self._live.stop()
            self._live = None

    def _view(self, snapshot: Mapping[str, Any], now: float) -> View:
        cpu, rss = self._sampler.sample(self.pids())
        view = View(
            name=self.spec.title,
            address=self.address,
            uptime=now - self.started,
            snapshot=snapshot,
            rates=dict(self._rates.rates),
            cpu_percent=cpu,
            rss_bytes=rss,
            workers=self.workers,
            worker_restarts=self.worker_restarts,
            pid=os.getpid(),
        )
        self._last_view = view
        return view

    def final_line(self, snapshot: Mapping[str, Any]) -> str:
        """A closing summary (totals; rates since the last line)."""
        now = self.clock()
        self._rates.update(snapshot, now)
        return summary_line(self.spec, self._view(snapshot, now))
