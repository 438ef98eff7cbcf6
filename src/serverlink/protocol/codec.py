"""Frame codecs for the two framings of PROTOCOL.md. Pure bytes: no sockets here.

Net frame (client <-> server)::

    u8 code | u16 len | u8 randkey | u8 checksum | len bytes of encoded payload

Every encoded byte is ``payload_byte ^ randkey_field`` (``randkey_field = R ^ K``)
and ``checksum_field = C ^ randkey_field`` where C is the payload's byte sum
mod 256.  So decoding is one ``bytes.translate`` with one of 256 precomputed XOR
tables plus one ``sum``: both run in C, which is what keeps per-packet cost low.

LAN frame (server <-> server)::

    u16 len | len bytes of payload, not encoded
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

DEFAULT_CODE = 119
DEFAULT_KEY1 = 50
DEFAULT_KEY2 = 132
DEFAULT_MAX_PAYLOAD = 1024

NET_HEADER_SIZE = 5
LAN_HEADER_SIZE = 2

#: XOR_TABLES[x] maps every byte b to b ^ x: ``data.translate(XOR_TABLES[x])``
#: XORs a whole buffer with x in one C call.
XOR_TABLES: tuple[bytes, ...] = tuple(bytes(b ^ x for b in range(256)) for x in range(256))

_NET_HEADER = struct.Struct("<BHBB")
_pack_net_header = _NET_HEADER.pack
_unpack_net_header = _NET_HEADER.unpack_from
_adler32 = zlib.adler32

#: Up to this payload size the byte sum is taken from zlib.adler32, whose low
#: half is 1 + sum(bytes) while that sum stays below 65521 (255 * 256 < 65520):
#: one C call instead of iterating bytes in the interpreter (3x faster for an echo).
ADLER_SUM_LIMIT = 256


def byte_sum(data: bytes) -> int:
    """Sum of the bytes mod 256: the frame checksum."""
    if len(data) <= ADLER_SUM_LIMIT:
        return (_adler32(data) - 1) & 0xFF
    return sum(data) & 0xFF


class FrameError(ValueError):
    """A frame that a well-behaved peer never sends. ``reason`` is a short,
    stable label used as a counter key ("bad_code", "too_long", ...)."""

    reason = "bad_frame"


class BadCodeError(FrameError):
    reason = "bad_code"


class FrameTooLongError(FrameError):
    reason = "too_long"


class BadChecksumError(FrameError):
    reason = "bad_checksum"


class TruncatedFrameError(FrameError):
    """Raised only by the one-shot decoders; stream splitters wait for more bytes."""

    reason = "truncated"


@dataclass(frozen=True, slots=True)
class NetCodec:
    """Net framing parameters, fixed per deployment (the original's config keys
    PACKET_CODE, PACKET_KEY1, PACKET_KEY2)."""

    code: int = DEFAULT_CODE
    key1: int = DEFAULT_KEY1
    key2: int = DEFAULT_KEY2
    max_payload: int = DEFAULT_MAX_PAYLOAD

    def __post_init__(self) -> None:
        for name in ("code", "key1", "key2"):
            value = getattr(self, name)
            if not 0 <= value <= 255:
                raise ValueError(f"{name} must be a byte (0-255), got {value}")
        if not 2 <= self.max_payload <= 0xFFFF:
            raise ValueError(f"max_payload must be 2-65535, got {self.max_payload}")

    @property
    def key(self) -> int:
        return self.key1 ^ self.key2

    def encode_frame(self, payload: bytes, rand: int | None = None) -> bytes:
        """Encode one payload. ``rand`` is the random byte R of PROTOCOL.md
        (picked at random when None); a test passes it to reproduce a capture."""
        if rand is None:
            rand = os.urandom(1)[0]
        return encode_net_frame(payload, self.code, rand ^ self.key)

    def decode_frame(self, frame: bytes) -> bytes:
        """Decode exactly one whole frame and return its payload."""
        payloads, consumed = self.split_frames(frame)
        if not payloads:
            raise TruncatedFrameError(f"need more than {len(frame)} bytes for a whole frame")
        if consumed != len(frame) or len(payloads) != 1:
            raise FrameError(f"{len(frame) - consumed} bytes after the frame")
        return payloads[0]

    def split_frames(self, data: bytes, offset: int = 0) -> tuple[list[bytes], int]:
        """Decode every complete frame in ``data[offset:]``.

        Returns (payloads, end offset of the last complete frame); bytes past
        that offset are an incomplete frame to keep for the next read.
        Raises FrameError on the first bad frame.
        """
        return split_net_frames(data, offset, self.code, self.max_payload)

    def iter_frames(self, data: bytes) -> Iterator[bytes]:
        yield from self.split_frames(data)[0]


def encode_net_frame(payload: bytes, code: int, randkey_field: int) -> bytes:
    """Encode with the header's randkey byte given directly (``R ^ K``)."""
    n = len(payload)
    checksum = ((_adler32(payload) - 1) if n <= ADLER_SUM_LIMIT else sum(payload)) & 0xFF
    return _pack_net_header(code, n, randkey_field, checksum ^ randkey_field) + payload.translate(
        XOR_TABLES[randkey_field]
    )


def split_net_frames(
    data: bytes, offset: int, code: int, max_payload: int
) -> tuple[list[bytes], int]:
    """The Net frame splitter and decoder (see NetCodec.split_frames)."""
    out: list[bytes] = []
    append = out.append
    tables = XOR_TABLES
    unpack = _unpack_net_header
    adler = _adler32
    n = len(data)
    off = offset
    while n - off >= NET_HEADER_SIZE:
        frame_code, length, rk, checksum = unpack(data, off)
        if frame_code != code:
            raise BadCodeError(f"frame code {frame_code} where {code} was expected")
        if length > max_payload:
            raise FrameTooLongError(f"payload length {length} over the limit {max_payload}")
        end = off + NET_HEADER_SIZE + length
        if end > n:
            break
        payload = data[off + NET_HEADER_SIZE : end].translate(tables[rk])
        if ((adler(payload) - 1) if length <= ADLER_SUM_LIMIT else sum(payload)) & 0xFF != (
            checksum ^ rk
        ):
            raise BadChecksumError("checksum mismatch")
        append(payload)
        off = end
    return out, off


def encode_lan_frame(payload: bytes) -> bytes:
    n = len(payload)
    if n > 0xFFFF:
        raise ValueError(f"LAN payload of {n} bytes exceeds 65535")
    return n.to_bytes(2, "little") + payload


def split_lan_frames(data: bytes, offset: int, max_payload: int) -> tuple[list[bytes], int]:
    """Every complete LAN frame in ``data[offset:]``: (payloads, end offset)."""
    out: list[bytes] = []
    n = len(data)
    off = offset
    while n - off >= LAN_HEADER_SIZE:
        length = data[off] | (data[off + 1] << 8)
        if length > max_payload:
            raise FrameTooLongError(f"payload length {length} over the limit {max_payload}")
        end = off + LAN_HEADER_SIZE + length
        if end > n:
            break
        out.append(data[off + LAN_HEADER_SIZE : end])
        off = end
    return out, off


def decode_lan_frame(frame: bytes, max_payload: int = 0xFFFF) -> bytes:
    payloads, consumed = split_lan_frames(frame, 0, max_payload)
    if not payloads:
        raise TruncatedFrameError(f"need more than {len(frame)} bytes for a whole frame")
    if consumed != len(frame) or len(payloads) != 1:
        raise FrameError(f"{len(frame) - consumed} bytes after the frame")
    return payloads[0]
