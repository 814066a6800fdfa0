"""Chunk store throughput against the bare aiobotocore ceiling, measured in one run.

    .venv/bin/python -m benchmarks.bench_chunk [--size-mib 512] [--endpoint URL --bucket B ...]

Starts its own SeaweedFS S3 gateway on loopback (``artifacts_core.servers.SeaweedS3``) unless
``--endpoint`` is given, then measures, on the same data:

1. the ceiling: bare aiobotocore PUTs, then GETs, of 4 MiB objects at the chunk store's upload
   concurrency (same client settings as ``S3ObjectStore``: path style, no payload signing);
2. the chunk store writing a stream of 64 MiB slices (1 MiB writes; each slice is finished in the
   background while the next is written, as the VFS flusher will) with lz4 and with no compression;
3. reading it back cold (empty caches; 1 MiB sequential reads driven by ``ReadaheadWindow``);
4. reading it again warm, from the memory cache.

The data is half-compressible: 256-byte random runs alternating with 256-byte constant runs
(lz4 keeps a little over half), a stand-in for mixed real files. Targets (issue 2): write and cold
read >= 0.8x the ceiling; warm read >= 1 GiB/s. Throughput is of logical (uncompressed) bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import random
import statistics
import sys
import tempfile
import time

import lz4.block
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from artifacts_core.aio import LoopThread
from artifacts_core.chunk import ChunkStore, ReadaheadWindow
from artifacts_core.objects.prefix import PrefixedObjectStore
from artifacts_core.objects.s3 import S3ObjectStore
from artifacts_core.servers import SeaweedS3
from artifacts_core.types import CHUNK_SIZE, SliceId

MiB = 1 << 20
BLOCK = 4 * MiB
#: Application write/read size: what a FUSE mount with large requests or a Python program does.
IO_SIZE = 1 * MiB


def half_compressible(size: int, seed: int) -> bytes:
    rng = random.Random(seed)
    noise = rng.randbytes(size // 2 + 256)
    out = bytearray(size)
    view = memoryview(out)
    for i, pos in enumerate(range(0, size, 512)):
        view[pos:pos + 256] = noise[i * 256:i * 256 + 256][: max(0, min(256, size - pos))]
        fill = min(256, max(0, size - pos - 256))
        view[pos + 256:pos + 256 + fill] = bytes([noise[i * 256] | 1]) * fill
    return bytes(out)


async def raw_ceiling(args: argparse.Namespace, blocks: list[bytes]) -> tuple[float, float]:
    """Bare aiobotocore PUT then GET of every block, ``concurrency`` requests in flight."""
    config = AioConfig(s3={"addressing_style": "path", "payload_signing_enabled": False},
                       signature_version="s3v4", request_checksum_calculation="when_required",
                       response_checksum_validation="when_required",
                       max_pool_connections=max(64, args.concurrency))
    sem = asyncio.Semaphore(args.concurrency)
    async with get_session().create_client(
            "s3", region_name=args.region, endpoint_url=args.endpoint, aws_access_key_id=args.access_key,
            aws_secret_access_key=args.secret_key, config=config) as client:
        keys = [f"{args.prefix}ceiling/{i}" for i in range(len(blocks))]

        async def put(key: str, body: bytes) -> None:
            async with sem:
                await client.put_object(Bucket=args.bucket, Key=key, Body=body)

        async def get(key: str) -> int:
            async with sem:
                resp = await client.get_object(Bucket=args.bucket, Key=key)
                async with resp["Body"] as body:
                    return len(await body.read())

        await put(keys[0] + "-warmup", blocks[0])  # connection setup is not part of the ceiling
        t0 = time.perf_counter()
        await asyncio.gather(*(put(k, b) for k, b in zip(keys, blocks, strict=True)))
        t1 = time.perf_counter()
        got = await asyncio.gather(*(get(k) for k in keys))
        t2 = time.perf_counter()
        assert sum(got) == sum(map(len, blocks))
        for k in [*keys, keys[0] + "-warmup"]:
            await client.delete_object(Bucket=args.bucket, Key=k)
    total = sum(map(len, blocks)) / MiB
    return total / (t1 - t0), total / (t2 - t1)


def write_stream(chunks: ChunkStore, slices: list[bytes], first_id: int) -> float:
    """Write every slice in IO_SIZE pieces; finish each in the background; seconds until all stored."""
    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="finisher") as finisher:
        pending = []
        for n, data in enumerate(slices):
            w = chunks.writer(SliceId(first_id + n))
            view = memoryview(data)
            for off in range(0, len(data), IO_SIZE):
                w.write(off, view[off:off + IO_SIZE])
            pending.append(finisher.submit(w.finish))
        for f in pending:
            f.result()
    return time.perf_counter() - t0


def read_stream(chunks: ChunkStore, slices: list[bytes], first_id: int, window_blocks: int,
                check: bool) -> float:
    """Read the slices as one file: sequential IO_SIZE reads, readahead across slice boundaries."""
    ra = ReadaheadWindow(chunks.block_size, max_window=window_blocks * chunks.block_size)
    total = sum(map(len, slices))
    t0 = time.perf_counter()
    for pos in range(0, total, IO_SIZE):
        span = ra.on_read(pos, IO_SIZE)
        if span is not None:
            start, stop = span.offset, min(total, span.offset + span.length)
            while start < stop:  # one prefetch per slice the span touches
                n, off = divmod(start, CHUNK_SIZE)
                length = min(stop - start, CHUNK_SIZE - off)
                chunks.prefetch(SliceId(first_id + n), len(slices[n]), off, length)
                start += length
        n, off = divmod(pos, CHUNK_SIZE)
        got = chunks.read(SliceId(first_id + n), len(slices[n]), off, IO_SIZE)
        if check and got != slices[n][off:off + IO_SIZE]:
            raise SystemExit(f"wrong bytes read at {pos}")
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--concurrency", type=int, default=20, help="uploads in flight (and ceiling requests)")
    parser.add_argument("--endpoint")
    parser.add_argument("--bucket", default="bench")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--access-key")
    parser.add_argument("--secret-key")
    parser.add_argument("--rounds", type=int, default=3,
                        help="repeat everything; the ceiling is re-measured each round (shared hosts are noisy)")
    parser.add_argument("--prefix", default=f"bench-{random.randrange(1 << 30):x}/")
    args = parser.parse_args(argv)

    with contextlib.ExitStack() as stack:
        if args.endpoint is None:
            server = SeaweedS3.start(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-weed-")),
                                     buckets=(args.bucket,))
            stack.callback(server.stop)
            args.endpoint, args.access_key, args.secret_key = server.endpoint, server.access_key, server.secret_key
        run(args)
    return 0


def run(args: argparse.Namespace) -> None:
    n_slices = max(1, args.size_mib // 64)
    slices = [half_compressible(CHUNK_SIZE, seed) for seed in range(n_slices)]
    total = n_slices * CHUNK_SIZE / MiB
    sample = slices[0][:BLOCK]
    kept = len(lz4.block.compress(sample, store_size=False)) / len(sample)
    blocks = [s[i:i + BLOCK] for s in slices for i in range(0, len(s), BLOCK)]
    print(f"data: {total:.0f} MiB = {n_slices} slices x 64 MiB, half-compressible (lz4 keeps {kept:.0%}); "
          f"block 4 MiB; {args.concurrency} requests in flight; app I/O {IO_SIZE // MiB} MiB; "
          f"readahead {args.concurrency} blocks; {args.rounds} rounds (ceiling re-measured each round, "
          f"ratios per round, summary = median); endpoint {args.endpoint}")

    loop = LoopThread("bench-io")
    s3 = S3ObjectStore(args.bucket, endpoint=args.endpoint, region=args.region, access_key=args.access_key,
                       secret_key=args.secret_key, max_pool_connections=max(64, args.concurrency))
    loop.add_cleanup(s3.close)
    results: dict[str, list[float]] = {}

    def record(name: str, rate: float, ceiling: float | None, note: str = "") -> None:
        results.setdefault(name, []).append(rate)
        ratio = ""
        if ceiling:
            results.setdefault(name + " ratio", []).append(rate / ceiling)
            ratio = f"{rate / ceiling:5.2f}x"
        print(f"  {name:<34} {rate:7.0f} MiB/s  {ratio:>6} {note}", flush=True)

    try:
        for r in range(args.rounds):
            print(f"round {r + 1}")
            args.prefix = f"{args.prefix.rstrip('/').split('/r')[0]}/r{r}/"
            put_ceiling, get_ceiling = asyncio.run(raw_ceiling(args, blocks))
            record("ceiling: bare aiobotocore PUT", put_ceiling, None)
            record("ceiling: bare aiobotocore GET", get_ceiling, None)
            store = PrefixedObjectStore(s3, args.prefix)
            for n, compression in enumerate(("none", "lz4")):
                first = 1 + n * 1000
                chunks = ChunkStore(store, loop, compression=compression, upload_concurrency=args.concurrency,
                                    download_concurrency=args.concurrency,
                                    memory_cache_bytes=int(total * MiB) + 256 * MiB)
                rate = total / write_stream(chunks, slices, first)
                record(f"write {compression} (vs PUT ceiling)", rate, put_ceiling)
                chunks.memory_cache.clear()
                rate = total / read_stream(chunks, slices, first, args.concurrency, check=True)
                stats = chunks.stats()
                record(f"cold read {compression} (vs GET ceiling)", rate, get_ceiling,
                       f"{stats['downloads']} GETs, {stats['integrity_errors']} integrity errors")
                if compression == "lz4":
                    rate = total / read_stream(chunks, slices, first, args.concurrency, check=False)
                    record("warm read, memory cache (vs 1 GiB/s)", rate, 1024.0)
                for i in range(n_slices):
                    chunks.remove(SliceId(first + i), CHUNK_SIZE)
                chunks.close()
    finally:
        loop.close()

    print("summary (median over rounds)")
    for name, values in results.items():
        if name.endswith(" ratio"):
            continue
        ratios = results.get(name + " ratio")
        ratio = f"{statistics.median(ratios):5.2f}x" if ratios else ""
        print(f"  {name:<36} {statistics.median(values):7.0f} MiB/s  {ratio:>6}  "
              f"(rounds: {', '.join(f'{v:.0f}' for v in values)})")


if __name__ == "__main__":
    sys.exit(main())
