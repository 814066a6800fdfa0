"""Small shared types. Inode numbers and slice ids are distinct ``NewType``s so one cannot be
passed where the other is expected."""

from __future__ import annotations

from typing import NewType

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
