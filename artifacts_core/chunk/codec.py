"""Block framing v1: the bytes of one block object, as stored in S3 and in the disk cache.

Owns the v1 format of a block (DESIGN.md §3) and its verification, and what both formats share
(the magic, codec numbers, the integrity counter and :func:`integrity_error`); format v2, blocks of
independently checked segments, is :mod:`~artifacts_core.chunk.segmented`, and nothing else in
the project parses block bytes. v1 stays readable forever and is still written by volumes whose
``setting`` says ``block_format: 1``. Moving parts: a fixed 32-byte little-endian header, a payload that is
either the raw bytes or their lz4 block-compressed form (``lz4.block``, ``store_size=False``: the
raw length is in the header), and two xxh3-64 checksums::

    offset size field
         0    4 magic          b"ATFB" (Artifacts block)
         4    1 version        1
         5    1 codec          0 raw, 1 lz4
         6    2 reserved       must be 0
         8    4 raw_len        uncompressed length (u32; a block is at most 64 MiB)
        12    4 payload_len    bytes that follow the header
        16    8 raw_xxh3       xxh3-64 of the RAW bytes: what the reader finally checks
        24    8 frame_xxh3     xxh3-64 of header bytes 0..24 and the payload

Why two checksums: ``raw_xxh3`` proves the decoded data is what the writer had (end to end,
through any codec); ``frame_xxh3`` makes *every* stored bit matter — lz4 has redundant encodings
(a match offset into a run of zeros decodes the same either way), so a flipped payload bit can
decode to correct data, and a reserved bit can be flipped harmlessly; we still want to know the
object or cache file is damaged. Hashing the payload costs ~0.4 ms per 4 MiB (about 10 GB/s).

Invariant: :func:`decode_block` returns bytes only when magic, version, codec, reserved bits,
payload length, decompressed length and both checksums all match; every mismatch raises
:class:`~artifacts_core.errors.IntegrityError` (EIO), is counted in :data:`INTEGRITY_ERRORS` and
logged with the object key. No block reaches a caller unverified (STYLE.md habit 8).
"""

from __future__ import annotations

import logging
import struct
import threading

import lz4.block
import xxhash

from artifacts_core.errors import IntegrityError

log = logging.getLogger(__name__)

MAGIC = b"ATFB"
VERSION = 1
CODEC_RAW = 0
CODEC_LZ4 = 1
CODECS = {"none": CODEC_RAW, "lz4": CODEC_LZ4}

_HEADER = struct.Struct("<4sBBHIIQQ")
HEADER_SIZE = _HEADER.size  # 32
#: The frame checksum covers the header up to (not including) itself.
_FRAMED_PREFIX = HEADER_SIZE - 8
#: A block is at most one 64 MiB chunk (a slice never spans chunks), so u32 lengths suffice and
#: anything larger in a header is corruption, not a reason to allocate gigabytes.
MAX_BLOCK = 64 << 20


class IntegrityCounter:
    """A thread-safe count of detected integrity failures (module-wide, and per chunk store)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value = 0

    def incr(self) -> None:
        with self._lock:
            self._value += 1

    @property
    def value(self) -> int:
        return self._value


#: Every integrity failure detected by :func:`decode_block` in this process.
INTEGRITY_ERRORS = IntegrityCounter()


def encode_block(raw: bytes | bytearray | memoryview, compression: str = "lz4") -> bytes:
    """Frame ``raw`` as a v1 block: lz4-compressed when ``compression == "lz4"`` and that is smaller, else raw."""
    raw_len = len(raw)
    if raw_len > MAX_BLOCK:
        raise ValueError(f"block of {raw_len} bytes exceeds the {MAX_BLOCK}-byte maximum")
    codec = CODECS[compression]
    payload: bytes | bytearray | memoryview = raw
    if codec == CODEC_LZ4 and raw_len:
        packed = lz4.block.compress(raw, store_size=False)
        if len(packed) < raw_len:
            payload = packed
        else:
            codec = CODEC_RAW
    else:
        codec = CODEC_RAW
    raw_sum = xxhash.xxh3_64_intdigest(raw)
    prefix = _HEADER.pack(MAGIC, VERSION, codec, 0, raw_len, len(payload), raw_sum, 0)[:_FRAMED_PREFIX]
    frame = xxhash.xxh3_64(prefix)
    frame.update(payload)
    return b"".join((prefix, frame.digest()[::-1], payload))


def integrity_error(key: str | None, what: str) -> IntegrityError:
    """Count and log a failed check of ``key``; the error to raise (EIO). Both block formats use it."""
    INTEGRITY_ERRORS.incr()
    log.error("block integrity check failed: %s (key=%s)", what, key)
    return IntegrityError(f"corrupt block: {what}", path=key)


def decode_block(data: bytes | bytearray | memoryview, *, key: str | None = None,
                 expected_len: int | None = None) -> bytes:
    """The verified raw bytes of an encoded block; :class:`IntegrityError` on any mismatch.

    ``expected_len`` is the raw length the caller knows from the key; ``key`` names the object in
    the error and the log line.
    """
    view = memoryview(data)
    if len(view) < HEADER_SIZE:
        raise integrity_error(key, f"{len(view)} bytes is shorter than the {HEADER_SIZE}-byte header")
    magic, version, codec, reserved, raw_len, payload_len, raw_sum, frame_sum = _HEADER.unpack_from(view)
    if magic != MAGIC:
        raise integrity_error(key, f"bad magic {bytes(magic)!r}")
    if version != VERSION:
        raise integrity_error(key, f"unknown format version {version}")
    if payload_len != len(view) - HEADER_SIZE:
        raise integrity_error(key, f"payload is {len(view) - HEADER_SIZE} bytes, header says {payload_len}")
    payload = view[HEADER_SIZE:]
    frame = xxhash.xxh3_64(view[:_FRAMED_PREFIX])
    frame.update(payload)
    if frame.intdigest() != frame_sum:
        raise integrity_error(key, "frame checksum mismatch")
    if reserved != 0:
        raise integrity_error(key, f"reserved bits set ({reserved:#x})")
    if raw_len > MAX_BLOCK:
        raise integrity_error(key, f"raw length {raw_len} exceeds the maximum")
    if expected_len is not None and raw_len != expected_len:
        raise integrity_error(key, f"raw length {raw_len}, expected {expected_len}")
    if codec == CODEC_RAW:
        if payload_len != raw_len:
            raise integrity_error(key, f"raw payload of {payload_len} bytes, header says {raw_len}")
        raw = bytes(payload)
    elif codec == CODEC_LZ4:
        try:
            raw = lz4.block.decompress(payload, uncompressed_size=raw_len)
        except Exception as e:  # lz4 raises LZ4BlockError; any failure here is corruption
            raise integrity_error(key, f"lz4 payload does not decompress ({e})") from e
        if len(raw) != raw_len:
            raise integrity_error(key, f"decompressed to {len(raw)} bytes, header says {raw_len}")
    else:
        raise integrity_error(key, f"unknown codec {codec}")
    if xxhash.xxh3_64_intdigest(raw) != raw_sum:
        raise integrity_error(key, "checksum of the raw bytes does not match")
    return raw
