#!/usr/bin/env bash
# Instructions per echo of the game server's per-read work (bench/hotpath_micro.py),
# counted by callgrind: repeatable whatever else the machine is doing.
# Usage: bench/instructions.sh [frames_per_read] [python]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# The project venv of the README commands when there is one, else python3 on PATH.
k=${1:-20}; py=${2:-$([ -x "$root/.venv/bin/python" ] && echo "$root/.venv/bin/python" || command -v python3)}
here=$(cd "$(dirname "$0")" && pwd)
count() {
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$py" "$here/hotpath_micro.py" "$k" "$1" 2>&1 \
    | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
a=$(count 20000); b=$(count 60000)
echo "{\"frames_per_read\": $k, \"instructions_per_echo\": $(( (b - a) / 40000 ))}"
