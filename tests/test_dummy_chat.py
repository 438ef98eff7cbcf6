"""The dummy client in chat mode over real sockets: against a real chat server
(standalone and through the login server, with and without attackers) it ends
with no error and every attack answered; against deliberately broken chat
servers each kind of violation is counted. Plus the segment cache's units."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from chat_clients import CODEC, ChatSystem, start_chat_system
from conftest import short_run
from serverlink.dummy import DummyResult, run_dummy_async
from serverlink.dummy.chat_attack import KINDS, attackers
from serverlink.dummy.chat_check import SegmentCache, message_text
from serverlink.dummy.config import DummyConfig
from serverlink.net.server import ServerLimits
from serverlink.protocol import packets as pk
from serverlink.protocol.codec import NET_HEADER_SIZE
from serverlink.servers.chat import ChatConfig, ChatServer, ChatSession
from serverlink.servers.sectors import Sector


def chat_config(server: ChatServer, **overrides: Any) -> DummyConfig:
    return short_run(
        "chat",
        **{"chat_port": server.port, "clients": 24, "message_interval": 0.2,
           "move_interval": 0.3, "reply_timeout": 2.0, **overrides},
    )  # fmt: skip


def check_report(result: DummyResult) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(json.dumps(result.report()))
    for key in ("messages_per_s", "deliveries_per_s", "delivery_latency_ms", "errors_total"):
        assert key in report
    assert set(report["delivery_latency_ms"]) >= {"p50", "p99", "max"}
    return report


def assert_clean(result: DummyResult) -> None:
    assert result.errors_total == 0, result.error_details
    assert result.exit_code == 0
    counters = result.counters
    assert counters["deliveries"] >= counters["messages_echoed"] > 0
    # Every own message came back but those still on their way at the end.
    assert counters["messages_sent"] - counters["messages_echoed"] <= result.config.clients * 2


def assert_attacks_answered(result: DummyResult) -> None:
    c = result.counters
    assert c["attack_sent"] > 0 and c["attack_unanswered"] == 0
    # Every attack was answered, but those cut off by the end of the run.
    by_kind = result.report()["attack_by_kind"]
    cut = sum(n for k, n in by_kind.items() if k.endswith(":cut_by_end_of_run"))
    assert c["attack_sent"] == c["attack_dropped"] + c["attack_muted"] + cut
    assert {k.split(":")[0] for k in by_kind} == set(KINDS)


# --- against a real chat server --------------------------------------------------------------
async def test_fair_clients_moving_at_random_see_exactly_what_they_should(
    chat: ChatServer,
) -> None:
    # 24 clients on 8 × 8 sectors of one corner: they meet often.
    result = await run_dummy_async(chat_config(chat, clients=24, seconds=3.0))
    assert_clean(result)
    report = check_report(result)
    assert report["deliveries_per_s"] > report["messages_per_s"] > 0
    # The server delivered what the dummy counted, but the messages in flight
    # when the run ended (each has at most a few receivers here).
    in_flight = chat.snapshot()["deliveries"] - result.counters["deliveries"]
    assert 0 <= in_flight <= 50


async def test_a_crowd_in_one_sector_hears_everyone(chat: ChatServer) -> None:
    clients = 40
    result = await run_dummy_async(chat_config(chat, clients=clients, sector=(0, 49)))
    assert_clean(result)
    # Every message reaches every client (all in one sector), minus the edges
    # of the run (clients still entering, messages in flight at the end).
    assert result.counters["deliveries"] > 0.8 * result.counters["messages_sent"] * clients
    assert chat.grid.occupancy()[0] <= 1


async def test_attackers_are_dropped_or_muted_and_fair_clients_unharmed(
    chat: ChatServer,
) -> None:
    result = await run_dummy_async(
        chat_config(chat, clients=30, attack=0.3, sector=(20, 20), seconds=4.0)
    )
    assert_clean(result)
    assert_attacks_answered(result)
    report = check_report(result)
    assert report["attack_sent"] == result.counters["attack_sent"]
    snap = chat.snapshot()
    assert snap["mutes"] >= 1 and snap["errors"]["before_login"] >= 1


async def test_through_the_login_server_with_and_without_attackers(
    db_url: str, tmp_path: Path
) -> None:
    system: ChatSystem = await start_chat_system(db_url, tmp_path, 40)
    try:
        common: dict[str, Any] = {
            "login_port": system.login.port,
            "keys_file": str(system.keys_file),
            "clients": 20,
            "sector": (49, 0),
        }
        fair = await run_dummy_async(chat_config(system.chat, **common))
        assert_clean(fair)
        assert fair.counters["login_server_ok"] == 20
        assert check_report(fair)["through_login_server"] is True
        hostile = await run_dummy_async(chat_config(system.chat, attack=0.4, seconds=4.0, **common))
        assert_clean(hostile)
        assert_attacks_answered(hostile)
    finally:
        await system.stop()


@pytest.mark.slow
async def test_two_worker_processes_through_the_login_server_with_attackers(
    mariadb_url: str, tmp_path: Path
) -> None:
    # Senders in the other process are unknown to a receiver: what it cannot
    # check there (their identity) is left out, the rest holds across processes.
    system = await start_chat_system(mariadb_url, tmp_path, 400)
    try:
        result = await run_dummy_async(
            chat_config(
                system.chat,
                login_port=system.login.port,
                keys_file=str(system.keys_file),
                clients=400,
                processes=2,
                attack=0.1,
                sector=(10, 10),
                message_interval=1.0,
                seconds=8.0,
                reply_timeout=5.0,
            )
        )
        assert_clean(result)
        assert_attacks_answered(result)
        assert result.processes == 2
        # 360 fair clients and the attackers' floods in one sector, a message a second each.
        assert result.deliveries_per_s > 0.5 * 360 * 360
    finally:
        await system.stop()


# --- against broken chat servers ---------------------------------------------------------------
def serving(session_class: type[ChatSession]) -> type[ChatServer]:
    """A chat server whose sessions are ``session_class``."""

    class Server(ChatServer):
        def __init__(self, config: ChatConfig) -> None:
            super().__init__(config)
            self.listener.session_factory = lambda deps: session_class(deps, self)

    return Server


class EverywhereServer(ChatServer):
    """Fans every message out to every occupied sector."""

    def publish(self, session: ChatSession, payload: bytes) -> None:
        if session.sector is not None:
            everywhere = Sector(0, 0)
            everywhere.area = tuple(self.grid.occupied)
            self.grid.publish(everywhere, session.framing.encode(session.reply_head + payload[10:]))


class NoAccountCheckSession(ChatSession):
    """Takes a message for another AccountNo (and fans it out)."""

    def _check_account(self, payload: bytes, what: str) -> None:
        pass


class WrongMoveAnswerSession(ChatSession):
    """Answers a move with x and y swapped."""

    def send(self, payload: bytes) -> None:
        if payload[:2] == pk.CS_CHAT_RES_SECTOR_MOVE.type_bytes:
            payload = payload[:10] + payload[12:14] + payload[10:12]
        super().send(payload)


class SilentMoveSession(ChatSession):
    """Places players where they ask but never answers a move: they hear
    messages before they know they are in a sector."""

    def send(self, payload: bytes) -> None:
        if payload[:2] != pk.CS_CHAT_RES_SECTOR_MOVE.type_bytes:
            super().send(payload)


BROKEN: dict[str, tuple[type[ChatServer], dict[str, Any], dict[str, Any], str]] = {
    "outside_area": (EverywhereServer, {}, {}, "chat:outside_area"),
    "hostile_delivered": (
        serving(NoAccountCheckSession),
        {},
        {"attack": 0.5, "sector": (3, 3)},
        "chat:hostile_delivered",
    ),
    "move_answer_wrong": (serving(WrongMoveAnswerSession), {}, {}, "chat:move_answer_wrong"),
    "before_sector": (serving(SilentMoveSession), {}, {"sector": (0, 0)}, "chat:before_sector"),
    "fair_client_muted": (
        ChatServer,
        {"flood_messages": 2, "flood_window": 5.0},
        {"reply_timeout": 0.5},
        "chat:own_message_missing",
    ),
}


@pytest.mark.parametrize("fault", sorted(BROKEN))
async def test_each_kind_of_violation_is_counted(fault: str) -> None:
    server_class, server_settings, dummy_settings, detail = BROKEN[fault]
    server = server_class(ChatConfig(port=0, limits=ServerLimits(), **server_settings))
    await server.start()
    try:
        result = await run_dummy_async(
            chat_config(server, clients=12, seconds=2.5, **dummy_settings)
        )
    finally:
        await server.stop()
    assert result.counters["chat_violation"] > 0
    assert result.error_details.get(detail, 0) > 0, result.error_details
    assert result.exit_code == 1


# --- units ------------------------------------------------------------------------------------
def _frames(payloads: list[bytes]) -> bytes:
    return b"".join(CODEC.encode_frame(p) for p in payloads)


def _message(account_no: int, x: int, y: int, sent_ns: int) -> bytes:
    text = message_text(account_no, 1, x, y, sent_ns, "a b")
    return pk.CS_CHAT_RES_MESSAGE.build(account_no, f"ID_{account_no}", f"NICK_{account_no}", text)


def test_a_segment_is_checked_once_and_found_by_every_reader_of_the_same_bytes() -> None:
    cache = SegmentCache({})
    payloads = [_message(1, 5, 5, 100), _message(2, 6, 4, 90), _message(1, 5, 5, 120)]
    raw = _frames(payloads)
    segment = cache.build(raw, payloads)
    assert (segment.count, segment.problem) == (3, None)
    assert (segment.min_x, segment.max_x, segment.min_y, segment.max_y) == (5, 6, 4, 5)
    assert segment.by_sender == {1: [payloads[0], payloads[2]], 2: [payloads[1]]}
    assert (segment.stamps, segment.oldest) == ([100, 90, 120], 90)
    # Found again at any position of a read that holds it, longest first.
    longer = cache.build(
        raw + _frames([_message(3, 5, 5, 130)]), [*payloads, _message(3, 5, 5, 130)]
    )
    assert cache.find(b"xx" + raw + b"yy", 2) is segment
    assert cache.find(raw + raw[:20], 0) is segment
    assert cache.find(longer.raw, 0) is longer
    assert cache.find(raw[NET_HEADER_SIZE:], 0) is None


def test_what_is_wrong_with_a_segment_is_found_once_for_every_receiver() -> None:
    identities = {1: pk.CS_CHAT_RES_MESSAGE.build(1, "ID_1", "NICK_1", "")[10:90]}
    cache = SegmentCache(identities)
    cases = {
        "wrong_identity": pk.CS_CHAT_RES_MESSAGE.build(
            1, "ID_9", "NICK_1", message_text(1, 1, 0, 0, 5, "")
        ),
        "wrong_sender": pk.CS_CHAT_RES_MESSAGE.build(
            2, "ID_2", "N", message_text(3, 1, 0, 0, 5, "")
        ),
        "hostile_delivered": pk.CS_CHAT_RES_MESSAGE.build(2, "ID_2", "N", "!wrong_account"),
        "unreadable_message": pk.CS_CHAT_RES_MESSAGE.build(2, "ID_2", "N", "안녕"),
        "bad_message_length": pk.CS_CHAT_RES_MESSAGE.build(2, "ID_2", "N", "ab") + b"\0",
    }
    for kind, payload in cases.items():
        segment = cache.build(_frames([payload]), [payload])
        assert segment.problem is not None and segment.problem.kind == kind


def test_attackers_are_the_configured_share_spread_over_the_clients() -> None:
    chosen = attackers(range(1, 101), 0.1)
    assert len(chosen) == 10 and chosen == frozenset(range(10, 101, 10))
    assert attackers(range(1, 101), 0.0) == frozenset()
    assert len(attackers(range(1, 3001), 0.1)) == 300


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"attack": 0.1}, "chat mode options"),
        ({"mode": "chat", "attack": 1.5}, "share of 0-1"),
        ({"mode": "chat", "sector": (50, 0)}, "within the 50 × 50 grid"),
        ({"mode": "chat", "message_interval": 0.05}, "flood limit"),
        ({"mode": "chat", "message_interval": 0}, "must be positive"),
        ({"mode": "chat", "chat_port": 0}, "chat_port"),
    ],
)
def test_chat_settings_are_checked(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DummyConfig(**settings)


def test_chat_mode_targets() -> None:
    assert DummyConfig(mode="chat", chat_port=5).target == "127.0.0.1:5"
    linked = DummyConfig(mode="chat", keys_file="k", login_port=7)
    assert linked.through_login_server and linked.target == "127.0.0.1:7"
