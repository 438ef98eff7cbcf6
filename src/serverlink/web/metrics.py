"""Prometheus collectors: the monitoring board (every server's figures) and
one server's own snapshot, read when scraped (nothing is kept between scrapes).

- ``BoardCollector``: ``serverlink_monitor_<figure>{kind, server_no}`` for the
  latest figure of every server the monitoring server knows (``server_on`` 0
  and nothing else for a server that is off).
- ``SnapshotCollector``: ``serverlink_<key>{server}`` for every number of a
  server's snapshot, ``serverlink_<key>{server, reason}`` for its breakdowns
  (disconnects, errors, ...), and its kind's figures as the monitor has them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from serverlink.monitor.figures import KINDS, Kind, Reading
from serverlink.servers.relay import MonitorCore

PREFIX = "serverlink"
_NOT_NAME = re.compile(r"[^a-zA-Z0-9_]")


def metric_name(*parts: str) -> str:
    return _NOT_NAME.sub("_", "_".join((PREFIX, *parts)))


def _helps() -> dict[str, str]:
    """The help of each figure name: its label and unit, and its meaning when
    every kind that has the name means the same by it."""
    meanings: dict[str, set[str]] = {}
    helps: dict[str, str] = {}
    for kind in KINDS:
        for f in kind.figures:
            meanings.setdefault(f.name, set()).add(f.help)
            helps.setdefault(f.name, f"{f.label} ({f.unit})" if f.unit else f.label)
    for name, said in meanings.items():
        if len(said) == 1 and "" not in said:
            helps[name] += f": {said.pop()}"
    return helps


HELPS = _helps()


def figure_families() -> dict[str, GaugeMetricFamily]:
    """One family per figure name (several kinds share cpu, sessions, ...)."""
    return {
        name: GaugeMetricFamily(metric_name("monitor", name), text, labels=["kind", "server_no"])
        for name, text in HELPS.items()
    }


class BoardCollector(Collector):
    def __init__(self, core: MonitorCore) -> None:
        self.core = core

    def collect(self) -> Iterator[Metric]:
        families = figure_families()
        for state in sorted(self.core.servers.values(), key=lambda s: s.server_no):
            kind = state.kind
            if kind is None:
                continue
            labels = [kind.name, str(state.server_no)]
            for data_type, (value, _) in state.values.items():
                figure = kind.figure(data_type)
                if figure is not None and (state.on or figure is kind.on):
                    families[figure.name].add_metric(labels, value)
        yield from (f for f in families.values() if f.samples)


class SnapshotCollector(Collector):
    """One server's snapshot, and its figures (``reading``: the latest second)."""

    def __init__(
        self,
        name: str,
        snapshot: Callable[[], Mapping[str, Any]],
        reading: Callable[[], tuple[Kind, int, Reading] | None],
    ) -> None:
        self.name = name
        self.snapshot = snapshot
        self.reading = reading

    def collect(self) -> Iterator[Metric]:
        for key, value in sorted(self.snapshot().items()):
            if isinstance(value, bool) or not isinstance(value, int | float | Mapping):
                continue
            if isinstance(value, Mapping):
                family = GaugeMetricFamily(
                    metric_name(key), f"{key} by reason", labels=["server", "reason"]
                )
                for reason, n in sorted(value.items()):
                    if isinstance(n, int | float) and not isinstance(n, bool):
                        family.add_metric([self.name, str(reason)], n)
            else:
                family = GaugeMetricFamily(metric_name(key), key, labels=["server"])
                family.add_metric([self.name], value)
            yield family
        latest = self.reading()
        if latest is not None:
            kind, server_no, reading = latest
            families = figure_families()
            for figure in kind.figures:
                families[figure.name].add_metric([kind.name, str(server_no)], figure.value(reading))
            yield from (f for f in families.values() if f.samples)


def registry_of(collector: Collector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def metrics_response(registry: CollectorRegistry) -> web.Response:
    response = web.Response(body=generate_latest(registry))
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response
