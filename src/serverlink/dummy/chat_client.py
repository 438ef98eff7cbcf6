"""Chat mode's fair client: one virtual client's connection to the chat server.

A fair client logs in (standalone: ID_n / NICK_n and a random key; through the
login server: the ID, nickname and key of its account, the chat server's
address from the login reply), moves to a sector (``sector``, or a random one
every ``move_interval``) and sends a message every ``message_interval``
(each client from its own random start). It checks everything it receives as a
careful client would (``chat_check``): the answer to each move is the move it
asked for, byte for byte; its own messages come back byte for byte and in
order; every message is from a sender whose sector is within the 3 × 3 around
its own; none comes before it entered a sector. Which sector it is in is the
one of the last move answer: the server answers a move only after every
message addressed to it in the old sector. Each kind of violation is counted
(``chat_violation``, details ``chat:<kind>``) and drops the connection (the
stream cannot be trusted after it); the client reconnects.

Across worker processes a receiver cannot know a sender's identity: it checks
what the text says (the sender's AccountNo and sector) and the AccountNo the
server put in front of it; a sender in its own process is checked against the
ID and nickname it logged in with too.

The attacking share (``attack``) is ``chat_attack.AttackClient``; the
scenario that starts either is ``scenario_chat.ChatScenario``.

Every delivery's latency (the send time is in the text) goes to the
histogram: ``delivery_latency_ms`` of the report.
"""

from __future__ import annotations

import asyncio
import random
import struct
import time
from collections import deque
from typing import TYPE_CHECKING

from serverlink.dummy.chat_check import (
    RES_MESSAGE_TYPE,
    Segment,
    filler,
    message_text,
)
from serverlink.dummy.metrics import BUCKET_NS
from serverlink.dummy.worker import ScenarioSession
from serverlink.net.session import SessionDeps
from serverlink.protocol.codec import NET_HEADER_SIZE, FrameError
from serverlink.protocol.packets import (
    CS_CHAT_REQ_HEARTBEAT,
    CS_CHAT_REQ_LOGIN,
    CS_CHAT_REQ_MESSAGE,
    CS_CHAT_REQ_SECTOR_MOVE,
    CS_CHAT_RES_LOGIN,
    CS_CHAT_RES_SECTOR_MOVE,
    decode_wstr,
    encode_wstr,
)
from serverlink.protocol.status import ChatLoginStatus
from serverlink.servers.sectors import GRID_SIZE

if TYPE_CHECKING:
    from serverlink.dummy.scenario_chat import ChatScenario

_clock = time.monotonic_ns
_getrandbits = random.getrandbits
_ACCOUNT = struct.Struct("<q")
_SECTOR = struct.Struct("<HH")
_LOGIN_REPLY = CS_CHAT_RES_LOGIN.struct
_MOVE_REPLY_TYPE = CS_CHAT_RES_SECTOR_MOVE.type_bytes
_HEARTBEAT = CS_CHAT_REQ_HEARTBEAT.build()

# Connection states.
CONNECTED, LOGIN_SENT, CHATTING, CLOSED = range(4)


