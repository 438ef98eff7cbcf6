"""The monitoring server's core: who reports, what they reported last, and
the relay of every figure to the logged-in monitoring tools.

LAN side (``ReportingSession``, LAN frame): a server logs in with
SS_MONITOR_LOGIN (its ServerNo, 1-255) and sends SS_MONITOR_DATA_UPDATE; a
DataType that is not one of its kind's figures (``monitor.figures``) is a
protocol error. Who may connect: ``servers.trust.peer_trusted`` (the login
server's rule), checked before any byte is read.

Tool side (``ToolSession``, Net frame with the monitoring code and keys):
CS_MONITOR_TOOL_REQ_LOGIN with the configured 32-byte key is answered Status
1; any other key Status 0, then the connection is closed.

Relay: each update is encoded once as a CS_MONITOR_TOOL_DATA_UPDATE frame
(the same bytes for every tool), queued, and the frames of one event-loop
turn go to each tool in one write. A tool that does not read is dropped by
its send-buffer limit, never waited for.

Off: a server whose connection closes, or that sent nothing for
``silent_after`` seconds (then its connection is dropped), is off: its "on"
figure goes to the tools as 0 at once and then every second while it stays off.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections import Counter
from collections.abc import Collection

from serverlink.monitor.figures import MACHINE, MACHINE_NO, Kind, kind_of
from serverlink.net.session import ProtocolViolation, Session, SessionDeps, handles
from serverlink.protocol.framing import Framing
from serverlink.protocol.packets import (
    CS_MONITOR_TOOL_DATA_UPDATE,
    CS_MONITOR_TOOL_REQ_LOGIN,
    CS_MONITOR_TOOL_RES_LOGIN,
    SS_MONITOR_DATA_UPDATE,
    SS_MONITOR_LOGIN,
    CsMonitorToolReqLogin,
    SsMonitorDataUpdate,
    SsMonitorLogin,
)
from serverlink.servers.trust import peer_trusted

log = logging.getLogger("serverlink.monitor")

#: The original monitoring tool's LOGIN_KEY.
ORIGINAL_LOGIN_KEY = "P09djiwl34jWJV%@oW@#o0d82jvk#cjz"
MAX_SERVER_NO = 255  # CS_MONITOR_TOOL_DATA_UPDATE.ServerNo is a BYTE


class ServerState:
    """One ServerNo as the monitoring server knows it."""

    __slots__ = ("heard", "kind", "on", "peer", "server_no", "session", "values")

    def __init__(self, server_no: int, kind: Kind | None) -> None:
        self.server_no = server_no
        self.kind = kind
        self.session: ReportingSession | None = None
        self.peer = ""
        self.on = False
        self.heard = 0.0  # monotonic time of its last update
        #: DataType -> (DataValue, TimeStamp) of its latest update of that figure.
        self.values: dict[int, tuple[int, int]] = {}

    def describe(self) -> str:
        kind = self.kind.name if self.kind is not None else "unknown"
        return f"{kind} server {self.server_no} ({self.peer or 'not connected'})"


class ReportingSession(Session):
    """A server on the monitoring server's LAN port."""

    __slots__ = ("core", "state")

    def __init__(self, deps: SessionDeps, core: MonitorCore) -> None:
        super().__init__(deps)
        self.core = core
        self.state: ServerState | None = None

    def on_open(self) -> None:
        ip = self.peer.rpartition(":")[0].strip("[]")
        if not self.core.allowed(ip):
            self.core.counters["refused_links"] += 1
            self.stats.report(
                "not_allowed",
                "%s: report link refused: not a trusted address (--lan-allow IP, or "
                "--lan-allow-any; with neither, loopback only)",
                self.peer,
            )
            self.abort("not_allowed")

    @handles(SS_MONITOR_LOGIN)
    def on_login(self, request: SsMonitorLogin) -> None:
        if self.state is not None:
            raise ProtocolViolation("double_login", "second SS_MONITOR_LOGIN on one connection")
        self.state = self.core.server_login(self, request.ServerNo)
        self.authenticated = True

    @handles(SS_MONITOR_DATA_UPDATE)
    def on_update(self, update: SsMonitorDataUpdate) -> None:
        if self.state is None:
            raise ProtocolViolation(
                "not_logged_in", "SS_MONITOR_DATA_UPDATE before SS_MONITOR_LOGIN"
            )
        self.core.server_update(self.state, update.DataType, update.DataValue, update.TimeStamp)

    def on_close(self) -> None:
        if self.state is not None:
            self.core.server_gone(self.state, self)


class ToolSession(Session):
    """A monitoring tool on the client port."""

    __slots__ = ("core",)

    def __init__(self, deps: SessionDeps, core: MonitorCore) -> None:
        super().__init__(deps)
        self.core = core

    @handles(CS_MONITOR_TOOL_REQ_LOGIN)
    def on_login(self, request: CsMonitorToolReqLogin) -> None:
        if self.authenticated:
            raise ProtocolViolation("double_login", "second CS_MONITOR_TOOL_REQ_LOGIN")
        if not self.core.tool_login(self, request.LoginSessionKey):
            self.send(CS_MONITOR_TOOL_RES_LOGIN.build(0))
            self.stats.report("bad_login_key", "%s: tool login with a wrong key", self.peer)
            self.close("bad_login_key")
            return
        self.authenticated = True
        self.send(CS_MONITOR_TOOL_RES_LOGIN.build(1))

    def on_close(self) -> None:
        self.core.tools.discard(self)


