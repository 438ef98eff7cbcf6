"""What a supervisor and its workers say to each other: small frozen
dataclasses, pickled over the pipe (see ``serverlink.supervise``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from serverlink.retry import Retry


class SuperviseError(Exception):
    """A worker failed in a way the user can fix, or would fail again: one line."""


# --- messages ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ready:
    """The worker serves (a server: listens on ``port``; ``about``: what it is,
    for the start line)."""

    port: int
    pid: int
    about: str = ""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The worker's figures (a server: its ``snapshot()``), about once a second."""

    data: Any


@dataclass(frozen=True, slots=True)
class Event:
    """Something the owner may wait for (e.g. the login server's ``links``)."""

    name: str
    data: Any = None


@dataclass(frozen=True, slots=True)
class Log:
    record: logging.LogRecord


@dataclass(frozen=True, slots=True)
class Fatal:
    """Why the worker is about to exit with status 1: one line."""

    message: str


@dataclass(frozen=True, slots=True)
class Stopped:
    """The worker stopped on request; ``data``: its final figures."""

    data: Any = None


@dataclass(frozen=True, slots=True)
class Exited:
    """Made by the parent: the worker's process ended (``restart``: it will be
    started again)."""

    code: int | None
    restart: bool


Message = Ready | Snapshot | Event | Log | Fatal | Stopped | Exited


@dataclass(frozen=True, slots=True)
class Go:
    """Start the work (the dummy's workers wait for it, so that all start together)."""


@dataclass(frozen=True, slots=True)
class Stop:
    """Stop gracefully: finish, send ``Stopped``, exit."""


@dataclass(frozen=True, slots=True)
class Drain:
    """Take no new players (True) or serve again (False): a linked game or chat
    server's draining (SIGUSR1 or POST /drain to the parent)."""

    draining: bool


Command = Go | Stop | Drain


@dataclass(frozen=True)
class Policy:
    #: Restart a worker that dies after it was ready (else only report it).
    restart: bool = True
    #: A worker is restarted at most this often (seconds).
    restart_interval: float = 1.0
    #: Seconds for every worker to be ready before the start counts as failed.
    start_timeout: float = 30.0
    #: Restarts wait this backoff's delay after the deaths in a row (None: only
    #: ``restart_interval``). With it, a worker that served once and fails to
    #: start again is restarted too (a database or port briefly away), not fatal.
    backoff: Retry | None = None
    #: A process that ran this long before it died starts the count of deaths again.
    stable_after: float = 10.0
