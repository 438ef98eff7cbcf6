"""The chat server linked to a login server, over real sockets: registration as
a chat-type server with its load, logins only with the handed-over key (taken
once), and the original chat dummy's captured frames replayed against login +
chat servers with ``dummy_accounts_below``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chat_clients import FRAMING, ChatSystem, Player, login, messages, start_chat_system
from conftest import until
from linked_system import login_request
from serverlink.net.client import FrameClient, connect_frame_client
from serverlink.protocol import packets as pk
from serverlink.protocol.status import ChatLoginStatus, LoginStatus, ServerType

VECTORS = Path(__file__).parent / "vectors"


@pytest.fixture
async def system(db_url: str, tmp_path: Path) -> AsyncIterator[ChatSystem]:
    s = await start_chat_system(db_url, tmp_path, 5)
    yield s
    await s.stop()


async def test_linked_login_only_with_the_handed_over_key_and_only_once(
    system: ChatSystem,
) -> None:
    keys = system.keys
    # Before the login server vouched for it, the right key is refused too.
    status, early = await login(system.chat.port, 1, keys[1])
    assert status == ChatLoginStatus.FAIL
    await early.wait_closed()

    reply, _ = await login_request(system.login.port, 1, keys[1])
    assert reply.Status == LoginStatus.OK
    assert (reply.ChatServerIP, reply.ChatServerPort) == ("127.0.0.1", system.chat.port)
    assert (reply.GameServerIP, reply.GameServerPort) == ("", 0)
    status, c = await login(reply.ChatServerPort, 1, keys[1], reply.ID, reply.Nickname)
    assert status == ChatLoginStatus.OK
    me = Player(1, c)
    await me.move(0, 0)
    me.say("linked")
    assert messages(await me.barrier()) == [(1, "ID_1", "NICK_1", "linked")]

    # The key works once: a second connection with it is refused and closed.
    status, again = await login(system.chat.port, 1, keys[1])
    assert status == ChatLoginStatus.FAIL
    await again.wait_closed()
    # A wrong key for an account that was handed over is refused.
    reply, _ = await login_request(system.login.port, 2, keys[2])
    assert reply.Status == LoginStatus.OK
    status, wrong = await login(system.chat.port, 2, keys[3])
    assert status == ChatLoginStatus.FAIL
    await wrong.wait_closed()
    assert system.chat.stats.refusals["bad_key"] == 3
    assert not c.lost.is_set()


async def test_a_linked_login_is_done_within_its_read_so_requests_may_follow_it(
    system: ChatSystem,
) -> None:
    reply, _ = await login_request(system.login.port, 4, system.keys[4])
    assert reply.Status == LoginStatus.OK
    c = await connect_frame_client(FRAMING, "127.0.0.1", system.chat.port)
    c.send_many(
        [
            pk.CS_CHAT_REQ_LOGIN.build(4, "ID_4", "NICK_4", system.keys[4]),
            pk.CS_CHAT_REQ_SECTOR_MOVE.build(4, 9, 9),
            pk.CS_CHAT_REQ_MESSAGE.build(4, "right behind"),
        ]
    )
    assert pk.CS_CHAT_RES_LOGIN.parse(await c.recv()) == (ChatLoginStatus.OK, 4)
    assert pk.CS_CHAT_RES_SECTOR_MOVE.parse(await c.recv()) == (4, 9, 9)
    assert pk.CS_CHAT_RES_MESSAGE.parse(await c.recv()) == (4, "ID_4", "NICK_4", "right behind")


async def test_registers_as_a_chat_server_and_reports_its_players(system: ChatSystem) -> None:
    (linked,) = system.login.lan.links
    assert linked.type == ServerType.CHAT
    assert linked.status_id == 0  # it claims no accounts
    assert linked.capacity == system.chat.config.limits.max_sessions
    for n in (1, 2):
        reply, _ = await login_request(system.login.port, n, system.keys[n])
        assert reply.Status == LoginStatus.OK
        status, _ = await login(system.chat.port, n, system.keys[n])
        assert status == ChatLoginStatus.OK
    await until(lambda: linked.players == 2)
    snap = system.chat.snapshot()
    assert (snap["login_link"], snap["handoffs"], snap["players"]) == ("up", 2, 2)


# --- the original chat dummy -------------------------------------------------------------------
def original_frames() -> list[dict[str, object]]:
    data = json.loads((VECTORS / "original_chat_dummy_frames.json").read_text())
    frames: list[dict[str, object]] = data["frames"]
    return frames


def frames_of(server: str, packet_type: int) -> list[bytes]:
    return [
        bytes.fromhex(str(f["frame_hex"]))
        for f in original_frames()
        if f["server"] == server and f["type"] == packet_type
    ]


def payload_of(frame: bytes) -> bytes:
    (payload,), _ = FRAMING.split(frame, 0)
    return payload


def test_the_original_chat_dummy_frames_decode() -> None:
    logins = [pk.CS_LOGIN_REQ_LOGIN.parse(payload_of(f)) for f in frames_of("login", 101)]
    chat_logins = [pk.CS_CHAT_REQ_LOGIN.parse(payload_of(f)) for f in frames_of("chat", 1)]
    moves = [pk.CS_CHAT_REQ_SECTOR_MOVE.parse(payload_of(f)) for f in frames_of("chat", 3)]
    said = [pk.CS_CHAT_REQ_MESSAGE.parse(payload_of(f)) for f in frames_of("chat", 5)]
    assert [r.AccountNo for r in logins] == [1, 2, 3]
    # The chat login carries the key the login server was sent, and text up to a NUL.
    assert [(r.AccountNo, r.SessionKey) for r in chat_logins] == [
        (r.AccountNo, r.SessionKey) for r in logins
    ]
    assert [(r.ID, r.Nickname) for r in chat_logins] == [
        ("ID_0", "NICK_0"),
        ("ID_02", "NICK_02"),
        ("ID_03", "NICK_03"),
    ]
    assert moves == [(1, 25, 12), (2, 47, 15), (3, 49, 16)]
    assert [(m.AccountNo, len(m.Message)) for m in said] == [(1, 29), (2, 1), (1, 1)]
    assert said[0].Message.endswith(" i Don't Know Why ")


async def send_raw_and_receive(port: int, frame: bytes) -> tuple[bytes, FrameClient]:
    c = await connect_frame_client(FRAMING, "127.0.0.1", port)
    c.send_raw(frame)
    return await c.recv(), c


async def test_a_replay_of_the_original_chat_dummy_gets_the_protocols_answers(
    sqlite_url: str, tmp_path: Path
) -> None:
    system = await start_chat_system(sqlite_url, tmp_path, 3, dummy_accounts_below=1_000_000)
    try:
        # Its keys are random: the login server lets them through for these
        # accounts and hands the client's own key to the chat server.
        for n, frame in enumerate(frames_of("login", 101), 1):
            payload, c = await send_raw_and_receive(system.login.port, frame)
            reply = pk.CS_LOGIN_RES_LOGIN.parse(payload)
            assert (reply.AccountNo, reply.Status) == (n, LoginStatus.OK)
            assert (reply.ID, reply.Nickname) == (f"ID_{n}", f"NICK_{n}")
            assert reply.ChatServerPort == system.chat.port
            await c.wait_closed()
        players: list[Player] = []
        for n, frame in enumerate(frames_of("chat", 1), 1):
            payload, c = await send_raw_and_receive(system.chat.port, frame)
            assert pk.CS_CHAT_RES_LOGIN.parse(payload) == (ChatLoginStatus.OK, n)
            players.append(Player(n, c))
        for p, frame in zip(players, frames_of("chat", 3), strict=True):
            p.client.send_raw(frame)
            move = pk.CS_CHAT_RES_SECTOR_MOVE.parse(await p.client.recv())
            assert move.AccountNo == p.account_no
            p.sector = (move.SectorX, move.SectorY)
        # Account 1 at (25, 12) is alone; account 2 at (47, 15) and account 3 at
        # (49, 16) are two sectors apart: each message reaches its sender only.
        said = [pk.CS_CHAT_REQ_MESSAGE.parse(payload_of(f)) for f in frames_of("chat", 5)]
        identities = {1: ("ID_0", "NICK_0"), 2: ("ID_02", "NICK_02")}
        for request, frame in zip(said, frames_of("chat", 5), strict=True):
            sender = players[request.AccountNo - 1]
            sender.client.send_raw(frame)
            for p in players:
                heard = messages(await p.barrier())
                if p is sender:
                    assert heard == [(p.account_no, *identities[p.account_no], request.Message)]
                else:
                    assert heard == []
        assert system.chat.stats.errors == {}
    finally:
        await system.stop()


async def test_without_dummy_accounts_below_the_original_dummys_random_keys_are_refused(
    sqlite_url: str, tmp_path: Path
) -> None:
    system = await start_chat_system(sqlite_url, tmp_path, 3)
    try:
        payload, _ = await send_raw_and_receive(system.login.port, frames_of("login", 101)[0])
        assert pk.CS_LOGIN_RES_LOGIN.parse(payload).Status == LoginStatus.FAIL
        payload, _ = await send_raw_and_receive(system.chat.port, frames_of("chat", 1)[0])
        assert pk.CS_CHAT_RES_LOGIN.parse(payload) == (ChatLoginStatus.FAIL, 1)
    finally:
        await system.stop()


async def test_dummy_accounts_below_checks_keys_from_the_bound_up(
    sqlite_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    system = await start_chat_system(sqlite_url, tmp_path, 3, dummy_accounts_below=3)
    try:
        assert any("load tests" in r.getMessage() for r in caplog.records)
        reply, _ = await login_request(system.login.port, 2, b"r" * 64)
        assert reply.Status == LoginStatus.OK
        reply, _ = await login_request(system.login.port, 3, b"r" * 64)
        assert reply.Status == LoginStatus.FAIL
        reply, _ = await login_request(system.login.port, 3, system.keys[3])
        assert reply.Status == LoginStatus.OK
    finally:
        await system.stop()
