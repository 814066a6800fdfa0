"""The in-memory block cache: verified, decoded blocks, bounded in bytes, least recently used out.

Only bytes that passed verification (a v1 block, a v2 block or one of its segments; or that the
writer itself had before encoding) enter, as ``bytes`` or a read-only view of a GET's buffer, so a hit is served without re-checking. Keys are block keys (immutable
objects: a slice id is never reused), so an entry can never be stale; ``remove`` only frees memory
early. Thread-safe: the loop thread fills it, reader threads hit it directly on the fast path.
"""

from __future__ import annotations

import threading

from cachetools import LRUCache

#: Default memory cache: 256 MiB holds 64 blocks of 4 MiB — the readahead window (8 blocks) of
#: several sequential readers plus the tails of recently written files.
DEFAULT_MEMORY_CACHE = 256 << 20

#: What an entry holds: ``bytes``, or a ``memoryview`` of a GET's buffer (a raw v2 segment is
#: served without a copy).
Buffer = bytes | memoryview


class MemoryBlockCache:
    def __init__(self, capacity: int = DEFAULT_MEMORY_CACHE) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        # getsizeof=len: the bound is in bytes. A block larger than the whole cache is not kept.
        self._lru: LRUCache[str, Buffer] = LRUCache(maxsize=max(capacity, 1), getsizeof=len)

    def get(self, key: str) -> Buffer | None:
        with self._lock:
            return self._lru.get(key)

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._lru

    def put(self, key: str, data: Buffer) -> None:
        if self.capacity <= 0 or len(data) > self.capacity:
            return
        with self._lock:
            self._lru[key] = data

    def remove(self, key: str) -> None:
        with self._lock:
            self._lru.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._lru.clear()

    @property
    def size(self) -> int:
        return int(self._lru.currsize)

    def __len__(self) -> int:
        return len(self._lru)
