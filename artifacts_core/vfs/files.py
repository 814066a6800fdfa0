"""``FileOps``: open files -- handles, reads, writes, flush and release. The base class of ``VFS``:
it declares the state the data path shares (the metadata engine, the chunk store, the inode
table, the reader) and the per-operation helpers (``_op``: access log and counters;
``_writable``: the read-only and internal-file checks).

A *handle* (``fh``) is one open of one inode by this client. Handles of the same inode share the
inode's ``InodeState`` (``state.py``): its dirty data (``FileWriter``), its cached chunk views, and
the length last seen. Reads go through the ``Reader`` (``reader.py``), writes through the inode's
``FileWriter`` (``writer.py``). Rules kept here:

- close-to-open: ``open`` fetches the attributes (and registers the open across hosts in the same
  Redis call); if the inode changed since the views were cached, they are dropped;
- read-your-writes: a read of an inode with dirty data commits it first;
- ``flush``/``fsync``/``release`` return only after the data is stored and committed; a failed
  upload or commit is raised by the next flush of the inode (never dropped silently);
- an unlinked file stays readable and writable through open handles (the metadata engine keeps a
  sustained inode until the last close anywhere);
- another host's change of an open inode (the change feed) drops its views and marks its length
  stale: the next read re-reads the attributes, so a handle sees the other host's appends and
  truncates as it would on a local filesystem.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from artifacts_core.chunk.store import ChunkStore
from artifacts_core.config import VolumeConfig
from artifacts_core.errors import (
    ArtifactsError,
    Exists,
    InvalidArgument,
    IsADirectory,
    NoSpace,
    NotFound,
    PermissionDenied,
    ReadOnly,
    error_for,
)
from artifacts_core.meta.attrs import SliceRecord
from artifacts_core.meta.engine import RedisMetaEngine
from artifacts_core.metrics import Metrics
from artifacts_core.paths import check_name
from artifacts_core.types import CHUNK_SIZE, ROOT_CALLER, ROOT_INO, TRASH_INO, Attr, Caller, Ino
from artifacts_core.vfs import checkpointfs, internal
from artifacts_core.vfs.checkpointfs import CheckpointTree
from artifacts_core.vfs.reader import CompactionHint, Readahead, Reader, WholeFiles
from artifacts_core.vfs.state import InodeState, InodeTable
from artifacts_core.vfs.writer import FileWriter, WriterState

log = logging.getLogger("artifacts.vfs")

_ACCMODE = os.O_RDONLY | os.O_WRONLY | os.O_RDWR
#: Releases deregistered per round trip at most; a full batch is sent at once rather than waiting
#: for the next tick.
CLOSE_BATCH = 256


def _no_compaction(ino: Ino, index: int, urgency: int) -> None:
    pass


@dataclass
class Handle:
    fh: int
    ino: Ino
    flags: int
    caller: Caller
    readahead: Readahead | None = None
    internal: internal.ReadHandle | None = None  # an internal file's or a checkpoint file's reader
    lock_owners: set[int] = field(default_factory=set)  # owners that locked through this handle
    gen: int = -1  # the inode's change counter when it was opened (frontends' page-cache checks)
    is_dir: bool = False  # a directory opened read-only: read(2) on it is EISDIR

    @property
    def writable(self) -> bool:
        return self.flags & _ACCMODE in (os.O_WRONLY, os.O_RDWR)

    @property
    def readable(self) -> bool:
        return self.flags & _ACCMODE in (os.O_RDONLY, os.O_RDWR)


class FileOps:
    def __init__(self, meta: RedisMetaEngine, chunks: ChunkStore, config: VolumeConfig, *,
                 read_only: bool, metrics: Metrics, describe_config: Callable[[], str]) -> None:
        self.meta = meta
        self.chunks = chunks
        self.config = config
        self.read_only = read_only
        self.metrics = metrics
        self._describe_config = describe_config
        #: Where the data path reports chunks with long slice lists: the volume's maintenance sets
        #: it (``Maintenance.hint``); a bare VFS does not compact.
        self.on_compaction_hint: CompactionHint = _no_compaction
        self.inodes = InodeTable()
        self.reader = Reader(meta, chunks, read_only=read_only, hint=self._compaction_hint, metrics=metrics)
        #: ``.checkpoints``: every checkpoint, browsed read-only (``checkpointfs.py``).
        self.checkpoint_tree = CheckpointTree(meta, self.reader)
        self._fhs = itertools.count(1)
        self.whole_files = WholeFiles(config.prefetch_whole_file)
        self._handles: dict[int, Handle] = {}
        self._closes: list[Ino] = []  # opens to deregister, batched (DESIGN.md §10)
        self._closes_lock = threading.Lock()

    # -- helpers -------------------------------------------------------------------------------

    @contextmanager
    def _op(self, name: str, *args: object, caller: Caller = ROOT_CALLER) -> Iterator[None]:
        with self.metrics.operation(name, *args, uid=caller.uid, pid=caller.pid):
            yield

    def _writable(self, *parents: Ino, caller: Caller = ROOT_CALLER) -> None:
        if self.read_only:
            raise ReadOnly("the workspace is mounted read-only")
        for p in parents:
            if checkpointfs.is_virtual(p):
                raise checkpointfs.read_only()
            if internal.is_internal(p):
                raise PermissionDenied("internal files cannot be changed")
            if p == TRASH_INO and caller.uid != 0:
                raise PermissionDenied("the trash is read-only", hint="only root may restore from .trash")

    @staticmethod
    def _new_name(parent: Ino, name: str) -> None:
        """No new entry of the root may take an internal name: a real ``.stats`` there was
        shadowed by the internal file and could be neither read nor removed by name."""
        if parent == ROOT_INO and name == internal.CHECKPOINTS_NAME:  # it exists, read-only
            raise Exists(f"{name} exists: it holds the workspace's checkpoints, read-only", path=name,
                         hint="choose another name")
        if parent == ROOT_INO and name in internal.RESERVED_NAMES:
            raise PermissionDenied(f"{name} is reserved at the workspace root", path=name,
                                   hint="choose another name")

    def _compaction_hint(self, ino: Ino, index: int, urgency: int) -> None:
        self.on_compaction_hint(ino, index, urgency)  # looked up per call: maintenance sets it later

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

    def _handle(self, fh: int) -> Handle:
        h = self._handles.get(fh)
        if h is None:
            raise error_for("EBADF", "bad file handle")
        return h

    def handle_ino(self, fh: int) -> Ino:
        """The inode an open handle refers to (EBADF for an unknown handle); frontends that get
        only a handle back, such as FUSE's fstat/ftruncate, use it."""
        return self._handle(fh).ino

    def handle_is_dir(self, fh: int) -> bool:
        """Whether the handle is an open directory (``open(2)`` allows it read-only; reading it is
        EISDIR, and Python's ``open`` refuses it at once)."""
        return self._handle(fh).is_dir

    def handle_gen(self, fh: int) -> int:
        """The inode's change counter as the open saw it: equal counters at two opens mean the
        data did not change in between (the FUSE frontend then keeps the kernel's page cache)."""
        return self._handle(fh).gen

    def _writer(self, st: InodeState) -> FileWriter:
        if st.writer is None:
            setting = self.meta.setting
            if setting is None:  # Volume refuses an engine that did not load; a bare VFS may not
                raise ArtifactsError("the metadata engine has not read the volume's setting",
                                     hint="call meta.load() (or meta.format()) before writing")
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
        self.inodes.state(ino).adopt(attr, chunk=None if append or chunk < 0 else chunk)
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
            if checkpointfs.is_virtual(ino):
                writable = flags & _ACCMODE != os.O_RDONLY or flags & os.O_TRUNC
                cf, attr = self.checkpoint_tree.open(ino, bool(writable))
                fh = self._new_handle(ino, flags, caller, cf)
                self._handles[fh].gen, self._handles[fh].is_dir = attr.gen, attr.is_dir
                return fh
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
            self._new_name(parent, name)
            ino, attr, created = self.meta.create(parent, check_name(name), mode, caller,
                                                  exclusive=bool(flags & os.O_EXCL), register_open=True)
            if not created:  # an existing file: open it as open(2) would (access checked)
                attr = self.meta.open(ino, flags & ~os.O_TRUNC, caller)
            fh = self._opened(ino, attr, flags, caller)
            return fh, ino, self.inodes.preview(ino, attr)

    def _opened(self, ino: Ino, attr: Attr, flags: int, caller: Caller) -> int:
        st = self.inodes.state(ino)
        with st.lock:
            if st.gen != attr.gen and not st.dirty:
                st.adopt(attr)
            st.handles += 1
        fh = self._new_handle(ino, flags, caller)
        h = self._handles[fh]
        h.gen = attr.gen
        h.is_dir = attr.is_dir
        if flags & os.O_TRUNC and flags & _ACCMODE != os.O_RDONLY and attr.length:
            try:
                self.truncate(ino, 0, caller=caller)
            except BaseException:
                self.release(fh)
                raise
        elif flags & _ACCMODE != os.O_WRONLY and self.whole_files.wanted(attr.length):
            self.whole_files.start(lambda: self.reader.prefetch(st, 0, attr.length))
        return fh

    def _new_handle(self, ino: Ino, flags: int, caller: Caller, ih: internal.ReadHandle | None = None) -> int:
        fh = next(self._fhs)
        cfg = self.config
        self._handles[fh] = Handle(fh, ino, flags, caller,
                                   Readahead(cfg.readahead_min, cfg.readahead_max,
                                             block_size=self.chunks.block_size), ih)
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
            st = self.inodes.state(h.ino)
            if h.readahead is not None:
                self.whole_files.record(h.readahead.read_whole(st.length))
            try:
                if h.writable:
                    st.flush()
            except ArtifactsError as e:
                log.log(logging.DEBUG if isinstance(e, NoSpace) else logging.WARNING,
                        "data of inode %d could not be stored at close: %s", h.ino, e)
                if st.writer is not None:
                    st.writer.abort()
            finally:
                with st.lock:
                    st.handles -= 1
                    last = st.handles <= 0
                if last:
                    self.inodes.drop_if_idle(st)
                self._queue_close(h.ino)

    # -- data ----------------------------------------------------------------------------------

    def read(self, fh: int, offset: int, size: int) -> bytes:
        data = self.read_buffer(fh, offset, size)
        return data if isinstance(data, bytes) else bytes(data)

    def read_buffer(self, fh: int, offset: int, size: int) -> bytes | memoryview:
        """:meth:`read` without the final copy: a read inside one cached block comes back as a
        read-only view of the cache's buffer (frontends copy it into their reply once)."""
        h = self._handle(fh)
        if h.internal is not None and internal.is_internal(h.ino):
            return h.internal.read(offset, size)  # not logged: .accesslog would log its own reads forever
        if h.internal is not None:
            with self._op("read", h.ino, offset, size, caller=h.caller):
                if h.is_dir:
                    raise IsADirectory("cannot read a directory as a file")
                if offset < 0 or size < 0:
                    raise InvalidArgument("negative offset or size")
                got = h.internal.read(offset, size)
                self.metrics.inc("read_bytes", len(got))
                return got
        with self._op("read", h.ino, offset, size, caller=h.caller):
            if not h.readable:
                raise error_for("EBADF", "file not open for reading")
            if h.is_dir:
                raise IsADirectory("cannot read a directory as a file")
            if offset < 0 or size < 0:
                raise InvalidArgument("negative offset or size")
            st = self.inodes.state(h.ino)
            if st.dirty:
                st.flush()
            if st.stale and not st.dirty:  # another host changed it: take its length first
                epoch = st.epoch
                try:
                    st.refreshed(self.meta.getattr(h.ino), epoch)
                except NotFound:
                    pass  # freed: it was not open anywhere after all; read what was seen
            length = st.length
            if offset >= length or size == 0:
                return b""
            size = min(size, length - offset)
            whole, dense = True, False
            if h.readahead is not None:
                advice = h.readahead.advise(offset, size, length)
                if advice is not None:
                    self.reader.prefetch(st, *advice)
                whole, dense = h.readahead.sequential, h.readahead.dense
            data = self.reader.read(st, offset, size, whole=whole, dense=dense)
            self.metrics.inc("read_bytes", len(data))
            return data

    def forget_view(self, ino: Ino, index: int) -> None:
        """Drop a cached chunk view (after compaction replaced the chunk's slices)."""
        st = self.inodes.get(ino)
        if st is not None:
            st.views.pop(index, None)

    def write(self, fh: int, offset: int, data: bytes | bytearray | memoryview) -> int:
        h = self._handle(fh)
        with self._op("write", h.ino, offset, len(data), caller=h.caller):
            if not h.writable:
                raise error_for("EBADF", "file not open for writing")
            if self.read_only:
                raise ReadOnly("the workspace is mounted read-only")
            if offset < 0:
                raise InvalidArgument("negative offset")
            st = self.inodes.state(h.ino)
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
            self.inodes.flush(h.ino)

    def fsync(self, fh: int, datasync: bool = False) -> None:
        h = self._handle(fh)
        with self._op("fsync", h.ino, caller=h.caller):
            self.inodes.flush(h.ino)

    def flush_due(self) -> None:
        """Commit dirty files whose data waited past ``flush_interval`` or has been idle past
        ``flush_idle`` (the background tick). A failure is remembered by the writer and raised by
        the file's next flush or close."""
        now = time.monotonic()
        for st in self.inodes.all():
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
        for st in self.inodes.all():
            try:
                st.flush()
            except ArtifactsError as e:
                    first = first or e
        if first is not None:
            raise first

    def truncate(self, ino: Ino, length: int, *, caller: Caller = ROOT_CALLER) -> Attr:
        with self._op("truncate", ino, length, caller=caller):
            self._writable(ino)
            if length < 0:
                raise InvalidArgument("negative length")
            st = self.inodes.state(ino)
            with st.lock:
                st.flush()
                attr = self.meta.truncate(ino, length, caller=caller)
                st.adopt(attr)
                return attr

    def fallocate(self, ino: Ino, mode: int, offset: int, length: int) -> Attr:
        with self._op("fallocate", ino, mode, offset, length):
            self._writable(ino)
            st = self.inodes.state(ino)
            with st.lock:
                st.flush()
                attr = self.meta.fallocate(ino, mode, offset, length)
                st.adopt(attr)
                return attr

    def copy_file_range(self, fh_in: int, off_in: int, fh_out: int, off_out: int, length: int) -> int:
        src, dst = self._handle(fh_in), self._handle(fh_out)
        with self._op("copy_file_range", src.ino, off_in, dst.ino, off_out, length):
            self._writable(dst.ino)
            if checkpointfs.is_virtual(src.ino):  # cp falls back to read and write
                raise error_for("EXDEV", "a checkpoint's blocks are copied by reading them")
            self.inodes.flush(src.ino)
            self.inodes.flush(dst.ino)
            copied, attr = self.meta.copy_file_range(src.ino, off_in, dst.ino, off_out, length)
            self.inodes.state(dst.ino).adopt(attr)
            return copied
