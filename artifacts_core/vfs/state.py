"""This client's per-inode state: what the open-file path, the reader and the whole-content
operations share, declared once here and owned by the VFS (``vfs.inodes``).

- ``InodeState``: one inode's dirty data (``FileWriter``), its cached chunk views (``ChunkView``:
  a chunk's merged slice list and inline bytes), the length and change counter last seen, and
  the number of open handles on this client.
- ``InodeState.adopt``: the one way a committed change reaches the cache -- take the new length
  and change counter, drop the views the change may have made stale (one chunk's or all).
- ``InodeTable``: the states by inode, created on first use and dropped when the last handle
  closes with nothing left to commit.

- ``InodeState.invalidate``: another host changed the inode (the change feed): the views go and
  the length is marked stale; the next read re-reads the attributes first (``refreshed``). A view
  or length fetched while such a change arrived is not kept (``epoch``).

Invariant: a cached view never outlives a change this client committed to its chunk (every
commit, truncate, fallocate, copy and whole-content swap goes through ``adopt``), nor a change
another host announced (``invalidate``); without the feed, changes made elsewhere are picked up at
the next open (close-to-open) or when a view's blocks turn out gone.
Thread-safety: the table has its own lock; each state's ``lock`` orders adopt-after-flush
sequences (truncate, fallocate, content swaps) on one inode; its ``guard`` is held only for the
few dictionary operations an invalidation races with (the feed's thread never waits for a flush).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import msgspec

from artifacts_core.meta.slices import Segment
from artifacts_core.types import Attr, Ino, SliceId
from artifacts_core.vfs.writer import FileWriter, WriterState


@dataclass
class ChunkView:
    segments: list[Segment]
    inline: dict[SliceId, bytes]


@dataclass
class InodeState:
    ino: Ino
    length: int = 0
    gen: int = -1
    handles: int = 0
    writer: FileWriter | None = None
    views: dict[int, ChunkView] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)
    epoch: int = 0  # bumped by every change another host announced
    stale: bool = False  # length and gen may be old: the next read re-reads the attributes
    guard: threading.Lock = field(default_factory=threading.Lock)

    @property
    def dirty(self) -> bool:
        """Data written on this client and not yet committed (or failed to commit)."""
        return self.writer is not None and self.writer.state is not WriterState.CLEAN

    def flush(self) -> None:
        """Commit this client's dirty data of the inode (raises a remembered failure)."""
        if self.writer is not None:
            self.writer.flush()

    def adopt(self, attr: Attr, *, chunk: int | None = None) -> None:
        """A change was committed: take its length and change counter and drop the cached views
        it may have changed -- chunk ``chunk``'s only, or every one when None."""
        if chunk is None:
            self.views.clear()
        else:
            self.views.pop(chunk, None)
        self.length = attr.length
        self.gen = attr.gen

    def invalidate(self) -> None:
        """Another host changed the inode: drop the views, mark the length stale."""
        with self.guard:
            self.epoch += 1
            self.stale = True
            self.views.clear()

    def keep_view(self, index: int, view: ChunkView, epoch: int) -> None:
        """Cache ``view`` of chunk ``index``, read when ``epoch`` was current, unless another
        host's change arrived meanwhile (the view may predate it: it serves this read only)."""
        with self.guard:
            if self.epoch == epoch:
                self.views[index] = view

    def refreshed(self, attr: Attr, epoch: int) -> None:
        """The attributes re-read (from ``epoch`` on) after ``invalidate``: take them."""
        with self.guard:
            if self.epoch == epoch:
                self.views.clear()
                self.length, self.gen, self.stale = attr.length, attr.gen, False


class InodeTable:
    """``InodeState`` by inode for this client."""

    def __init__(self) -> None:
        self._states: dict[Ino, InodeState] = {}
        self._lock = threading.Lock()

    def get(self, ino: Ino) -> InodeState | None:
        return self._states.get(ino)

    def state(self, ino: Ino) -> InodeState:
        """The inode's state, created on first use."""
        with self._lock:
            st = self._states.get(ino)
            if st is None:
                st = self._states[ino] = InodeState(ino)
            return st

    def all(self) -> list[InodeState]:
        return list(self._states.values())

    def invalidate(self, ino: Ino | None) -> None:
        """Another host changed ``ino`` (None: anything may have changed)."""
        states = self.all() if ino is None else [self._states.get(ino)]
        for st in states:
            if st is not None:
                st.invalidate()

    def drop_if_idle(self, st: InodeState) -> None:
        """Forget ``st`` when no handle is open and nothing waits to be committed."""
        with self._lock:
            if st.handles <= 0 and not st.dirty:
                self._states.pop(st.ino, None)

    def flush(self, ino: Ino) -> None:
        """Commit this client's dirty data of ``ino``, if any."""
        st = self._states.get(ino)
        if st is not None:
            st.flush()

    def flush_dirty(self) -> None:
        """Commit every inode's dirty data (operations that must order after all of it)."""
        for st in self.all():
            if st.dirty:
                st.flush()

    def adopt(self, ino: Ino, attr: Attr) -> None:
        """A whole-content change of ``ino`` committed elsewhere than its writer: drop its views,
        take the new length (a no-op for an inode this client has no state for)."""
        st = self._states.get(ino)
        if st is not None:
            with st.lock:
                st.adopt(attr)

    def preview(self, ino: Ino, attr: Attr) -> Attr:
        """Attributes as this client sees them: the length includes its own unflushed writes."""
        st = self._states.get(ino)
        w = st.writer if st is not None else None
        if w is None or w.state is WriterState.CLEAN:
            return attr
        length = max(attr.length, w.max_end) + w.pending_append
        if length == attr.length:
            return attr
        return msgspec.structs.replace(attr, length=length)
