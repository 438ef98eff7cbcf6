"""Wire protocol: frame codecs, packet layouts, status codes. No I/O here."""

from serverlink.protocol.codec import (
    BadChecksumError,
    BadCodeError,
    FrameError,
    FrameTooLongError,
    NetCodec,
    TruncatedFrameError,
    encode_lan_frame,
    encode_net_frame,
    split_lan_frames,
    split_net_frames,
)
from serverlink.protocol.packets import BY_TYPE, PacketDef, PacketError, packet_type, parse_any
from serverlink.protocol.status import ChatLoginStatus, GameLoginStatus, LoginStatus, ServerType

__all__ = [
    "BY_TYPE",
    "BadChecksumError",
    "BadCodeError",
    "ChatLoginStatus",
    "FrameError",
    "FrameTooLongError",
    "GameLoginStatus",
    "LoginStatus",
    "NetCodec",
    "PacketDef",
    "PacketError",
    "ServerType",
    "TruncatedFrameError",
    "encode_lan_frame",
    "encode_net_frame",
    "packet_type",
    "parse_any",
    "split_lan_frames",
    "split_net_frames",
]
