"""The buffer budget: one byte count bounding what a chunk store holds in memory for writes
(buffered or uploading blocks) and readahead (blocks being prefetched), DESIGN.md §5.

Moving parts: writers call :meth:`ByteBudget.acquire` (blocking, on their own threads) before
growing a block buffer, and the upload that drains the block calls :meth:`release` (on the loop
thread) when it is stored or failed. Readahead calls :meth:`try_acquire`, which never waits: a
prefetch that does not fit is skipped, so writes always win (as in JuiceFS, whose readahead gets
only what writes leave over).

Invariant (no deadlock, no busy wait): a writer waits on a condition variable only while the
budget is exceeded *and* some held bytes are already on their way to being released (handed to an
upload via :meth:`mark_draining`). Bytes in partial, not-yet-full blocks are released only by
their writer's ``finish()``; if they alone exceed the budget, waiting could never end, so the
request is admitted (the budget overshoots by at most one write) and the VFS's flush policy — not
this class — is what bounds the number of open partial slices.
"""

from __future__ import annotations

import threading


class ByteBudget:
    def __init__(self, limit: int) -> None:
        if limit <= 0:
            raise ValueError("the buffer budget must be positive")
        self.limit = limit
        self._cond = threading.Condition(threading.Lock())
        self._used = 0
        self._draining = 0  # part of _used that uploads/prefetches will release on their own
        self._waits = 0

    @property
    def used(self) -> int:
        return self._used

    @property
    def draining(self) -> int:
        return self._draining

    @property
    def waits(self) -> int:
        """How many acquires had to wait (back-pressure events), for stats."""
        return self._waits

    def acquire(self, n: int, *, draining: bool = False) -> None:
        """Take ``n`` bytes, waiting while the budget is exceeded and uploads will free some."""
        if n <= 0:
            return
        with self._cond:
            if self._used + n > self.limit and self._draining > 0:
                self._waits += 1
                while self._used + n > self.limit and self._draining > 0:
                    self._cond.wait()
            self._used += n
            if draining:
                self._draining += n

    def try_acquire(self, n: int) -> bool:
        """Take ``n`` bytes (counted as draining) if they fit now; never waits."""
        with self._cond:
            if self._used + n > self.limit:
                return False
            self._used += n
            self._draining += n
            return True

    def mark_draining(self, n: int) -> None:
        """``n`` held bytes now belong to an upload that will release them when it ends."""
        with self._cond:
            self._draining += n

    def release(self, n: int, *, draining: bool = True) -> None:
        """Give back ``n`` bytes (``draining=False`` for bytes never handed to an upload)."""
        if n <= 0:
            return
        with self._cond:
            self._used -= n
            if draining:
                self._draining -= n
            assert self._used >= 0 and self._draining >= 0, "budget released more than acquired"
            self._cond.notify_all()
