"""One asyncio Protocol per connection: frame reading, dispatch, batched
writes, idle and send-buffer limits. Knows nothing of logins or games.

The hot path is ``data_received``: every complete frame in the read is decoded
by one reader call, each payload goes to the handler registered for its type,
and all replies produced while handling that read are written with one
``transport.write``.

A session subclass declares its handlers as methods::

    class EchoSession(Session):
        __slots__ = ("account_no",)

        @handles(CS_GAME_REQ_LOGIN)
        def on_login(self, request: CsGameReqLogin) -> None:   # parsed, typed
            ...

        @handles_raw(CS_GAME_REQ_ECHO)
        def on_echo(self, payload: bytes) -> None:             # the payload bytes
            ...

A payload that does not parse (``PacketError``) or a ``ProtocolViolation`` raised
by a handler drops the connection, counted by reason, with one log line.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar, cast

from serverlink.net.stats import NetStats
from serverlink.protocol.codec import FrameError
from serverlink.protocol.framing import Framing
from serverlink.protocol.packets import PacketDef, PacketError

log = logging.getLogger("serverlink.net")

S = TypeVar("S", bound="Session")
T = TypeVar("T", bound=tuple[object, ...])

#: Bytes queued for a peer that does not read before it is dropped.
DEFAULT_SEND_BUFFER_LIMIT = 1 << 20


class SessionOwner(Protocol):
    """Whoever keeps the set of live sessions (a server, a client pool, a link)."""

    def admit(self, session: Session) -> bool: ...

    def release(self, session: Session) -> None: ...


@dataclass(frozen=True, slots=True)
class SessionDeps:
    """What every session of one listener (or one client pool) shares: made once,
    passed to each session's constructor."""

    framing: Framing
    stats: NetStats
    owner: SessionOwner | None = None
    send_buffer_limit: int = DEFAULT_SEND_BUFFER_LIMIT


