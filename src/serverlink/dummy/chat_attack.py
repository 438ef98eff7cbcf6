"""Chat mode's attacking clients: the ``attack`` share of the virtual clients
send hostile packets, one attack per connection, and count how the server
answered.

Kinds, in turn per client: a frame with a bad checksum, a message for another
AccountNo, a move off the grid, a MessageLen that does not match its frame (or
a frame longer than the server takes), a flood past the flood limit, a move
before login. Every kind but the flood must make the server drop the
connection (``attack_dropped``); a flood must mute the sender (fewer of its
messages come back than it sent, and it stays connected: ``attack_muted``) or
drop it. A server that does neither within ``reply_timeout`` counts
``attack_unanswered``, an error. The attackers' own messages are never
checked and their own failures are not errors; the fair clients' checks
(``scenario_chat``) catch a hostile message that was delivered (its text
starts with ``chat_check.HOSTILE``) or a fair client dropped or muted.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING

from serverlink.dummy.chat_check import HOSTILE, Segment
from serverlink.dummy.chat_client import ChatClient
from serverlink.dummy.metrics import ATTACK
from serverlink.net.session import SessionDeps
from serverlink.protocol.packets import CS_CHAT_REQ_MESSAGE, CS_CHAT_REQ_SECTOR_MOVE
from serverlink.servers.sectors import GRID_SIZE

if TYPE_CHECKING:
    from serverlink.dummy.scenario_chat import ChatScenario

KINDS = ("bad_checksum", "wrong_account", "off_grid", "bad_length", "flood", "before_login")

# Attack states.
READY, SENT, ANSWERED = range(3)


def attackers(clients: Sequence[int], share: float) -> frozenset[int]:
    """Which of these clients (numbered from 1 over all processes) attack:
    client n does when floor(n × share) steps up, so that of N clients
    floor(N × share) attack, spread evenly over the numbers."""
    if share <= 0:
        return frozenset()
    return frozenset(n for n in clients if int(n * share) > int((n - 1) * share))


class AttackClient(ChatClient):
    """One connection that makes one attack of ``kind``."""

    __slots__ = ("_answer_timer", "attack_state", "flood_echoed", "flood_sent", "kind")

    fair = False

    def __init__(
        self,
        deps: SessionDeps,
        scenario: ChatScenario,
        account_no: int,
        identity: bytes,
        attempt: int,
    ) -> None:
        super().__init__(deps, scenario, account_no, identity)
        kinds = KINDS if self.worker.config.chat_flood_limit else KINDS[:4] + KINDS[5:]
        self.kind = kinds[(account_no + attempt) % len(kinds)]
        self.attack_state = READY
        self.flood_sent = 0
        self.flood_echoed = 0
        self._answer_timer: asyncio.TimerHandle | None = None

    def start(self, key: bytes) -> None:
        if self.kind == "before_login":
            self._attack()
        else:
            super().start(key)

    def logged_in_now(self) -> None:
        # Only a sector: no messages, no wandering.
        self.move(*self.scenario.pick_sector())

    def moved(self, first: bool) -> None:
        if first:
            self._attack()
        elif self.attack_state == SENT and self.kind == "flood" and not self.moves:
            # The barrier: every echo of the flood that was to come has come.
            self._answered("muted" if self.flood_echoed < self.flood_sent else "unanswered")
            self.close("planned")

    def receive(self, segment: Segment, now: int) -> None:
        mine = segment.by_sender.get(self.account_no)
        if mine is not None:
            self.flood_echoed += len(mine)
            self.own.clear()

    # --- the attack ---------------------------------------------------------------------------
    def _attack(self) -> None:
        self.meter.attack_sent += 1
        self.attack_state = SENT
        kind = self.kind
        if kind == "flood":
            # Past the limit within one read of the server: it must mute.
            self.flood_sent = 2 * self.worker.config.chat_flood_limit + 1
            for _ in range(self.flood_sent):
                self.say("flood")
            self.move(*self.asked)  # answered after every echo of the flood
        else:
            assert self.transport is not None
            self.transport.write(self._hostile_frame(kind))
        self._answer_timer = self.worker.loop.call_later(
            self.worker.config.reply_timeout, self._unanswered
        )

    def _hostile_frame(self, kind: str) -> bytes:
        encode = self.framing.encode
        text = f"{HOSTILE}{kind}".encode("utf-16-le")
        if kind == "bad_checksum":
            frame = bytearray(encode(self._message(self.account_no, len(text), text)))
            frame[4] ^= 0x55
            return bytes(frame)
        if kind == "wrong_account":
            return encode(self._message(self.account_no + 1, len(text), text))
        if kind == "bad_length":
            if random.random() < 0.5:
                return encode(self._message(self.account_no, len(text) + 2, text))
            # A frame that says it is longer than any the server takes.
            return bytes((self.worker.config.codec.code, 0xFF, 0xFF, 0, 0)) + text
        if kind == "off_grid":
            x, y = GRID_SIZE + random.randrange(0xFFFF - GRID_SIZE), random.randrange(GRID_SIZE)
            if random.random() < 0.5:
                x, y = y, x
            return encode(CS_CHAT_REQ_SECTOR_MOVE.build(self.account_no, x, y))
        # before_login
        return encode(CS_CHAT_REQ_SECTOR_MOVE.build(self.account_no, 1, 1))

    @staticmethod
    def _message(account_no: int, length: int, text: bytes) -> bytes:
        return (
            CS_CHAT_REQ_MESSAGE.type_bytes
            + account_no.to_bytes(8, "little", signed=True)
            + length.to_bytes(2, "little")
            + text
        )

    def _answered(self, answer: str) -> None:
        if self.attack_state != SENT:
            return
        self.attack_state = ANSWERED
        if self._answer_timer is not None:
            self._answer_timer.cancel()
        meter = self.meter
        if answer == "dropped":
            meter.attack_dropped += 1
        elif answer == "muted":
            meter.attack_muted += 1
        else:
            meter.attack_unanswered += 1
        meter.details[f"{ATTACK}{self.kind}:{answer}"] += 1

    def _unanswered(self) -> None:
        self._answered("unanswered")
        self.abort("attack_unanswered")

    # --- what is not an error for an attacker ---------------------------------------------
    def violation(self, kind: str) -> None:
        self.abort(f"violation:{kind}")

    def fail(self, reason: str) -> None:
        self.abort(f"protocol:{reason}")

    def server_closed(self, reason: str) -> None:
        if self.attack_state == SENT:
            self._answered("dropped")

    def check(self, now_ns: int) -> None:
        if self.attack_state == READY:
            super().check(now_ns)

    def finish(self, now_ns: int) -> None:
        # Called at the end of the run, before the final snapshot: an attack
        # still waiting for its answer is cut by the end, neither way counted.
        if self.attack_state == SENT:
            self._cut()

    def _cut(self) -> None:
        self.attack_state = ANSWERED
        if self._answer_timer is not None:
            self._answer_timer.cancel()
        self.meter.details[f"{ATTACK}{self.kind}:cut_by_end_of_run"] += 1

    def on_close(self) -> None:
        if self._answer_timer is not None:
            self._answer_timer.cancel()
        super().on_close()  # a close by the server answered the attack
        if self.attack_state != SENT:
            return
        if self.worker.stopping:
            self._cut()
        else:
            self._answered("unanswered")  # closed here on a broken answer
