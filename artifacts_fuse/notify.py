"""``Invalidator``: tells the kernel what other hosts changed, so its caches can live long.

The workspace's change feed (the VFS's ``changes``) reports every namespace, attribute and data
change another client makes, and a lost subscription. For each, the kernel is told to drop what
it may have cached:

| change (``vfs.changes``) | kernel notification |
|---|---|
| ``entry``: name N in directory P created, removed or replaced (inode I) | ``inval_entry(P, N)``; attributes of P and I |
| ``rename``: P/N moved to Q/M (inode I) | ``inval_entry`` of both names; attributes of P, Q and I |
| ``attr``: attributes or xattrs of I | ``inval_inode(I, -1)``: attributes only |
| ``data``: content of I | ``inval_inode(I, 0, 0)``: attributes and every cached page |
| ``all``: the subscription was lost or re-established | every name and inode the kernel was given (``KernelInodes``) |

Changes this mount made itself are skipped — the kernel already knows them from the replies —
except data commits: the commit (at close, fsync, or a timed flush) stamps the server's mtime and
ctime, which the kernel has not seen, so its attributes of the file are dropped (not its pages,
which hold exactly what was written); and ``all`` (a checkpoint restored through this mount's own
session replaced the tree the kernel holds).
Notifications about inodes the kernel does not hold are skipped too (nothing to drop).

Notifications are written from one thread of their own, never from a FUSE request handler: the
kernel may wait for a request of the same directory to finish before it takes an entry
invalidation, and a handler waiting on that would deadlock. The feed's thread only queues.
"""

from __future__ import annotations

import errno
import logging
import queue
import threading

log = logging.getLogger("artifacts.fuse")

#: Attributes only (libfuse: a negative offset leaves the page cache alone).
ATTRS_ONLY = -1
#: FUSE's root node: the kernel holds it without a lookup.
ROOT = 1
_STOP = object()
_ALL = object()


class Invalidator:
    """Queues invalidations and writes them to the kernel from one thread. ``session`` has
    ``inval_entry(parent, name)`` and ``inval_inode(ino, offset, length)`` (``lowlevel.Session``);
    ``known`` is the adapter's ``KernelInodes``."""

    def __init__(self, session, known) -> None:
        self.session = session
        self.known = known
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.sent = 0  # notifications the kernel took (for tests and .stats)

    # -- what the feed calls (any thread; only queues) -------------------------------------------

    def on_change(self, change) -> None:
        """Listener for the VFS change feed (``artifacts_core.vfs.changes.Change``)."""
        kind = change.kind
        if change.own and kind != "all":  # an own "all" is a restore: the kernel holds the old tree
            if kind == "data":
                self._queue.put(("inode", change.ino, False))
            return
        if kind == "entry":
            self._queue.put(("entry", ((change.parent, change.name),), (change.parent, change.ino)))
        elif kind == "rename":
            self._queue.put(("entry", ((change.parent, change.name), (change.new_parent, change.new_name)),
                             (change.parent, change.new_parent, change.ino)))
        elif kind == "attr":
            self._queue.put(("inode", change.ino, False))
        elif kind == "data":
            self._queue.put(("inode", change.ino, True))
        else:  # "all", or a kind this version does not know: dropping everything is always safe
            self.everything()

    def everything(self) -> None:
        self._queue.put(_ALL)

    # -- the thread ------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="artifacts-invalidate", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            try:
                if item is _ALL:
                    self._drop_everything()
                elif item[0] == "entry":
                    self._entries(item[1], item[2])
                else:
                    self._inode(item[1], item[2])
            except Exception:
                log.exception("kernel invalidation %r failed", item)

    def _sent(self, res: int) -> None:
        # -ENOENT: the kernel had nothing cached under that name or inode; fine.
        if res == 0:
            self.sent += 1
        elif res not in (-errno.ENOENT, -errno.ENOTCONN, -errno.EBADF):
            log.warning("kernel invalidation failed: %s", errno.errorcode.get(-res, res))

    def _entries(self, names: tuple, inodes: tuple) -> None:
        for parent, name in names:
            if parent == ROOT or parent in self.known:
                self._sent(self.session.inval_entry(parent, name))
        for ino in dict.fromkeys(inodes):
            self._inode(ino, False)

    def _inode(self, ino: int, data: bool) -> None:
        if ino == ROOT or ino in self.known:
            self._sent(self.session.inval_inode(ino, 0 if data else ATTRS_ONLY, 0))

    def _drop_everything(self) -> None:
        # Later items are all covered by this one.
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                self._queue.put(_STOP)
                break
        inodes, names = self.known.snapshot()
        inodes.append(ROOT)
        for parent, name in names:
            self._sent(self.session.inval_entry(parent, name))
        for ino in inodes:
            self._sent(self.session.inval_inode(ino, 0, 0))
        log.info("change feed lost: dropped %d cached names and %d inodes from the kernel",
                 len(names), len(inodes))
