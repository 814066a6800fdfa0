"""Block framing and block keys (DESIGN.md §3): fast unit tests, no servers.

The properties: every block round-trips; no damage to an encoded block — any single flipped bit,
any truncation, any appended bytes — ever decodes; every failure is an ``IntegrityError`` (EIO),
counted and logged with the key.
"""

from __future__ import annotations

import errno
import logging
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from artifacts_core.chunk.codec import (
    CODEC_LZ4,
    CODEC_RAW,
    HEADER_SIZE,
    INTEGRITY_ERRORS,
    decode_block,
    encode_block,
)
from artifacts_core.chunk.keys import BlockKey, block_key, parse_block_key, slice_blocks, slice_prefix
from artifacts_core.errors import IntegrityError
from artifacts_core.types import SliceId

KIND = st.sampled_from(["random", "zeros", "half", "text"])


def make_data(kind: str, size: int, seed: int) -> bytes:
    rng = random.Random(seed)
    if kind == "zeros":
        return bytes(size)
    if kind == "random":
        return rng.randbytes(size)
    if kind == "half":  # alternating incompressible and constant runs: compresses to about half
        out = bytearray()
        while len(out) < size:
            out += rng.randbytes(256) + bytes([rng.randrange(256)]) * 256
        return bytes(out[:size])
    words = [b"alpha ", b"beta ", b"gamma ", b"delta\n", b"{\"k\": 1}, "]
    return b"".join(rng.choice(words) for _ in range(size // 4 + 1))[:size]


@st.composite
def blocks(draw, max_size: int = 4 << 20) -> bytes:
    """Small sizes often, MiB-sized ones sometimes; the bytes come from a seeded generator."""
    size = draw(st.one_of(st.integers(0, 300), st.integers(0, 70_000), st.integers(0, max_size)))
    return make_data(draw(KIND), size, draw(st.integers(0, 2**32)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=blocks(), compression=st.sampled_from(["lz4", "none"]))
def test_round_trip(raw, compression):
    encoded = encode_block(raw, compression)
    assert decode_block(encoded, expected_len=len(raw)) == raw
    assert len(encoded) <= HEADER_SIZE + len(raw)  # never bigger than raw plus the header


@given(raw=st.binary(max_size=2000))
def test_round_trip_arbitrary_bytes(raw):
    assert decode_block(encode_block(raw)) == raw


@pytest.mark.parametrize(("kind", "size", "codec"), [
    ("zeros", 4 << 20, CODEC_LZ4), ("text", 1 << 20, CODEC_LZ4), ("half", 4 << 20, CODEC_LZ4),
    ("random", 4 << 20, CODEC_RAW), ("random", 0, CODEC_RAW), ("random", 1, CODEC_RAW),
])
def test_payload_is_compressed_only_when_smaller(kind, size, codec):
    raw = make_data(kind, size, 7)
    encoded = encode_block(raw)
    assert encoded[5] == codec
    assert decode_block(encoded, expected_len=size) == raw
    assert encode_block(raw, "none")[5] == CODEC_RAW


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), raw=blocks(max_size=200_000), compression=st.sampled_from(["lz4", "none"]))
def test_any_single_bit_flip_is_detected(data, raw, compression):
    encoded = encode_block(raw, compression)
    bit = data.draw(st.integers(0, len(encoded) * 8 - 1), label="bit")
    with pytest.raises(IntegrityError):
        decode_block(_flip(encoded, bit))


@pytest.mark.parametrize("kind", ["zeros", "text", "random"])
def test_every_single_bit_flip_of_a_small_block_is_detected(kind):
    # Exhaustive over a compressed block of a zero run: lz4 has redundant encodings there, which
    # is why the frame checksum exists (a flip that decodes to the same raw bytes is still caught).
    encoded = encode_block(make_data(kind, 600, 3))
    for bit in range(len(encoded) * 8):
        with pytest.raises(IntegrityError):
            decode_block(_flip(encoded, bit))


@settings(max_examples=100, deadline=None)
@given(data=st.data(), raw=blocks(max_size=100_000), compression=st.sampled_from(["lz4", "none"]))
def test_any_truncation_is_detected(data, raw, compression):
    encoded = encode_block(raw, compression)
    cut = data.draw(st.integers(0, len(encoded) - 1), label="cut")
    with pytest.raises(IntegrityError):
        decode_block(encoded[:cut])


@settings(max_examples=100, deadline=None)
@given(raw=blocks(max_size=100_000), garbage=st.binary(min_size=1, max_size=64),
       compression=st.sampled_from(["lz4", "none"]))
def test_appended_garbage_is_detected(raw, garbage, compression):
    with pytest.raises(IntegrityError):
        decode_block(encode_block(raw, compression) + garbage)


def test_length_from_the_key_must_match():
    encoded = encode_block(b"x" * 100)
    with pytest.raises(IntegrityError):
        decode_block(encoded, expected_len=99)


def test_failures_are_eio_counted_and_logged_with_the_key(caplog):
    before = INTEGRITY_ERRORS.value
    encoded = bytearray(encode_block(make_data("text", 5000, 1)))
    encoded[-1] ^= 0xFF
    with caplog.at_level(logging.ERROR, logger="artifacts_core.chunk.codec"):
        with pytest.raises(IntegrityError) as info:
            decode_block(bytes(encoded), key="chunks/0/0/9_0_5000")
    assert info.value.errno == errno.EIO
    assert isinstance(info.value, OSError)
    assert "chunks/0/0/9_0_5000" in str(info.value)
    assert INTEGRITY_ERRORS.value == before + 1
    assert "chunks/0/0/9_0_5000" in caplog.text


# -- keys ------------------------------------------------------------------------------------------

def test_block_key_layout_matches_the_design():
    assert block_key(SliceId(1), 0, 4194304) == "chunks/0/0/1_0_4194304"
    assert block_key(SliceId(1_234_567_890), 15, 2097152) == "chunks/1234/1234567/1234567890_15_2097152"
    assert slice_prefix(SliceId(42)) == "chunks/0/0/42_"


@given(sid=st.integers(0, 2**63 - 1), index=st.integers(0, 16), length=st.integers(0, 64 << 20))
def test_keys_parse_back(sid, index, length):
    key = block_key(SliceId(sid), index, length)
    assert parse_block_key(key) == BlockKey(SliceId(sid), index, length)
    assert key.startswith(slice_prefix(SliceId(sid)))


@pytest.mark.parametrize("key", [
    "chunks/0/0/1_0", "chunks/0/1/1_0_4", "chunks/0/0/01_0_4", "x/chunks/0/0/1_0_4", "chunks/0/0/1_0_4.tmp",
    "chunks/0/0/1_0_-4", "artifacts_uuid", "chunks/0/0/1_0_99999999999",
])
def test_foreign_keys_do_not_parse(key):
    assert parse_block_key(key) is None


def test_slice_blocks_cover_the_slice():
    blocks_ = list(slice_blocks(SliceId(5), 10 << 20, 4 << 20))
    assert [b.key for b in blocks_] == ["chunks/0/0/5_0_4194304", "chunks/0/0/5_1_4194304", "chunks/0/0/5_2_2097152"]
    assert list(slice_blocks(SliceId(5), 0, 4 << 20)) == []
