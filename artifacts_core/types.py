"""Small shared types every layer and frontend uses: inode numbers and slice ids (distinct
``NewType``s so one cannot be passed where the other is expected), the caller of an operation,
an inode's attributes (``Attr``, whose binary layout ``meta/attrs.py`` owns) and the Linux flag
values the VFS API takes. Frontends import these from here, never from ``meta``."""

from __future__ import annotations

import stat
from typing import NewType

import msgspec

Ino = NewType("Ino", int)
SliceId = NewType("SliceId", int)

ROOT_INO = Ino(1)
#: The trash root: a directory never linked into the tree, shown as ``/.trash`` by the VFS.
TRASH_INO = Ino(2)

#: A file is cut into chunks of 64 MiB: the unit of the metadata slice lists (JuiceFS-proven:
#: large enough that a 1 GiB file needs 16 lists, small enough that one list stays short).
CHUNK_SIZE = 64 << 20
#: Default block size: the unit of an S3 object. 4 MiB amortises request latency while a
#: whole-block GET (needed because blocks are compressed) stays cheap for small reads.
DEFAULT_BLOCK_SIZE = 4 << 20

#: renameat2 flags (linux/fs.h), taken by ``VFS.rename`` and the metadata engine.
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2

# File types as stored: the S_IFMT nibble (mode >> 12).
TYPE_FIFO = stat.S_IFIFO >> 12  # 1
TYPE_CHR = stat.S_IFCHR >> 12  # 2
TYPE_DIR = stat.S_IFDIR >> 12  # 4
TYPE_BLK = stat.S_IFBLK >> 12  # 6
TYPE_FILE = stat.S_IFREG >> 12  # 8
TYPE_SYMLINK = stat.S_IFLNK >> 12  # 10
TYPE_SOCK = stat.S_IFSOCK >> 12  # 12


class Attr(msgspec.Struct, frozen=True):
    """An inode's attributes (stored as a fixed binary layout: ``meta/attrs.py``)."""

    mode: int  # full st_mode: type bits | permission bits
    uid: int
    gid: int
    atime_ns: int
    mtime_ns: int
    ctime_ns: int
    nlink: int
    length: int
    rdev: int = 0
    parent: int = 0
    btime_ns: int = 0
    gen: int = 0  # incremented by every change of data or attributes
    flags: int = 0

    @property
    def type(self) -> int:
        return self.mode >> 12

    @property
    def is_dir(self) -> bool:
        return self.mode >> 12 == TYPE_DIR

    @property
    def is_file(self) -> bool:
        return self.mode >> 12 == TYPE_FILE

    @property
    def is_symlink(self) -> bool:
        return self.mode >> 12 == TYPE_SYMLINK

    @property
    def perm(self) -> int:
        return self.mode & 0o7777


class Caller:
    """Who performs an operation: the uid, primary gid and supplementary groups the POSIX
    permission checks use. ``ROOT`` is the default for the path and agent APIs."""

    __slots__ = ("gid", "gids", "pid", "uid")

    def __init__(self, uid: int = 0, gid: int = 0, gids: tuple[int, ...] = (), pid: int = 0) -> None:
        self.uid = uid
        self.gid = gid
        self.gids = (gid, *tuple(g for g in gids if g != gid))
        self.pid = pid

    def gid_arg(self) -> str:
        """The groups as the Lua functions take them: ``"gid,gid,..."``."""
        return ",".join(str(g) for g in self.gids)

    def __repr__(self) -> str:
        return f"Caller(uid={self.uid}, gids={self.gids})"


ROOT_CALLER = Caller(0, 0)
