"""Cache control for paths of a volume: ``warmup`` (prefetch into the local disk cache) and
``evict`` (drop from it), what ``artifacts warmup`` and ``artifacts cache evict`` run.

Moving parts: paths are expanded into regular files (a directory: its whole tree, symlinks not
followed, as ``find`` would); each file's chunk views (one metadata round trip per 64 MiB) name
the slices and blocks that hold its current bytes -- inline data lives in Redis and needs no
cache; the chunk store then fetches those blocks whole, verifies them and writes them to the disk
cache (``ChunkStore.warm``), or removes them and their cached segments (``ChunkStore.evict``).
Warmup skips blocks already on disk, so running it twice costs one ``stat`` per block.

Invariants: nothing is cached unverified; a failure on one path or block is reported in the
result and does not stop the rest; the memory cache is left alone (a warmup should not push out
what the client is reading now).
"""

from __future__ import annotations

import stat as stat_mod
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from artifacts_core.chunk.keys import BlockKey
from artifacts_core.errors import ArtifactsError
from artifacts_core.meta import slices as slicemath
from artifacts_core.meta.attrs import SLICE_INLINE
from artifacts_core.meta.data import chunk_length
from artifacts_core.types import CHUNK_SIZE, Ino
from artifacts_core.vfs import internal

#: Blocks fetched at once by a warmup: enough to fill a link to S3 (the read path's default
#: download concurrency is 32; this leaves room for a mount reading at the same time).
WARMUP_CONCURRENCY = 16


@dataclass
class CacheReport:
    """What a warmup or an evict did. Byte counts are of file data (``bytes``) and of cached or
    fetched block objects (``fetched_bytes``, ``freed_bytes``)."""

    files: int = 0
    bytes: int = 0
    inline_files: int = 0  # wholly in Redis: nothing to cache
    blocks: int = 0
    fetched: int = 0
    fetched_bytes: int = 0
    already_cached: int = 0
    failed: int = 0
    freed_files: int = 0
    freed_bytes: int = 0
    seconds: float = 0.0
    errors: list[tuple[str, str]] = field(default_factory=list)  # (path, message)


@dataclass(frozen=True)
class FilePlan:
    path: str
    length: int
    blocks: list[BlockKey]


def _files(vol, paths: Iterable[str], report: CacheReport) -> Iterator[tuple[str, Ino, int]]:
    """``(path, inode, length)`` of every regular file under ``paths``."""
    for top in paths:
        try:
            st = vol.lstat(top)
        except ArtifactsError as e:
            report.errors.append((top, e.strerror or str(e)))
            continue
        if stat_mod.S_ISREG(st.st_mode) and not internal.is_internal(Ino(st.st_ino)):
            yield top, Ino(st.st_ino), st.st_size
        elif stat_mod.S_ISDIR(st.st_mode):
            for d, dirs, names in vol.walk(top):
                if d == "/" and internal.TRASH_NAME in dirs:
                    dirs.remove(internal.TRASH_NAME)  # deleted files: not worth caching
                for name in names:
                    path = f"{d.rstrip('/')}/{name}"
                    try:
                        fst = vol.lstat(path)
                    except ArtifactsError as e:  # removed while we walked
                        report.errors.append((path, e.strerror or str(e)))
                        continue
                    if stat_mod.S_ISREG(fst.st_mode) and not internal.is_internal(Ino(fst.st_ino)):
                        yield path, Ino(fst.st_ino), fst.st_size


def plan(vol, path: str, ino: Ino, length: int) -> FilePlan:
    """The blocks holding a file's current bytes (inline slices need none)."""
    blocks: dict[str, BlockKey] = {}
    for index in range(-(-length // CHUNK_SIZE)):
        records, _inline = vol.meta.read_chunk(ino, index)
        for seg in slicemath.build_view(records, chunk_length(length, index)):
            if seg.id == 0 or seg.kind == SLICE_INLINE:
                continue
            for block in vol.chunks.blocks(seg.id, seg.size, seg.off, seg.len):
                blocks.setdefault(block.key, block)
    return FilePlan(path, length, list(blocks.values()))


def plans(vol, paths: Iterable[str], report: CacheReport) -> list[FilePlan]:
    out = []
    for path, ino, length in _files(vol, paths, report):
        try:
            p = plan(vol, path, ino, length)
        except ArtifactsError as e:
            report.errors.append((path, e.strerror or str(e)))
            continue
        report.files += 1
        report.bytes += length
        report.blocks += len(p.blocks)
        if not p.blocks and length:
            report.inline_files += 1
        out.append(p)
    return out


def warmup(vol, paths: Iterable[str], *, concurrency: int = WARMUP_CONCURRENCY,
           on_plan: Callable[[CacheReport], None] | None = None,
           progress: Callable[[BlockKey, str], None] | None = None) -> CacheReport:
    """Fetch every block of the files under ``paths`` into the disk cache. ``on_plan`` sees the
    report once the files are known (totals for a progress bar), ``progress`` each block."""
    t0 = time.monotonic()
    report = CacheReport()
    todo = plans(vol, paths, report)
    if on_plan is not None:
        on_plan(report)
    blocks = list({b.key: b for p in todo for b in p.blocks}.values())
    counts = vol.chunks.loop.run(vol.chunks.warm(blocks, concurrency=concurrency, progress=progress))
    report.fetched, report.already_cached = counts["fetched"], counts["cached"]
    report.failed, report.fetched_bytes = counts["failed"], counts["fetched_bytes"]
    if report.failed:
        report.errors.append(("", f"{report.failed} block(s) could not be cached (see the log)"))
    report.seconds = time.monotonic() - t0
    return report


def evict(vol, paths: Iterable[str]) -> CacheReport:
    """Drop the blocks of the files under ``paths`` from the memory and disk caches."""
    t0 = time.monotonic()
    report = CacheReport()
    blocks = {b.key: b for p in plans(vol, paths, report) for b in p.blocks}
    report.freed_files, report.freed_bytes = vol.chunks.evict(list(blocks.values()))
    report.seconds = time.monotonic() - t0
    return report
