"""Echo mode: what the original game dummy client does.

Each virtual client connects to the game server, waits ``login_delay``, sends
CS_GAME_REQ_LOGIN (its AccountNo, a random 64-byte printable key, Version),
waits for CS_GAME_RES_LOGIN Status 1, then keeps ``echo_depth``
CS_GAME_REQ_ECHO in flight and checks every reply.

The hot path is ``EchoClient.data_received``. Per read it does one clock
reading, one splitter call, one comparison of all the replies against the bytes
they must be, a histogram update per *run* (the requests sent by one write) and
one write of as many new requests as replies came in. Per echo there is only
the frame decode (in the shared splitter) and building one request frame.

How the replies are checked: SendTick is a nanosecond clock reading made
unique per connection (the i-th request of a write carries clock + i, and never
less than the previous tick + 1), so every request of a connection differs.
Each request appends the reply it must get (CS_GAME_RES_ECHO, our AccountNo,
that tick) to ``_expect``; a read's replies, joined, must be exactly the start
of ``_expect``. That one C-level ``startswith`` checks type, AccountNo, SendTick
value and order of every reply in the read; only when it fails does Python look
at the replies one by one to name the error.
"""

from __future__ import annotations

import asyncio
import random
import string
import struct
import time
from collections import deque
from functools import cache
from typing import TYPE_CHECKING

from serverlink.dummy.worker import ScenarioSession
from serverlink.net.session import SessionDeps
from serverlink.protocol.codec import XOR_TABLES, FrameError
from serverlink.protocol.packets import (
    CS_GAME_REQ_ECHO,
    CS_GAME_REQ_HEARTBEAT,
    CS_GAME_REQ_LOGIN,
    CS_GAME_RES_ECHO,
    CS_GAME_RES_LOGIN,
    PacketError,
    packet_type,
)
from serverlink.protocol.status import GameLoginStatus

if TYPE_CHECKING:
    from serverlink.dummy.worker import VirtualClient, Worker

ECHO_SIZE = CS_GAME_RES_ECHO.size  # 18: type, AccountNo, SendTick
_PACK_TICK = struct.Struct("<q").pack
_ACCOUNT = struct.Struct("<q")
_KEY_CHARS = (string.ascii_letters + string.digits + string.punctuation).encode()
_clock = time.monotonic_ns
_getrandbits = random.getrandbits

# Connection states.
CONNECTED, LOGIN_SENT, ECHOING, CLOSED = range(4)

#: Close reasons that are the client's own doing: no backoff before reconnecting
#: ("relogin": login mode's planned end after one echo).
CLEAN_ENDS = frozenset({"planned", "stop", "relogin"})


def random_session_key() -> bytes:
    """64 random printable bytes, as the original dummy sends."""
    return bytes(random.choices(_KEY_CHARS, k=64))


@cache
def frame_headers(code: int, size: int) -> tuple[bytes, ...]:
    """Every Net frame header for a payload of ``size`` bytes, indexed by
    ``randkey_field << 8 | checksum``: one tuple index replaces building the
    5-byte header per frame (65536 small bytes, built once per process)."""
    return tuple(
        bytes((code, size & 0xFF, size >> 8, x, c ^ x)) for x in range(256) for c in range(256)
    )


def encode_fixed(headers: tuple[bytes, ...], payload: bytes, randkey_field: int) -> bytes:
    """What the echo hot path does inline; equal to codec.encode_net_frame
    (the tests check it)."""
    return headers[randkey_field << 8 | (sum(payload) & 0xFF)] + payload.translate(
        XOR_TABLES[randkey_field]
    )


