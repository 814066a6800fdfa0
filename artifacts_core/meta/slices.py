"""Read-side merging of a chunk's slice records: pure Python, no I/O.

A chunk's slice list is a log: every commit appends a record saying "bytes ``[off, off+len)`` of
slice ``id`` now sit at ``pos``". :func:`build_view` replays that log into a flat list of
non-overlapping :class:`Segment` s covering ``[0, chunk_len)`` exactly: later records win, gaps and
hole records (id 0) read as zeros, and everything is clamped to the part of the chunk that lies
inside the file (JuiceFS's ``buildSlice``, DESIGN.md §3).

The invariant the metadata functions keep (``lua/20_data.lua``) is what makes clamping safe: no
visible data lies beyond a file's length (a shrinking truncate hides the rest of its last chunk
behind a hole record and drops the chunks past it), so a view clamped to the length is the whole
truth about the chunk.

:func:`assemble` turns a view into bytes, given the inline bytes returned with the slice list and
a reader for S3 slices; the VFS and compaction use it. :func:`needs_compaction` is the read- and
write-side trigger.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping

import msgspec

from artifacts_core.errors import IntegrityError
from artifacts_core.meta.attrs import SLICE_INLINE, SLICE_S3, SliceRecord
from artifacts_core.types import CHUNK_SIZE, SliceId

#: Compaction triggers. A chunk whose view has this many data segments costs as many block reads
#: for one sequential pass (JuiceFS compacts at 5 on reads, and so do we).
COMPACT_SEGMENTS = 5
#: Records in a list past which a commit asks for background compaction: merging 100 records on
#: every read is still cheap (2.5 KB of records), but the list should not keep growing.
COMPACT_RECORDS = 100
#: Records past which the writer compacts synchronously before committing more: random
#: overwrites must never make a file unreadable or its lists unbounded (JuiceFS #4308). 1000
#: records = 25 KB per chunk read, still one small round trip.
COMPACT_FORCED = 1000

#: Compaction levels a commit reports.
COMPACT_NONE, COMPACT_SOON, COMPACT_NOW = 0, 1, 2


class Segment(msgspec.Struct, frozen=True):
    """``len`` bytes at chunk position ``pos``: bytes ``[off, off+len)`` of slice ``id`` (whose full
    length is ``size``); ``id`` 0 is zeros."""

    pos: int
    id: SliceId
    size: int
    off: int
    len: int
    kind: int = SLICE_S3

    @property
    def end(self) -> int:
        return self.pos + self.len

    @property
    def is_hole(self) -> bool:
        return self.id == 0


def _hole(pos: int, length: int) -> Segment:
    return Segment(pos, SliceId(0), length, 0, length)


def _cut(seg: Segment, start: int, end: int) -> Segment:
    """The part of ``seg`` inside ``[start, end)`` (which must overlap it)."""
    a, b = max(seg.pos, start), min(seg.end, end)
    if seg.is_hole:
        return _hole(a, b - a)
    return Segment(a, seg.id, seg.size, seg.off + (a - seg.pos), b - a, seg.kind)


def build_view(records: Iterable[SliceRecord], chunk_len: int) -> list[Segment]:
    """Merge ``records`` (in list order, later wins) into segments covering ``[0, chunk_len)``.

    Adjacent zero ranges come out as one hole segment. ``chunk_len`` is the part of the chunk inside
    the file: ``min(CHUNK_SIZE, length - index * CHUNK_SIZE)``; 0 (or less) gives ``[]``.
    """
    if chunk_len <= 0:
        return []
    segs: list[Segment] = [_hole(0, CHUNK_SIZE)]
    starts: list[int] = [0]
    for r in records:
        a, b = r.pos, min(r.pos + r.len, CHUNK_SIZE)
        if b <= a:
            continue
        i = bisect_right(starts, a) - 1  # the segment holding position a
        j = bisect_right(starts, b - 1) - 1  # the segment holding position b - 1
        new: list[Segment] = []
        if segs[i].pos < a:
            new.append(_cut(segs[i], segs[i].pos, a))
        if r.id == 0:
            new.append(_hole(a, b - a))
        else:
            new.append(Segment(a, r.id, r.size, r.off, b - a, r.kind))
        if segs[j].end > b:
            new.append(_cut(segs[j], b, segs[j].end))
        segs[i:j + 1] = new
        starts[i:j + 1] = [s.pos for s in new]
    out: list[Segment] = []
    for s in segs:
        if s.pos >= chunk_len:
            break
        if s.end > chunk_len:
            s = _cut(s, s.pos, chunk_len)
        if s.is_hole and out and out[-1].is_hole:
            out[-1] = _hole(out[-1].pos, out[-1].len + s.len)
        else:
            out.append(s)
    return out


def data_extent(view: list[Segment]) -> tuple[int, int]:
    """``(start, end)`` of the view without its leading and trailing holes; ``(0, 0)`` if all zeros."""
    data = [s for s in view if not s.is_hole]
    if not data:
        return 0, 0
    return data[0].pos, data[-1].end


def data_segments(view: list[Segment]) -> int:
    return sum(1 for s in view if not s.is_hole)


def needs_compaction(record_count: int, view: list[Segment] | None = None) -> int:
    """How urgently a chunk wants compaction: ``COMPACT_NONE``, ``COMPACT_SOON`` (in the
    background) or ``COMPACT_NOW`` (before the writer commits more)."""
    if record_count >= COMPACT_FORCED:
        return COMPACT_NOW
    if record_count >= COMPACT_RECORDS:
        return COMPACT_SOON
    if view is not None and record_count > 1 and data_segments(view) >= COMPACT_SEGMENTS:
        return COMPACT_SOON
    return COMPACT_NONE


#: Reads ``len`` bytes at ``off`` of the S3 slice ``id`` whose full length is ``size``.
SliceReader = Callable[[SliceId, int, int, int], bytes]


def assemble(view: list[Segment], start: int, end: int, inline: Mapping[SliceId, bytes],
             read_s3: SliceReader | None = None) -> bytes:
    """The bytes of chunk range ``[start, end)`` (clamped to the view). Inline segments come from
    ``inline`` (as returned by ``read_chunk``); a missing inline slice is EIO, never zeros."""
    parts: list[bytes] = []
    for s in view:
        if s.end <= start:
            continue
        if s.pos >= end:
            break
        piece = _cut(s, start, end)
        if piece.is_hole:
            parts.append(bytes(piece.len))
        elif piece.kind == SLICE_INLINE:
            data = inline.get(piece.id)
            if data is None or len(data) < piece.off + piece.len:
                raise IntegrityError(f"inline slice {piece.id} is missing or short")
            parts.append(data[piece.off:piece.off + piece.len])
        else:
            if read_s3 is None:
                raise ValueError(f"no reader given for S3 slice {piece.id}")
            data = read_s3(piece.id, piece.size, piece.off, piece.len)
            if len(data) != piece.len:
                raise IntegrityError(f"slice {piece.id} returned {len(data)} bytes, wanted {piece.len}")
            parts.append(data)
    return b"".join(parts)
