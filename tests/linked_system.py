"""A login server and a linked game server in this process, on a seeded
database: shared by the login-flow and the login-dummy tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from serverlink.servers.game import GameConfig, GameServer
from serverlink.servers.link import LinkConfig
from serverlink.servers.login import LoginConfig, LoginServer
from serverlink.store import DEFAULT_TIMEOUT
from serverlink.store.admin import seed_db
from serverlink.store.config import StoreConfig


def read_keys(path: Path) -> dict[int, bytes]:
    """The ``accountno key`` lines of ``serverlink db seed --keys-out``."""
    pairs = (line.split() for line in path.read_text().splitlines())
    return {int(no): key.encode() for no, key in pairs}


async def start_login(
    db_url: str, db_timeout: float = DEFAULT_TIMEOUT, **overrides: object
) -> LoginServer:
    config = LoginConfig(
        host="127.0.0.1",
        port=0,
        lan_host="127.0.0.1",
        lan_port=0,
        store=StoreConfig(db_url, timeout=db_timeout),
        **overrides,  # type: ignore[arg-type]
    )
    login = LoginServer(config)
    await login.start()
    return login


@dataclass
class System:
    db_url: str
    keys_file: Path
    login: LoginServer
    game: GameServer | None = None
    keys: dict[int, bytes] = field(init=False)

    def __post_init__(self) -> None:
        self.keys = read_keys(self.keys_file)

    async def start_game(
        self, db_timeout: float = DEFAULT_TIMEOUT, **overrides: object
    ) -> GameServer:
        config = GameConfig(
            host="127.0.0.1",
            port=0,
            store=StoreConfig(self.db_url, timeout=db_timeout),
            link=LinkConfig(login_server=("127.0.0.1", self.login.lan_port)),
            **overrides,  # type: ignore[arg-type]
        )
        self.game = GameServer(config)
        await self.game.start()
        await self.login.wait_links(game=1)
        return self.game

    async def stop_game(self) -> None:
        assert self.game is not None
        await self.game.stop()
        await self.login.wait_links(game=0)
        self.game = None

    async def stop(self) -> None:
        if self.game is not None:
            await self.game.stop()
        await self.login.stop()


async def start_system(
    db_url: str, keys_file: Path, accounts: int, **game_overrides: object
) -> System:
    """Seed ``accounts`` accounts (keys to ``keys_file``), start both servers and
    wait until the game server is linked."""
    await seed_db(db_url, accounts, keys_out=keys_file)
    system = System(db_url, keys_file, await start_login(db_url))
    await system.start_game(**game_overrides)
    return system