class MonitorCore:
    """The board of servers and the relay to the tools."""

    def __init__(
        self,
        login_key: bytes,
        tool_framing: Framing,
        trusted: Collection[str] = (),
        allow_any: bool = False,
        silent_after: float = 10.0,
    ) -> None:
        self.login_key = login_key
        self.trusted = frozenset(trusted)
        self.allow_any = allow_any
        self.silent_after = silent_after
        self._encode = tool_framing.encode
        self.servers: dict[int, ServerState] = {MACHINE_NO: ServerState(MACHINE_NO, MACHINE)}
        self.tools: set[ToolSession] = set()
        self.counters: Counter[str] = Counter()
        self._pending: list[bytes] = []
        self._flush: asyncio.Handle | None = None

    def allowed(self, ip: str) -> bool:
        return peer_trusted(ip, self.trusted, self.allow_any)

    # --- servers ----------------------------------------------------------------------
    def server_login(self, session: ReportingSession, server_no: int) -> ServerState:
        if not 1 <= server_no <= MAX_SERVER_NO:
            raise ProtocolViolation("bad_server_no", f"ServerNo {server_no} is not 1-255")
        state = self.servers.get(server_no)
        if state is not None and state.session is not None and not state.session.closed:
            raise ProtocolViolation(
                "server_no_in_use",
                f"ServerNo {server_no} reports from {state.peer} already "
                "(give each server its own --monitor-server-no)",
            )
        if state is None:
            state = self.servers[server_no] = ServerState(server_no, kind_of(server_no))
        state.session, state.peer = session, session.peer
        state.on, state.heard = True, time.monotonic()
        log.info("%s reports", state.describe())
        return state

    def server_update(self, state: ServerState, data_type: int, value: int, stamp: int) -> None:
        kind = state.kind
        if kind is None:  # a ServerNo of its own: its DataTypes tell its kind
            kind = state.kind = kind_of(state.server_no, data_type)
        if kind is None or not kind.accepts(data_type):
            raise ProtocolViolation(
                "bad_data_type",
                f"DataType {data_type} is no figure of "
                f"{'any server' if kind is None else 'a ' + kind.name + ' server'}",
            )
        state.heard = time.monotonic()
        if data_type == kind.on.data_type and value == 0:
            self.set_off(state, "stopped")  # a graceful stop (servers.reporter)
            return
        state.on = True
        if kind.figure(data_type) is not None:
            state.values[data_type] = (value, stamp)
        self.counters["updates"] += 1
        self.push(state.server_no, data_type, value, stamp)

    def server_gone(self, state: ServerState, session: ReportingSession) -> None:
        if state.session is session:
            state.session = None
            self.set_off(state, session.close_reason)

    def set_off(self, state: ServerState, reason: str) -> None:
        if not state.on:
            return
        state.on = False
        # server_shutdown: this monitoring server is stopping; stopped: the
        # server said it stops. Neither is a failure.
        level = logging.INFO if reason in ("server_shutdown", "stopped") else logging.WARNING
        log.log(level, "%s is off (%s)", state.describe(), reason)
        self._push_off(state, int(time.time()))

    def _push_off(self, state: ServerState, stamp: int) -> None:
        if state.kind is not None:
            on = state.kind.on.data_type
            state.values[on] = (0, stamp)
            self.push(state.server_no, on, 0, stamp)

    # --- tools ------------------------------------------------------------------------
    def tool_login(self, session: ToolSession, key: bytes) -> bool:
        # Constant time: how much of a guessed key matched must not show in timing.
        if not hmac.compare_digest(key, self.login_key):
            self.counters["tool_refused"] += 1
            return False
        self.counters["tool_logins"] += 1
        self.tools.add(session)
        return True

    # --- relay ------------------------------------------------------------------------
    def push(self, server_no: int, data_type: int, value: int, stamp: int) -> None:
        """Queue one update for every tool: encoded once, written at the end of the turn."""
        payload = CS_MONITOR_TOOL_DATA_UPDATE.build(server_no, data_type, value, stamp)
        self._pending.append(self._encode(payload))
        if self._flush is None:
            self._flush = asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._flush = None
        frames, self._pending = self._pending, []
        if not frames or not self.tools:
            return
        data = b"".join(frames)
        for tool in self.tools:
            tool.write_frames(data, len(frames))
        self.counters["relayed"] += len(frames)

    # --- once a second ----------------------------------------------------------------
    def tick(self, own: list[tuple[int, int]]) -> None:
        """Publish the monitoring server's own figures (ServerNo 0), drop servers
        silent too long, repeat the "off" of those that are off."""
        now, stamp = time.monotonic(), int(time.time())
        machine = self.servers[MACHINE_NO]
        machine.on = True
        for data_type, value in own:
            machine.values[data_type] = (value, stamp)
            self.push(MACHINE_NO, data_type, value, stamp)
        for state in self.servers.values():
            if state.server_no == MACHINE_NO:
                continue
            if state.on and now - state.heard >= self.silent_after:
                session = state.session
                self.set_off(state, f"silent for {self.silent_after:g} s")
                if session is not None:
                    session.abort("silent")
            elif not state.on:
                self._push_off(state, stamp)

    def count_on(self, kind: Kind) -> int:
        return sum(1 for s in self.servers.values() if s.kind is kind and s.on)

    def queued_bytes(self) -> int:
        return sum(t.transport.get_write_buffer_size() for t in self.tools if t.transport)