class EchoClient(ScenarioSession):
    """One virtual client's connection to the game server."""

    __slots__ = (
        "_acc",
        "_expect",
        "_headers",
        "_heartbeat_at",
        "_last_tick",
        "_login_at",
        "_pace_timer",
        "_paced",
        "_req_prefix",
        "_res_prefix",
        "_runs",
        "account_no",
        "depth",
        "heartbeat_ns",
        "interval",
        "late_ns",
        "state",
        "timeout_ns",
        "version",
    )

    def __init__(self, deps: SessionDeps, worker: Worker, account_no: int) -> None:
        super().__init__(deps, worker)
        cfg = worker.config
        self.account_no = account_no
        self.depth = cfg.echo_depth
        self.version = cfg.version
        self.state = CONNECTED
        self.late_ns = int(cfg.late * 1e9)
        self.interval = cfg.echo_interval
        self._paced = 0  # replies answered, whose next requests wait for the interval
        self._pace_timer: asyncio.TimerHandle | None = None
        self.timeout_ns = int(cfg.reply_timeout * 1e9)
        self.heartbeat_ns = int(cfg.heartbeat_interval * 1e9)
        acc = _ACCOUNT.pack(account_no)
        self._acc = acc
        self._req_prefix = CS_GAME_REQ_ECHO.type_bytes + acc
        self._res_prefix = CS_GAME_RES_ECHO.type_bytes + acc
        self._headers = frame_headers(cfg.codec.code, ECHO_SIZE)
        #: The replies still owed, in order, as their exact payload bytes.
        self._expect = bytearray()
        #: One [first tick, count] per write of requests not fully answered yet.
        self._runs: deque[list[int]] = deque()
        self._last_tick = 0
        self._login_at = 0
        self._heartbeat_at = 0

    # --- ClientLink ------------------------------------------------------------------------
    @property
    def logged_in(self) -> bool:
        return self.state == ECHOING

    def outstanding(self) -> int:
        return len(self._expect) // ECHO_SIZE

    def check(self, now_ns: int) -> None:
        state = self.state
        if state == LOGIN_SENT:
            if now_ns - self._login_at > self.timeout_ns:
                self.meter.error("login_timeout", "login:timeout")
                self.abort("login_timeout")
        elif state == ECHOING:
            runs = self._runs
            if runs and now_ns - runs[0][0] > self.timeout_ns:
                self.meter.error("echo_timeout", "echo:timeout")
                self.abort("echo_timeout")
            elif now_ns - self._heartbeat_at >= self.heartbeat_ns:
                self._heartbeat_at = now_ns
                self.meter.heartbeat_sent += 1
                self._write(self.framing.encode(CS_GAME_REQ_HEARTBEAT.build()))

    def finish(self, now_ns: int) -> None:
        if self.state == LOGIN_SENT and now_ns - self._login_at > self.late_ns:
            self.meter.error("login_timeout", "login:no_reply_at_end")
        elif self.state == ECHOING:
            late = self.late_ns
            overdue = sum(c for t, c in self._runs if now_ns - t > late)
            if overdue:
                self.meter.echo_late += overdue
                self.meter.details["echo:unanswered_at_end"] += overdue

    # --- login ----------------------------------------------------------------------------
    def send_login(self, key: bytes) -> None:
        self.send_login_payload(CS_GAME_REQ_LOGIN.build(self.account_no, key, self.version))

    def send_login_payload(self, payload: bytes) -> None:
        """Send a CS_GAME_REQ_LOGIN payload built beforehand (login mode builds
        each account's once)."""
        if self.closed:
            return
        self.state = LOGIN_SENT
        self._login_at = _clock()
        self._write(self.framing.encode(payload))

    def _on_login_phase(self, payloads: list[bytes], now: int) -> None:
        if self.state != LOGIN_SENT:
            self.fail("unexpected_packet")
            return
        p = payloads[0]
        if len(p) < 2 or packet_type(p) != CS_GAME_RES_LOGIN.type:
            self.fail("unexpected_type")
            return
        try:
            res = CS_GAME_RES_LOGIN.parse(p)
        except PacketError as exc:
            self.fail(exc.reason)
            return
        if res.AccountNo != self.account_no:
            self.fail("wrong_account")
            return
        if res.Status != GameLoginStatus.OK:
            self.login_refused(res.Status)
            self.close("login_failed")
            return
        if len(payloads) > 1:
            # Nothing may follow the login reply before we have asked for it.
            self.fail("unexpected_packet")
            return
        self.meter.login_ok += 1
        self.state = ECHOING
        self._heartbeat_at = now
        self.logged_in_at(now)
        if self.depth and not self.closed:
            self._send_echoes(self.depth, now)

    # Hooks for login mode (scenario_login.GameClient).
    def login_refused(self, status: int) -> None:
        """Count a CS_GAME_RES_LOGIN Status other than OK."""
        self.meter.error("login_fail", f"login:status_{status}")

    def logged_in_at(self, now: int) -> None:
        """The game login succeeded (``now``: the read's clock, ns)."""

    @property
    def phase(self) -> str:
        """Where a connection closed by the server was: "echo" or "login"."""
        return "echo" if self.state == ECHOING else "login"

    def server_closed(self, reason: str) -> None:
        self.meter.error("disconnect_server", f"disconnect:{reason}_in_{self.phase}")

    # --- the hot path ------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        # One clock reading per read: every reply in it arrived "now", and the
        # requests sent in answer carry this time.
        now = _clock()
        try:
            payloads = self.read_frames(data)
        except FrameError as exc:
            self.fail(exc.reason)
            return
        n = len(payloads)
        if not n or self.closed:
            return
        if self.state != ECHOING:
            self._on_login_phase(payloads, now)
            return
        joined = payloads[0] if n == 1 else b"".join(payloads)
        size = n * ECHO_SIZE
        exp = self._expect
        # Total size, smallest payload and content: together they pin every
        # reply's length, type, AccountNo, SendTick and order (see module doc).
        if (
            len(joined) != size
            or min(map(len, payloads)) != ECHO_SIZE
            or not exp.startswith(joined)
        ):
            self._bad_replies(payloads)
            return
        del exp[:size]
        meter = self.meter
        meter.echo_recv += n
        hist = meter.hist
        runs = self._runs
        late = self.late_ns
        # The oldest request answered is the first of the first run, so this
        # read's largest latency is known without looking at every reply.
        lat = now - runs[0][0]
        if lat > meter.lat_max_ns:
            meter.lat_max_ns = lat
        left = n
        while left:
            run = runs[0]
            count = run[1]
            lat = now - run[0]
            if count <= left:
                runs.popleft()
            else:
                run[1] = count - left
                count = left
            left -= count
            bucket = lat // 10_000  # metrics.BUCKET_NS
            hist[bucket] = hist.get(bucket, 0) + count
            if lat > late:
                meter.echo_late += count
        if self.interval:
            self._paced += n
            if self._pace_timer is None:
                self._pace_timer = asyncio.get_running_loop().call_later(
                    self.interval, self._send_paced
                )
        else:
            self._send_echoes(n, now)

    def _send_paced(self) -> None:
        self._pace_timer = None
        n, self._paced = self._paced, 0
        if n and not self.closed and self.state == ECHOING:
            self._send_echoes(n, _clock())

    def _send_echoes(self, n: int, now: int) -> None:
        """Send n requests in one write, with ticks now, now+1, ... (never
        below the last tick + 1), and note the replies they must get."""
        base = now if now > self._last_tick else self._last_tick + 1
        end = base + n
        self._last_tick = end - 1
        self._runs.append([base, n])
        req = self._req_prefix
        res = self._res_prefix
        exp = self._expect
        headers = self._headers
        tables = XOR_TABLES
        rand = _getrandbits
        pack = _PACK_TICK
        frames: list[bytes] = []
        append = frames.append
        for tick in range(base, end):
            tb = pack(tick)
            p = req + tb
            # R is random per frame as in the original; header and payload as
            # in codec.encode_net_frame (randkey field = R ^ K is itself a
            # uniformly random byte, so it is drawn directly).
            x = rand(8)
            append(headers[x << 8 | (sum(p) & 0xFF)] + p.translate(tables[x]))
            exp += res + tb
        self.meter.echo_sent += n
        assert self.transport is not None
        self.transport.write(b"".join(frames))

    # --- errors ----------------------------------------------------------------------------------
    def _bad_replies(self, payloads: list[bytes]) -> None:
        """Name the first reply that is not the one expected, count it, drop
        the connection (after a wrong reply the stream cannot be trusted)."""
        exp = bytes(self._expect)
        reason = "bad_reply"
        for i, p in enumerate(payloads):
            want = exp[i * ECHO_SIZE : (i + 1) * ECHO_SIZE]
            if p == want:
                continue
            if len(p) < 2 or p[:2] != CS_GAME_RES_ECHO.type_bytes:
                reason = "unexpected_type"
            elif not want:
                reason = "unsolicited_reply"
            elif len(p) != ECHO_SIZE:
                reason = "bad_layout"
            elif p[2:10] != self._acc:
                reason = "wrong_account"
            else:
                reason = "wrong_tick"
            break
        self.fail(reason)

    def _write(self, frame: bytes) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(frame)

    # --- Session hooks ---------------------------------------------------------------------
    def on_close(self) -> None:
        if self._pace_timer is not None:
            self._pace_timer.cancel()
            self._pace_timer = None
        super().on_close()  # server_closed sees the phase it closed in
        self.state = CLOSED


class EchoScenario:
    """Connect, log in, echo until the connection ends."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.login_delay = worker.config.login_delay

    async def run_once(self, client: VirtualClient) -> bool:
        worker = self.worker
        account_no = client.account_no
        link = await worker.connect(
            worker.game_address, lambda deps: EchoClient(deps, worker, account_no)
        )
        if link is None:
            return True
        client.link = link
        try:
            if self.login_delay > 0:
                await asyncio.sleep(self.login_delay)
            link.send_login(random_session_key())
            reason = await link.done
        finally:
            client.link = None
        return reason not in CLEAN_ENDS
