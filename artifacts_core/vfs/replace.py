"""Whole-content operations for the agent API: replace, small append, snapshot read, shared copy.

``ContentOps`` is owned by the VFS (``vfs.content``), which exposes each operation as a public
method (``vfs.replace_content``, ``vfs.append``, ...) adding its access-log line and the
read-only checks. Each is the data half of one agent operation and keeps this client's per-inode
state (``InodeTable``: lengths, cached chunk views, dirty writers) coherent:

- ``replace_content``: writeFile. The new content is stored first -- inline (it travels in the
  swap call: one round trip, no S3 request) when it fits the volume's inline limit, else as one
  S3 slice through ``chunks.writer`` (blocks uploaded before the swap) -- then
  ``meta.replace_entry`` swaps it in and keeps the inode (``lua/26_replace.lua``). A slice the
  swap refused for a definite reason is deleted again; after an ambiguous failure (a timeout)
  the blocks stay, since the swap may have happened (gc finds true orphans).
- ``append``: appendFile, by name. Small data is one inline *append slice* placed at the file's
  length by Redis (``meta.append_entry``: name resolution, creation of a missing file, the
  version check and the commit in one call); larger data (or inline refused) is stored in S3
  first and committed the same way. Concurrent appends from threads, processes and hosts land
  whole.
  When the commit reports a long slice list (``slices.needs_compaction``), the chunk is handed
  to the volume's maintenance (``on_compaction_hint``): queued for its background thread at 100
  records (the append returns at once, its write path stays one inline commit), compacted before
  returning past 1000. A log appended to forever stays a few records to read. Reads hint the same
  way.
- ``read_named``: the attr and the chunk records (with inline bytes) come from one call per chunk
  (by name for the first: ``meta.read_entry``; then ``Reader.snapshot``), so a file of one chunk
  -- every file writeFile makes -- is read at one instant: old or new content, never a mix.
- ``share_copy``: copy_file_range by sharing slices (no data copied).

Local dirty data of the inode (a path-API handle on this client) is committed first, so these
operations order after what this process wrote before.
"""

from __future__ import annotations

import errno

from artifacts_core.chunk.store import ChunkStore
from artifacts_core.errors import ArtifactsError
from artifacts_core.meta.data import InlineRefused
from artifacts_core.meta.engine import RedisMetaEngine
from artifacts_core.meta.slices import COMPACT_NONE
from artifacts_core.types import CHUNK_SIZE, ROOT_CALLER, Attr, Caller, Ino, SliceId
from artifacts_core.vfs.reader import CompactionHint, Reader
from artifacts_core.vfs.state import InodeTable

#: Errors after which a refused swap or commit certainly did not reference the new slice, so
#: its uploaded blocks are deleted at once (anything else -- a timeout -- leaves them to gc).
_DEFINITE = {errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EACCES, errno.EPERM, errno.EEXIST,
             errno.ESTALE, errno.ELOOP, errno.EINVAL, errno.EFBIG, errno.ENOSPC, errno.EDQUOT,
             errno.ENAMETOOLONG}


