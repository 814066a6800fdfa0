"""Chunk store: slices cut into framed, checksummed, compressed blocks; caches; readahead.

Public names: :class:`ChunkStore` (writer, read, prefetch, remove, stats), :class:`SliceWriter`,
:class:`DiskCache` and :func:`default_cache_dir`, :class:`ReadaheadWindow`, the codec
(:func:`encode_block`, :func:`decode_block`) and the key helpers (:func:`block_key`,
:func:`parse_block_key`). See ``docs/chunks.md``.
"""

from artifacts_core.chunk.codec import INTEGRITY_ERRORS, decode_block, encode_block
from artifacts_core.chunk.disk_cache import DiskCache, default_cache_dir
from artifacts_core.chunk.keys import BlockKey, block_key, parse_block_key, slice_blocks
from artifacts_core.chunk.readahead import ReadaheadWindow, Span
from artifacts_core.chunk.store import ChunkStore
from artifacts_core.chunk.writer import SliceWriter, WriterState

__all__ = [
    "INTEGRITY_ERRORS", "BlockKey", "ChunkStore", "DiskCache", "ReadaheadWindow", "SliceWriter", "Span",
    "WriterState", "block_key", "decode_block", "default_cache_dir", "encode_block", "parse_block_key",
    "slice_blocks",
]
