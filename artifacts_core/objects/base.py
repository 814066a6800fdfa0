"""The ``ObjectStore`` interface: bytes under keys, nothing else.

Every implementation (S3 via aiobotocore, a local directory, memory) and the prefix wrapper offer
exactly these coroutines and pass one contract suite (``tests/core/objects/test_objects_contract.py``). They
run on the volume's event-loop thread (DESIGN.md §5); synchronous callers go through the bridge.

Semantics every implementation keeps:
- ``get(key)`` returns the whole object; ``get(key, offset, length)`` a byte range (a range past
  the end is clipped, as S3 does; ``length=None`` means to the end). A missing key raises
  :class:`~artifacts_core.errors.NotFound`.
- ``put`` replaces atomically: a reader sees the old or the new object, never a mix.
  ``put(..., if_absent=True)`` only creates: when the key exists it raises
  :class:`~artifacts_core.errors.Exists` and the object stays as it was (S3 ``If-None-Match: *``).
  Block objects are written this way, so none is ever overwritten (DESIGN.md §10).
- ``delete`` of a missing key is not an error.
- ``head`` returns an :class:`ObjectInfo` or raises ``NotFound``.
- ``list(prefix, start_after, limit)`` returns one page of keys in lexicographic (byte) order,
  strictly after ``start_after``; ``ListPage.truncated`` says whether more follow. Use
  :func:`list_all` to walk every page.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

import msgspec


class ObjectInfo(msgspec.Struct, frozen=True):
    key: str
    size: int
    mtime: float  # seconds since the epoch


class ListPage(msgspec.Struct, frozen=True):
    objects: list[ObjectInfo]
    truncated: bool


#: Page size of ``list``: S3's own maximum, so one page is one request.
LIST_PAGE = 1000


@runtime_checkable
class ObjectStore(Protocol):
    """Bytes under keys. All methods are coroutines run on the volume's event loop."""

    async def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes: ...

    async def put(self, key: str, data: bytes | bytearray | memoryview, *, if_absent: bool = False) -> None: ...

    async def delete(self, key: str) -> None: ...

    async def head(self, key: str) -> ObjectInfo: ...

    async def list(self, prefix: str = "", start_after: str = "", limit: int = LIST_PAGE) -> ListPage: ...

    async def close(self) -> None: ...

    def describe(self) -> str:
        """A short, secret-free description for logs and ``.config`` (e.g. ``s3://bucket/prefix``)."""
        ...


async def list_all(store: ObjectStore, prefix: str = "", start_after: str = "") -> AsyncIterator[ObjectInfo]:
    """Every object under ``prefix``, page by page."""
    while True:
        page = await store.list(prefix, start_after)
        for info in page.objects:
            yield info
        if not page.truncated or not page.objects:
            return
        start_after = page.objects[-1].key


def check_range(offset: int, length: int | None) -> None:
    if offset < 0 or (length is not None and length < 0):
        from artifacts_core.errors import InvalidArgument

        raise InvalidArgument(f"invalid byte range: offset={offset} length={length}")
