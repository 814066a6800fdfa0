"""Reading a file: chunk views built from slice lists, fetched through the chunk store, and the
readahead window.

- A *chunk view* is a chunk's slice records (one Redis round trip, inline bytes included) merged
  so later slices win (``meta.slices.build_view``). Views are cached per inode and dropped when
  this client commits to the chunk, truncates, or an open sees that the inode changed elsewhere
  (close-to-open). A view whose blocks were compacted away on another host is refreshed once
  instead of failing the read.
- *Readahead* is per handle: while reads stay sequential the window doubles from
  ``readahead_min`` up to ``readahead_max``; a jump resets it. The window's blocks are prefetched
  through the chunk store (bounded, deduplicated, within the buffer budget).
"""

from __future__ import annotations

from dataclasses import dataclass

#: Reads this close to the previous end still count as sequential (kernel readahead and
#: concurrent FUSE reads arrive slightly out of order).
SEQUENTIAL_SLACK = 256 << 10


@dataclass
class Readahead:
    """The readahead window of one handle."""

    min_window: int
    max_window: int
    last_end: int = 0
    window: int = 0
    prefetched_to: int = 0

    def advise(self, offset: int, size: int, file_length: int) -> tuple[int, int] | None:
        """Record a read; return the (offset, length) range to prefetch now, or None."""
        sequential = abs(offset - self.last_end) <= SEQUENTIAL_SLACK and (offset > 0 or self.last_end == 0)
        end = offset + size
        self.last_end = end
        if not sequential or self.max_window <= 0:
            self.window = 0
            self.prefetched_to = end
            return None
        self.window = self.min_window if self.window == 0 else min(self.window * 2, self.max_window)
        start = max(end, self.prefetched_to)
        stop = min(end + self.window, file_length)
        if stop <= start:
            return None
        self.prefetched_to = stop
        return start, stop - start
