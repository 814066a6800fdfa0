"""Readahead policy: how far ahead of a sequential reader to prefetch (the VFS drives it).

One :class:`ReadaheadWindow` per read stream of an open file. It only decides *what* to prefetch;
:meth:`ChunkStore.prefetch <artifacts_core.chunk.store.ChunkStore.prefetch>` does the fetching
(fire-and-forget, deduplicated, bounded by the buffer budget — skipped when the budget is short).

Policy (JuiceFS's, simplified): a read that starts where the previous one ended (or at offset 0)
is sequential; the window then starts at one block and doubles per sequential read up to
``max_window`` (default 8 blocks = 32 MiB: at ~100 ms per GET and 20-way concurrency that keeps
the pipe full without holding more than the default budget can spare). A non-sequential read
resets the window to zero: random readers get no readahead (read amplification is the documented
JuiceFS pitfall). Each call returns only the part of the window not already requested.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Default upper bound of the window, in blocks.
DEFAULT_MAX_BLOCKS = 8


@dataclass(frozen=True, slots=True)
class Span:
    offset: int
    length: int


class ReadaheadWindow:
    def __init__(self, block_size: int, max_window: int | None = None) -> None:
        self.block_size = block_size
        self.max_window = max_window if max_window is not None else DEFAULT_MAX_BLOCKS * block_size
        self.window = 0
        self._next: int | None = None  # where a sequential read would start
        self._requested = 0  # readahead already asked for, up to this offset

    def on_read(self, offset: int, length: int) -> Span | None:
        """Record a read; the span to prefetch now, or ``None``."""
        sequential = offset == self._next or (self._next is None and offset == 0)
        end = offset + length
        self._next = end
        if not sequential:
            self.window = 0
            self._requested = end
            return None
        self.window = min(self.max_window, max(self.block_size, self.window * 2))
        start = max(end, self._requested)
        stop = end + self.window
        if stop <= start:
            return None
        self._requested = stop
        return Span(start, stop - start)
