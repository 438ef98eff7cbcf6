"""Net and LAN frame codecs, packet layouts and the echo batch fast path."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from serverlink.protocol import packets as pk
from serverlink.protocol.codec import (
    BadChecksumError,
    BadCodeError,
    FrameError,
    FrameTooLongError,
    NetCodec,
    TruncatedFrameError,
    byte_sum,
    decode_lan_frame,
    encode_lan_frame,
    split_lan_frames,
)
from serverlink.protocol.echo import ECHO_FRAME_SIZE, answer_echo_batch

VECTORS = Path(__file__).parent / "vectors"
CODEC = NetCodec()


def _frames(name: str) -> list[dict[str, object]]:
    data = json.loads((VECTORS / name).read_text())
    assert (data["code"], data["key1"], data["key2"]) == (119, 50, 132)
    frames = data["frames"]
    assert isinstance(frames, list) and frames
    return frames


ALL_VECTORS = [
    pytest.param(f, id=f"{name.split('_')[1]}-{i}-type{f['type']}")
    for name in ("original_game_dummy_frames.json", "original_chat_dummy_frames.json")
    for i, f in enumerate(_frames(name))
]


@pytest.mark.parametrize("vector", ALL_VECTORS)
def test_vector_decodes_to_payload_and_reencodes_to_same_bytes(vector: dict[str, object]) -> None:
    frame = bytes.fromhex(str(vector["frame_hex"]))
    payload = CODEC.decode_frame(frame)
    assert payload.hex() == vector["payload_hex"]
    assert pk.packet_type(payload) == vector["type"]
    rand = int(str(vector["randkey_field"])) ^ CODEC.key
    assert CODEC.encode_frame(payload, rand) == frame


@pytest.mark.parametrize("vector", ALL_VECTORS)
def test_vector_payload_parses_with_catalog_layout(vector: dict[str, object]) -> None:
    payload = bytes.fromhex(str(vector["payload_hex"]))
    packet = pk.BY_TYPE[int(str(vector["type"]))]
    fields = packet.parse(payload)
    if packet is not pk.CS_CHAT_REQ_LOGIN:
        # Every layout but the chat login's round-trips exactly; that one carries
        # garbage after the NUL of ID/Nickname, which text decoding drops.
        assert packet.build(*fields) == payload


def test_vector_game_login_fields() -> None:
    frames = _frames("original_game_dummy_frames.json")
    login = pk.CS_GAME_REQ_LOGIN.parse(
        CODEC.decode_frame(bytes.fromhex(str(frames[0]["frame_hex"])))
    )
    assert login.AccountNo == 1 and login.Version == 1 and len(login.SessionKey) == 64
    echo = pk.CS_GAME_REQ_ECHO.parse(CODEC.decode_frame(bytes.fromhex(str(frames[3]["frame_hex"]))))
    assert echo.AccountNo == 1


def test_chat_login_text_ends_at_first_nul() -> None:
    frames = _frames("original_chat_dummy_frames.json")
    first = next(f for f in frames if f["type"] == 1)
    login = pk.CS_CHAT_REQ_LOGIN.parse(bytes.fromhex(str(first["payload_hex"])))
    assert login.ID.startswith("ID_") and "\0" not in login.ID
    assert login.Nickname.startswith("NICK_") and "\0" not in login.Nickname


# --- property-based round trips ---------------------------------------------------------


@given(payload=st.binary(min_size=0, max_size=1024), rand=st.integers(0, 255))
def test_net_round_trip(payload: bytes, rand: int) -> None:
    frame = CODEC.encode_frame(payload, rand)
    assert len(frame) == len(payload) + 5
    assert CODEC.decode_frame(frame) == payload


@given(
    payloads=st.lists(st.binary(min_size=0, max_size=300), min_size=1, max_size=20),
    code=st.integers(0, 255),
    key1=st.integers(0, 255),
    key2=st.integers(0, 255),
)
def test_net_stream_of_frames_splits_back(
    payloads: list[bytes], code: int, key1: int, key2: int
) -> None:
    codec = NetCodec(code, key1, key2)
    stream = b"".join(codec.encode_frame(p) for p in payloads)
    decoded, end = codec.split_frames(stream)
    assert decoded == payloads and end == len(stream)


@given(payloads=st.lists(st.binary(max_size=2000), min_size=1, max_size=10))
def test_lan_round_trip(payloads: list[bytes]) -> None:
    stream = b"".join(encode_lan_frame(p) for p in payloads)
    decoded, end = split_lan_frames(stream, 0, 0xFFFF)
    assert decoded == payloads and end == len(stream)
    assert decode_lan_frame(encode_lan_frame(payloads[0])) == payloads[0]


@given(data=st.binary(max_size=1000))
def test_byte_sum_matches_sum_mod_256(data: bytes) -> None:
    assert byte_sum(data) == sum(data) % 256


@given(account=st.integers(-(2**63), 2**63 - 1), tick=st.integers(-(2**63), 2**63 - 1))
def test_packet_build_parse_round_trip(account: int, tick: int) -> None:
    payload = pk.CS_GAME_REQ_ECHO.build(account, tick)
    assert pk.CS_GAME_REQ_ECHO.parse(payload) == (account, tick)
    key = bytes(random.getrandbits(8) for _ in range(64))
    login = pk.SS_REQ_NEW_CLIENT_LOGIN.build(AccountNo=account, SessionKey=key, Parameter=tick)
    assert pk.parse_any(login) == (account, key, tick)


@given(text=st.text(max_size=40))
def test_wchar_fields_cut_to_fit_with_nul(text: str) -> None:
    payload = pk.CS_CHAT_RES_LOGIN.build(1, 7)
    assert pk.CS_CHAT_RES_LOGIN.parse(payload) == (1, 7)
    msg = pk.CS_CHAT_RES_MESSAGE.build(5, text, "nick", text)
    parsed = pk.CS_CHAT_RES_MESSAGE.parse(msg)
    assert len(parsed.ID.encode("utf-16-le")) <= 38  # 19 units + NUL
    assert parsed.Message == text


# --- corruption is detected -----------------------------------------------------------------


def _echo_frame(rand: int = 77) -> bytes:
    return CODEC.encode_frame(pk.CS_GAME_REQ_ECHO.build(1, 123456789), rand)


def test_wrong_code_is_rejected() -> None:
    frame = bytearray(_echo_frame())
    frame[0] = 118
    with pytest.raises(BadCodeError):
        CODEC.decode_frame(bytes(frame))


def test_length_over_limit_is_rejected_before_the_payload_arrives() -> None:
    codec = NetCodec(max_payload=100)
    header = bytes([119]) + (101).to_bytes(2, "little") + b"\x00\x00"
    with pytest.raises(FrameTooLongError):
        codec.split_frames(header)  # header alone is enough to refuse


@pytest.mark.parametrize("position", range(4, ECHO_FRAME_SIZE))
def test_any_flipped_checksum_or_payload_bit_fails_the_checksum(position: int) -> None:
    frame = bytearray(_echo_frame())
    frame[position] ^= 0x01
    with pytest.raises(BadChecksumError):
        CODEC.decode_frame(bytes(frame))


def test_every_truncation_point_waits_for_more_and_then_decodes() -> None:
    frames = [_echo_frame(r) for r in (1, 2, 3)] + [
        CODEC.encode_frame(pk.CS_GAME_REQ_HEARTBEAT.build(), 9)
    ]
    stream = b"".join(frames)
    for cut in range(len(stream) + 1):
        first, end = CODEC.split_frames(stream[:cut])
        rest, end2 = CODEC.split_frames(stream[end:])
        assert first + rest == [CODEC.decode_frame(f) for f in frames]
        assert end + end2 == len(stream)
        if cut < len(frames[0]):
            with pytest.raises(TruncatedFrameError):
                CODEC.decode_frame(stream[:cut])


def test_trailing_bytes_after_one_frame_are_an_error() -> None:
    with pytest.raises(FrameError):
        CODEC.decode_frame(_echo_frame() + b"\x77")


def test_packet_layout_errors() -> None:
    good = pk.CS_GAME_REQ_ECHO.build(1, 2)
    with pytest.raises(pk.PacketError) as exc:
        pk.CS_GAME_REQ_ECHO.parse(good + b"\0")
    assert exc.value.reason == "trailing_bytes"
    with pytest.raises(pk.PacketError):
        pk.CS_GAME_REQ_ECHO.parse(good[:-1])
    with pytest.raises(pk.PacketError):
        pk.parse_any(b"\x39\x30")  # type 12345 is not in the catalog
    msg = pk.CS_CHAT_REQ_MESSAGE.build(1, "hi")
    with pytest.raises(pk.PacketError):
        pk.CS_CHAT_REQ_MESSAGE.parse(msg + b"x")  # trailing bytes after a message


def test_codec_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match="key1"):
        NetCodec(key1=300)
    with pytest.raises(ValueError, match="max_payload"):
        NetCodec(max_payload=1)


# --- echo batch fast path: same answer as the generic path, or declines ---------------------


def _generic_answer(data: bytes) -> list[bytes]:
    payloads, end = CODEC.split_frames(data)
    assert end == len(data)
    return [pk.CS_GAME_RES_ECHO.type_bytes + p[2:] for p in payloads]


@given(
    items=st.lists(
        st.tuples(
            st.integers(-(2**63), 2**63 - 1), st.integers(-(2**63), 2**63 - 1), st.integers(0, 255)
        ),
        min_size=1,
        max_size=60,
    )
)
def test_echo_fast_path_matches_generic_path(items: list[tuple[int, int, int]]) -> None:
    data = b"".join(CODEC.encode_frame(pk.CS_GAME_REQ_ECHO.build(a, t), r) for a, t, r in items)
    replies = answer_echo_batch(data, len(items), CODEC.code)
    assert replies is not None
    assert CODEC.split_frames(bytes(replies))[0] == _generic_answer(data)


@given(
    frames=st.integers(1, 2),
    position=st.integers(0, 2 * ECHO_FRAME_SIZE - 1),
    bit=st.integers(0, 7),
)
def test_echo_fast_path_declines_exactly_what_the_generic_path_would_not_answer(
    frames: int, position: int, bit: int
) -> None:
    data = bytearray(b"".join(_echo_frame(5 + i) for i in range(frames)))
    data[position % len(data)] ^= 1 << bit
    try:
        payloads, end = CODEC.split_frames(bytes(data))
        generic_ok = end == len(data) and all(
            p[:2] == pk.CS_GAME_REQ_ECHO.type_bytes and len(p) == 18 for p in payloads
        )
    except FrameError:
        generic_ok = False
    replies = answer_echo_batch(bytes(data), frames, CODEC.code)
    assert (replies is not None) == generic_ok
    if replies is not None:
        assert CODEC.split_frames(bytes(replies))[0] == _generic_answer(bytes(data))


def test_echo_fast_path_declines_other_types() -> None:
    heartbeat_then_echo = CODEC.encode_frame(pk.CS_GAME_REQ_HEARTBEAT.build() + b"\0" * 16, 3)
    assert len(heartbeat_then_echo) == ECHO_FRAME_SIZE  # same size, other type
    assert answer_echo_batch(heartbeat_then_echo, 1, CODEC.code) is None
