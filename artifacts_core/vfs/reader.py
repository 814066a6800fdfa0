"""``Reader``: the read path of the VFS -- chunk views built from slice lists, bytes fetched
through the chunk store, prefetch for the readahead window -- beside ``writer.py``, the write path.

- A *chunk view* is a chunk's slice records (one Redis round trip, inline bytes included) merged
  so later slices win (``meta.slices.build_view``). Views are cached in the inode's state
  (``state.py``) and dropped when this client commits to the chunk, truncates, another host's
  change of the inode arrives (the change feed), or an open sees that the inode changed
  elsewhere (close-to-open). A view whose blocks were compacted away on another host is refreshed
  once instead of failing the read: only a *missing* object (``MissingObject``) refreshes, and
  the read is repeated only if the fresh view differs. Nothing else is retried here -- an outage already ran the object store's retry schedule (running it
  twice made a read take twice as long to fail), a damaged block is damaged. An object still
  missing is EIO, logged at ERROR once with its key and counted (``blocks_missing``).
- A *snapshot* read (``snapshot``, the agent API's readFile) takes each chunk's attr and records
  in one call, so a file of one chunk is read at one instant; it caches nothing.
- *Readahead* is per handle: while reads stay sequential the window doubles from
  ``readahead_min`` up to ``readahead_max`` and missing blocks are fetched whole; the window's
  blocks are prefetched through the chunk store (bounded, deduplicated, within the buffer budget).
  A jump resets the window to nothing, and the handle's reads then fetch only the segments they
  touch (format v2: a 4 KiB random read moves one segment, not a 4 MiB block); a handle whose
  random reads keep returning to blocks it read is *dense*, and a miss brings the whole block.
- *Whole files*: agents read files whole. :class:`WholeFiles` learns, from handles as they close,
  whether this client's opens read their files whole; while they do, an open for reading of a
  file up to ``prefetch_whole_file`` bytes starts fetching all of it at once (one GET per block,
  off the opener's thread), so the first read finds it in memory or on its way.
- A view with many slices is reported to the compaction ``hint`` (the volume's maintenance).

Invariant: no byte reaches a caller from a view that does not cover it -- gaps and holes read as
zeros, a missing inline slice or block is an error (then one refresh), never stale bytes.
"""

from __future__ import annotations

import concurrent.futures
import errno
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from artifacts_core.chunk.store import ChunkStore
from artifacts_core.errors import ArtifactsError, MissingObject
from artifacts_core.meta import slices as slicemath
from artifacts_core.meta.attrs import SLICE_INLINE, SliceRecord
from artifacts_core.meta.data import chunk_length
from artifacts_core.meta.engine import RedisMetaEngine
from artifacts_core.metrics import Metrics
from artifacts_core.types import CHUNK_SIZE, Attr, Ino, SliceId
from artifacts_core.vfs.state import ChunkView, InodeState

log = logging.getLogger("artifacts.vfs")

#: A handle's random reads count as dense once at least this many were made and this share of
#: them landed in blocks the handle had read before (a 4 KiB reader of a 512 MiB file reaches it
#: after ~100 reads; one reading less than once per block never does). Dense readers fetch the
#: rest of a block on its first miss, sparse ones on its second (``chunk.fetch.PROMOTE_AFTER``).
DENSE_MIN_READS = 16
DENSE_REVISITS = 0.25
#: Blocks a handle remembers having read at random (a few hundred KiB of ints at most).
_TOUCHED_MAX = 16384

#: Reads this close to the previous end still count as sequential (kernel readahead and
#: concurrent FUSE reads arrive slightly out of order).
SEQUENTIAL_SLACK = 256 << 10


@dataclass
class Readahead:
    """The readahead window of one handle."""

    min_window: int
    max_window: int
    last_end: int = 0
    window: int = 0
    prefetched_to: int = 0
    block_size: int = 4 << 20
    reads: int = 0
    whole_so_far: bool = True  # every read so far continued from offset 0 without a jump
    sequential: bool = True  # the last read continued the stream: fetch whole blocks, else segments
    random_reads: int = 0
    revisits: int = 0  # random reads landing in a block this handle read before
    touched: set[int] = field(default_factory=set)  # blocks (file offset // block size) read at random

    @property
    def dense(self) -> bool:
        """Random reads that keep coming back to blocks already read: the rest of each block a
        read misses is worth fetching at once (``DENSE_REVISITS``)."""
        return self.random_reads >= DENSE_MIN_READS and self.revisits >= DENSE_REVISITS * self.random_reads

    def read_whole(self, file_length: int) -> bool | None:
        """At close: did this handle read its file from start to end? ``None`` if it read nothing."""
        if self.reads == 0:
            return None
        return self.whole_so_far and self.last_end >= file_length

    def advise(self, offset: int, size: int, file_length: int) -> tuple[int, int] | None:
        """Record a read; return the (offset, length) range to prefetch now, or None."""
        sequential = abs(offset - self.last_end) <= SEQUENTIAL_SLACK and (offset > 0 or self.last_end == 0)
        end = offset + size
        self.last_end = end
        self.reads += 1
        self.whole_so_far = self.whole_so_far and sequential
        self.sequential = sequential
        if not sequential:
            self.random_reads += 1
            block = offset // self.block_size
            if block in self.touched:
                self.revisits += 1
            elif len(self.touched) < _TOUCHED_MAX:
                self.touched.add(block)
        if not sequential or self.max_window <= 0:
            self.window = 0
            self.prefetched_to = end
            return None
        self.window = self.min_window if self.window == 0 else min(self.window * 2, self.max_window)
        start = max(end, self.prefetched_to)
        stop = min(end + self.window, file_length)
        if stop <= start:
            return None
        self.prefetched_to = stop
        return start, stop - start


