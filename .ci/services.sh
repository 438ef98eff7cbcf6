#!/usr/bin/env bash
# Make sure MariaDB (127.0.0.1:3306) and Redis (127.0.0.1:6379) answer before the tests run. Idempotent:
# if it already answers, nothing is started. Otherwise start the system mariadbd
# in the background (it reads /etc/mysql/my.cnf: datadir, socket, pid file,
# user = mysql) and poll until it answers, or fail with a clear message.
#
# Environment (all optional):
#   MARIADB_HOST / MARIADB_PORT   where to poll            (127.0.0.1 / 3306)
#   MARIADB_WAIT_SECONDS          how long to wait         (60)
#   MARIADBD                      server binary            (/usr/sbin/mariadbd)
#   MARIADB_PIDFILE               pid file of the instance (/run/mysqld/mysqld.pid)
#   MARIADB_RUN_AS                user to run it as when started as root (mysql)
#   MARIADBD_ARGS                 extra server arguments, word-split (none)
#   MARIADB_TEST_USER             user the tests log in as, checked at the end (root)
set -euo pipefail

host="${MARIADB_HOST:-127.0.0.1}"
port="${MARIADB_PORT:-3306}"
wait_seconds="${MARIADB_WAIT_SECONDS:-60}"
mariadbd="${MARIADBD:-/usr/sbin/mariadbd}"
pidfile="${MARIADB_PIDFILE:-/run/mysqld/mysqld.pid}"
run_as="${MARIADB_RUN_AS:-mysql}"
test_user="${MARIADB_TEST_USER:-root}"
error_log=/var/log/mysql/error.log

say() { echo "services.sh: $*"; }
die() { echo "services.sh: ERROR: $*" >&2; exit 1; }

admin_bin="$(command -v mariadb-admin || command -v mysqladmin || true)"

# 0 when the server accepts a TCP connection and speaks MySQL. "ping" succeeds even
# when the login is refused: it asks "is a server there", not "may I log in".
answers() {
    if [[ -n "$admin_bin" ]]; then
        "$admin_bin" --no-defaults --protocol=tcp -h "$host" -P "$port" -u "$test_user" \
            --connect-timeout=2 ping >/dev/null 2>&1
    else
        (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
    fi
}

if answers; then
    say "MariaDB already answers on $host:$port"
else
    [[ -x "$mariadbd" ]] || die "MariaDB is not answering on $host:$port and $mariadbd is not installed (apt-get install mariadb-server)"
    command -v start-stop-daemon >/dev/null || die "start-stop-daemon not found (package dpkg); cannot start $mariadbd"

    ssd=(start-stop-daemon --start --oknodo --background --pidfile "$pidfile" --exec "$mariadbd")
    if [[ "$(id -u)" == 0 ]]; then
        # The Debian package runs the server as "mysql": the socket/pid directory must be
        # its own, and the server is started as that user from the start.
        install -d -m 0755 -o "$run_as" -g "$run_as" "$(dirname "$pidfile")"
        ssd+=(--chuid "$run_as")
    fi
    # shellcheck disable=SC2206  # word splitting of extra arguments is intended
    extra=(${MARIADBD_ARGS:-})
    say "starting $mariadbd (${ssd[*]:1} -- ${extra[*]:-})"
    "${ssd[@]}" -- "${extra[@]}" || die "start-stop-daemon could not start $mariadbd"

    deadline=$((SECONDS + wait_seconds))
    until answers; do
        if ((SECONDS >= deadline)); then
            msg="MariaDB did not answer on $host:$port within ${wait_seconds}s after starting $mariadbd"
            if [[ -r "$error_log" ]]; then
                echo "services.sh: last lines of $error_log:" >&2
                tail -n 15 "$error_log" >&2 || true
            fi
            die "$msg"
        fi
        sleep 0.5
    done
    say "MariaDB answers on $host:$port"
fi

# The tests log in as "$test_user" over TCP without a password; say so plainly if
# the server refuses that, rather than letting every database test fail or skip.
client_bin="$(command -v mariadb || command -v mysql || true)"
if [[ -n "$client_bin" ]]; then
    if ! out="$("$client_bin" --no-defaults --protocol=tcp -h "$host" -P "$port" -u "$test_user" \
        --connect-timeout=5 -e 'SELECT 1' 2>&1 >/dev/null)"; then
        die "MariaDB answers on $host:$port but '$test_user' cannot log in without a password over TCP: ${out}"
    fi
fi

# Redis (the shared key store's tests): start it when it does not answer, the
# way this machine's image starts it (no persistence: tests keep nothing).
redis_host="${REDIS_HOST:-127.0.0.1}" redis_port="${REDIS_PORT:-6379}"
redis_answers() { redis-cli -h "$redis_host" -p "$redis_port" ping 2>/dev/null | grep -q PONG; }
if redis_answers; then
    say "Redis already answers on $redis_host:$redis_port"
else
    command -v redis-server >/dev/null || die "Redis is not answering on $redis_host:$redis_port and redis-server is not installed (apt-get install redis-server)"
    say "starting redis-server on $redis_host:$redis_port"
    mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
    redis-server --daemonize yes --bind "$redis_host" --port "$redis_port" --save "" \
        --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log \
        || die "redis-server could not start"
    for _ in $(seq 60); do redis_answers && break; sleep 0.5; done
    redis_answers || die "Redis did not answer on $redis_host:$redis_port within 30 s"
    say "Redis answers on $redis_host:$redis_port"
fi
