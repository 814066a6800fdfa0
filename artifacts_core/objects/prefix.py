"""A view of an object store confined to one key prefix: how a volume sees ``bucket/<prefix>/``.

Owns nothing but the prefix: :class:`PrefixedObjectStore` adds it to every key going in and strips
it from every key coming out, so the layers above address ``chunks/…`` and never learn where in
the bucket their volume lives (DESIGN.md §3). Wrappers nest (``a/`` over ``b/`` is ``b/a/``).

Errors pass through untouched: their ``path`` is the full key in the inner store, which is what
an operator needs to find the object.

Moving parts: :func:`normalize_prefix` (a non-empty prefix always ends with ``/``, so ``ws1``
never matches ``ws10``, the same rule the managed-storage policies follow in DESIGN.md §10) and
the five delegating coroutines.

Invariant: no operation reaches a key outside the prefix, and no key of another prefix comes
back: a listed key that does not carry the prefix is an error, not data.
"""

from __future__ import annotations

import msgspec

from artifacts_core.errors import InvalidArgument, StorageError
from artifacts_core.objects.base import LIST_PAGE, ListPage, ObjectInfo, ObjectStore


def normalize_prefix(prefix: str) -> str:
    """``"ws1"`` and ``"ws1/"`` become ``"ws1/"``; ``""`` stays empty (the whole store)."""
    if "\0" in prefix:
        raise InvalidArgument("an object key prefix may not contain NUL")
    if prefix.startswith("/"):
        raise InvalidArgument("an object key prefix may not start with '/'", path=prefix)
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    if "//" in prefix or any(part in (".", "..") for part in prefix.split("/")):
        raise InvalidArgument("an object key prefix may not have empty, '.' or '..' components",
                              path=prefix)
    return prefix


class PrefixedObjectStore:
    """``inner`` seen through ``prefix``: the same interface, keys relative to the prefix."""

    def __init__(self, inner: ObjectStore, prefix: str) -> None:
        self.inner = inner
        self.prefix = normalize_prefix(prefix)

    def describe(self) -> str:
        if not self.prefix:
            return self.inner.describe()
        return f"{self.inner.describe()} prefix {self.prefix}"

    def __repr__(self) -> str:
        return f"PrefixedObjectStore({self.inner!r}, {self.prefix!r})"

    def _key(self, key: str) -> str:
        if not key:
            raise InvalidArgument("an object key may not be empty")
        return self.prefix + key

    def _strip(self, info: ObjectInfo) -> ObjectInfo:
        if not info.key.startswith(self.prefix):
            raise StorageError(f"{self.inner.describe()} listed a key outside prefix {self.prefix!r}",
                               path=info.key)
        return msgspec.structs.replace(info, key=info.key[len(self.prefix):])

    async def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        return await self.inner.get(self._key(key), offset, length)

    async def put(self, key: str, data: bytes | bytearray | memoryview, *, if_absent: bool = False) -> None:
        await self.inner.put(self._key(key), data, if_absent=if_absent)

    async def delete(self, key: str) -> None:
        await self.inner.delete(self._key(key))

    async def head(self, key: str) -> ObjectInfo:
        return self._strip(await self.inner.head(self._key(key)))

    async def list(self, prefix: str = "", start_after: str = "", limit: int = LIST_PAGE) -> ListPage:
        # With an empty start_after this is the bare prefix: it skips only an object named exactly
        # like the prefix (a "directory marker" some S3 tools create), whose relative key is empty.
        after = self.prefix + start_after
        page = await self.inner.list(self.prefix + prefix, after, limit)
        return ListPage([self._strip(info) for info in page.objects], page.truncated)

    async def close(self) -> None:
        await self.inner.close()
