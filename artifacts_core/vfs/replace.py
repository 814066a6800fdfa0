"""Whole-content operations for the agent API: replace, small append, snapshot read, shared copy.

``ContentOps`` is a mixin of ``VFS``. Each method is the data half of one agent operation and
keeps this client's per-inode state (lengths, cached chunk views, dirty writers) coherent:

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
- ``read_named`` / ``read_snapshot``: the attr and the chunk records (with inline bytes) come
  from one call per chunk (by name for the first: ``meta.read_entry``), so a file of one chunk --
  every file writeFile makes -- is read at one instant: old or new content, never a mix.
- ``share_copy``: copy_file_range by sharing slices (no data copied).

Local dirty data of the inode (a path-API handle on this client) is committed first, so these
operations order after what this process wrote before.
"""

from __future__ import annotations

import errno

from artifacts_core.errors import ArtifactsError
from artifacts_core.meta import slices as slicemath
from artifacts_core.meta.attrs import Attr
from artifacts_core.meta.data import InlineRefused, chunk_length
from artifacts_core.meta.slices import COMPACT_NONE
from artifacts_core.types import CHUNK_SIZE, ROOT_CALLER, Caller, Ino

#: Errors after which a refused swap or commit certainly did not reference the new slice, so
#: its uploaded blocks are deleted at once (anything else -- a timeout -- leaves them to gc).
_DEFINITE = {errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EACCES, errno.EPERM, errno.EEXIST,
             errno.ESTALE, errno.ELOOP, errno.EINVAL, errno.EFBIG, errno.ENOSPC, errno.EDQUOT,
             errno.ENAMETOOLONG}


