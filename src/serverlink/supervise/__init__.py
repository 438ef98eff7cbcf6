"""One supervisor for worker processes: the servers' workers and the dummy's.

Parent side: a ``Supervisor`` on the running event loop starts N worker
processes ('spawn': the parent may be inside a running event loop, which a
forked child would inherit) and watches each one's pipe and process sentinel
with ``loop.add_reader``: no thread. Worker side: the process runs
``target(link, args)`` (a module-level coroutine function) on the one event
loop picker (``aio.run_loop``), with a ``WorkerLink`` to its parent.

Messages are small frozen dataclasses. Worker -> parent: ``Ready(port, pid)``,
``Snapshot(data)``, ``Event(name, data)``, ``Log(record)`` (every log record of
the worker: the parent emits it through its own handlers), ``Fatal(message)``
(one line), ``Stopped(data)``; the parent adds ``Exited(code, restart)`` when a
worker's process ends. Parent -> worker: ``Go``, ``Stop``.

Policy (``Policy``):

- A worker that fails before it is ready is fatal: ``start`` stops the others
  and raises ``SuperviseError`` with that worker's one-line message (a target
  raises ``SuperviseError`` to choose the line; another exception is described
  in one line). It would fail the same way again. Not ready within
  ``start_timeout``: the same.
- A worker that dies after it was ready is restarted (``restart=True``, at most
  once per ``restart_interval`` per worker, counted in ``restarts``), or only
  reported (``restart=False``); either way the owner gets ``Exited``.
- ``stop(grace)``: ``Stop`` to every worker, ``grace`` seconds to exit, then
  SIGTERM, then SIGKILL.

Signals: workers ignore SIGINT (Ctrl-C reaches the whole process group; the
parent decides what it means); SIGTERM sent to a worker stops it like ``Stop``.
A worker whose parent vanishes (its pipe closes) stops by itself.

Restarts wait at least ``restart_interval``; with ``Policy.backoff`` (a
``retry.Retry``) the backoff's delay after the deaths in a row, and a process
that served once and fails to start again is restarted too, not fatal.

The processes come from a ``Launcher``: ``SpawnLauncher`` (``Supervisor``: the
workers above), or ``command.CommandLauncher`` (``ProcessSupervisor``): ordinary
commands, ``python -m serverlink game ...``, which say they are ready with
sd_notify, are stopped with SIGTERM and die with their parent; ``group``
runs a set of them as one service (``serverlink up``).

Modules: ``messages`` (the dataclasses, ``Policy``), ``worker`` (a worker
process's side), ``launch`` (``Launcher``, ``SpawnLauncher``), ``parent``
(``ProcessSupervisor``, ``Supervisor``), ``command`` and ``group`` (commands
as children).
"""

from serverlink.supervise.launch import Launcher, SpawnLauncher
from serverlink.supervise.messages import (
    Command,
    Drain,
    Event,
    Exited,
    Fatal,
    Go,
    Log,
    Message,
    Policy,
    Ready,
    Snapshot,
    Stop,
    Stopped,
    SuperviseError,
)
from serverlink.supervise.parent import MessageHandler, ProcessSupervisor, Supervisor, WorkerState
from serverlink.supervise.worker import WorkerLink, WorkerTarget

__all__ = [
    "Command",
    "Drain",
    "Event",
    "Exited",
    "Fatal",
    "Go",
    "Launcher",
    "Log",
    "Message",
    "MessageHandler",
    "Policy",
    "ProcessSupervisor",
    "Ready",
    "Snapshot",
    "SpawnLauncher",
    "Stop",
    "Stopped",
    "SuperviseError",
    "Supervisor",
    "WorkerLink",
    "WorkerState",
    "WorkerTarget",
]
