"""Read-side slice merging (meta/slices.py) against JuiceFS's worked example and a byte model."""

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from artifacts_core.errors import IntegrityError
from artifacts_core.meta.attrs import SLICE_INLINE, SliceRecord
from artifacts_core.meta.slices import (
    COMPACT_NOW,
    COMPACT_SOON,
    Segment,
    assemble,
    build_view,
    data_extent,
    needs_compaction,
)
from artifacts_core.types import CHUNK_SIZE, SliceId

M = 1 << 20


def rec(pos, sid, length, off=0, size=None, kind=0):
    return SliceRecord(pos, SliceId(sid), size if size is not None else off + length, off, length, kind)


def test_juicefs_worked_example():
    # (pos 10M, id 10, len 30M), (20M, id 11, 16M), (16M, id 12, 10M)
    records = [rec(10 * M, 10, 30 * M), rec(20 * M, 11, 16 * M), rec(16 * M, 12, 10 * M)]
    view = build_view(records, CHUNK_SIZE)
    got = [(s.pos // M, s.id, s.off // M, s.len // M) for s in view]
    assert got == [
        (0, 0, 0, 10),  # zeros
        (10, 10, 0, 6),  # id 10, off 0
        (16, 12, 0, 10),  # id 12
        (26, 11, 6, 10),  # id 11 at off 6M
        (36, 10, 26, 4),  # id 10 at off 26M
        (40, 0, 0, 24),  # zeros to the chunk end
    ]


def test_view_is_clamped_to_the_file_length_and_holes_merge():
    records = [rec(0, 5, 100), rec(50, 0, 10), rec(60, 0, 10)]
    view = build_view(records, 80)
    assert [(s.pos, s.id, s.len) for s in view] == [(0, 5, 50), (50, 0, 20), (70, 5, 10)]
    assert view[-1].off == 70
    assert build_view(records, 0) == []
    assert build_view([], 10) == [Segment(0, SliceId(0), 10, 0, 10)]


def test_data_extent_and_compaction_triggers():
    view = build_view([rec(10, 1, 5), rec(30, 2, 5)], 100)
    assert data_extent(view) == (10, 35)
    assert data_extent(build_view([], 100)) == (0, 0)
    assert needs_compaction(1000) == COMPACT_NOW
    assert needs_compaction(100) == COMPACT_SOON
    many = build_view([rec(i * 10, i + 1, 5) for i in range(6)], 100)
    assert needs_compaction(6, many) == COMPACT_SOON
    assert needs_compaction(2, build_view([rec(0, 1, 5), rec(5, 2, 5)], 100)) == 0


def test_assemble_reads_inline_s3_and_zeros():
    records = [rec(0, 1, 4, kind=SLICE_INLINE), rec(6, 2, 3, off=1, size=5)]
    view = build_view(records, 12)
    s3 = {2: b"vwxyz"}
    data = assemble(view, 0, 12, {SliceId(1): b"abcd"}, lambda i, size, off, ln: s3[i][off:off + ln])
    assert data == b"abcd\0\0wxy\0\0\0"
    assert assemble(view, 2, 7, {SliceId(1): b"abcd"}, lambda i, size, off, ln: s3[i][off:off + ln]) == b"cd\0\0w"
    try:
        assemble(view, 0, 4, {}, None)
    except IntegrityError:
        pass
    else:
        raise AssertionError("a missing inline slice must not read as zeros")


# -- property: the view equals a naive byte-array replay ------------------------------------------

SPAN = 64  # a small "chunk": positions 0..63 keep examples shrinkable

records_st = st.lists(
    st.builds(lambda pos, ln, off, sid: rec(pos, sid, ln, off=off),
              st.integers(0, SPAN - 1), st.integers(0, 20), st.integers(0, 5), st.integers(0, 4)),
    max_size=25)


def naive(records, chunk_len):
    cells = [(0, 0)] * SPAN
    for r in records:
        for k in range(r.len):
            if r.pos + k < SPAN:
                cells[r.pos + k] = (r.id, r.off + k) if r.id else (0, 0)
    return cells[:chunk_len]


def expand(view):
    cells = []
    for s in view:
        for k in range(s.len):
            cells.append((s.id, s.off + k) if s.id else (0, 0))
    return cells


@settings(max_examples=400, deadline=None)
@given(records_st, st.integers(0, SPAN))
def test_view_matches_naive_replay(records, chunk_len):
    # Replay within a SPAN-sized chunk: clamp records so the model and the view agree on the space.
    clamped = [SliceRecord(r.pos, r.id, r.size, r.off, min(r.len, SPAN - r.pos), r.kind) for r in records]
    view = build_view(clamped, chunk_len)
    assert expand(view) == naive(clamped, chunk_len)
    # Segments are contiguous, non-empty, and no two holes are adjacent.
    pos = 0
    for a, b in itertools.pairwise(view):
        assert not (a.is_hole and b.is_hole)
    for s in view:
        assert s.pos == pos and s.len > 0
        pos = s.end
    assert pos == max(chunk_len, 0)
