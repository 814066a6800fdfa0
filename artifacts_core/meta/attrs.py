"""Inode attributes, directory entries and slice records: the fixed binary layouts stored in Redis.

The layouts are shared with the Lua functions (``lua/00_common.lua`` packs and unpacks the same
formats with Redis's ``struct`` library); every metadata test round-trips through both (the
functions pack what Python unpacks), ``tests/core/meta/``.
Fixed layouts keep an inode at 91 bytes (JuiceFS keeps 71; we add a birth time for agents'
``createdAt`` and a change counter that makes a cheap version token).

Attr layout, big-endian (``ATTR_FORMAT``):
flags u8, mode u16 (type << 12 | permission bits), uid u32, gid u32, atime i64 + ns u32,
mtime i64 + ns u32, ctime i64 + ns u32, nlink u32, length u64, rdev u32, parent u64,
btime i64 + ns u32, gen u64 (incremented by every change of data or attributes).
"""

from __future__ import annotations

import struct

import msgspec

from artifacts_core.types import (  # noqa: F401 -- Attr and the types live in types.py; re-exported
    TYPE_BLK,
    TYPE_CHR,
    TYPE_DIR,
    TYPE_FIFO,
    TYPE_FILE,
    TYPE_SOCK,
    TYPE_SYMLINK,
    Attr,
    Ino,
    SliceId,
)

ATTR_FORMAT = ">BHIIqIqIqIIQIQqIQ"
ATTR_SIZE = struct.calcsize(ATTR_FORMAT)  # 91
_ATTR = struct.Struct(ATTR_FORMAT)

#: Attr flag: the inode is unlinked but still open somewhere (kept until the last close).
FLAG_SUSTAINED = 0x01


def unpack_attr(data: bytes) -> Attr:
    (flags, mode, uid, gid, at, atn, mt, mtn, ct, ctn, nlink, length, rdev, parent,
     bt, btn, gen) = _ATTR.unpack(data[:ATTR_SIZE])
    return Attr(mode=mode, uid=uid, gid=gid, atime_ns=at * 1_000_000_000 + atn,
                mtime_ns=mt * 1_000_000_000 + mtn, ctime_ns=ct * 1_000_000_000 + ctn,
                nlink=nlink, length=length, rdev=rdev, parent=parent,
                btime_ns=bt * 1_000_000_000 + btn, gen=gen, flags=flags)


def pack_attr(a: Attr) -> bytes:
    def split(ns: int) -> tuple[int, int]:
        return ns // 1_000_000_000, ns % 1_000_000_000

    at, atn = split(a.atime_ns)
    mt, mtn = split(a.mtime_ns)
    ct, ctn = split(a.ctime_ns)
    bt, btn = split(a.btime_ns)
    return _ATTR.pack(a.flags, a.mode, a.uid, a.gid, at, atn, mt, mtn, ct, ctn, a.nlink, a.length,
                      a.rdev, a.parent, bt, btn, a.gen)


ENTRY_FORMAT = ">BQ"
_ENTRY = struct.Struct(ENTRY_FORMAT)


def unpack_entry(data: bytes) -> tuple[int, Ino]:
    """A directory entry value: (file type, inode)."""
    typ, ino = _ENTRY.unpack(data)
    return typ, Ino(ino)


def pack_entry(typ: int, ino: Ino) -> bytes:
    return _ENTRY.pack(typ, ino)


#: Slice kinds in a record.
SLICE_S3 = 0  # blocks in the object store; id 0 means a hole (reads as zeros)
SLICE_INLINE = 1  # bytes in Redis under ``b<id>``

SLICE_FORMAT = ">IQIIIB"
_SLICE = struct.Struct(SLICE_FORMAT)
SLICE_RECORD_SIZE = _SLICE.size  # 25


class SliceRecord(msgspec.Struct, frozen=True):
    """One committed write inside a chunk: bytes ``[off, off+len)`` of slice ``id`` (whose full
    length is ``size``) placed at ``pos`` within the chunk. Later records win."""

    pos: int
    id: SliceId
    size: int
    off: int
    len: int
    kind: int = SLICE_S3

    @property
    def is_hole(self) -> bool:
        return self.id == 0


def unpack_slices(data: bytes) -> list[SliceRecord]:
    return [SliceRecord(p, SliceId(i), s, o, ln, k) for p, i, s, o, ln, k in _SLICE.iter_unpack(data)]


def unpack_slice(data: bytes) -> SliceRecord:
    p, i, s, o, ln, k = _SLICE.unpack(data)
    return SliceRecord(p, SliceId(i), s, o, ln, k)


def pack_slice(r: SliceRecord) -> bytes:
    return _SLICE.pack(r.pos, r.id, r.size, r.off, r.len, r.kind)
