"""Chat fan-out benchmark: a chat server in its own process, driven by the
dummy in chat mode (worker processes), every delivery verified by the dummy.

    python bench/chat_fanout.py [--clients 1000] [--seconds 20] [--interval 2.0]
    python bench/chat_fanout.py --linked --db mysql://root@127.0.0.1:3306/serverlink_chat \\
        [--clients 3000] [--seconds 60] [--interval 1.0] [--attack 0.1]

Crowd (default): every client in one sector, each sending a message every
``--interval`` seconds: n clients hear n / interval × n deliveries a second. Linked
(``--linked``): a login server and a chat server linked to it on the given
database (seeded here with ``serverlink db seed``), the clients logging in
through the login server, moving at random and sending a message a second;
``--attack`` makes that share of them attackers.

Prints one JSON line: the dummy's figures (messages and verified deliveries
per second over the run and in the steady state after the ramp-up, delivery
latency, errors, attacks), the server processes' CPU over the run (psutil:
percent of one core), the chat server's own counters, and the machine's load.
Every process runs on loopback; the run stops by itself.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from support import free_port, wait_port

from serverlink.dummy import DummyConfig, run_dummy
from serverlink.net.server import ServerLimits
from serverlink.protocol import packets as pk
from serverlink.protocol.codec import NetCodec

HERE = Path(__file__).resolve()
CODEC = NetCodec()


# --- the server processes (this script, run with --serve) ----------------------------------
def serve(kind: str, port: int, lan_port: int, db: str) -> None:
    """Run one server until SIGTERM: the project's runner, no screen."""
    from serverlink.runner import RunOptions, ServerSpec
    from serverlink.runner import serve as run_server
    from serverlink.servers.chat import CHAT_SCREEN, ChatConfig, build_chat_server
    from serverlink.servers.link import LinkConfig
    from serverlink.servers.login import LOGIN_SCREEN, LoginConfig, build_login_server
    from serverlink.store.config import StoreConfig

    # Bigger send buffers than the default: a receiver of 500 messages a second
    # in a crowd of 1,000 is sent ~70 KB a second and may lag a moment.
    limits = ServerLimits(max_sessions=20_000, send_buffer_limit=4 << 20)
    if kind == "login":
        login = LoginConfig(port=port, lan_port=lan_port, store=StoreConfig(db), limits=limits)
        options = RunOptions(live=False, stats_interval=3600.0, screen=LOGIN_SCREEN)
        run_server(ServerSpec("login", build_login_server, login), options)
        return
    link = (
        LinkConfig(login_server=("127.0.0.1", lan_port), server_name="chat") if lan_port else None
    )
    chat = ChatConfig(port=port, limits=limits, link=link)
    options = RunOptions(live=False, stats_interval=3600.0, screen=CHAT_SCREEN)
    run_server(ServerSpec("chat", build_chat_server, chat), options)


def start_server(kind: str, port: int, lan_port: int = 0, db: str = "") -> subprocess.Popen[bytes]:
    log = open(Path(tempfile.gettempdir()) / f"chat_fanout_{kind}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, str(HERE), "--serve", kind, "--port", str(port),
         "--lan-port", str(lan_port), "--db", db],
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    wait_port(port, proc)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


# --- measuring ------------------------------------------------------------------------------
def cpu_seconds(proc: subprocess.Popen[bytes]) -> float:
    times = psutil.Process(proc.pid).cpu_times()
    return float(times.user + times.system)


def wait_linked(login_port: int, account_no: int, key: bytes, timeout: float = 30.0) -> None:
    """Until the login server places a client (its chat server has linked)."""
    deadline = time.monotonic() + timeout
    request = CODEC.encode_frame(pk.CS_LOGIN_REQ_LOGIN.build(account_no, key))
    while time.monotonic() < deadline:
        with socket.create_connection(("127.0.0.1", login_port), timeout=5) as s:
            s.sendall(request)
            data = b""
            while len(data) < 5 + pk.CS_LOGIN_RES_LOGIN.size:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        reply = pk.CS_LOGIN_RES_LOGIN.parse(CODEC.decode_frame(data))
        if reply.Status == 1:
            return
        time.sleep(0.2)
    raise SystemExit(f"the login server placed no client within {timeout} s")


def steady(series: list[int], skip: int) -> int | None:
    """Mean per second once every client is in, the last second left out
    (None: the run was too short to have such seconds)."""
    middle = series[skip:-1]
    return round(statistics.fmean(middle)) if middle else None


