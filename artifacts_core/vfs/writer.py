"""``FileWriter``: the dirty data of one inode on this client, from ``write()`` to committed slices.

Moving parts (the JuiceFS-proven shape, with inline slices added):

- A write is cut at 64 MiB chunk boundaries. Inside a chunk it *joins* the newest pending slice
  when it starts inside that slice's rewritable range (between its frozen boundary — bytes already
  handed to uploads — and its end), so sequential writes and rewrites of an unflushed tail extend
  one slice; otherwise it opens a new pending slice. Later slices win when committed, in order.
- A pending slice holds its bytes in a small buffer while it is at most the volume's inline limit;
  past that it becomes a chunk-store ``SliceWriter`` that uploads each full block as it fills, so
  a long sequential write streams to S3 while it is being written.
- ``flush()`` commits every pending slice in creation order: a small one as an *inline slice*
  (bytes and metadata in one Redis function call, no S3 request), a large one after
  ``SliceWriter.finish()`` stored every block (upload first, commit second). When the volume
  refuses new inline data (cap reached, Redis memory high) the slice goes to S3 instead.
- O_APPEND data is kept apart in an append buffer and committed as *append slices*, placed at the
  file's length by the commit function itself, so appends from many hosts never overwrite each
  other and each flush lands whole and contiguous.

States are explicit (STYLE.md habit 7): ``CLEAN`` (nothing pending), ``DIRTY``, ``FAILED`` (an
upload or commit failed: the error is remembered and raised by the next flush of every handle,
never dropped). Thread-safe: FUSE writes arrive on many threads; one lock per inode.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from artifacts_core.chunk.writer import SliceWriter
from artifacts_core.errors import ArtifactsError, NoSpace, NotFound
from artifacts_core.meta.attrs import SLICE_INLINE, SLICE_S3, Attr, SliceRecord
from artifacts_core.meta.data import InlineRefused
from artifacts_core.types import CHUNK_SIZE, Ino, SliceId

log = logging.getLogger("artifacts.vfs")

#: Pending slices per file before the oldest are committed: bounds memory and the slice lists
#: (JuiceFS freezes past 3 newer slices per chunk; rewrite-heavy files would otherwise pile up).
MAX_PENDING_SLICES = 32


class WriterState(enum.Enum):
    CLEAN = "clean"
    DIRTY = "dirty"
    FAILED = "failed"


@dataclass
class PendingSlice:
    chunk: int
    pos: int  # offset of the slice inside its chunk
    buf: bytearray = field(default_factory=bytearray)  # bytes while the slice is small
    writer: SliceWriter | None = None  # once the slice outgrew the inline limit
    length: int = 0

    def frozen(self) -> int:
        return self.writer.frozen_offset if self.writer is not None else 0


class FileWriter:
    """Dirty data of one inode. ``store`` hooks give it the chunk store and metadata calls."""

    def __init__(self, ino: Ino, *, block_size: int, inline_limit: int,
                 new_slice_id: Callable[[], SliceId],
                 open_slice: Callable[[SliceId], SliceWriter],
                 commit: Callable[..., Attr],
                 remove_slice: Callable[[SliceId, int], None]) -> None:
        self.ino = ino
        self._block_size = block_size
        self._inline_limit = inline_limit
        self._new_slice_id = new_slice_id
        self._open_slice = open_slice
        self._commit = commit
        self._remove_slice = remove_slice
        self._lock = threading.RLock()
        self._slices: list[PendingSlice] = []
        self._append = bytearray()
        self._state = WriterState.CLEAN
        self._error: ArtifactsError | None = None
        self.dirty_since = 0.0
        self.last_write = 0.0
        self.max_end = 0  # highest offset written by positional writes (for the length preview)

    @property
    def state(self) -> WriterState:
        return self._state

    @property
    def pending_append(self) -> int:
        return len(self._append)

    def _mark_dirty(self) -> None:
        now = time.monotonic()
        if self._state is WriterState.CLEAN:
            self._state = WriterState.DIRTY
            self.dirty_since = now
        self.last_write = now

    # -- writing -------------------------------------------------------------------------------

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        with self._lock:
            self._raise_failed()
            while view:
                chunk, pos = divmod(offset, CHUNK_SIZE)
                n = min(len(view), CHUNK_SIZE - pos)
                self._write_in_chunk(chunk, pos, view[:n])
                offset += n
                view = view[n:]
            self.max_end = max(self.max_end, offset)
            self._mark_dirty()
            if len(self._slices) > MAX_PENDING_SLICES:
                self._commit_slices(self._slices[: len(self._slices) // 2])

    def append(self, data: bytes | bytearray | memoryview) -> None:
        with self._lock:
            self._raise_failed()
            self._append += data
            self._mark_dirty()

    def _write_in_chunk(self, chunk: int, pos: int, data: memoryview) -> None:
        target = None
        for s in reversed(self._slices):
            if s.chunk == chunk:
                if s.pos + s.frozen() <= pos <= s.pos + s.length:
                    target = s
                break
        if target is None:
            target = PendingSlice(chunk, pos)
            self._slices.append(target)
        rel = pos - target.pos
        end = rel + len(data)
        if target.writer is None and end <= self._inline_limit:
            if rel > len(target.buf):
                target.buf.extend(bytes(rel - len(target.buf)))
            target.buf[rel:end] = data
            target.length = max(target.length, end)
            return
        if target.writer is None:
            self._promote(target)
        assert target.writer is not None
        try:
            target.writer.write(rel, data)
        except ArtifactsError as e:
            self._fail(e)
            raise
        target.length = max(target.length, end)

    def _promote(self, s: PendingSlice) -> None:
        """A slice outgrew the inline limit: from now on its blocks stream to the object store."""
        s.writer = self._open_slice(self._new_slice_id())
        if s.buf:
            s.writer.write(0, bytes(s.buf))
            s.buf = bytearray()

    # -- flushing ------------------------------------------------------------------------------

    def flush(self) -> None:
        """Commit everything pending; raise the remembered failure, if any (once per call)."""
        with self._lock:
            self._raise_failed()
            if self._state is WriterState.CLEAN:
                return
            self._commit_slices(list(self._slices))
            if self._append:
                self._commit_append()
            self._state = WriterState.CLEAN

    def _commit_slices(self, slices: list[PendingSlice]) -> None:
        for s in slices:
            try:
                self._commit_one(s)
            except ArtifactsError as e:
                self._fail(e)
                raise
            self._slices.remove(s)

    def _commit_one(self, s: PendingSlice) -> None:
        if s.writer is None:
            data = bytes(s.buf)
            sid = self._new_slice_id()
            record = SliceRecord(s.pos, sid, len(data), 0, len(data), SLICE_INLINE)
            try:
                self._commit(self.ino, s.chunk, record, data=data)
                return
            except InlineRefused:
                self._promote(s)  # the volume takes no more inline data now: store it in S3
        assert s.writer is not None
        length = s.writer.finish()
        record = SliceRecord(s.pos, s.writer.slice_id, length, 0, s.length, SLICE_S3)
        self._commit_stored(s.chunk, record)

    def _commit_stored(self, chunk: int, record: SliceRecord, *, append: bool = False) -> None:
        try:
            self._commit(self.ino, chunk, record, append=append)
        except (NotFound, NoSpace):
            # The file is gone or full: the uploaded blocks would never be referenced.
            self._remove_slice(record.id, record.size)
            raise

    def _commit_append(self) -> None:
        data = bytes(self._append)
        try:
            if len(data) <= self._inline_limit:
                sid = self._new_slice_id()
                try:
                    self._commit(self.ino, -1, SliceRecord(0, sid, len(data), 0, len(data), SLICE_INLINE),
                                 data=data, append=True)
                    self._append.clear()
                    return
                except InlineRefused:
                    pass
            writer = self._open_slice(self._new_slice_id())
            writer.write(0, data)
            length = writer.finish()
            self._commit_stored(-1, SliceRecord(0, writer.slice_id, length, 0, length, SLICE_S3), append=True)
            self._append.clear()
        except ArtifactsError as e:
            self._fail(e)
            raise

    # -- failure -------------------------------------------------------------------------------

    def _fail(self, e: ArtifactsError) -> None:
        if self._error is None:
            self._error = e
        self._state = WriterState.FAILED
        # A full volume or Redis is an answer the caller gets (ENOSPC), logged once where it is
        # detected, not once per file (a build writing thousands of files would flood the log).
        log.log(logging.DEBUG if isinstance(e, NoSpace) else logging.WARNING,
                "write to inode %d failed: %s", self.ino, e)

    def _raise_failed(self) -> None:
        if self._state is WriterState.FAILED and self._error is not None:
            raise self._error

    def abort(self) -> None:
        """Drop everything pending (deleting blocks already uploaded) and forget any failure."""
        with self._lock:
            for s in self._slices:
                if s.writer is not None:
                    try:
                        s.writer.abort()
                    except ArtifactsError as e:  # the blocks stay as orphans for gc to remove
                        log.warning("could not delete the uploaded blocks of slice %d: %s", s.writer.slice_id, e)
            self._slices.clear()
            self._append.clear()
            self._error = None
            self._state = WriterState.CLEAN