class ChatClient(ScenarioSession):
    """One virtual client's connection to the chat server."""

    __slots__ = (
        "_last_sent",
        "_login_at",
        "_message_at",
        "_timers",
        "account_bytes",
        "account_no",
        "asked",
        "cache",
        "heartbeat_ns",
        "identity",
        "moves",
        "own",
        "reply_head",
        "scenario",
        "sector",
        "seq",
        "state",
        "timeout_ns",
    )

    #: A fair client: its messages are counted and what it receives is checked
    #: (attackers' own failures are not errors).
    fair = True

    def __init__(
        self, deps: SessionDeps, scenario: ChatScenario, account_no: int, identity: bytes
    ) -> None:
        """``identity``: the ID and Nickname fields (2 × 40 bytes) it logs in with."""
        worker = scenario.worker
        super().__init__(deps, worker)
        cfg = worker.config
        self.scenario = scenario
        self.cache = scenario.cache
        self.account_no = account_no
        self.account_bytes = _ACCOUNT.pack(account_no)
        self.identity = identity
        # What the server must send back for its messages: the fields as text,
        # cut at the first NUL and padded again (the original dummy's garbage
        # after the NUL is not passed on).
        self.reply_head = (
            RES_MESSAGE_TYPE
            + self.account_bytes
            + encode_wstr(decode_wstr(identity[:40]), 20)
            + encode_wstr(decode_wstr(identity[40:]), 20)
        )
        self.state = CONNECTED
        self.timeout_ns = int(cfg.reply_timeout * 1e9)
        self.heartbeat_ns = int(cfg.heartbeat_interval * 1e9)
        #: The sector of the last move answer; None: in none yet.
        self.sector: tuple[int, int] | None = None
        #: The sector of the last move asked for (where its messages are said from).
        self.asked = (0, 0)
        #: Answers owed: moves (the exact reply payload, sent at) and own messages.
        self.moves: deque[tuple[bytes, int]] = deque()
        self.own: deque[tuple[bytes, int]] = deque()
        self.seq = 0
        self._login_at = 0
        self._last_sent = 0
        self._message_at = 0.0
        self._timers: list[asyncio.TimerHandle] = []

    # --- ClientLink -------------------------------------------------------------------------
    @property
    def logged_in(self) -> bool:
        return self.state == CHATTING

    def outstanding(self) -> int:
        return len(self.moves) + len(self.own)

    def check(self, now_ns: int) -> None:
        if self.state == LOGIN_SENT and now_ns - self._login_at > self.timeout_ns:
            self.meter.error("login_timeout", "chat_login:timeout")
            self.abort("login_timeout")
        elif self.state == CHATTING:
            if self.moves and now_ns - self.moves[0][1] > self.timeout_ns:
                self.violation("move_unanswered")
            elif self.own and now_ns - self.own[0][1] > self.timeout_ns:
                self.violation("own_message_missing")
            elif now_ns - self._last_sent > self.heartbeat_ns:
                self.meter.heartbeat_sent += 1
                self.write_payload(_HEARTBEAT, now_ns)

    def finish(self, now_ns: int) -> None:
        # The run ends between a request and its answer: only answers owed for
        # longer than reply_timeout are missing.
        if self.state == LOGIN_SENT and now_ns - self._login_at > self.timeout_ns:
            self.meter.error("login_timeout", "chat_login:no_reply_at_end")
        elif self.state == CHATTING and self.fair:
            for owed, what in ((self.moves, "move"), (self.own, "own_message")):
                if owed and now_ns - owed[0][1] > self.timeout_ns:
                    self.meter.error("chat_violation", f"chat:{what}_unanswered_at_end")

    # --- sending ------------------------------------------------------------------------------
    def write_payload(self, payload: bytes, now_ns: int) -> None:
        if not self.closed and self.transport is not None:
            self._last_sent = now_ns
            self.transport.write(self.framing.encode(payload))

    def start(self, key: bytes) -> None:
        """Log in (the connection is made)."""
        self.state = LOGIN_SENT
        self._login_at = now = _clock()
        self.scenario.identities[self.account_no] = self.reply_head[10:]
        payload = CS_CHAT_REQ_LOGIN.type_bytes + self.account_bytes + self.identity + key
        self.write_payload(payload, now)

    def move(self, x: int, y: int) -> None:
        now = _clock()
        fields = self.account_bytes + _SECTOR.pack(x, y)
        self.moves.append((_MOVE_REPLY_TYPE + fields, now))
        self.asked = (x, y)
        self.write_payload(CS_CHAT_REQ_SECTOR_MOVE.type_bytes + fields, now)

    def say(self, words: str) -> None:
        now = _clock()
        self.seq += 1
        x, y = self.asked
        text = message_text(self.account_no, self.seq, x, y, now, words).encode("utf-16-le")
        tail = len(text).to_bytes(2, "little") + text
        self.own.append((self.reply_head + tail, now))
        if self.fair:
            self.meter.messages_sent += 1
        self.write_payload(CS_CHAT_REQ_MESSAGE.type_bytes + self.account_bytes + tail, now)

    # --- the fair client's life ---------------------------------------------------------------
    def logged_in_now(self) -> None:
        """Status 1: enter a sector, then speak (and move) at the configured pace."""
        scenario = self.scenario
        self.move(*scenario.pick_sector())
        loop = self.worker.loop
        self._message_at = loop.time() + random.uniform(0, scenario.message_interval)
        self._timers.append(loop.call_at(self._message_at, self._speak))
        if scenario.move_interval:
            delay = scenario.move_interval * random.uniform(0.5, 1.5)
            self._timers.append(loop.call_later(delay, self._wander))

    def moved(self, first: bool) -> None:
        """A move was answered (``first``: the client is in a sector now)."""

    def _speak(self) -> None:
        if self.closed:
            return
        self.say(filler(_getrandbits(40)))
        # A fixed pace from a random start: a fair client never bunches its
        # messages up against the server's flood limit.
        self._message_at += self.scenario.message_interval
        self._timers[0] = self.worker.loop.call_at(self._message_at, self._speak)

    def _wander(self) -> None:
        if self.closed:
            return
        self.move(random.randrange(GRID_SIZE), random.randrange(GRID_SIZE))
        delay = self.scenario.move_interval * random.uniform(0.5, 1.5)
        self._timers[1] = self.worker.loop.call_later(delay, self._wander)

    # --- receiving: the hot path --------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        now = _clock()
        if self.tail:
            data = self.tail + data
            self.tail = b""
        if self.state != CHATTING:
            self._decode(data, 0, now)
            return
        # Runs of messages other players of this process read already are
        # found whole; the rest is decoded (and kept for them).
        find = self.cache.find
        receive = self.receive
        pos = 0
        end = len(data)
        while pos < end:
            segment = find(data, pos)
            if segment is None:
                self._decode(data, pos, now)
                return
            receive(segment, now)
            if self.closed:
                return
            pos += len(segment.raw)

    def _decode(self, data: bytes, pos: int, now: int) -> None:
        try:
            payloads, end = self.framing.split(data, pos)
        except FrameError as exc:
            self.fail(exc.reason)
            return
        if end < len(data):
            self.tail = data[end:]
        run: list[bytes] = []
        run_start = offset = pos
        for payload in payloads:
            size = NET_HEADER_SIZE + len(payload)
            if payload[:2] == RES_MESSAGE_TYPE and self.state == CHATTING:
                run.append(payload)
            else:
                if run:
                    self.receive(self.cache.build(data[run_start:offset], run), now)
                    run = []
                if not self.closed:
                    self._on_packet(payload)
                if self.closed:
                    return
                run_start = offset + size
            offset += size
        if run:
            self.receive(self.cache.build(data[run_start:offset], run), now)

    def receive(self, segment: Segment, now: int) -> None:
        """Messages of one segment: the checks that depend on this receiver."""
        problem = segment.problem
        if problem is not None:
            if problem.counter == "packet_error":
                self.fail(problem.kind)
            else:
                self.violation(problem.kind)
            return
        sector = self.sector
        if sector is None:
            self.violation("before_sector")
            return
        x, y = sector
        if (
            segment.min_x < x - 1
            or segment.max_x > x + 1
            or segment.min_y < y - 1
            or segment.max_y > y + 1
        ):
            self.violation("outside_area")
            return
        meter = self.meter
        mine = segment.by_sender.get(self.account_no)
        if mine is not None:
            own = self.own
            for payload in mine:
                if not own:
                    self.violation("own_message_unexpected")
                    return
                if own[0][0] != payload:
                    self.violation("own_message_changed")
                    return
                own.popleft()
            meter.messages_echoed += len(mine)
        meter.deliveries += segment.count
        hist = meter.hist
        for sent in segment.stamps:
            bucket = (now - sent) // BUCKET_NS
            hist[bucket] = hist.get(bucket, 0) + 1
        latest = now - segment.oldest
        if latest > meter.lat_max_ns:
            meter.lat_max_ns = latest

    def _on_packet(self, payload: bytes) -> None:
        """A packet that is not a message: the login or a move answered."""
        kind = payload[:2]
        if self.state == LOGIN_SENT:
            if kind != CS_CHAT_RES_LOGIN.type_bytes or len(payload) != _LOGIN_REPLY.size:
                self.fail("unexpected_packet")
                return
            _, status, account_no = _LOGIN_REPLY.unpack(payload)
            if account_no != self.account_no:
                self.fail("wrong_account")
            elif status != ChatLoginStatus.OK:
                self.meter.error("login_fail", f"chat_login:status_{status}")
                self.close("login_failed")
            else:
                self.meter.login_ok += 1
                self.state = CHATTING
                self.logged_in_now()
        elif kind == _MOVE_REPLY_TYPE and self.state == CHATTING:
            moves = self.moves
            if not moves or moves[0][0] != payload:
                self.violation("move_answer_wrong" if moves else "move_answer_unasked")
                return
            moves.popleft()
            first = self.sector is None
            self.sector = _SECTOR.unpack_from(payload, 10)
            self.meter.chat_moves += 1
            self.moved(first)
        else:
            self.fail("unexpected_packet")

    # --- failures ---------------------------------------------------------------------------------
    def violation(self, kind: str) -> None:
        self.meter.error("chat_violation", f"chat:{kind}")
        self.abort(f"violation:{kind}")

    def server_closed(self, reason: str) -> None:
        self.meter.error("disconnect_server", f"disconnect:{reason}_in_chat")

    def on_close(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self.state = CLOSED
        super().on_close()