class ContentOps:
    """Mixin of ``VFS``: expects ``meta``, ``chunks``, ``_state``, ``_inodes``, ``_op``,
    ``_writable`` and ``_read_view`` (files.py)."""

    def _flush_local(self, ino: Ino) -> None:
        st = self._inodes.get(ino)
        if st is not None and st.writer is not None:
            st.writer.flush()

    def _adopt(self, ino: Ino, attr: Attr) -> None:
        """A whole-content change of ``ino`` happened: drop cached views, take the new length."""
        st = self._inodes.get(ino)
        if st is not None:
            with st.lock:
                st.views.clear()
                st.length = attr.length
                st.gen = attr.gen

    def _store_s3(self, data: bytes):
        writer = self.chunks.writer(self.meta.new_slice_id())
        try:
            writer.write(0, data)
            return writer.slice_id, writer.finish()
        except BaseException:
            writer.abort()
            raise

    def _drop_if_definite(self, e: ArtifactsError, slice_id: int, size: int) -> None:
        if e.errno in _DEFINITE:
            self.chunks.remove(slice_id, size)

    def replace_content(self, parent: Ino, name: str, data: bytes, *, create: bool = True,
                        expect=None, perm: int = 0o644,
                        caller: Caller = ROOT_CALLER) -> tuple[Ino, Attr, bool]:
        """Make ``parent/name`` hold exactly ``data`` (at most one chunk), keeping its inode.
        Returns (ino, attr, created). Errors: see ``meta.replace_entry``."""
        with self._op("replace_content", parent, name, len(data), caller=caller):
            self._writable(parent, caller=caller)
            if len(data) > CHUNK_SIZE:
                raise ArtifactsError("content larger than one chunk", errno=errno.EFBIG, path=name)
            meta = self.meta
            result = None
            if not data:
                result = meta.replace_entry(parent, name, 0, 0, create=create, expect=expect,
                                              perm=perm, caller=caller)
            elif len(data) <= meta.setting.inline_limit and not meta._inline_pressure:
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
            self._adopt(ino, attr)
            self.metrics.inc("write_bytes", len(data))
            return result

    def append(self, parent: Ino, name: str, data: bytes, *, create: bool = True, expect=None,
               perm: int = 0o644, caller: Caller = ROOT_CALLER) -> tuple[Ino, Attr, int, bool]:
        """Append ``data`` to ``parent/name`` as one append slice (split only at a chunk boundary,
        by Redis), creating the file when missing. Returns (ino, attr, file offset where the data
        landed, created). Errors: see ``meta.append_entry``."""
        with self._op("append", parent, name, len(data), caller=caller):
            self._writable(parent, caller=caller)
            if not data:
                raise ArtifactsError("nothing to append", errno=errno.EINVAL, path=name)
            if len(data) > CHUNK_SIZE:
                raise ArtifactsError("append larger than one chunk", errno=errno.EFBIG, path=name)
            meta = self.meta
            for st in list(self._inodes.values()):  # order after this client's own dirty writes
                if st.writer is not None and st.writer.state.value != "clean":
                    st.writer.flush()
            result = None
            if len(data) <= meta.setting.inline_limit and not meta._inline_pressure:
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
                self.on_compaction_hint(ino, max(0, commit.attr.length - 1) // CHUNK_SIZE,
                                        commit.compaction)
            self._adopt(ino, commit.attr)
            self.metrics.inc("write_bytes", len(data))
            return ino, commit.attr, commit.offset, created

    def read_named(self, parent: Ino, name: str, offset: int = 0, size: int | None = None,
                   caller: Caller = ROOT_CALLER) -> tuple[Ino, Attr, bytes]:
        """Resolve ``parent/name`` and read ``size`` bytes from ``offset`` (to the end when None):
        one round trip for a file within one chunk. A directory reads as b"" (the caller checks
        ``attr``); a symlink raises EntryIsSymlink."""
        with self._op("read_named", parent, name, offset, size, caller=caller):
            index = offset // CHUNK_SIZE
            ino, attr, records, inline = self.meta.read_entry(parent, name, index, caller=caller)
            st = self._inodes.get(ino)
            if st is not None and st.writer is not None and st.writer.state.value != "clean":
                return (ino, *self.read_snapshot(ino, offset, size))  # own dirty data first
            if not attr.is_file:
                return ino, attr, b""
            return (ino, *self.read_snapshot(ino, offset, size, first=(attr, records, inline)))

    def read_snapshot(self, ino: Ino, offset: int = 0, size: int | None = None, *,
                      first=None) -> tuple[Attr, bytes]:
        """The file's attr and ``size`` bytes from ``offset`` (to the end when None), the first
        chunk's records and attr fetched together (one round trip per chunk; ``first`` is that
        chunk's (attr, records, inline) when the caller already has it)."""
        from artifacts_core.vfs.files import ChunkView

        with self._op("read_snapshot", ino, offset, size):
            if first is None:
                self._flush_local(ino)
            attr = None
            out = bytearray()
            pos = offset
            while True:
                index, inner = divmod(pos, CHUNK_SIZE)
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
                    view = ChunkView(slicemath.build_view(records, chunk_length(attr.length, index)),
                                     inline)
                    urgency = slicemath.needs_compaction(len(records), view.segments)
                    if urgency and not self.read_only:
                        self.on_compaction_hint(ino, index, urgency)
                    n = min(end - pos, CHUNK_SIZE - inner)
                    try:
                        out += self._read_view(view, inner, n)
                        break
                    except ArtifactsError as e:
                        if attempt or e.errno != errno.ENOENT:
                            raise  # a slice compacted away between our calls: read again once
                pos += n
                if pos >= end:
                    self.metrics.inc("read_bytes", len(out))
                    return attr, bytes(out)

    def share_copy(self, src: Ino, dst: Ino, length: int, *, caller: Caller = ROOT_CALLER) -> Attr:
        """Copy ``length`` bytes of ``src`` into ``dst`` at 0 by sharing slices."""
        with self._op("share_copy", src, dst, length, caller=caller):
            self._writable(caller=caller)
            self._flush_local(src)
            self._flush_local(dst)
            _, attr = self.meta.copy_file_range(src, 0, dst, 0, length, caller=caller)
            if attr is None:
                attr = self.meta.getattr(dst)
            self._adopt(dst, attr)
            return attr
