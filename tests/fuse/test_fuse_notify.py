"""The kernel side of cross-host invalidations (``artifacts_fuse.notify``) against a small fake
change source and a recording session: which notifications each change becomes, that they are
written from the invalidator's own thread (never the feed's or a request handler's), and that a
lost subscription drops everything the kernel was given. The two-mount behaviour on a real
kernel is in ``test_fuse_hosts.py``."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest
from fuse_helpers import wait_for

from artifacts_fuse.adapter import KernelInodes
from artifacts_fuse.notify import ATTRS_ONLY, Invalidator


@dataclass
class Change:  # the fields of artifacts_core's change records that the invalidator reads
    kind: str
    ino: int = 0
    parent: int = 0
    name: bytes = b""
    new_parent: int = 0
    new_name: bytes = b""
    own: bool = False


class FakeFeed:
    def __init__(self) -> None:
        self.listeners = []

    def add_listener(self, callback) -> None:
        self.listeners.append(callback)

    def publish(self, change: Change) -> None:
        for cb in self.listeners:
            cb(change)


class RecordingSession:
    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.threads: set[str] = set()
        self.lock = threading.Lock()

    def inval_entry(self, parent: int, name: bytes) -> int:
        with self.lock:
            self.calls.append(("entry", parent, name))
            self.threads.add(threading.current_thread().name)
        return 0

    def inval_inode(self, ino: int, offset: int, length: int) -> int:
        with self.lock:
            self.calls.append(("inode", ino, offset))
            self.threads.add(threading.current_thread().name)
        return 0


def _setup():
    known = KernelInodes()
    session = RecordingSession()
    inv = Invalidator(session, known)
    feed = FakeFeed()
    feed.add_listener(inv.on_change)
    inv.start()
    return known, session, inv, feed


def test_each_change_becomes_its_notification_on_the_invalidator_thread():
    known, session, inv, feed = _setup()
    try:
        known.add(10, 1, b"dir")
        known.add(11, 10, b"f")
        known.add(12, 1, b"other")
        feed.publish(Change("entry", ino=11, parent=10, name=b"f"))
        feed.publish(Change("rename", ino=11, parent=10, name=b"f", new_parent=12, new_name=b"g"))
        feed.publish(Change("attr", ino=11))
        feed.publish(Change("data", ino=11))
        feed.publish(Change("data", ino=99))  # never given to the kernel: nothing to drop
        feed.publish(Change("entry", ino=97, parent=98, name=b"x"))  # same
        feed.publish(Change("attr", ino=11, own=True))  # this mount's own change: known already
        feed.publish(Change("data", ino=11, own=True))  # own commit: new server times, same pages
        wait_for(lambda: len(session.calls) >= 11, 5, "the notifications")
        inv.stop()
        assert session.calls == [
            ("entry", 10, b"f"), ("inode", 10, ATTRS_ONLY), ("inode", 11, ATTRS_ONLY),
            ("entry", 10, b"f"), ("entry", 12, b"g"), ("inode", 10, ATTRS_ONLY), ("inode", 12, ATTRS_ONLY),
            ("inode", 11, ATTRS_ONLY),
            ("inode", 11, ATTRS_ONLY),
            ("inode", 11, 0),
            ("inode", 11, ATTRS_ONLY)]
        assert session.threads == {"artifacts-invalidate"}
    finally:
        inv.stop()


@pytest.mark.parametrize("own", [False, True], ids=["lost-or-elsewhere", "own-restore"])
def test_a_lost_subscription_drops_every_name_and_inode_the_kernel_holds(own):
    """'all' comes from a lost or renewed subscription, or from a restore of the workspace; a
    restore made through this mount's own session replaced what the kernel holds just the same."""
    known, session, inv, feed = _setup()
    try:
        known.add(10, 1, b"dir")
        known.add_many(10, [(11, b"a"), (12, b"b")])
        known.add(11, 10, b"hard")  # a second name of inode 11
        known.add(13, 10, b"gone")
        known.forget(13, 1)  # forgotten by the kernel: neither it nor its name is invalidated
        feed.publish(Change("all", own=own))
        wait_for(lambda: ("inode", 1, 0) in session.calls, 5, "the root to be invalidated")
        inv.stop()
        entries = {c[1:] for c in session.calls if c[0] == "entry"}
        inodes = {c[1] for c in session.calls if c[0] == "inode" and c[2] == 0}
        assert entries == {(1, b"dir"), (10, b"a"), (10, b"b"), (10, b"hard")}
        assert inodes == {1, 10, 11, 12}
    finally:
        inv.stop()


def test_root_changes_are_always_forwarded():
    _known, session, inv, feed = _setup()
    try:
        feed.publish(Change("entry", ino=5, parent=1, name=b"top"))
        wait_for(lambda: len(session.calls) >= 2, 5, "the notifications")
        assert session.calls == [("entry", 1, b"top"), ("inode", 1, ATTRS_ONLY)]
    finally:
        inv.stop()
