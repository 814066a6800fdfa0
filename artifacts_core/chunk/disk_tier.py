"""The disk cache as the fetcher sees it: verified reads of cached blocks and segments, and
background writes that never slow a read.

Owns the two thread pools around a :class:`~artifacts_core.chunk.disk_cache.DiskCache` and the
rules for using them from the event loop:

- *lookups* (``has``) stay on the loop: an index lookup and at most one ``stat`` of a local path;
  on a busy host a hop to a worker thread and back costs more than the GET it could save;
- *reads* (a cached block whole, or a v2 block's table and a few segments with ``pread``; a
  single-segment file) run in the read pool and are verified there like a GET: a damaged file is
  dropped and counted (``disk_corrupt``), never served;
- *writes* run in the write pool, whose threads sit at nice 10 (``store._lower_priority``), and
  are skipped past ``MAX_PENDING`` queued ones -- a fast sequential stream caches what the disk
  absorbs without slowing down. Blocks random readers keep returning to get a larger allowance.

Invariant: nothing here raises into a read; a failure is a miss.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from artifacts_core.chunk import codec, segmented
from artifacts_core.chunk.counters import Counters
from artifacts_core.chunk.disk_cache import DiskCache
from artifacts_core.chunk.keys import BlockKey, segment_cache_key
from artifacts_core.chunk.segmented import Decoded, Table
from artifacts_core.errors import IntegrityError

log = logging.getLogger(__name__)

T = TypeVar("T")
Buffer = bytes | memoryview

#: Disk-cache writes queued at most (each holds an encoded block or segment in memory); more are
#: skipped. Small on purpose: under a fast sequential stream the cache keeps what the disk absorbs
#: without slowing the read (measured on this 2-core VM, 1 GiB cold read: 16 queued writes on 4
#: threads cost 45 % of the throughput, 219 vs 393 MiB/s without a disk cache; 4 on 2 threads ~300).
MAX_PENDING = 4
#: ... times this for whole blocks fetched because random reads kept landing in them: losing
#: those to the memory cache's churn would cost another GET each.
PROMOTED_PENDING = 4


class DiskTier:
    def __init__(self, disk: DiskCache, counters: Counters, *, segment_size: int | None,
                 read_pool: concurrent.futures.ThreadPoolExecutor,
                 write_pool: concurrent.futures.ThreadPoolExecutor) -> None:
        self.disk = disk
        self.counters = counters
        self.segment_size = segment_size
        self._read_pool = read_pool
        self._write_pool = write_pool
        self._pending = 0  # loop thread only

    @property
    def enabled(self) -> bool:
        return self.disk.enabled

    def has(self, key: str) -> bool:
        return self.disk.has(key)

    async def _in_pool(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._read_pool, fn, *args)

    # -- reads ------------------------------------------------------------------------------------

    async def whole(self, block: BlockKey) -> Decoded | None:
        """The cached block, verified, or ``None`` (not cached, or damaged and dropped)."""
        return await self._in_pool(self._whole, block) if self.disk.has(block.key) else None

    def _whole(self, block: BlockKey) -> Decoded | None:
        encoded = self.disk.get(block.key)
        if encoded is None:
            return None
        try:
            d = segmented.decode_object(encoded, block)
        except IntegrityError:
            d = None
        if d is None or d.damaged:
            self._damaged(block.key)  # never served; the caller re-fetches from the store
            return None
        return d

    async def segments(self, block: BlockKey, first: int, stop: int,
                       table: Table | None) -> tuple[Table | None, dict[int, Buffer]] | None:
        """Cached segments of ``[first, stop)`` of a v2 block, verified, and the table that
        verified them: from the cached whole block (its table and just those segments) or from
        single-segment files. ``None`` when a v1 block is cached (the caller reads it whole)."""
        key = block.key
        if self.disk.has(key):
            return await self._in_pool(self._from_block, block, first, stop, table)
        names = [segment_cache_key(key, k) for k in range(first, stop)]
        if not any(self.disk.has(n) for n in names):
            return table, {}
        return await self._in_pool(self._from_segment_files, block, first, stop, table)

    def _from_segment_files(self, block: BlockKey, first: int, stop: int,
                            table: Table | None) -> tuple[Table | None, dict[int, Buffer]]:
        found: dict[int, Buffer] = {}
        for k in range(first, stop):
            name = segment_cache_key(block.key, k)
            data = self.disk.get(name)
            if data is None:
                continue
            try:
                table = segmented.parse_table(data, block, key=name)
                found[k] = segmented.decode_segment(table, k, memoryview(data)[table.size:], key=name)
            except IntegrityError:
                self._damaged(name)
        return table, found

    def _from_block(self, block: BlockKey, first: int, stop: int,
                    table: Table | None) -> tuple[Table | None, dict[int, Buffer]] | None:
        assert self.segment_size is not None
        key = block.key
        if table is None:
            got = self.disk.get_ranges(key, [(0, segmented.table_size(block.length, self.segment_size))])
            if not got or len(got[0]) < 5 or got[0][4] == codec.VERSION:
                return None  # gone meanwhile, or a v1 block: the whole path reads (or re-fetches) it
            head = got[0]
            real = segmented.peek_table_size(head)
            if real is not None and real > len(head):  # written with another segment size
                got = self.disk.get_ranges(key, [(0, real)])
                head = got[0] if got else head
            try:
                table = segmented.parse_table(head, block)
            except IntegrityError:
                self._damaged(key)
                return None, {}
        start, end = table.stored_span(first, stop)
        got = self.disk.get_ranges(key, [(start, end - start)])
        if got is None:
            return table, {}
        view = memoryview(got[0])
        found: dict[int, Buffer] = {}
        try:
            for k in range(first, stop):
                lo, hi = table.offsets[k] - start, table.offsets[k + 1] - start
                if hi > len(view):
                    raise codec.integrity_error(key, f"cached file ends inside segment {k}")
                found[k] = segmented.decode_segment(table, k, view[lo:hi])
        except IntegrityError:
            self._damaged(key)
            return table, {}
        return table, found

    def _damaged(self, name: str) -> None:
        self.counters.incr("disk_corrupt")
        self.counters.incr("integrity_errors")
        self.disk.drop(name)

    # -- writes -----------------------------------------------------------------------------------

    def put_later(self, name: str, encoded: bytes, *, promoted: bool = False) -> None:
        """Queue a write (loop thread); skipped when too many are queued (see the module note)."""
        limit = MAX_PENDING * PROMOTED_PENDING if promoted else MAX_PENDING
        if not self.disk.enabled or self._pending >= limit:
            return
        self._pending += 1
        future = asyncio.get_running_loop().run_in_executor(self._write_pool, self._put, name, encoded)
        future.add_done_callback(self._put_done)

    async def put(self, name: str, encoded: bytes) -> bool:
        """Write now and wait (warmup); ``False`` when the cache did not take it."""
        return await asyncio.get_running_loop().run_in_executor(self._write_pool, self.disk.put, name, encoded)

    def _put(self, name: str, encoded: bytes) -> None:
        try:
            self.disk.put(name, encoded)
        except Exception:  # the cache must never fail anything; it logs and disables itself
            log.exception("disk cache put of %s failed", name)

    def _put_done(self, future: asyncio.Future[None]) -> None:
        self._pending -= 1
