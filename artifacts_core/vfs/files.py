"""Open files: handles, reads, writes, flush and release (the data half of the VFS).

A *handle* (``fh``) is one open of one inode by this client. Handles of the same inode share the
inode's ``InodeState``: its dirty data (``FileWriter``), its cached chunk views, and the length
last seen. Rules kept here:

- close-to-open: ``open`` fetches the attributes (and registers the open across hosts in the same
  Redis call); if the inode changed since the views were cached, they are dropped;
- read-your-writes: a read of an inode with dirty data commits it first;
- ``flush``/``fsync``/``release`` return only after the data is stored and committed; a failed
  upload or commit is raised by the next flush of the inode (never dropped silently);
- an unlinked file stays readable and writable through open handles (the metadata engine keeps a
  sustained inode until the last close anywhere).
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from dataclasses import dataclass, field

import msgspec

from artifacts_core.errors import (
    ArtifactsError,
    IntegrityError,
    InvalidArgument,
    IsADirectory,
    NotFound,
    PermissionDenied,
    ReadOnly,
    StorageError,
    error_for,
)
from artifacts_core.meta import slices as slicemath
from artifacts_core.meta.attrs import SLICE_INLINE, Attr, SliceRecord
from artifacts_core.types import CHUNK_SIZE, ROOT_CALLER, Caller, Ino
from artifacts_core.vfs import internal
from artifacts_core.vfs.reader import Readahead
from artifacts_core.vfs.writer import FileWriter, WriterState

log = logging.getLogger("artifacts.vfs")

_ACCMODE = os.O_RDONLY | os.O_WRONLY | os.O_RDWR
#: Releases deregistered per round trip at most; a full batch is sent at once rather than waiting
#: for the next tick.
CLOSE_BATCH = 256


@dataclass
class ChunkView:
    segments: list
    inline: dict


@dataclass
class InodeState:
    ino: Ino
    length: int = 0
    gen: int = -1
    handles: int = 0
    writer: FileWriter | None = None
    views: dict[int, ChunkView] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)


@dataclass
class Handle:
    fh: int
    ino: Ino
    flags: int
    caller: Caller
    readahead: Readahead | None = None
    internal: internal.InternalHandle | None = None
    lock_owners: set[int] = field(default_factory=set)  # owners that locked through this handle
    gen: int = -1  # the inode's change counter when it was opened (frontends' page-cache checks)

    @property
    def writable(self) -> bool:
        return self.flags & _ACCMODE in (os.O_WRONLY, os.O_RDWR)

    @property
    def readable(self) -> bool:
        return self.flags & _ACCMODE in (os.O_RDONLY, os.O_RDWR)


class FileOps:
    """Mixin of ``VFS``: expects ``meta``, ``chunks``, ``config``, ``metrics``, ``read_only``, ``_lock``."""

    def __init__(self) -> None:
        self._fhs = itertools.count(1)
        self._handles: dict[int, Handle] = {}
        self._inodes: dict[Ino, InodeState] = {}
        self._closes: list[Ino] = []  # opens to deregister, batched (DESIGN.md §10)
        self._closes_lock = threading.Lock()

    def _queue_close(self, ino: Ino) -> None:
        with self._closes_lock:
            self._closes.append(ino)
            full = len(self._closes) >= CLOSE_BATCH
        if full:
            self.flush_closes()

    def flush_closes(self) -> None:
        """Deregister the queued releases in one round trip (the background tick calls this; an
        inode unlinked elsewhere meanwhile is freed by the engine when its last open goes)."""
        with self._closes_lock:
            batch, self._closes = self._closes, []
        if batch:
            try:
                self.meta.close_many(batch)
            except ArtifactsError:
                with self._closes_lock:  # retried on the next tick; session expiry is the backstop
                    self._closes[:0] = batch
                raise

    # -- state ---------------------------------------------------------------------------------

    def _state(self, ino: Ino) -> InodeState:
        with self._lock:
            st = self._inodes.get(ino)
            if st is None:
                st = self._inodes[ino] = InodeState(ino)
            return st

    def _handle(self, fh: int) -> Handle:
        h = self._handles.get(fh)
        if h is None:
            raise error_for("EBADF", "bad file handle")
        return h

    def handle_ino(self, fh: int) -> Ino:
        """The inode an open handle refers to (EBADF for an unknown handle); frontends that get
        only a handle back, such as FUSE's fstat/ftruncate, use it."""
        return self._handle(fh).ino

    def handle_gen(self, fh: int) -> int:
        """The inode's change counter as the open saw it: equal counters at two opens mean the
        data did not change in between (the FUSE frontend then keeps the kernel's page cache)."""
        return self._handle(fh).gen

    def _preview(self, ino: Ino, attr: Attr) -> Attr:
        """Attributes as this client sees them: the length includes its own unflushed writes."""
        st = self._inodes.get(ino)
        if st is None or st.writer is None or st.writer.state is WriterState.CLEAN:
            return attr
        length = max(attr.length, st.writer.max_end) + st.writer.pending_append
        if length == attr.length:
            return attr

        return msgspec.structs.replace(attr, length=length)

    def _writer(self, st: InodeState) -> FileWriter:
        if st.writer is None:
            setting = self.meta.setting
            st.writer = FileWriter(
                st.ino, block_size=setting.block_size, inline_limit=setting.inline_limit,
                new_slice_id=self.meta.new_slice_id, open_slice=self.chunks.writer,
                commit=self._commit, remove_slice=self.chunks.remove)
        return st.writer

    def _commit(self, ino: Ino, chunk: int, record: SliceRecord, *, data: bytes | None = None,
                append: bool = False) -> Attr:
        result = self.meta.commit_slice(ino, max(chunk, 0), record, data=data, append=append)
        attr = result.attr
        if attr is None:
            raise NotFound("the file was deleted before its data was committed")
        st = self._state(ino)
        st.length = attr.length
        st.gen = attr.gen
        if append or chunk < 0:
            st.views.clear()
        else:
            st.views.pop(chunk, None)
        urgency = result.compaction
        if urgency:
            # An append landed where Redis put it: at the chunk of the offset it reports.
            index = result.offset // CHUNK_SIZE if append and result.offset >= 0 else chunk
            if index >= 0:
                self.on_compaction_hint(ino, index, urgency)
        return attr

    # -- open, create, release -----------------------------------------------------------------

    def open(self, ino: Ino, flags: int, caller: Caller = ROOT_CALLER) -> int:
        with self._op("open", ino, oct(flags), caller=caller):
            f = internal.BY_INO.get(ino)
            if f is not None:
                if flags & _ACCMODE != os.O_RDONLY:
                    raise PermissionDenied("internal files are read-only", path=f.name)
                ih = internal.open_internal(f, stats=self.metrics.render, config=self._describe_config,
                                            accesslog=self.metrics.accesslog)
                return self._new_handle(ino, flags, caller, ih)
            writable = flags & _ACCMODE != os.O_RDONLY or flags & os.O_TRUNC
            if writable and self.read_only:
                raise ReadOnly("the workspace is mounted read-only")
            attr = self.meta.open(ino, flags, caller)
            if attr.is_dir and writable:
                self.meta.close_file(ino)
                raise IsADirectory("cannot open a directory for writing")
            return self._opened(ino, attr, flags, caller)

    def create(self, parent: Ino, name: str, mode: int, flags: int = os.O_RDWR | os.O_CREAT | os.O_EXCL,
               caller: Caller = ROOT_CALLER) -> tuple[int, Ino, Attr]:
        """Create (or with O_CREAT without O_EXCL, open) a regular file and open it."""
        with self._op("create", parent, name, oct(mode), caller=caller):
            self._writable(parent, caller=caller)
            from artifacts_core.paths import check_name

            ino, attr, created = self.meta.create(parent, check_name(name), mode, caller,
                                                  exclusive=bool(flags & os.O_EXCL), register_open=True)
            if not created:  # an existing file: open it as open(2) would (access checked)
                attr = self.meta.open(ino, flags & ~os.O_TRUNC, caller)
            fh = self._opened(ino, attr, flags, caller)
            return fh, ino, self._preview(ino, attr)

    def _opened(self, ino: Ino, attr: Attr, flags: int, caller: Caller) -> int:
        st = self._state(ino)
        with st.lock:
            if st.gen != attr.gen and (st.writer is None or st.writer.state is WriterState.CLEAN):
                st.views.clear()
                st.length = attr.length
                st.gen = attr.gen
            st.handles += 1
        fh = self._new_handle(ino, flags, caller)
        self._handles[fh].gen = attr.gen
        if flags & os.O_TRUNC and flags & _ACCMODE != os.O_RDONLY and attr.length:
            try:
                self.truncate(ino, 0, caller=caller)
            except BaseException:
                self.release(fh)
                raise
        return fh

    def _new_handle(self, ino: Ino, flags: int, caller: Caller, ih=None) -> int:
        fh = next(self._fhs)
        cfg = self.config
        self._handles[fh] = Handle(fh, ino, flags, caller,
                                   Readahead(cfg.readahead_min, cfg.readahead_max), ih)
        return fh

    def release(self, fh: int) -> None:
        """Close a handle: commit its inode's data, deregister the open. Errors were reported by
        ``flush``; here they are logged, and the dirty data of a failed writer is dropped."""
        with self._op("release", fh):
            h = self._handles.pop(fh, None)
            if h is None:
                return
            if h.internal is not None:
                h.internal.close()
                return
            st = self._state(h.ino)
            try:
                if h.writable and st.writer is not None:
                    st.writer.flush()
            except ArtifactsError as e:
                log.warning("data of inode %d could not be stored at close: %s", h.ino, e)
                st.writer.abort()
            finally:
                with st.lock:
                    st.handles -= 1
                    last = st.handles <= 0
                if last:
                    with self._lock:
                        if st.handles <= 0 and (st.writer is None or st.writer.state is WriterState.CLEAN):
                            self._inodes.pop(h.ino, None)
                self._queue_close(h.ino)

    # -- data ----------------------------------------------------------------------------------

    def read(self, fh: int, offset: int, size: int) -> bytes:
        h = self._handle(fh)
        if h.internal is not None:  # not logged: reading .accesslog would log its own reads forever
            return h.internal.read(offset, size)
        with self._op("read", h.ino, offset, size, caller=h.caller):
            if not h.readable:
                raise error_for("EBADF", "file not open for reading")
            if offset < 0 or size < 0:
                raise InvalidArgument("negative offset or size")
            st = self._state(h.ino)
            if st.writer is not None and st.writer.state is not WriterState.CLEAN:
                st.writer.flush()
            length = st.length
            if offset >= length or size == 0:
                return b""
            size = min(size, length - offset)
            if h.readahead is not None:
                advice = h.readahead.advise(offset, size, length)
                if advice is not None:
                    self._prefetch(st, *advice)
            data = self._read_range(st, offset, size)
            self.metrics.inc("read_bytes", len(data))
            return data

    def _read_range(self, st: InodeState, offset: int, size: int) -> bytes:
        parts = []
        end = offset + size
        while offset < end:
            index, pos = divmod(offset, CHUNK_SIZE)
            n = min(end - offset, CHUNK_SIZE - pos)
            parts.append(self._read_chunk(st, index, pos, n, st.length))
            offset += n
        return parts[0] if len(parts) == 1 else b"".join(parts)  # one copy at most per read

    def _view(self, st: InodeState, index: int, file_length: int, *, refresh: bool = False) -> ChunkView:
        view = None if refresh else st.views.get(index)
        if view is None:
            records, inline = self.meta.read_chunk(st.ino, index)
            chunk_len = max(0, min(CHUNK_SIZE, file_length - index * CHUNK_SIZE))
            view = ChunkView(slicemath.build_view(records, chunk_len), inline)
            st.views[index] = view
            urgency = slicemath.needs_compaction(len(records), view.segments)
            if urgency and not self.read_only:
                self.on_compaction_hint(st.ino, index, urgency)
        return view

    def forget_view(self, ino: Ino, index: int) -> None:
        """Drop a cached chunk view (after compaction replaced the chunk's slices)."""
        st = self._inodes.get(ino)
        if st is not None:
            st.views.pop(index, None)

    def on_compaction_hint(self, ino: Ino, index: int, urgency: int) -> None:
        """Replaced by the volume's maintenance; a bare VFS does not compact."""

    def _read_chunk(self, st: InodeState, index: int, pos: int, size: int, file_length: int) -> bytes:
        for attempt in (0, 1):
            view = self._view(st, index, file_length, refresh=attempt == 1)
            try:
                return self._read_view(view, pos, size)
            except (NotFound, StorageError, IntegrityError):
                if attempt:
                    raise
                # Compacted away on another host while we held an old view: read the new one.
                log.info("slice of inode %d chunk %d is gone; refreshing the view", st.ino, index)
        raise AssertionError("unreachable")

    def _read_view(self, view: ChunkView, pos: int, size: int) -> bytes:
        parts: list[bytes] = []
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
                    raise NotFound("inline slice is gone")
                parts.append(data[inner:inner + (b - a)])
            else:
                parts.append(self.chunks.read(seg.id, seg.size, inner, b - a))
            at = b
        if at < end:
            parts.append(bytes(end - at))
        # A read inside one segment (the common case) returns the chunk store's bytes uncopied.
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _prefetch(self, st: InodeState, offset: int, size: int) -> None:
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

    def write(self, fh: int, offset: int, data: bytes | bytearray | memoryview) -> int:
        h = self._handle(fh)
        with self._op("write", h.ino, offset, len(data), caller=h.caller):
            if not h.writable:
                raise error_for("EBADF", "file not open for writing")
            if self.read_only:
                raise ReadOnly("the workspace is mounted read-only")
            if offset < 0:
                raise InvalidArgument("negative offset")
            st = self._state(h.ino)
            w = self._writer(st)
            if h.flags & os.O_APPEND:
                w.append(data)
            else:
                w.write(offset, data)
            self.metrics.inc("write_bytes", len(data))
            return len(data)

    def flush(self, fh: int) -> None:
        h = self._handle(fh)
        with self._op("flush", h.ino, caller=h.caller):
            st = self._inodes.get(h.ino)
            if st is not None and st.writer is not None:
                st.writer.flush()

    def fsync(self, fh: int, datasync: bool = False) -> None:
        h = self._handle(fh)
        with self._op("fsync", h.ino, caller=h.caller):
            st = self._inodes.get(h.ino)
            if st is not None and st.writer is not None:
                st.writer.flush()

    def flush_due(self) -> None:
        """Commit dirty files whose data waited past ``flush_interval`` or has been idle past
        ``flush_idle`` (the background tick). A failure is remembered by the writer and raised by
        the file's next flush or close."""
        now = time.monotonic()
        for st in list(self._inodes.values()):
            w = st.writer
            if w is None or w.state is not WriterState.DIRTY:
                continue
            if now - w.dirty_since >= self.config.flush_interval or now - w.last_write >= self.config.flush_idle:
                try:
                    w.flush()
                except ArtifactsError as e:
                    log.debug("background flush of inode %d failed: %s", st.ino, e)

    def flush_all(self) -> None:
        """Commit every dirty inode (unmount, close); the first error is raised after trying all."""
        first: ArtifactsError | None = None
        for st in list(self._inodes.values()):
            if st.writer is not None:
                try:
                    st.writer.flush()
                except ArtifactsError as e:
                    first = first or e
        if first is not None:
            raise first

    def truncate(self, ino: Ino, length: int, *, caller: Caller = ROOT_CALLER) -> Attr:
        with self._op("truncate", ino, length, caller=caller):
            if self.read_only:
                raise ReadOnly("the workspace is mounted read-only")
            if length < 0:
                raise InvalidArgument("negative length")
            st = self._state(ino)
            with st.lock:
                if st.writer is not None:
                    st.writer.flush()
                attr = self.meta.truncate(ino, length, caller=caller)
                st.views.clear()
                st.length = attr.length
                st.gen = attr.gen
                return attr

    def fallocate(self, ino: Ino, mode: int, offset: int, length: int) -> Attr:
        with self._op("fallocate", ino, mode, offset, length):
            if self.read_only:
                raise ReadOnly("the workspace is mounted read-only")
            st = self._state(ino)
            with st.lock:
                if st.writer is not None:
                    st.writer.flush()
                attr = self.meta.fallocate(ino, mode, offset, length)
                st.views.clear()
                st.length = attr.length
                st.gen = attr.gen
                return attr

    def copy_file_range(self, fh_in: int, off_in: int, fh_out: int, off_out: int, length: int) -> int:
        src, dst = self._handle(fh_in), self._handle(fh_out)
        with self._op("copy_file_range", src.ino, off_in, dst.ino, off_out, length):
            if self.read_only:
                raise ReadOnly("the workspace is mounted read-only")
            for ino in (src.ino, dst.ino):
                st = self._inodes.get(ino)
                if st is not None and st.writer is not None:
                    st.writer.flush()
            copied, attr = self.meta.copy_file_range(src.ino, off_in, dst.ino, off_out, length)
            st = self._state(dst.ino)
            st.views.clear()
            st.length = attr.length
            st.gen = attr.gen
            return copied

    # -- locks ---------------------------------------------------------------------------------

    def flock(self, fh: int, owner: int, op: int, *, timeout: float | None = None, cancel=None) -> None:
        """BSD flock on the handle's inode (LOCK_SH/LOCK_EX/LOCK_UN, optionally | LOCK_NB)."""
        h = self._handle(fh)
        with self._op("flock", h.ino, op, caller=h.caller):
            self.meta.flock(h.ino, owner, op, timeout=timeout, cancel=cancel)
            h.lock_owners.add(owner)

    def getlk(self, fh: int, owner: int, type: int, start: int, end: int) -> tuple[int, int, int, int]:
        h = self._handle(fh)
        with self._op("getlk", h.ino, type, start, end, caller=h.caller):
            return self.meta.getlk(h.ino, owner, type, start, end)

    def setlk(self, fh: int, owner: int, type: int, start: int, end: int, pid: int = 0,
              wait: bool = False, *, timeout: float | None = None, cancel=None) -> None:
        h = self._handle(fh)
        with self._op("setlk", h.ino, type, start, end, wait, caller=h.caller):
            self.meta.setlk(h.ino, owner, type, start, end, pid, wait, timeout=timeout, cancel=cancel)
            h.lock_owners.add(owner)

    def release_locks(self, fh: int, owner: int, *, posix: bool = True, flock: bool = True) -> None:
        """Drop ``owner``'s locks on the handle's inode (POSIX on flush, flock on release); costs
        nothing when the owner never locked through this handle."""
        h = self._handles.get(fh)
        if h is None or owner not in h.lock_owners:
            return
        self.meta.release_locks(h.ino, owner, posix=posix, flock=flock)
        if flock:
            h.lock_owners.discard(owner)
