"""What the dummy's chat clients write in their messages, and how what they
receive is checked at a small cost per delivery.

The text of every message a dummy client sends says who sent it, from where
and when (ASCII, sent as UTF-16LE like any chat text)::

    <AccountNo>:<seq>:<SectorX>:<SectorY>:<send time, monotonic ns>|<random words>

(numbers in hex). The sector is the one the sender last asked to move to; the
server handles a connection's packets in order, so that is where it was when
the server fanned the message out. The monotonic clock is the machine's, so
worker processes on one machine measure delivery latency with each other's
send times. Hostile messages (the attacking clients') start with ``!``: the
server must never deliver them.

Checking per delivery would cost more than the server spends sending (the
dummy receives ~n times what it sends). But the server writes one buffer per
sector per turn, the same bytes to every player of that sector, so the
players of one worker process mostly read the same bytes. A *segment* is a run
of whole CS_CHAT_RES_MESSAGE frames as read, with what can be known of it
without knowing the receiver: every frame's layout, text, sender identity, the
bounding box of the senders' sectors, the send times, the messages per sender.
``SegmentCache`` keeps recent segments by their first bytes; a read that starts
with one is checked by what is left per receiver (its own sector against the
box, its own messages against what it sent, one latency per message), without
decoding a frame. A read that matches nothing is decoded and becomes segments
itself.

What a receiver checks, in all: every message is a well-formed
CS_CHAT_RES_MESSAGE whose text is one a dummy client writes; its AccountNo is
the one in the text; a sender of this process carries the ID and nickname it
logged in with (other processes' senders are unknown here: their identity is
not checked); the sender's sector is within the 3 × 3 around the receiver's;
the receiver is in a sector at all; no message is hostile; its own messages
come back byte for byte, in order.
"""

from __future__ import annotations

from bisect import insort

from serverlink.protocol.packets import CS_CHAT_RES_MESSAGE

#: The fixed part of CS_CHAT_RES_MESSAGE (type, AccountNo, ID, Nickname) and MessageLen.
REPLY_HEAD = CS_CHAT_RES_MESSAGE.size
TEXT_AT = REPLY_HEAD + 2
RES_MESSAGE_TYPE = CS_CHAT_RES_MESSAGE.type_bytes
#: A hostile message's text starts with this.
HOSTILE = "!"
_HOSTILE_START = HOSTILE.encode()
#: Segments are found by this many bytes of their first frame (header and the
#: start of its encoded payload: the random key byte makes them distinct).
KEY_SIZE = 16
#: Cached segments are dropped once they hold this many bytes in all: they are
#: useful only while the other players of a sector read the same buffer.
CACHE_BYTES = 16 << 20

_WORDS = (
    "hello",
    "there",
    "north",
    "south",
    "east",
    "west",
    "sector",
    "grid",
    "chat",
    "dummy",
    "load",
    "test",
    "message",
    "random",
    "words",
    "of",
    "varying",
    "length",
)


def message_text(account_no: int, seq: int, x: int, y: int, sent_ns: int, words: str) -> str:
    return f"{account_no:x}:{seq:x}:{x:x}:{y:x}:{sent_ns:x}|{words}"


def filler(rand: int) -> str:
    """Some words (0-7 of them) chosen by the bits of ``rand``."""
    count = rand & 7
    rand >>= 3
    picked = []
    for _ in range(count):
        picked.append(_WORDS[rand % len(_WORDS)])
        rand //= len(_WORDS)
    return " ".join(picked)


class Problem(Exception):
    """What is wrong with a message: ``counter`` (packet_error for a broken
    frame, chat_violation for a broken chat rule) and a detail ``kind``."""

    def __init__(self, counter: str, kind: str) -> None:
        super().__init__(kind)
        self.counter = counter
        self.kind = kind


class Segment:
    """A run of CS_CHAT_RES_MESSAGE frames, as read, checked once."""

    __slots__ = (
        "by_sender",
        "count",
        "max_x",
        "max_y",
        "min_x",
        "min_y",
        "oldest",
        "problem",
        "raw",
        "stamps",
    )

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.count = 0
        self.min_x = self.min_y = 1 << 16
        self.max_x = self.max_y = -1
        #: Send times (ns) of its messages.
        self.stamps: list[int] = []
        self.oldest = 1 << 63
        #: Payloads by sender AccountNo (receivers look up their own).
        self.by_sender: dict[int, list[bytes]] = {}
        #: The first thing wrong with it, for every receiver.
        self.problem: Problem | None = None

    def __lt__(self, other: Segment) -> bool:
        # Longest first among those with the same first bytes.
        return len(self.raw) > len(other.raw)


