"""Agent API latency and throughput on small files, beside local disk (and a mount), in one run.

    .venv/bin/python -m benchmarks.bench_agentfs [--ops 3000] [--mount DIR]

Starts its own redis-server (AOF everysec, as the local stack runs it: DESIGN.md §10) and SeaweedFS
S3 gateway (``artifacts_core.servers``), formats a volume, and measures from ONE process, one
call at a time, p50/p99 latency and ops/s of:

| op | through ``AgentFS`` | on a directory (local disk; ``--mount DIR`` adds a FUSE mount column) |
|---|---|---|
| readFile | a 4 KiB file, rotating over 200 files | ``open().read()`` |
| writeFile | 4 KiB, overwriting one of 200 files | ``open("w").write()`` (no fsync) |
| appendFile | 200 B to one of 20 logs | ``open("a").write()`` (no fsync) |
| stat | a 4 KiB file | ``os.stat`` |
| readdir | a 100-entry directory, with types and sizes | ``os.scandir`` + ``stat`` |

Also the ceiling: a bare redis-py ``FCALL af_noop`` loop on the same connection settings -- one
network round trip, the floor of any metadata operation.

Goals (issue 6): appendFile of 200 B and writeFile of 4 KiB >= 1,500 ops/s from one process, each
durable when it returns (inline slices in Redis, AOF everysec: no S3 request on the write path --
checked with the chunk store's upload counter); readFile and stat of a small file < 1 ms p50.
Local disk without fsync is not durable on return; it is there as the familiar reference.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable

from artifacts_agentfs.api import AgentFS
from artifacts_core.config import profile_config
from artifacts_core.servers import RedisServer, SeaweedS3
from artifacts_core.volume import format_volume, open_volume

BUCKET = "bench"
FILES = 200  # small files read, written and stat'ed in rotation, as an agent touches many files
LOGS = 20  # append targets: appends spread over a few files, as agents keep a few logs
DIR_ENTRIES = 100
SMALL = 4096
APPEND = 200
GOAL_WRITE_OPS = 1500.0
GOAL_READ_P50_MS = 1.0


def measure(fn: Callable[[int], object], n: int) -> dict:
    for i in range(min(50, n)):  # warm-up: connections, caches, slice-id batch
        fn(i)
    lat = []
    start = time.perf_counter()
    for i in range(n):
        t = time.perf_counter_ns()
        fn(i)
        lat.append(time.perf_counter_ns() - t)
    total = time.perf_counter() - start
    lat.sort()
    return {"p50": lat[len(lat) // 2] / 1e6, "p99": lat[int(len(lat) * 0.99)] / 1e6, "ops": n / total}


def agent_ops(fs: AgentFS) -> dict[str, Callable[[int], object]]:
    payload, line = "w" * SMALL, "a" * (APPEND - 1) + "\n"
    return {
        "readFile": lambda i: fs.read_file(f"small/f{i % FILES:03d}.txt"),
        "writeFile": lambda i: fs.write_file(f"small/f{i % FILES:03d}.txt", payload),
        "appendFile": lambda i: fs.append_file(f"logs/l{i % LOGS:02d}.log", line),
        "stat": lambda i: fs.stat(f"small/f{i % FILES:03d}.txt"),
        "readdir": lambda i: fs.readdir("dir"),
    }


def prepare_agent(fs: AgentFS) -> None:
    for i in range(FILES):
        fs.write_file(f"small/f{i:03d}.txt", "r" * SMALL)
    for i in range(DIR_ENTRIES):
        fs.write_file(f"dir/e{i:03d}", "x" * 100)


def plain_ops(root: str) -> dict[str, Callable[[int], object]]:
    payload, line = "w" * SMALL, "a" * (APPEND - 1) + "\n"
    small = os.path.join(root, "small")
    os.makedirs(small, exist_ok=True)
    os.makedirs(os.path.join(root, "logs"), exist_ok=True)
    os.makedirs(os.path.join(root, "dir"), exist_ok=True)
    for i in range(FILES):
        with open(os.path.join(small, f"f{i:03d}.txt"), "w") as f:
            f.write("r" * SMALL)
    for i in range(DIR_ENTRIES):
        with open(os.path.join(root, "dir", f"e{i:03d}"), "w") as f:
            f.write("x" * 100)

    def read(i):
        with open(os.path.join(small, f"f{i % FILES:03d}.txt")) as f:
            return f.read()

    def write(i):
        with open(os.path.join(small, f"f{i % FILES:03d}.txt"), "w") as f:
            f.write(payload)

    def append(i):
        with open(os.path.join(root, "logs", f"l{i % LOGS:02d}.log"), "a") as f:
            f.write(line)

    def readdir(i):
        return sorted((e.name, e.is_dir(), e.stat().st_size) for e in os.scandir(os.path.join(root, "dir")))

    return {"readFile": read, "writeFile": write, "appendFile": append,
            "stat": lambda i: os.stat(os.path.join(small, f"f{i % FILES:03d}.txt")), "readdir": readdir}


def count_compaction_uploads(vol) -> list[int]:
    """Count the S3 blocks the volume's background compaction uploads (logs past the inline
    limit are merged into S3 slices), so the write path's own uploads can be told apart."""
    count = [0]
    merge = vol.maintenance.write_merged

    def counted(job):
        record, data = merge(job)
        if data is None:
            count[0] += -(-record.size // vol.chunks.block_size)
        return record, data

    vol.maintenance.write_merged = counted
    return count


def ceiling(vol, n: int) -> dict:
    client = vol.meta.client
    return measure(lambda i: client.call("af_noop", ro=True), n)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=3000, help="calls per operation (default 3000)")
    parser.add_argument("--mount", help="also run the plain-file ops on this directory (a FUSE mount)")
    args = parser.parse_args(argv)
    work = tempfile.mkdtemp(prefix="bench-agentfs-")
    redis = RedisServer.start(os.path.join(work, "redis"), appendonly=True)
    s3 = SeaweedS3.start(os.path.join(work, "weed"), buckets=(BUCKET,))
    vol = None
    try:
        os.environ["ARTIFACTS_S3_ACCESS_KEY_ID"] = s3.access_key
        os.environ["ARTIFACTS_S3_SECRET_ACCESS_KEY"] = s3.secret_key
        storage = f"s3://{BUCKET}/agentfs?endpoint={s3.endpoint}&region={s3.region}"
        prefix = "{u_1_w_1}:"
        format_volume(redis.url, storage, "bench", key_prefix=prefix, trash_days=0)
        vol = open_volume(redis.url, storage, key_prefix=prefix,
                          config=profile_config("interactive", cache_dir=os.path.join(work, "cache")))
        fs = AgentFS(vol)
        prepare_agent(fs)
        results: dict[str, dict[str, dict]] = {"agentfs": {}, "local disk": {}}
        uploads = {}
        compacted = count_compaction_uploads(vol)
        for name, fn in agent_ops(fs).items():
            before = vol.chunks.stats()["uploads"], compacted[0]
            results["agentfs"][name] = measure(fn, args.ops)
            for _ in range(LOGS):  # settle what the ops queued (4 chunks a call), counted below
                vol.maintenance.compact_queued()
            done = compacted[0] - before[1]
            uploads[name] = (vol.chunks.stats()["uploads"] - before[0] - done, done)
        for name, fn in plain_ops(os.path.join(work, "local")).items():
            results["local disk"][name] = measure(fn, args.ops)
        if args.mount:
            results["mount"] = {name: measure(fn, args.ops)
                                for name, fn in plain_ops(os.path.join(args.mount, "bench-agentfs")).items()}
        roof = ceiling(vol, args.ops)
        report(results, uploads, roof, args.ops)
        a = results["agentfs"]
        ok = (a["appendFile"]["ops"] >= GOAL_WRITE_OPS and a["writeFile"]["ops"] >= GOAL_WRITE_OPS
              and a["readFile"]["p50"] < GOAL_READ_P50_MS and a["stat"]["p50"] < GOAL_READ_P50_MS
              and uploads["writeFile"][0] == 0 and uploads["appendFile"][0] == 0)
        print("goals:", "MET" if ok else "MISSED")
        return 0 if ok else 1
    finally:
        if vol is not None:
            vol.close()
        s3.stop()
        redis.stop()


