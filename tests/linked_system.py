"""A login server and linked game servers in this process, on a seeded
database, and the client steps of the linked flow: shared by the login-flow,
hardening and login-dummy tests."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serverlink.net.client import FrameClient, connect_frame_client
from serverlink.protocol import packets as pk
from serverlink.protocol.codec import NetCodec
from serverlink.protocol.framing import net_framing
from serverlink.protocol.status import ServerType
from serverlink.servers.game import GameConfig, GameServer
from serverlink.servers.link import LinkConfig
from serverlink.servers.login import LoginConfig, LoginServer
from serverlink.store import DEFAULT_TIMEOUT
from serverlink.store.admin import seed_db
from serverlink.store.config import StoreConfig

FRAMING = net_framing(NetCodec())


def read_keys(path: Path) -> dict[int, bytes]:
    """The ``accountno key`` lines of ``serverlink db seed --keys-out``."""
    pairs = (line.split() for line in path.read_text().splitlines())
    return {int(no): key.encode() for no, key in pairs}


async def start_login(
    db_url: str, db_timeout: float = DEFAULT_TIMEOUT, **overrides: object
) -> LoginServer:
    config = LoginConfig(
        **{
            "host": "127.0.0.1",
            "port": 0,
            "lan_host": "127.0.0.1",
            "lan_port": 0,
            "store": StoreConfig(db_url, timeout=db_timeout),
            **overrides,
        }  # type: ignore[arg-type]
    )
    login = LoginServer(config)
    await login.start()
    return login


def game_config(
    db_url: str, lan_port: int, db_timeout: float = DEFAULT_TIMEOUT, **overrides: object
) -> GameConfig:
    link = overrides.pop("link", None) or LinkConfig(login_servers=(("127.0.0.1", lan_port),))
    return GameConfig(
        host="127.0.0.1",
        port=0,
        store=StoreConfig(db_url, timeout=db_timeout),
        link=link,  # type: ignore[arg-type]
        **overrides,  # type: ignore[arg-type]
    )


@dataclass
class System:
    db_url: str
    keys_file: Path
    login: LoginServer
    games: list[GameServer] = field(default_factory=list)
    keys: dict[int, bytes] = field(init=False)

    def __post_init__(self) -> None:
        self.keys = read_keys(self.keys_file)

    @property
    def game(self) -> GameServer | None:
        return self.games[0] if self.games else None

    async def start_game(
        self, db_timeout: float = DEFAULT_TIMEOUT, **overrides: object
    ) -> GameServer:
        """Start a linked game server; return once the login server linked it and
        it settled its claims (logins go through from then on). Each gets its
        own status id unless ``server_id`` is given."""
        overrides.setdefault("server_id", 1 + 10 * len(self.games))
        game = GameServer(game_config(self.db_url, self.login.lan_port, db_timeout, **overrides))
        await game.start()
        self.games.append(game)
        await self.login.wait_links(game=len(self.games))
        assert game.link is not None
        await asyncio.wait_for(game.link.accepted.wait(), 10)
        return game

    async def stop_game(self, game: GameServer | None = None) -> None:
        game = game or self.games[0]
        await game.stop()
        self.games.remove(game)
        await self.login.wait_links(game=len(self.games))

    async def stop(self) -> None:
        for game in self.games:
            await game.stop()
        self.games.clear()
        await self.login.stop()

    def game_at(self, port: int) -> GameServer:
        return next(g for g in self.games if g.port == port)


async def start_system(
    db_url: str,
    keys_file: Path,
    accounts: int,
    games: int = 1,
    login_options: Mapping[str, Any] | None = None,
    **game_overrides: object,
) -> System:
    """Seed ``accounts`` accounts (keys to ``keys_file``), start the login server
    (``start_login(db_url, **login_options)``) and ``games`` game servers and
    wait until they are linked."""
    await seed_db(db_url, accounts, keys_out=keys_file)
    system = System(db_url, keys_file, await start_login(db_url, **(login_options or {})))
    for _ in range(games):
        await system.start_game(**game_overrides)
    return system


async def login_request(
    port: int, account_no: int, key: bytes
) -> tuple[pk.CsLoginResLogin, FrameClient]:
    """CS_LOGIN_REQ_LOGIN to the login server: its reply, and the connection."""
    c = await connect_frame_client(FRAMING, "127.0.0.1", port)
    c.send(pk.CS_LOGIN_REQ_LOGIN.build(account_no, key))
    return pk.CS_LOGIN_RES_LOGIN.parse(await c.recv()), c


async def game_login(
    port: int, account_no: int, key: bytes, version: int = 1
) -> tuple[pk.CsGameResLogin, FrameClient]:
    """CS_GAME_REQ_LOGIN to a game server: its reply, and the connection."""
    c = await connect_frame_client(FRAMING, "127.0.0.1", port)
    c.send(pk.CS_GAME_REQ_LOGIN.build(account_no, key, version))
    return pk.CS_GAME_RES_LOGIN.parse(await c.recv()), c


async def play(system: System, account_no: int) -> tuple[GameServer, FrameClient]:
    """The whole flow: login server, then the game server it names; the game
    server and the open game connection."""
    reply, c = await login_request(system.login.port, account_no, system.keys[account_no])
    assert reply.Status == 1, reply
    await c.wait_closed()
    status, g = await game_login(reply.GameServerPort, account_no, system.keys[account_no])
    assert status.Status == 1, status
    return system.game_at(reply.GameServerPort), g


def linked_games(login: LoginServer) -> int:
    return len(login.lan.linked(ServerType.GAME))
