"""Workspace history: checkpoint cost vs workspace size, per-operation overhead after a
checkpoint, Redis memory per checkpoint vs what changed — each against a peer in the same run.

    .venv/bin/python -m benchmarks.bench_history [--files 100000] [--ops 2000] [--url redis://...]

Starts its own ``redis-server`` with AOF everysec (DESIGN.md §10) unless ``--url`` is given, and
measures the metadata engine (the whole cost of history is there: a checkpoint makes no S3
request, and copy-on-write runs inside the functions):

1. checkpoint create at 100 files vs at ``--files`` files: client latency (median, p99 of 50
   creates) and Redis's own time per call (INFO commandstats: how long Redis is blocked);
2. per-operation overhead: two identical workspaces, one with a checkpoint taken after its
   files were made; create, write (an inline commit to an existing file: its first change after
   the checkpoint preserves its attr and chunk list) and rename run alternately on both, so noise
   hits both alike; ratio = with / without (goal <= 1.10); and (2b, when it starts its own
   servers) each side on its own redis-server, so Redis's own time per call is compared too;
3. Redis memory of the history keys (``hx*``, ``hk*``) after changing k files (k = 0, 100, 1000)
   since a checkpoint: bytes per changed file.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

import redis

from artifacts_core.meta.attrs import SLICE_INLINE, SliceRecord
from artifacts_core.meta.engine import RedisMetaEngine
from artifacts_core.meta.format import Setting, new_uuid
from artifacts_core.servers import RedisServer
from artifacts_core.types import ROOT_INO, Ino

#: Files made per pipelined batch while filling a workspace (setup only, not measured).
FILL_BATCH = 500


def fresh(url: str, n: int) -> RedisMetaEngine:
    m = RedisMetaEngine(url, f"{{u_9_w_{n}}}:")
    m.format(Setting(name=f"bench{n}", uuid=new_uuid(), trash_days=0), require_aof=False)
    return m


def fill(m: RedisMetaEngine, parent: Ino, count: int, prefix: str = "f") -> list[Ino]:
    """``count`` files, created through the create function in pipelined batches (setup)."""
    inos: list[Ino] = []
    node = m.client.node()
    for start in range(0, count, FILL_BATCH):
        pipe = node.pipeline(transaction=False)
        for i in range(start, min(count, start + FILL_BATCH)):
            pipe.execute_command("FCALL", "af_create", 1, m.keys.setting, str(parent), f"{prefix}{i:07d}",
                                 "8", "420", "0", "0", "0", "1", "", "0")
        for reply in pipe.execute():
            inos.append(Ino(int(reply[0])))
    return inos


def server_usec(admin: redis.Redis, function: str) -> tuple[int, int]:
    stats = admin.info("commandstats")
    row = stats.get("cmdstat_fcall", {})
    return int(row.get("usec", 0)), int(row.get("calls", 0))


def main_cpu_us(admin: redis.Redis) -> float:
    """CPU time the server's main thread has used (where functions run), in µs: unlike the wall
    time of commandstats, not inflated when the machine's other load deschedules the server."""
    cpu = admin.info("cpu")
    return (float(cpu["used_cpu_user_main_thread"]) + float(cpu["used_cpu_sys_main_thread"])) * 1e6


def inner_calls(admin: redis.Redis) -> int:
    """Commands run inside functions so far (every command but FCALL itself and INFO): a count,
    so it compares the two sides exactly whatever the machine's load."""
    return sum(int(v["calls"]) for k, v in admin.info("commandstats").items()
               if k not in ("cmdstat_fcall", "cmdstat_info"))


