"""A linked server's links to every login server of the deployment.

Login servers share nothing but the account database and the key store, so a
game or chat server links to each of them (``--login-server A:8090,B:8090``):
one ``LoginLink`` per login server, each with its own reconnect backoff, all
handing keys to one key store. Clients may then reach any login server (DNS,
a TCP load balancer); one that goes away costs only the logins in flight on it.
The server counts as linked (``accepted``) while at least one login server
has accepted it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypedDict, Unpack

from serverlink.logs import OutageLog
from serverlink.protocol.status import ServerType
from serverlink.servers.link import LinkConfig, Load, LoginLink
from serverlink.store.keys import KeyStore, open_key_store
from serverlink.store.url import mask_url

log = logging.getLogger("serverlink.link")


def linked_to(config: LinkConfig) -> str:
    """Where a server links to, for its start line."""
    servers = ", ".join(f"{host}:{port}" for host, port in config.login_servers)
    plural = "s" if len(config.login_servers) > 1 else ""
    return f"linked to the login server{plural} at {servers} (keys in {mask_url(config.key_store)})"


class LinkOptions(TypedDict, total=False):
    """What ``LoginLink`` takes beside its config: see there."""

    status_id: int
    on_accepted: Callable[[], Awaitable[None]] | None


class LoginLinks:
    def __init__(
        self,
        config: LinkConfig,
        server_type: ServerType,
        address: tuple[str, int],
        load: Callable[[], Load],
        keys: KeyStore | None = None,
        **options: Unpack[LinkOptions],
    ) -> None:
        """As ``LoginLink``; ``keys``: the key store (None: ``config.key_store``'s),
        closed by ``stop``."""
        self.store = keys if keys is not None else open_key_store(config.key_store)
        #: No new players (SIGUSR1, POST /drain): reported to the login servers,
        #: which place no one here; the players here stay.
        self.draining = False
        server_load = load

        def load_now() -> Load:
            now = server_load()
            return Load(now.players, now.capacity, now.draining or self.draining)

        self.key_store_log = OutageLog(log, "key store")
        self.links = [
            LoginLink(
                config,
                server_type,
                address,
                load=load_now,
                keys=self.store,
                login_server=login_server,
                key_store_log=self.key_store_log,
                **options,
            )
            for login_server in config.login_servers
        ]
        #: Set while at least one login server has accepted this server.
        self.accepted = asyncio.Event()
        for link in self.links:
            link.on_change = self._changed
        first = self.links[0]
        self.name = first.name
        self.keys = first.keys  # this server's scope of the store

    def _changed(self) -> None:
        if any(link.accepted.is_set() for link in self.links):
            self.accepted.set()
        else:
            self.accepted.clear()

    def start(self) -> None:
        for link in self.links:
            link.start()

    async def stop(self) -> None:
        await asyncio.gather(*(link.stop() for link in self.links))
        await self.store.close()

    def set_draining(self, draining: bool | None = None) -> bool:
        """Drain (True), serve again (False) or toggle (None); the login servers
        are told at once. Returns whether it drains now."""
        self.draining = not self.draining if draining is None else draining
        log.info(
            "%s: %s",
            self.name,
            "draining: no new players (existing ones stay)" if self.draining else "serving again",
        )
        for link in self.links:
            link.report_now()
        return self.draining

    @property
    def handoffs(self) -> int:
        return sum(link.handoffs for link in self.links)

    @property
    def silent_drops(self) -> int:
        return sum(link.silent_drops for link in self.links)

    async def take_key(self, account_no: int, key: bytes) -> bool:
        """As ``LoginLink.take_key`` (every link shares the store)."""
        return await self.links[0].take_key(account_no, key)

    def take_key_now(self, account_no: int, key: bytes) -> bool | None:
        """As ``LoginLink.take_key_now``."""
        return self.links[0].take_key_now(account_no, key)

    def snapshot(self) -> dict[str, Any]:
        up = sum(link.accepted.is_set() for link in self.links)
        return {
            "login_link": "up" if up else "down",
            "login_links_up": up,
            "login_links": len(self.links),
            "link_reconnects": sum(link.link.reconnects for link in self.links),
            "link_refusals": sum(link.link.refusals for link in self.links),
            "handoffs": self.handoffs,
            "key_store_outages": self.key_store_log.outages,
            "draining": int(self.draining),
            **self.keys.snapshot(),
        }
