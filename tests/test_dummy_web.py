"""The dummy client in web mode over real HTTP and sockets: sign up once, sign
in over the account web API, then the login server -> game server flow with
the key it got, on SQLite and MariaDB."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from conftest import short_run
from serverlink.dummy import run_dummy_async
from serverlink.dummy.config import DummyConfig
from serverlink.store.admin import seed_db
from serverlink.web.report import html_report
from web_api import WebSystem, web_system


@pytest.fixture
async def web(db_url: str, tmp_path: Path) -> AsyncIterator[WebSystem]:
    # One address signs every client in: no per-address limit for a load test.
    async with web_system(db_url, tmp_path, rate_limit_address=0, rate_limit_userid=0) as w:
        yield w


def web_config(web: WebSystem, **overrides: Any) -> DummyConfig:
    # login_port: the login server the web API names, not this one (none listens here).
    return short_run(
        "web",
        **{"web_url": web.base, "clients": 4, "echo_depth": 1, "seconds": 2.0, "login_port": 1,
           **overrides},
    )  # fmt: skip


async def test_web_mode_signs_up_signs_in_then_logs_in_and_plays(web: WebSystem) -> None:
    result = await run_dummy_async(web_config(web))
    assert result.errors_total == 0, result.error_details
    c = result.counters
    assert c["web_signups"] == c["web_signins"] == 4
    assert c["login_server_ok"] == c["login_flows"] == c["login_ok"] == 4
    assert c["echo_recv"] > 0
    assert web.api.snapshot()["signins"] == 4
    assert web.system.login.login_stats.success == 4
    report: dict[str, Any] = json.loads(json.dumps(result.report()))
    assert report["mode"] == "web" and report["web_signins_per_s"] > 0
    assert 0 < report["web_latency_ms"]["p50"] <= report["web_latency_ms"]["p99"]
    assert report["login_flows_per_s"] > 0 and report["web_failures"] == {}
    assert report["target"] == "127.0.0.1:1" and report["web_url"] == web.base
    page = html_report(report)
    assert "web sign-ins/s" in page and 'id="login-latency"' in page


async def test_relogin_signs_in_for_every_flow_and_a_second_run_reuses_the_accounts(
    web: WebSystem,
) -> None:
    first = await run_dummy_async(web_config(web, clients=2, relogin=True))
    assert first.errors_total == 0, first.error_details
    c = first.counters
    assert c["web_signups"] == 4  # two accounts per client with relogin
    assert c["login_flows"] > 4 and c["web_signins"] >= c["login_flows"]
    again = await run_dummy_async(web_config(web, clients=2, relogin=True, seconds=1.0))
    assert again.errors_total == 0, again.error_details
    assert again.counters["web_signups"] == 0 and again.counters["web_signins"] > 0


async def test_refused_sign_ins_are_counted_by_code(db_url: str, tmp_path: Path) -> None:
    async with web_system(db_url, tmp_path, rate_limit_address=2) as web:
        result = await run_dummy_async(web_config(web, clients=1, relogin=True, seconds=1.0))
    assert result.counters["web_fail"] > 0
    assert set(result.web_failures) == {"signin:rate_limited"}
    assert result.exit_code == 1


async def test_seeded_accounts_are_signed_in_to_without_sign_ups(web: WebSystem) -> None:
    await seed_db(web.system.db_url, 4, password="seeded-pass")
    config = web_config(web, clients=2, relogin=True, web_seeded_password="seeded-pass")
    result = await run_dummy_async(config)
    assert result.errors_total == 0, result.error_details
    assert result.counters["web_signups"] == 0 and result.counters["web_signins"] > 2
    assert web.api.snapshot()["signups"] == 0
