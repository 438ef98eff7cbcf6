"""The standalone game (echo) server over real sockets: login, echo, heartbeat,
and every kind of bad input closing only the offending connection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from conftest import until
from serverlink.net.client import FrameClient, connect_frame_client
from serverlink.net.server import ServerLimits
from serverlink.net.session import SessionDeps
from serverlink.protocol import packets as pk
from serverlink.protocol.codec import NetCodec
from serverlink.protocol.framing import net_framing
from serverlink.protocol.status import GameLoginStatus
from serverlink.servers.game import EchoSession, GameConfig, GameServer

CODEC = NetCodec()
FRAMING = net_framing(CODEC)


async def start_game(**limits: object) -> GameServer:
    server = GameServer(GameConfig(port=0, limits=ServerLimits(**limits)))  # type: ignore[arg-type]
    await server.start()
    return server


@pytest.fixture
async def game() -> AsyncIterator[GameServer]:
    server = await start_game()
    yield server
    await server.stop()


async def client(server: GameServer) -> FrameClient:
    return await connect_frame_client(FRAMING, "127.0.0.1", server.port)


async def logged_in(server: GameServer, account_no: int = 7) -> FrameClient:
    c = await client(server)
    c.send(pk.CS_GAME_REQ_LOGIN.build(account_no, b"k" * 64, 1))
    reply = pk.CS_GAME_RES_LOGIN.parse(await c.recv())
    assert reply == (GameLoginStatus.OK, account_no)
    return c


async def assert_echoes(c: FrameClient, account_no: int, ticks: range) -> None:
    c.send_many([pk.CS_GAME_REQ_ECHO.build(account_no, t) for t in ticks])
    for t in ticks:
        assert pk.CS_GAME_RES_ECHO.parse(await c.recv()) == (account_no, t)


async def test_login_then_pipelined_echoes_come_back_in_order(game: GameServer) -> None:
    c = await logged_in(game, 42)
    await assert_echoes(c, 42, range(1000, 1200))
    assert game.game_stats.logins == 1
    assert game.stats.packets_in == 201 and game.stats.packets_out == 201


async def test_mixed_read_of_echoes_and_heartbeat_takes_generic_path(game: GameServer) -> None:
    c = await logged_in(game, 3)
    frames = [CODEC.encode_frame(pk.CS_GAME_REQ_ECHO.build(3, t)) for t in range(5)]
    frames.insert(2, CODEC.encode_frame(pk.CS_GAME_REQ_HEARTBEAT.build()))
    c.send_raw(b"".join(frames))
    for t in range(5):
        assert pk.CS_GAME_RES_ECHO.parse(await c.recv()) == (3, t)
    await assert_echoes(c, 3, range(5, 8))


class RecordingTransport:
    """Stands in for the socket of a session fed directly: keeps what it writes."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def get_extra_info(self, name: str) -> object:
        return ("127.0.0.1", 1) if name == "peername" else None

    def set_write_buffer_limits(self, high: int) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    abort = close


def fed_session() -> tuple[EchoSession, RecordingTransport]:
    server = GameServer(GameConfig(port=0))
    session = EchoSession(SessionDeps(FRAMING, server.stats), server)
    transport = RecordingTransport()
    session.connection_made(transport)  # type: ignore[arg-type]
    return session, transport


def test_frames_split_at_every_byte_boundary_are_reassembled() -> None:
    # Loopback TCP cannot be made to deliver one byte per read: the session is
    # fed the reads directly, one byte each, then every two-read split.
    stream = CODEC.encode_frame(pk.CS_GAME_REQ_LOGIN.build(9, b"x" * 64, 1)) + b"".join(
        CODEC.encode_frame(pk.CS_GAME_REQ_ECHO.build(9, t)) for t in range(3)
    )
    expected = [pk.CS_GAME_RES_LOGIN.build(1, 9)] + [
        pk.CS_GAME_RES_ECHO.build(9, t) for t in range(3)
    ]
    splits = [[stream[i : i + 1] for i in range(len(stream))]]
    splits += [[stream[:k], stream[k:]] for k in range(1, len(stream))]
    for reads in splits:
        session, transport = fed_session()
        for read in reads:
            session.data_received(read)
        assert not transport.closed
        assert FRAMING.split(bytes(transport.written), 0)[0] == expected


def _bad_checksum() -> bytes:
    frame = bytearray(CODEC.encode_frame(pk.CS_GAME_REQ_ECHO.build(1, 1)))
    frame[4] ^= 0xFF
    return bytes(frame)


def _bad_code() -> bytes:
    return b"\x76" + CODEC.encode_frame(pk.CS_GAME_REQ_ECHO.build(1, 1))[1:]


def _too_long() -> bytes:
    return bytes([119]) + (CODEC.max_payload + 1).to_bytes(2, "little") + b"\0\0"


