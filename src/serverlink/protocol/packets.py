"""The packet catalog of PROTOCOL.md: every packet is defined here, once.

A ``PacketDef`` knows its type number, its field layout and a precompiled
``struct.Struct`` for the fixed part (the ``WORD Type`` included), so servers
and the dummy client build and parse with the same definition.  Hot handlers
may use ``PacketDef.struct`` / ``PacketDef.size`` directly instead of the
generic ``parse`` to skip building a named tuple per packet.
"""

from __future__ import annotations

import struct
from collections import namedtuple
from dataclasses import dataclass, field
from typing import Any

# Field kinds: integer struct codes, fixed UTF-16 text, raw bytes, and the
# variable-length chat message (WORD byte length + that many bytes).
_INT_CODES = {"u8": "B", "u16": "H", "i32": "i", "i64": "q"}


class PacketError(ValueError):
    """A payload that does not match its packet's layout. ``reason`` is a
    stable counter label."""

    def __init__(self, message: str, reason: str = "bad_layout") -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    kind: str  # "u8" | "u16" | "i32" | "i64" | "wstr" | "raw" | "message"
    length: int = 0  # code units for wstr, bytes for raw

    @property
    def struct_code(self) -> str:
        if self.kind in _INT_CODES:
            return _INT_CODES[self.kind]
        if self.kind == "wstr":
            return f"{self.length * 2}s"
        if self.kind == "raw":
            return f"{self.length}s"
        raise ValueError(f"{self.kind} has no fixed struct code")


def u8(name: str) -> Field:
    return Field(name, "u8")


def u16(name: str) -> Field:
    return Field(name, "u16")


def i32(name: str) -> Field:
    return Field(name, "i32")


def i64(name: str) -> Field:
    return Field(name, "i64")


def wstr(name: str, units: int) -> Field:
    """``WCHAR name[units]``: UTF-16LE, NUL padded, text ends at the first NUL."""
    return Field(name, "wstr", units)


def raw(name: str, size: int) -> Field:
    """``char name[size]``: raw bytes compared byte for byte (session keys)."""
    return Field(name, "raw", size)


def message(name: str) -> Field:
    """``WORD MessageLen, WCHAR Message[MessageLen/2]``; must be the last field."""
    return Field(name, "message")


def encode_wstr(text: str, units: int) -> bytes:
    """Fixed WCHAR field: cut to ``units - 1`` code units so a NUL always ends it."""
    data = text.encode("utf-16-le")[: (units - 1) * 2]
    return data.ljust(units * 2, b"\0")


def decode_wstr(data: bytes) -> str:
    """Text up to the first NUL code unit. Bytes after it (the original chat
    dummy leaves garbage there) are ignored."""
    for i in range(0, len(data) - 1, 2):
        if data[i] == 0 and data[i + 1] == 0:
            data = data[:i]
            break
    return data.decode("utf-16-le", errors="replace")


@dataclass(frozen=True)
class PacketDef:
    type: int
    name: str
    fields: tuple[Field, ...]
    struct: struct.Struct = field(init=False, repr=False, compare=False)
    tuple_type: Any = field(init=False, repr=False, compare=False)
    has_message: bool = field(init=False, repr=False, compare=False)
    type_bytes: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        fixed = [f for f in self.fields if f.kind != "message"]
        has_message = len(fixed) != len(self.fields)
        if has_message and self.fields[-1].kind != "message":
            raise ValueError(f"{self.name}: the message field must come last")
        fmt = "<H" + "".join(f.struct_code for f in fixed)
        object.__setattr__(self, "struct", struct.Struct(fmt))
        object.__setattr__(self, "has_message", has_message)
        object.__setattr__(self, "type_bytes", self.type.to_bytes(2, "little"))
        object.__setattr__(
            self,
            "tuple_type",
            namedtuple(self.name, [f.name for f in self.fields]),
        )

    @property
    def size(self) -> int:
        """Size of the fixed part, type included (the whole payload when there is
        no message field)."""
        return self.struct.size

    def build(self, *args: Any, **kwargs: Any) -> bytes:
        """Payload bytes from field values, positional in catalog order or by name."""
        values = list(args)
        for f in self.fields[len(args) :]:
            if f.name not in kwargs:
                raise TypeError(f"{self.name}: missing field {f.name}")
            values.append(kwargs.pop(f.name))
        if kwargs:
            raise TypeError(f"{self.name}: unknown fields {sorted(kwargs)}")
        packed: list[Any] = []
        tail = b""
        for f, v in zip(self.fields, values, strict=True):
            if f.kind == "wstr":
                packed.append(encode_wstr(v, f.length) if isinstance(v, str) else bytes(v))
            elif f.kind == "raw":
                b = v.encode("latin-1") if isinstance(v, str) else bytes(v)
                if len(b) != f.length:
                    raise ValueError(f"{self.name}.{f.name} must be {f.length} bytes, got {len(b)}")
                packed.append(b)
            elif f.kind == "message":
                b = v.encode("utf-16-le") if isinstance(v, str) else bytes(v)
                tail = len(b).to_bytes(2, "little") + b
            else:
                packed.append(v)
        return self.struct.pack(self.type, *packed) + tail

    def parse(self, payload: bytes) -> Any:
        """Named tuple of the fields (text decoded, keys as bytes). Raises
        PacketError when the payload's type, size or message length is wrong."""
        size = self.struct.size
        if len(payload) < size or payload[:2] != self.type_bytes:
            raise PacketError(f"{self.name}: {len(payload)} bytes, expected {size}", "bad_size")
        values = list(self.struct.unpack_from(payload))[1:]
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
        for i, f in enumerate(self.fields):
            if f.kind == "wstr":
                values[i] = decode_wstr(values[i])
        return self.tuple_type(*values)