class ProtocolViolation(Exception):
    """Raised by a handler for a payload that breaks the protocol: the
    connection is dropped and the reason counted."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason
        self.detail = detail or reason


# A handler as the dispatch table holds it: the function and, for a parsed
# handler, the packet definition that parses the payload first.
_Entry = tuple[Callable[[Any, Any], None], PacketDef[..., tuple[object, ...]] | None]
_MARK = "__serverlink_handles__"


def handles(
    packet: PacketDef[..., T],
) -> Callable[[Callable[[S, T], None]], Callable[[S, T], None]]:
    """Mark a method as the handler of ``packet``; it receives the parsed packet."""

    def mark(fn: Callable[[S, T], None]) -> Callable[[S, T], None]:
        setattr(fn, _MARK, (packet, True))
        return fn

    return mark


def handles_raw(
    packet: PacketDef[..., T],
) -> Callable[[Callable[[S, bytes], None]], Callable[[S, bytes], None]]:
    """Mark a method as the handler of ``packet``; it receives the payload bytes
    (hot paths that check the layout themselves)."""

    def mark(fn: Callable[[S, bytes], None]) -> Callable[[S, bytes], None]:
        setattr(fn, _MARK, (packet, False))
        return fn

    return mark


class Session(asyncio.Protocol):
    """Base class for a connection that speaks one framing."""

    __slots__ = (
        "_close_after_batch",
        "_out",
        "_peer",
        "active",
        "authenticated",
        "close_reason",
        "closed",
        "framing",
        "idle_ticks",
        "opened_at",
        "owner",
        "send_buffer_limit",
        "stats",
        "tail",
        "transport",
    )

    #: packet type -> handler, built from the @handles methods of the class.
    handlers: ClassVar[dict[int, _Entry]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        table: dict[int, _Entry] = {}
        for klass in reversed(cls.__mro__):
            for fn in vars(klass).values():
                mark = getattr(fn, _MARK, None)
                if mark is not None:
                    packet, parsed = mark
                    table[packet.type] = (fn, packet if parsed else None)
        cls.handlers = table

    def __init__(self, deps: SessionDeps) -> None:
        self.framing = deps.framing
        self.stats = deps.stats
        self.owner = deps.owner
        self.send_buffer_limit = deps.send_buffer_limit
        #: Bytes of the incomplete frame at the end of the last read.
        self.tail = b""
        self.transport: asyncio.Transport | None = None
        self._peer: str | None = None
        self.closed = False
        self.close_reason = ""
        # Idle tracking: the sweeper clears ``active`` once a tick and counts
        # ticks in which no whole packet arrived; a read with packets sets it
        # again (one store per read), so a byte a second keeps nobody alive.
        self.active = True
        self.idle_ticks = 0
        #: Set by the server's login handler: until then the login deadline runs.
        self.authenticated = False
        #: When it connected (the listener's clock of the second: shared, not per session).
        self.opened_at = 0.0
        self._out: list[bytes] | None = None
        self._close_after_batch = False

    @property
    def peer(self) -> str:
        """``ip:port`` of the other end, for logs (made when first asked: most
        sessions never log, and a string per session is memory)."""
        if self._peer is None:
            address = self.transport.get_extra_info("peername") if self.transport else None
            if address is None:
                return "?"
            self._peer = (
                f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)
            )
        return self._peer

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
        # Past the limit asyncio calls pause_writing, where the peer is dropped:
        # a client that stops reading cannot make us buffer without bound.
        transport.set_write_buffer_limits(high=self.send_buffer_limit)
        self.on_open()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            payloads = self.read_frames(data)
        except FrameError as exc:
            self.protocol_error(exc.reason, str(exc))
            return
        if payloads:
            self.active = True
            self.dispatch(payloads)

    def read_frames(self, data: bytes) -> list[bytes]:
        """The whole payloads of this read; an incomplete frame at its end is
        kept (``tail``) for the next. Raises FrameError on a frame no
        well-behaved peer sends (the stream cannot be trusted after it)."""
        if self.tail:
            data = self.tail + data
        payloads, end = self.framing.split(data, 0)
        self.tail = data[end:] if end != len(data) else b""
        return payloads

    def dispatch(self, payloads: list[bytes]) -> None:
        """Handle whole payloads; replies queued by the handlers go out in one write."""
        self.stats.packets_in += len(payloads)
        out: list[bytes] = []
        self._out = out
        handlers = self.handlers
        try:
            for p in payloads:
                if len(p) < 2:
                    raise ProtocolViolation("no_type", f"payload of {len(p)} bytes has no type")
                entry = handlers.get(p[0] | (p[1] << 8))
                if entry is None:
                    raise ProtocolViolation(
                        "unknown_type", f"unknown packet type {p[0] | (p[1] << 8)}"
                    )
                handler, packet = entry
                handler(self, p if packet is None else packet.parse(p))
                if self.closed:  # a handler closed it: nothing more is handled
                    break
        except (ProtocolViolation, PacketError) as exc:
            self._out = None
            detail = exc.detail if isinstance(exc, ProtocolViolation) else str(exc)
            self.protocol_error(exc.reason, detail)
            return
        except Exception as exc:
            # A bug in a handler: this connection goes, the server keeps serving.
            self._out = None
            self.stats.count_error("internal_error")
            self.stats.problems.log(
                logging.ERROR,
                "internal_error",
                "%s: internal error handling a packet (%s: %s); connection dropped",
                self.peer,
                type(exc).__name__,
                exc,
            )
            log.debug("handler failure", exc_info=True)
            self.abort("internal_error")
            return
        self._out = None
        transport = self.transport
        if out and (not self.closed or self._close_after_batch) and transport is not None:
            self.stats.packets_out += len(out)
            transport.write(b"".join(out))
        if self._close_after_batch and transport is not None:
            transport.close()

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
        self.stats.report(
            "send_buffer_full",
            "%s: dropped: over %d bytes waiting to be sent (peer not reading)",
            self.peer,
            self.send_buffer_limit,
        )
        self.abort("send_buffer_full")

    # --- for handlers and owners ---------------------------------------------------
    def send(self, payload: bytes) -> None:
        """Queue one reply. Inside a dispatch it joins the batch written at the
        end of the read; elsewhere (after a database call) it is written now."""
        frame = self.framing.encode(payload)
        if self._out is not None:
            self._out.append(frame)
        elif not self.closed and self.transport is not None:
            self.stats.packets_out += 1
            self.transport.write(frame)

    def write_frames(self, data: bytes | bytearray, count: int) -> None:
        """Queue ``count`` already-encoded frames (fast paths, fan-out): as
        ``send``, inside a dispatch they join the batch, in order with the
        replies queued there; elsewhere they are written now."""
        if self._out is not None:
            self._out.append(bytes(data))
            self.stats.packets_out += count - 1  # dispatch counts the entry as one
        elif not self.closed and self.transport is not None:
            self.stats.packets_out += count
            self.transport.write(data)

    def protocol_error(self, reason: str, detail: str) -> None:
        self.stats.report(
            reason, "%s: protocol error (%s): %s; connection dropped", self.peer, reason, detail
        )
        self.abort(f"protocol:{reason}")

    def close(self, reason: str) -> None:
        """Close after what is queued has been sent (replies a handler queued in
        this read included)."""
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        if self._out is not None:
            self._close_after_batch = True  # dispatch writes the batch, then closes
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
