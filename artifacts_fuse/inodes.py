"""Path -> inode resolution for the FUSE adapter.

libfuse's high-level API names files by path; the VFS names them by inode. ``InodeCache`` keeps
``(parent inode, name) -> inode`` for the profile's ``entry_ttl``, the same staleness the kernel's
own dentry cache is allowed, so a path resolves with dictionary look-ups and at most one VFS
``lookup`` (one Redis round trip) for its last component. Keys are parent inodes, not path
prefixes, so renaming a directory invalidates one entry, never a subtree.

Coherence: the adapter's own namespace operations call ``remember`` / ``forget`` as they succeed;
changes made by other hosts show up when an entry expires (after ``entry_ttl``, as in the kernel).
A cached inode that turns out to be gone is forgotten and looked up again. Names that do not exist
are never cached (``negative_ttl`` is 0 in every profile).
"""

from __future__ import annotations

import time

from artifacts_core.errors import NotFound
from artifacts_core.types import ROOT_INO, Attr, Caller, Ino
from artifacts_core.vfs.core import VFS

#: Entries kept before the cache is simply cleared: ~250k entries is tens of MB of Python
#: objects, far more than an agent's working set, and clearing costs one lookup per entry later.
MAX_ENTRIES = 1 << 18


def split(path: str) -> tuple[str, str]:
    """``/a/b/c`` -> (``/a/b``, ``c``)."""
    head, _, name = path.rpartition("/")
    return head or "/", name


class InodeCache:
    def __init__(self, vfs: VFS, ttl: float) -> None:
        self.vfs = vfs
        self.ttl = ttl
        self._entries: dict[tuple[int, str], tuple[Ino, float]] = {}

    # -- cache maintenance -----------------------------------------------------------------------

    def remember(self, parent: Ino, name: str, ino: Ino) -> None:
        if self.ttl <= 0:
            return
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[(parent, name)] = (ino, time.monotonic() + self.ttl)

    def remember_many(self, parent: Ino, children) -> None:
        """``remember`` for ``(name, ino)`` pairs of one directory listing (one clock read)."""
        if self.ttl <= 0:
            return
        expires = time.monotonic() + self.ttl
        entries = self._entries
        for name, ino in children:
            entries[(parent, name)] = (ino, expires)
        if len(entries) >= MAX_ENTRIES:
            entries.clear()

    def forget(self, parent: Ino, name: str) -> None:
        self._entries.pop((parent, name), None)

    def _cached(self, parent: Ino, name: str) -> Ino | None:
        hit = self._entries.get((parent, name))
        if hit is None:
            return None
        if hit[1] < time.monotonic():
            self._entries.pop((parent, name), None)
            return None
        return hit[0]

    # -- resolution ------------------------------------------------------------------------------

    def child(self, parent: Ino, name: str, caller: Caller) -> Ino:
        ino = self._cached(parent, name)
        if ino is None:
            ino, _ = self.vfs.lookup(parent, name, caller)
            self.remember(parent, name, ino)
        return ino

    def resolve(self, path: str, caller: Caller) -> Ino:
        ino = ROOT_INO
        for name in path.split("/"):
            if name:
                ino = self.child(ino, name, caller)
        return ino

    def parent(self, path: str, caller: Caller) -> tuple[Ino, str]:
        """The inode of the directory holding ``path`` and the last name."""
        head, name = split(path)
        return self.resolve(head, caller), name

    def stat(self, path: str, caller: Caller) -> tuple[Ino, Attr]:
        """Inode and attributes of ``path``: one round trip whether or not the name is cached."""
        if path == "/":
            return ROOT_INO, self.vfs.getattr(ROOT_INO)
        parent, name = self.parent(path, caller)
        ino = self._cached(parent, name)
        if ino is not None:
            try:
                return ino, self.vfs.getattr(ino)
            except NotFound:  # removed (or replaced) elsewhere since it was cached
                self.forget(parent, name)
        ino, attr = self.vfs.lookup(parent, name, caller)
        self.remember(parent, name, ino)
        return ino, attr
