"""Block format v2 (segmented blocks, DESIGN.md §10): fast unit tests, no servers.

The properties: every block round-trips whole and segment by segment; the header and table have
the size a reader computes from the block length; damage to a segment fails that segment only,
damage to the header or table fails the block; a valid block under another block's key fails;
every failure is an ``IntegrityError`` (EIO), counted and logged with the key.
"""

from __future__ import annotations

import errno
import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_codec import _flip, blocks, make_data

from artifacts_core.chunk import segmented
from artifacts_core.chunk.codec import CODEC_LZ4, CODEC_RAW, INTEGRITY_ERRORS, encode_block
from artifacts_core.chunk.keys import BlockKey
from artifacts_core.chunk.segmented import (
    HEADER_SIZE,
    decode_object,
    decode_segment,
    parse_table,
    peek_table_size,
    table_size,
)
from artifacts_core.errors import IntegrityError
from artifacts_core.types import SliceId

SEGMENTS = st.sampled_from([4 << 10, 16 << 10, 64 << 10, 256 << 10])


def key_for(raw: bytes, sid: int = 7, index: int = 3) -> BlockKey:
    return BlockKey(SliceId(sid), index, len(raw))


def segment_bytes(encoded: bytes, table, k: int) -> memoryview:
    return memoryview(encoded)[table.offsets[k]:table.offsets[k + 1]]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=blocks(), seg=SEGMENTS, compression=st.sampled_from(["lz4", "none"]))
