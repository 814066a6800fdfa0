"""In-memory object store: the fake that passes the same contract suite as the real ones.

Used by fast unit tests and by volumes opened with ``memory://``. Objects are immutable ``bytes``;
a put swaps the reference, so readers never see a mix.
"""

from __future__ import annotations

import bisect
import time

from artifacts_core.errors import Exists, NotFound
from artifacts_core.objects.base import LIST_PAGE, ListPage, ObjectInfo, check_range


class MemoryObjectStore:
    def __init__(self, name: str = "memory") -> None:
        self._name = name
        self._data: dict[str, tuple[bytes, float]] = {}
        self._keys: list[str] = []  # sorted, for list()

    def describe(self) -> str:
        return f"memory://{self._name}"

    async def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        check_range(offset, length)
        try:
            data, _ = self._data[key]
        except KeyError:
            raise NotFound("no such object", path=key) from None
        if offset == 0 and length is None:
            return data
        end = len(data) if length is None else offset + length
        return data[offset:end]

    async def put(self, key: str, data: bytes | bytearray | memoryview, *, if_absent: bool = False) -> None:
        if if_absent and key in self._data:
            raise Exists("an object already exists under this key", path=key)
        if key not in self._data:
            bisect.insort(self._keys, key)
        self._data[key] = (bytes(data), time.time())

    async def delete(self, key: str) -> None:
        if self._data.pop(key, None) is not None:
            i = bisect.bisect_left(self._keys, key)
            del self._keys[i]

    async def head(self, key: str) -> ObjectInfo:
        try:
            data, mtime = self._data[key]
        except KeyError:
            raise NotFound("no such object", path=key) from None
        return ObjectInfo(key, len(data), mtime)

    async def list(self, prefix: str = "", start_after: str = "", limit: int = LIST_PAGE) -> ListPage:
        start = max(prefix, start_after)
        i = bisect.bisect_right(self._keys, start) if start == start_after else bisect.bisect_left(self._keys, start)
        out: list[ObjectInfo] = []
        while i < len(self._keys) and len(out) < limit:
            key = self._keys[i]
            if not key.startswith(prefix):
                break
            data, mtime = self._data[key]
            out.append(ObjectInfo(key, len(data), mtime))
            i += 1
        truncated = i < len(self._keys) and self._keys[i].startswith(prefix)
        return ListPage(out, truncated)

    async def close(self) -> None:
        pass
