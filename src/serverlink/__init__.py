"""serverlink: login, game (echo) and chat servers with an account database and a
load-testing dummy client, wire-compatible with a C++ IOCP server family."""

__version__ = "0.1.0"
