# Shared by the bench scripts that start servers (source it): the servers a
# script started, stopped by pid at exit, and waiting for a line in a log.
pids=()

stop_servers() {
    # Only the processes this script started, by pid; SIGTERM = graceful stop
    # (the game server writes its pending logouts before it exits); a second
    # SIGTERM after 5 s ends a server that hangs.
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill "$pid" 2>/dev/null || true
    done
    pids=()
}
trap stop_servers EXIT

wait_log() {  # wait_log FILE PATTERN WHAT
    for _ in $(seq 150); do
        grep -q "$2" "$1" && return 0
        sleep 0.1
    done
    echo "timed out waiting for $3; log:" >&2
    cat "$1" >&2
    exit 1
}