def time_creates(m: RedisMetaEngine, admin: redis.Redis, label: str, n: int = 50) -> dict:
    lat = []
    u0, c0 = server_usec(admin, "fcall")
    for i in range(n):
        t = time.perf_counter_ns()
        m.checkpoint_create(f"{label}-{i}")
        lat.append(time.perf_counter_ns() - t)
    u1, c1 = server_usec(admin, "fcall")
    lat.sort()
    return {"p50_ms": lat[n // 2] / 1e6, "p99_ms": lat[min(n - 1, int(n * 0.99))] / 1e6,
            "server_us": (u1 - u0) / max(1, c1 - c0)}


def part1(url: str, files: int, admin: redis.Redis) -> None:
    small, large = fresh(url, 1), fresh(url, 2)
    fill(small, ROOT_INO, 100)
    t = time.perf_counter()
    fill(large, ROOT_INO, files)
    print(f"(setup: {files} files in {time.perf_counter() - t:.1f} s)")
    a = time_creates(small, admin, "s")
    b = time_creates(large, admin, "l")
    print("\n1. checkpoint create (50 each)")
    print(f"{'files':>10}{'p50 ms':>10}{'p99 ms':>10}{'Redis us/call':>15}")
    print(f"{100:>10}{a['p50_ms']:>10.3f}{a['p99_ms']:>10.3f}{a['server_us']:>15.1f}")
    print(f"{files:>10}{b['p50_ms']:>10.3f}{b['p99_ms']:>10.3f}{b['server_us']:>15.1f}")
    print(f"ratio {files} / 100 files (p50): {b['p50_ms'] / a['p50_ms']:.2f}  (goal: ~1, both < 10 ms)")
    for m in (small, large):
        m.close()


def part2(url: str, ops: int, url_hist: str = "") -> None:
    """``url_hist``: a second server for the side with the checkpoint, so each server's own time
    per call (INFO commandstats) is one side's: the overhead without the client, the network and
    the machine's other load, which the client-side ratio carries."""
    plain, hist = fresh(url, 3), fresh(url_hist or url, 4)
    admins = {plain.keys.prefix: redis.Redis.from_url(url), hist.keys.prefix: redis.Redis.from_url(url_hist or url)}
    sides = {}
    for m in (plain, hist):
        d, _ = m.mkdir(ROOT_INO, "work")
        inos = fill(m, d, ops, "old")
        sides[m.keys.prefix] = (d, inos)
    hist.checkpoint_create("base")
    ids = {m.keys.prefix: m.new_slice_ids(ops + 10) for m in (plain, hist)}
    timings: dict[str, dict[str, list[int]]] = {"create": {}, "write": {}, "rename": {}}

    def measure(kind: str, m: RedisMetaEngine, i: int) -> int:
        d, inos = sides[m.keys.prefix]
        t = time.perf_counter_ns()
        if kind == "create":
            m.create(d, f"new{i:07d}")
        elif kind == "write":
            sid = ids[m.keys.prefix][i]
            m.commit_slice(inos[i], 0, SliceRecord(0, sid, 100, 0, 100, SLICE_INLINE), data=b"x" * 100)
        else:
            m.rename(d, f"old{i:07d}", d, f"moved{i:07d}")
        return time.perf_counter_ns() - t

    served: dict[str, dict[str, float]] = {kind: {} for kind in timings}
    cpu: dict[str, dict[str, float]] = {kind: {} for kind in timings}
    inner: dict[str, dict[str, float]] = {kind: {} for kind in timings}
    for kind in timings:
        before = {k: server_usec(a, "fcall") for k, a in admins.items()}
        cpu0 = {k: main_cpu_us(a) for k, a in admins.items()}
        calls0 = {k: inner_calls(a) for k, a in admins.items()}
        for m in (plain, hist):
            timings[kind][m.keys.prefix] = []
        for i in range(ops):  # alternate: the same noise hits both sides
            for m in ((plain, hist) if i % 2 else (hist, plain)):
                timings[kind][m.keys.prefix].append(measure(kind, m, i))
        for k, a in admins.items():
            u, c = server_usec(a, "fcall")
            served[kind][k] = (u - before[k][0]) / max(1, c - before[k][1])
            cpu[kind][k] = (main_cpu_us(a) - cpu0[k]) / ops
            inner[kind][k] = (inner_calls(a) - calls0[k]) / ops
    print(f"\n2. per-operation cost, {ops} ops each, first change of each file after the checkpoint")
    print(f"{'op':<8}{'no ckpt us':>12}{'after ckpt us':>15}{'ratio (mean)':>14}{'ratio (p50)':>13}")
    for kind, by in timings.items():
        a, b = by[plain.keys.prefix], by[hist.keys.prefix]
        ratio_mean = statistics.mean(b) / statistics.mean(a)
        ratio_p50 = statistics.median(b) / statistics.median(a)
        print(f"{kind:<8}{statistics.mean(a) / 1000:>12.1f}{statistics.mean(b) / 1000:>15.1f}"
              f"{ratio_mean:>14.3f}{ratio_p50:>13.3f}")
    print("goal: ratio <= 1.10")
    if url_hist:
        print("\n2b. Redis's own time per call (each side on its own server, INFO commandstats)")
        print(f"{'op':<8}{'no ckpt us':>12}{'after ckpt us':>15}{'ratio':>8}"
              f"{'cpu no ckpt us':>16}{'cpu after us':>14}{'cpu ratio':>11}")
        for kind, by_side in served.items():
            a_us, b_us = by_side[plain.keys.prefix], by_side[hist.keys.prefix]
            a_cpu, b_cpu = cpu[kind][plain.keys.prefix], cpu[kind][hist.keys.prefix]
            print(f"{kind:<8}{a_us:>12.1f}{b_us:>15.1f}{b_us / a_us:>8.3f}"
                  f"{a_cpu:>16.1f}{b_cpu:>14.1f}{b_cpu / a_cpu:>11.3f}")
        print("\n2c. Redis commands run inside each call (exact; INFO commandstats)")
        print(f"{'op':<8}{'no ckpt':>10}{'after ckpt':>12}{'ratio':>8}")
        for kind, by_side in inner.items():
            a_n, b_n = by_side[plain.keys.prefix], by_side[hist.keys.prefix]
            print(f"{kind:<8}{a_n:>10.2f}{b_n:>12.2f}{b_n / a_n:>8.3f}")
    for a in admins.values():
        a.close()
    plain.close()
    hist.close()


def history_bytes(m: RedisMetaEngine) -> int:
    node = m.client.node()
    total = 0
    for pattern in ("hx*", "hk*"):
        for key in node.scan_iter(match=m.keys.pattern[:-1] + pattern, count=1000):
            total += int(node.memory_usage(key, samples=0) or 0)
    return total


def part3(url: str) -> None:
    print("\n3. Redis memory of history keys vs what changed since the checkpoint")
    print(f"{'files':>8}{'changed':>9}{'history bytes':>15}{'per changed file':>18}")
    for k in (0, 100, 1000):
        m = fresh(url, 10 + k)
        d, _ = m.mkdir(ROOT_INO, "work")
        inos = fill(m, d, 2000, "f")
        m.checkpoint_create("base")
        sids = m.new_slice_ids(k + 1)
        for i in range(k):
            m.commit_slice(inos[i], 0, SliceRecord(0, sids[i], 100, 0, 100, SLICE_INLINE), data=b"y" * 100)
        used = history_bytes(m)
        per = used / k if k else 0
        print(f"{2000:>8}{k:>9}{used:>15,}{per:>18,.0f}")
        m.close()
    print("(a write preserves the file's attr and chunk list once; the directory was not changed)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--ops", type=int, default=2000)
    ap.add_argument("--url", default="")
    args = ap.parse_args(argv)

    def run(url: str, url_hist: str = "") -> None:
        admin = redis.Redis.from_url(url)
        part1(url, args.files, admin)
        part2(url, args.ops, url_hist)
        part3(url)

    if args.url:
        run(args.url)
    else:
        with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory() as tmp2, \
                RedisServer.start(tmp, appendonly=True) as server, RedisServer.start(tmp2, appendonly=True) as other:
            print("redis-server, AOF everysec (two: part 2b times each side's server on its own)")
            run(server.url, other.url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
