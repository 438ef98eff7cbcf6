"""Where the supervisor's processes come from: a ``Launcher`` starts the process
of worker ``index`` and gives the parent its ``ProcessHandle`` and ``Channel``
(see ``serverlink.supervise``). ``SpawnLauncher``: worker processes
('spawn') with a pipe each; ``command.CommandLauncher``: ordinary commands."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from serverlink.supervise.worker import WorkerBoot, WorkerTarget, worker_main

A = TypeVar("A")


class ProcessHandle(Protocol):
    """A child process as the supervisor sees it (``multiprocessing``'s
    ``BaseProcess`` is one; ``supervise.command.CommandProcess`` another)."""

    @property
    def pid(self) -> int | None: ...

    @property
    def sentinel(self) -> int: ...

    @property
    def exitcode(self) -> int | None: ...

    def terminate(self) -> None: ...

    def kill(self) -> None: ...

    def close(self) -> None: ...


class Channel(Protocol):
    """The parent's end of what a child says (``Message``) and is told
    (``Command``): a ``multiprocessing`` pipe, or a command's notify socket."""

    def fileno(self) -> int: ...

    def poll(self) -> bool: ...

    def recv(self) -> Any: ...

    def send(self, obj: Any) -> None: ...

    def close(self) -> None: ...


class Launcher(Protocol):
    """Starts the process of worker ``index`` (1..N), and names it in log lines."""

    def launch(self, index: int) -> tuple[ProcessHandle, Channel]: ...

    def label(self, index: int) -> str: ...


class SpawnLauncher(Generic[A]):
    """Worker processes running ``target(link, args(index))`` ('spawn'), each
    with a pipe to the parent."""

    def __init__(
        self, name: str, target: WorkerTarget[A], args: Callable[[int], A], log_level: int
    ) -> None:
        self.name = name
        self.target = target
        self.args = args
        self.log_level = log_level
        self._mp = multiprocessing.get_context("spawn")

    def label(self, index: int) -> str:
        return f"worker {index}"

    def launch(self, index: int) -> tuple[ProcessHandle, Channel]:
        parent_end, child_end = self._mp.Pipe(duplex=True)
        boot = WorkerBoot(self.name, index, self.target, self.args(index), self.log_level)
        process = self._mp.Process(
            target=worker_main,
            args=(boot, child_end),
            name=f"serverlink-{self.name}-{index}",
            daemon=True,
        )
        try:
            process.start()
        except BaseException:
            parent_end.close()
            raise
        finally:
            child_end.close()
        return process, parent_end
