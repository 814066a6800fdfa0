"""The local-directory object store: ``file:///path`` volumes, tests, and the embedded stack.

Owns a directory tree in which key ``a/b/c`` is the file ``<root>/a/b/c``.

Moving parts:
- :func:`key_path` checks a key and maps it to a path: no empty key, no absolute key, no NUL, no
  empty, ``.`` or ``..`` component, no component longer than NAME_MAX, no component that looks
  like one of our temp files — so no key can reach outside the root or collide with a half-written
  put;
- ``put`` writes a temp file beside the target (same directory, so the rename cannot cross file
  systems), fsyncs it, renames it over the target and fsyncs the directory: after a crash the key
  holds the old bytes or the new bytes, never a mix, and a renamed object survives power loss;
  ``if_absent`` hard-links the temp file to the target instead, which fails if the target exists;
- ``list`` walks the tree in true key order: a directory ``d`` sorts as ``d/`` among its siblings,
  so ``d-x`` < ``d/x`` < ``d0`` as in S3, whatever order the file system returns entries in;
- every blocking call runs in a worker thread (``asyncio.to_thread``), never on the event loop.

Invariant: the tree holds only objects and the temp files of puts in flight (or of puts a crash
cut short); temp files are never listed, read, or reachable through a key.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import secrets
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

from artifacts_core.errors import (
    ArtifactsError,
    Exists,
    InvalidArgument,
    NameTooLong,
    NotFound,
    StorageError,
    error_for,
)
from artifacts_core.objects.base import LIST_PAGE, ListPage, ObjectInfo, check_range

#: Names of in-flight puts start with this; keys may not contain such a component.
TEMP_PREFIX = ".artifacts-tmp."

#: Linux NAME_MAX: the longest file name (in bytes) most file systems accept.
NAME_MAX = 255

#: How often put re-creates a directory that a concurrent delete's cleanup removed under it;
#: each retry needs another delete to win the same tiny race, so three is plenty.
PUT_DIR_RETRIES = 3


def key_path(root: Path, key: str) -> Path:
    """The file of ``key`` under ``root``; raises InvalidArgument for a key that could escape it."""
    if not isinstance(key, str) or not key:
        raise InvalidArgument("an object key may not be empty")
    if "\0" in key:
        raise InvalidArgument("an object key may not contain NUL", path=key.replace("\0", "\\0"))
    if key.startswith("/"):
        raise InvalidArgument("an object key may not be absolute", path=key)
    parts = key.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise InvalidArgument("an object key may not have empty, '.' or '..' components", path=key)
        if part.startswith(TEMP_PREFIX):
            raise InvalidArgument(f"object key components may not start with {TEMP_PREFIX!r}", path=key)
        if len(os.fsencode(part)) > NAME_MAX:
            raise NameTooLong(f"a key component is longer than {NAME_MAX} bytes", path=key)
    return root.joinpath(*parts)


def _os_error(e: OSError, doing: str, key: str) -> ArtifactsError:
    """The core error for a failed file-system call: its errno's class (EACCES, ENOSPC …) when the
    core has one, else StorageError (EIO)."""
    message = f"{doing} failed: {e.strerror or type(e).__name__}"
    if e.errno in (errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT, errno.EROFS):
        return error_for(e.errno, message, path=key)
    return StorageError(message, path=key)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _makedirs_durable(root: Path, directory: Path) -> None:
    """Create ``directory`` (under ``root``) and fsync the parent of every component created."""
    missing: list[Path] = []
    d = directory
    while d != root and not d.is_dir():
        missing.append(d)
        d = d.parent
    if not root.is_dir():
        root.mkdir(parents=True, exist_ok=True)
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            if not d.is_dir():
                raise
        _fsync_dir(d.parent)


class LocalObjectStore:
    """Objects as files under one directory."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).absolute()

    def describe(self) -> str:
        return f"file://{self.root}"

    def __repr__(self) -> str:
        return f"LocalObjectStore({str(self.root)!r})"

    async def close(self) -> None:
        pass

    # -- get / head ----------------------------------------------------------------------------

    async def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        check_range(offset, length)
        return await asyncio.to_thread(self._get, key_path(self.root, key), key, offset, length)

    def _get(self, path: Path, key: str, offset: int, length: int | None) -> bytes:
        try:
            with open(path, "rb") as f:
                if offset:
                    f.seek(offset)
                return f.read() if length is None else f.read(length)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NotFound("no such object", path=key) from None
        except OSError as e:
            raise _os_error(e, f"reading from {self.describe()}", key) from e

    async def head(self, key: str) -> ObjectInfo:
        return await asyncio.to_thread(self._head, key_path(self.root, key), key)

    def _head(self, path: Path, key: str) -> ObjectInfo:
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound("no such object", path=key) from None
        if not path.is_file():
            raise NotFound("no such object", path=key)
        return ObjectInfo(key, st.st_size, st.st_mtime)

    # -- put / delete --------------------------------------------------------------------------

    async def put(self, key: str, data: bytes | bytearray | memoryview, *, if_absent: bool = False) -> None:
        path = key_path(self.root, key)
        await asyncio.to_thread(self._put, path, key, data, if_absent)

    def _put(self, path: Path, key: str, data: bytes | bytearray | memoryview, if_absent: bool) -> None:
        try:
            tmp, fd = self._open_temp(path, key)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                if if_absent:
                    self._link_new(tmp, path, key)
                else:
                    os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise
            _fsync_dir(path.parent)
        except IsADirectoryError:
            raise InvalidArgument("this key names a directory of other objects in the local store",
                                  path=key) from None
        except Exists:
            raise
        except (NotADirectoryError, FileExistsError):
            raise InvalidArgument("a component of this key is an object, not a directory "
                                  "(a local store cannot hold both 'a' and 'a/b')", path=key) from None
        except OSError as e:
            raise _os_error(e, f"writing to {self.describe()}", key) from e

    @staticmethod
    def _link_new(tmp: Path, path: Path, key: str) -> None:
        """Give the written temp file its key only if no object holds it (link(2) never replaces)."""
        try:
            os.link(tmp, path)
        except FileExistsError:
            if path.is_dir():
                raise IsADirectoryError(errno.EISDIR, "is a directory") from None
            raise Exists("an object already exists under this key", path=key) from None
        tmp.unlink()

    def _open_temp(self, path: Path, key: str) -> tuple[Path, int]:
        """A new temp file beside ``path`` (its directory created durably if missing)."""
        for _ in range(PUT_DIR_RETRIES):
            _makedirs_durable(self.root, path.parent)
            tmp = path.parent / f"{TEMP_PREFIX}{secrets.token_hex(8)}"
            try:
                return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileNotFoundError:
                continue  # a delete's cleanup removed the directory between mkdir and open
        raise StorageError(f"cannot create a file in {path.parent}: it keeps disappearing", path=key)

    async def delete(self, key: str) -> None:
        path = key_path(self.root, key)
        await asyncio.to_thread(self._delete, path, key)

    def _delete(self, path: Path, key: str) -> None:
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return  # a missing object (or a key that names a directory) is already deleted
        except OSError as e:
            raise _os_error(e, f"deleting from {self.describe()}", key) from e
        _fsync_dir(path.parent)
        # Remove directories the delete emptied, so the tree does not keep one per deleted block.
        d = path.parent
        while d != self.root:
            try:
                d.rmdir()
            except OSError:
                break  # not empty (or already gone): stop climbing
            d = d.parent

    # -- list ----------------------------------------------------------------------------------

    async def list(self, prefix: str = "", start_after: str = "", limit: int = LIST_PAGE) -> ListPage:
        if limit < 1:
            raise InvalidArgument(f"list limit must be at least 1, not {limit}")
        return await asyncio.to_thread(self._list, prefix, start_after, limit)

    def _list(self, prefix: str, start_after: str, limit: int) -> ListPage:
        found = list(islice(self._walk(self.root, "", prefix, start_after), limit + 1))
        objects = [ObjectInfo(key, st.st_size, st.st_mtime) for key, st in found[:limit]]
        return ListPage(objects, len(found) > limit)

    def _walk(self, directory: Path, base: str, prefix: str, start_after: str
              ) -> Iterator[tuple[str, os.stat_result]]:
        """``(key, stat)`` of every object under ``directory`` (keys starting with ``base``), in key
        order, restricted to keys that start with ``prefix`` and sort after ``start_after``."""
        try:
            with os.scandir(directory) as it:
                entries = [(e.name + "/" if e.is_dir(follow_symlinks=False) else e.name, e)
                           for e in it if not e.name.startswith(TEMP_PREFIX)]
        except (FileNotFoundError, NotADirectoryError):
            return
        # A subtree's keys all start with "name/", so sorting on that string puts every key of the
        # tree in byte order (str order of code points equals UTF-8 byte order).
        entries.sort(key=lambda pair: pair[0])
        for sort_name, entry in entries:
            span = base + sort_name  # the key (file) or the prefix of every key below (directory)
            if not (span.startswith(prefix) or prefix.startswith(span)):
                continue
            is_dir = sort_name.endswith("/")
            if is_dir:
                # Every key below starts with span; all are <= start_after when span is smaller and
                # start_after does not extend it.
                if span < start_after and not start_after.startswith(span):
                    continue
                yield from self._walk(Path(entry.path), span, prefix, start_after)
            elif span > start_after and span.startswith(prefix):
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # deleted while we listed
                yield span, st
