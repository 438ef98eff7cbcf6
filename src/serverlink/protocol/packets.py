"""The packet catalog of PROTOCOL.md: every packet is defined here, once, typed.

A packet is a ``NamedTuple`` whose field annotations carry the wire layout
(``I64`` is an ``int`` sent as INT64, ``WStr20`` a ``str`` in ``WCHAR[20]``, ...)
and a ``PacketDef`` that binds it to its type number::

    class CsLoginReqLogin(NamedTuple):
        AccountNo: I64
        SessionKey: Key64

    CS_LOGIN_REQ_LOGIN = PacketDef(101, "CS_LOGIN_REQ_LOGIN", CsLoginReqLogin)

    payload = CS_LOGIN_REQ_LOGIN.build(7, key)      # arguments checked by mypy
    request = CS_LOGIN_REQ_LOGIN.parse(payload)     # a CsLoginReqLogin
    request.AccountNo                                # a misspelt field fails mypy

``PacketDef`` precompiles a ``struct.Struct`` for the fixed part (the ``WORD
Type`` included), so servers and the dummy client build and parse with the same
definition; hot paths use ``PacketDef.struct`` / ``size`` / ``type_bytes``
directly instead of building a tuple per packet.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Generic, NamedTuple, ParamSpec, TypeVar, cast, get_type_hints

P = ParamSpec("P")
T = TypeVar("T", bound=tuple[object, ...])


class PacketError(ValueError):
    """A payload that does not match its packet's layout. ``reason`` is a stable
    counter label."""

    def __init__(self, message: str, reason: str = "bad_layout") -> None:
        super().__init__(message)
        self.reason = reason


# --- field kinds (the metadata of the Annotated aliases below) --------------------------


@dataclass(frozen=True, slots=True)
class Int:
    """An integer field; ``code`` is its struct code."""

    code: str


@dataclass(frozen=True, slots=True)
class WChars:
    """``WCHAR name[units]``: UTF-16LE, NUL padded, text ends at the first NUL."""

    units: int


@dataclass(frozen=True, slots=True)
class Raw:
    """``char name[size]``: raw bytes compared byte for byte (session keys)."""

    size: int


@dataclass(frozen=True, slots=True)
class Message:
    """``WORD MessageLen, WCHAR Message[MessageLen/2]``; must be the last field."""


Kind = Int | WChars | Raw | Message

U8 = Annotated[int, Int("B")]
U16 = Annotated[int, Int("H")]
I32 = Annotated[int, Int("i")]
I64 = Annotated[int, Int("q")]
WStr16 = Annotated[str, WChars(16)]
WStr20 = Annotated[str, WChars(20)]
WStr32 = Annotated[str, WChars(32)]
Key32 = Annotated[bytes, Raw(32)]
Key64 = Annotated[bytes, Raw(64)]
Text = Annotated[str, Message()]


def encode_wstr(text: str, units: int) -> bytes:
    """Fixed WCHAR field: cut to ``units - 1`` code units so a NUL always ends it,
    never between the two halves of a surrogate pair."""
    data = text.encode("utf-16-le", errors="surrogatepass")[: (units - 1) * 2]
    if len(data) >= 2 and 0xD8 <= data[-1] <= 0xDB:  # a high surrogate left alone
        data = data[:-2]
    return data.ljust(units * 2, b"\0")


def decode_wstr(data: bytes) -> str:
    """Text up to the first NUL code unit. Bytes after it (the original chat
    dummy leaves garbage there) are ignored."""
    for i in range(0, len(data) - 1, 2):
        if data[i] == 0 and data[i + 1] == 0:
            data = data[:i]
            break
    return data.decode("utf-16-le", errors="replace")


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    kind: Kind

    @property
    def struct_code(self) -> str:
        kind = self.kind
        if isinstance(kind, Int):
            return kind.code
        if isinstance(kind, WChars):
            return f"{kind.units * 2}s"
        if isinstance(kind, Raw):
            return f"{kind.size}s"
        raise ValueError(f"{self.name}: a message field has no fixed struct code")


def fields_of(cls: type[tuple[object, ...]]) -> tuple[Field, ...]:
    """The wire fields of a packet class, from its annotations."""
    fields: list[Field] = []
    for name, hint in get_type_hints(cls, include_extras=True).items():
        kinds = [m for m in getattr(hint, "__metadata__", ()) if isinstance(m, Kind)]
        if len(kinds) != 1:
            raise TypeError(f"{cls.__name__}.{name}: annotate with a wire type (I64, WStr20, ...)")
        fields.append(Field(name, kinds[0]))
    return tuple(fields)


class PacketDef(Generic[P, T]):
    """One packet type: its number, name, layout and tuple class ``T``."""

    __slots__ = (
        "_make",
        "_wstr_indices",
        "cls",
        "fields",
        "has_message",
        "name",
        "struct",
        "type",
        "type_bytes",
    )

    def __init__(self, type_: int, name: str, cls: Callable[P, T]) -> None:
        self.type = type_
        self.name = name
        self.cls = cls
        self._make = cast(Callable[..., T], cls)
        self.fields = fields_of(cast(type[tuple[object, ...]], cls))
        fixed = [f for f in self.fields if not isinstance(f.kind, Message)]
        self.has_message = len(fixed) != len(self.fields)
        if self.has_message and not isinstance(self.fields[-1].kind, Message):
            raise ValueError(f"{name}: the message field must come last")
        self.struct = struct.Struct("<H" + "".join(f.struct_code for f in fixed))
        self.type_bytes = type_.to_bytes(2, "little")
        self._wstr_indices = tuple(
            i for i, f in enumerate(self.fields) if isinstance(f.kind, WChars)
        )

    def __repr__(self) -> str:
        return f"<PacketDef {self.type} {self.name}>"

    @property
    def size(self) -> int:
        """Size of the fixed part, type included (the whole payload when there is
        no message field)."""
        return self.struct.size

    def build(self, *args: P.args, **kwargs: P.kwargs) -> bytes:
        """Payload bytes from field values (those of the packet's tuple class)."""
        return self.encode(self.cls(*args, **kwargs))

    def encode(self, packet: T) -> bytes:
        """Payload bytes of a packet tuple."""
        packed: list[object] = []
        tail = b""
        for f, v in zip(self.fields, packet, strict=True):
            kind = f.kind
            if isinstance(kind, WChars):
                packed.append(encode_wstr(cast(str, v), kind.units))
            elif isinstance(kind, Raw):
                raw = bytes(cast(bytes, v))
                if len(raw) != kind.size:
                    raise ValueError(
                        f"{self.name}.{f.name} must be {kind.size} bytes, got {len(raw)}"
                    )
                packed.append(raw)
            elif isinstance(kind, Message):
                text = cast(str, v).encode("utf-16-le", errors="surrogatepass")
                tail = len(text).to_bytes(2, "little") + text
            else:
                packed.append(v)
        return self.struct.pack(self.type, *packed) + tail

    def parse(self, payload: bytes) -> T:
        """The packet's fields (text decoded, keys as bytes). Raises PacketError
        when the payload's type, size or message length is wrong."""
        size = self.struct.size
        if len(payload) < size or payload[:2] != self.type_bytes:
            raise PacketError(f"{self.name}: {len(payload)} bytes, expected {size}", "bad_size")
        values: list[object] = list(self.struct.unpack_from(payload))
        del values[0]
        if self.has_message:
            if len(payload) < size + 2:
                raise PacketError(f"{self.name}: no message length", "bad_size")
            mlen = payload[size] | (payload[size + 1] << 8)
            if mlen % 2 or len(payload) != size + 2 + mlen:
                raise PacketError(
                    f"{self.name}: message length {mlen} does not match "
                    f"{len(payload) - size - 2} bytes",
                    "bad_size",
                )
            values.append(payload[size + 2 :].decode("utf-16-le", errors="replace"))
        elif len(payload) != size:
            raise PacketError(
                f"{self.name}: {len(payload)} bytes, expected {size}", "trailing_bytes"
            )
        for i in self._wstr_indices:
            values[i] = decode_wstr(cast(bytes, values[i]))
        return self._make(*values)


BY_TYPE: dict[int, PacketDef[..., tuple[object, ...]]] = {}


def _define(type_: int, name: str, cls: Callable[P, T]) -> PacketDef[P, T]:
    if type_ in BY_TYPE:
        raise ValueError(f"packet type {type_} defined twice")
    packet = PacketDef(type_, name, cls)
    BY_TYPE[type_] = cast(PacketDef[..., tuple[object, ...]], packet)
    return packet


class Empty(NamedTuple):
    """A packet with no field after its type (heartbeats)."""


# --- chat server (client <-> chat, Net frame) -----------------------------------


class CsChatReqLogin(NamedTuple):
    AccountNo: I64
    ID: WStr20
    Nickname: WStr20
    SessionKey: Key64


class CsChatResLogin(NamedTuple):
    Status: U8
    AccountNo: I64


class CsChatSectorMove(NamedTuple):
    AccountNo: I64
    SectorX: U16
    SectorY: U16


class CsChatReqMessage(NamedTuple):
    AccountNo: I64
    Message: Text


class CsChatResMessage(NamedTuple):
    AccountNo: I64
    ID: WStr20
    Nickname: WStr20
    Message: Text


# --- login server (client <-> login, Net frame) ---------------------------------


class CsLoginReqLogin(NamedTuple):
    AccountNo: I64
    SessionKey: Key64


class CsLoginResLogin(NamedTuple):
    AccountNo: I64
    Status: U8
    ID: WStr20
    Nickname: WStr20
    GameServerIP: WStr16
    GameServerPort: U16
    ChatServerIP: WStr16
    ChatServerPort: U16


# --- game (echo) server (client <-> game, Net frame) ----------------------------


class CsGameReqLogin(NamedTuple):
    AccountNo: I64
    SessionKey: Key64
    Version: I32


class CsGameResLogin(NamedTuple):
    Status: U8
    AccountNo: I64


class CsGameEcho(NamedTuple):
    AccountNo: I64
    SendTick: I64


# --- server <-> server (LAN frame) ------------------------------------------------


class SsLoginServerLogin(NamedTuple):
    ServerType: U8
    ServerName: WStr32


class SsReqNewClientLogin(NamedTuple):
    AccountNo: I64
    SessionKey: Key64
    Parameter: I64


class SsResNewClientLogin(NamedTuple):
    AccountNo: I64
    Parameter: I64


# --- monitoring: servers -> monitoring server (LAN frame) -------------------------


class SsMonitorLogin(NamedTuple):
    #: 1 login, 2 game, 3 chat (0 is the monitoring server itself).
    ServerNo: I32


class SsMonitorDataUpdate(NamedTuple):
    DataType: U8
    DataValue: I32
    #: Unix seconds.
    TimeStamp: I32


# --- monitoring: tools <-> monitoring server (Net frame, code 109, keys 30/91) -----


class CsMonitorToolReqLogin(NamedTuple):
    LoginSessionKey: Key32


class CsMonitorToolResLogin(NamedTuple):
    #: 1 ok; 0 and the server disconnects.
    Status: U8


class CsMonitorToolDataUpdate(NamedTuple):
    ServerNo: U8
    DataType: U8
    DataValue: I32
    TimeStamp: I32


# --- serverlink's own LAN additions (never sent to an original C++ server) ---------
# A serverlink game/chat server sends SS_LINK_STATUS right after registering and
# then every HeartbeatMs; the login server answers each with SS_LINK_PING (the
# first one also says: registration accepted). Either side drops a link that
# stays silent for three heartbeats. An original server sends neither and gets
# none: it is kept while its TCP connection lives (with keepalive probes).


class SsLinkStatus(NamedTuple):
    #: The ``status`` value marking accounts in game there (0: it claims none).
    StatusId: I32
    Players: I32
    #: Players it takes at most (0: unknown).
    Capacity: I32
    #: 0 serving; 1 draining: takes no new players (existing ones stay);
    #: 2 leaving: a graceful stop, the link closes next.
    Draining: U8
    HeartbeatMs: I32


class SsKeyStoreProof(NamedTuple):
    """A game/chat server on a shared key store (Redis), once accepted: a random
    token it has just written there. A login server on the same store reads it
    back, then puts that server's keys there itself (no hand-off round trip)."""

    Proof: Key32


# --- the catalog: type number and name -> layout -----------------------------------
# One block after all the layouts, to read against PROTOCOL.md's tables.

# chat server (client <-> chat, Net frame)
CS_CHAT_REQ_LOGIN = _define(1, "CS_CHAT_REQ_LOGIN", CsChatReqLogin)
CS_CHAT_RES_LOGIN = _define(2, "CS_CHAT_RES_LOGIN", CsChatResLogin)
CS_CHAT_REQ_SECTOR_MOVE = _define(3, "CS_CHAT_REQ_SECTOR_MOVE", CsChatSectorMove)
CS_CHAT_RES_SECTOR_MOVE = _define(4, "CS_CHAT_RES_SECTOR_MOVE", CsChatSectorMove)
CS_CHAT_REQ_MESSAGE = _define(5, "CS_CHAT_REQ_MESSAGE", CsChatReqMessage)
CS_CHAT_RES_MESSAGE = _define(6, "CS_CHAT_RES_MESSAGE", CsChatResMessage)
CS_CHAT_REQ_HEARTBEAT = _define(7, "CS_CHAT_REQ_HEARTBEAT", Empty)

# login server (client <-> login, Net frame)
CS_LOGIN_REQ_LOGIN = _define(101, "CS_LOGIN_REQ_LOGIN", CsLoginReqLogin)
CS_LOGIN_RES_LOGIN = _define(102, "CS_LOGIN_RES_LOGIN", CsLoginResLogin)

# game (echo) server (client <-> game, Net frame)
CS_GAME_REQ_LOGIN = _define(1001, "CS_GAME_REQ_LOGIN", CsGameReqLogin)
CS_GAME_RES_LOGIN = _define(1002, "CS_GAME_RES_LOGIN", CsGameResLogin)
CS_GAME_REQ_ECHO = _define(5000, "CS_GAME_REQ_ECHO", CsGameEcho)
CS_GAME_RES_ECHO = _define(5001, "CS_GAME_RES_ECHO", CsGameEcho)
CS_GAME_REQ_HEARTBEAT = _define(5002, "CS_GAME_REQ_HEARTBEAT", Empty)

# server <-> server (LAN frame)
SS_LOGINSERVER_LOGIN = _define(10001, "SS_LOGINSERVER_LOGIN", SsLoginServerLogin)
SS_REQ_NEW_CLIENT_LOGIN = _define(10002, "SS_REQ_NEW_CLIENT_LOGIN", SsReqNewClientLogin)
SS_RES_NEW_CLIENT_LOGIN = _define(10003, "SS_RES_NEW_CLIENT_LOGIN", SsResNewClientLogin)

# monitoring: servers -> monitoring server (LAN frame)
SS_MONITOR_LOGIN = _define(20001, "SS_MONITOR_LOGIN", SsMonitorLogin)
SS_MONITOR_DATA_UPDATE = _define(20002, "SS_MONITOR_DATA_UPDATE", SsMonitorDataUpdate)

# monitoring: tools <-> monitoring server (Net frame, code 109, keys 30/91)
CS_MONITOR_TOOL_REQ_LOGIN = _define(25001, "CS_MONITOR_TOOL_REQ_LOGIN", CsMonitorToolReqLogin)
CS_MONITOR_TOOL_RES_LOGIN = _define(25002, "CS_MONITOR_TOOL_RES_LOGIN", CsMonitorToolResLogin)
CS_MONITOR_TOOL_DATA_UPDATE = _define(25003, "CS_MONITOR_TOOL_DATA_UPDATE", CsMonitorToolDataUpdate)

# serverlink's own LAN additions (never sent to an original C++ server)
SS_LINK_STATUS = _define(19001, "SS_LINK_STATUS", SsLinkStatus)
SS_LINK_PING = _define(19002, "SS_LINK_PING", Empty)
SS_KEY_STORE_PROOF = _define(19003, "SS_KEY_STORE_PROOF", SsKeyStoreProof)


def packet_type(payload: bytes) -> int:
    """The leading ``WORD Type`` of a payload."""
    if len(payload) < 2:
        raise PacketError(f"payload of {len(payload)} bytes has no type", "no_type")
    return payload[0] | (payload[1] << 8)


def parse_any(payload: bytes) -> tuple[object, ...]:
    """Parse a payload of any catalog type (tests, tools; not the hot path)."""
    t = packet_type(payload)
    packet = BY_TYPE.get(t)
    if packet is None:
        raise PacketError(f"unknown packet type {t}", "unknown_type")
    return packet.parse(payload)
