"""One aiohttp site on the server's own event loop, hardened for hostile
clients: no request body accepted, every handler error answered 500 with a
one-line body (the traceback goes to the log, never to the client), no access
log, and a connection that sends no complete request within ``idle_timeout``
(silent, or trickling its headers) closed."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

log = logging.getLogger("serverlink.web")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Seconds a connection may stay without a complete request (aiohttp's
#: keep-alive timer: it runs from the connection or the last answer until a
#: whole request has arrived, and does not cut a handler that takes longer).
#: aiohttp's own default, an hour, lets silent sockets hold the server's.
HTTP_IDLE_TIMEOUT = 10.0


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception:
        log.exception("%s %s: internal error", request.method, request.path)
        return web.json_response({"error": "internal error"}, status=500)


def make_app() -> web.Application:
    # Only GETs here: a request body is never read, and large ones are refused.
    return web.Application(middlewares=[errors_middleware], client_max_size=4096)


class HttpServer:
    """``app`` listening on ``host:port`` (0: a free port, then ``port`` says which)."""

    def __init__(
        self, app: web.Application, host: str, port: int, reuse_port: bool = False
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.reuse_port = reuse_port
        self.idle_timeout = HTTP_IDLE_TIMEOUT
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        runner = web.AppRunner(
            self.app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=1.0,
            keepalive_timeout=self.idle_timeout,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port, reuse_port=self.reuse_port or None)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        address = runner.addresses[0]
        self.port = int(address[1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
