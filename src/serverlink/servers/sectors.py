"""The chat world's sector grid and its fan-out (the chat server's hot path).

The world is a grid of ``GRID_SIZE`` × ``GRID_SIZE`` sectors. A player is in
at most one sector; a message goes to every player in the 3 × 3 sectors around
its sender's sector (fewer at the edges and corners), the sender included.

Why the fan-out gathers per *sector*, not per receiver: every player of one
sector receives exactly the same messages (those sent from the 3 × 3 sectors
around it). So a message's frame, encoded once, is appended to the pending list
of each occupied sector of the sender's area, at most nine appends however
many players listen. Once per event-loop turn (``loop.call_soon``, scheduled by
the first append of the turn) each such sector joins its frames into one
buffer and writes that buffer to each of its players: one ``transport.write``
per receiver per turn, whatever the number of messages, and no other Python
work per receiver. A receiver whose send buffer passes its limit is dropped
inside that write (``Session.pause_writing``); the others are not held up.

Moves within a turn keep each player's stream exact. A player leaving a sector
first gets the frames gathered there for it so far, queued ahead of the answer
to its move (``write_frames`` joins the reply batch); a player joining a sector
that gathered frames earlier in the turn gets only those appended after it
came. So a client knows that every message before the answer to its move came
from around its old sector, and every message after it from around the new one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

#: Sectors per side (PROTOCOL.md: a 50 × 50 grid).
GRID_SIZE = 50


class Member(Protocol):
    """A player as the grid sees it (``ChatSession``)."""

    sector: Sector | None
    closed: bool
    transport: asyncio.Transport | None

    def write_frames(self, data: bytes, count: int) -> None: ...


class Sector:
    __slots__ = ("area", "late", "members", "pending", "receivers", "x", "y")

    def __init__(self, x: int, y: int) -> None:
        self.x = x
        self.y = y
        #: The sectors whose players hear a message sent here (itself included).
        self.area: tuple[Sector, ...] = ()
        self.members: dict[Member, None] = {}
        #: ``members`` as a tuple for the flush, rebuilt after a change (a flush
        #: writes to each while a drop may change the dict).
        self.receivers: tuple[Member, ...] | None = ()
        #: Frames addressed to this sector's players in the current turn.
        self.pending: list[bytes] = []
        #: Players that joined after frames were gathered this turn: how many
        #: of ``pending`` are not theirs.
        self.late: dict[Member, int] | None = None

    def __repr__(self) -> str:
        return f"<Sector {self.x},{self.y} players={len(self.members)}>"


class FanoutStats:
    __slots__ = ("deliveries", "flushes", "handed_over", "writes")

    def __init__(self) -> None:
        #: Frames written to receivers by the flush (one message to n players:
        #: n deliveries).
        self.deliveries = 0
        #: Frames handed to players leaving a sector mid-turn (in their reply
        #: batch, so counted in the session's packets_out already).
        self.handed_over = 0
        #: transport.write calls of the fan-out (at most one per receiver per turn).
        self.writes = 0
        #: Turns that had something to flush.
        self.flushes = 0


class SectorGrid:
    """Where every player is, and the per-turn fan-out of messages."""

    def __init__(self, size: int = GRID_SIZE) -> None:
        self.size = size
        self.sectors = [Sector(x, y) for y in range(size) for x in range(size)]
        for sector in self.sectors:
            sector.area = tuple(
                self.sectors[ny * size + nx]
                for ny in range(max(0, sector.y - 1), min(size, sector.y + 2))
                for nx in range(max(0, sector.x - 1), min(size, sector.x + 2))
            )
        self.stats = FanoutStats()
        #: Schedules the flush at the end of the turn (set by ``bind``);
        #: without it the owner calls ``flush`` itself.
        self._call_soon: Callable[[Callable[[], None]], object] | None = None
        #: Sectors with pending frames this turn, in the order they got them.
        self._dirty: list[Sector] = []
        #: Sectors with at least one player.
        self.occupied: set[Sector] = set()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Flush in ``loop``, once per turn in which messages were published."""
        self._call_soon = loop.call_soon

    def sector_at(self, x: int, y: int) -> Sector:
        """The sector at (x, y); the caller has checked 0 <= x, y < size."""
        return self.sectors[y * self.size + x]

    # --- membership ---------------------------------------------------------------------------
    def place(self, member: Member, x: int, y: int) -> None:
        """Move ``member`` to sector (x, y) (from its sector, or from none)."""
        old = member.sector
        if old is not None:
            self._leave(member, old, hand_over=True)
        sector = self.sectors[y * self.size + x]
        if sector.pending:
            # Frames gathered before it came are not its own.
            if sector.late is None:
                sector.late = {}
            sector.late[member] = len(sector.pending)
        sector.members[member] = None
        sector.receivers = None
        self.occupied.add(sector)
        member.sector = sector

    def remove(self, member: Member) -> None:
        """Take ``member`` off the grid (it left); what was gathered for it is dropped."""
        old = member.sector
        if old is not None:
            self._leave(member, old, hand_over=False)
            member.sector = None

    def _leave(self, member: Member, sector: Sector, hand_over: bool) -> None:
        del sector.members[member]
        sector.receivers = None
        if not sector.members:
            self.occupied.discard(sector)
        start = 0
        if sector.late is not None:
            start = sector.late.pop(member, 0)
        if hand_over and len(sector.pending) > start:
            frames = sector.pending[start:]
            self.stats.handed_over += len(frames)
            member.write_frames(b"".join(frames), len(frames))

    # --- fan-out -------------------------------------------------------------------------------
    def publish(self, origin: Sector, frame: bytes) -> None:
        """Address one encoded frame to every player around ``origin``; it is
        written at the end of this event-loop turn."""
        dirty = self._dirty
        for sector in origin.area:
            if sector.members:
                pending = sector.pending
                if not pending:
                    if not dirty and self._call_soon is not None:
                        self._call_soon(self.flush)
                    dirty.append(sector)
                pending.append(frame)

    def flush(self) -> None:
        """Write every sector's frames of this turn to its players: one buffer
        per sector, one write per player."""
        dirty = self._dirty
        if not dirty:
            return
        self._dirty = []
        stats = self.stats
        stats.flushes += 1
        deliveries = writes = 0
        for sector in dirty:
            frames = sector.pending
            sector.pending = []
            late = sector.late
            sector.late = None
            receivers = sector.receivers
            if receivers is None:
                receivers = sector.receivers = tuple(sector.members)
            data = frames[0] if len(frames) == 1 else b"".join(frames)
            count = len(frames)
            for member in receivers:
                if member.closed:
                    continue
                transport = member.transport
                if transport is None:
                    continue
                if late is not None and member in late:
                    mine = frames[late[member] :]
                    if not mine:
                        continue
                    transport.write(b"".join(mine))
                    deliveries += len(mine)
                else:
                    transport.write(data)
                    deliveries += count
                writes += 1
        stats.deliveries += deliveries
        stats.writes += writes

    # --- for the screen -----------------------------------------------------------------------
    def occupancy(self) -> tuple[int, int, float]:
        """Occupied sectors, most players in one, mean players per occupied sector."""
        sizes = [len(s.members) for s in self.occupied]
        if not sizes:
            return 0, 0, 0.0
        return len(sizes), max(sizes), sum(sizes) / len(sizes)
