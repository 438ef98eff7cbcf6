"""The example file of ``serverlink up --example`` (which ``serverlink up`` accepts:
tests/test_up.py parses it)."""

EXAMPLE = """\
# serverlink up: the servers of one deployment on this machine, started, supervised
# (a server that exits is restarted, with backoff) and stopped (Ctrl-C, SIGTERM) together,
# on MariaDB (accounts) and Redis (session keys):
#
#   serverlink up --example > cluster.toml     # this file; edit the database URL
#   serverlink db init --db mysql://serverlink:s3cret@127.0.0.1:3306/serverlink
#   serverlink up cluster.toml
#
# Each [[server]] is an ordinary process, `serverlink <kind>` with the entry's settings as
# its flags (port = 12211 is --port 12211): the same server runs on a machine of its own
# with the same flags. The settings are those of `serverlink <kind> --help`, named without
# the dashes (max-sessions or max_sessions). kind: login | game | chat | monitor; name:
# shown before each of its log lines (default: kind-N).

# Settings of every server whose command has them; an entry's own value wins.
[shared]
# The account database (MariaDB), of the login and game servers. A URL with a password
# is passed in each server's environment (SERVERLINK_GAME_DB, ...), not on its command line.
db = "mysql://serverlink:s3cret@127.0.0.1:3306/serverlink"
# Where handed-over session keys wait for their client: Redis, shared by the login, game
# and chat servers (a key works once, whichever server takes it).
key_store = "redis://127.0.0.1:6379/0?namespace=serverlink"
# The login servers' LAN ports: each game and chat server links to both.
login_server = "127.0.0.1:8090,127.0.0.1:8190"
# The monitoring server's LAN port: every server reports its figures there.
monitor = "127.0.0.1:20150"

# The monitoring server: tools on 12212, servers report on 20150, dashboard on 8080.
[[server]]
kind = "monitor"
name = "monitor"

# Two login servers: clients on 8091 and 8191 (spread them by DNS or a TCP balancer).
[[server]]
kind = "login"
name = "login-1"
port = 8091
lan_port = 8090
monitor_server_no = 1

[[server]]
kind = "login"
name = "login-2"
port = 8191
lan_port = 8190
monitor_server_no = 4

# Three game servers: each its own port and status id (the value marking its players).
[[server]]
kind = "game"
name = "game-1"
port = 12211
server_id = 1
monitor_server_no = 2

[[server]]
kind = "game"
name = "game-2"
port = 12311
server_id = 2
monitor_server_no = 5

[[server]]
kind = "game"
name = "game-3"
port = 12411
server_id = 3
monitor_server_no = 6

# Two chat servers (no account database).
[[server]]
kind = "chat"
name = "chat-1"
port = 50000
monitor_server_no = 3

[[server]]
kind = "chat"
name = "chat-2"
port = 50100
monitor_server_no = 7
"""
