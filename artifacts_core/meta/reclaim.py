"""Reclaiming space: compaction of chunks, release of deleted files' data, deletion of
unreferenced slices, trash expiry, and the elections that let one client at a time run them.
Functions: ``lua/40_reclaim.lua``, ``lua/41_compact.lua``.

Moving parts:

- **Compaction** (``compact_chunk``): read a chunk (one round trip), merge it
  (``slices.build_view``), let a writer callback store the merged bytes as ONE new slice (S3
  blocks through the chunk store, or inline bytes when small), then ``af_compact`` swaps it in
  only if the records it merged are still the head of the list; records committed meanwhile stay
  after it. The old slices are released with a grace period (``slice_grace``), so a reader holding
  the old view still finds their blocks and inline keys. Triggers live in ``slices.py``
  (``needs_compaction``); a commit reports ``COMPACT_NOW`` past 1000 records and the writer then
  compacts before committing more, so random overwrites cannot make a file unreadable.
- **Cold inline data**: ``inline_candidates`` lists chunks whose inline writes are quiet;
  ``compact_chunk(..., prefer_s3=True)`` moves them to S3 with the same swap.
- **Release** (``reclaim``): ``delfiles`` -> chunk lists walked and dropped, references released;
  inline slices with no reference deleted at once, S3 slices queued in ``delslices``; entries past
  their grace time are handed to ``delete_blocks(id, size)`` (the chunk store) and forgotten only
  after it returns. Bounded batches; nothing referenced is ever deleted.
- **Trash** (``expire_trash``): hour directories older than ``trash_days`` lose their entries;
  files whose last name goes are freed through the same path.
- **Elections** (``claim_job``): ``jobs[name]`` = last run; a client runs a job only if nobody ran
  it within the interval. Every time argument takes an offset so tests never wait.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping

import msgspec

from artifacts_core.meta import journal
from artifacts_core.meta.attrs import SLICE_INLINE, SLICE_S3, SliceRecord, pack_slice
from artifacts_core.meta.data import DataOps, chunk_length
from artifacts_core.meta.slices import Segment, SliceReader, assemble, build_view, data_extent
from artifacts_core.types import Ino, SliceId

log = logging.getLogger("artifacts.meta")

#: How often one client of the volume releases deleted data: often enough that df follows
#: deletes within a minute, rarely enough that idle volumes cost nothing.
RECLAIM_INTERVAL = 30.0
#: Trash hour-directories expire on the hour; checking every 10 minutes is plenty.
TRASH_INTERVAL = 600.0
#: Seconds between two runs of the journal's retention by full-rights clients (elected).
JOURNAL_INTERVAL = 60.0
#: Work per function call: chunk lists released / slices listed / trash entries removed. A call
#: of 1000 small steps stays around a millisecond of Redis time, so foreground calls never wait.
RECLAIM_BATCH = 1000
#: Calls per run before yielding to the next run: bounds one run's time on a huge backlog.
MAX_CALLS_PER_RUN = 100
#: Inline data idle this long is moved to S3 by the background migration: a file still being
#: appended to keeps its small writes in Redis; a finished one leaves within minutes.
INLINE_QUIET = 300.0
#: How often one client looks for quiet inline data.
INLINE_INTERVAL = 60.0
#: Leading S3 slices at least this large that nothing later touches are kept by compaction rather
#: than rewritten (JuiceFS's skipSome, 1 MiB): a growing log then costs a rewrite of its recent
#: small appends only, not of its whole head every time (JuiceFS #5008: write amplification).
KEEP_MIN = 1 << 20

#: Stores the merged bytes of a compaction as one slice; returns its record (pos/len as the
#: job's, id = job.slice_id) and, for an inline slice, its bytes (None for S3).
CompactWriter = Callable[["CompactionJob"], tuple[SliceRecord, bytes | None]]


class CompactionJob(msgspec.Struct, frozen=True):
    """What a compaction writer must store: chunk range ``[start, start + length)`` of the merged
    view, as slice ``slice_id``. ``inline_ok``: the writer may return inline bytes."""

    ino: Ino
    index: int
    slice_id: SliceId
    start: int
    length: int
    view: list[Segment]
    inline: dict[SliceId, bytes]
    inline_ok: bool

    def data(self, read_s3: SliceReader | None = None) -> bytes:
        """The merged bytes to store (inline bytes from the job, S3 bytes through ``read_s3``)."""
        return assemble(self.view, self.start, self.start + self.length, self.inline, read_s3)


class CompactResult(msgspec.Struct, frozen=True):
    """``status``: "swapped", "aborted" (the list changed; the new slice is queued for deletion),
    "duplicate" (a retry of a swap that happened), "gone" (no such file), "empty" (no records),
    "skipped" (nothing worth rewriting: at most one record besides the kept head)."""

    status: str
    records_before: int
    records_after: int
    new: SliceRecord | None = None


class ReclaimStats(msgspec.Struct):
    files: int = 0  # deleted files whose data is fully released
    chunks: int = 0  # chunk lists released
    inline_deleted: int = 0  # inline slices deleted
    slices_deleted: int = 0  # S3 slices whose blocks were deleted
    failed: int = 0  # S3 slices whose deletion failed (retried next run)


class TrashStats(msgspec.Struct):
    entries: int = 0
    dirs: int = 0


def _n(value) -> str:
    return repr(value) if isinstance(value, float) else str(int(value))


def _overlap(a: SliceRecord, b: SliceRecord) -> bool:
    return a.pos < b.pos + b.len and b.pos < a.pos + a.len


def kept_head(records: list[SliceRecord], keep_min: int = KEEP_MIN) -> int:
    """How many leading records compaction keeps as they are: large S3 slices that no later record
    touches and that lie outside the span of the records to merge (so the merged slice, placed
    after them, cannot cover them with zeros)."""
    k = 0
    while (k < len(records) and records[k].id != 0 and records[k].kind == SLICE_S3
           and records[k].len >= keep_min):
        k += 1
    while k > 0:
        head, rest = records[:k], records[k:]
        lo = min((r.pos for r in rest), default=0)
        hi = max((r.pos + r.len for r in rest), default=0)
        if all(not (rest and h.pos < hi and lo < h.pos + h.len)
               and not any(_overlap(h, g) for g in head[i + 1:]) for i, h in enumerate(head)):
            return k
        k -= 1
    return 0


class ReclaimOps(DataOps):
    """Reclaiming space, built on ``DataOps``: slice ids, reads, whether a slice may go inline
    (``inline_allowed``) and ``slice_grace``."""

    # -- elections -----------------------------------------------------------------------------

    def claim_job(self, name: str, interval: float, *, now_offset: float = 0.0) -> bool:
        """Whether this client runs job ``name`` now (nobody ran it within ``interval`` s)."""
        return bool(self.client.call("af_bgjob_elect", name, _n(float(interval)), _n(float(now_offset))))

    # -- compaction ----------------------------------------------------------------------------

    def compact_chunk(self, ino: Ino, index: int, writer: CompactWriter, *,
                      prefer_s3: bool = False, keep_min: int = KEEP_MIN) -> CompactResult:
        """Merge chunk ``index`` of ``ino`` into one slice written by ``writer`` and swap it in if
        the list's head is unchanged: two round trips (read, swap) plus the writer's work.
        ``prefer_s3``: never inline (cold-data migration). ``keep_min``: see ``kept_head``."""
        attr, records, inline = self.read_chunk_attr(ino, index)
        if attr is None:
            return CompactResult("gone", len(records), len(records))
        keep = kept_head(records, keep_min)
        rest = records[keep:]
        if records and (not rest or (len(rest) == 1 and rest[0].id != 0
                                     and not (prefer_s3 and rest[0].kind == SLICE_INLINE))):
            return CompactResult("skipped", len(records), len(records))
        raw = b"".join(pack_slice(r) for r in records)
        view = build_view(rest, chunk_length(attr.length, index))
        start, end = data_extent(view)
        new: SliceRecord | None = None
        data: bytes | None = None
        if end > start:
            sid = self.new_slice_id()
            inline_ok = not prefer_s3 and self.inline_allowed(end - start)
            job = CompactionJob(ino, index, sid, start, end - start,
                                [s for s in view if s.end > start and s.pos < end], inline, inline_ok)
            new, data = writer(job)
            if (new.id != sid or new.pos != start or new.len != end - start
                    or (data is not None and (not inline_ok or len(data) != new.size))):
                raise ValueError(f"compaction writer returned {new!r} for {job.slice_id} at {start}+{end - start}")
        args: list[str | bytes]  # FCALL arguments; inline data goes as bytes
        args = [_n(ino), _n(index), _n(keep), _n(len(records)), hashlib.sha1(raw).hexdigest() if records else "",
                _n(new.pos if new else 0), _n(new.id if new else 0), _n(new.size if new else 0),
                _n(new.off if new else 0), _n(new.len if new else 0), _n(float(self.slice_grace)),
                self._owner()]
        if data is not None:
            args.append(data)
        status, after = self._commit_call("af_compact", args, inline=False)
        name = {0: "aborted", 1: "swapped", 2: "duplicate"}[int(status)]
        if name == "swapped" and not records:
            name = "empty"
        return CompactResult(name, len(records), int(after), new)

    def inline_candidates(self, limit: int = 100, *, quiet: float = INLINE_QUIET,
                          now_offset: float = 0.0) -> list[tuple[Ino, int]]:
        """Chunks holding inline slices not written for ``quiet`` seconds, oldest first."""
        reply = self.client.call("af_inline_candidates", _n(float(quiet)), _n(limit),
                                 _n(float(now_offset)), ro=True)
        out = []
        for member in reply:
            ino, _, index = (member.decode() if isinstance(member, bytes) else member).partition("_")
            out.append((Ino(int(ino)), int(index)))
        return out

    def migrate_inline(self, writer: CompactWriter, *, limit: int = 100, quiet: float = INLINE_QUIET,
                       interval: float | None = INLINE_INTERVAL, now_offset: float = 0.0) -> int | None:
        """Move quiet inline data to S3 (DESIGN.md §10: runs in every open volume): each candidate
        chunk is compacted into one S3 slice by ``writer``. Returns the chunks moved, or None
        when another client won the election."""
        if interval is not None and not self.claim_job("inline", interval, now_offset=now_offset):
            return None
        moved = 0
        for ino, index in self.inline_candidates(limit, quiet=quiet, now_offset=now_offset):
            if self.compact_chunk(ino, index, writer, prefer_s3=True).status == "swapped":
                moved += 1
        return moved

    # -- releasing deleted data ----------------------------------------------------------------

    def reclaim(self, delete_blocks: Callable[[SliceId, int], None], *, batch: int = RECLAIM_BATCH,
                interval: float | None = RECLAIM_INTERVAL, now_offset: float = 0.0) -> ReclaimStats | None:
        """Release deleted files' data and delete unreferenced slices whose grace has passed.
        ``delete_blocks(id, size)`` deletes an S3 slice's blocks (it may raise: the slice stays
        queued). Returns None when another client won the election (``interval`` None: no
        election, e.g. a maintenance command)."""
        if interval is not None and not self.claim_job("reclaim", interval, now_offset=now_offset):
            return None
        stats = ReclaimStats()
        for _ in range(MAX_CALLS_PER_RUN):
            files, chunks, left = self.client.call("af_reclaim_files", _n(batch), _n(float(now_offset)))
            stats.files += int(files)
            stats.chunks += int(chunks)
            if int(left) == 0 or (int(files) == 0 and int(chunks) == 0):
                break
        for _ in range(MAX_CALLS_PER_RUN):
            reply = self.client.call("af_reclaim_slices", _n(batch), _n(float(now_offset)))
            stats.inline_deleted += int(reply[0])
            due = [m.decode() if isinstance(m, bytes) else m for m in reply[1:]]
            done = []
            for member in due:
                sid, _, size = member.partition("_")
                try:
                    delete_blocks(SliceId(int(sid)), int(size))
                except Exception:
                    log.warning("deleting the blocks of slice %s failed; retried on the next run",
                                member, exc_info=True)
                    stats.failed += 1
                    continue
                done.append(member)
            if done:
                self.client.call("af_reclaim_done", *done)
                stats.slices_deleted += len(done)
            if stats.failed or len(due) + int(reply[0]) < batch:
                break
        return stats

    def expire_trash(self, *, now_offset: float = 0.0, batch: int = RECLAIM_BATCH,
                     interval: float | None = TRASH_INTERVAL) -> TrashStats | None:
        """Remove trash hour-directories older than the volume's ``trash_days`` (their files'
        data then goes through ``reclaim``). None when another client won the election."""
        if interval is not None and not self.claim_job("trash", interval, now_offset=now_offset):
            return None
        stats = TrashStats()
        for _ in range(MAX_CALLS_PER_RUN):
            entries, dirs, more = self.client.call("af_expire_trash", _n(batch), _n(float(now_offset)))
            stats.entries += int(entries)
            stats.dirs += int(dirs)
            if not int(more):
                break
        return stats

    def trim_journal(self, *, now_offset: float = 0.0, interval: float | None = JOURNAL_INTERVAL) -> int | None:
        """The journal's retention (the setting's ``journal_max_events`` / ``journal_max_days``),
        for full-rights clients; None when another client won the election."""
        if interval is not None and not self.claim_job("journal", interval, now_offset=now_offset):
            return None
        s = self.setting
        assert s is not None
        return journal.trim(self.client, max_events=s.journal_max_events, max_age=s.journal_max_days * 86400,
                    now_offset=now_offset)

    def pending_deletes(self) -> Mapping[str, int]:
        """Queue lengths for ``.stats``: files awaiting release, slices awaiting deletion."""
        files, slices = self.client.pipeline(lambda p: (p.zcard(self.keys.delfiles),
                                                       p.zcard(self.keys.delslices)))
        return {"files": int(files), "slices": int(slices)}