BAD_INPUT = {
    "bad_checksum": lambda: _bad_checksum(),
    "bad_code": lambda: _bad_code(),
    "too_long": lambda: _too_long(),
    "unknown_type": lambda: CODEC.encode_frame(b"\x39\x30" + b"\0" * 8),
    "no_type": lambda: CODEC.encode_frame(b"\x01"),
    "bad_size": lambda: CODEC.encode_frame(pk.CS_GAME_REQ_ECHO.build(1, 1)[:-1]),
    "trailing_bytes": lambda: CODEC.encode_frame(pk.CS_GAME_REQ_HEARTBEAT.build() + b"\0"),
    "double_login": lambda: CODEC.encode_frame(pk.CS_GAME_REQ_LOGIN.build(5, b"k" * 64, 1)),
}


@pytest.mark.parametrize("reason", sorted(BAD_INPUT))
async def test_bad_input_drops_only_that_connection_and_is_counted(
    game: GameServer, reason: str
) -> None:
    bystander = await logged_in(game, 1)
    offender = await logged_in(game, 5)
    offender.send_raw(BAD_INPUT[reason]())
    await offender.wait_closed()
    assert game.stats.errors[reason] == 1
    assert game.stats.disconnects[f"protocol:{reason}"] == 1
    await assert_echoes(bystander, 1, range(10))
    assert game.stats.sessions == 1


async def test_echo_before_login_is_a_protocol_error(game: GameServer) -> None:
    c = await client(game)
    c.send(pk.CS_GAME_REQ_ECHO.build(1, 1))
    await c.wait_closed()
    assert game.stats.errors["echo_before_login"] == 1


async def test_session_cap_refuses_the_connection_over_it() -> None:
    server = await start_game(max_sessions=2)
    try:
        first = await logged_in(server, 1)
        second = await logged_in(server, 2)
        third = await client(server)
        await third.wait_closed()
        assert server.stats.refused_over_cap == 1
        await assert_echoes(first, 1, range(3))
        await assert_echoes(second, 2, range(3))
    finally:
        await server.stop()


async def test_idle_session_is_dropped_and_heartbeats_keep_one_alive() -> None:
    server = await start_game(idle_timeout=1.0)
    try:
        idle = await logged_in(server, 1)
        alive = await logged_in(server, 2)

        async def heartbeat_until_idle_is_dropped() -> None:
            while not idle.lost.is_set():
                alive.send(pk.CS_GAME_REQ_HEARTBEAT.build())
                await asyncio.sleep(0.2)  # pacing the heartbeats, not synchronisation

        await asyncio.wait_for(heartbeat_until_idle_is_dropped(), 10)
        assert idle.close_reason in ("peer_closed", "peer_reset")
        assert server.stats.disconnects["idle_timeout"] == 1
        assert not alive.lost.is_set()
        await assert_echoes(alive, 2, range(3))
    finally:
        await server.stop()


async def test_client_that_stops_reading_is_dropped_at_the_send_buffer_limit() -> None:
    server = await start_game(send_buffer_limit=64 * 1024)
    try:
        bystander = await logged_in(server, 1)
        reader_on_strike = await logged_in(server, 2)
        assert reader_on_strike.transport is not None
        reader_on_strike.transport.pause_reading()
        chunk = b"".join(CODEC.encode_frame(pk.CS_GAME_REQ_ECHO.build(2, t)) for t in range(2000))
        while not reader_on_strike.lost.is_set():
            reader_on_strike.send_raw(chunk)
            await asyncio.sleep(0)
            if server.stats.errors["send_buffer_full"]:
                break
        await until(lambda: server.stats.sessions == 1)
        assert server.stats.errors["send_buffer_full"] == 1
        await assert_echoes(bystander, 1, range(3))
    finally:
        await server.stop()


async def test_stop_closes_every_session_gracefully() -> None:
    server = await start_game()
    clients = [await logged_in(server, n) for n in range(1, 6)]
    await server.stop()
    for c in clients:
        await c.wait_closed()
    assert server.stats.disconnects["server_shutdown"] == 5
    with pytest.raises(OSError):
        await client(server)


async def test_a_handler_bug_drops_only_that_connection() -> None:
    from serverlink.net.server import SessionServer
    from serverlink.net.session import Session, handles_raw

    class Buggy(Session):
        @handles_raw(pk.CS_CHAT_REQ_LOGIN)  # type 1
        def broken(self, payload: bytes) -> None:
            raise RuntimeError("handler bug")

        @handles_raw(pk.CS_CHAT_RES_LOGIN)  # type 2
        def echo(self, payload: bytes) -> None:
            self.send(payload)

    server = SessionServer("t", Buggy, FRAMING, "127.0.0.1", 0)
    await server.start()
    try:
        good = await connect_frame_client(FRAMING, "127.0.0.1", server.port)
        bad = await connect_frame_client(FRAMING, "127.0.0.1", server.port)
        bad.send(b"\x01\x00")
        await bad.wait_closed()
        assert server.stats.errors["internal_error"] == 1
        good.send(b"\x02\x00hi")
        assert await good.recv() == b"\x02\x00hi"
    finally:
        await server.stop()
