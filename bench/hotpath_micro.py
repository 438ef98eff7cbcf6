"""Micro-benchmark of the game server's per-read work without sockets: one
EchoSession fed reads of K echo frames, writes into a null transport.
Prints ns per echo. Run: python bench/hotpath_micro.py [frames_per_read] [total_frames]

Timings on shared machines are noisy; bench/instructions.sh counts CPU
instructions per echo with callgrind instead, which is repeatable."""

from __future__ import annotations

import json
import sys
import time

from serverlink.net.session import SessionDeps
from serverlink.net.stats import NetStats
from serverlink.protocol.codec import NetCodec
from serverlink.protocol.framing import net_framing
from serverlink.protocol.packets import CS_GAME_REQ_ECHO
from serverlink.servers.game import EchoSession, GameConfig, GameServer


class NullTransport:
    def __init__(self) -> None:
        self.bytes = 0

    def write(self, data: bytes) -> None:
        self.bytes += len(data)

    def get_extra_info(self, name: str) -> object:
        return ("127.0.0.1", 1)

    def set_write_buffer_limits(self, high: int) -> None:
        pass


def main() -> None:
    k = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    total = int(sys.argv[2]) if len(sys.argv) > 2 else 200_000
    codec = NetCodec()
    server = GameServer(GameConfig(port=0))
    s = EchoSession(SessionDeps(net_framing(codec), NetStats()), server)
    s.connection_made(NullTransport())  # type: ignore[arg-type]
    s.account_no = 1
    read = b"".join(codec.encode_frame(CS_GAME_REQ_ECHO.build(1, i), i & 255) for i in range(k))
    n = total // k
    t0 = time.perf_counter_ns()
    for _ in range(n):
        s.data_received(read)
    dt = time.perf_counter_ns() - t0
    print(json.dumps({"frames_per_read": k, "ns_per_echo": round(dt / (n * k), 1)}))


if __name__ == "__main__":
    main()
