"""Framings bound to one deployment's parameters.

A ``Framing`` binds a codec's splitter and encoder to fixed parameters (the Net
frame's code and keys, the LAN frame's payload limit), so a session calls one
function per read (``net.session.Session.read_frames``, which keeps the
incomplete tail of a read for the next) and one per reply. Pure bytes, no
sockets.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from serverlink.protocol.codec import (
    LAN_HEADER_SIZE,
    NET_HEADER_SIZE,
    NetCodec,
    encode_lan_frame,
    encode_net_frame,
    split_lan_frames,
    split_net_frames,
)

Splitter = Callable[[bytes, int], tuple[list[bytes], int]]
Encoder = Callable[[bytes], bytes]


@dataclass(frozen=True, slots=True)
class Framing:
    name: str
    split: Splitter
    encode: Encoder
    header_size: int
    max_payload: int


def net_framing(codec: NetCodec) -> Framing:
    code, max_payload = codec.code, codec.max_payload
    getrandbits = random.getrandbits  # R is obfuscation, not security: no urandom syscall per frame

    def split(data: bytes, offset: int) -> tuple[list[bytes], int]:
        return split_net_frames(data, offset, code, max_payload)

    def encode(payload: bytes) -> bytes:
        return encode_net_frame(payload, code, getrandbits(8))

    return Framing("net", split, encode, NET_HEADER_SIZE, max_payload)


#: LAN payloads are small (the largest catalog packet is 82 bytes).
DEFAULT_LAN_MAX_PAYLOAD = 8192


def lan_framing(max_payload: int = DEFAULT_LAN_MAX_PAYLOAD) -> Framing:
    def split(data: bytes, offset: int) -> tuple[list[bytes], int]:
        return split_lan_frames(data, offset, max_payload)

    return Framing("lan", split, encode_lan_frame, LAN_HEADER_SIZE, max_payload)
