"""``ChunkStore``: slices in, blocks out — the data plane between the VFS and an object store.

Owns the mapping of a slice (one immutable run of at most 64 MiB of file data, named by its
``SliceId``) to block objects (``keys.block_key``), the block format written (v1 ``codec`` or v2
``segmented``, from the volume's ``setting``), the two caches, the upload concurrency and the
buffer budget. It knows nothing of inodes or paths.

Moving parts:
- writers (:class:`~artifacts_core.chunk.writer.SliceWriter`, from :meth:`ChunkStore.writer`)
  hand each full block to :meth:`_upload`, which runs on the loop thread under a semaphore of
  ``upload_concurrency``: encode in the CPU pool, PUT, release the block's budget bytes. The PUT
  only creates (``if_absent``): a block object is never overwritten. A key already holding the
  same bytes is our own earlier attempt (a retried PUT whose answer was lost); other bytes mean
  the slice id was handed out twice (a Redis rollback), and the upload fails loudly;
- :meth:`read` serves a byte range of a slice: straight from the memory cache on the caller's
  thread when everything is there, otherwise on the loop through the
  :class:`~artifacts_core.chunk.fetch.BlockFetcher` (whole blocks for sequential readers, single
  segments of v2 blocks for random ones; verify; cache);
- :meth:`prefetch` starts whole-block fetches without waiting (readahead), within the budget;
  :meth:`warm` fills the disk cache (``artifacts warmup``);
- :meth:`remove` deletes a slice's blocks and drops them from both caches; :meth:`evict` only
  from the caches (``artifacts cache evict``).

Invariants: no byte reaches a caller unless its block or segment passed verification (or was the
writer's own data); concurrent readers of one block cause one GET; memory held for writes and
readahead stays within the budget (see ``budget``); blocking disk I/O never runs on the loop thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from artifacts_core.aio import LoopThread
from artifacts_core.chunk import codec, segmented
from artifacts_core.chunk.budget import ByteBudget
from artifacts_core.chunk.cache import DEFAULT_MEMORY_CACHE, MemoryBlockCache
from artifacts_core.chunk.counters import Counters
from artifacts_core.chunk.disk_cache import DiskCache
from artifacts_core.chunk.disk_tier import DiskTier
from artifacts_core.chunk.fetch import BlockFetcher
from artifacts_core.chunk.keys import BlockKey, parse_block_key, slice_blocks
from artifacts_core.chunk.writer import SliceWriter
from artifacts_core.errors import ArtifactsError, Exists, InvalidArgument, NotFound, StorageError
from artifacts_core.objects.base import ObjectStore
from artifacts_core.types import CHUNK_SIZE, DEFAULT_BLOCK_SIZE, SliceId

log = logging.getLogger(__name__)

T = TypeVar("T")

#: JuiceFS's default --max-uploads: 20 x 4 MiB in flight saturates ~800 MiB/s at 100 ms per PUT.
DEFAULT_UPLOAD_CONCURRENCY = 20
#: Downloads in flight: a bit more than uploads, since several readers and readahead share them.
DEFAULT_DOWNLOAD_CONCURRENCY = 32
#: JuiceFS's default --buffer-size: memory for writes and readahead of one mount.
DEFAULT_BUFFER_BUDGET = 300 << 20
#: Block format new volumes are formatted with (``Setting.block_format``); v1 stays readable.
DEFAULT_BLOCK_FORMAT = 2
#: Segment size of format v2 (``Setting.segment_size``): what a small random read fetches.
#: bench_read, 512 MiB, same run: 64 KiB beat 128 and 256 KiB on dense and sparse 4 KiB reads
#: (1.38x and 1.40x format v1's rate, against 1.24x and 0.96x for 256 KiB), and costs the least
#: CPU to encode and decode (4 MiB of random data: 1.3 ms and 0.15 ms, v1 4.9 ms and 0.3 ms).
DEFAULT_SEGMENT_SIZE = 64 << 10
#: Blocks larger than this are encoded/decoded in the CPU pool, smaller ones inline on the loop
#: (a thread hop costs more than lz4 on 64 KiB). With fewer than 4 cores the default is "never":
#: the loop thread, the pool and the S3 server then share too few cores, and the GIL hand-offs
#: cost more than the parallelism gains (bench_chunk on 2 cores: cold reads 1.3-1.5x faster inline).
_OFFLOAD_MIN = 64 << 10
_FEW_CORES = 4
#: Disk-cache worker threads, per pool (lookups and reads; writes): file I/O blocks, so it gets
#: its own threads; two keep the disk busy.
_DISK_THREADS = 2
#: Their nice value: below the loop thread and the S3 server, which a read waits for.
_DISK_NICE = 10
#: Block sizes accepted (JuiceFS allows 64 KiB to 16 MiB; small sizes serve fast tests).
_MIN_BLOCK, _MAX_BLOCK = 4 << 10, 16 << 20


def _release(budget: ByteBudget, n: int, _task: object) -> None:
    """A prefetch's done callback: give its ``n`` bytes back to ``budget``."""
    budget.release(n)


