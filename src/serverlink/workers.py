"""A server in N worker processes: ``WorkerPool`` starts them through the
supervisor (``serverlink.supervise``), each building and starting its own
server; standalone workers share one port (SO_REUSEPORT: the kernel spreads
connections over them; the parent first checks the address is free and holds
it while they start), workers whose config says ``shares_port = False`` each
get their own. Their snapshots merge into one (``monitor.stats.Aggregator``),
their events go to ``on_event``; a worker that dies after it served is
restarted, at most once a second, its counters kept in the totals."""

from __future__ import annotations

import dataclasses
import logging
import socket
from collections.abc import Callable, Mapping
from typing import Any

from serverlink.aio import ticks
from serverlink.monitor.stats import Aggregator
from serverlink.runner import ServeError, ServerSpec, describe, describe_listen_error, start_server
from serverlink.supervise import (
    Event,
    Exited,
    Message,
    Policy,
    Snapshot,
    Stopped,
    SuperviseError,
    Supervisor,
    WorkerLink,
)

log = logging.getLogger("serverlink.runner")

#: Seconds a worker has to start serving before the start counts as failed.
START_TIMEOUT = 30.0
#: A dead worker is restarted at most this often (seconds), per worker.
RESTART_INTERVAL = 1.0


async def _serve_in_worker(link: WorkerLink, spec: ServerSpec[Any]) -> None:
    """A worker process's server (the supervisor's target: module level)."""
    server = await start_server(spec, on_event=link.event)
    link.on_drain = getattr(server, "set_draining", None)
    link.ready(int(getattr(server, "port", spec.port)), describe(server, spec))
    await ticks(link.stop, 1.0, lambda: link.snapshot(dict(server.snapshot())))
    await server.stop()
    link.stopped(dict(server.snapshot()))


class WorkerPool:
    """N worker processes each running ``spec``'s server on one port, on the
    running event loop. Their snapshots merge into ``aggregate``; their events
    go to ``on_event``."""

    def __init__(
        self,
        spec: ServerSpec[Any],
        count: int,
        *,
        log_level: int = logging.INFO,
        merge_rules: Mapping[str, str] | None = None,
        on_event: Callable[[Event], None] | None = None,
    ) -> None:
        spec.check_workers(count)
        if not dataclasses.is_dataclass(spec.config) or isinstance(spec.config, type):
            raise ServeError(f"{spec.name}: worker processes need a dataclass config")
        fields = {f.name for f in dataclasses.fields(spec.config)}
        if not {"port", "reuse_port"} <= fields:
            raise ServeError(f"{spec.name}: its config has no port/reuse_port: no worker processes")
        self.spec = spec
        self.aggregate = Aggregator(merge_rules)
        self.port = 0
        self.on_event = on_event
        self._indexed = "worker_index" in fields
        self.supervisor: Supervisor[ServerSpec[Any]] = Supervisor(
            spec.name,
            _serve_in_worker,
            self._worker_spec,
            count,
            policy=Policy(
                restart=True, restart_interval=RESTART_INTERVAL, start_timeout=START_TIMEOUT
            ),
            on_message=self._on_message,
            log_level=log_level,
        )

    @property
    def shares_port(self) -> bool:
        """Whether the workers share one port (SO_REUSEPORT) or each has its own
        (a config's ``shares_port``: a linked game server's workers are linked
        servers of their own, each with its address)."""
        return bool(getattr(self.spec.config, "shares_port", True))

    async def start(self) -> int:
        """Start every worker and wait until all serve; return the port (the
        first worker's when each has its own). Raises ServeError (after
        stopping the others) when one cannot start."""
        hold: socket.socket | None = None
        if self.shares_port:
            self.port, hold = _reserve_port(self.spec.name, self.spec.host, self.spec.port)
        else:
            self.port = self.spec.port
        try:
            await self.supervisor.start()
        except SuperviseError as exc:
            raise ServeError(str(exc)) from None
        finally:
            if hold is not None:
                hold.close()
        if not self.shares_port:
            self.port = min(w.port for w in self.supervisor.workers)
        return self.port

    @property
    def restarts(self) -> int:
        return self.supervisor.restarts

    @property
    def failure(self) -> str | None:
        return self.supervisor.failure

    def pids(self) -> list[int]:
        return self.supervisor.pids()

    def snapshot(self) -> dict[str, Any]:
        return self.aggregate.snapshot()

    async def until(self, check: Callable[[], bool]) -> None:
        """Wait until ``check()`` holds, checking after each message or worker change."""
        await self.supervisor.until(check)

    async def stop(self, grace: float = 5.0) -> None:
        await self.supervisor.stop(grace)

    def _worker_spec(self, index: int) -> ServerSpec[Any]:
        if not self.shares_port:
            # Its own port: the next ones after --port (or any free one with 0).
            port = self.spec.port + index - 1 if self.spec.port else 0
            config = dataclasses.replace(self.spec.config, port=port, reuse_port=False)
        else:
            config = dataclasses.replace(self.spec.config, port=self.port, reuse_port=True)
        if self._indexed:
            # Servers that tell their workers apart (the linked game server
            # writes its id + index as the account status) get the index.
            config = dataclasses.replace(config, worker_index=index)
        return ServerSpec(self.spec.name, self.spec.build, config)

    def _on_message(self, index: int, message: Message) -> None:
        if isinstance(message, Snapshot | Stopped) and message.data is not None:
            self.aggregate.update(index, message.data)
        elif isinstance(message, Exited) and message.restart:
            self.aggregate.retire(index)  # its counters stay in the totals
        elif isinstance(message, Event) and self.on_event is not None:
            self.on_event(message)


def _reserve_port(name: str, host: str, port: int) -> tuple[int, socket.socket]:
    """Check ``host:port`` is free and hold it until the workers listen.

    The check binds without SO_REUSEPORT, so it fails when anything listens
    there, even another serverlink with SO_REUSEPORT (which the workers would
    otherwise silently share the port with). Port 0 picks a free port. The
    returned socket (bound with SO_REUSEPORT, not listening: it takes no
    connections) keeps the port from being taken while the workers start.
    """
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
            port = probe.getsockname()[1]
        hold = socket.socket(family, kind, proto)
        hold.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        hold.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        hold.bind((address[0], port, *address[2:]))
    except OSError as exc:
        raise ServeError(describe_listen_error(name, host, port, exc)) from None
    return port, hold
