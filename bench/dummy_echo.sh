#!/usr/bin/env bash
# The dummy client's own throughput: drive the independent C reference server
# (bench/netbench.c, cheap per echo) so the client is what is measured.
# Prints the dummy's report summary and, for scale, netbench's own load
# generator against the same server. Acceptance: >= 200,000 verified echoes/s,
# errors_total 0.
#   bench/dummy_echo.sh [CLIENTS] [DEPTH] [SECONDS] [PROCESSES]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
# The project venv of the README commands when there is one, else python3 on PATH.
py=${PYTHON:-$([ -x "$here/.venv/bin/python" ] && echo "$here/.venv/bin/python" || command -v python3)}
src=${NETBENCH_SRC:-$here/bench/netbench.c}
clients=${1:-200} depth=${2:-20} seconds=${3:-10} procs=${4:-2}
port=${PORT:-19001}
bin=$(mktemp -d)/netbench
gcc -O2 -o "$bin" "$src"
"$bin" server "$port" &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
sleep 0.3
report=$(mktemp)
"$py" -m serverlink dummy --mode echo --game-server "127.0.0.1:$port" --clients "$clients" \
    --echo-depth "$depth" --seconds "$seconds" --processes "$procs" --quiet \
    --report "$report" >/dev/null || true
"$py" - "$report" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(json.dumps({"dummy_echo_per_s": round(d["echo_per_s"]), "errors_total": d["errors_total"],
                  "latency_ms": d["latency_ms"], "processes": d["processes"]}))
PY
echo -n "netbench load (C, 1 thread): "
"$bin" load 127.0.0.1 "$port" "$clients" "$depth" 3 1
