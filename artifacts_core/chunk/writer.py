"""The slice writer: one new slice's bytes, streamed to the object store block by block.

The JuiceFS-proven contract (STYLE.md habit 1):
- ``write(offset, data)`` places bytes at any offset of the slice at or after the *frozen
  boundary*; a gap before ``offset`` reads as zeros; the not-yet-uploaded tail may be rewritten;
- every block that lies wholly below the written length is full, so it is frozen and handed to an
  upload at once — a long sequential write streams to S3 while it is being written;
- ``finish()`` uploads the short tail and returns the slice length only when every block is
  stored, raising the first upload error (``StorageError``); the VFS commits the slice to metadata
  only after that (upload first, commit second: a crash leaves orphans for gc, never dangling
  metadata);
- ``abort()`` waits for started uploads, then deletes whatever may have been stored.

States are explicit: ``WRITING → FINISHED`` or ``→ FAILED`` (an upload failed; ``finish`` and
further writes raise) and ``→ ABORTED`` from any state. Memory: a block buffer's growth takes bytes
from the store's budget first (may block, see ``budget``); the bytes come back when its upload ends.
Thread-safe, synchronous, for VFS threads — never call it on the loop thread (it may block).

The writer knows the chunk store only through the sink it is given (``ChunkStore.writer`` passes
its own): ``upload(block, buf)`` starts a block's upload and returns its future (the upload gives
the block's budget bytes back when it ends), ``delete(keys)`` is the coroutine that removes stored
blocks, and ``loop`` and ``budget`` are the store's.
"""

from __future__ import annotations

import concurrent.futures
import enum
import threading
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from artifacts_core.aio import LoopThread
from artifacts_core.chunk.budget import ByteBudget
from artifacts_core.chunk.keys import BlockKey, block_count
from artifacts_core.errors import ArtifactsError, InvalidArgument, StorageError, TimedOut
from artifacts_core.types import CHUNK_SIZE, SliceId

#: Starts the upload of a frozen block; the future ends when it is stored (or failed).
Upload = Callable[[BlockKey, bytearray], concurrent.futures.Future[None]]
#: Deletes stored block objects by key (a coroutine, run on the loop).
Delete = Callable[[Sequence[str]], Coroutine[Any, Any, None]]


class WriterState(enum.Enum):
    WRITING = "writing"
    FINISHED = "finished"
    FAILED = "failed"
    ABORTED = "aborted"


