"""The login link is a component any server composes: a minimal chat-type
server (ServerType 2), built here from ``LoginLink`` and the network core
alone, links to the login server, receives a hand-off and logs a client in
with the handed-over key, over real sockets."""

from __future__ import annotations

import asyncio
from pathlib import Path

from linked_system import FRAMING, login_request, read_keys, start_login
from serverlink.net.client import connect_frame_client
from serverlink.net.server import SessionServer
from serverlink.net.session import Session, SessionDeps, handles
from serverlink.protocol import packets as pk
from serverlink.protocol.status import ChatLoginStatus, LoginStatus, ServerType
from serverlink.servers.link import LinkConfig, LoginLink
from serverlink.store.admin import seed_db


class MiniChatSession(Session):
    __slots__ = ("link",)

    def __init__(self, deps: SessionDeps, link: LoginLink) -> None:
        super().__init__(deps)
        self.link = link

    @handles(pk.CS_CHAT_REQ_LOGIN)
    def on_login(self, request: pk.CsChatReqLogin) -> None:
        async def check() -> None:
            ok = await self.link.take_key(request.AccountNo, request.SessionKey)
            status = ChatLoginStatus.OK if ok else ChatLoginStatus.FAIL
            self.send(pk.CS_CHAT_RES_LOGIN.build(status, request.AccountNo))

        asyncio.get_running_loop().create_task(check())


async def test_a_chat_type_server_built_from_the_link_component_logs_a_client_in(
    sqlite_url: str, tmp_path: Path
) -> None:
    await seed_db(sqlite_url, 2, keys_out=tmp_path / "keys.txt")
    keys = read_keys(tmp_path / "keys.txt")
    login = await start_login(sqlite_url)
    link: LoginLink | None = None
    listener: SessionServer | None = None
    try:
        holder: list[LoginLink] = []
        listener = SessionServer(
            "chat", lambda deps: MiniChatSession(deps, holder[0]), FRAMING, "127.0.0.1", 0
        )
        await listener.start()
        link = LoginLink(
            LinkConfig(login_servers=(("127.0.0.1", login.lan_port),), server_name="chat"),
            ServerType.CHAT,
            ("127.0.0.1", listener.port),
        )
        holder.append(link)
        link.start()
        await asyncio.wait_for(link.accepted.wait(), 10)
        assert [s.type for s in login.lan.links] == [ServerType.CHAT]

        # A chat-only deployment: Status 1, the chat address, no game address.
        reply, _ = await login_request(login.port, 1, keys[1])
        assert reply.Status == LoginStatus.OK
        assert (reply.ChatServerIP, reply.ChatServerPort) == ("127.0.0.1", listener.port)
        assert (reply.GameServerIP, reply.GameServerPort) == ("", 0)
        assert link.handoffs == 1

        client = await connect_frame_client(FRAMING, "127.0.0.1", listener.port)
        client.send(pk.CS_CHAT_REQ_LOGIN.build(1, "ID_1", "NICK_1", keys[1]))
        assert pk.CS_CHAT_RES_LOGIN.parse(await client.recv()) == (ChatLoginStatus.OK, 1)
        client.send(pk.CS_CHAT_REQ_LOGIN.build(1, "ID_1", "NICK_1", keys[1]))
        assert pk.CS_CHAT_RES_LOGIN.parse(await client.recv()) == (ChatLoginStatus.FAIL, 1)
    finally:
        if link is not None:
            await link.stop()
        if listener is not None:
            await listener.stop()
        await login.stop()