class ContentOps:
    def __init__(self, meta: RedisMetaEngine, chunks: ChunkStore, inodes: InodeTable, reader: Reader, *,
                 hint: CompactionHint) -> None:
        self.meta = meta
        self.chunks = chunks
        self.inodes = inodes
        self.reader = reader
        self._hint = hint

    def _store_s3(self, data: bytes) -> tuple[SliceId, int]:
        writer = self.chunks.writer(self.meta.new_slice_id())
        try:
            writer.write(0, data)
            return writer.slice_id, writer.finish()
        except BaseException:
            writer.abort()
            raise

    def _drop_if_definite(self, e: ArtifactsError, slice_id: SliceId, size: int) -> None:
        if e.errno in _DEFINITE:
            self.chunks.remove(slice_id, size)

    def replace(self, parent: Ino, name: str, data: bytes, *, create: bool,
                expect: tuple[int, int] | str | None,
                perm: int, caller: Caller = ROOT_CALLER) -> tuple[Ino, Attr, bool]:
        """Make ``parent/name`` hold exactly ``data`` (at most one chunk), keeping its inode.
        Returns (ino, attr, created). Errors: see ``meta.replace_entry``."""
        if len(data) > CHUNK_SIZE:
            raise ArtifactsError("content larger than one chunk", errno=errno.EFBIG, path=name)
        meta = self.meta
        result = None
        if not data:
            result = meta.replace_entry(parent, name, 0, 0, create=create, expect=expect,
                                          perm=perm, caller=caller)
        elif meta.inline_allowed(len(data)):
            try:
                result = meta.replace_entry(parent, name, meta.new_slice_id(), len(data),
                                              data=data, create=create, expect=expect,
                                              perm=perm, caller=caller)
            except InlineRefused:
                result = None
        if result is None:
            sid, size = self._store_s3(data)
            try:
                result = meta.replace_entry(parent, name, sid, size, create=create,
                                              expect=expect, perm=perm, caller=caller)
            except ArtifactsError as e:
                self._drop_if_definite(e, sid, size)
                raise
        ino, attr, _ = result
        self.inodes.adopt(ino, attr)
        return result

    def append(self, parent: Ino, name: str, data: bytes, *, create: bool,
               expect: tuple[int, int] | None, perm: int,
               caller: Caller = ROOT_CALLER) -> tuple[Ino, Attr, int, bool]:
        """Append ``data`` to ``parent/name`` as one append slice (split only at a chunk boundary,
        by Redis), creating the file when missing. Returns (ino, attr, file offset where the data
        landed, created). Errors: see ``meta.append_entry``."""
        if not data:
            raise ArtifactsError("nothing to append", errno=errno.EINVAL, path=name)
        if len(data) > CHUNK_SIZE:
            raise ArtifactsError("append larger than one chunk", errno=errno.EFBIG, path=name)
        meta = self.meta
        self.inodes.flush_dirty()  # order after this client's own dirty writes
        result = None
        if meta.inline_allowed(len(data)):
            try:
                result = meta.append_entry(parent, name, meta.new_slice_id(), len(data), data=data,
                                           create=create, expect=expect, perm=perm, caller=caller)
            except InlineRefused:
                result = None
        if result is None:
            sid, size = self._store_s3(data)
            try:
                result = meta.append_entry(parent, name, sid, size, create=create, expect=expect,
                                           perm=perm, caller=caller)
            except ArtifactsError as e:
                self._drop_if_definite(e, sid, size)
                raise
        ino, commit, created = result
        if commit.attr is None:
            raise ArtifactsError("the file was deleted", errno=errno.ENOENT, path=name)
        if commit.compaction != COMPACT_NONE and not commit.duplicate:
            # the volume's maintenance: queued at 100 records, at once past 1000
            self._hint(ino, max(0, commit.attr.length - 1) // CHUNK_SIZE, commit.compaction)
        self.inodes.adopt(ino, commit.attr)
        return ino, commit.attr, commit.offset, created

    def read_named(self, parent: Ino, name: str, offset: int, size: int | None,
                   caller: Caller = ROOT_CALLER) -> tuple[Ino, Attr, bytes]:
        """Resolve ``parent/name`` and read ``size`` bytes from ``offset`` (to the end when None):
        one round trip for a file within one chunk. A directory reads as b"" (the caller checks
        ``attr``); a symlink raises EntryIsSymlink."""
        index = offset // CHUNK_SIZE
        ino, attr, records, inline = self.meta.read_entry(parent, name, index, caller=caller)
        st = self.inodes.get(ino)
        if st is not None and st.dirty:
            return (ino, *self.read_snapshot(ino, offset, size))  # own dirty data first
        if not attr.is_file:
            return ino, attr, b""
        return (ino, *self.reader.snapshot(ino, offset, size, first=(attr, records, inline)))

    def read_snapshot(self, ino: Ino, offset: int, size: int | None) -> tuple[Attr, bytes]:
        """The file's attr and bytes at one instant per chunk, after this client's dirty data."""
        self.inodes.flush(ino)
        return self.reader.snapshot(ino, offset, size)

    def share_copy(self, src: Ino, dst: Ino, length: int, *, caller: Caller = ROOT_CALLER) -> Attr:
        """Copy ``length`` bytes of ``src`` into ``dst`` at 0 by sharing slices."""
        self.inodes.flush(src)
        self.inodes.flush(dst)
        _, attr = self.meta.copy_file_range(src, 0, dst, 0, length, caller=caller)
        if attr is None:
            attr = self.meta.getattr(dst)
        self.inodes.adopt(dst, attr)
        return attr
