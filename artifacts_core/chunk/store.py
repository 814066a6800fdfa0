"""``ChunkStore``: slices in, blocks out — the data plane between the VFS and an object store.

Owns the mapping of a slice (one immutable run of at most 64 MiB of file data, named by its
``SliceId``) to block objects (``keys.block_key``), their framing (``codec``), the two caches, the
upload/download concurrency and the buffer budget. It knows nothing of inodes or paths.

Moving parts:
- writers (:class:`~artifacts_core.chunk.writer.SliceWriter`, from :meth:`ChunkStore.writer`)
  hand each full block to :meth:`_upload`, which runs on the loop thread under a semaphore of
  ``upload_concurrency``: encode in the CPU pool, PUT, release the block's budget bytes. The PUT
  only creates (``if_absent``): a block object is never overwritten. A key already holding the
  same bytes is our own earlier attempt (a retried PUT whose answer was lost); other bytes mean
  the slice id was handed out twice (a Redis rollback), and the upload fails loudly;
- :meth:`read` serves a byte range of a slice: straight from the memory cache on the caller's
  thread when every block is there, otherwise on the loop, fetching missing blocks concurrently,
  each through single-flight → disk cache → object store (whole-block GETs: blocks are compressed,
  so range GETs are impossible) → verify → memory cache (→ disk cache in the background);
- :meth:`prefetch` starts the same fetches without waiting (readahead), within the budget;
- :meth:`remove` deletes a slice's blocks and drops them from both caches.

Invariants: no byte reaches a caller unless its block passed ``decode_block`` (or was the writer's
own data); concurrent readers of one block cause one GET; memory held for writes and readahead
stays within the budget (see ``budget``); blocking disk I/O never runs on the loop thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from artifacts_core.aio import LoopThread
from artifacts_core.chunk.budget import ByteBudget
from artifacts_core.chunk.cache import DEFAULT_MEMORY_CACHE, MemoryBlockCache
from artifacts_core.chunk.codec import CODECS, decode_block, encode_block
from artifacts_core.chunk.counters import Counters
from artifacts_core.chunk.disk_cache import DiskCache
from artifacts_core.chunk.keys import BlockKey, block_count
from artifacts_core.chunk.singleflight import SingleFlight
from artifacts_core.chunk.writer import SliceWriter
from artifacts_core.errors import (
    ArtifactsError,
    Exists,
    IntegrityError,
    InvalidArgument,
    MissingObject,
    NotFound,
    StorageError,
)
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
#: Blocks larger than this are encoded/decoded in the CPU pool, smaller ones inline on the loop
#: (a thread hop costs more than lz4 on 64 KiB). With fewer than 4 cores the default is "never":
#: the loop thread, the pool and the S3 server then share too few cores, and the GIL hand-offs
#: cost more than the parallelism gains (bench_chunk on 2 cores: cold reads 1.3-1.5x faster inline).
_OFFLOAD_MIN = 64 << 10
_FEW_CORES = 4
#: Disk-cache writes queued at most (each holds an encoded block in memory); more are skipped.
#: Small on purpose: under a fast sequential stream the cache keeps what the disk absorbs without
#: slowing the read (measured on this 2-core VM, 1 GiB cold read: 16 queued writes on 4 threads
#: cost 45 % of the throughput, 219 vs 393 MiB/s without a disk cache; 4 on 2 threads ~300 MiB/s).
_MAX_DISK_PENDING = 4
#: Disk-cache worker threads: file I/O blocks, so it gets its own threads; two keep the disk busy.
_DISK_THREADS = 2
#: Block sizes accepted (JuiceFS allows 64 KiB to 16 MiB; small sizes serve fast tests).
_MIN_BLOCK, _MAX_BLOCK = 4 << 10, 16 << 20


def _release(budget: ByteBudget, n: int, _task: object) -> None:
    """A prefetch's done callback: give its ``n`` bytes back to ``budget``."""
    budget.release(n)


