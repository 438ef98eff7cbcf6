"""The monitoring dashboard in a real browser (headless Chromium): during a
monitored linked run (monitor, login and game server processes) the page's
charts get points matching what the servers sent (as a monitoring tool on
the monitor's port received them) and draw them, a killed server's lamp turns
red, and the history charts are read from the history store."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from browser import PAINTED, browser_page
from monitored_system import MonitoredSystem, Tool
from serverlink.monitor.figures import GAME, LOGIN, MACHINE

#: Every figure but the lamp gets a chart.
CHARTS = sum(len(k.figures) - 1 for k in (MACHINE, LOGIN, GAME))


@pytest.mark.slow
async def test_dashboard_live_charts_lamps_and_history(tmp_path: Path) -> None:
    with MonitoredSystem(tmp_path) as system:
        system.start()
        tool = Tool(system.tool_port)
        await asyncio.sleep(1.5)  # the tool has seen a whole second before the page opens
        async with browser_page() as page:
            await page.goto(f"http://127.0.0.1:{system.http_port}/")
            await page.wait_for_function(
                "() => { const p = window.serverlink && window.serverlink.points;"
                " return p && p['2:30'] && p['2:30'].t.length >= 3 && p['1:10'].t.length >= 3; }",
                timeout=20_000,
            )
            points = await page.evaluate("() => window.serverlink.points")
            assert len(points) == CHARTS
            for key, drawn in points.items():
                server_no, data_type = (int(n) for n in key.split(":"))
                sent = tool.seen(server_no, data_type)
                first = min(t for t, _ in sent)
                pairs = [(t, v) for t, v in zip(drawn["t"], drawn["v"], strict=True) if t >= first]
                assert pairs, key
                assert set(pairs) <= set(sent), (key, pairs, sent)
            canvases = page.locator(".chart[data-key] canvas")
            assert await canvases.count() >= CHARTS
            assert await page.locator('.chart[data-key="2:30"] canvas').first.evaluate(PAINTED) > 0
            assert await page.get_attribute("#lamp-2", "class") == "lamp on"
            assert await page.get_attribute("#lamp-1", "class") == "lamp on"
            system.kill_game()
            await page.wait_for_selector("#lamp-2.off", timeout=12_000)
            assert await page.get_attribute("#lamp-1", "class") == "lamp on"
            # the history charts: rows the monitor saved (every second here)
            await page.evaluate("() => window.serverlink.loadHistory()")
            history = await page.evaluate("() => window.serverlink.history")
            assert history["kind"] == "game" and history["servers"] == [2]
            assert len(history["times"]) >= 3 and history["charts"] == len(GAME.figures)
            on = history["series"]["server_on"][1]
            assert 1 in on
            assert await page.locator(".chart[data-history] canvas").count() >= len(GAME.figures)
            await page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
        tool.close()
