"""The local disk cache of blocks, kept in their encoded (checksummed) form.

Owns one directory per volume (default ``$XDG_CACHE_HOME/tonbo/artifacts/<volume name>-<uuid>/``,
see :func:`default_cache_dir` and ``cache_dirs``), laid out like the bucket: ``<dir>/chunks/<a>/<b>/<id>_<idx>_<len>``.
Files hold exactly the bytes of the block object, so the reader verifies a cache hit with the same
:func:`~artifacts_core.chunk.codec.decode_block` as an S3 GET: a damaged file is detected, dropped
(:meth:`DiskCache.drop`) and re-fetched, never served.

Moving parts:
- an in-memory index ``key -> size`` in LRU order, rebuilt at start by scanning the directory
  (ordered by each file's last access), so the cache survives a restart;
- writes go to a temp file in the same directory and are renamed into place (atomic: a reader sees
  a whole file or none; a crash leaves only ``*.tmp`` files, removed by the next scan); no fsync —
  a torn file after a power cut fails its checksum and is dropped like any other damage;
- two bounds, checked before every write: ``capacity`` bytes (each file counted with 4 KiB of
  filesystem overhead, as JuiceFS does) and a free-space floor (``free_ratio`` of the filesystem's
  bytes and inodes stays free, checked with ``os.statvfs``); eviction removes least recently used
  files down to 95 % of the capacity, so it runs in batches rather than on every write;
- failure handling: a write that fails (ENOSPC, EROFS, EACCES, ...) is skipped; after
  ``_MAX_FAILURES`` consecutive failures the cache disables itself (logged once). Nothing here ever
  raises into a read: callers fall back to the object store.

All methods do blocking file I/O: call them from worker threads, never on the event loop.
Files are mode 0600 and directories 0700 (cached blocks are user data).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import threading
from collections import OrderedDict
from pathlib import Path

from artifacts_core.chunk import cache_dirs
from artifacts_core.chunk.keys import CHUNKS_PREFIX, parse_cache_key, segment_cache_key

log = logging.getLogger(__name__)

#: Default size limit: 10 GiB — large enough to hold a working set of several big files, small
#: enough not to trigger node-pressure eviction on a container host (JuiceFS's 100 GiB default
#: does, see its CSI docs).
DEFAULT_CAPACITY = 10 << 30
#: Keep at least 10 % of the cache filesystem's bytes and inodes free (JuiceFS's default ratio).
DEFAULT_FREE_RATIO = 0.1
#: Eviction takes usage down to 95 % of the capacity: room for a batch of writes before the next one.
_EVICT_TO = 0.95
#: Per-file overhead charged against the capacity: one filesystem block plus inode.
_FILE_OVERHEAD = 4096
#: Consecutive write failures before the cache turns itself off (one failure may be transient).
_MAX_FAILURES = 3


def default_cache_dir(volume_uuid: str, volume_name: str = "") -> Path:
    """``$XDG_CACHE_HOME/tonbo/artifacts/<volume name>-<volume uuid>`` (``~/.cache`` when the
    variable is unset; see ``cache_dirs`` for the naming)."""
    return cache_dirs.volume_cache_dir(cache_dirs.cache_base(), volume_name, volume_uuid)


class DiskCache:
    def __init__(self, directory: str | os.PathLike[str], *, capacity: int = DEFAULT_CAPACITY,
                 free_ratio: float = DEFAULT_FREE_RATIO) -> None:
        self.directory = Path(directory)
        self.capacity = capacity
        self.free_ratio = free_ratio
        self._lock = threading.Lock()
        self._index: OrderedDict[str, int] = OrderedDict()  # key -> charged size, LRU first
        self._writing: set[str] = set()  # indexed, file not yet renamed into place
        self._used = 0
        self._failures = 0
        self.enabled = True
        self.evictions = 0
        self.write_errors = 0
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self.directory, 0o700)
            self._scan()
        except OSError as e:
            self._disable(f"cannot use cache directory: {e}")

    # -- index ----------------------------------------------------------------------------------

    def _scan(self) -> None:
        found: list[tuple[float, str, int]] = []
        root = self.directory / CHUNKS_PREFIX
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                path = os.path.join(dirpath, name)
                if name.endswith(".tmp"):  # a write interrupted by a crash
                    with contextlib.suppress(OSError):
                        os.unlink(path)
                    continue
                key = os.path.relpath(path, self.directory).replace(os.sep, "/")
                if parse_cache_key(key) is None:
                    continue
                with contextlib.suppress(OSError):
                    st = os.stat(path)
                    found.append((max(st.st_atime, st.st_mtime), key, st.st_size + _FILE_OVERHEAD))
        found.sort()
        for _, key, size in found:
            self._index[key] = size
            self._used += size

    def _path(self, key: str) -> Path:
        return self.directory / key

    @property
    def used(self) -> int:
        return self._used

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._index

    def _disable(self, why: str) -> None:
        if self.enabled:
            log.warning("disk cache at %s disabled: %s; reads go to the object store", self.directory, why)
        self.enabled = False

    # -- operations -----------------------------------------------------------------------------

    def has(self, key: str) -> bool:
        """Whether ``key`` is cached: in the index, or a file another process (``artifacts
        warmup``, another mount of the workspace) put there since this index was built. Cheap
        enough for an event loop: a dict lookup, and on a miss one ``stat`` of a local path."""
        if not self.enabled:
            return False
        with self._lock:
            if key in self._index:
                return key not in self._writing
        return self._adopt(key)

    def _adopt(self, key: str) -> bool:
        try:
            size = os.stat(self._path(key)).st_size + _FILE_OVERHEAD
        except OSError:
            return False
        with self._lock:
            if key not in self._index:
                self._index[key] = size
                self._used += size
        return True

    def get(self, key: str) -> bytes | None:
        """The encoded block stored under ``key``, or ``None``; the caller verifies it."""
        got = self.get_ranges(key, [(0, None)])
        return None if got is None else got[0]

    def get_ranges(self, key: str, ranges: list[tuple[int, int | None]]) -> list[bytes] | None:
        """Byte ranges ``(offset, length or None for the rest)`` of the file under ``key`` (a
        range past its end comes back short), or ``None`` when it is not cached. A small read of
        a cached v2 block reads its table and one segment, not 4 MiB."""
        if not self.enabled:
            return None
        with self._lock:
            known = key in self._index
            if key in self._writing:
                return None
            if known:
                self._index.move_to_end(key)
        if not known and not self._adopt(key):
            return None
        path = self._path(key)
        try:
            fd = os.open(path, os.O_RDONLY)
            try:
                out = []
                for offset, length in ranges:
                    if length is None:
                        length = os.fstat(fd).st_size - offset
                    out.append(os.pread(fd, max(length, 0), offset))
            finally:
                os.close(fd)
            os.utime(path)  # persist recency for the LRU order rebuilt after a restart
        except OSError:
            self._forget(key)
            return None
        return out

    def put(self, key: str, encoded: bytes | bytearray | memoryview) -> bool:
        """Store an encoded block; ``False`` when skipped (disabled, no room, write failed)."""
        if not self.enabled:
            return False
        size = len(encoded) + _FILE_OVERHEAD
        if size > self.capacity * _EVICT_TO:
            return False
        with self._lock:
            if key in self._index:
                return True
            if self._used + size > self.capacity:
                self._evict_locked(self.capacity * _EVICT_TO - size)
            if not self._room_on_disk(size):
                self._evict_locked(self._used * _EVICT_TO - size)
                if not self._room_on_disk(size):
                    return False
            self._used += size  # reserve before writing outside the lock
            self._index[key] = size
            self._writing.add(key)
        try:
            self._write(self._path(key), encoded)
        except OSError as e:
            with self._lock:
                self._writing.discard(key)
            self._forget(key)
            self.write_errors += 1
            self._failures += 1
            log.debug("disk cache write of %s failed: %s", key, e)
            if self._failures >= _MAX_FAILURES:
                self._disable(f"{self._failures} writes failed in a row, last: {e}")
            return False
        with self._lock:
            self._writing.discard(key)
        self._failures = 0
        return True

    def _write(self, path: Path, data: bytes | bytearray | memoryview) -> None:
        parent = path.parent
        if not parent.is_dir():
            self._make_dirs(parent)
        tmp = parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def _make_dirs(self, directory: Path) -> None:
        """Create ``directory`` and its missing parents below the cache root, each mode 0700
        (``os.makedirs`` applies the mode to the last level only)."""
        missing = []
        while directory != self.directory and not directory.is_dir():
            missing.append(directory)
            directory = directory.parent
        for d in reversed(missing):
            with contextlib.suppress(FileExistsError):
                os.mkdir(d, 0o700)

    def _room_on_disk(self, size: int) -> bool:
        try:
            st = os.statvfs(self.directory)
        except OSError:
            return False
        if st.f_blocks and (st.f_bavail * st.f_frsize - size) < self.free_ratio * st.f_blocks * st.f_frsize:
            return False
        return not (st.f_files and st.f_favail - 1 < self.free_ratio * st.f_files)

    def _evict_locked(self, target: float) -> None:
        skipped = 0
        while self._used > target and len(self._index) > skipped:
            key, size = self._index.popitem(last=False)
            if key in self._writing:  # its file is not in place yet: keep it, try the next one
                self._index[key] = size
                skipped += 1
                continue
            self._used -= size
            self.evictions += 1
            with contextlib.suppress(OSError):
                os.unlink(self._path(key))

    def _forget(self, key: str) -> None:
        with self._lock:
            size = self._index.pop(key, None)
            if size is not None:
                self._used -= size

    def drop(self, key: str) -> None:
        """Remove ``key`` (a damaged file, or a deleted block)."""
        self._forget(key)
        with contextlib.suppress(OSError):
            os.unlink(self._path(key))

    remove = drop

    def drop_block(self, key: str, segments: int) -> tuple[int, int]:
        """Remove a block and those of its ``segments`` cached singly (whether this process
        indexed them or another one put them there): ``(files, bytes)`` removed."""
        files = size = 0
        for name in [key, *(segment_cache_key(key, k) for k in range(segments))]:
            self._forget(name)
            path = self._path(name)
            with contextlib.suppress(OSError):
                length = os.stat(path).st_size
                os.unlink(path)
                files, size = files + 1, size + length
        return files, size

    def entries(self) -> list[tuple[str, int]]:
        """``(name, charged bytes)`` of every cached file, least recently used first."""
        with self._lock:
            return list(self._index.items())