def _define(type_: int, name: str, *fields: Field) -> PacketDef:
    packet = PacketDef(type_, name, tuple(fields))
    if type_ in BY_TYPE:
        raise ValueError(f"packet type {type_} defined twice")
    BY_TYPE[type_] = packet
    return packet


BY_TYPE: dict[int, PacketDef] = {}

# --- chat server (client <-> chat, Net frame) -----------------------------------
CS_CHAT_REQ_LOGIN = _define(
    1,
    "CS_CHAT_REQ_LOGIN",
    i64("AccountNo"),
    wstr("ID", 20),
    wstr("Nickname", 20),
    raw("SessionKey", 64),
)
CS_CHAT_RES_LOGIN = _define(2, "CS_CHAT_RES_LOGIN", u8("Status"), i64("AccountNo"))
CS_CHAT_REQ_SECTOR_MOVE = _define(
    3, "CS_CHAT_REQ_SECTOR_MOVE", i64("AccountNo"), u16("SectorX"), u16("SectorY")
)
CS_CHAT_RES_SECTOR_MOVE = _define(
    4, "CS_CHAT_RES_SECTOR_MOVE", i64("AccountNo"), u16("SectorX"), u16("SectorY")
)
CS_CHAT_REQ_MESSAGE = _define(5, "CS_CHAT_REQ_MESSAGE", i64("AccountNo"), message("Message"))
CS_CHAT_RES_MESSAGE = _define(
    6,
    "CS_CHAT_RES_MESSAGE",
    i64("AccountNo"),
    wstr("ID", 20),
    wstr("Nickname", 20),
    message("Message"),
)
CS_CHAT_REQ_HEARTBEAT = _define(7, "CS_CHAT_REQ_HEARTBEAT")

# --- login server (client <-> login, Net frame) ---------------------------------
CS_LOGIN_REQ_LOGIN = _define(101, "CS_LOGIN_REQ_LOGIN", i64("AccountNo"), raw("SessionKey", 64))
CS_LOGIN_RES_LOGIN = _define(
    102,
    "CS_LOGIN_RES_LOGIN",
    i64("AccountNo"),
    u8("Status"),
    wstr("ID", 20),
    wstr("Nickname", 20),
    wstr("GameServerIP", 16),
    u16("GameServerPort"),
    wstr("ChatServerIP", 16),
    u16("ChatServerPort"),
)

# --- game (echo) server (client <-> game, Net frame) ----------------------------
CS_GAME_REQ_LOGIN = _define(
    1001, "CS_GAME_REQ_LOGIN", i64("AccountNo"), raw("SessionKey", 64), i32("Version")
)
CS_GAME_RES_LOGIN = _define(1002, "CS_GAME_RES_LOGIN", u8("Status"), i64("AccountNo"))
CS_GAME_REQ_ECHO = _define(5000, "CS_GAME_REQ_ECHO", i64("AccountNo"), i64("SendTick"))
CS_GAME_RES_ECHO = _define(5001, "CS_GAME_RES_ECHO", i64("AccountNo"), i64("SendTick"))
CS_GAME_REQ_HEARTBEAT = _define(5002, "CS_GAME_REQ_HEARTBEAT")

# --- server <-> server (LAN frame) ------------------------------------------------
SS_LOGINSERVER_LOGIN = _define(
    10001, "SS_LOGINSERVER_LOGIN", u8("ServerType"), wstr("ServerName", 32)
)
SS_REQ_NEW_CLIENT_LOGIN = _define(
    10002, "SS_REQ_NEW_CLIENT_LOGIN", i64("AccountNo"), raw("SessionKey", 64), i64("Parameter")
)
SS_RES_NEW_CLIENT_LOGIN = _define(
    10003, "SS_RES_NEW_CLIENT_LOGIN", i64("AccountNo"), i64("Parameter")
)


def packet_type(payload: bytes) -> int:
    """The leading ``WORD Type`` of a payload."""
    if len(payload) < 2:
        raise PacketError(f"payload of {len(payload)} bytes has no type", "no_type")
    return payload[0] | (payload[1] << 8)


def parse_any(payload: bytes) -> Any:
    """Parse a payload of any catalog type (tests, tools; not the hot path)."""
    t = packet_type(payload)
    packet = BY_TYPE.get(t)
    if packet is None:
        raise PacketError(f"unknown packet type {t}", "unknown_type")
    return packet.parse(payload)
