"""Console screens and the numbers behind them, shared by the servers."""

from serverlink.monitor.console import Monitor
from serverlink.monitor.screen import (
    Row,
    ScreenSpec,
    View,
    breakdown,
    default_screen,
    fmt,
    of,
    rate,
    reasons,
    render_screen,
    standard_rows,
    summary_line,
    total,
    value,
)
from serverlink.monitor.stats import Aggregator, ProcessSampler, RateTracker, merge_snapshots

__all__ = [
    "Aggregator",
    "Monitor",
    "ProcessSampler",
    "RateTracker",
    "Row",
    "ScreenSpec",
    "View",
    "breakdown",
    "default_screen",
    "fmt",
    "merge_snapshots",
    "of",
    "rate",
    "reasons",
    "render_screen",
    "standard_rows",
    "summary_line",
    "total",
    "value",
]