def _lower_priority() -> None:
    """Disk-cache threads yield the CPU to the reads they serve: on a busy host their writes wait
    (and are skipped past ``_MAX_DISK_PENDING``) rather than slow the read stream (Linux: a
    thread's nice value is its own)."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), _DISK_NICE)


class ChunkStore:
    def __init__(self, store: ObjectStore, loop: LoopThread, *, block_size: int = DEFAULT_BLOCK_SIZE,
                 compression: str = "lz4", block_format: int = DEFAULT_BLOCK_FORMAT,
                 segment_size: int = DEFAULT_SEGMENT_SIZE,
                 upload_concurrency: int = DEFAULT_UPLOAD_CONCURRENCY,
                 download_concurrency: int = DEFAULT_DOWNLOAD_CONCURRENCY,
                 buffer_budget: int = DEFAULT_BUFFER_BUDGET, memory_cache_bytes: int = DEFAULT_MEMORY_CACHE,
                 disk_cache: DiskCache | None = None, cache_full_writes: bool = False,
                 cpu_offload_bytes: int | None = None, on_reused_id: Callable[[], None] | None = None) -> None:
        if not _MIN_BLOCK <= block_size <= _MAX_BLOCK:
            raise InvalidArgument(f"block size {block_size} outside {_MIN_BLOCK}..{_MAX_BLOCK}")
        if compression not in codec.CODECS:
            raise InvalidArgument(f"unknown compression {compression!r} (one of {sorted(codec.CODECS)})")
        if block_format not in (codec.VERSION, segmented.VERSION):
            raise InvalidArgument(f"unknown block format {block_format} (1 or 2)")
        if block_format == segmented.VERSION:
            try:
                segmented.check_segment_size(segment_size)
            except ValueError as e:
                raise InvalidArgument(str(e)) from None
        self.store = store
        self.loop = loop
        self.block_size = block_size
        self.compression = compression
        self.block_format = block_format
        self.segment_size = segment_size
        self.cache_full_writes = cache_full_writes
        #: Called when a block key already holds another slice's bytes: the slice-id batch that
        #: produced it is suspect (the volume passes the engine's ``drop_slice_ids``).
        self.on_reused_id = on_reused_id
        if cpu_offload_bytes is None:
            cpu_offload_bytes = _OFFLOAD_MIN if (os.cpu_count() or 1) >= _FEW_CORES else sys.maxsize
        self.cpu_offload_bytes = cpu_offload_bytes
        self.budget = ByteBudget(buffer_budget)
        self.memory_cache = MemoryBlockCache(memory_cache_bytes)
        self.disk_cache = disk_cache
        self.counters = Counters()
        self._upload_sem = asyncio.Semaphore(upload_concurrency)
        # Two pools: lookups and reads (a read waits for them) never queue behind cache writes,
        # which run below normal priority and may take milliseconds each on a busy host.
        self._disk_pool = concurrent.futures.ThreadPoolExecutor(_DISK_THREADS, thread_name_prefix="artifacts-disk")
        self._disk_write_pool = concurrent.futures.ThreadPoolExecutor(
            _DISK_THREADS, thread_name_prefix="artifacts-diskw", initializer=_lower_priority)
        seg = segment_size if block_format == segmented.VERSION else None
        tier = None if disk_cache is None else DiskTier(
            disk_cache, self.counters, segment_size=seg, read_pool=self._disk_pool, write_pool=self._disk_write_pool)
        self.fetcher = BlockFetcher(
            store, loop, memory=self.memory_cache, disk=tier, counters=self.counters,
            download_concurrency=download_concurrency, cpu_offload_bytes=cpu_offload_bytes, segment_size=seg,
            promote=lambda block: self._start_prefetch([block]))
        self._inflight_uploads = 0
        self._closed = False

    # -- writing --------------------------------------------------------------------------------

    def writer(self, slice_id: SliceId) -> SliceWriter:
        """A writer for a new slice; the VFS commits it only after ``finish()`` returns."""
        return SliceWriter(slice_id, block_size=self.block_size, loop=self.loop, budget=self.budget,
                           upload=self._submit_upload, delete=self.delete_keys)

    def _submit_upload(self, block: BlockKey, buf: bytearray) -> concurrent.futures.Future[None]:
        return self.loop.submit(self._upload(block, buf))

    async def _upload(self, block: BlockKey, buf: bytearray) -> None:
        key = block.key
        try:
            async with self._upload_sem:
                self._inflight_uploads += 1
                try:
                    encoded = await self._cpu(self._encode, buf, block)
                    await self._put_new(block, encoded)
                except ArtifactsError:
                    self.counters.incr("upload_errors")
                    raise
                except Exception as e:
                    self.counters.incr("upload_errors")
                    raise StorageError(f"upload failed: {e}", path=key) from e
                finally:
                    self._inflight_uploads -= 1
            self.counters.incr("uploads")
            self.counters.incr("upload_bytes", len(encoded))
            # A short block is a small file or a tail, likely read back soon (JuiceFS caches those
            # too); full blocks only on request, so a big write does not flush the read cache.
            if block.length < self.block_size or self.cache_full_writes:
                self.memory_cache.put(key, bytes(buf))
                self.fetcher.disk_put_later(key, encoded)
        finally:
            self.budget.release(len(buf))

    async def _put_new(self, block: BlockKey, encoded: bytes) -> None:
        """Store a block under a key nothing holds yet (DESIGN.md §10: never overwritten)."""
        key = block.key
        existing = None
        for _ in range(2):
            try:
                await self.store.put(key, encoded, if_absent=True)
                return
            except Exists:
                pass
            try:
                existing = await self.store.get(key)
                break
            except NotFound:
                continue  # deleted between the two requests: try to create it again
        if existing == encoded:
            return  # our own earlier attempt landed (a retried PUT): the block is stored
        self.counters.incr("block_collisions")
        if self.on_reused_id is not None:
            self.on_reused_id()
        log.error("block %s already holds another slice's data: slice id %d was handed out twice "
                  "(Redis lost recent writes?); this write fails and the object is left as it is",
                  key, block.slice_id)
        raise StorageError(f"slice {block.slice_id}: its block key already holds another slice's data",
                           path=key, hint="the slice id was reserved twice (a Redis rollback); write the "
                                          "data again: the next write reserves fresh ids")

    def _encode(self, buf: bytearray, block: BlockKey) -> bytes:
        if self.block_format == segmented.VERSION:
            return segmented.encode_block(buf, self.compression, block, self.segment_size)
        return codec.encode_block(buf, self.compression)

    async def _cpu(self, fn: Callable[..., T], data: bytes | bytearray, *args: Any, **kwargs: Any) -> T:
        """``fn(data, ...)`` inline for small buffers, else in the loop's CPU pool."""
        if len(data) <= self.cpu_offload_bytes:
            return fn(data, *args, **kwargs)
        return await self.loop.cpu(functools.partial(fn, data, *args, **kwargs))

    # -- reading --------------------------------------------------------------------------------

    def _spans(self, slice_id: SliceId, slice_len: int, offset: int, length: int) -> list[tuple[BlockKey, int, int]]:
        if offset < 0 or length < 0 or not 0 <= slice_len <= CHUNK_SIZE:
            raise InvalidArgument(f"invalid read: slice_len={slice_len} offset={offset} length={length}")
        end = min(offset + length, slice_len)
        if end <= offset:
            return []
        bs = self.block_size
        spans = []
        for index in range(offset // bs, -(-end // bs)):
            start = index * bs
            blen = min(bs, slice_len - start)
            spans.append((BlockKey(slice_id, index, blen), max(offset, start) - start, min(end, start + blen) - start))
        return spans

    @staticmethod
    def _assemble(pieces: Sequence[bytes | memoryview]) -> bytes | memoryview:
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def read(self, slice_id: SliceId, slice_len: int, offset: int, length: int, *,
             whole: bool = True, dense: bool = False) -> bytes | memoryview:
        """Bytes ``[offset, offset + length)`` of a slice of ``slice_len`` bytes (clipped at its end),
        as ``bytes`` or a read-only view into a cached block (no copy).

        ``whole`` says how to fetch what is not cached: whole blocks (sequential readers, the
        default) or, for format v2 blocks, only the segments the range touches (random readers);
        ``dense`` (random reads that revisit blocks) fetches the rest of a block on its first miss.
        """
        spans = self._spans(slice_id, slice_len, offset, length)
        if not spans:
            return b""
        pieces = []
        for block, lo, hi in spans:  # fast path: everything in memory, no hop onto the loop
            data = self.fetcher.cached(block, lo, hi)
            if data is None:
                break
            pieces.append(data)
        else:
            self.counters.incr("memory_hits", len(pieces))
            return self._assemble(pieces)
        return self.loop.run(self._read_spans(spans, whole, dense))

    async def read_async(self, slice_id: SliceId, slice_len: int, offset: int, length: int, *,
                         whole: bool = True, dense: bool = False) -> bytes | memoryview:
        """:meth:`read` for callers already on the loop."""
        return await self._read_spans(self._spans(slice_id, slice_len, offset, length), whole, dense)

    async def _read_spans(self, spans: Sequence[tuple[BlockKey, int, int]], whole: bool,
                          dense: bool = False) -> bytes | memoryview:
        if not spans:
            return b""
        if len(spans) == 1:
            block, lo, hi = spans[0]
            return await self.fetcher.read(block, lo, hi, whole=whole, dense=dense)
        pieces = await asyncio.gather(*(self.fetcher.read(b, lo, hi, whole=whole, dense=dense)
                                        for b, lo, hi in spans))
        return self._assemble(pieces)

    # -- readahead, warmup and removal ----------------------------------------------------------

    def prefetch(self, slice_id: SliceId, slice_len: int, offset: int, length: int) -> None:
        """Start fetching the blocks of a range whole into the memory cache; never waits (readahead)."""
        blocks = [b for b, _, _ in self._spans(slice_id, slice_len, offset, length)
                  if b.key not in self.memory_cache]
        if not blocks or self._closed or self.loop.closed:
            return  # readahead is best effort: nothing to do on a closing volume
        if self.loop.in_loop_thread():
            self._start_prefetch(blocks)
        else:
            self.loop.call_soon(self._start_prefetch, blocks)

    def _start_prefetch(self, blocks: list[BlockKey]) -> None:
        for block in blocks:
            if self.fetcher.in_flight(block.key) or block.key in self.memory_cache:
                continue  # deduplicated: already cached or on its way
            if not self.budget.try_acquire(block.length):
                self.counters.incr("prefetch_skipped")
                continue
            self.counters.incr("prefetches")
            task = self.fetcher.start_whole(block)
            task.add_done_callback(functools.partial(_release, self.budget, block.length))

    def blocks(self, slice_id: SliceId, slice_len: int, offset: int = 0, length: int | None = None) -> list[BlockKey]:
        """The blocks holding bytes ``[offset, offset + length)`` of a slice (all of it by default)."""
        return [b for b, _, _ in self._spans(slice_id, slice_len, offset, slice_len if length is None else length)]

    async def warm(self, blocks: Sequence[BlockKey], *, concurrency: int = 16,
                   progress: Callable[[BlockKey, str], None] | None = None) -> dict[str, int]:
        """Bring blocks into the disk cache (``artifacts warmup``): each fetched whole, verified and
        written, at most ``concurrency`` at a time. ``progress(block, outcome)`` follows each one
        (outcome ``fetched``, ``cached`` or ``failed``); returns those counts and ``fetched_bytes``.
        Failures are logged and counted, never raised: one bad block does not stop a warmup."""
        disk = self.disk_cache
        if disk is None or not disk.enabled:
            raise InvalidArgument("this volume has no usable disk cache to warm",
                                  hint="open it with disk_cache on, and check the cache directory")
        counts = dict.fromkeys(("fetched", "cached", "failed", "fetched_bytes"), 0)
        sem = asyncio.Semaphore(concurrency)
        loop = asyncio.get_running_loop()

        async def one(block: BlockKey) -> None:
            async with sem:
                outcome = "cached"
                if not await loop.run_in_executor(self._disk_pool, disk.has, block.key):
                    try:
                        fetched = await self.fetcher.store_on_disk(block)
                        counts["fetched_bytes"] += fetched  # after the await: no lost update
                        outcome = "fetched"
                    except ArtifactsError as e:
                        log.warning("warmup of %s failed: %s", block.key, e)
                        outcome = "failed"
                counts[outcome] += 1
                if progress is not None:
                    progress(block, outcome)

        await asyncio.gather(*(one(b) for b in blocks))
        return counts

    def remove(self, slice_id: SliceId, slice_len: int) -> None:
        """Delete every block of a slice (missing ones are fine) and drop them from the caches."""
        self.loop.run(self.remove_async(slice_id, slice_len))

    async def remove_async(self, slice_id: SliceId, slice_len: int) -> None:
        await self.delete_keys([b.key for b in slice_blocks(slice_id, slice_len, self.block_size)])

    async def delete_keys(self, keys: Sequence[str]) -> None:
        blocks = [b for b in map(parse_block_key, keys) if b is not None]

        async def one(key: str) -> None:
            async with self._upload_sem:
                await self.store.delete(key)
            self.counters.incr("blocks_removed")

        for block in blocks:
            self.fetcher.forget(block)
        await asyncio.gather(*(one(k) for k in keys))
        if self.disk_cache is not None:
            cache, segments = self.disk_cache, self.fetcher.segments_of

            def drop_all() -> None:
                for b in blocks:
                    cache.drop_block(b.key, segments(b))

            await asyncio.get_running_loop().run_in_executor(self._disk_pool, drop_all)

    def evict(self, blocks: Sequence[BlockKey]) -> tuple[int, int]:
        """Drop blocks (and their cached segments) from both caches: ``(files, bytes)`` removed
        from disk (``artifacts cache evict``)."""
        for block in blocks:
            self.fetcher.forget(block)
        cache = self.disk_cache
        files = size = 0
        if cache is not None:
            for block in blocks:
                n, b = cache.drop_block(block.key, self.fetcher.segments_of(block))
                files, size = files + n, size + b
        return files, size

    # -- stats and shutdown ---------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        snap = self.counters.snapshot()
        snap.update(
            inflight_uploads=self._inflight_uploads, inflight_downloads=self.fetcher.inflight,
            buffer_used=self.budget.used, buffer_waits=self.budget.waits,
            memory_cache_bytes=self.memory_cache.size, memory_cache_capacity=self.memory_cache.capacity,
            disk_cache_bytes=self.disk_cache.used if self.disk_cache else 0,
            disk_cache_capacity=self.disk_cache.capacity if self.disk_cache else 0,
            disk_cache_files=len(self.disk_cache) if self.disk_cache else 0,
        )
        return snap

    def close(self) -> None:
        """Finish queued disk-cache writes and stop the disk pool. The object store is the caller's."""
        if self._closed:
            return
        self._closed = True
        if not self.loop.closed and not self.loop.in_loop_thread():
            # Readahead still in flight would outlive the object store's client.
            with contextlib.suppress(Exception):
                self.loop.run(self._cancel_fetches())
        self._disk_pool.shutdown(wait=True)
        self._disk_write_pool.shutdown(wait=True)  # queued cache writes finish: a bounded few

    async def _cancel_fetches(self) -> None:
        self.fetcher.cancel()
        await asyncio.sleep(0)  # let the cancelled tasks unwind before the store closes