#: The compaction hint: (inode, chunk index, urgency from ``slices.needs_compaction``).
CompactionHint = Callable[[Ino, int, int], None]
#: A chunk's (attr, records, inline bytes) as ``meta.read_chunk_attr`` returns them.
ChunkRead = tuple[Attr | None, list[SliceRecord], dict[SliceId, bytes]]


class Reader:
    def __init__(self, meta: RedisMetaEngine, chunks: ChunkStore, *, read_only: bool,
                 hint: CompactionHint, metrics: Metrics) -> None:
        self.meta = meta
        self.chunks = chunks
        self.read_only = read_only
        self._hint = hint
        self._metrics = metrics

    def read(self, st: InodeState, offset: int, size: int, *, whole: bool = True,
             dense: bool = False) -> bytes | memoryview:
        """``size`` bytes from ``offset`` (within ``st.length``) through the cached views: a read
        inside one block comes back as a view of the cache's buffer. ``whole``: fetch missing
        blocks whole (sequential readers) or only the segments the read touches (random ones);
        ``dense``: random reads that revisit blocks, whose misses bring the rest of the block."""
        parts = []
        end = offset + size
        while offset < end:
            index, pos = divmod(offset, CHUNK_SIZE)
            n = min(end - offset, CHUNK_SIZE - pos)
            parts.append(self._read_chunk(st, index, pos, n, st.length, whole, dense))
            offset += n
        return parts[0] if len(parts) == 1 else b"".join(parts)  # one copy at most per read

    def _view(self, st: InodeState, index: int, file_length: int, *, refresh: bool = False) -> ChunkView:
        view = None if refresh else st.views.get(index)
        if view is None:
            epoch = st.epoch
            records, inline = self.meta.read_chunk(st.ino, index)
            chunk_len = max(0, min(CHUNK_SIZE, file_length - index * CHUNK_SIZE))
            view = ChunkView(slicemath.build_view(records, chunk_len), inline)
            st.keep_view(index, view, epoch)
            urgency = slicemath.needs_compaction(len(records), view.segments)
            if urgency and not self.read_only:
                self._hint(st.ino, index, urgency)
        return view

    def _read_chunk(self, st: InodeState, index: int, pos: int, size: int, file_length: int,
                    whole: bool = True, dense: bool = False) -> bytes | memoryview:
        view = self._view(st, index, file_length)
        try:
            return self.read_view(view, pos, size, whole=whole, dense=dense)
        except MissingObject as e:
            # Compacted away on another host while we held an old view? Re-read it (one round
            # trip) and read again only if it changed.
            fresh = self._view(st, index, file_length, refresh=True)
            if _same(fresh, view):
                self._lost(st.ino, index, e)
                raise
        try:
            return self.read_view(fresh, pos, size, whole=whole, dense=dense)
        except MissingObject as e:
            self._lost(st.ino, index, e)
            raise

    def _lost(self, ino: Ino, index: int, e: MissingObject) -> None:
        """A file's data refers to an object that is not there: said once, with its key, and counted."""
        self._metrics.inc("blocks_missing")
        log.error("inode %d chunk %d: %s: %s; the read fails with EIO", ino, index, e.strerror, e.path)

    def read_view(self, view: ChunkView, pos: int, size: int, *, whole: bool = True,
                  dense: bool = False) -> bytes | memoryview:
        """Bytes ``[pos, pos + size)`` of the chunk ``view`` describes."""
        parts: list[bytes | memoryview] = []
        at = pos  # everything before `at` is in parts
        end = pos + size
        for seg in view.segments:
            s_start, s_end = seg.pos, seg.pos + seg.len
            if s_end <= pos or s_start >= end:
                continue
            a, b = max(pos, s_start), min(end, s_end)
            if at < a:
                parts.append(bytes(a - at))
            inner = seg.off + (a - s_start)
            if seg.id == 0:
                parts.append(bytes(b - a))
            elif seg.kind == SLICE_INLINE:
                data = view.inline.get(seg.id)
                if data is None:
                    raise MissingObject("inline slice is missing from Redis", path=f"inline slice {seg.id}")
                parts.append(data[inner:inner + (b - a)])
            else:
                parts.append(self.chunks.read(seg.id, seg.size, inner, b - a, whole=whole, dense=dense))
            at = b
        if at < end:
            parts.append(bytes(end - at))
        # A read inside one segment (the common case) returns the chunk store's bytes uncopied.
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def prefetch(self, st: InodeState, offset: int, size: int) -> None:
        """Start fetching the blocks under ``[offset, offset + size)`` (readahead)."""
        end = offset + size
        while offset < end:
            index, pos = divmod(offset, CHUNK_SIZE)
            n = min(end - offset, CHUNK_SIZE - pos)
            try:
                view = self._view(st, index, st.length)
            except ArtifactsError:
                return
            for seg in view.segments:
                if seg.id == 0 or seg.kind == SLICE_INLINE:
                    continue
                a, b = max(pos, seg.pos), min(pos + n, seg.pos + seg.len)
                if a < b:
                    self.chunks.prefetch(seg.id, seg.size, seg.off + (a - seg.pos), b - a)
            offset += n

    def snapshot(self, ino: Ino, offset: int, size: int | None, *,
                 first: ChunkRead | None = None) -> tuple[Attr, bytes]:
        """The file's attr and ``size`` bytes from ``offset`` (to the end when None), each chunk's
        records and attr fetched together (one round trip per chunk; ``first`` is the first
        chunk's when the caller already has it). Caches no view."""
        attr: Attr | None = None
        out = bytearray()
        pos = offset
        end = 0
        while True:
            index, inner = divmod(pos, CHUNK_SIZE)
            prior: ChunkView | None = None
            missing: MissingObject | None = None
            for attempt in (0, 1):
                if first is not None and attempt == 0 and attr is None:
                    a, records, inline = first
                else:
                    a, records, inline = self.meta.read_chunk_attr(ino, index)
                if a is None:
                    raise ArtifactsError("no such file", errno=errno.ENOENT)
                if attr is None:
                    attr = a
                    end = attr.length if size is None else min(attr.length, offset + size)
                    if pos >= end or a.is_dir:
                        return attr, b""
                view = ChunkView(slicemath.build_view(records, chunk_length(attr.length, index)), inline)
                urgency = slicemath.needs_compaction(len(records), view.segments)
                if urgency and not self.read_only:
                    self._hint(ino, index, urgency)
                n = min(end - pos, CHUNK_SIZE - inner)
                if prior is not None and missing is not None and _same(view, prior):
                    self._lost(ino, index, missing)
                    raise missing
                try:
                    out += self.read_view(view, inner, n)
                    break
                except MissingObject as e:
                    if attempt:
                        self._lost(ino, index, e)
                        raise
                    prior, missing = view, e  # a slice compacted away between our calls: read again once
            pos += n
            if pos >= end:
                assert attr is not None  # set by the first chunk
                return attr, bytes(out)