class ChunkStore:
    def __init__(self, store: ObjectStore, loop: LoopThread, *, block_size: int = DEFAULT_BLOCK_SIZE,
                 compression: str = "lz4", upload_concurrency: int = DEFAULT_UPLOAD_CONCURRENCY,
                 download_concurrency: int = DEFAULT_DOWNLOAD_CONCURRENCY,
                 buffer_budget: int = DEFAULT_BUFFER_BUDGET, memory_cache_bytes: int = DEFAULT_MEMORY_CACHE,
                 disk_cache: DiskCache | None = None, cache_full_writes: bool = False,
                 cpu_offload_bytes: int | None = None, on_reused_id: Callable[[], None] | None = None) -> None:
        if not _MIN_BLOCK <= block_size <= _MAX_BLOCK:
            raise InvalidArgument(f"block size {block_size} outside {_MIN_BLOCK}..{_MAX_BLOCK}")
        if compression not in CODECS:
            raise InvalidArgument(f"unknown compression {compression!r} (one of {sorted(CODECS)})")
        self.store = store
        self.loop = loop
        self.block_size = block_size
        self.compression = compression
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
        self._download_sem = asyncio.Semaphore(download_concurrency)
        self._flights: SingleFlight[bytes] = SingleFlight()
        self._disk_pool = concurrent.futures.ThreadPoolExecutor(_DISK_THREADS, thread_name_prefix="artifacts-disk")
        self._disk_pending = 0  # loop thread only
        self._inflight_uploads = 0
        self._inflight_downloads = 0
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
                    encoded = await self._cpu(encode_block, buf, self.compression)
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
                self._disk_put_later(key, encoded)
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
    def _assemble(spans: Sequence[tuple[BlockKey, int, int]], blocks: Sequence[bytes]) -> bytes:
        if len(spans) == 1:
            _, lo, hi = spans[0]
            data = blocks[0]
            return data if lo == 0 and hi == len(data) else data[lo:hi]
        return b"".join(memoryview(data)[lo:hi] for (_, lo, hi), data in zip(spans, blocks, strict=True))

    def read(self, slice_id: SliceId, slice_len: int, offset: int, length: int) -> bytes:
        """Bytes ``[offset, offset + length)`` of a slice of ``slice_len`` bytes (clipped at its end)."""
        spans = self._spans(slice_id, slice_len, offset, length)
        if not spans:
            return b""
        cached = []
        for block, _, _ in spans:  # fast path: every block in memory, no hop onto the loop
            data = self.memory_cache.get(block.key)
            if data is None:
                break
            cached.append(data)
        else:
            self.counters.incr("memory_hits", len(cached))
            return self._assemble(spans, cached)
        return self.loop.run(self._read_spans(spans))

    async def read_async(self, slice_id: SliceId, slice_len: int, offset: int, length: int) -> bytes:
        """:meth:`read` for callers already on the loop."""
        return await self._read_spans(self._spans(slice_id, slice_len, offset, length))

    async def _read_spans(self, spans: Sequence[tuple[BlockKey, int, int]]) -> bytes:
        if not spans:
            return b""
        blocks = await asyncio.gather(*(self._block(block) for block, _, _ in spans))
        return self._assemble(spans, blocks)

    async def _block(self, block: BlockKey) -> bytes:
        key = block.key
        data = self.memory_cache.get(key)
        if data is not None:
            self.counters.incr("memory_hits")
            return data
        self.counters.incr("memory_misses")
        return await self._flights.do(key, lambda: self._fetch(block))

    async def _fetch(self, block: BlockKey) -> bytes:
        key = block.key
        if self.disk_cache is not None and self.disk_cache.enabled:
            raw = await asyncio.get_running_loop().run_in_executor(self._disk_pool, self._disk_get, block)
            if raw is not None:
                self.counters.incr("disk_hits")
                self.memory_cache.put(key, raw)
                return raw
            self.counters.incr("disk_misses")
        async with self._download_sem:
            self._inflight_downloads += 1
            try:
                encoded = await self.store.get(key)
            except NotFound as e:
                self.counters.incr("download_errors")
                raise MissingObject("block object is missing from the store", path=key) from e
            except ArtifactsError:
                self.counters.incr("download_errors")
                raise
            except Exception as e:
                self.counters.incr("download_errors")
                raise StorageError(f"download failed: {e}", path=key) from e
            finally:
                self._inflight_downloads -= 1
        self.counters.incr("downloads")
        self.counters.incr("download_bytes", len(encoded))
        try:
            raw = await self._cpu(decode_block, encoded, key=key, expected_len=block.length)
        except IntegrityError:
            self.counters.incr("integrity_errors")
            raise
        self.memory_cache.put(key, raw)
        self._disk_put_later(key, encoded)
        return raw

    # -- disk cache (blocking calls run in the disk pool) ----------------------------------------

    def _disk_get(self, block: BlockKey) -> bytes | None:
        assert self.disk_cache is not None
        encoded = self.disk_cache.get(block.key)
        if encoded is None:
            return None
        try:
            return decode_block(encoded, key=block.key, expected_len=block.length)
        except IntegrityError:
            self.counters.incr("disk_corrupt")
            self.counters.incr("integrity_errors")
            self.disk_cache.drop(block.key)  # never served; the caller re-fetches from the store
            return None

    def _disk_put_later(self, key: str, encoded: bytes) -> None:
        """Queue a disk-cache write (loop thread); skipped when too many are already queued."""
        if self.disk_cache is None or not self.disk_cache.enabled or self._disk_pending >= _MAX_DISK_PENDING:
            return
        self._disk_pending += 1
        future = asyncio.get_running_loop().run_in_executor(self._disk_pool, self._disk_put, key, encoded)
        future.add_done_callback(self._disk_put_done)

    def _disk_put(self, key: str, encoded: bytes) -> None:
        assert self.disk_cache is not None
        try:
            self.disk_cache.put(key, encoded)
        except Exception:  # the cache must never fail anything; it logs and disables itself
            log.exception("disk cache put of %s failed", key)

    def _disk_put_done(self, future: asyncio.Future[None]) -> None:
        self._disk_pending -= 1

    # -- readahead and removal ------------------------------------------------------------------

    def prefetch(self, slice_id: SliceId, slice_len: int, offset: int, length: int) -> None:
        """Start fetching the blocks of a range into the memory cache; never waits (readahead)."""
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
            key = block.key
            if key in self._flights or key in self.memory_cache:
                continue  # deduplicated: already cached or on its way
            if not self.budget.try_acquire(block.length):
                self.counters.incr("prefetch_skipped")
                continue
            self.counters.incr("prefetches")
            task = self._flights.start(key, functools.partial(self._fetch, block))
            task.add_done_callback(functools.partial(_release, self.budget, block.length))

    def remove(self, slice_id: SliceId, slice_len: int) -> None:
        """Delete every block of a slice (missing ones are fine) and drop them from the caches."""
        self.loop.run(self.remove_async(slice_id, slice_len))

    async def remove_async(self, slice_id: SliceId, slice_len: int) -> None:
        bs = self.block_size
        keys = [BlockKey(slice_id, i, min(bs, slice_len - i * bs)).key for i in range(block_count(slice_len, bs))]
        await self.delete_keys(keys)

    async def delete_keys(self, keys: Sequence[str]) -> None:
        async def one(key: str) -> None:
            self.memory_cache.remove(key)
            async with self._upload_sem:
                await self.store.delete(key)
            self.counters.incr("blocks_removed")

        await asyncio.gather(*(one(k) for k in keys))
        if self.disk_cache is not None:
            cache = self.disk_cache

            def drop_all() -> None:
                for k in keys:
                    cache.drop(k)

            await asyncio.get_running_loop().run_in_executor(self._disk_pool, drop_all)

    # -- stats and shutdown ---------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        snap = self.counters.snapshot()
        snap.update(
            inflight_uploads=self._inflight_uploads, inflight_downloads=self._inflight_downloads,
            buffer_used=self.budget.used, buffer_waits=self.budget.waits,
            memory_cache_bytes=self.memory_cache.size,
            disk_cache_bytes=self.disk_cache.used if self.disk_cache else 0,
        )
        return snap

    def close(self) -> None:
        """Finish queued disk-cache writes and stop the disk pool. The object store is the caller's."""
        if self._closed:
            return
        self._closed = True
        self._disk_pool.shutdown(wait=True)  # queued cache writes finish: at most _MAX_DISK_PENDING
