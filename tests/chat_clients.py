"""Chat clients for the tests: a chat server in this process (standalone, or
linked to a login server on a seeded database) and the client steps (login,
move, message) over real sockets, each answer awaited."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

from linked_system import read_keys, start_login
from serverlink.net.client import FrameClient, connect_frame_client
from serverlink.net.server import ServerLimits
from serverlink.protocol import packets as pk
from serverlink.protocol.codec import NetCodec
from serverlink.protocol.framing import net_framing
from serverlink.protocol.status import ChatLoginStatus
from serverlink.servers.chat import ChatConfig, ChatServer
from serverlink.servers.link import LinkConfig
from serverlink.servers.login import LoginServer
from serverlink.store.admin import seed_db

CODEC = NetCodec()
FRAMING = net_framing(CODEC)
KEY = b"k" * 64


async def start_chat(limits: ServerLimits | None = None, **overrides: object) -> ChatServer:
    config = ChatConfig(port=0, limits=limits or ServerLimits(), **overrides)  # type: ignore[arg-type]
    server = ChatServer(config)
    await server.start()
    return server


@dataclass
class Player:
    """A logged-in chat client and what the test knows of it."""

    account_no: int
    client: FrameClient
    sector: tuple[int, int] | None = None

    @property
    def closed(self) -> bool:
        return self.client.lost.is_set()

    async def move(self, x: int, y: int) -> list[bytes]:
        """Move and wait for the answer; the payloads that came before it."""
        self.client.send(pk.CS_CHAT_REQ_SECTOR_MOVE.build(self.account_no, x, y))
        before = await until_move_reply(self.client, (self.account_no, x, y))
        self.sector = (x, y)
        return before

    async def barrier(self) -> list[bytes]:
        """Everything addressed to this player so far (a move to its own sector
        is answered after every message sent to it before the move)."""
        assert self.sector is not None
        return await self.move(*self.sector)

    def say(self, text: str) -> None:
        self.client.send(pk.CS_CHAT_REQ_MESSAGE.build(self.account_no, text))


async def until_move_reply(client: FrameClient, expected: tuple[int, int, int]) -> list[bytes]:
    before: list[bytes] = []
    while True:
        payload = await client.recv()
        if pk.packet_type(payload) == pk.CS_CHAT_RES_SECTOR_MOVE.type:
            assert pk.CS_CHAT_RES_SECTOR_MOVE.parse(payload) == expected
            return before
        before.append(payload)


async def connect(server: ChatServer) -> FrameClient:
    return await connect_frame_client(FRAMING, "127.0.0.1", server.port)


async def login(
    port: int,
    account_no: int,
    key: bytes = KEY,
    user_id: str | None = None,
    nickname: str | None = None,
) -> tuple[int, FrameClient]:
    """CS_CHAT_REQ_LOGIN: the Status of the reply, and the connection."""
    c = await connect_frame_client(FRAMING, "127.0.0.1", port)
    c.send(
        pk.CS_CHAT_REQ_LOGIN.build(
            account_no, user_id or f"ID_{account_no}", nickname or f"NICK_{account_no}", key
        )
    )
    reply = pk.CS_CHAT_RES_LOGIN.parse(await c.recv())
    assert reply.AccountNo == account_no
    return reply.Status, c


async def player(server: ChatServer, account_no: int, sector: tuple[int, int] | None) -> Player:
    status, c = await login(server.port, account_no)
    assert status == ChatLoginStatus.OK
    p = Player(account_no, c)
    if sector is not None:
        assert await p.move(*sector) == []
    return p


def messages(payloads: list[bytes]) -> list[pk.CsChatResMessage]:
    return [pk.CS_CHAT_RES_MESSAGE.parse(p) for p in payloads]


@dataclass
class ChatSystem:
    login: LoginServer
    chat: ChatServer
    keys_file: Path
    keys: dict[int, bytes] = field(init=False)

    def __post_init__(self) -> None:
        self.keys = read_keys(self.keys_file)

    async def stop(self) -> None:
        await self.chat.stop()
        await self.login.stop()


async def start_chat_system(
    db_url: str,
    tmp_path: Path,
    accounts: int,
    key_store: str = "memory",
    **login_overrides: object,
) -> ChatSystem:
    """Seed ``accounts`` accounts, start a login server and a chat server linked
    to it, both on ``key_store``; return once the login server accepted the link."""
    await seed_db(db_url, accounts, keys_out=tmp_path / "keys.txt")
    login_server = await start_login(db_url, key_store=key_store, **login_overrides)
    chat = ChatServer(
        ChatConfig(
            port=0,
            link=LinkConfig(
                login_servers=(("127.0.0.1", login_server.lan_port),),
                server_name="chat",
                heartbeat=0.2,
                key_store=key_store,
            ),
        )
    )
    await chat.start()
    assert chat.link is not None
    await asyncio.wait_for(chat.link.accepted.wait(), 10)
    return ChatSystem(login_server, chat, tmp_path / "keys.txt")