def _same(a: ChunkView, b: ChunkView) -> bool:
    """Whether two views of a chunk name the same data (a refresh changed nothing)."""
    return a.segments == b.segments and a.inline.keys() == b.inline.keys()


#: Weight of the newest closed handle in the whole-read ratio: about the last ten handles count.
_EWMA = 0.2
#: Predict "read whole" while at least half of recent handles did.
_WHOLE_THRESHOLD = 0.5


class WholeFiles:
    """Learns whether this client's opens read files whole, and fetches small files at open.

    The ratio starts at 1 (agents read whole files) and follows the handles that read anything;
    handles that read nothing (an open for fstat or a lock, or reads the kernel served from its
    page cache) say nothing about the pattern. Fetches run on one worker thread, so an open never
    waits for them.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.ratio = 1.0
        self.started = 0
        self._lock = threading.Lock()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._closed = False

    def record(self, whole: bool | None) -> None:
        if whole is None:
            return
        with self._lock:
            self.ratio += _EWMA * ((1.0 if whole else 0.0) - self.ratio)

    def wanted(self, length: int) -> bool:
        return 0 < length <= self.limit and self.ratio >= _WHOLE_THRESHOLD

    def start(self, fetch: Callable[[], None]) -> None:
        """Run ``fetch`` (load the view, start the block fetches) on the worker thread."""
        with self._lock:
            if self._closed:
                return
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="artifacts-wholefile")
            self.started += 1
            self._pool.submit(self._run, fetch)

    @staticmethod
    def _run(fetch: Callable[[], None]) -> None:
        try:
            fetch()
        except Exception as e:  # best effort: the read fetches what it needs itself
            log.debug("whole-file fetch at open failed: %s", e)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
