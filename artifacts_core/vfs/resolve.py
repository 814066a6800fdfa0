"""``Resolver``: the one path resolver of the core, owned by the VFS (``vfs.resolver``).

Every frontend that names files by path (the path API of ``Volume``, fsspec over it, the agent
API) resolves through it; none walks the tree itself or calls a private core method.

Moving parts:

- the *walk*: from the root, one ``lookup`` per component (one Redis round trip each, unless
  cached), following symbolic links as a ``SymlinkPolicy`` allows;
- the *entry cache*: ``(parent inode, name) -> (inode, file type)`` kept for the profile's
  ``entry_ttl`` (the staleness the kernel's dentry cache is allowed on a mount). Keys are parent
  inodes, not path prefixes, so moving a directory changes one entry, never a subtree. Only
  names that exist are cached;
- ``at_entry``: runs a by-name operation on the entry a path names and, when the operation
  reports that the entry is a symlink (``EntryIsSymlink``), follows it and runs it again on the
  target: the one-call data operations of the agent API (readFile, writeFile, appendFile).

Symlink rule, kept by every policy: targets are stored verbatim, and a link is followed only while
it stays inside the workspace -- a relative target resolves against the link's directory; an
absolute target, or one climbing above the root, is refused with EACCES (on a mount the kernel
resolves links as the host sees them). More than ``max_links`` links in one resolution is ELOOP.
A stricter policy (the agent API's) also refuses reserved root names wherever the walk stands at
the root: a link leading into one, and a name after a link back to the root (``sub/up/.trash``
with ``sub/up -> ..``), as the entry of a by-name operation too.

Invariant (coherence): each VFS namespace method that removes or moves a name (unlink, rmdir,
rename) calls ``forget(parent, name)`` once Redis has answered (also when it failed), whichever
frontend called it, so this client never resolves through an entry it removed itself (a rename
that succeeded ``moved`` the entry: the inode is the same under its new name); a lookup that
straddled the change does not cache its answer (an epoch counter bumped by ``forget``). Changes
made by other hosts are forgotten as the change feed reports them (the VFS's listener); the cache
is used only while the feed is subscribed (``trusted``), so a cached name is never older than the
feed's delay; without a feed (a bare VFS) it is trusted for ``entry_ttl``.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, Protocol, TypeVar

from artifacts_core.errors import (
    EntryIsSymlink,
    InvalidArgument,
    IsADirectory,
    NotADirectory,
    PermissionDenied,
    error_for,
)
from artifacts_core.paths import Parts, canonicalize, join
from artifacts_core.types import ROOT_INO, TYPE_DIR, TYPE_SYMLINK, Attr, Ino

#: Symlinks followed in one resolution before ELOOP (Linux's limit).
MAX_SYMLINKS = 40
#: Entries kept before the cache is simply cleared: ~250k entries is tens of MB of Python
#: objects, far more than an agent's working set; clearing costs one lookup per entry later.
MAX_ENTRIES = 1 << 18

T = TypeVar("T")


class Namespace(Protocol):
    """What the resolver needs from the VFS."""

    def lookup(self, parent: Ino, name: str) -> tuple[Ino, Attr]: ...

    def readlink(self, ino: Ino) -> str: ...


@dataclass(frozen=True)
class SymlinkPolicy:
    """Which symbolic links a resolution follows (see the module note)."""

    max_links: int = MAX_SYMLINKS
    #: Root names a followed link may not lead into (EACCES), e.g. the agent API's internal names.
    reserved: frozenset[str] = frozenset()


#: The path API's policy: links followed while they stay inside the workspace.
INSIDE_WORKSPACE = SymlinkPolicy()


class Resolved(NamedTuple):
    ino: Ino
    parts: Parts  # canonical parts after following symlinks
    attr: Attr | None  # the final inode's attributes when the walk fetched them (None: cached)


class Resolver:
    def __init__(self, ns: Namespace, entry_ttl: float, *, trusted: Callable[[], bool] = lambda: True) -> None:
        self._ns = ns
        self.entry_ttl = entry_ttl
        self._trusted = trusted
        self._entries: dict[tuple[Ino, str], tuple[Ino, int, float]] = {}
        self._lock = threading.Lock()
        self._epoch = 0  # bumped by every forget: a lookup that straddles one is not cached

    # -- the entry cache -----------------------------------------------------------------------

    def lookup(self, parent: Ino, name: str) -> tuple[Ino, Attr | None, int]:
        """(inode, attr or None when cached, file type) of ``parent/name``."""
        ttl = self.entry_ttl if self._trusted() else 0.0
        key = (parent, name)
        if ttl > 0:
            hit = self._entries.get(key)
            if hit is not None and hit[2] > time.monotonic():
                return hit[0], None, hit[1]
        epoch = self._epoch
        ino, attr = self._ns.lookup(parent, name)
        if ttl > 0:
            with self._lock:
                if epoch == self._epoch:
                    if len(self._entries) >= MAX_ENTRIES:
                        self._entries.clear()
                    self._entries[key] = (ino, attr.type, time.monotonic() + ttl)
        return ino, attr, attr.type

    def forget(self, parent: Ino, name: str) -> None:
        """Drop the entry ``parent/name`` (the VFS calls this after a name was removed or moved)."""
        with self._lock:
            self._epoch += 1
            self._entries.pop((parent, name), None)

    def forget_all(self) -> None:
        """Drop every entry (the change feed lost its subscription, or has it back; a restore
        changed the namespace wholesale)."""
        with self._lock:
            self._epoch += 1
            self._entries.clear()

    def moved(self, parent: Ino, name: str, new_parent: Ino, new_name: str, *, exchange: bool = False) -> None:
        """A rename succeeded: the cached entry of the moved inode (if any) now answers for the
        new name, and the old name's for the other one when the two were exchanged; so the next
        operation in the renamed directory costs no lookup."""
        with self._lock:
            self._epoch += 1
            src = self._entries.pop((parent, name), None)
            dst = self._entries.pop((new_parent, new_name), None)
            if src is not None:
                self._entries[(new_parent, new_name)] = src
            if exchange and dst is not None:
                self._entries[(parent, name)] = dst

    # -- resolution ----------------------------------------------------------------------------

    def resolve(self, path: str | bytes | os.PathLike[str], *, follow: bool = True,
                policy: SymlinkPolicy = INSIDE_WORKSPACE) -> Resolved:
        """What a workspace path names (``/a/b`` or ``a/b``)."""
        return self.walk(canonicalize(path), follow=follow, policy=policy)

    def walk(self, parts: Parts, *, follow: bool = True,
             policy: SymlinkPolicy = INSIDE_WORKSPACE) -> Resolved:
        """What canonical ``parts`` name; ``follow=False`` leaves a final symlink unfollowed."""
        todo = list(parts)
        hops = 0
        attr = None
        while True:
            ino: Ino = ROOT_INO
            done: list[str] = []
            restarted = False
            for i, name in enumerate(todo):
                if ino == ROOT_INO and name in policy.reserved:  # however the root was reached
                    raise PermissionDenied(f"{name} is reserved by the workspace", path=join((*done, name)))
                child, attr, typ = self.lookup(ino, name)
                last = i == len(todo) - 1
                if typ == TYPE_SYMLINK and (follow or not last):
                    hops += 1
                    if hops > policy.max_links:
                        raise error_for("ELOOP", "too many levels of symbolic links", path=join(tuple(todo)))
                    todo = [*self.link_target(child, tuple(done), policy), *todo[i + 1:]]
                    restarted = True
                    break
                if not last and typ != TYPE_DIR:
                    raise NotADirectory("not a directory", path=join((*done, name)))
                ino = child
                done.append(name)
            if not restarted:
                return Resolved(ino, tuple(done), attr if todo else None)

    def parent(self, path: str | bytes | os.PathLike[str], *,
               policy: SymlinkPolicy = INSIDE_WORKSPACE) -> tuple[Ino, str, Parts]:
        """(the directory holding the entry ``path`` names, its name, the path's parts); the
        directories on the way are followed, the entry itself is not looked up."""
        parts = canonicalize(path)
        if not parts:
            raise InvalidArgument("the workspace root cannot be used here", path="/")
        ino = self.walk(parts[:-1], policy=policy).ino
        if ino == ROOT_INO and parts[-1] in policy.reserved:
            raise PermissionDenied(f"{parts[-1]} is reserved by the workspace", path=join(parts))
        return ino, parts[-1], parts

    def link_target(self, link: Ino, where: Parts, policy: SymlinkPolicy = INSIDE_WORKSPACE) -> Parts:
        """The canonical parts the symlink ``link`` in directory ``where`` points at, or EACCES
        when the policy does not follow it."""
        target = self._ns.readlink(link)
        if target.startswith("/"):
            raise PermissionDenied("symlink points outside the workspace", path=target,
                                   hint="absolute symlink targets are only followed on a mount")
        parts = canonicalize("/".join([*where, target]), strict=True)
        if parts and parts[0] in policy.reserved:
            raise PermissionDenied(f"symlink points into {parts[0]}, which is reserved by the workspace",
                                   path=target)
        return parts

    def at_entry(self, parts: Parts, op: Callable[[Ino, str, Parts], T], *,
                 policy: SymlinkPolicy = INSIDE_WORKSPACE,
                 parent_of: Callable[[Parts], Ino] | None = None, path: str | None = None) -> T:
        """``op(parent, name, parts)`` on the entry ``parts`` names (never the root). When ``op``
        raises ``EntryIsSymlink`` the link is followed (as ``policy`` allows) and ``op`` runs
        again on its target. ``parent_of`` resolves the directory (default: ``walk``; a caller
        that creates missing parents passes its own); ``path`` names the entry in errors."""
        shown = join(parts) if path is None else path
        for _ in range(policy.max_links + 1):  # max_links followed, as Linux, then the entry itself
            where = parts[:-1]
            parent = parent_of(where) if parent_of is not None else self.walk(where, policy=policy).ino
            if parent == ROOT_INO and parts[-1] in policy.reserved:
                raise PermissionDenied(f"{parts[-1]} is reserved by the workspace", path=shown)
            try:
                return op(parent, parts[-1], parts)
            except EntryIsSymlink:
                link, _ = self._ns.lookup(parent, parts[-1])
                parts = self.link_target(link, where, policy)
                if not parts:
                    raise IsADirectory("the link points at the workspace root", path=shown) from None
        raise error_for(errno.ELOOP, "too many symbolic links", path=shown)
