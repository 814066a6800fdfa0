"""``.checkpoints/<name>/``: every checkpoint browsable read-only through the VFS, so a FUSE mount,
the path API and the agent API all see the same tree (docs/history.md).

Moving parts:

- ``.checkpoints`` is a reserved name at the workspace root, like ``.trash``. It is *hidden but
  reachable*: the root's listing does not show it (``find``, ``grep -r``, ``du``, ``cp -r`` and
  agents' recursive searches over the workspace would otherwise walk every checkpoint, N times
  the workspace), but a lookup of it works, so ``ls .checkpoints`` and ``cd .checkpoints/<name>``
  do — as ZFS's default ``snapdir=hidden``. Its listing is the live checkpoints, each a directory
  (mode 0555, owned by root, times = when it was taken);
- *virtual inode numbers*: the inode ``ino`` of checkpoint epoch ``e`` is
  ``VIRTUAL_BASE | e << EPOCH_SHIFT | ino`` — stateless, the same on every host and every call,
  distinct per checkpoint (the kernel's caches of one never answer for another or for the live
  file), and below the internal files' range. Hard links keep one inode per checkpoint;
- reads go through ``CheckpointReader`` (one ``af_ck_read`` per step: a key's version is resolved
  and read in one consistent call) and the VFS's block reader, so the same chunk store and caches
  serve them. An open file caches its chunk views: what a checkpoint holds never changes while it
  lives (a later write preserves the old version first);
- every write is EROFS (``ReadOnly``) with a hint to restore or copy the file out.

Invariant: nothing here writes to Redis or S3.
"""

from __future__ import annotations

import os
import stat
from typing import Any

from artifacts_core.errors import EntryIsSymlink, InvalidArgument, NotADirectory, NotFound, ReadOnly
from artifacts_core.meta import slices as slicemath
from artifacts_core.meta.data import chunk_length
from artifacts_core.meta.history import Checkpoint, CheckpointReader
from artifacts_core.types import CHUNK_SIZE, ROOT_INO, TYPE_DIR, TYPE_SYMLINK, Attr, Ino
from artifacts_core.vfs import internal
from artifacts_core.vfs.reader import Reader
from artifacts_core.vfs.state import ChunkView

#: The reserved root name under which checkpoints are browsed.
CHECKPOINTS_NAME = internal.CHECKPOINTS_NAME
#: The ``.checkpoints`` directory itself: an internal inode, next to ``.stats`` and friends.
CHECKPOINTS_INO = Ino(internal.INTERNAL_BASE + 4)
#: Bit 62 marks a checkpoint inode: real inode numbers (the ``nextinode`` counter) never get near.
VIRTUAL_BASE = 1 << 62
#: Low 38 bits: the real inode (2.7e11 inodes per workspace); the next 24: the epoch (1.6e7
#: checkpoints per workspace, one a minute for 30 years). The top epoch is left out so virtual
#: numbers stay below ``internal.INTERNAL_BASE``.
EPOCH_SHIFT = 38
MAX_EPOCH = (1 << 24) - 2
_INO_MASK = (1 << EPOCH_SHIFT) - 1
#: Attributes read per ``af_ck_read`` call when listing a directory: bounds one call's Redis time.
ATTR_BATCH = 1000
_READ_ONLY_HINT = "checkpoints are read-only: restore one, or copy a file out of it"


def is_virtual(ino: int) -> bool:
    """Whether ``ino`` is ``.checkpoints`` or an inode inside a checkpoint."""
    return ino == CHECKPOINTS_INO or VIRTUAL_BASE <= ino < internal.INTERNAL_BASE


def virtual(epoch: int, ino: int) -> Ino:
    if not 0 < epoch <= MAX_EPOCH or ino > _INO_MASK:
        raise InvalidArgument(f"inode {ino} of checkpoint epoch {epoch} has no browsable number")
    return Ino(VIRTUAL_BASE | epoch << EPOCH_SHIFT | ino)


def split(vino: int) -> tuple[int, Ino]:
    """(epoch, real inode) of a checkpoint inode."""
    return (vino - VIRTUAL_BASE) >> EPOCH_SHIFT, Ino(vino & _INO_MASK)


