"""What every client-facing server that a login server can link shares (game,
chat): the listener of its sessions, their counters, the links to the login
servers, the logins whose key is being taken, draining, and the common part of
its snapshot. A server is this plus its handlers and its own state: the game
server adds the accounts it claims, the chat server its grid.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Protocol

from serverlink.net.server import ServerLimits, SessionServer
from serverlink.net.session import ProtocolViolation, Session, SessionDeps
from serverlink.protocol.codec import NetCodec
from serverlink.protocol.framing import net_framing
from serverlink.protocol.status import ServerType
from serverlink.servers.link import KeyedLogins, LinkConfig, Load
from serverlink.servers.links import LoginLinks


class LinkableConfig(Protocol):
    """The fields of a linkable server's config (GameConfig, ChatConfig)."""

    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def codec(self) -> NetCodec: ...
    @property
    def limits(self) -> ServerLimits: ...
    @property
    def reuse_port(self) -> bool: ...
    @property
    def link(self) -> LinkConfig | None: ...


class PlayerSession(Session):
    """A client session of a linkable server: its account once logged in, and
    whether its login is being checked (a second login meanwhile, or after,
    is a protocol error)."""

    __slots__ = ("account_no", "login_pending")

    def __init__(self, deps: SessionDeps) -> None:
        super().__init__(deps)
        self.account_no: int | None = None
        self.login_pending = False  # linked mode: key being taken (status being written)

    def first_login(self, request: str) -> None:
        if self.account_no is not None or self.login_pending:
            raise ProtocolViolation("double_login", f"second {request} on one connection")


class LinkableServer:
    name: ClassVar[str]
    server_type: ClassVar[ServerType]

    def __init__(self, config: LinkableConfig, session: Callable[[SessionDeps], Session]) -> None:
        self.listener = SessionServer(
            self.name,
            session,
            net_framing(config.codec),
            config.host,
            config.port,
            config.limits,
            reuse_port=config.reuse_port,
        )
        self.stats = self.listener.stats
        self._link_config = config.link
        self._max_sessions = config.limits.max_sessions
        self._address = config.host
        self.link: LoginLinks | None = None
        # Linked logins whose key (and, on a game server, status) is being checked.
        self.keyed_logins = KeyedLogins(self.name, self.stats)

    @property
    def port(self) -> int:
        return self.listener.port

    def player_count(self) -> int:
        """Players logged in here: the load reported to the login servers."""
        raise NotImplementedError

    def start_links(
        self, status_id: int, on_accepted: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        """Link to the login servers (linked mode), once the port is bound."""
        if self._link_config is None:
            return
        self.link = LoginLinks(
            self._link_config,
            self.server_type,
            (self._address, self.port),
            status_id=status_id,
            load=lambda: Load(self.player_count(), self._max_sessions),
            on_accepted=on_accepted,
        )
        self.link.start()

    async def stop_links(self) -> None:
        if self.link is not None:
            await self.link.stop()

    def set_draining(self, draining: bool | None = None) -> bool:
        """``LoginLinks.set_draining`` (SIGUSR1, POST /drain); standalone: never."""
        return self.link.set_draining(draining) if self.link is not None else False

    def base_snapshot(self) -> dict[str, Any]:
        """The figures every linkable server reports; the server adds its own."""
        snap: dict[str, Any] = self.stats.snapshot()
        snap.update(self.listener.load())
        snap["max_sessions"] = self._max_sessions
        snap["login_fail"] = self.keyed_logins.refused
        if self.link is not None:
            snap.update(self.link.snapshot())
        return snap
