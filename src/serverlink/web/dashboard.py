"""The monitoring server's web side, on its own event loop (aiohttp): the
dashboard page, its JSON API, the live feed and /metrics.

    GET /                      the dashboard (static/dashboard.html + .js, uPlot)
    GET /static/<file>         the page's files, shipped with the package
    GET /api/figures           every kind's figures: DataType, name, label, unit, meaning
    GET /api/servers           the board now: each server's latest figures, on/off
    GET /api/events            the board once a second (server-sent events)
    GET /api/history?kind=game&since=1h[&server=2]   rows of the history store
    GET /metrics               every server's figures for Prometheus
    GET /healthz               the process answers

The feed is pushed by the monitoring server's tick: the board is encoded
once, queued for each listener; a listener whose queue is full (it does not
read) is cut off, never waited for. Bad query values are 400 with a one-line
reason; nothing a client sends reaches a traceback.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from serverlink.monitor.figures import KIND_BY_NAME, KINDS
from serverlink.store import StoreError
from serverlink.store.history import parse_duration
from serverlink.web import static_bytes
from serverlink.web.http import HttpServer, make_app
from serverlink.web.metrics import BoardCollector, metrics_response, registry_of

if TYPE_CHECKING:
    from serverlink.servers.monitor import MonitorServer

#: Files of web/static served under /static/ (nothing else is).
STATIC_FILES = {
    "dashboard.js": "text/javascript",
    "dashboard.css": "text/css",
    "uPlot.iife.min.js": "text/javascript",
    "uPlot.min.css": "text/css",
    "uPlot.LICENSE": "text/plain",
}
#: Feed listeners at most, and board updates queued for one before it is cut off.
MAX_LISTENERS = 64
LISTENER_QUEUE = 30


def figures_json() -> dict[str, Any]:
    return {
        "kinds": [
            {
                "name": kind.name,
                "server_no": kind.server_no,
                "table": kind.table,
                "figures": [
                    {
                        "type": f.data_type,
                        "name": f.name,
                        "label": f.label,
                        "unit": f.unit,
                        "help": f.help,
                    }
                    for f in kind.figures
                ],
            }
            for kind in KINDS
        ]
    }


class Dashboard(HttpServer):
    def __init__(self, monitor: MonitorServer, host: str, port: int) -> None:
        self.monitor = monitor
        self.listeners: set[asyncio.Queue[bytes | None]] = set()
        self.cut_off = 0
        self.registry = registry_of(BoardCollector(monitor.core))
        self._static = {name: static_bytes(name) for name in STATIC_FILES}
        self._page = static_bytes("dashboard.html")
        app = make_app()
        for path, handler in (
            ("/", self.page),
            ("/static/{name}", self.static),
            ("/api/figures", self.figures),
            ("/api/servers", self.servers),
            ("/api/events", self.events),
            ("/api/history", self.history),
            ("/metrics", self.metrics),
            ("/healthz", self.healthz),
        ):
            app.router.add_get(path, handler)
        super().__init__(app, host, port)
        monitor.on_tick.append(self.publish)

    async def stop(self) -> None:
        for queue in self.listeners:
            _replace_all(queue, None)  # each feed ends, then the site closes
        await super().stop()

    # --- pages and files ------------------------------------------------------------------
    async def page(self, request: web.Request) -> web.Response:
        return web.Response(body=self._page, content_type="text/html", charset="utf-8")

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC_FILES:
            raise web.HTTPNotFound(text="no such file")
        return web.Response(body=self._static[name], content_type=STATIC_FILES[name])

    # --- the API ------------------------------------------------------------------------
    async def figures(self, request: web.Request) -> web.Response:
        return web.json_response(figures_json())

    def board(self) -> dict[str, Any]:
        servers = []
        for state in sorted(self.monitor.core.servers.values(), key=lambda s: s.server_no):
            servers.append(
                {
                    "no": state.server_no,
                    "kind": state.kind.name if state.kind is not None else None,
                    "on": state.on,
                    "peer": state.peer,
                    "values": {str(t): [v, ts] for t, (v, ts) in state.values.items()},
                }
            )
        return {"time": time.time(), "servers": servers}

    async def servers(self, request: web.Request) -> web.Response:
        return web.json_response(self.board())

    def publish(self) -> None:
        """Queue the board for every feed listener (the monitoring server's tick)."""
        if not self.listeners:
            return
        event = b"data: " + json.dumps(self.board(), separators=(",", ":")).encode() + b"\n\n"
        for queue in list(self.listeners):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:  # not reading: cut off
                self.cut_off += 1
                self.listeners.discard(queue)
                _replace_all(queue, None)

    async def events(self, request: web.Request) -> web.StreamResponse:
        if len(self.listeners) >= MAX_LISTENERS:
            raise web.HTTPServiceUnavailable(text="too many dashboard listeners")
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(LISTENER_QUEUE)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        self.listeners.add(queue)
        try:
            await response.write(b"retry: 2000\n\n")
            self.publish()  # the board now, so the page draws at once
            while (event := await queue.get()) is not None:
                await response.write(event)
        except (ConnectionError, RuntimeError):
            pass  # the listener went away (RuntimeError: the transport closed under a write)
        finally:
            self.listeners.discard(queue)
        return response

    async def history(self, request: web.Request) -> web.Response:
        query = request.query
        kind = KIND_BY_NAME.get(query.get("kind", ""))
        if kind is None:
            raise _bad(f"kind must be one of {', '.join(KIND_BY_NAME)}")
        try:
            since = parse_duration(query.get("since", "1h"))
            server = int(query["server"]) if "server" in query else None
        except ValueError as exc:
            raise _bad(str(exc)) from None
        try:
            rows = await self.monitor.history.query(kind, time.time() - since, server)
        except StoreError as exc:
            return web.json_response({"error": f"history unavailable: {exc}"}, status=503)
        return web.json_response(
            {
                "kind": kind.name,
                "rows": [{"no": r.server_no, "time": r.time, "values": r.values} for r in rows],
            }
        )

    async def metrics(self, request: web.Request) -> web.Response:
        return metrics_response(self.registry)

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})


def _bad(reason: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"error": reason}), content_type="application/json")


def _replace_all(queue: asyncio.Queue[bytes | None], item: bytes | None) -> None:
    while not queue.empty():
        queue.get_nowait()
    queue.put_nowait(item)