def read_only(what: str = "checkpoints") -> ReadOnly:
    return ReadOnly(f"{what} cannot be changed: checkpoints are read-only", hint=_READ_ONLY_HINT)


class CheckpointFile:
    """An open file of a checkpoint (the VFS handle's read-only reader)."""

    def __init__(self, reader: CheckpointReader, blocks: Reader, ino: Ino, attr: Attr) -> None:
        self.reader = reader
        self.blocks = blocks
        self.ino = ino
        self.attr = attr
        self.views: dict[int, ChunkView] = {}

    def view(self, index: int) -> ChunkView:
        got = self.views.get(index)
        if got is None:
            records, inline = self.reader.chunk(self.ino, index)
            segments = slicemath.build_view(records, chunk_length(self.attr.length, index))
            got = self.views[index] = ChunkView(segments, inline)
        return got

    def read(self, offset: int, size: int) -> bytes:
        end = min(self.attr.length, offset + size)
        out = bytearray()
        pos = offset
        while pos < end:
            index, inner = divmod(pos, CHUNK_SIZE)
            n = min(end - pos, CHUNK_SIZE - inner)
            out += self.blocks.read_view(self.view(index), inner, n)
            pos += n
        return bytes(out)

    def close(self) -> None:
        self.views.clear()


class CheckpointTree:
    """The VFS's ``.checkpoints`` namespace: lookups, attributes, listings and reads."""

    def __init__(self, meta: Any, blocks: Reader) -> None:
        self.meta = meta  # RedisMetaEngine (its history concern); typed loosely to avoid a cycle
        self.blocks = blocks

    # -- the directory of checkpoints ------------------------------------------------------------

    def _live(self) -> list[Checkpoint]:
        return [c for c in self.meta.checkpoint_list() if c.epoch <= MAX_EPOCH]

    @staticmethod
    def _dir_attr(ns: int, *, parent: Ino, nlink: int = 2, gen: int = 0) -> Attr:
        """``.checkpoints`` and a checkpoint's root: 0555, root's, times = when taken."""
        return Attr(mode=stat.S_IFDIR | 0o555, uid=0, gid=0, atime_ns=ns, mtime_ns=ns, ctime_ns=ns,
                    nlink=nlink, length=0, parent=parent, btime_ns=ns, gen=gen)

    def _root_attr(self, c: Checkpoint) -> Attr:
        return self._dir_attr(int(c.created * 1e9), parent=CHECKPOINTS_INO, gen=c.epoch)

    def _by_epoch(self, epoch: int) -> Checkpoint:
        for c in self._live():
            if c.epoch == epoch:
                return c
        raise NotFound("the checkpoint is gone (deleted)", hint="list them: ls .checkpoints")

    def reader(self, epoch: int) -> CheckpointReader:
        return self.meta.checkpoint_reader(epoch)

    # -- attributes ----------------------------------------------------------------------------

    def _mapped(self, epoch: int, attr: Attr) -> Attr:
        parent = virtual(epoch, attr.parent) if attr.parent else 0
        return Attr(mode=attr.mode, uid=attr.uid, gid=attr.gid, atime_ns=attr.atime_ns, mtime_ns=attr.mtime_ns,
                    ctime_ns=attr.ctime_ns, nlink=attr.nlink, length=attr.length, rdev=attr.rdev,
                    parent=parent, btime_ns=attr.btime_ns, gen=attr.gen, flags=attr.flags)

    def getattr(self, ino: Ino) -> Attr:
        if ino == CHECKPOINTS_INO:
            live = self._live()
            newest = max((int(c.created * 1e9) for c in live), default=0)
            return self._dir_attr(newest, parent=ROOT_INO, nlink=2 + len(live))
        epoch, real = split(ino)
        if real == ROOT_INO:
            return self._root_attr(self._by_epoch(epoch))
        attr = self.reader(epoch).attr(real)
        if attr is None:
            raise NotFound("no such file in the checkpoint")
        return self._mapped(epoch, attr)

    # -- names ---------------------------------------------------------------------------------

    def lookup(self, parent: Ino, name: str) -> tuple[Ino, Attr]:
        if parent == CHECKPOINTS_INO:
            for c in self._live():
                if c.name == name:
                    return virtual(c.epoch, ROOT_INO), self._root_attr(c)
            raise NotFound(f"no checkpoint named {name!r}", path=f"{CHECKPOINTS_NAME}/{name}",
                           hint="list them: ls .checkpoints, or `artifacts checkpoint list`")
        epoch, real = split(parent)
        reader = self.reader(epoch)
        hit = reader.lookup(real, os.fsencode(name))
        if hit is None:
            raise NotFound("no such file in the checkpoint", path=name)
        attr = reader.attr(hit[1])
        if attr is None:
            raise NotFound("no such file in the checkpoint", path=name)
        return virtual(epoch, hit[1]), self._mapped(epoch, attr)

    def readdir(self, ino: Ino, *, plus: bool) -> list[tuple[str, Ino, Attr | int]]:
        """Every entry of a directory, in one page (a checkpoint's directory never changes)."""
        if ino == CHECKPOINTS_INO:
            out: list[tuple[str, Ino, Attr | int]] = []
            for c in self._live():
                a = self._root_attr(c)
                out.append((c.name, virtual(c.epoch, ROOT_INO), a if plus else TYPE_DIR))
            return out
        epoch, real = split(ino)
        reader = self.reader(epoch)
        if self._attr_at(reader, real).type != TYPE_DIR:
            raise NotADirectory("not a directory")
        entries = sorted(reader.entries(real).items())
        if not plus:
            return [(os.fsdecode(n), virtual(epoch, child), typ) for n, (typ, child) in entries]
        inos = [child for _n, (_t, child) in entries]
        attrs: list[Attr | None] = []
        for i in range(0, len(inos), ATTR_BATCH):
            attrs += reader.attrs(inos[i:i + ATTR_BATCH])
        return [(os.fsdecode(n), virtual(epoch, child), self._mapped(epoch, a))
                for (n, (_t, child)), a in zip(entries, attrs, strict=True) if a is not None]

    @staticmethod
    def _attr_at(reader: CheckpointReader, real: Ino) -> Attr:
        attr = reader.attr(real)
        if attr is None:
            raise NotFound("no such file in the checkpoint")
        return attr

    def readlink(self, ino: Ino) -> str:
        if ino == CHECKPOINTS_INO:
            raise InvalidArgument("not a symbolic link")
        epoch, real = split(ino)
        target = self.reader(epoch).readlink(real)
        if target is None:
            raise InvalidArgument("not a symbolic link")
        return os.fsdecode(target)

    def xattrs(self, ino: Ino) -> dict[bytes, bytes]:
        if ino == CHECKPOINTS_INO:
            return {}
        epoch, real = split(ino)
        if real == ROOT_INO:
            self._by_epoch(epoch)
        return self.reader(epoch).xattrs(real)

    # -- data ----------------------------------------------------------------------------------

    def open(self, ino: Ino, writable: bool) -> tuple[CheckpointFile, Attr]:
        if writable:
            raise read_only("files in .checkpoints")
        epoch, real = split(ino) if ino != CHECKPOINTS_INO else (0, ROOT_INO)
        reader = self.reader(epoch)
        if real == ROOT_INO:  # a directory: nothing to read
            attr = self.getattr(ino)
            return CheckpointFile(reader, self.blocks, real, attr), attr
        attr = self._attr_at(reader, real)
        return CheckpointFile(reader, self.blocks, real, attr), self._mapped(epoch, attr)

    def read(self, ino: Ino, offset: int, size: int | None) -> tuple[Attr, bytes]:
        """A file's attributes and ``size`` bytes from ``offset`` (to the end when None)."""
        f, attr = self.open(ino, False)
        if attr.type == TYPE_DIR:
            return attr, b""
        return attr, f.read(offset, attr.length if size is None else size)

    def read_named(self, parent: Ino, name: str, offset: int, size: int | None) -> tuple[Ino, Attr, bytes]:
        """``read_named`` of the VFS inside a checkpoint: a symlink raises EntryIsSymlink."""
        ino, attr = self.lookup(parent, name)
        if attr.type == TYPE_SYMLINK:
            raise EntryIsSymlink("the entry is a symbolic link", path=name)
        if attr.type != stat.S_IFREG >> 12:
            return ino, attr, b""
        return (ino, *self.read(ino, offset, size))
