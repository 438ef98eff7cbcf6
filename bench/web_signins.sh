#!/usr/bin/env bash
# Sign-ins over the account web API, then the linked flow with each key, on
# MariaDB: `serverlink web` + login server + a linked game server, driven by
# `serverlink dummy --mode web --relogin` (every flow: HTTP sign-in, login
# server, game login, one echo, disconnect) on 2 × CLIENTS seeded accounts.
# Acceptance (issue 11): 500 clients for 60 s with errors_total 0. A closed
# loop: sign-ins/s is the web server's scrypt capacity, and a sign-in's latency
# is mostly its wait for a hashing thread (about clients / sign-ins per second),
# hence the dummy's --web-timeout of 300 s.
#
#   bench/web_signins.sh [CLIENTS] [SECONDS] [DUMMY_PROCESSES]
#
# Environment: DB (default mysql://root@127.0.0.1:3306/serverlink_web_bench),
# REPORT (/tmp/web.json), WEB_PORT (18000), LOGIN_PORT (18091), LAN_PORT
# (18090), GAME_PORT (22211), SERVERLINK (the command). Prints the dummy's
# figures (web sign-ins/s and their latency, login flows/s, errors), the web
# server's scrypt cost, and the CPU seconds the web server used; exit status 0
# only when the dummy counted no error.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-$([ -x "$here/.venv/bin/python" ] && echo "$here/.venv/bin/python" || command -v python3)}
sl=${SERVERLINK:-$(dirname "$py")/serverlink}
clients=${1:-500} seconds=${2:-60} procs=${3:-0}
db=${DB:-mysql://root@127.0.0.1:3306/serverlink_web_bench}
report=${REPORT:-/tmp/web.json}
web_port=${WEB_PORT:-18000} login_port=${LOGIN_PORT:-18091} lan_port=${LAN_PORT:-18090}
game_port=${GAME_PORT:-22211}
password=bench-password
logs=$(mktemp -d)
. "$here/bench/servers.sh"

hz=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# The accounts signed in to: ID_1 .. ID_2N, one password (seeded with one salt:
# the run measures sign-ins, not sign-ups).
"$sl" db seed --accounts "$((2 * clients))" --password "$password" --db "$db" >/dev/null
"$sl" login --db "$db" --port "$login_port" --lan-port "$lan_port" --quiet \
    >"$logs/login.log" 2>&1 &
pids+=($!)
wait_log "$logs/login.log" "ready: listening" "the login server"
"$sl" game --login-server "127.0.0.1:$lan_port" --port "$game_port" --db "$db" --quiet \
    >"$logs/game.log" 2>&1 &
pids+=($!)
wait_log "$logs/login.log" "linked (clients go to" "the game server to link"
# One address signs every virtual player in: no per-address or per-userid
# limit; every client may wait for scrypt at once.
"$sl" web --db "$db" --port "$web_port" --login-address "127.0.0.1:$login_port" \
    --rate-limit-address 0 --rate-limit-userid 0 --max-pending-hashes "$((2 * clients))" \
    --quiet >"$logs/web.log" 2>&1 &
web_pid=$!
pids+=("$web_pid")
wait_log "$logs/web.log" "ready: listening" "the web API"

before_web=$(cpu_ticks "$web_pid")
status=0
"$sl" dummy --mode web --relogin --web-url "http://127.0.0.1:$web_port" --clients "$clients" \
    --seconds "$seconds" --processes "$procs" --web-seeded-password "$password" \
    --web-timeout 300 --report "$report" --quiet >"$logs/dummy.log" 2>&1 || status=$?
after_web=$(cpu_ticks "$web_pid")

"$py" - "$report" "$status" "$(( (after_web - before_web) ))" "$hz" <<'PY'
import json, os, sys

from serverlink.store import passwords

report, status, web_ticks, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
r = json.load(open(report))
print(json.dumps({
    "date": r.get("date") or r.get("started_at"),
    "clients": r["clients"],
    "seconds": r["seconds"],
    "web_signins_per_s": r["web_signins_per_s"],
    "web_latency_ms": {k: r["web_latency_ms"][k] for k in ("p50", "p99", "max")},
    "login_flows_per_s": r["login_flows_per_s"],
    "login_latency_ms": {k: r["login_latency_ms"][k] for k in ("p50", "p99")},
    "errors_total": r["errors_total"],
    "error_details": r["error_details"],
    "scrypt": {"n": passwords.SCRYPT_N, "r": passwords.SCRYPT_R, "p": passwords.SCRYPT_P},
    "web_server_cpu_s": round(web_ticks / hz, 1),
    "cpus": os.cpu_count(),
    "dummy_exit": status,
}, indent=1))
PY
exit "$status"
