"""Peers for the LAN side: a hand-made link that registers like a game server
would (or like an attacker would), and a TCP proxy whose path can be cut
without a FIN. Real sockets throughout."""

from __future__ import annotations

import asyncio
import contextlib
import socket

from serverlink.net.client import FrameClient
from serverlink.net.session import SessionDeps
from serverlink.net.stats import NetStats
from serverlink.protocol import packets as pk
from serverlink.protocol.framing import lan_framing
from serverlink.protocol.status import ServerType

LAN = lan_framing()


async def fake_link(
    port: int,
    name: str = "fake@127.0.0.1:1",
    server_type: int = ServerType.GAME,
    *,
    status_id: int | None = None,
    heartbeat_ms: int = 60_000,
    host: str = "127.0.0.1",
) -> FrameClient:
    """Connect to a login server's LAN port at ``host`` (the connection comes
    from that address too) and register; with ``status_id`` also report like a
    serverlink server."""
    loop = asyncio.get_running_loop()
    deps = SessionDeps(LAN, NetStats())
    _, c = await loop.create_connection(lambda: FrameClient(deps), host, port, local_addr=(host, 0))
    c.send(pk.SS_LOGINSERVER_LOGIN.build(server_type, name))
    if status_id is not None:
        c.send(pk.SS_LINK_STATUS.build(status_id, 0, 100, 0, heartbeat_ms))
    return c


async def answer_handoffs(link: FrameClient) -> None:
    """Answer every hand-off the way a game server does (until the link closes)."""
    with contextlib.suppress(TimeoutError, asyncio.CancelledError):
        while True:
            payload = await link.recv(timeout=3600)
            if pk.packet_type(payload) == pk.SS_REQ_NEW_CLIENT_LOGIN.type:
                handoff = pk.SS_REQ_NEW_CLIENT_LOGIN.parse(payload)
                link.send(pk.SS_RES_NEW_CLIENT_LOGIN.build(handoff.AccountNo, handoff.Parameter))


def non_loopback_ip() -> str | None:
    """An IPv4 address of this machine that is not loopback (connections to it
    stay on this machine), or None."""
    import psutil

    for addresses in psutil.net_if_addrs().values():
        for a in addresses:
            if a.family == socket.AF_INET and not a.address.startswith("127."):
                return str(a.address)
    return None


class TcpProxy:
    """Forwards connections to ``target``. ``blackhole()`` stops forwarding in
    both directions while every socket stays open: to both ends the path is cut
    without a FIN or RST, as when a cable or a firewall drops it. ``heal()``
    forwards again (for new connections and the old ones)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.connections = 0
        self._forwarding = asyncio.Event()
        self._forwarding.set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def blackhole(self) -> None:
        self._forwarding.clear()

    def heal(self) -> None:
        self._forwarding.set()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in self._writers:
            w.close()
        for t in self._tasks:
            t.cancel()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers += [writer, up_writer]
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.get_running_loop().create_task(self._pipe(src, dst))
            self._tasks.add(task)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await src.read(65536):
                await self._forwarding.wait()  # a blackhole swallows nothing: it holds
                dst.write(data)
                await dst.drain()
        dst.close()
