"""The dummy's HTML report (``serverlink dummy --html-report FILE``): one
self-contained page, readable offline and by mail: throughput and latency
percentiles over the run as charts (uPlot, inlined from the package), the
headline figures, every counter, the errors and their reasons, the run's
settings. Made from the JSON report (``DummyResult.report()``), so an old
JSON report can be turned into a page too."""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Mapping
from typing import Any

from serverlink.web import static_bytes

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 1.5em; }
table { border-collapse: collapse; margin: 0.5em 0; }
td, th { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.bad { color: #b00; font-weight: bold; }
.chart { margin: 1em 0; }
"""


def _number(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: "-"}[value]
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return html.escape(str(value))


def _table(rows: Iterable[tuple[str, Any]], bad: Iterable[str] = (), plain: bool = False) -> str:
    """Rows of name and value; ``bad`` names are red when not 0; ``plain``:
    numbers as they are (settings: ports, keys), else with thousands separators."""
    flagged = set(bad)
    cells = []
    for name, value in rows:
        css = ' class="n bad"' if name in flagged and value else ' class="n"'
        shown = html.escape(str(value)) if plain and not isinstance(value, bool) else _number(value)
        cells.append(f"<tr><th>{html.escape(str(name))}</th><td{css}>{shown}</td></tr>")
    return "<table>" + "".join(cells) + "</table>"


def headline(report: Mapping[str, Any]) -> list[tuple[str, Any]]:
    latency = report.get("latency_ms", {})
    rows = [
        ("mode", report.get("mode", "")),
        ("target", report.get("target", "")),
        ("seconds", report.get("seconds", 0.0)),
        ("clients", report.get("clients", 0)),
        ("echo replies/s", report.get("echo_per_s", 0.0)),
        *((f"echo latency {k} (ms)", latency.get(k, 0.0)) for k in ("p50", "p99", "p99.9", "max")),
        ("errors", report.get("errors_total", 0)),
    ]
    if report.get("mode") == "login":
        login = report.get("login_latency_ms", {})
        rows.insert(5, ("login flows/s", report.get("login_flows_per_s", 0.0)))
        rows += [(f"login flow {k} (ms)", login.get(k, 0.0)) for k in ("p50", "p99", "max")]
    return rows


def html_report(report: Mapping[str, Any]) -> str:
    """The page for one JSON report."""
    data = json.dumps(report).replace("<", "\\u003c")  # nothing in it can close the script
    settings = {k: v for k, v in report.get("config", {}).items() if not isinstance(v, dict)}
    codec = report.get("config", {}).get("codec", {})
    errors = report.get("errors", {})
    details = report.get("error_details", {})
    title = f"serverlink dummy: {report.get('mode', '')} run against {report.get('target', '')}"
    charts = '<div id="throughput" class="chart"></div><div id="latency" class="chart"></div>'
    if report.get("mode") == "login":
        charts += '<div id="login-latency" class="chart"></div>'
    sections = [
        f"<h1>{html.escape(title)}</h1>",
        _table(headline(report), bad=["errors"]),
        "<h2>Over time</h2>",
        charts,
        *(
            ["<h2>Login flows by game server</h2>", _table(spread.items())]
            if (spread := report.get("login_flows_by_game_server"))
            else []
        ),
        "<h2>Errors</h2>",
        _table(errors.items(), bad=errors.keys()),
        _table(details.items()) if details else "<p>No error reasons.</p>",
        "<h2>Counters</h2>",
        _table(report.get("counters", {}).items()),
        "<h2>Settings</h2>",
        _table([*settings.items(), *((f"codec.{k}", v) for k, v in codec.items())], plain=True),
    ]
    uplot_css = static_bytes("uPlot.min.css").decode()
    scripts = [static_bytes(name).decode() for name in ("uPlot.iife.min.js", "report.js")]
    uplot_js, charts_js = (js.replace("</script", "<\\/script") for js in scripts)
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>"
        f"<style>{uplot_css}{STYLE}</style></head><body>"
        + "\n".join(sections)
        + "<p><small>Charts by uPlot (MIT license), inlined.</small></p>"
        + f'<script type="application/json" id="report-data">{data}</script>'
        + f"<script>{uplot_js}</script><script>{charts_js}</script></body></html>\n"
    )
