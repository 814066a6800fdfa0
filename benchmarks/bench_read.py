"""Cold reads through the path API against the bare S3 GET ceiling, and 4 KiB random reads across
block formats and segment sizes, all in one run on the same servers. Not a test: run it as

    .venv/bin/python -m benchmarks.bench_read [--size 512] [--rounds 3] [--segments 64,256,1024]

Starts its own Redis (AOF everysec) and SeaweedFS, formats one volume per configuration (format
v1, and v2 at each segment size) and writes the same file to each, then per round, in turn:

1. the ceiling: bare aiobotocore GETs of 4 MiB objects, ``--ceiling-concurrency`` in flight (the
   same client settings as ``S3ObjectStore``: path style, no payload signing);
2. a cold sequential read of the file through ``vol.open`` (1 MiB reads; a new client with empty
   caches), on the default configuration;
3. for every configuration, cold 4 KiB random reads: *dense* (``--dense`` reads over the file:
   about 16 per 4 MiB block, so most blocks are read many times) and *sparse* (``--sparse`` reads,
   fewer than one per block), each by a new client with empty caches.

Prints per-round figures, and medians with the ratio of the sequential read to its same-round
ceiling and of each random rate to format v1's. Other processes on the host load it: compare
ratios, not absolute numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import sys
import tempfile
import time

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

MiB = 1 << 20
BUCKET = "bench"


async def ceiling(s3, keys: list[str], concurrency: int) -> float:
    """MiB/s of bare aiobotocore GETs of ``keys``, ``concurrency`` in flight."""
    config = AioConfig(s3={"addressing_style": "path", "payload_signing_enabled": False}, signature_version="s3v4",
                       request_checksum_calculation="when_required", response_checksum_validation="when_required",
                       max_pool_connections=max(64, concurrency))
    sem = asyncio.Semaphore(concurrency)
    async with get_session().create_client("s3", region_name=s3.region, endpoint_url=s3.endpoint,
                                           aws_access_key_id=s3.access_key, aws_secret_access_key=s3.secret_key,
                                           config=config) as client:
        async def get(key: str) -> int:
            async with sem:
                resp = await client.get_object(Bucket=BUCKET, Key=key)
                async with resp["Body"] as body:
                    return len(await body.read())

        await get(keys[0])  # connection setup is not part of the ceiling
        t = time.perf_counter()
        total = sum(await asyncio.gather(*(get(k) for k in keys)))
        return total / MiB / (time.perf_counter() - t)


async def put_objects(s3, count: int) -> list[str]:
    config = AioConfig(s3={"addressing_style": "path", "payload_signing_enabled": False},
                       request_checksum_calculation="when_required")
    async with get_session().create_client("s3", region_name=s3.region, endpoint_url=s3.endpoint,
                                           aws_access_key_id=s3.access_key, aws_secret_access_key=s3.secret_key,
                                           config=config) as client:
        keys = [f"ceiling/{i}" for i in range(count)]
        for key in keys:
            await client.put_object(Bucket=BUCKET, Key=key, Body=os.urandom(4 * MiB))
        return keys


def sequential(vol, size_mib: int) -> float:
    t = time.perf_counter()
    n = 0
    with vol.open("data.bin", "rb", buffering=0) as f:
        while chunk := f.read(MiB):
            n += len(chunk)
    assert n == size_mib * MiB
    return n / MiB / (time.perf_counter() - t)


def random_reads(vol, size_mib: int, count: int, seed: int) -> tuple[float, dict]:
    rng = random.Random(seed)
    offsets = [rng.randrange(0, size_mib * MiB - 4096) // 4096 * 4096 for _ in range(count)]
    with vol.open("data.bin", "rb", buffering=0) as f:
        t = time.perf_counter()
        for off in offsets:
            f.seek(off)
            f.read(4096)
        rate = count / (time.perf_counter() - t)
    return rate, vol.chunks.stats()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=512, help="MiB per file (default 512)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--segments", default="64,256,1024", help="format v2 segment sizes to compare, KiB")
    ap.add_argument("--default-segment", type=int, default=64,
                    help="segment size of the sequential read, KiB (default: the shipped DEFAULT_SEGMENT_SIZE)")
    ap.add_argument("--dense", type=int, default=2000, help="random reads over the file (bench_fs's count)")
    ap.add_argument("--sparse", type=int, default=100, help="random reads, fewer than one per block")
    ap.add_argument("--ceiling-concurrency", type=int, default=8)
    ap.add_argument("--profile", default="interactive")
    ap.add_argument("--readahead-max", type=int, default=0, help="MiB; 0 keeps the profile's")
    ap.add_argument("--compression", default="lz4")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args(argv)
    from artifacts_core.config import profile_config
    from artifacts_core.servers import RedisServer, SeaweedS3
    from artifacts_core.volume import format_volume, open_volume

    work = tempfile.mkdtemp(prefix="artifacts-benchread-", dir=args.workdir or "/var/tmp")
    redis = RedisServer.start(os.path.join(work, "redis"), appendonly=True)
    s3 = SeaweedS3.start(os.path.join(work, "weed"), buckets=(BUCKET,))
    os.environ["ARTIFACTS_S3_ACCESS_KEY_ID"] = s3.access_key
    os.environ["ARTIFACTS_S3_SECRET_ACCESS_KEY"] = s3.secret_key
    configs = [("v1", 1, 256 << 10)] + [(f"v2 {k} KiB", 2, int(k) << 10) for k in args.segments.split(",")]
    default = f"v2 {args.default_segment} KiB"
    if default not in {c[0] for c in configs}:
        configs.append((default, 2, args.default_segment << 10))
    overrides = {"readahead_max": args.readahead_max * MiB} if args.readahead_max else {}
    counter = iter(range(1_000_000))
    results: dict[str, list[float]] = {}

    def record(name: str, value: float) -> None:
        results.setdefault(name, []).append(value)

    try:
        prefixes = {}
        data = os.urandom(MiB)
        for i, (name, fmt, seg) in enumerate(configs):
            prefix = prefixes[name] = f"{{u_1_w_{i + 1}}}:"
            format_volume(redis.url, f"s3://{BUCKET}/v{i}?endpoint={s3.endpoint}&region={s3.region}", f"bench{i}",
                          key_prefix=prefix, trash_days=0, compression=args.compression, block_format=fmt,
                          segment_size=seg)

        def open_cold(name: str):
            cache = os.path.join(work, f"cache{next(counter)}")
            return open_volume(redis.url, key_prefix=prefixes[name],
                               config=profile_config(args.profile, cache_dir=cache, **overrides))

        for name, _, _ in configs:
            vol = open_cold(name)
            with vol.open("data.bin", "wb", buffering=0) as f:
                for _ in range(args.size):
                    f.write(data)
            vol.close()
        keys = asyncio.run(put_objects(s3, min(64, args.size // 4)))
        print(f"{args.size} MiB file (incompressible), profile {args.profile}, {os.cpu_count()} CPUs, "
              f"{args.rounds} rounds; ceiling = bare aiobotocore GETs of 4 MiB, {args.ceiling_concurrency} in flight",
              flush=True)
        for r in range(args.rounds):
            ceil = asyncio.run(ceiling(s3, keys, args.ceiling_concurrency))
            record("ceiling GET", ceil)
            vol = open_cold(default)
            seq = sequential(vol, args.size)
            vol.close()
            record(f"seq read cold ({default})", seq)
            record("seq read cold / ceiling", seq / ceil)
            print(f"round {r + 1}: ceiling {ceil:.0f} MiB/s, path API cold sequential {seq:.0f} MiB/s "
                  f"({seq / ceil:.2f}x)", flush=True)
            for kind, count in (("dense", args.dense), ("sparse", args.sparse)):
                if not count:
                    continue
                v1 = None
                for name, _, _ in configs:
                    vol = open_cold(name)
                    rate, st = random_reads(vol, args.size, count, seed=r)
                    vol.close()
                    v1 = rate if name == "v1" else v1
                    record(f"4k random {kind} {name}", rate)
                    if name != "v1" and v1:
                        record(f"4k random {kind} {name} / v1", rate / v1)
                    print(f"  4k random {kind:6} {name:12} {rate:7.0f} ops/s  GETs: whole {st['downloads']}, "
                          f"table {st['table_downloads']}, ranged {st['segment_downloads']}; "
                          f"{st['download_bytes'] / MiB:.0f} MiB from S3", flush=True)
    finally:
        s3.stop()
        redis.stop()
        shutil.rmtree(work, ignore_errors=True)
    print("medians")
    for name, values in results.items():
        unit = "x" if "/" in name else ("MiB/s" if "seq" in name or "ceiling" in name else "ops/s")
        print(f"  {name:40} {statistics.median(values):9.2f} {unit}   (rounds: "
              f"{', '.join(f'{v:.2f}' for v in values)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
