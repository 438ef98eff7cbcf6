"""``serverlink dummy --compare OLD.json``: each headline figure of this run
against an earlier report (``--report``), with its change."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: (label, path in the report, True when higher is better)
HEADLINE: tuple[tuple[str, tuple[str, ...], bool], ...] = (
    ("echo replies/s", ("echo_per_s",), True),
    ("echo latency p50 ms", ("latency_ms", "p50"), False),
    ("echo latency p99 ms", ("latency_ms", "p99"), False),
    ("echo latency p99.9 ms", ("latency_ms", "p99.9"), False),
    ("echo latency max ms", ("latency_ms", "max"), False),
    ("login flows/s", ("login_flows_per_s",), True),
    ("login flow p50 ms", ("login_latency_ms", "p50"), False),
    ("login flow p99 ms", ("login_latency_ms", "p99"), False),
    ("web sign-ins/s", ("web_signins_per_s",), True),
    ("web sign-in p50 ms", ("web_latency_ms", "p50"), False),
    ("web sign-in p99 ms", ("web_latency_ms", "p99"), False),
    ("errors", ("errors_total",), False),
)


def load_report(path: Path) -> dict[str, Any]:
    """A JSON report; ValueError (one line) for a file that is not one."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable JSON report ({exc})") from None
    if not isinstance(data, dict) or "echo_per_s" not in data:
        raise ValueError(f"{path}: not a dummy report (no echo_per_s; write one with --report)")
    return data


def _get(report: Mapping[str, Any], path: tuple[str, ...]) -> float | None:
    value: Any = report
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return float(value) if isinstance(value, int | float) else None


def compare(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """One line per headline figure both reports have: old, new, change."""
    lines: list[str] = []
    for label, path, higher_better in HEADLINE:
        before, after = _get(old, path), _get(new, path)
        if before is None or after is None:
            continue
        if before:
            change = f"{(after - before) / before * 100:+.1f}%"
        else:
            change = "same" if after == before else "new"
        verdict = ""
        if after != before:
            verdict = " better" if (after > before) == higher_better else " worse"
        lines.append(f"{label:<24}{before:>14,.2f} -> {after:>14,.2f}  {change}{verdict}")
    return lines