def test_round_trip_whole_and_by_segment(raw, seg, compression):
    block = key_for(raw)
    encoded = segmented.encode_block(raw, compression, block, seg)
    d = decode_object(encoded, block)
    assert not d.errors and not d.damaged
    assert bytes(d.whole) == raw
    # A reader that knows only the key and the volume's segment size sizes the table GET exactly.
    assert peek_table_size(encoded) == table_size(len(raw), seg)
    table = parse_table(encoded[:table_size(len(raw), seg)], block)
    assert table.count == -(-len(raw) // seg)
    for k in range(table.count):
        assert bytes(decode_segment(table, k, segment_bytes(encoded, table, k))) == raw[k * seg:(k + 1) * seg]
    # never larger than the raw bytes plus the header and table
    assert len(encoded) <= table_size(len(raw), seg) + len(raw)


@pytest.mark.parametrize(("kind", "codec"), [("zeros", CODEC_LZ4), ("text", CODEC_LZ4), ("random", CODEC_RAW)])
def test_each_segment_is_compressed_only_when_smaller(kind, codec):
    raw = make_data(kind, 1 << 20, 5)
    block = key_for(raw)
    table = parse_table(segmented.encode_block(raw, "lz4", block, 64 << 10), block)
    assert set(table.codecs) == {codec}
    table = parse_table(segmented.encode_block(raw, "none", block, 64 << 10), block)
    assert set(table.codecs) == {CODEC_RAW}


def test_an_all_raw_block_decodes_without_copying():
    raw = make_data("random", 300_000, 1)
    block = key_for(raw)
    encoded = segmented.encode_block(raw, "lz4", block, 64 << 10)
    d = decode_object(encoded, block)
    assert isinstance(d.whole, memoryview) and d.whole.obj is encoded  # a view of the GET's bytes
    assert d.whole == raw


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), raw=blocks(max_size=300_000), seg=SEGMENTS, compression=st.sampled_from(["lz4", "none"]))
def test_a_flipped_bit_fails_exactly_the_segment_that_holds_it(data, raw, seg, compression):
    block = key_for(raw)
    encoded = segmented.encode_block(raw, compression, block, seg)
    bit = data.draw(st.integers(0, len(encoded) * 8 - 1), label="bit")
    damaged = _flip(encoded, bit)
    table = parse_table(encoded, block)
    if bit // 8 < table.size:  # header or table: every read of the block needs it, every read fails
        with pytest.raises(IntegrityError):
            decode_object(damaged, block)
        return
    hit = next(k for k in range(table.count) if bit // 8 < table.offsets[k + 1])
    d = decode_object(damaged, block)
    assert set(d.errors) == {hit} and d.damaged and d.whole is None
    for k in range(table.count):
        if k == hit:
            with pytest.raises(IntegrityError):
                decode_segment(table, k, segment_bytes(damaged, table, k))
        else:  # its neighbours still read, whole-object decode or ranged
            assert bytes(d.parts[k]) == raw[k * seg:(k + 1) * seg]
            assert bytes(decode_segment(table, k, segment_bytes(damaged, table, k))) == raw[k * seg:(k + 1) * seg]


@pytest.mark.parametrize("kind", ["zeros", "text", "random"])
def test_every_single_bit_flip_of_a_small_block_is_detected(kind):
    raw = make_data(kind, 9000, 3)
    block = key_for(raw)
    encoded = segmented.encode_block(raw, "lz4", block, 4 << 10)
    for bit in range(len(encoded) * 8):
        damaged = _flip(encoded, bit)
        try:
            d = decode_object(damaged, block)
        except IntegrityError:
            continue
        assert d.errors and d.whole is None, f"bit {bit} went unnoticed"


def test_a_valid_block_under_another_key_fails():
    raw = make_data("text", 100_000, 2)
    block = BlockKey(SliceId(41), 2, len(raw))
    encoded = segmented.encode_block(raw, "lz4", block, 16 << 10)
    for other in (BlockKey(SliceId(42), 2, len(raw)), BlockKey(SliceId(41), 3, len(raw)),
                  BlockKey(SliceId(41), 2, len(raw) - 1)):
        with pytest.raises(IntegrityError, match="identity"):
            decode_object(encoded, other)
        with pytest.raises(IntegrityError):
            parse_table(encoded, other)
    # v1 frames carry no identity: the documented gap that v2 closes
    v1 = encode_block(raw)
    assert decode_object(v1, BlockKey(SliceId(42), 2, len(raw))).whole == raw


@settings(max_examples=100, deadline=None)
@given(data=st.data(), raw=blocks(max_size=100_000), seg=SEGMENTS)
def test_truncation_fails_the_cut_segments_and_garbage_marks_the_object_damaged(data, raw, seg):
    block = key_for(raw)
    encoded = segmented.encode_block(raw, "lz4", block, seg)
    cut = data.draw(st.integers(0, len(encoded) - 1), label="cut")
    table = parse_table(encoded, block)
    if cut < table.size:
        with pytest.raises(IntegrityError):
            decode_object(encoded[:cut], block)
    else:
        d = decode_object(encoded[:cut], block)
        assert d.damaged and d.errors and d.whole is None
    d = decode_object(encoded + b"garbage", block)
    assert d.damaged  # never cached, although every segment verified
    assert not d.errors and bytes(d.whole) == raw


def test_v1_objects_decode_through_the_same_entry_point():
    raw = make_data("half", 70_000, 4)
    block = key_for(raw)
    d = decode_object(encode_block(raw), block)
    assert d.table is None and d.whole == raw
    with pytest.raises(IntegrityError):
        decode_object(_flip(encode_block(raw), 8 * 40), block)


def test_a_short_table_read_is_sized_by_peeking():
    raw = make_data("text", 1 << 20, 9)
    block = key_for(raw)
    encoded = segmented.encode_block(raw, "lz4", block, 4 << 10)  # 256 segments: a 6 KiB table
    guess = table_size(len(raw), 64 << 10)  # a reader assuming another segment size
    assert peek_table_size(encoded[:guess]) == table_size(len(raw), 4 << 10) > guess
    with pytest.raises(IntegrityError, match="does not fit"):
        parse_table(encoded[:guess], block)
    assert peek_table_size(encode_block(raw)) is None  # a v1 frame


def test_failures_are_eio_counted_and_logged_with_the_key(caplog):
    raw = make_data("text", 50_000, 1)
    block = BlockKey(SliceId(9), 0, len(raw))
    encoded = bytearray(segmented.encode_block(raw, "lz4", block, 16 << 10))
    encoded[-1] ^= 0xFF
    before = INTEGRITY_ERRORS.value
    with caplog.at_level(logging.ERROR, logger="artifacts_core.chunk.codec"):
        d = decode_object(bytes(encoded), block)
    err = d.errors[max(d.errors)]
    assert err.errno == errno.EIO and isinstance(err, OSError)
    assert block.key in str(err) and block.key in caplog.text
    assert INTEGRITY_ERRORS.value == before + 1


@pytest.mark.parametrize("seg", [0, 1000, 2 << 10, 32 << 20])
def test_segment_sizes_out_of_range_are_refused(seg):
    with pytest.raises(ValueError):
        segmented.encode_block(b"x" * 10, "lz4", BlockKey(SliceId(1), 0, 10), seg)


def test_the_header_layout_matches_the_design_note():
    raw = b"y" * 5000
    block = BlockKey(SliceId(0x0102030405), 6, len(raw))
    encoded = segmented.encode_block(raw, "none", block, 4 << 10)
    assert encoded[:4] == b"ATFB" and encoded[4] == 2 and encoded[5] == 0
    assert int.from_bytes(encoded[6:8], "little") == 12  # log2(4 KiB)
    assert int.from_bytes(encoded[8:16], "little") == 0x0102030405
    assert int.from_bytes(encoded[16:20], "little") == 6
    assert int.from_bytes(encoded[20:24], "little") == 5000
    assert int.from_bytes(encoded[24:28], "little") == 2
    assert int.from_bytes(encoded[28:32], "little") == 5000
    assert len(encoded) == HEADER_SIZE + 2 * 24 + 5000
