"""A server's own HTTP port (``--metrics-port``): ``/metrics`` (its snapshot and
figures for Prometheus), ``/healthz`` (the process answers) and ``/readyz``
(linked and serving: 503 with the reason while not); a linked game or chat
server's also ``POST /drain`` and ``POST /resume`` (no new players / serving
again; the answer says ``{"draining": true|false}``). Bind it to a private
address (the default --metrics-host is loopback): it takes no password."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from serverlink.web.http import HttpServer, make_app
from serverlink.web.metrics import SnapshotCollector, metrics_response, registry_of


def readiness(snapshot: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether a server takes clients now, and why not: a linked game or chat
    server needs its login server link up; a login server needs a game or chat
    server linked (else every login is answered Status 6)."""
    if snapshot.get("login_link", "up") != "up":
        return False, "not linked to the login server"
    if "linked_game" in snapshot and not (
        snapshot.get("linked_game", 0) or snapshot.get("linked_chat", 0)
    ):
        return False, "no game or chat server linked"
    return True, "serving"


class MetricsEndpoint(HttpServer):
    """The HTTP port of the server whose figures ``collector`` reads."""

    def __init__(
        self,
        host: str,
        port: int,
        collector: SnapshotCollector,
        drain: Callable[[bool | None], bool] | None = None,
    ) -> None:
        self.name = collector.name
        self.drain = drain
        self.snapshot = collector.snapshot
        self.registry = registry_of(collector)
        app = make_app()
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        if drain is not None:
            app.router.add_post("/drain", self.drain_now)
            app.router.add_post("/resume", self.resume)
        super().__init__(app, host, port)

    async def metrics(self, request: web.Request) -> web.Response:
        return metrics_response(self.registry)

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "server": self.name})

    async def drain_now(self, request: web.Request) -> web.Response:
        assert self.drain is not None
        return web.json_response({"draining": self.drain(True), "server": self.name})

    async def resume(self, request: web.Request) -> web.Response:
        assert self.drain is not None
        return web.json_response({"draining": self.drain(False), "server": self.name})

    async def readyz(self, request: web.Request) -> web.Response:
        ready, reason = readiness(self.snapshot())
        body = {"status": "ready" if ready else "not ready", "reason": reason, "server": self.name}
        return web.json_response(body, status=200 if ready else 503)