def check_payload(payload: bytes, identities: dict[int, bytes]) -> tuple[int, int, int, int]:
    """The sender's (AccountNo, SectorX, SectorY, send time) of a
    CS_CHAT_RES_MESSAGE payload, or Problem."""
    size = len(payload)
    if size < TEXT_AT or payload[:2] != RES_MESSAGE_TYPE:
        raise Problem("packet_error", "bad_layout")
    length = payload[REPLY_HEAD] | (payload[REPLY_HEAD + 1] << 8)
    if size != TEXT_AT + length or length & 1:
        raise Problem("packet_error", "bad_message_length")
    # ASCII sent as UTF-16LE: every second byte is 0, the others are the text.
    high = payload[TEXT_AT + 1 :: 2]
    if high.count(0) != len(high):
        raise Problem("chat_violation", "unreadable_message")
    text = payload[TEXT_AT::2]
    if text.startswith(_HOSTILE_START):
        raise Problem("chat_violation", "hostile_delivered")
    head, bar, _ = text.partition(b"|")
    fields = head.split(b":")
    if not bar or len(fields) != 5:
        raise Problem("chat_violation", "unreadable_message")
    try:
        account_no, _, x, y, sent_ns = (int(f, 16) for f in fields)
    except ValueError:
        raise Problem("chat_violation", "unreadable_message") from None
    if account_no != int.from_bytes(payload[2:10], "little", signed=True):
        raise Problem("chat_violation", "wrong_sender")
    identity = identities.get(account_no)
    if identity is not None and payload[10:REPLY_HEAD] != identity:
        raise Problem("chat_violation", "wrong_identity")
    return account_no, x, y, sent_ns


class SegmentCache:
    """Recent segments of one worker process, found by their first bytes."""

    def __init__(self, identities: dict[int, bytes]) -> None:
        #: ID and Nickname fields (80 bytes) of this process's clients by AccountNo.
        self.identities = identities
        self._by_key: dict[bytes, list[Segment]] = {}
        self._bytes = 0
        self.hits = 0
        self.built = 0

    def find(self, data: bytes, pos: int) -> Segment | None:
        """The longest cached segment that ``data`` has at ``pos``."""
        candidates = self._by_key.get(data[pos : pos + KEY_SIZE])
        if candidates is not None:
            for segment in candidates:
                if data.startswith(segment.raw, pos):
                    self.hits += 1
                    return segment
        return None

    def build(self, raw: bytes, payloads: list[bytes]) -> Segment:
        """Check the frames ``raw`` holds (decoded: ``payloads``) and keep the
        segment for the next reader of the same bytes."""
        segment = Segment(raw)
        identities = self.identities
        by_sender = segment.by_sender
        stamps = segment.stamps
        min_x = min_y = 1 << 16
        max_x = max_y = -1
        try:
            for payload in payloads:
                account_no, x, y, sent_ns = check_payload(payload, identities)
                min_x = min(min_x, x)
                max_x = max(max_x, x)
                min_y = min(min_y, y)
                max_y = max(max_y, y)
                stamps.append(sent_ns)
                mine = by_sender.get(account_no)
                if mine is None:
                    by_sender[account_no] = [payload]
                else:
                    mine.append(payload)
        except Problem as problem:
            segment.problem = problem
        segment.count = len(payloads)
        segment.min_x, segment.max_x, segment.min_y, segment.max_y = min_x, max_x, min_y, max_y
        if stamps:
            segment.oldest = min(stamps)
        self.built += 1
        self._keep(segment)
        return segment

    def _keep(self, segment: Segment) -> None:
        if self._bytes > CACHE_BYTES:
            self._by_key.clear()
            self._bytes = 0
        key = segment.raw[:KEY_SIZE]
        found = self._by_key.get(key)
        if found is None:
            self._by_key[key] = [segment]
        else:
            insort(found, segment)
        self._bytes += len(segment.raw)
