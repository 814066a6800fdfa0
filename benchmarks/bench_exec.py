"""Sandbox start-up overhead: the same command run directly on a workspace's mount and through
``Executor.run`` (bubblewrap sandbox on the warm mount), in the same run.

    .venv/bin/python -m benchmarks.bench_exec [--runs 50]

Starts its own redis-server and SeaweedFS, formats a workspace, mounts it once (the executor's
warm mount), then alternates: ``sh -c 'cat a.txt >/dev/null'`` with the mount as working directory
(the peer), the same in the sandbox (shared run: snapshots before and after included), and as a
transaction (overlay + commit of nothing). Reports p50/p90 of each and the p50 overheads; the goal
is a shared run's p50 overhead <= 100 ms. Also the per-run mount cost, which is why the mount
is kept warm.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
import uuid

from artifacts_core.servers import RedisServer, SeaweedS3
from artifacts_core.volume import format_volume, open_volume

CMD = "cat a.txt >/dev/null"


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=50)
    args = ap.parse_args()
    from artifacts_fuse import MountSettings, mount, unmount
    from artifacts_fuse.exec import Executor

    with tempfile.TemporaryDirectory(prefix="bench-exec-") as tmp:
        os.environ["XDG_STATE_HOME"] = os.path.join(tmp, "state")
        os.environ["XDG_CACHE_HOME"] = os.path.join(tmp, "cache")
        redis = RedisServer.start(os.path.join(tmp, "redis"))
        s3 = SeaweedS3.start(os.path.join(tmp, "weed"), buckets=("bench",))
        try:
            os.environ["ARTIFACTS_S3_ACCESS_KEY_ID"] = s3.access_key
            os.environ["ARTIFACTS_S3_SECRET_ACCESS_KEY"] = s3.secret_key
            storage = f"s3://bench/{uuid.uuid4().hex[:8]}?endpoint={s3.endpoint}&region={s3.region}"
            prefix = "{u_1_w_1}:"
            format_volume(redis.url, storage, "bench", key_prefix=prefix, require_aof=False, trash_days=0)
            vol = open_volume(redis.url, storage, key_prefix=prefix, require_aof=False)
            vol.write_bytes("a.txt", b"hello\n" * 100)
            for i in range(20):
                vol.write_bytes(f"f{i}.txt", b"x")
            ex = Executor(vol, work_dir=os.path.join(tmp, "work"))
            mp = ex.mountpoint()
            ex.run(["/bin/sh", "-c", CMD])  # warm: probe, first lookups
            direct, shared, txn = [], [], []
            for _ in range(args.runs):
                t = time.perf_counter()
                subprocess.run(["/bin/sh", "-c", CMD], cwd=mp, check=True)
                direct.append(time.perf_counter() - t)
                t = time.perf_counter()
                r = ex.run(["/bin/sh", "-c", CMD])
                shared.append(time.perf_counter() - t)
                assert r.exit_code == 0, r.stderr
                t = time.perf_counter()
                r = ex.run(["/bin/sh", "-c", CMD], isolated=True)
                txn.append(time.perf_counter() - t)
                assert r.committed is True, r
            # what a per-run mount would cost
            mounts = []
            for i in range(3):
                m2 = os.path.join(tmp, f"m{i}")
                os.mkdir(m2)
                src = vol.source
                t = time.perf_counter()
                mount(MountSettings(meta_url=src.meta_url, key_prefix=prefix, workspace="bench",
                                    storage_url=storage, require_aof=False, config=src.config), m2)
                subprocess.run(["/bin/sh", "-c", CMD], cwd=m2, check=True)
                unmount(m2)
                mounts.append(time.perf_counter() - t)
            ex.close()
            vol.close()
        finally:
            s3.stop()
            redis.stop()
    print(f"{'runs of sh -c ' + repr(CMD):40s} {'p50 ms':>9s} {'p90 ms':>9s}")
    for name, xs in (("direct on the mount (peer)", direct), ("sandbox, shared run", shared),
                     ("sandbox, transaction", txn), ("per-run mount + run + unmount", mounts)):
        print(f"{name:40s} {pct(xs, 50) * 1000:9.1f} {pct(xs, 90) * 1000:9.1f}")
    print(f"p50 overhead, shared run:      {(pct(shared, 50) - pct(direct, 50)) * 1000:.1f} ms (goal <= 100)")
    print(f"p50 overhead, transaction:     {(pct(txn, 50) - pct(direct, 50)) * 1000:.1f} ms")
    print(f"mean direct {statistics.mean(direct) * 1000:.1f} ms over {len(direct)} runs")


if __name__ == "__main__":
    main()
