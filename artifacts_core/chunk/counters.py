"""Counters of a chunk store, snapshotted into a plain dict for ``.stats`` and benchmarks.

Monotonic counters are incremented from the loop thread and from reader threads (the memory-cache
fast path), so increments take a lock; gauges (in-flight requests, budget use) are read live when
a snapshot is taken.
"""

from __future__ import annotations

import threading

COUNTERS = (
    "uploads", "upload_bytes", "upload_errors",
    # GETs: whole blocks, v2 tables (alone or with the first segments), ranged segment runs
    "downloads", "table_downloads", "segment_downloads", "download_bytes", "download_errors",
    "layout_guesses", "layout_guesses_wrong",  # segment GETs sent beside a table GET
    "memory_hits", "memory_misses", "disk_hits", "disk_misses", "disk_corrupt",
    "integrity_errors", "prefetches", "prefetch_skipped", "blocks_removed",
    "block_collisions",  # a PUT found its key holding another slice's bytes (a slice id reused)
)


class Counters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values = dict.fromkeys(COUNTERS, 0)

    def incr(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._values[name] += n

    def __getitem__(self, name: str) -> int:
        return self._values[name]

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._values)
