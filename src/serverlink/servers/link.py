"""The link to a login server, composed by every linked server (game, chat).

``LoginLink`` keeps a LAN connection to the login server up (reconnecting with
the shared retry policy), registers as a server type and name
(SS_LOGINSERVER_LOGIN), stores each handed-over key for its account in a
``KeyStore`` with the login timeout as its time-to-live and answers the
hand-off (SS_RES_NEW_CLIENT_LOGIN with the same Parameter). The server's own
login handler asks ``take_key``: a key works once, and only for its account.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from serverlink.net.client import ReconnectingLink
from serverlink.net.session import Session, SessionDeps, handles
from serverlink.protocol.framing import lan_framing
from serverlink.protocol.packets import (
    SS_LOGINSERVER_LOGIN,
    SS_REQ_NEW_CLIENT_LOGIN,
    SS_RES_NEW_CLIENT_LOGIN,
    SsReqNewClientLogin,
)
from serverlink.protocol.status import ServerType
from serverlink.store.keys import KeyStore, MemoryKeyStore

log = logging.getLogger("serverlink.link")

#: SS_LOGINSERVER_LOGIN.ServerName holds 32 WCHARs, NUL included.
SERVER_NAME_UNITS = 31


@dataclass(frozen=True, slots=True)
class LinkConfig:
    """Where a linked server registers, and as what."""

    #: The login server's LAN address.
    login_server: tuple[str, int] = ("127.0.0.1", 8090)
    #: Name registered with the login server (the address is appended: name@ip:port).
    server_name: str = "game"
    #: Address announced to the login server for clients; None: the listener's.
    public_addr: tuple[str, int] | None = None
    #: Seconds a handed-over key waits for its client (the login timeout).
    key_ttl: float = 60.0


def announced_name(name: str, host: str, port: int) -> str:
    """``name@ip:port`` cut to fit ServerName: the login server tells clients
    that address (a wildcard listen address is announced as loopback)."""
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1"
    return f"{name}@{host}:{port}"[:SERVER_NAME_UNITS]


class LoginLinkSession(Session):
    """The linked server's side of the LAN connection to the login server."""

    __slots__ = ("link",)

    def __init__(self, deps: SessionDeps, link: LoginLink) -> None:
        super().__init__(deps)
        self.link = link

    @handles(SS_REQ_NEW_CLIENT_LOGIN)
    def on_handoff(self, handoff: SsReqNewClientLogin) -> None:
        self.link.on_handoff(self, handoff)


class LoginLink:
    def __init__(
        self,
        config: LinkConfig,
        server_type: ServerType,
        address: tuple[str, int],
        keys: KeyStore | None = None,
    ) -> None:
        """``address``: where this server listens for clients (announced unless
        ``config.public_addr`` says otherwise)."""
        self.config = config
        self.server_type = server_type
        self.keys = keys if keys is not None else MemoryKeyStore()
        self.name = announced_name(config.server_name, *(config.public_addr or address))
        host, port = config.login_server
        self.handoffs = 0
        self._pending: set[asyncio.Task[None]] = set()
        self.link = ReconnectingLink(
            f"{server_type.name.lower()}->login",
            lambda deps: LoginLinkSession(deps, self),
            lan_framing(),
            host,
            port,
            self._on_up,
        )

    @property
    def connected(self) -> asyncio.Event:
        return self.link.connected

    def start(self) -> None:
        self.link.start()

    async def stop(self) -> None:
        await self.link.stop()
        for task in list(self._pending):
            task.cancel()
        await self.keys.close()

    def _on_up(self, session: Session) -> None:
        session.send(SS_LOGINSERVER_LOGIN.build(self.server_type, self.name))
        log.info("registered with the login server as %r", self.name)

    def on_handoff(self, session: Session, handoff: SsReqNewClientLogin) -> None:
        self.handoffs += 1
        if self.keys.put_now(handoff.AccountNo, handoff.SessionKey, self.config.key_ttl):
            # A store in this process: stored and answered within this read.
            session.send(SS_RES_NEW_CLIENT_LOGIN.build(handoff.AccountNo, handoff.Parameter))
            return
        task = asyncio.get_running_loop().create_task(self._store_and_answer(session, handoff))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _store_and_answer(self, session: Session, handoff: SsReqNewClientLogin) -> None:
        await self.keys.put(handoff.AccountNo, handoff.SessionKey, self.config.key_ttl)
        session.send(SS_RES_NEW_CLIENT_LOGIN.build(handoff.AccountNo, handoff.Parameter))

    async def take_key(self, account_no: int, key: bytes) -> bool:
        """True (once) if ``key`` was handed over for ``account_no`` and is live."""
        return await self.keys.take(account_no, key)

    def snapshot(self) -> dict[str, Any]:
        return {
            "login_link": "up" if self.link.connected.is_set() else "down",
            "link_reconnects": self.link.reconnects,
            "handoffs": self.handoffs,
            **self.keys.snapshot(),
        }
