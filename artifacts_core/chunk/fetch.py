"""Fetching verified block bytes: whole blocks, or only the segments a small read needs.

Owns the read side of a chunk store (``ChunkStore`` composes one): the memory-cache entries,
the GETs and where their bytes are verified, and when to go to the disk cache (``disk_tier``
does the disk's part). Two fetch shapes:

- **whole**: one GET of the block object (any format), verified by
  :func:`~artifacts_core.chunk.segmented.decode_object`; cached whole in memory and on disk. Used
  by sequential readers, readahead, warmup, and for v1 blocks (one frame, no ranges possible).
- **segments** (format v2 only): the header and segment table first, then one ranged GET per
  run of missing segments; each segment verified alone and cached alone (``<key>#<k>`` in memory,
  ``<key>.s<k>`` on disk, the latter prefixed with the table so a disk hit verifies by itself).
  Used by random readers: a 4 KiB read moves one segment, not 4 MiB. A block's table is cached
  (``<key>#t``), so only its first small read pays the table GET -- and none when the read is
  near the block start, where one GET of ``[0, table + segments)`` is cheaper than two round trips
  (``PREFIX_MAX``).

A v2 volume may hold v1 blocks (written before an upgrade): a table probe that finds a v1 header
switches that block to the whole shape, remembered per key. Concurrent readers share fetches:
one flight per whole block, per table, and per ranged GET (registered under each segment it
serves); a segment reader waits for a whole-block flight already under way rather than racing it.

Random readers adapt the shape to what they do: a block's second segment miss (its first, for a
handle whose random reads keep revisiting blocks: ``dense``) fetches the rest of it whole in the
background, within the buffer budget, and that block is kept on disk too.

Invariants: nothing enters the memory cache or a caller's hands unless its checksums matched
(v1 frame, v2 segment); a damaged segment fails only the reads that touch it (its neighbours from
the same GET are served and cached), and a damaged object is never written to the disk cache;
blocking disk I/O runs in the disk tier's pools, never on the loop.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from cachetools import LRUCache

from artifacts_core.aio import LoopThread
from artifacts_core.chunk import codec, segmented
from artifacts_core.chunk.cache import Buffer, MemoryBlockCache
from artifacts_core.chunk.counters import Counters
from artifacts_core.chunk.disk_tier import DiskTier
from artifacts_core.chunk.keys import BlockKey, segment_cache_key
from artifacts_core.chunk.segmented import Decoded, Table
from artifacts_core.chunk.singleflight import SingleFlight
from artifacts_core.errors import ArtifactsError, IntegrityError, MissingObject, NotFound, StorageError
from artifacts_core.objects.base import ObjectStore

log = logging.getLogger(__name__)

T = TypeVar("T")

#: A first small read of a block fetches header, table and segments in ONE GET when the segments
#: end within this many raw bytes of the block start (else table, then segments: two GETs).
#: Measured on SeaweedFS over loopback: a 1 MiB GET costs ~1.3x a 4 KiB one, a second round trip
#: ~2x; on AWS S3 first-byte latency dominates even more.
PREFIX_MAX = 1 << 20
#: Blocks remembered as v1 in a v2 volume, and blocks' segment-miss counts (keys only: a few MiB).
_KEYS_REMEMBERED = 65536
#: Bytes of segment tables kept in memory, apart from the data cache so data churn does not evict
#: them: 16 MiB holds the tables of ~10,000 blocks of 4 MiB (40 GiB of data) at 256 KiB segments.
_TABLE_CACHE = 16 << 20
#: A block's second segment miss fetches the rest of it whole, in the background: reads that keep
#: landing in one block are dense enough that one GET beats one per segment (SeaweedFS on loopback:
#: a 4 MiB GET costs ~4 ranged GETs), while sparse random reads never move more than a segment.
PROMOTE_AFTER = 2
#: A first small read of a block far from its start sends, beside the table GET, a GET of where
#: its segments sit if every segment before them is stored raw (incompressible data, or
#: ``compression = none``): one round trip instead of two when right. Sent while at least half
#: of the recent guesses were right (an EWMA over about the last ten), so compressible volumes
#: soon stop paying the extra request.
_GUESS_THRESHOLD = 0.5
_EWMA = 0.2


def _table_key(key: str) -> str:
    """The single-flight key of a table fetch."""
    return key + "#t"


def _segment_key(key: str, k: int) -> str:
    return f"{key}#{k}"


def _runs(indexes: list[int]) -> list[tuple[int, int]]:
    """Contiguous ``[first, stop)`` runs of sorted segment indexes: one ranged GET each."""
    runs: list[tuple[int, int]] = []
    for k in indexes:
        if runs and runs[-1][1] == k:
            runs[-1] = (runs[-1][0], k + 1)
        else:
            runs.append((k, k + 1))
    return runs


class BlockFetcher:
    def __init__(self, store: ObjectStore, loop: LoopThread, *, memory: MemoryBlockCache,
                 disk: DiskTier | None, counters: Counters, download_concurrency: int,
                 segment_size: int | None, cpu_offload_bytes: int,
                 promote: Callable[[BlockKey], None] = lambda block: None) -> None:
        self.store = store
        self.loop = loop
        self.memory = memory
        self.disk = disk
        self.counters = counters
        self.segment_size = segment_size  # None: a v1 volume, whole blocks only
        self.cpu_offload_bytes = cpu_offload_bytes
        self.inflight = 0
        self._sem = asyncio.Semaphore(download_concurrency)
        self._wholes: SingleFlight[Decoded] = SingleFlight()
        self._tables: SingleFlight[Table | None] = SingleFlight()
        self._runs: SingleFlight[dict[int, Buffer | IntegrityError]] = SingleFlight()
        self._v1: LRUCache[str, bool] = LRUCache(maxsize=_KEYS_REMEMBERED)
        self._misses: LRUCache[str, int] = LRUCache(maxsize=_KEYS_REMEMBERED)
        self._to_disk: set[str] = set()  # promoted blocks in flight: their disk write is not skipped
        self._promote = promote
        self._guesses = 1.0  # how often the raw-layout guess was right lately (EWMA)
        self._tables_lock = threading.Lock()  # the disk pool adds tables too
        self._table_cache: LRUCache[str, Table] = LRUCache(maxsize=_TABLE_CACHE, getsizeof=len)

    def _table(self, key: str) -> Table | None:
        with self._tables_lock:
            return self._table_cache.get(key)

    def _keep_table(self, key: str, table: Table) -> None:
        with self._tables_lock:
            self._table_cache[key] = table

    # -- the memory cache (any thread) ------------------------------------------------------------

    def cached(self, block: BlockKey, lo: int, hi: int) -> Buffer | None:
        """Bytes ``[lo, hi)`` of ``block`` from memory (whole block or its segments), else None."""
        data = self.memory.get(block.key)
        if data is not None:
            return data if lo == 0 and hi == len(data) else memoryview(data)[lo:hi]
        seg = self.segment_size
        if seg is None:
            return None
        parts: list[Buffer] = []
        for k in range(lo // seg, -(-hi // seg)):
            part = self.memory.get(_segment_key(block.key, k))
            if part is None:
                return None
            parts.append(part)
        return self._cut(parts, lo // seg * seg, lo, hi)

    @staticmethod
    def _cut(parts: list[Buffer], base: int, lo: int, hi: int) -> Buffer:
        """``[lo, hi)`` of consecutive segment buffers starting at raw offset ``base``."""
        if len(parts) == 1:
            part = parts[0]
            return part if lo == base and hi - lo == len(part) else memoryview(part)[lo - base:hi - base]
        joined = b"".join(parts)
        return memoryview(joined)[lo - base:hi - base]

    def segments_of(self, block: BlockKey) -> int:
        """How many segments a v2 block of this volume has (0 on a v1 volume)."""
        seg = self.segment_size
        return 0 if seg is None else segmented.segment_count(block.length, seg)

    def forget(self, block: BlockKey) -> None:
        """Drop a block and its segments and table from memory (the block was deleted)."""
        self.memory.remove(block.key)
        self._forget_segments(block)
        with self._tables_lock:
            self._table_cache.pop(block.key, None)

    def _forget_segments(self, block: BlockKey) -> None:
        for k in range(self.segments_of(block)):
            self.memory.remove(_segment_key(block.key, k))

    # -- reads (loop thread) ----------------------------------------------------------------------

    async def read(self, block: BlockKey, lo: int, hi: int, *, whole: bool, dense: bool = False) -> Buffer:
        """Verified bytes ``[lo, hi)`` of ``block``: whole-block fetch, or only its segments."""
        data = self.cached(block, lo, hi)
        if data is not None:
            self.counters.incr("memory_hits")
            return data
        self.counters.incr("memory_misses")
        seg = self.segment_size
        if whole or seg is None or hi - lo >= block.length // 2 or block.key in self._v1 \
                or block.key in self._wholes:
            if not whole:  # a random reader on a block fetched whole (v1): it will be back
                self._keep_on_disk(block.key)
            return self._slice(block, await self.whole(block), lo, hi)
        return await self._read_segments(block, lo, hi, promote_after=1 if dense else PROMOTE_AFTER)

    def _slice(self, block: BlockKey, d: Decoded, lo: int, hi: int) -> Buffer:
        if d.whole is not None:
            return d.whole if lo == 0 and hi == len(d.whole) else memoryview(d.whole)[lo:hi]
        seg = d.table.segment_size if d.table is not None else block.length
        first, stop = lo // seg, -(-hi // seg)
        err = d.error_for(first, stop)
        if err is not None:
            raise err
        parts = [p for p in d.parts[first:stop] if p is not None]
        assert len(parts) == stop - first  # error_for found no failed segment among them
        return self._cut(parts, first * seg, lo, hi)

    def whole(self, block: BlockKey) -> asyncio.Future[Decoded]:
        """The decoded block (one flight per key), fetched whole."""
        return asyncio.shield(self._wholes.start(block.key, lambda: self._fetch_whole(block)))

    def start_whole(self, block: BlockKey) -> asyncio.Task[Decoded]:
        """Start (or join) a whole-block fetch without waiting: readahead."""
        return self._wholes.start(block.key, lambda: self._fetch_whole(block))

    def in_flight(self, key: str) -> bool:
        return key in self._wholes

    async def _fetch_whole(self, block: BlockKey) -> Decoded:
        key = block.key
        if self.disk is not None and self.disk.enabled:
            d = await self.disk.whole(block)
            if d is not None:
                self.counters.incr("disk_hits")
                self._keep(block, d)
                return d
            self.counters.incr("disk_misses")
        encoded = await self._get(key)
        d = await self._decode(len(encoded), segmented.decode_object, encoded, block)
        promoted = key in self._to_disk
        self._to_disk.discard(key)
        if d.errors or d.damaged:
            self.counters.incr("integrity_errors", max(1, len(d.errors)))
        else:
            self.disk_put_later(key, encoded, promoted=promoted)
        self._keep(block, d)
        return d

    def _keep_on_disk(self, key: str) -> None:
        """The next whole fetch of ``key`` writes it to disk even when writes are queueing."""
        if len(self._to_disk) > _KEYS_REMEMBERED:  # fetches that never happened (budget skipped)
            self._to_disk.clear()
        self._to_disk.add(key)

    def _keep(self, block: BlockKey, d: Decoded) -> None:
        if d.whole is not None:
            self.memory.put(block.key, d.whole)
            self._forget_segments(block)  # the whole block serves them now
            return
        assert d.table is not None  # a v1 block is all or nothing: it has a whole or raised
        self._keep_table(block.key, d.table)
        for k, part in enumerate(d.parts):
            if part is not None:
                self.memory.put(_segment_key(block.key, k), part)

    async def _read_segments(self, block: BlockKey, lo: int, hi: int, *, promote_after: int) -> Buffer:
        seg = self.segment_size
        assert seg is not None
        key = block.key
        first, stop = lo // seg, -(-hi // seg)
        parts: dict[int, Buffer] = {}
        if self.disk is not None and self.disk.enabled:
            got = await self.disk.segments(block, first, stop, self._table(key))
            if got is None:  # a v1 block on disk: read it whole from there
                return self._slice(block, await self.whole(block), lo, hi)
            table, found = got
            if table is not None:
                self._keep_table(key, table)
            for k, part in found.items():
                self.memory.put(_segment_key(key, k), part)
            parts.update(found)
            self.counters.incr("disk_hits" if found else "disk_misses")
        if len(parts) < stop - first:
            table = self._table(key)
            if table is None:
                table = await self._tables.do(_table_key(key), lambda: self._fetch_table(block, first, stop))
            if table is None:  # a v1 block
                return self._slice(block, await self.whole(block), lo, hi)
            waits: dict[int, asyncio.Task[dict[int, Buffer | IntegrityError]]] = {}
            missing: list[int] = []
            for k in range(first, stop):
                if k in parts:
                    continue
                hit = self.memory.get(_segment_key(key, k))
                task = self._runs.get(_segment_key(key, k)) if hit is None else None
                if hit is not None:
                    parts[k] = hit
                elif task is not None:
                    waits[k] = task
                else:
                    missing.append(k)
            if missing:
                misses = self._misses.get(key, 0) + 1
                self._misses[key] = misses
                if misses >= promote_after:
                    self._keep_on_disk(key)  # random readers come back: keep it past the memory cache
                    self._promote(block)  # the rest of the block, whole, within the buffer budget
            for a, b in _runs(missing):
                task = asyncio.ensure_future(self._fetch_run(block, table, a, b))
                for k in range(a, b):
                    self._runs.adopt(_segment_key(key, k), task)
                    waits[k] = task
            for k, task in waits.items():
                fetched = (await asyncio.shield(task))[k]
                if isinstance(fetched, IntegrityError):
                    raise fetched
                parts[k] = fetched
        return self._cut([parts[k] for k in range(first, stop)], first * seg, lo, hi)

    async def _guessed(self, block: BlockKey, table: Table, first: int, stop: int,
                       guess: asyncio.Future[bytes]) -> dict[int, Buffer]:
        """Segments from a GET sent before the table arrived, assuming every segment before
        ``stop`` is stored raw (then segment k sits at ``table + k * segment``): right for
        incompressible data and ``compression = none``; when wrong, its bytes are dropped."""
        seg = table.segment_size
        right = table.offsets[stop] == table.size + min(stop * seg, block.length)
        self._guesses += _EWMA * ((1.0 if right else 0.0) - self._guesses)
        if not right:
            self.counters.incr("layout_guesses_wrong")
            guess.cancel()
            return {}
        try:
            view = memoryview(await guess)
        except (ArtifactsError, asyncio.CancelledError):
            return {}  # the normal ranged GET will fetch (and report) it
        found: dict[int, Buffer] = {}
        base = table.offsets[first]
        for k in range(first, stop):
            try:
                part = segmented.decode_segment(table, k, view[table.offsets[k] - base:table.offsets[k + 1] - base])
            except IntegrityError:
                self.counters.incr("integrity_errors")
                continue  # fetched again below, and reported there if it fails again
            found[k] = part
            self.memory.put(_segment_key(block.key, k), part)
        return found

    async def _fetch_table(self, block: BlockKey, first: int, stop: int) -> Table | None:
        """The block's table (cached), or ``None`` for a v1 block. Segments ``[first, stop)``
        come along when cheap: in the same GET when close to the block start (``PREFIX_MAX``),
        else from a GET sent beside it at their raw-layout place (``_GUESS_THRESHOLD``); they
        land in the memory cache."""
        key = block.key
        table = self._table(key)
        if table is not None:
            return table
        seg = self.segment_size
        assert seg is not None
        tsize = segmented.table_size(block.length, seg)
        want, guess = tsize, None
        if stop * seg <= PREFIX_MAX:
            want += min(stop * seg, block.length)
        elif self._guesses >= _GUESS_THRESHOLD:
            self.counters.incr("layout_guesses")
            guess = asyncio.ensure_future(self._get(
                key, tsize + first * seg, min(stop * seg, block.length) - first * seg, what="segment_downloads"))
        table = None
        try:
            table = await self._table_from_store(block, want)
        finally:
            if guess is not None and table is None:
                guess.cancel()
        if guess is not None and table is not None:
            await self._guessed(block, table, first, stop, guess)
        return table

    async def _table_from_store(self, block: BlockKey, want: int) -> Table | None:
        key = block.key
        data = await self._get(key, 0, want, what="table_downloads")
        if len(data) > 4 and data[4] == codec.VERSION:
            self._v1[key] = True
            return None
        real = segmented.peek_table_size(data)
        if real is not None and real > len(data):  # written with another segment size
            data = await self._get(key, 0, real, what="table_downloads")
        try:
            table = segmented.parse_table(data, block)
        except IntegrityError:
            self.counters.incr("integrity_errors")
            raise
        self._keep_table(key, table)
        view = memoryview(data)
        for k in range(table.count):
            if table.offsets[k + 1] > len(view):
                break
            try:
                part = segmented.decode_segment(table, k, view[table.offsets[k]:table.offsets[k + 1]])
            except IntegrityError:
                self.counters.incr("integrity_errors")
                continue  # only the reads touching it fail (they re-fetch and fail there)
            self.memory.put(_segment_key(key, k), part)
            self.disk_put_later(segment_cache_key(key, k), table.raw + bytes(view[table.offsets[k]:table.offsets[k + 1]]))
        return table

    async def _fetch_run(self, block: BlockKey, table: Table, first: int, stop: int) -> dict[int, Buffer | IntegrityError]:
        """One ranged GET of segments ``[first, stop)``, each verified and cached on its own."""
        start, end = table.stored_span(first, stop)
        data = await self._get(block.key, start, end - start, what="segment_downloads")
        view = memoryview(data)
        out: dict[int, Buffer | IntegrityError] = {}
        for k in range(first, stop):
            lo, hi = table.offsets[k] - start, table.offsets[k + 1] - start
            try:
                if hi > len(view):
                    raise codec.integrity_error(block.key, f"segment {k}: the object ends early")
                part = await self._decode(hi - lo, segmented.decode_segment, table, k, view[lo:hi])
            except IntegrityError as e:
                self.counters.incr("integrity_errors")
                out[k] = e
                continue
            out[k] = part
            self.memory.put(_segment_key(block.key, k), part)
            self.disk_put_later(segment_cache_key(block.key, k), table.raw + bytes(view[lo:hi]))
        return out

    async def store_on_disk(self, block: BlockKey) -> int:
        """GET a block whole, verify it, and write it to the disk cache (warmup: not to memory,
        and not skipped under load like a read's background write); the bytes fetched."""
        assert self.disk is not None
        encoded = await self._get(block.key)
        d = await self._decode(len(encoded), segmented.decode_object, encoded, block)
        if d.errors or d.damaged:
            self.counters.incr("integrity_errors", max(1, len(d.errors)))
            raise next(iter(d.errors.values()), None) or IntegrityError("damaged block object", path=block.key)
        if not await self.disk.put(block.key, encoded):
            raise StorageError("the disk cache did not take the block (full, or disabled after errors)",
                               path=block.key, hint="see `artifacts cache show`; raise disk_cache_size")
        return len(encoded)

    def cancel(self) -> None:
        """Cancel every fetch still running (the store is closing; loop thread)."""
        for flights in (self._wholes, self._tables, self._runs):
            flights.cancel_all()

    # -- the object store -------------------------------------------------------------------------

    async def _get(self, key: str, offset: int = 0, length: int | None = None, *,
                   what: str = "downloads") -> bytes:
        async with self._sem:
            self.inflight += 1
            try:
                data = await self.store.get(key, offset, length)
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
                self.inflight -= 1
        self.counters.incr(what)
        self.counters.incr("download_bytes", len(data))
        return data

    async def _decode(self, size: int, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` inline for small inputs, else in the loop's CPU pool (``cpu_offload_bytes``)."""
        try:
            if size <= self.cpu_offload_bytes:
                return fn(*args)
            return await self.loop.cpu(functools.partial(fn, *args))
        except IntegrityError:
            self.counters.incr("integrity_errors")
            raise

    def disk_put_later(self, name: str, encoded: bytes, *, promoted: bool = False) -> None:
        if self.disk is not None:
            self.disk.put_later(name, encoded, promoted=promoted)
