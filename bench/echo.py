"""Echo benchmark: one game-server worker driven by the dummy client, and, when
a C compiler is present, the same loads against the C reference server
(bench/netbench.c, built into a temporary directory) in the same run, so the
figures are ratios.

    python bench/echo.py [--seconds 5] [--netbench-src PATH]

Runs with the project's .venv by itself (bench/project.py).

Prints one JSON line:
- ``server``: our game server driven by our dummy (echo_per_s, latency, errors);
- ``netbench_100x20`` / ``netbench_1000x1``: the C load generator against our
  server and against the C reference server, and their ratio;
- ``dummy_vs_reference``: our dummy's verified echoes/s against the C server.

Every server and client here runs on loopback, and the run stops by itself.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

from project import ensure_serverlink
from support import free_port, start_standalone_game, wait_port

HERE = Path(__file__).resolve().parent
#: The project's own reference server and load generator (C, one file).
DEFAULT_NETBENCH = HERE / "netbench.c"


def run_dummy(port: int, clients: int, depth: int, seconds: float) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json") as report:
        subprocess.run(
            [
                sys.executable, "-m", "serverlink", "dummy", "--mode", "echo",
                "--game-server", f"127.0.0.1:{port}", "--clients", str(clients),
                "--echo-depth", str(depth), "--seconds", str(seconds),
                "--quiet", "--report", report.name,
            ],
            stdout=subprocess.DEVNULL,
            check=False,
        )  # fmt: skip
        data: dict[str, Any] = json.loads(Path(report.name).read_text())
    return {
        "echo_per_s": round(data["echo_per_s"]),
        "errors_total": data["errors_total"],
        "latency_ms": {k: data["latency_ms"][k] for k in ("p50", "p99", "max")},
        "clients": clients,
        "depth": depth,
    }


def netbench_load(binary: Path, port: int, conns: int, depth: int, seconds: float) -> Any:
    out = subprocess.run(
        [str(binary), "load", "127.0.0.1", str(port), str(conns), str(depth), str(seconds), "1"],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def build_netbench(src: Path) -> Path | None:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None or not src.exists():
        return None
    binary = Path(tempfile.mkdtemp()) / "netbench"
    subprocess.run([cc, "-O2", "-o", str(binary), str(src)], check=True)
    return binary


def main() -> None:
    ensure_serverlink()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--netbench-src", type=Path, default=DEFAULT_NETBENCH)
    args = parser.parse_args()

    result: dict[str, Any] = {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "python_pgo": "--enable-optimizations" in (sysconfig.get_config_var("CONFIG_ARGS") or ""),
        "cpus": len(__import__("os").sched_getaffinity(0)),
    }
    port = free_port()
    server = start_standalone_game(port)
    reference: subprocess.Popen[bytes] | None = None
    try:
        result["server"] = run_dummy(port, 100, 20, args.seconds)
        binary = build_netbench(args.netbench_src)
        if binary is None:
            result["netbench"] = f"not built (no C compiler or no {args.netbench_src})"
        else:
            ref_port = free_port()
            reference = subprocess.Popen([str(binary), "server", str(ref_port)])
            wait_port(ref_port, reference)
            for conns, depth in ((100, 20), (1000, 1)):
                ours = netbench_load(binary, port, conns, depth, args.seconds)
                ref = netbench_load(binary, ref_port, conns, depth, args.seconds)
                result[f"netbench_{conns}x{depth}"] = {
                    "server_echo_per_s": ours["echo_per_s"],
                    "server_errors": ours["errors"],
                    "reference_echo_per_s": ref["echo_per_s"],
                    "ratio": round(ours["echo_per_s"] / max(1.0, ref["echo_per_s"]), 3),
                    "server_p99_us": ours["p99_us"],
                    "reference_p99_us": ref["p99_us"],
                }
            result["dummy_vs_reference"] = run_dummy(ref_port, 200, 20, args.seconds)
    finally:
        server.terminate()
        server.wait(timeout=30)
        if reference is not None:
            reference.kill()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
