"""Framing adapters: bind a codec's splitter and encoder to one deployment's
parameters, so a session calls one function per read and one per reply."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from serverlink.protocol.codec import (
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

    return Framing("net", split, encode, 5, max_payload)


def lan_framing(max_payload: int = 8192) -> Framing:
    def split(data: bytes, offset: int) -> tuple[list[bytes], int]:
        return split_lan_frames(data, offset, max_payload)

    return Framing("lan", split, encode_lan_frame, 2, max_payload)