def report(results: dict, uploads: dict, roof: dict, n: int) -> None:
    cols = list(results)
    print(f"\n{n} calls per op, one process, one call at a time; latency in ms")
    head = f"{'op':<11}" + "".join(f"| {c + ' p50':>16} {'p99':>7} {'ops/s':>8} " for c in cols)
    print(head)
    print("-" * len(head))
    for op in results["agentfs"]:
        row = f"{op:<11}"
        for c in cols:
            r = results[c][op]
            row += f"| {r['p50']:>16.3f} {r['p99']:>7.3f} {r['ops']:>8.0f} "
        print(row)
    print(f"\nceiling, bare FCALL af_noop round trip: p50 {roof['p50']:.3f} ms, {roof['ops']:.0f} ops/s")
    print("S3 uploads on the write path:", ", ".join(f"{k} {v[0]}" for k, v in uploads.items()))
    print("S3 uploads by background compaction (logs past the 16 KiB inline limit):",
          ", ".join(f"{k} {v[1]}" for k, v in uploads.items() if v[1]))
    a = results["agentfs"]
    print(f"goal appendFile 200 B >= {GOAL_WRITE_OPS:.0f} ops/s: {a['appendFile']['ops']:.0f}; "
          f"writeFile 4 KiB: {a['writeFile']['ops']:.0f}; readFile p50 < {GOAL_READ_P50_MS} ms: "
          f"{a['readFile']['p50']:.3f}; stat p50: {a['stat']['p50']:.3f}")


if __name__ == "__main__":
    sys.exit(main())