def measure(config: DummyConfig, servers: dict[str, subprocess.Popen[bytes]]) -> dict[str, Any]:
    before = {name: cpu_seconds(p) for name, p in servers.items()}
    machine_before = psutil.cpu_times()
    wall = time.monotonic()
    result = run_dummy(config)
    wall = time.monotonic() - wall
    machine_after = psutil.cpu_times()
    report = result.report()
    skip = int(config.message_interval) + 2
    busy = sum(
        getattr(machine_after, f) - getattr(machine_before, f)
        for f in ("user", "system", "nice", "irq", "softirq")
    )
    return {
        "messages_per_s": round(report["messages_per_s"]),
        "deliveries_per_s": round(report["deliveries_per_s"]),
        "deliveries_per_s_steady": steady(report["deliveries_per_s_series"], skip),
        "deliveries_per_s_series": report["deliveries_per_s_series"],
        "delivery_latency_ms": {
            k: round(report["delivery_latency_ms"][k], 2) for k in ("p50", "p99", "max")
        },
        "errors_total": report["errors_total"],
        "error_details": report["error_details"],
        "attacks": {
            k: report[k]
            for k in (
                "attack_sent",
                "attack_dropped",
                "attack_muted",
                "attack_unanswered",
                "attack_by_kind",
            )
        },
        "dummy_processes": report["processes"],
        "seconds": round(report["seconds"], 1),
        "server_cpu_percent_of_one_core": {
            name: round(100 * (cpu_seconds(p) - before[name]) / wall, 1)
            for name, p in servers.items()
        },
        "machine_cpu_busy_percent": round(100 * busy / wall / (os.cpu_count() or 1), 1),
    }


# --- scenarios ----------------------------------------------------------------------------------
def dummy_config(args: argparse.Namespace, **where: Any) -> DummyConfig:
    return DummyConfig(
        mode="chat",
        clients=args.clients,
        message_interval=args.interval,
        move_interval=args.move_interval,
        seconds=args.seconds,
        processes=args.processes,
        ramp_up=args.ramp_up,
        # Under a saturated machine an answer may take seconds; later is an error.
        reply_timeout=10.0,
        attack=args.attack,
        **where,
    )


def crowd(args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    chat = start_server("chat", port)
    try:
        config = dummy_config(args, chat_port=port, sector=(25, 25))
        return {"scenario": "crowd", "clients": args.clients, **measure(config, {"chat": chat})}
    finally:
        stop(chat)


def linked(args: argparse.Namespace) -> dict[str, Any]:
    keys = Path(tempfile.gettempdir()) / "chat_fanout_keys.txt"
    serverlink = Path(sys.executable).with_name("serverlink")
    subprocess.run(
        [str(serverlink), "db", "seed", "--accounts", str(args.clients), "--keys-out",
         str(keys), "--db", args.db],
        check=True,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    login_port, lan_port, chat_port = free_port(), free_port(), free_port()
    login = start_server("login", login_port, lan_port, args.db)
    chat: subprocess.Popen[bytes] | None = None
    try:
        chat = start_server("chat", chat_port, lan_port)
        first_no, first_key = keys.read_text().split("\n", 1)[0].split()
        wait_linked(login_port, int(first_no), first_key.encode())
        config = dummy_config(args, login_port=login_port, keys_file=str(keys))
        figures = measure(config, {"login": login, "chat": chat})
        return {"scenario": "linked", "clients": args.clients, "db": args.db, **figures}
    finally:
        if chat is not None:
            stop(chat)
        stop(login)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--interval", type=float, default=None, help="seconds between messages")
    parser.add_argument("--move-interval", type=float, default=5.0, help="seconds")
    parser.add_argument("--attack", type=float, default=0.0)
    parser.add_argument("--processes", type=int, default=0, help="dummy processes; 0: auto")
    parser.add_argument("--ramp-up", type=float, default=2.0)
    parser.add_argument("--linked", action="store_true")
    parser.add_argument("--db", default="mysql://root@127.0.0.1:3306/serverlink_chat")
    parser.add_argument("--serve", choices=("chat", "login"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--lan-port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.lan_port, args.db)
        return
    defaults = (3000, 60.0, 1.0) if args.linked else (1000, 20.0, 2.0)
    for name, value in zip(("clients", "seconds", "interval"), defaults, strict=True):
        if getattr(args, name) is None:
            setattr(args, name, value)
    result = linked(args) if args.linked else crowd(args)
    result["cpus"] = os.cpu_count()
    result["load_average_1m_at_end"] = os.getloadavg()[0]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
