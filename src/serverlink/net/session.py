"""One asyncio Protocol per connection: frame splitting, dispatch, batched
writes, idle and send-buffer limits. Knows nothing of logins or games.

The hot path is ``data_received``: every complete frame in the read is decoded
by one splitter call, each payload goes to the handler registered for its type,
and all replies produced while handling that read are written with one
``transport.write``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import ClassVar, Protocol, cast

from serverlink.net.framing import Framing
from serverlink.net.stats import NetStats
from serverlink.protocol.codec import FrameError

log = logging.getLogger("serverlink.net")

Handler = Callable[["Session", bytes], None]


class SessionOwner(Protocol):
    """Whoever keeps the set of live sessions (a server, a client pool)."""

    def admit(self, session: Session) -> bool: ...

    def release(self, session: Session) -> None: ...


class ProtocolViolation(Exception):
    """Raised by a handler for a payload that breaks the protocol: the
    connection is dropped and the reason counted."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason
        self.detail = detail or reason


class Session(asyncio.Protocol):
    """Base class for a connection that speaks one framing.

    Subclasses fill ``handlers`` (packet type -> function(session, payload)) and
    may override ``on_open`` / ``on_close``. Handlers reply with ``send``.
    """

    handlers: ClassVar[dict[int, Handler]] = {}

    # Set by the owner (server or client) before the connection is made.
    framing: Framing
    stats: NetStats
    send_buffer_limit: int = 1 << 20

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: str = "?"
        self.closed = False
        self.close_reason = ""
        # Idle tracking: the sweeper clears ``active`` once a tick and counts
        # ticks in which no byte arrived; a read sets it again (one store per read).
        self.active = True
        self.idle_ticks = 0
        self._pending = b""
        self._out: list[bytes] | None = None
        self._close_after_batch = False
        self.owner: SessionOwner | None = None

    # --- asyncio.Protocol -------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, hence the cast.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        if self.owner is not None and not self.owner.admit(self):
            # Over the session cap: refused before any byte is read.
            self.closed = True
            self.close_reason = "over_cap"
            self.owner = None
            transport.abort()
            return
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        # Past the limit asyncio calls pause_writing, where the peer is dropped:
        # a client that stops reading cannot make us buffer without bound.
        transport.set_write_buffer_limits(high=self.send_buffer_limit)
        self.on_open()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.active = True
        if self._pending:
            data = self._pending + data
        try:
            payloads, end = self.framing.split(data, 0)
        except FrameError as exc:
            self.protocol_error(exc.reason, str(exc))
            return
        self._pending = data[end:] if end != len(data) else b""
        if not payloads:
            return
        self.stats.packets_in += len(payloads)
        out: list[bytes] = []
        self._out = out
        handlers = self.handlers
        try:
            for p in payloads:
                if len(p) < 2:
                    raise ProtocolViolation("no_type", f"payload of {len(p)} bytes has no type")
                handler = handlers.get(p[0] | (p[1] << 8))
                if handler is None:
                    raise ProtocolViolation(
                        "unknown_type", f"unknown packet type {p[0] | (p[1] << 8)}"
                    )
                handler(self, p)
        except ProtocolViolation as exc:
            self._out = None
            self.protocol_error(exc.reason, exc.detail)
            return
        except Exception as exc:
            # A bug in a handler: this connection goes, the server keeps serving.
            self._out = None
            self.stats.count_error("internal_error")
            log.error(
                "%s: internal error handling a packet (%s: %s); connection dropped",
                self.peer,
                type(exc).__name__,
                exc,
            )
            log.debug("handler failure", exc_info=True)
            self.abort("internal_error")
            return
        self._out = None
        if out and (not self.closed or self._close_after_batch):
            self.stats.packets_out += len(out)
            assert self.transport is not None
            self.transport.write(b"".join(out))
        if self._close_after_batch:
            assert self.transport is not None
            self.transport.close()

    def eof_received(self) -> bool | None:
        self.close("peer_closed")
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.close_reason == "over_cap":
            return
        if not self.closed:
            self.closed = True
            self.close_reason = "peer_reset" if exc else "peer_closed"
        self.stats.count_disconnect(self.close_reason)
        try:
            self.on_close()
        finally:
            if self.owner is not None:
                self.owner.release(self)

    def pause_writing(self) -> None:
        self.stats.count_error("send_buffer_full")
        log.warning(
            "%s: dropped: over %d bytes waiting to be sent (peer not reading)",
            self.peer,
            self.send_buffer_limit,
        )
        self.abort("send_buffer_full")

    # --- for handlers and owners ---------------------------------------------------
    def send(self, payload: bytes) -> None:
        """Queue one reply. Inside data_received it joins the batch written at
        the end of the read; elsewhere (after a database call) it is written now."""
        frame = self.framing.encode(payload)
        if self._out is not None:
            self._out.append(frame)
        elif not self.closed and self.transport is not None:
            self.stats.packets_out += 1
            self.transport.write(frame)

    def send_many(self, payloads: list[bytes]) -> None:
        encode = self.framing.encode
        frames = [encode(p) for p in payloads]
        if self._out is not None:
            self._out.extend(frames)
        elif not self.closed and self.transport is not None:
            self.stats.packets_out += len(frames)
            self.transport.write(b"".join(frames))

    def protocol_error(self, reason: str, detail: str) -> None:
        self.stats.count_error(reason)
        log.warning("%s: protocol error (%s): %s; connection dropped", self.peer, reason, detail)
        self.abort(f"protocol:{reason}")

    def close(self, reason: str) -> None:
        """Close after what is queued has been sent (replies a handler queued in
        this read included)."""
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        if self._out is not None:
            self._close_after_batch = True  # data_received writes the batch, then closes
        elif self.transport is not None:
            self.transport.close()

    def abort(self, reason: str) -> None:
        """Drop now, discarding unsent data."""
        if not self.closed:
            self.closed = True
            self.close_reason = reason
        self._close_after_batch = False
        if self.transport is not None:
            self.transport.abort()

    # --- hooks ----------------------------------------------------------------------
    def on_open(self) -> None:
        pass

    def on_close(self) -> None:
        pass
