"""``VFS``: the inode API every frontend uses (the FUSE adapter calls it directly; the path API and
the agent API resolve paths through its ``resolver`` and then call it).

It owns what is per client: open handles, each inode's dirty data (``FileWriter``) and cached
chunk views, the internal files, the access log and counters, and the background thread. It
delegates the namespace to the metadata engine (one Redis round trip per operation) and the bytes
to the chunk store. Namespace methods here stay thin: check what only the client knows (internal
files, the read-only flag, the trash), call the engine once, keep the local caches coherent --
including the path resolver's entry cache, which every unlink, rmdir and rename updates whichever
frontend made it (``resolve.py``).

Other hosts' changes arrive through ``self.changes`` (``changes.py``), the public feed the
frontends listen to; the VFS is its first listener and drops what it cached of what changed:
entries of the resolver, chunk views and lengths of inodes.

Concurrency: thread-safe. The inode table has its own lock; each inode's writer has its own lock,
so writes to different files never wait on each other.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable

from artifacts_core.chunk.store import ChunkStore
from artifacts_core.config import VolumeConfig
from artifacts_core.errors import InvalidArgument, PermissionDenied, ReadOnly, error_for
from artifacts_core.meta.engine import RedisMetaEngine
from artifacts_core.metrics import Metrics
from artifacts_core.paths import check_name
from artifacts_core.types import (
    RENAME_EXCHANGE,
    RENAME_NOREPLACE,
    ROOT_CALLER,
    ROOT_INO,
    TRASH_INO,
    Attr,
    Caller,
    Ino,
)
from artifacts_core.vfs import checkpointfs, internal
from artifacts_core.vfs.changes import Change, ChangeFeed
from artifacts_core.vfs.files import FileOps
from artifacts_core.vfs.replace import ContentOps
from artifacts_core.vfs.resolve import Resolver

log = logging.getLogger("artifacts.vfs")


class VFS(FileOps):
    """The inode API over one metadata engine and one chunk store (open files: ``FileOps``)."""

    def __init__(self, meta: RedisMetaEngine, chunks: ChunkStore, config: VolumeConfig, *,
                 read_only: bool = False, metrics: Metrics | None = None,
                 describe_config: Callable[[], str] | None = None) -> None:
        super().__init__(meta, chunks, config, read_only=read_only, metrics=metrics or Metrics(),
                         describe_config=describe_config or (lambda: "{}"))
        self.content = ContentOps(meta, chunks, self.inodes, self.reader, hint=self._compaction_hint)
        #: Other hosts' changes as they happen (public: frontends add their listeners here).
        self.changes = ChangeFeed(meta, metrics=self.metrics)
        self.resolver = Resolver(self, config.entry_ttl, trusted=lambda: self.changes.subscribed)
        self.changes.add_listener(self._on_change, own=False)

    def _on_change(self, change: Change) -> None:
        """The VFS's own listener (the first: its caches are right before a frontend's listener
        asks again): another host changed something this client may have cached."""
        if change.kind == "all":
            self.resolver.forget_all()
            self.inodes.invalidate(None)
            return
        if change.kind in ("entry", "rename"):
            self.resolver.forget(change.parent, change.name.decode("utf-8", "surrogateescape"))
            if change.kind == "rename":
                self.resolver.forget(change.new_parent, change.new_name.decode("utf-8", "surrogateescape"))
        self.inodes.invalidate(change.ino)  # its attributes (links, times) or data changed

    def close(self) -> None:
        """Stop the whole-file fetches started at open (the volume closes; idempotent)."""
        self.whole_files.close()

    # -- lookups and attributes ----------------------------------------------------------------

    def lookup(self, parent: Ino, name: str, caller: Caller = ROOT_CALLER) -> tuple[Ino, Attr]:
        with self._op("lookup", parent, name, caller=caller):
            if parent == ROOT_INO:
                f = internal.BY_NAME.get(name)
                if f is not None:
                    return f.ino, internal.internal_attr(f)
                if name == internal.TRASH_NAME:
                    return TRASH_INO, self.meta.getattr(TRASH_INO)
                if name == internal.CHECKPOINTS_NAME:
                    return checkpointfs.CHECKPOINTS_INO, self.checkpoint_tree.getattr(checkpointfs.CHECKPOINTS_INO)
            if checkpointfs.is_virtual(parent):
                return self.checkpoint_tree.lookup(parent, name)
            ino, attr = self.meta.lookup(parent, name, caller)
            return ino, self.inodes.preview(ino, attr)

    def getattr(self, ino: Ino) -> Attr:
        with self._op("getattr", ino):
            f = internal.BY_INO.get(ino)
            if f is not None:
                return internal.internal_attr(f)
            if checkpointfs.is_virtual(ino):
                return self.checkpoint_tree.getattr(ino)
            return self.inodes.preview(ino, self.meta.getattr(ino))

    def setattr(self, ino: Ino, *, mode: int | None = None, uid: int | None = None, gid: int | None = None,
                size: int | None = None, atime_ns: int | None = None, mtime_ns: int | None = None,
                atime_now: bool = False, mtime_now: bool = False, caller: Caller = ROOT_CALLER) -> Attr:
        with self._op("setattr", ino, caller=caller):
            self._writable(ino, caller=caller)
            attr = None
            if size is not None:
                attr = self.truncate(ino, size, caller=caller)
            if any(v is not None for v in (atime_ns, mtime_ns)) or atime_now or mtime_now:
                # Commit data written before utimens first: its commit stamps mtime, and it
                # must not overwrite the times set now (cp -a, tar, rsync set them last).
                self.inodes.flush(ino)
            if any(v is not None for v in (mode, uid, gid, atime_ns, mtime_ns)) or atime_now or mtime_now:
                attr = self.meta.setattr(ino, mode=mode, uid=uid, gid=gid, atime_ns=atime_ns,
                                         mtime_ns=mtime_ns, atime_now=atime_now, mtime_now=mtime_now,
                                         caller=caller)
            return self.inodes.preview(ino, attr if attr is not None else self.meta.getattr(ino))

    def access(self, ino: Ino, mask: int, caller: Caller = ROOT_CALLER) -> None:
        with self._op("access", ino, mask, caller=caller):
            if mask & 2 and checkpointfs.is_virtual(ino):
                raise checkpointfs.read_only()
            if internal.is_internal(ino) or checkpointfs.is_virtual(ino):
                return  # the mount's kernel checks permissions from the attributes (default_permissions)
            if mask & 2 and self.read_only:
                raise ReadOnly("the workspace is mounted read-only")
            self.meta.access(ino, mask, caller)

    # -- namespace -----------------------------------------------------------------------------

    def mknod(self, parent: Ino, name: str, mode: int, rdev: int = 0,
              caller: Caller = ROOT_CALLER) -> tuple[Ino, Attr]:
        with self._op("mknod", parent, name, oct(mode), caller=caller):
            self._writable(parent, caller=caller)
            self._new_name(parent, name)
            return self.meta.mknod(parent, check_name(name), mode, rdev, caller)

    def mkdir(self, parent: Ino, name: str, mode: int, caller: Caller = ROOT_CALLER) -> tuple[Ino, Attr]:
        with self._op("mkdir", parent, name, oct(mode), caller=caller):
            self._writable(parent, caller=caller)
            self._new_name(parent, name)
            return self.meta.mkdir(parent, check_name(name), mode, caller)

    def clone(self, src: Ino, parent: Ino, name: str, caller: Caller = ROOT_CALLER) -> tuple[Ino, int]:
        """Copy file or tree ``src`` to ``parent/name`` in metadata only, sharing its blocks, in
        one atomic call (docs/history.md); this client's unflushed writes to the tree go first.
        Returns (new inode, inodes cloned)."""
        with self._op("clone", src, parent, name, caller=caller):
            self._writable(parent, caller=caller)
            if checkpointfs.is_virtual(src):
                raise error_for(errno.EXDEV, "a file in .checkpoints cannot be cloned",
                                hint="copy it out by reading it, or restore the checkpoint")
            self._new_name(parent, name)
            self.inodes.flush_dirty()
            return self.meta.clone(src, parent, check_name(name), caller)

    def symlink(self, parent: Ino, name: str, target: str, caller: Caller = ROOT_CALLER) -> tuple[Ino, Attr]:
        with self._op("symlink", parent, name, target, caller=caller):
            self._writable(parent, caller=caller)
            self._new_name(parent, name)
            if not target or "\0" in target or len(target.encode("utf-8", "surrogateescape")) > 4096:
                raise InvalidArgument("invalid symlink target", path=name)
            return self.meta.symlink(parent, check_name(name), target, caller)

    def readlink(self, ino: Ino) -> str:
        with self._op("readlink", ino):
            if checkpointfs.is_virtual(ino):
                return self.checkpoint_tree.readlink(ino)
            return self.meta.readlink(ino).decode("utf-8", "surrogateescape")

    def link(self, ino: Ino, new_parent: Ino, new_name: str, caller: Caller = ROOT_CALLER) -> Attr:
        with self._op("link", ino, new_parent, new_name, caller=caller):
            self._writable(new_parent, ino, caller=caller)
            self._new_name(new_parent, new_name)
            return self.meta.link(ino, new_parent, check_name(new_name), caller)

    def unlink(self, parent: Ino, name: str, caller: Caller = ROOT_CALLER) -> None:
        with self._op("unlink", parent, name, caller=caller):
            if parent == ROOT_INO and name == internal.CHECKPOINTS_NAME:
                raise checkpointfs.read_only(name)
            if parent == ROOT_INO and (name in internal.BY_NAME or name == internal.TRASH_NAME):
                raise PermissionDenied("internal files cannot be removed", path=name)
            self._writable(parent, caller=caller)
            try:
                self.meta.unlink(parent, name, caller)
            finally:
                self.resolver.forget(parent, name)

    def rmdir(self, parent: Ino, name: str, caller: Caller = ROOT_CALLER) -> None:
        with self._op("rmdir", parent, name, caller=caller):
            if parent == ROOT_INO and name == internal.TRASH_NAME:
                raise PermissionDenied("the trash cannot be removed", path=name)
            if parent == ROOT_INO and name == internal.CHECKPOINTS_NAME:
                raise checkpointfs.read_only(name)
            self._writable(parent, caller=caller)
            try:
                self.meta.rmdir(parent, name, caller)
            finally:
                self.resolver.forget(parent, name)

    def rename(self, parent: Ino, name: str, new_parent: Ino, new_name: str, flags: int = 0,
               caller: Caller = ROOT_CALLER) -> None:
        with self._op("rename", parent, name, new_parent, new_name, flags, caller=caller):
            for p, n in ((parent, name), (new_parent, new_name)):
                if p == ROOT_INO and n == internal.CHECKPOINTS_NAME:
                    raise checkpointfs.read_only(n)
                if p == ROOT_INO and (n in internal.BY_NAME or n == internal.TRASH_NAME):
                    raise PermissionDenied("internal files cannot be renamed", path=n)
            if flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE) or flags == RENAME_NOREPLACE | RENAME_EXCHANGE:
                raise InvalidArgument("unsupported rename flags")
            self._writable(parent, new_parent, caller=caller)
            try:
                self.meta.rename(parent, name, new_parent, check_name(new_name), flags, caller)
            except BaseException:
                self.resolver.forget(parent, name)
                self.resolver.forget(new_parent, new_name)
                raise
            self.resolver.moved(parent, name, new_parent, new_name, exchange=flags == RENAME_EXCHANGE)

    def readdir(self, ino: Ino, cursor: int = 0, count: int = 1000, *, plus: bool = False,
                caller: Caller = ROOT_CALLER):
        """One page of entries ``(name, ino, attr-or-type)`` and the next cursor (0 when done).
        The root's first page also lists the internal files and ``.trash`` (not ``.checkpoints``:
        reachable by name only). A directory in ``.checkpoints`` comes in one page."""
        with self._op("readdir", ino, cursor, caller=caller):
            if checkpointfs.is_virtual(ino):
                return (self.checkpoint_tree.readdir(ino, plus=plus) if cursor == 0 else []), 0
            page, nxt = self.meta.readdir(ino, cursor, count, caller, plus=plus)
            entries = [(e.name.decode("utf-8", "surrogateescape"), e.ino, e.attr if plus else e.type)
                       for e in page]
            if ino == ROOT_INO and cursor == 0:
                extra = [(f.name, f.ino, internal.internal_attr(f) if plus else f.mode >> 12)
                         for f in internal.BY_NAME.values()]
                trash_attr = self.meta.getattr(TRASH_INO)
                extra.append((internal.TRASH_NAME, TRASH_INO, trash_attr if plus else trash_attr.type))
                entries = [*extra, *entries]
            return entries, nxt

    def statfs(self):
        with self._op("statfs"):
            return self.meta.statfs()

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

    # -- xattrs --------------------------------------------------------------------------------

    def getxattr(self, ino: Ino, name: str) -> bytes:
        with self._op("getxattr", ino, name):
            if checkpointfs.is_virtual(ino):
                value = self.checkpoint_tree.xattrs(ino).get(name.encode("utf-8", "surrogateescape"))
                if value is None:
                    raise error_for(errno.ENODATA, "no such attribute")
                return value
            if internal.is_internal(ino):
                raise error_for(errno.ENODATA, "no such attribute")
            return self.meta.getxattr(ino, name)

    def setxattr(self, ino: Ino, name: str, value: bytes, flags: int = 0, caller: Caller = ROOT_CALLER) -> None:
        with self._op("setxattr", ino, name, caller=caller):
            self._writable(ino, caller=caller)
            self.meta.setxattr(ino, name, value, flags, caller)

    def listxattr(self, ino: Ino) -> list[str]:
        with self._op("listxattr", ino):
            if internal.is_internal(ino):
                return []
            if checkpointfs.is_virtual(ino):
                return [n.decode("utf-8", "surrogateescape") for n in sorted(self.checkpoint_tree.xattrs(ino))]
            return [n.decode("utf-8", "surrogateescape") for n in self.meta.listxattr(ino)]

    def removexattr(self, ino: Ino, name: str, caller: Caller = ROOT_CALLER) -> None:
        with self._op("removexattr", ino, name, caller=caller):
            self._writable(ino, caller=caller)
            self.meta.removexattr(ino, name, caller)

    # -- whole-content operations (the agent API's data path; ``replace.py``) --------------------

    def replace_content(self, parent: Ino, name: str, data: bytes, *, create: bool = True,
                        expect: tuple[int, int] | str | None = None, perm: int = 0o644,
                        caller: Caller = ROOT_CALLER) -> tuple[Ino, Attr, bool]:
        """Make ``parent/name`` hold exactly ``data`` (at most one chunk), keeping its inode.
        Returns (ino, attr, created). ``expect``: None, ``errors.ABSENT`` or a version."""
        with self._op("replace_content", parent, name, len(data), caller=caller):
            self._writable(parent, caller=caller)
            self._new_name(parent, name)
            result = self.content.replace(parent, name, data, create=create, expect=expect, perm=perm,
                                          caller=caller)
            self.metrics.inc("write_bytes", len(data))
            return result

    def append(self, parent: Ino, name: str, data: bytes, *, create: bool = True,
               expect: tuple[int, int] | None = None, perm: int = 0o644, caller: Caller = ROOT_CALLER) -> tuple[Ino, Attr, int, bool]:
        """Append ``data`` to ``parent/name`` as one append slice, creating the file when missing.
        Returns (ino, attr, file offset where the data landed, created)."""
        with self._op("append", parent, name, len(data), caller=caller):
            self._writable(parent, caller=caller)
            self._new_name(parent, name)
            result = self.content.append(parent, name, data, create=create, expect=expect, perm=perm,
                                         caller=caller)
            self.metrics.inc("write_bytes", len(data))
            return result

    def read_named(self, parent: Ino, name: str, offset: int = 0, size: int | None = None,
                   caller: Caller = ROOT_CALLER) -> tuple[Ino, Attr, bytes]:
        """Resolve ``parent/name`` and read ``size`` bytes from ``offset`` (to the end when None):
        one round trip for a file within one chunk; a symlink raises EntryIsSymlink."""
        with self._op("read_named", parent, name, offset, size, caller=caller):
            if checkpointfs.is_virtual(parent):
                return self.checkpoint_tree.read_named(parent, name, offset, size)
            ino, attr, data = self.content.read_named(parent, name, offset, size, caller)
            if data:
                self.metrics.inc("read_bytes", len(data))
            return ino, attr, data

    def read_snapshot(self, ino: Ino, offset: int = 0, size: int | None = None) -> tuple[Attr, bytes]:
        """The file's attr and ``size`` bytes from ``offset`` (to the end when None), each chunk
        read at one instant with its attr; this client's dirty data is committed first."""
        with self._op("read_snapshot", ino, offset, size):
            if checkpointfs.is_virtual(ino):
                return self.checkpoint_tree.read(ino, offset, size)
            attr, data = self.content.read_snapshot(ino, offset, size)
            if data:
                self.metrics.inc("read_bytes", len(data))
            return attr, data

    def share_copy(self, src: Ino, dst: Ino, length: int, *, caller: Caller = ROOT_CALLER) -> Attr:
        """Copy ``length`` bytes of ``src`` into ``dst`` at 0 by sharing slices (no data copied)."""
        with self._op("share_copy", src, dst, length, caller=caller):
            self._writable(dst, caller=caller)
            if checkpointfs.is_virtual(src):
                raise error_for(errno.EXDEV, "a checkpoint's blocks are copied by reading them")
            return self.content.share_copy(src, dst, length, caller=caller)
