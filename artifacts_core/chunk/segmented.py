"""Block format v2: a block is a run of independently compressed and checksummed *segments*.

Owns the v2 bytes of a block object (DESIGN.md §10 "Data format v2") and their verification; v1
frames stay in :mod:`~artifacts_core.chunk.codec`, and :func:`decode_object` reads either. Layout
(little-endian)::

    offset size field
         0    4 magic        b"ATFB"
         4    1 version      2
         5    1 flags        must be 0
         6    2 seg_shift    log2 of the segment size (12..24: 4 KiB..16 MiB)
         8    8 slice_id     the block's identity: slice id,
        16    4 index        block index within the slice,
        20    4 raw_len      and uncompressed length -- all three checked against the key
        24    4 n_segments   ceil(raw_len / segment size)
        28    4 payload_len  bytes after the table (sum of the stored segment lengths)
        32    8 table_xxh3   xxh3-64 of bytes 0..32 and the whole table
        40  24n table        per segment: stored_len u32, codec u8 (0 raw, 1 lz4), 3 zero bytes,
                             stored_xxh3 u64 (of the stored bytes), raw_xxh3 u64 (of the raw bytes)
    40+24n  ... segments     back to back, in order

Why this shape: the header and table have a size computable from the block length and the
volume's segment size, so a reader fetches them with one small ranged GET (or together with the
first segments) and then any segment with one more; each segment carries its own checksums, so a
4 KiB read fetches, decompresses and verifies one segment, not 4 MiB. Two sums per segment as in
v1: ``stored_xxh3`` makes every stored bit count (lz4 has redundant encodings), ``raw_xxh3`` is the
end-to-end check through the codec; a raw segment stores equal sums and is hashed once. The
identity in the header closes v1's gap: a valid block copied under another key fails.

Invariants: :func:`parse_table` returns a :class:`Table` only when the header checksum, the
identity and every entry check out; :func:`decode_segment` returns bytes only when that segment's
checksums match. A damaged segment fails the reads that touch it, nothing else (a damaged header
or table fails every read of the block, since every read needs it). Every failure is an
:class:`~artifacts_core.errors.IntegrityError` (EIO), counted and logged with the key.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import lz4.block
import xxhash

from artifacts_core.chunk import codec
from artifacts_core.chunk.codec import CODEC_LZ4, CODEC_RAW, CODECS, MAGIC, integrity_error
from artifacts_core.chunk.keys import BlockKey
from artifacts_core.errors import IntegrityError

VERSION = 2
_HEAD = struct.Struct("<4sBBHQIIII")  # the fields the table checksum covers with the table
_SUM = struct.Struct("<Q")
HEADER_SIZE = _HEAD.size + _SUM.size  # 40
_ENTRY = struct.Struct("<IB3sQQ")
ENTRY_SIZE = _ENTRY.size  # 24
_ZERO3 = bytes(3)
#: Segment sizes accepted: 4 KiB (a page: smaller only multiplies table entries) to 16 MiB (the
#: largest block, i.e. one segment per block).
MIN_SEGMENT, MAX_SEGMENT = 4 << 10, 16 << 20


def check_segment_size(size: int) -> None:
    if size & (size - 1) or not MIN_SEGMENT <= size <= MAX_SEGMENT:
        raise ValueError(f"segment size {size} is not a power of two in {MIN_SEGMENT}..{MAX_SEGMENT}")


def segment_count(raw_len: int, segment_size: int) -> int:
    return -(-raw_len // segment_size)


def table_size(raw_len: int, segment_size: int) -> int:
    """Bytes of header plus table of a v2 block: what a reader fetches before any segment."""
    return HEADER_SIZE + ENTRY_SIZE * segment_count(raw_len, segment_size)


def encode_block(raw: bytes | bytearray | memoryview, compression: str, block: BlockKey,
                 segment_size: int) -> bytes:
    """The v2 object of ``raw``: each segment lz4-compressed when that is smaller, else raw."""
    raw_len = len(raw)
    if raw_len != block.length:
        raise ValueError(f"block {block.key} holds {block.length} bytes, not {raw_len}")
    if raw_len > codec.MAX_BLOCK:
        raise ValueError(f"block of {raw_len} bytes exceeds the {codec.MAX_BLOCK}-byte maximum")
    check_segment_size(segment_size)
    want_lz4 = CODECS[compression] == CODEC_LZ4
    view = memoryview(raw).cast("B") if not isinstance(raw, bytes) else memoryview(raw)
    entries: list[bytes] = []
    payloads: list[bytes | memoryview] = []
    for start in range(0, raw_len, segment_size):
        seg = view[start:start + segment_size]
        raw_sum = xxhash.xxh3_64_intdigest(seg)
        stored: bytes | memoryview = seg
        kind, stored_sum = CODEC_RAW, raw_sum
        if want_lz4:
            packed = lz4.block.compress(seg, store_size=False)
            if len(packed) < len(seg):
                stored, kind, stored_sum = packed, CODEC_LZ4, xxhash.xxh3_64_intdigest(packed)
        entries.append(_ENTRY.pack(len(stored), kind, _ZERO3, stored_sum, raw_sum))
        payloads.append(stored)
    table = b"".join(entries)
    head = _HEAD.pack(MAGIC, VERSION, 0, segment_size.bit_length() - 1, block.slice_id, block.index,
                      raw_len, len(entries), sum(len(p) for p in payloads))
    digest = xxhash.xxh3_64(head)
    digest.update(table)
    return b"".join((head, _SUM.pack(digest.intdigest()), table, *payloads))


@dataclass(frozen=True, slots=True)
class Table:
    """A verified v2 header and segment table: where each segment is and how to check it."""

    block: BlockKey
    segment_size: int
    offsets: tuple[int, ...]  # n + 1 absolute stored offsets: segment k is offsets[k]..offsets[k+1]
    codecs: bytes
    stored_sums: tuple[int, ...]
    raw_sums: tuple[int, ...]
    raw: bytes  # the verified header and table bytes (a cached segment file starts with them)

    @property
    def size(self) -> int:
        """Header plus table bytes: the offset of segment 0."""
        return len(self.raw)

    @property
    def count(self) -> int:
        return len(self.codecs)

    @property
    def total(self) -> int:
        """Length of the whole object."""
        return self.offsets[-1]

    @property
    def all_raw(self) -> bool:
        return CODEC_LZ4 not in self.codecs

    def stored_span(self, first: int, stop: int) -> tuple[int, int]:
        """The object bytes holding segments ``[first, stop)``."""
        return self.offsets[first], self.offsets[stop]

    def raw_len(self, k: int) -> int:
        return min(self.segment_size, self.block.length - k * self.segment_size)

    def __len__(self) -> int:
        """Bytes a cached table is charged: its encoding plus ~3 Python ints per segment."""
        return len(self.raw) + 96 * self.count


def peek_table_size(data: bytes | memoryview) -> int | None:
    """Header plus table size named by a v2 header's first 32 bytes (unverified: only for sizing a
    fetch), or ``None`` when ``data`` does not start like a v2 block."""
    if len(data) < _HEAD.size or bytes(data[:4]) != MAGIC or data[4] != VERSION:
        return None
    n = _HEAD.unpack_from(data)[7]
    return HEADER_SIZE + ENTRY_SIZE * n


def parse_table(data: bytes | memoryview, block: BlockKey, *, key: str | None = None) -> Table:
    """The verified table at the start of ``data`` (which must hold all of header and table)."""
    key = key or block.key
    view = memoryview(data)
    if len(view) < HEADER_SIZE:
        raise integrity_error(key, f"{len(view)} bytes is shorter than the {HEADER_SIZE}-byte v2 header")
    magic, version, flags, shift, sid, index, raw_len, n, payload_len = _HEAD.unpack_from(view)
    if magic != MAGIC:
        raise integrity_error(key, f"bad magic {bytes(magic)!r}")
    if version != VERSION:
        raise integrity_error(key, f"format version {version}, expected {VERSION}")
    end = HEADER_SIZE + ENTRY_SIZE * n
    if n > codec.MAX_BLOCK // MIN_SEGMENT or len(view) < end:
        raise integrity_error(key, f"header names {n} segments: the table does not fit in {len(view)} bytes")
    digest = xxhash.xxh3_64(view[:_HEAD.size])
    digest.update(view[HEADER_SIZE:end])
    if digest.intdigest() != _SUM.unpack_from(view, _HEAD.size)[0]:
        raise integrity_error(key, "header/table checksum mismatch")
    if flags:
        raise integrity_error(key, f"reserved flags set ({flags:#x})")
    if (sid, index, raw_len) != (block.slice_id, block.index, block.length):
        raise integrity_error(key, f"block identity is {sid}_{index}_{raw_len}, not that of its key "
                                   f"{block.slice_id}_{block.index}_{block.length}")
    seg = 1 << shift if shift < 32 else 0
    if not MIN_SEGMENT <= seg <= MAX_SEGMENT or n != segment_count(raw_len, seg):
        raise integrity_error(key, f"segment shift {shift} and count {n} do not fit {raw_len} bytes")
    offsets = [end]
    codecs = bytearray()
    stored_sums, raw_sums = [], []
    for k, (stored_len, kind, reserved, stored_sum, raw_sum) in enumerate(_ENTRY.iter_unpack(view[HEADER_SIZE:end])):
        seg_raw = min(seg, raw_len - k * seg)
        if reserved != _ZERO3:
            raise integrity_error(key, f"segment {k}: reserved bytes set")
        if kind == CODEC_RAW:
            if stored_len != seg_raw or stored_sum != raw_sum:
                raise integrity_error(key, f"segment {k}: raw entry of {stored_len} bytes for {seg_raw}")
        elif kind == CODEC_LZ4:
            if not 0 < stored_len < seg_raw:
                raise integrity_error(key, f"segment {k}: lz4 entry of {stored_len} bytes for {seg_raw}")
        else:
            raise integrity_error(key, f"segment {k}: unknown codec {kind}")
        offsets.append(offsets[-1] + stored_len)
        codecs.append(kind)
        stored_sums.append(stored_sum)
        raw_sums.append(raw_sum)
    if offsets[-1] - end != payload_len:
        raise integrity_error(key, f"segments add up to {offsets[-1] - end} bytes, header says {payload_len}")
    return Table(block, seg, tuple(offsets), bytes(codecs), tuple(stored_sums), tuple(raw_sums), bytes(view[:end]))


def decode_segment(table: Table, k: int, stored: bytes | memoryview, *, key: str | None = None) -> bytes | memoryview:
    """The verified raw bytes of segment ``k`` from its stored bytes (a view into them when raw)."""
    key = key or table.block.key
    view = memoryview(stored)
    want = table.offsets[k + 1] - table.offsets[k]
    if len(view) != want:
        raise integrity_error(key, f"segment {k}: {len(view)} stored bytes, table says {want}")
    if xxhash.xxh3_64_intdigest(view) != table.stored_sums[k]:
        raise integrity_error(key, f"segment {k}: checksum mismatch")
    if table.codecs[k] == CODEC_RAW:
        return view
    raw_len = table.raw_len(k)
    try:
        raw = lz4.block.decompress(view, uncompressed_size=raw_len)
    except Exception as e:  # LZ4BlockError: corruption (the stored sum matched: a writer bug)
        raise integrity_error(key, f"segment {k}: lz4 does not decompress ({e})") from e
    if len(raw) != raw_len or xxhash.xxh3_64_intdigest(raw) != table.raw_sums[k]:
        raise integrity_error(key, f"segment {k}: raw checksum mismatch")
    return raw


@dataclass(slots=True)
class Decoded:
    """A decoded block object: its verified segments, and the failures of the others.

    ``parts[k]`` is segment ``k``'s raw bytes or ``None`` when it failed (``errors[k]`` says
    why); a v1 block is one part. ``damaged`` is set when anything in the object failed, including
    bytes outside every segment (a truncated or extended object): such a copy is not cached.
    """

    table: Table | None
    parts: list[bytes | memoryview | None]
    errors: dict[int, IntegrityError]
    damaged: bool
    whole: bytes | memoryview | None  # the block's raw bytes in one buffer, when every part is good

    def error_for(self, first: int, stop: int) -> IntegrityError | None:
        for k in range(first, stop):
            if k in self.errors:
                return self.errors[k]
        return None


def decode_object(data: bytes | memoryview, block: BlockKey, *, key: str | None = None) -> Decoded:
    """Decode a whole block object of either version (the version byte decides).

    A v1 frame is all or nothing (:class:`IntegrityError`); a v2 object whose header or table is
    damaged raises too, while a damaged segment fails alone (``Decoded.errors``).
    """
    key = key or block.key
    view = memoryview(data)
    if len(view) > 4 and view[4] == codec.VERSION:
        raw = codec.decode_block(view, key=key, expected_len=block.length)
        return Decoded(None, [raw], {}, False, raw)
    table = parse_table(view, block, key=key)
    parts: list[bytes | memoryview | None] = []
    errors: dict[int, IntegrityError] = {}
    damaged = False
    if len(view) != table.total:
        damaged = True
        integrity_error(key, f"object is {len(view)} bytes, its table says {table.total}")
    for k in range(table.count):
        lo, hi = table.offsets[k], table.offsets[k + 1]
        try:
            if hi > len(view):
                raise integrity_error(key, f"segment {k}: cut off at byte {len(view)}")
            parts.append(decode_segment(table, k, view[lo:hi], key=key))
        except IntegrityError as e:
            parts.append(None)
            errors[k] = e
            damaged = True
    whole: bytes | memoryview | None = None
    if not errors:
        # All raw: the raw bytes are the payload itself, already in one buffer (no copy).
        whole = view[table.size:table.total] if table.all_raw else b"".join(p for p in parts if p is not None)
    return Decoded(table, parts, errors, damaged, whole)
