"""Internal files at the workspace root: ``.stats``, ``.config``, ``.accesslog`` (and ``.trash``,
``.checkpoints``).

They are served by the VFS so every frontend (FUSE, path API, agent API) sees the same ones:

| name | mode | content |
|---|---|---|
| ``.stats`` | 0444 | a Prometheus text snapshot taken when the file is opened |
| ``.config`` | 0400 | the running configuration as JSON, secrets removed |
| ``.accesslog`` | 0400 | one line per operation, streamed while it is open |
| ``.trash`` | 0555 dir | the volume's trash (inode 2), read-only to everyone but root |
| ``.checkpoints`` | 0555 dir | every checkpoint, read-only; not listed, reachable by name (``checkpointfs.py``) |

Internal inode numbers sit at the top of the 64-bit range, far above anything the ``nextinode``
counter will reach, so they never collide with real files.
"""

from __future__ import annotations

import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from artifacts_core.types import Attr, Ino

INTERNAL_BASE = 0x7FFF_FFFF_0000_0000


@dataclass(frozen=True)
class InternalFile:
    name: str
    ino: Ino
    mode: int
    streaming: bool = False


STATS = InternalFile(".stats", Ino(INTERNAL_BASE + 1), stat.S_IFREG | 0o444)
CONFIG = InternalFile(".config", Ino(INTERNAL_BASE + 2), stat.S_IFREG | 0o400)
ACCESSLOG = InternalFile(".accesslog", Ino(INTERNAL_BASE + 3), stat.S_IFREG | 0o400, streaming=True)

BY_NAME = {f.name: f for f in (STATS, CONFIG, ACCESSLOG)}
BY_INO = {f.ino: f for f in (STATS, CONFIG, ACCESSLOG)}
TRASH_NAME = ".trash"
#: Checkpoints, browsed read-only (``checkpointfs.py``); hidden from the root's listing.
CHECKPOINTS_NAME = ".checkpoints"
#: Names no entry of the root may have: they would shadow (or be shadowed by) the internal files.
RESERVED_NAMES = frozenset((*BY_NAME, TRASH_NAME, CHECKPOINTS_NAME))


class ReadHandle(Protocol):
    """What an open handle not backed by a live file reads through (internal files, checkpoints)."""

    def read(self, offset: int, size: int) -> bytes: ...

    def close(self) -> None: ...


def is_internal(ino: int) -> bool:
    return ino >= INTERNAL_BASE


def internal_attr(f: InternalFile, size: int = 0) -> Attr:
    now = time.time_ns()
    return Attr(mode=f.mode, uid=0, gid=0, atime_ns=now, mtime_ns=now, ctime_ns=now, nlink=1,
                length=size, parent=1, btime_ns=now)


class InternalHandle:
    """An open internal file: a snapshot (``.stats``, ``.config``) or a stream (``.accesslog``)."""

    def __init__(self, f: InternalFile, snapshot: bytes = b"", reader=None) -> None:
        self.file = f
        self.data = snapshot
        self.reader = reader

    def read(self, offset: int, size: int) -> bytes:
        if self.reader is not None:
            return self.reader.read(size)
        return self.data[offset:offset + size]

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()


def open_internal(f: InternalFile, *, stats: Callable[[], str], config: Callable[[], str],
                  accesslog) -> InternalHandle:
    if f is STATS:
        return InternalHandle(f, stats().encode())
    if f is CONFIG:
        return InternalHandle(f, config().encode())
    return InternalHandle(f, reader=accesslog.subscribe())
