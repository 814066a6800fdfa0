"""Filesystem workloads for ``bench_fs``: plain ``os`` calls on any directory, so local disk, an
Artifacts mount and a JuiceFS mount run exactly the same code. Each workload returns a dict of
named results ``{name: (value, unit)}``; throughputs are "higher is better", latencies (``µs``)
and durations (``s``) "lower is better".

Cold reads need the target's caches emptied; the harness passes ``drop`` (remount with empty
cache directories, then drop the kernel's page cache) so the workloads stay target-agnostic.
"4k random read" follows the warm sequential read (what caches keep); "4k random read cold"
follows another ``drop``: 2,000 reads at random 4 KiB-aligned offsets of the file, one at a time
(about 16 per 4 MiB block of a 512 MiB file: dense); "... cold sparse" after a third ``drop``:
one read per 5 MiB of file, so most blocks are read once.
"""

from __future__ import annotations

import os
import random
import shutil
import statistics
import time

MiB = 1 << 20
#: Application buffer for sequential I/O: 1 MiB, the largest FUSE request, as dd bs=1M would use.
IO_BUF = MiB
#: Small-file payload: 4 KiB, a typical source file or JSON record (inline on Artifacts).
SMALL = 4096


def drop_kernel_caches() -> None:
    """Page cache, dentries and inodes (needs root); FUSE mounts then re-ask their daemon."""
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def _rate(nbytes: int, seconds: float) -> float:
    return nbytes / MiB / seconds


def sequential(root: str, size_mib: int, drop) -> dict:
    path = os.path.join(root, "seq.bin")
    block = os.urandom(IO_BUF)
    t = time.perf_counter()
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    for _ in range(size_mib):
        os.write(fd, block)
    os.fsync(fd)
    os.close(fd)
    write = time.perf_counter() - t
    root = drop()
    path = os.path.join(root, "seq.bin")
    out = {"seq write": (_rate(size_mib * MiB, write), "MiB/s")}
    for label in ("seq read cold", "seq read warm"):
        t = time.perf_counter()
        fd = os.open(path, os.O_RDONLY)
        n = 0
        while chunk := os.read(fd, IO_BUF):
            n += len(chunk)
        os.close(fd)
        assert n == size_mib * MiB, f"read {n} bytes of {size_mib} MiB"
        out[label] = (_rate(n, time.perf_counter() - t), "MiB/s")
    out["4k random read"] = random_reads(path, size_mib * MiB)
    root = drop()  # empty caches again: every first touch of a block goes to S3
    path = os.path.join(root, "seq.bin")
    out["4k random read cold"] = random_reads(path, size_mib * MiB)
    root = drop()
    path = os.path.join(root, "seq.bin")
    # fewer reads than blocks (one per 4 MiB of file at most): what a small read costs on its own
    out["4k random read cold sparse"] = random_reads(path, size_mib * MiB, count=max(16, size_mib // 5), seed=11)
    return out, root


def random_reads(path: str, size: int, count: int = 2000, seed: int = 7) -> tuple[float, str]:
    rng = random.Random(seed)
    offsets = [rng.randrange(0, size - SMALL) // SMALL * SMALL for _ in range(count)]
    fd = os.open(path, os.O_RDONLY)
    t = time.perf_counter()
    for off in offsets:
        os.pread(fd, SMALL, off)
    took = time.perf_counter() - t
    os.close(fd)
    return count / took, "ops/s"


def small_files(root: str, count: int = 2000) -> dict:
    d = os.path.join(root, "small")
    os.mkdir(d)
    data = os.urandom(SMALL)
    names = [os.path.join(d, f"f{i:05d}") for i in range(count)]
    out = {}

    def phase(label: str, fn, n: int = count) -> None:
        t = time.perf_counter()
        fn()
        out[label] = (n / (time.perf_counter() - t), "ops/s")

    def create():
        for p in names:
            fd = os.open(p, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644)
            os.write(fd, data)
            os.close(fd)

    def read():
        for p in names:
            with open(p, "rb") as f:
                f.read()

    phase("small create+write", create)
    phase("small stat", lambda: [os.stat(p) for p in names])
    phase("small read", read)
    phase("small list", lambda: [os.listdir(d) for _ in range(10)], 10 * count)
    phase("small rename", lambda: [os.rename(p, p + ".r") for p in names])
    phase("small delete", lambda: [os.unlink(p + ".r") for p in names])
    os.rmdir(d)
    return out


def tree(root: str, dirs: int = 200, files: int = 10) -> dict:
    base = os.path.join(root, "tree")
    t = time.perf_counter()
    for i in range(dirs):
        d = os.path.join(base, f"d{i // 20}", f"d{i}")
        os.makedirs(d)
        for j in range(files):
            with open(os.path.join(d, f"f{j}"), "wb") as f:
                f.write(b"x" * 100)
    made = time.perf_counter() - t
    t = time.perf_counter()
    seen = sum(len(fs) for _, _, fs in os.walk(base))
    walked = time.perf_counter() - t
    assert seen == dirs * files
    t = time.perf_counter()
    entries = 0
    for dirpath, dirnames, filenames in os.walk(base):  # find -ls, rsync -n, git status's shape
        for name in dirnames + filenames:
            os.lstat(os.path.join(dirpath, name))
            entries += 1
    lstat_rate = entries / (time.perf_counter() - t)
    t = time.perf_counter()
    shutil.rmtree(base)
    return {"tree 200x10 create": (made, "s"), "tree walk": (walked, "s"),
            "tree walk+lstat": (lstat_rate, "ops/s"), "tree rm -rf": (time.perf_counter() - t, "s")}


def appends(root: str, count: int = 500) -> dict:
    path = os.path.join(root, "append.log")
    line = b"x" * 99 + b"\n"
    t = time.perf_counter()
    for _ in range(count):
        fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o644)
        os.write(fd, line)
        os.close(fd)
    took = time.perf_counter() - t
    assert os.path.getsize(path) == count * len(line)
    os.unlink(path)
    return {"open-append-close": (count / took, "ops/s")}


def latencies(root: str, drop, count: int = 500) -> tuple[dict, str]:
    d = os.path.join(root, "lat")
    os.mkdir(d)
    names = [os.path.join(d, f"l{i:04d}") for i in range(count)]
    create = []
    for p in names:
        t = time.perf_counter()
        os.close(os.open(p, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644))
        create.append(time.perf_counter() - t)
    root = drop()
    d = os.path.join(root, "lat")
    names = [os.path.join(d, f"l{i:04d}") for i in range(count)]
    stat_t, open_t, unlink_t = [], [], []
    for p in names:  # uncached: each name is looked up once after the caches were dropped
        t = time.perf_counter()
        os.stat(p)
        stat_t.append(time.perf_counter() - t)
    drop_kernel_caches()
    for p in names:
        t = time.perf_counter()
        os.close(os.open(p, os.O_RDONLY))
        open_t.append(time.perf_counter() - t)
    for p in names:
        t = time.perf_counter()
        os.unlink(p)
        unlink_t.append(time.perf_counter() - t)
    os.rmdir(d)
    out = {}
    for label, xs in (("stat", stat_t), ("open+close", open_t), ("create", create), ("unlink", unlink_t)):
        q = statistics.quantiles(xs, n=100)
        out[f"{label} p50"] = (statistics.median(xs) * 1e6, "µs")
        out[f"{label} p99"] = (q[98] * 1e6, "µs")
    return out, root
