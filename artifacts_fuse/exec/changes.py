"""What a run changed: tree snapshots taken through the core, their difference, and a fresh
resolver for the transaction's conflict check.

A snapshot maps every workspace path (``a/b.txt``; directories too) to an ``Entry``: inode, change
counter (``gen``, bumped by every change of data or attributes from any frontend on any host),
kind, size, mtime and mode. It is read through the VFS inode API — one ``readdir``-plus call per
1024 entries of a directory, straight from Redis, no kernel or entry cache in the way — so a
snapshot taken right after a run sees everything the run's closed files committed.

Bounded: a walk stops at ``limit`` entries (default ``SNAPSHOT_LIMIT``) and returns ``None``; the
result then says ``changes_complete: false`` instead of listing a partial (and so wrong)
difference. The internal root entries (``.stats``, ``.config``, ``.accesslog``, ``.trash``) are
never part of a snapshot.

In a shared (non-transaction) run the difference is everything that changed in the workspace
during the run — concurrent writers' changes included, since nothing tells them apart; a
transaction's list is exactly its own (read from its overlay's upper directory).
"""

from __future__ import annotations

import stat as _stat
from collections import deque
from dataclasses import dataclass

from artifacts_core.errors import NotFound
from artifacts_core.types import ROOT_INO, Ino
from artifacts_core.vfs import internal

#: Entries a snapshot walks at most: 100,000 entries cost ~100 readdir pages plus one page per
#: directory (well under a second on a local Redis) and ~20 MB of Python objects.
SNAPSHOT_LIMIT = 100_000
#: Paths listed per kind (created, changed, deleted) in a result; the rest is counted.
MAX_LISTED = 1000
_PAGE = 1024


@dataclass(frozen=True)
class Entry:
    ino: int
    gen: int
    kind: str  # "file", "dir", "symlink", "other"
    size: int
    mtime_ns: int
    mode: int

    def same_content(self, other: Entry) -> bool:
        """Unchanged as far as a listing of changes is concerned (same inode, same counter)."""
        return (self.ino, self.gen, self.kind) == (other.ino, other.gen, other.kind)


def kind_of(mode: int) -> str:
    if _stat.S_ISREG(mode):
        return "file"
    if _stat.S_ISDIR(mode):
        return "dir"
    if _stat.S_ISLNK(mode):
        return "symlink"
    return "other"


def entry_of(ino: int, attr) -> Entry:
    return Entry(int(ino), attr.gen, kind_of(attr.mode), attr.length, attr.mtime_ns, attr.mode & 0o7777)


def snapshot(vfs, *, limit: int = SNAPSHOT_LIMIT) -> dict[str, Entry] | None:
    """Every path of the workspace -> Entry, or None past ``limit`` entries."""
    out: dict[str, Entry] = {}
    queue: deque[tuple[Ino, str]] = deque([(ROOT_INO, "")])
    while queue:
        ino, base = queue.popleft()
        cursor = 0
        while True:
            try:
                page, cursor = vfs.readdir(ino, cursor, _PAGE, plus=True)
            except NotFound:  # removed while we walked: its entries are gone too
                break
            for name, child, attr in page:
                if ino == ROOT_INO and (name in internal.BY_NAME or name == internal.TRASH_NAME):
                    continue
                if name in (".", ".."):
                    continue
                path = f"{base}{name}"
                e = entry_of(child, attr)
                out[path] = e
                if len(out) > limit:
                    return None
                if e.kind == "dir":
                    queue.append((Ino(child), path + "/"))
            if not cursor:
                break
    return out


@dataclass
class Changes:
    created: list[str]
    changed: list[str]
    deleted: list[str]
    complete: bool = True
    truncated: bool = False

    def as_dict(self) -> dict:
        return {"created": self.created, "changed": self.changed, "deleted": self.deleted,
                "changes_complete": self.complete, "changes_truncated": self.truncated}


def _show(path: str, e: Entry) -> str:
    return path + "/" if e.kind == "dir" else path


def _bounded(paths: list[str]) -> tuple[list[str], bool]:
    paths.sort()
    return paths[:MAX_LISTED], len(paths) > MAX_LISTED


def diff(before: dict[str, Entry] | None, after: dict[str, Entry] | None) -> Changes:
    """created / changed / deleted between two snapshots (directories end with '/'; a
    directory is "changed" only through its entries, which are listed themselves)."""
    if before is None or after is None:
        return Changes([], [], [], complete=False)
    created = [_show(p, e) for p, e in after.items() if p not in before]
    deleted = [_show(p, e) for p, e in before.items() if p not in after]
    changed = []
    for p, e in after.items():
        old = before.get(p)
        if old is None:
            continue
        if old.kind != e.kind:
            deleted.append(_show(p, old))
            created.append(_show(p, e))
        elif e.kind != "dir" and not old.same_content(e):
            changed.append(p)
        elif e.kind == "dir" and old.mode != e.mode:
            changed.append(p + "/")
    c, t1 = _bounded(created)
    ch, t2 = _bounded(changed)
    d, t3 = _bounded(deleted)
    return Changes(c, ch, d, truncated=t1 or t2 or t3)


class Resolver:
    """Fresh path -> (ino, Entry) lookups through the VFS (no entry cache), remembering the
    directories it has resolved during one commit."""

    def __init__(self, vfs) -> None:
        self.vfs = vfs
        self._dirs: dict[str, Ino] = {"": ROOT_INO}

    def forget(self, path: str) -> None:
        for p in [p for p in self._dirs if p == path or p.startswith(path + "/")]:
            del self._dirs[p]

    def dir_ino(self, path: str) -> Ino:
        """The inode of directory ``path`` ('' is the root); NotFound / NotADirectory otherwise."""
        ino = self._dirs.get(path)
        if ino is not None:
            return ino
        parent, _, name = path.rpartition("/")
        pino = self.dir_ino(parent)
        child, attr = self.vfs.lookup(pino, name)
        if not _stat.S_ISDIR(attr.mode):
            from artifacts_core.errors import NotADirectory

            raise NotADirectory("not a directory", path=path)
        self._dirs[path] = child
        return child

    def entry(self, path: str) -> Entry | None:
        """The entry at ``path`` now, or None when it does not exist (or its parent does not)."""
        parent, _, name = path.rpartition("/")
        try:
            pino = self.dir_ino(parent)
            child, attr = self.vfs.lookup(pino, name)
        except (NotFound, NotADirectoryError):
            return None
        return entry_of(child, attr)
