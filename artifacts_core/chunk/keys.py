"""Object keys of blocks: the one place they are spelled (DESIGN.md §3, STYLE.md habit 5).

``chunks/<id // 1_000_000>/<id // 1_000>/<id>_<block index>_<block length>``, where the length is
the block's *uncompressed* length (readers size buffers and verify with it). Keys are relative:
the ``<volume>/`` prefix comes from wrapping the object store in a prefix wrapper, so nothing here
knows about volumes. The two directory levels (JuiceFS's layout) keep any one listing prefix to at
most 1,000 slice ids, which ``gc`` walks page by page.

Invariant: ``parse_block_key(block_key(s, i, n)) == BlockKey(s, i, n)`` and every string that is
not exactly such a key parses to ``None`` (gc must never mistake a foreign object for a block).
The disk cache also names single segments of v2 blocks (``<key>.s<k>``, :func:`segment_cache_key`);
those names never reach the bucket, and ``parse_block_key`` refuses them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from artifacts_core.types import CHUNK_SIZE, SliceId

CHUNKS_PREFIX = "chunks/"

_KEY_RE = re.compile(r"chunks/(0|[1-9][0-9]*)/(0|[1-9][0-9]*)/(0|[1-9][0-9]*)_(0|[1-9][0-9]*)_(0|[1-9][0-9]*)")


@dataclass(frozen=True, slots=True)
class BlockKey:
    slice_id: SliceId
    index: int
    length: int

    @property
    def key(self) -> str:
        return block_key(self.slice_id, self.index, self.length)


def block_key(slice_id: SliceId, index: int, length: int) -> str:
    """The object key of block ``index`` (of uncompressed ``length``) of slice ``slice_id``."""
    if slice_id < 0 or index < 0 or length < 0:
        raise ValueError(f"invalid block key parts: {slice_id}, {index}, {length}")
    return f"chunks/{slice_id // 1_000_000}/{slice_id // 1_000}/{slice_id}_{index}_{length}"


def slice_prefix(slice_id: SliceId) -> str:
    """The listing prefix under which the blocks of ``slice_id`` (and of no other id) live."""
    return f"chunks/{slice_id // 1_000_000}/{slice_id // 1_000}/{slice_id}_"


def parse_block_key(key: str) -> BlockKey | None:
    """The parts of a block key, or ``None`` if ``key`` is not one (used by gc)."""
    m = _KEY_RE.fullmatch(key)
    if m is None:
        return None
    top, mid, sid, index, length = (int(g) for g in m.groups())
    if top != sid // 1_000_000 or mid != sid // 1_000 or length > CHUNK_SIZE:
        return None
    return BlockKey(SliceId(sid), index, length)


def segment_cache_key(key: str, segment: int) -> str:
    """The disk-cache name of one cached segment of block ``key`` (format v2): ``<key>.s<k>``.
    Never an object key: only the disk cache holds single segments."""
    return f"{key}.s{segment}"


def parse_cache_key(name: str) -> tuple[BlockKey, int | None] | None:
    """``(block, None)`` for a block key, ``(block, k)`` for a segment's cache name, else ``None``."""
    base, dot, seg = name.partition(".s")
    if not dot:
        block = parse_block_key(name)
        return None if block is None else (block, None)
    block = parse_block_key(base)
    if block is None or not seg.isdigit() or (len(seg) > 1 and seg[0] == "0"):
        return None
    return block, int(seg)


def block_count(slice_len: int, block_size: int) -> int:
    return -(-slice_len // block_size)


def slice_blocks(slice_id: SliceId, slice_len: int, block_size: int) -> Iterator[BlockKey]:
    """Every block of a slice of ``slice_len`` bytes: full blocks, then a possibly short last one."""
    for index in range(block_count(slice_len, block_size)):
        yield BlockKey(slice_id, index, min(block_size, slice_len - index * block_size))
