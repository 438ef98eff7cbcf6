"""Children that are ordinary commands (``python -m serverlink game ...``): the
``Launcher`` of ``serverlink up`` for ``ProcessSupervisor``.

A command knows nothing of the supervisor's pipe. It says it is ready the way it
tells systemd: ``sd_notify`` (``aio.notify``: ``READY=1`` with ``STATUS=listening
on HOST:PORT ...``) to the datagram socket ``NOTIFY_SOCKET`` names, which the
launcher binds for each child in a private directory. ``Stop`` is SIGTERM, a
server's graceful stop. Its output comes through a pipe, each line written on
this process's stderr after the child's name, so that the lines of three game
servers can be told apart.

A child runs in a session of its own (Ctrl-C on the terminal reaches only the
parent, which stops the children in order) and dies with its parent: the kernel
sends it SIGTERM when the parent's thread that started it ends
(``PR_SET_PDEATHSIG``), however the parent ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from serverlink.supervise.messages import Event, Ready, Stop

#: linux/prctl.h
PR_SET_PDEATHSIG = 1
#: The address in a ``STATUS=`` line of the runner's ``READY=1``.
_LISTENING = re.compile(r"listening on (?P<host>\S+):(?P<port>\d+)")


@dataclass(frozen=True)
class ChildCommand:
    """One child: its name (in log lines), its arguments after ``python -m
    serverlink``, and variables added to its environment."""

    name: str
    args: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def argv(self) -> list[str]:
        return [sys.executable, "-m", "serverlink", *self.args]


class CommandProcess:
    """A ``subprocess.Popen`` as a ``ProcessHandle``: its sentinel a pidfd
    (readable once the process has ended), its exit code ``multiprocessing``'s
    (negative: killed by that signal)."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen
        self._pidfd: int | None = os.pidfd_open(popen.pid)

    @property
    def pid(self) -> int | None:
        return self._popen.pid

    @property
    def sentinel(self) -> int:
        assert self._pidfd is not None, "closed"
        return self._pidfd

    @property
    def exitcode(self) -> int | None:
        return self._popen.poll()

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def _signal(self, signum: int) -> None:
        if self._popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._popen.send_signal(signum)

    def close(self) -> None:
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None


class NotifyChannel:
    """A child's ``NOTIFY_SOCKET`` as a ``Channel``: ``READY=1`` is ``Ready``
    (port and ``about`` from its ``STATUS=``), any other notification an
    ``Event("notify", {key: value})``; ``Stop`` sends the child SIGTERM."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.pid = 0
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self._sock.bind(path)
        except BaseException:
            self._sock.close()
            raise

    def fileno(self) -> int:
        return self._sock.fileno()

    def poll(self) -> bool:
        if self._sock.fileno() < 0:
            raise EOFError("closed")
        return bool(select.select([self._sock], [], [], 0)[0])

    def recv(self) -> Ready | Event:
        data = self._sock.recv(4096)
        fields = dict(
            line.split("=", 1) for line in data.decode(errors="replace").splitlines() if "=" in line
        )
        if fields.get("READY") == "1":
            status = fields.get("STATUS", "")
            found = _LISTENING.search(status)
            pid = int(fields["MAINPID"]) if fields.get("MAINPID", "").isdigit() else self.pid
            return Ready(int(found["port"]) if found else 0, pid, status)
        return Event("notify", fields)

    def send(self, command: Any) -> None:
        if isinstance(command, Stop) and self.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)

    def close(self) -> None:
        self._sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


class LineRelay:
    """A child's output pipe, read on the event loop; each whole line is
    written to ``out`` after ``prefix``. Closes the pipe at its end."""

    def __init__(self, fd: int, prefix: str, out: IO[str]) -> None:
        self.fd = fd
        self.prefix = prefix
        self.out = out
        self._partial = b""
        self._loop = asyncio.get_running_loop()
        os.set_blocking(fd, False)
        self._loop.add_reader(fd, self._read)

    def _read(self) -> None:
        try:
            chunk = os.read(self.fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop() if chunk else b""
        try:
            for line in lines:
                if line or chunk:
                    self.out.write(f"{self.prefix}{line.decode(errors='replace')}\n")
            self.out.flush()
        except (OSError, ValueError):  # our stderr is gone: drop the lines, keep
            pass  # reading (a child blocked on a full pipe would stall its server)
        if not chunk:
            self._loop.remove_reader(self.fd)
            os.close(self.fd)


def _die_with_parent(parent: int) -> Callable[[], None]:
    """The child's ``preexec_fn``: SIGTERM when its parent ends; and if the
    parent ended already (before the call), exit at once."""
    libc = ctypes.CDLL(None, use_errno=True)  # loaded here: not between fork and exec

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


class CommandLauncher:
    """Launches ``commands[index - 1]`` for ``ProcessSupervisor``. ``close()``
    removes the directory of the notify sockets."""

    def __init__(self, commands: Sequence[ChildCommand], out: IO[str] | None = None) -> None:
        self.commands = list(commands)
        self.out = out or sys.stderr
        self._dir = tempfile.mkdtemp(prefix="serverlink-up-")  # mode 0700: ours only
        self._starts = 0
        self._width = max((len(c.name) for c in self.commands), default=0)

    def label(self, index: int) -> str:
        return self.commands[index - 1].name

    def launch(self, index: int) -> tuple[CommandProcess, NotifyChannel]:
        command = self.commands[index - 1]
        self._starts += 1
        channel = NotifyChannel(os.path.join(self._dir, f"{index}.{self._starts}"))
        read_end, write_end = os.pipe()
        try:
            popen = subprocess.Popen(
                command.argv,
                stdin=subprocess.DEVNULL,
                stdout=write_end,
                stderr=write_end,
                env={**os.environ, **command.env, "NOTIFY_SOCKET": channel.path},
                start_new_session=True,
                preexec_fn=_die_with_parent(os.getpid()),
            )
        except BaseException:
            channel.close()
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
        channel.pid = popen.pid
        LineRelay(read_end, f"{command.name:<{self._width}} | ", self.out)
        return CommandProcess(popen), channel

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)
