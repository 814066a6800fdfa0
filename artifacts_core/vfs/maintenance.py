"""Background maintenance every open volume runs: compaction, cold-inline migration, reclaiming
deleted data, trash expiry, checkpoint expiry (docs/history.md "Retention") and the
inline-memory check (DESIGN.md §3, §10).

- Compaction is *requested* by the data path: a commit whose chunk list grew past the soft
  threshold, or a read that found many merged segments, queues ``(ino, chunk)``; the background
  thread compacts queued chunks (deduplicated, a bounded number per tick). A commit past the hard
  threshold compacts at once, before more data lands, so random overwrites can never make a file
  unreadable.
- The compaction writer stores the merged bytes as ONE slice: inline when the engine allows it,
  otherwise S3 blocks through the chunk store (upload first; the engine swaps second).
- Elections in Redis make each of the volume-wide jobs run in one client at a time.
"""

from __future__ import annotations

import logging
import threading

from artifacts_core.chunk.store import ChunkStore
from artifacts_core.config import VolumeConfig
from artifacts_core.errors import NotFound
from artifacts_core.meta.attrs import SLICE_INLINE, SLICE_S3, SliceRecord
from artifacts_core.meta.engine import RedisMetaEngine
from artifacts_core.meta.slices import COMPACT_NOW, COMPACT_SOON
from artifacts_core.types import Ino
from artifacts_core.vfs.core import VFS

log = logging.getLogger("artifacts.vfs")

#: Chunks compacted per background tick: bounds the work one tick adds to a busy client.
COMPACT_PER_TICK = 4
#: Queue bound: past it new requests are dropped (the next read or commit asks again).
COMPACT_QUEUE_MAX = 1024
#: Checkpoint retention is given in minutes to weeks: checking once a minute is plenty.
CHECKPOINT_INTERVAL = 60.0
#: What checkpoints pin is measured every 5 minutes: the measure reads every preserved chunk
#: list, and capacity is a slow-moving limit (a workspace near it gets ENOSPC minutes late at
#: worst, never data loss).
HISTORY_ACCOUNT_INTERVAL = 300.0


class Maintenance:
    def __init__(self, meta: RedisMetaEngine, chunks: ChunkStore, vfs: VFS, config: VolumeConfig) -> None:
        self.meta = meta
        self.chunks = chunks
        self.vfs = vfs
        self.config = config
        self._queue: dict[tuple[Ino, int], None] = {}
        self._lock = threading.Lock()
        vfs.on_compaction_hint = self.hint
        self._journal_ticked = False  # trim_journal skips its first call

    # -- compaction ----------------------------------------------------------------------------

    def hint(self, ino: Ino, index: int, urgency: int) -> None:
        """Called by the VFS after a commit or read; COMPACT_NOW compacts on the caller's thread."""
        if urgency >= COMPACT_NOW:
            self.compact(ino, index)
        elif urgency >= COMPACT_SOON:
            with self._lock:
                if len(self._queue) < COMPACT_QUEUE_MAX:
                    self._queue[(ino, index)] = None

    def write_merged(self, job) -> tuple[SliceRecord, bytes | None]:
        data = job.data(self.chunks.read)
        if job.inline_ok:
            return SliceRecord(job.start, job.slice_id, len(data), 0, len(data), SLICE_INLINE), data
        writer = self.chunks.writer(job.slice_id)
        try:
            writer.write(0, data)
            size = writer.finish()
        except BaseException:
            writer.abort()
            raise
        return SliceRecord(job.start, job.slice_id, size, 0, job.length, SLICE_S3), None

    def compact(self, ino: Ino, index: int, *, prefer_s3: bool = False) -> str:
        result = self.meta.compact_chunk(ino, index, self.write_merged, prefer_s3=prefer_s3)
        if result.status == "swapped":
            self.vfs.forget_view(ino, index)
            self.vfs.metrics.inc("compactions")
        return result.status

    def compact_queued(self) -> None:
        for _ in range(COMPACT_PER_TICK):
            with self._lock:
                if not self._queue:
                    return
                key = next(iter(self._queue))
                del self._queue[key]
            try:
                self.compact(*key)
            except Exception as e:  # the next hint asks again
                log.info("compaction of inode %d chunk %d failed: %s", key[0], key[1], e)

    # -- volume-wide jobs ----------------------------------------------------------------------

    def migrate_inline(self) -> None:
        moved = self.meta.migrate_inline(self.write_merged, quiet=self.config.inline_quiet)
        if moved:
            self.vfs.metrics.inc("inline_migrations", moved)

    def reclaim(self) -> None:
        self.meta.reclaim(self.chunks.remove)

    def expire_trash(self) -> None:
        self.meta.expire_trash()

    def trim_journal(self) -> None:
        """The journal's retention, for a volume opened with full rights (no orchestrator trims
        it then); elected, so one client of the workspace does it per interval. The background
        thread runs every job at its first tick; this one waits for its second (an interval
        later), so opening a volume costs no round trip for it."""
        if not self._journal_ticked:
            self._journal_ticked = True
            return
        self.meta.trim_journal()

    def expire_checkpoints(self, *, now_offset: float = 0.0,
                           interval: float | None = CHECKPOINT_INTERVAL) -> list[str] | None:
        """Delete the checkpoints whose retention (``keep``) passed, and finish deletions a
        stopped client left half done; what only they pinned goes through the normal reclaim.
        Elected: one client of the workspace runs it per ``interval`` (None: no election).
        Returns the names deleted, or None when another client runs it."""
        if interval is not None and not self.meta.claim_job("checkpoints", interval, now_offset=now_offset):
            return None
        done = []
        for name in self.meta.checkpoints_due(now_offset=now_offset):
            try:
                self.meta.checkpoint_delete(name, grace=self.meta.slice_grace)
            except NotFound:
                continue  # deleted meanwhile by someone else
            done.append(name)
            log.info("checkpoint %s expired and was deleted", name)
        if done:
            self.meta.account_history()
        return done

    def account_history(self, *, interval: float | None = HISTORY_ACCOUNT_INTERVAL) -> int | None:
        """Measure the bytes only checkpoints keep and charge them to capacity (``hpinned``).
        Elected like the other jobs; returns the bytes, or None when another client runs it."""
        if interval is not None and not self.meta.claim_job("history_space", interval):
            return None
        return self.meta.account_history()

    def check_memory(self) -> None:
        self.meta.refresh_inline_pressure()