class SliceWriter:
    def __init__(self, slice_id: SliceId, *, block_size: int, loop: LoopThread, budget: ByteBudget,
                 upload: Upload, delete: Delete) -> None:
        self.slice_id = slice_id
        self._bs = block_size
        self._loop = loop
        self._budget = budget
        self._start_upload = upload
        self._delete_blocks = delete
        self._lock = threading.Lock()
        self._state = WriterState.WRITING
        self._length = 0
        self._frozen = 0  # blocks [0, _frozen) were handed to uploads
        self._buffers: dict[int, bytearray] = {}  # unfrozen blocks
        self._uploads: list[concurrent.futures.Future[None]] = []
        self._keys: list[str] = []
        self._error: BaseException | None = None  # the first upload failure

    @property
    def state(self) -> WriterState:
        return self._state

    @property
    def length(self) -> int:
        return self._length

    @property
    def frozen_offset(self) -> int:
        """Writes must start at or after this offset (earlier blocks are already uploading)."""
        return self._frozen * self._bs

    # -- writing --------------------------------------------------------------------------------

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B") if not isinstance(data, bytes) else memoryview(data)
        if self._loop.in_loop_thread():
            raise RuntimeError("SliceWriter.write() on the event-loop thread: it may block; use a worker thread")
        end = offset + len(view)
        with self._lock:
            self._check_writing()
            if offset < 0:
                raise InvalidArgument(f"slice {self.slice_id}: negative write offset {offset}")
            if offset < self.frozen_offset:
                raise InvalidArgument(
                    f"slice {self.slice_id}: write at {offset} is before the frozen boundary "
                    f"{self.frozen_offset} (those blocks are uploading); start a new slice")
            if end > CHUNK_SIZE:
                raise InvalidArgument(f"slice {self.slice_id}: a slice ends within {CHUNK_SIZE} bytes")
            if not view:
                return
            bs = self._bs
            # Start at the old end when writing past it: the gap becomes zeros.
            for index in range(min(offset, self._length) // bs, (end - 1) // bs + 1):
                base = index * bs
                lo, hi = max(offset, base), min(end, base + bs)
                buf = self._buffers.get(index)
                if buf is None:
                    buf = self._buffers[index] = bytearray()
                need = hi - base if hi > lo else bs  # a block wholly inside the gap fills up with zeros
                grow = max(0, need - len(buf))
                self._budget.acquire(grow)  # may wait for uploads to drain
                if lo >= hi:
                    buf += bytes(grow)
                    continue
                pos = lo - base
                if pos > len(buf):
                    buf += bytes(pos - len(buf))
                part = view[lo - offset:hi - offset]
                overlap = min(len(buf) - pos, len(part))
                if overlap:
                    buf[pos:pos + overlap] = part[:overlap]
                buf += part[overlap:]
            self._length = max(self._length, end)
            while self._frozen < self._length // bs:
                self._freeze(self._frozen)

    def _check_writing(self) -> None:
        if self._error is not None and self._state is WriterState.WRITING:
            self._state = WriterState.FAILED
        if self._state is WriterState.FAILED:
            raise self._storage_error()
        if self._state is not WriterState.WRITING:
            raise InvalidArgument(f"slice {self.slice_id}: writer is {self._state.value}")

    def _freeze(self, index: int) -> None:
        """Hand block ``index`` (complete: full, or the tail at finish) to an upload."""
        buf = self._buffers.pop(index, None)
        if buf is None:
            buf = bytearray()
        block = BlockKey(self.slice_id, index, len(buf))
        self._budget.mark_draining(len(buf))
        try:
            future = self._start_upload(block, buf)
        except BaseException:
            self._budget.release(len(buf))
            raise
        future.add_done_callback(self._upload_done)
        self._uploads.append(future)
        self._keys.append(block.key)
        self._frozen = index + 1

    def _upload_done(self, future: concurrent.futures.Future[None]) -> None:
        if self._error is None and (future.cancelled() or future.exception() is not None):
            self._error = future.exception() if not future.cancelled() else StorageError(
                f"slice {self.slice_id}: upload cancelled (the volume is closing)")

    def _storage_error(self) -> ArtifactsError:
        err = self._error
        if isinstance(err, ArtifactsError):
            return err
        wrapped = StorageError(f"slice {self.slice_id}: upload failed: {err}")
        wrapped.__cause__ = err
        return wrapped

    # -- ending ---------------------------------------------------------------------------------

    def finish(self, timeout: float | None = None) -> int:
        """Upload the tail, wait until every block is stored, return the slice length."""
        with self._lock:
            if self._state is WriterState.FINISHED:
                return self._length
            self._check_writing()
            while self._frozen < block_count(self._length, self._bs):
                self._freeze(self._frozen)
            uploads = list(self._uploads)
        self._wait(uploads, timeout)
        with self._lock:
            if self._error is not None:
                self._state = WriterState.FAILED
                raise self._storage_error()
            if self._state is WriterState.WRITING:
                self._state = WriterState.FINISHED
            return self._length

    def _wait(self, uploads: list[concurrent.futures.Future[None]], timeout: float | None) -> None:
        if self._loop.in_loop_thread():
            raise RuntimeError("SliceWriter.finish()/abort() on the event-loop thread would deadlock")
        _done, pending = concurrent.futures.wait(uploads, timeout)
        if pending:
            raise TimedOut(f"slice {self.slice_id}: {len(pending)} block uploads still running after {timeout} s")

    def abort(self) -> None:
        """Drop buffered data and delete every block that may have been uploaded. Idempotent."""
        with self._lock:
            if self._state is WriterState.ABORTED:
                return
            self._state = WriterState.ABORTED
            for buf in self._buffers.values():
                self._budget.release(len(buf), draining=False)
            self._buffers.clear()
            uploads, keys = list(self._uploads), list(self._keys)
        # Wait rather than cancel: a cancelled PUT may still land after our DELETE.
        self._wait(uploads, None)
        if keys:
            self._loop.run(self._delete_blocks(keys))
