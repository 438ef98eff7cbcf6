"""The dummy's reports: --compare against an
earlier JSON report, and the --html-report page opened in headless Chromium
with its charts drawn (a real run against a standalone game server)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from browser import PAINTED, browser_page
from serverlink.dummy.compare import compare, load_report
from test_cli import Proc


def test_compare_prints_each_headline_change(tmp_path: Path) -> None:
    old = {"echo_per_s": 1000.0, "latency_ms": {"p50": 1.0, "p99": 4.0}, "errors_total": 0}
    new = {"echo_per_s": 1500.0, "latency_ms": {"p50": 1.0, "p99": 2.0}, "errors_total": 3}
    lines = compare(old, new)
    assert any(line.startswith("echo replies/s") and "+50.0% better" in line for line in lines)
    assert any(line.startswith("echo latency p99 ms") and "-50.0% better" in line for line in lines)
    assert any(line.startswith("echo latency p50 ms") and "+0.0%" in line for line in lines)
    assert any(line.startswith("errors") and "new worse" in line for line in lines)
    assert not any("login" in line for line in lines)  # not in either report
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a dummy report"):
        load_report(bad)


@pytest.mark.slow
async def test_html_report_of_a_run_opens_with_its_charts_drawn(tmp_path: Path) -> None:
    game = Proc("game", "--standalone", "--port", "0", "--quiet")
    try:
        port = game.ready_port()
        old = tmp_path / "old.json"
        old.write_text(json.dumps({"echo_per_s": 1.0, "latency_ms": {"p50": 100.0}}))
        page_file = tmp_path / "run.html"
        run = subprocess.run(
            [sys.executable, "-m", "serverlink", "dummy", "--quiet",
             "--game-server", f"127.0.0.1:{port}", "--clients", "5", "--seconds", "3",
             "--report", str(tmp_path / "run.json"),
             "--html-report", str(page_file), "--compare", str(old)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        game.kill()
    assert run.returncode == 0, run.stderr
    assert "echo replies/s" in run.stdout and "better" in run.stdout
    report = json.loads((tmp_path / "run.json").read_text())
    assert len(report["latency_p99_ms_series"]) == len(report["echo_per_s_series"]) >= 2
    async with browser_page() as page:
        await page.goto(page_file.as_uri())  # self-contained: nothing else is fetched
        await page.wait_for_function("() => window.reportCharts && window.reportCharts.length == 2")
        canvases = page.locator(".chart canvas")
        assert await canvases.count() >= 2
        for i in range(await canvases.count()):
            assert await canvases.nth(i).evaluate(PAINTED) > 0
        drawn = await page.evaluate("() => window.reportCharts.map(c => c.data[1].length)")
        assert drawn == [len(report["echo_per_s_series"])] * 2
        assert "echo run against" in await page.title()


def test_a_bad_compare_file_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    out = subprocess.run(
        [sys.executable, "-m", "serverlink", "dummy", "--compare", str(bad)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "not a readable JSON report" in out.stderr
