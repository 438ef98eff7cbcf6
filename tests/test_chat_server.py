"""The standalone chat server over real sockets: login, who hears a message on
the grid (edges and corners included), every protocol error closing only its
connection, flood control, a slow reader dropped at the send-buffer limit."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from chat_clients import CODEC, KEY, Player, connect, messages, player, start_chat
from conftest import until
from serverlink.net.server import ServerLimits
from serverlink.protocol import packets as pk
from serverlink.protocol.status import ChatLoginStatus
from serverlink.servers.chat import ChatConfig, ChatServer
from serverlink.servers.sectors import GRID_SIZE


# --- login ----------------------------------------------------------------------------------
async def test_standalone_login_takes_any_key_and_id_and_nickname_end_at_their_nul(
    chat: ChatServer,
) -> None:
    c = await connect(chat)
    # As the original dummy sends them: garbage after the terminating NUL.
    user_id = "ID_7".encode("utf-16-le") + b"\0\0" + "junk".encode("utf-16-le")
    nick = "별명_7".encode("utf-16-le") + b"\0\0" + b"\xff" * 10
    payload = (
        pk.CS_CHAT_REQ_LOGIN.type_bytes
        + (7).to_bytes(8, "little")
        + user_id.ljust(40, b"?")
        + nick.ljust(40, b"\0")
        + bytes(range(64))
    )
    c.send(payload)
    assert pk.CS_CHAT_RES_LOGIN.parse(await c.recv()) == (ChatLoginStatus.OK, 7)
    me = Player(7, c)
    await me.move(3, 4)
    me.say("hi")
    (echo,) = messages(await me.barrier())
    assert echo == (7, "ID_7", "별명_7", "hi")
    # The reply's ID field is the text, NUL padded: no garbage is passed on.
    raw = pk.CS_CHAT_RES_MESSAGE.build(7, "ID_7", "별명_7", "hi")
    me.say("hi")
    assert (await me.barrier()) == [raw]
    assert chat.snapshot()["players"] == 1


async def test_a_newer_session_of_an_account_replaces_the_older(chat: ChatServer) -> None:
    first = await player(chat, 5, (1, 1))
    second = await player(chat, 5, (1, 1))
    await first.client.wait_closed()
    assert chat.stats.disconnects["replaced"] == 1
    second.say("still here")
    assert [m.Message for m in messages(await second.barrier())] == ["still here"]


# --- who hears a message -----------------------------------------------------------------------
EDGE = GRID_SIZE - 1
PLACES: list[tuple[int, int] | None] = [
    (0, 0),
    (1, 1),
    (0, 1),
    (2, 2),
    (EDGE, EDGE),
    (EDGE - 1, EDGE),
    (EDGE, EDGE - 2),
    (0, EDGE),
    (1, EDGE - 1),
    (EDGE, 0),
    (EDGE - 1, 1),
    (25, 0),
    (24, 1),
    (26, 0),
    (27, 0),
    (0, 25),
    (1, 26),
    (25, 25),
    (25, 25),
    (24, 24),
    (26, 26),
    (24, 26),
    (23, 25),
    (25, 27),
    (10, 40),
    None,  # logged in, never moved: in no sector
]


def hears(sender: tuple[int, int] | None, receiver: tuple[int, int] | None) -> bool:
    if sender is None or receiver is None:
        return False
    return abs(sender[0] - receiver[0]) <= 1 and abs(sender[1] - receiver[1]) <= 1


async def test_each_message_reaches_exactly_the_players_of_the_3x3_sectors_around_its_sender(
    chat: ChatServer,
) -> None:
    players = [await player(chat, n, place) for n, place in enumerate(PLACES, 1)]
    for sender in players:
        sender.say(f"from {sender.account_no}")
        # The sender's message is handled before anything the others send next.
        heard_by_sender = await sender.barrier() if sender.sector else []
        for p in players:
            got = heard_by_sender if p is sender else await p.barrier() if p.sector else []
            expected = hears(sender.sector, p.sector)
            assert messages(got) == (
                [
                    (
                        sender.account_no,
                        f"ID_{sender.account_no}",
                        f"NICK_{sender.account_no}",
                        f"from {sender.account_no}",
                    )
                ]
                if expected
                else []
            ), (sender.sector, p.sector)
    # The player in no sector heard nothing at all, and is still connected.
    loner = players[-1]
    loner.client.send(pk.CS_CHAT_REQ_HEARTBEAT.build())
    await loner.move(5, 5)
    assert not any(p.closed for p in players)
    snap = chat.snapshot()
    assert snap["messages_nowhere"] == 1
    assert snap["messages_in"] == len(PLACES) - 1
    expected_deliveries = sum(hears(s, r) for s in PLACES for r in PLACES)
    assert snap["deliveries"] == expected_deliveries
    assert snap["sector_players_max"] == 2


async def test_messages_before_a_move_answer_come_from_the_old_area_after_it_from_the_new(
    chat: ChatServer,
) -> None:
    west = await player(chat, 1, (0, 10))
    east = await player(chat, 2, (40, 10))
    mover = await player(chat, 3, (1, 10))
    # West speaks (heard by the mover at (1, 10)), the mover moves next to
    # east, east speaks: each step waits for the server to have handled it.
    west.say("old area")
    await west.barrier()
    mover.client.send(pk.CS_CHAT_REQ_SECTOR_MOVE.build(3, 39, 10))
    before = []
    while True:
        payload = await mover.client.recv()
        if pk.packet_type(payload) == pk.CS_CHAT_RES_SECTOR_MOVE.type:
            break
        before.append(payload)
    mover.sector = (39, 10)
    east.say("new area")
    await east.barrier()
    after = await mover.barrier()
    assert [m.Message for m in messages(before)] == ["old area"]
    assert [m.Message for m in messages(after)] == ["new area"]


async def test_moves_within_one_turn_keep_every_stream_exact(chat: ChatServer) -> None:
    # All in one write, so in one event-loop turn: each frame gathered for a
    # sector reaches exactly the players that were there when it was sent.
    bystander = await player(chat, 1, (10, 10))
    watcher = await player(chat, 2, (30, 30))
    mover = await player(chat, 3, (10, 10))
    move, say = pk.CS_CHAT_REQ_SECTOR_MOVE.build, pk.CS_CHAT_REQ_MESSAGE.build
    mover.client.send_many(
        [
            say(3, "at home"),  # heard by the bystander and the mover
            move(3, 30, 30),  # "at home" reaches the mover before this answer
            say(3, "visiting"),  # heard by the watcher and the mover
            move(3, 45, 45),
            move(3, 30, 30),  # back: "visiting" was before it came, not for it
            say(3, "back again"),
        ]
    )
    stream = [await mover.client.recv() for _ in range(6)]
    kinds = [pk.packet_type(p) for p in stream]
    assert kinds == [6, 4, 6, 4, 4, 6]
    assert [m.Message for m in messages([p for p in stream if p[0] == 6])] == [
        "at home",
        "visiting",
        "back again",
    ]
    mover.sector = (30, 30)
    assert await mover.barrier() == []
    assert [m.Message for m in messages(await bystander.barrier())] == ["at home"]
    assert [m.Message for m in messages(await watcher.barrier())] == ["visiting", "back again"]


# --- protocol errors ---------------------------------------------------------------------------
def _frame(payload: bytes) -> bytes:
    return CODEC.encode_frame(payload)


def _bad_checksum() -> bytes:
    frame = bytearray(_frame(pk.CS_CHAT_REQ_HEARTBEAT.build()))
    frame[4] ^= 0x5A
    return bytes(frame)


def _message(account_no: int, length: int, body: bytes) -> bytes:
    return _frame(
        pk.CS_CHAT_REQ_MESSAGE.type_bytes
        + account_no.to_bytes(8, "little")
        + length.to_bytes(2, "little")
        + body
    )


OFFENDER = 9
BAD_INPUT: dict[str, tuple[str, Callable[[], bytes]]] = {
    "off_grid_x": (
        "sector_off_grid",
        lambda: _frame(pk.CS_CHAT_REQ_SECTOR_MOVE.build(OFFENDER, GRID_SIZE, 0)),
    ),
    "off_grid_y": (
        "sector_off_grid",
        lambda: _frame(pk.CS_CHAT_REQ_SECTOR_MOVE.build(OFFENDER, 0, 0xFFFF)),
    ),
    "move_wrong_account": (
        "wrong_account",
        lambda: _frame(pk.CS_CHAT_REQ_SECTOR_MOVE.build(OFFENDER + 1, 1, 1)),
    ),
    "message_wrong_account": (
        "wrong_account",
        lambda: _frame(pk.CS_CHAT_REQ_MESSAGE.build(1, "not mine")),
    ),
    "length_over_frame": ("bad_message_length", lambda: _message(OFFENDER, 0xFFFF, b"a\0")),
    "length_under_frame": ("bad_message_length", lambda: _message(OFFENDER, 2, b"a\0b\0")),
    "odd_length": ("odd_message_length", lambda: _message(OFFENDER, 3, b"a\0b")),
    "too_long": ("message_too_long", lambda: _message(OFFENDER, 934, b"a\0" * 467)),
    "no_message_length": ("bad_size", lambda: _frame(pk.CS_CHAT_REQ_MESSAGE.build(9, "")[:-2])),
    "move_trailing": (
        "bad_size",
        lambda: _frame(pk.CS_CHAT_REQ_SECTOR_MOVE.build(OFFENDER, 1, 1) + b"\0"),
    ),
    "heartbeat_trailing": (
        "trailing_bytes",
        lambda: _frame(pk.CS_CHAT_REQ_HEARTBEAT.build() + b"\0"),
    ),
    "second_login": (
        "double_login",
        lambda: _frame(pk.CS_CHAT_REQ_LOGIN.build(OFFENDER, "ID", "NICK", KEY)),
    ),
    "bad_checksum": ("bad_checksum", _bad_checksum),
    "frame_too_long": ("too_long", lambda: bytes([119]) + (1025).to_bytes(2, "little") + b"\0\0"),
    "unknown_type": ("unknown_type", lambda: _frame(b"\x08\x00")),
    "server_side_type": ("unknown_type", lambda: _frame(pk.CS_CHAT_RES_LOGIN.build(1, 9))),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
async def test_each_protocol_error_closes_only_its_connection(chat: ChatServer, case: str) -> None:
    reason, make = BAD_INPUT[case]
    bystander = await player(chat, 1, (1, 1))
    offender = await player(chat, OFFENDER, (1, 2))
    offender.client.send_raw(make())
    await offender.client.wait_closed()
    assert chat.stats.errors[reason] == 1
    assert chat.stats.disconnects[f"protocol:{reason}"] == 1
    bystander.say("after")
    assert [m.Message for m in messages(await bystander.barrier())] == ["after"]
    await until(lambda: chat.snapshot()["players"] == 1)
    assert chat.grid.occupancy() == (1, 1, 1.0)


@pytest.mark.parametrize(
    "payload",
    [
        pk.CS_CHAT_REQ_SECTOR_MOVE.build(1, 1, 1),
        pk.CS_CHAT_REQ_MESSAGE.build(1, "early"),
        pk.CS_CHAT_REQ_HEARTBEAT.build(),
    ],
    ids=["move", "message", "heartbeat"],
)
async def test_packets_before_login_are_protocol_errors(chat: ChatServer, payload: bytes) -> None:
    c = await connect(chat)
    c.send(payload)
    await c.wait_closed()
    assert chat.stats.errors["before_login"] == 1


async def test_login_deadline_and_idle_timeout_drop_sessions_heartbeats_keep_one() -> None:
    server = await start_chat(ServerLimits(idle_timeout=1.0, login_deadline=1.0))
    try:
        silent = await connect(server)
        idle = await player(server, 1, (1, 1))
        alive = await player(server, 2, (1, 1))

        async def heartbeat_until_dropped() -> None:
            while not (idle.closed and silent.lost.is_set()):
                alive.client.send(pk.CS_CHAT_REQ_HEARTBEAT.build())
                await asyncio.sleep(0.2)  # pacing the heartbeats, not synchronisation

        await asyncio.wait_for(heartbeat_until_dropped(), 10)
        assert server.stats.disconnects["idle_timeout"] == 1
        assert server.stats.disconnects["login_deadline"] == 1
        alive.say("alive")
        assert [m.Message for m in messages(await alive.barrier())] == ["alive"]
    finally:
        await server.stop()


# --- flood control -------------------------------------------------------------------------------
async def test_a_flooding_player_is_muted_not_disconnected_and_the_mute_outlives_a_reconnect() -> (
    None
):
    server = await start_chat(flood_messages=3, flood_window=5.0, mute_seconds=1.0)
    try:
        flooder = await player(server, 1, (7, 7))
        neighbour = await player(server, 2, (8, 8))
        flooder.client.send_many([pk.CS_CHAT_REQ_MESSAGE.build(1, f"m{i}") for i in range(8)])
        said = ["m0", "m1", "m2"]
        assert [m.Message for m in messages(await flooder.barrier())] == said
        assert [m.Message for m in messages(await neighbour.barrier())] == said
        snap = server.snapshot()
        assert (snap["mutes"], snap["messages_muted"], snap["muted"]) == (1, 5, 1)
        # Reconnecting does not lift it: the mute is the account's.
        flooder.client.abort("test")
        flooder = await player(server, 1, (7, 7))
        flooder.say("again")
        assert await flooder.barrier() == []
        assert server.stats.errors == {}

        async def spoken_after_the_mute() -> list[bytes]:
            while True:
                await asyncio.sleep(0.2)  # the mute runs on the server's clock
                flooder.say("back")
                heard = await flooder.barrier()
                if heard:
                    return heard

        heard = await asyncio.wait_for(spoken_after_the_mute(), 5)
        assert [m.Message for m in messages(heard)] == ["back"]
        assert [m.Message for m in messages(await neighbour.barrier())] == ["back"]
    finally:
        await server.stop()


async def test_no_flood_limit_when_flood_messages_is_zero() -> None:
    server = await start_chat(flood_messages=0)
    try:
        p = await player(server, 1, (0, 0))
        p.client.send_many([pk.CS_CHAT_REQ_MESSAGE.build(1, str(i)) for i in range(200)])
        assert len(await p.barrier()) == 200
        assert server.snapshot()["mutes"] == 0
    finally:
        await server.stop()


# --- a slow reader -------------------------------------------------------------------------------
async def test_a_receiver_that_stops_reading_is_dropped_and_the_others_get_everything() -> None:
    server = await start_chat(ServerLimits(send_buffer_limit=64 * 1024), flood_messages=0)
    try:
        senders = [await player(server, n, (20, 20)) for n in (1, 2)]
        reader = await player(server, 3, (21, 21))
        striker = await player(server, 4, (19, 19))
        assert striker.client.transport is not None
        striker.client.transport.pause_reading()
        text = "x" * 400
        sent = 0
        while not server.stats.errors["send_buffer_full"]:
            for s in senders:
                s.client.send_many([pk.CS_CHAT_REQ_MESSAGE.build(s.account_no, text)] * 50)
                sent += 50
            await asyncio.sleep(0.01)  # let the server read and fan out
            assert sent < 100_000, "the striking reader was never dropped"
        for s in senders:  # every message sent has been handled
            assert len(await s.barrier()) == sent
        assert len(await reader.barrier()) == sent
        await until(lambda: server.snapshot()["players"] == 3)
        assert server.stats.disconnects["send_buffer_full"] == 1
    finally:
        await server.stop()


@pytest.mark.parametrize(
    "settings",
    [{"flood_messages": -1}, {"flood_messages": 1001}, {"flood_window": 0}, {"mute_seconds": -1}],
)
def test_chat_settings_are_checked(settings: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ChatConfig(**settings)  # type: ignore[arg-type]


def test_the_longest_message_is_the_one_whose_reply_fits_a_frame() -> None:
    config = ChatConfig()
    reply = pk.CS_CHAT_RES_MESSAGE.build(1, "ID", "NICK", "a" * (config.max_message_bytes // 2))
    assert len(reply) == config.codec.max_payload
