"""Scale, measured on this machine with everything on loopback (docs/scale.md has the figures).

    .venv/bin/python -m benchmarks.bench_scale orchestrator [--requests 300] [--concurrency 8]
    .venv/bin/python -m benchmarks.bench_scale meta [--ops 5000] [--seconds 10]
    .venv/bin/python -m benchmarks.bench_scale memory [--files 100000]
    .venv/bin/python -m benchmarks.bench_scale acl [--users 100,1000,10000]

1. ``orchestrator``: requests/s of session create and mount-ticket exchange, on SQLite vs
   PostgreSQL, with 1 vs 2 ``python -m artifacts_orchestrator serve`` processes (requests
   alternate between them). Each of the four configurations gets a fresh Redis (AOF everysec, an
   ACL file: every session is an ``ACL SETUSER`` + ``ACL SAVE``) and a fresh database; PostgreSQL
   runs with its durable defaults (fsync, synchronous_commit on), SQLite as the orchestrator runs
   it (WAL, synchronous NORMAL). ``--concurrency`` client threads send the requests.
2. ``meta``: the metadata benchmark (bench_meta: one process, one operation at a time) on a
   standalone redis-server vs a 3-master Redis Cluster, both AOF everysec; then the aggregate of
   three processes creating files at once, each in its own workspace (on the Cluster, each
   workspace's slot on another master).
3. ``memory``: Redis memory per file at ``--files`` files (directories of 1,000): ``used_memory``
   delta per empty file, then per file once each holds 1 KiB of inline data, and ``MEMORY USAGE``
   of each key kind behind it.
4. ``acl``: what one session costs Redis as live sessions grow: ``ACL SETUSER`` with a session
   user's rules plus ``ACL SAVE`` (which rewrites the whole ACL file), with 100 … 10,000 users
   already there, and the memory each user takes.

Every figure is one run on a shared 2-core machine: compare the columns of one run, not runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import redis

from artifacts_core.meta.attrs import SliceRecord
from artifacts_core.meta.engine import RedisMetaEngine
from artifacts_core.meta.format import Setting, new_uuid
from artifacts_core.servers import RedisCluster, RedisServer
from artifacts_core.types import ROOT_INO

ADMIN = "bench-admin-token-0123456789abcdef"

# -- 1. the orchestrator ---------------------------------------------------------------------------


@contextlib.contextmanager
def _orchestrators(n: int, cfg: dict, base: Path):
    """``n`` serve processes on one config (port 0 each); their URLs."""
    path = base / "orchestrator.json"
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(cfg, f)
    procs = []
    try:
        for i in range(n):
            log = open(base / f"orchestrator-{i}.log", "w")  # noqa: SIM115 - closed with the process
            procs.append((subprocess.Popen([sys.executable, "-m", "artifacts_orchestrator", "serve", "--config",
                                            str(path)], stdout=subprocess.PIPE, stderr=log, text=True), log))
        urls = []
        for proc, _ in procs:
            line = proc.stdout.readline().strip()
            if not line.startswith("orchestrator listening on "):
                raise RuntimeError(f"an orchestrator did not start: see {base}")
            urls.append(line.rsplit(" ", 1)[1])
        yield urls
    finally:
        for proc, log in procs:
            proc.terminate()
            proc.wait(timeout=60)
            log.close()


def _rate(n: int, concurrency: int, fn) -> float:
    """Requests/s of ``fn(i)`` for i < n on ``concurrency`` threads."""
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(fn, range(n)))
    return n / (time.perf_counter() - started)


def _orchestrator_config(kind: str, n_procs: int, requests: int, concurrency: int, pg) -> dict[str, float]:
    from artifacts_orchestrator.client import Artifacts
    from artifacts_orchestrator.local import start_redis

    with tempfile.TemporaryDirectory(prefix="bench-orch-") as tmp:
        base = Path(tmp)
        rserver, admin_url = start_redis(base / "redis")
        try:
            cfg = {"redis_url": admin_url, "ticket_keys": str(base / "keys"), "admin_token": ADMIN, "port": 0,
                   "reap_interval": 3600, "sweep_interval": 3600}
            if kind == "postgresql":
                cfg["database_url"] = pg.create_database(f"b{kind[:2]}{n_procs}_{os.getpid()}_{time.time_ns()}")
            else:
                cfg["db"] = str(base / "orchestrator.db")
            with _orchestrators(n_procs, cfg, base) as urls:
                key = Artifacts("", base_url=urls[0]).create_account("bench", admin_token=ADMIN).key.key
                apis = [Artifacts(key, base_url=u) for u in urls]
                anon = [Artifacts("", base_url=u) for u in urls]
                r = apis[0].workspaces.create("w", backend="byo", bucket="bench-bucket",
                                        endpoint="http://127.0.0.1:9")
                fmt = RedisMetaEngine(r.format.url, r.format.key_prefix)
                fmt.format(Setting(name=r.workspace.volume_name, uuid=new_uuid(), trash_days=0), require_aof=False)
                fmt.close()
                apis[-1].workspaces.format_completed("w")
                for i in range(5):  # warm-up: connections, the library, the first signing key
                    apis[i % n_procs].sessions.create("w", ttl_seconds=3600)
                sessions = _rate(requests, concurrency,
                                 lambda i: apis[i % n_procs].sessions.create("w", ttl_seconds=3600))
                tickets = [apis[i % n_procs].platform.create_mount_ticket("acme", "r", workspace="w", ttl_seconds=3600)
                           for i in range(requests)]
                exchanges = _rate(requests, concurrency,
                                  lambda i: anon[i % n_procs].platform.exchange_mount_ticket(tickets[i].mount_ticket))
            return {"session create": sessions, "ticket exchange": exchanges}
        finally:
            rserver.stop()


def bench_orchestrator(args) -> None:
    from artifacts_orchestrator.local import PostgresServer

    with PostgresServer.start(durable=True) as pg:
        results = {}
        for kind in ("sqlite", "postgresql"):
            for n in (1, 2):
                results[(kind, n)] = _orchestrator_config(kind, n, args.requests, args.concurrency, pg)
                print(f"  {kind}, {n} process(es): " + ", ".join(f"{k} {v:,.0f}/s"
                                                              for k, v in results[(kind, n)].items()), flush=True)
    print(f"\norchestrator requests/s ({args.requests} requests per figure, {args.concurrency} client threads)")
    print(f"{'':<18}{'SQLite x1':>11}{'SQLite x2':>11}{'Postgres x1':>13}{'Postgres x2':>13}")
    for what in ("session create", "ticket exchange"):
        print(f"{what:<18}" + "".join(f"{results[(k, n)][what]:>{11 if k == 'sqlite' else 13},.0f}"
                                      for k in ("sqlite", "postgresql") for n in (1, 2)))


# -- 2. metadata: standalone vs Cluster ----------------------------------------------------------------


def _creator(url: str, prefix: str, seconds: float, out) -> None:
    m = RedisMetaEngine(url, prefix)
    m.format(Setting(name="agg", uuid=new_uuid(), trash_days=0), require_aof=False)
    d, _ = m.mkdir(ROOT_INO, "d")
    n, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        m.create(d, f"f{n}")
        n += 1
    m.close()
    out.put(n / seconds)


def _prefixes(url: str, cluster: bool, count: int) -> list[str]:
    """``count`` workspace prefixes; on a Cluster each on another master."""
    if not cluster:
        return [f"{{u_9_w_{i}}}:" for i in range(count)]
    probe = redis.RedisCluster(host="127.0.0.1", port=int(url.split(",")[0].rsplit(":", 1)[1]))
    chosen, owners, i = [], set(), 0
    while len(chosen) < count:
        p = f"{{u_9_w_{i}}}:"
        owner = probe.get_node_from_key(p + "setting").port
        if owner not in owners:
            owners.add(owner)
            chosen.append(p)
        i += 1
    probe.close()
    return chosen


def _aggregate(url: str, cluster: bool, procs: int, seconds: float) -> float:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    workers = [ctx.Process(target=_creator, args=(url, p, seconds, out)) for p in _prefixes(url, cluster, procs)]
    for w in workers:
        w.start()
    total = sum(out.get(timeout=seconds + 120) for _ in workers)
    for w in workers:
        w.join()
    return total


def bench_meta(args) -> None:
    from benchmarks import bench_meta as bm

    rows = {}
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        with RedisServer.start(Path(tmp) / "one", appendonly=True) as one:
            rows["standalone"] = {r.name: r.rate for r, _ in bm.run(one.url, args.ops, 1000)}
            agg_one = _aggregate(one.url, False, 3, args.seconds)
        with RedisCluster.start(Path(tmp) / "cluster", appendonly=True) as cluster:
            rows["cluster"] = {r.name: r.rate for r, _ in bm.run(cluster.url, args.ops, 1000)}
            agg_cluster = _aggregate(cluster.url, True, 3, args.seconds)
    print(f"\nmetadata ops/s, one process, one operation at a time ({args.ops} ops each; AOF everysec)")
    print(f"{'operation':<16}{'standalone':>12}{'3-master cluster':>18}{'ratio':>8}")
    for name in ("create", "lookup", "getattr", "rename", "unlink", "mkdir"):
        a, b = rows["standalone"][name], rows["cluster"][name]
        print(f"{name:<16}{a:>12,.0f}{b:>18,.0f}{b / a:>8.2f}")
    print(f"{'3 processes, create (sum)':<28}{agg_one:>12,.0f}{agg_cluster:>18,.0f}{agg_cluster / agg_one:>8.2f}")


# -- 3. Redis memory per file --------------------------------------------------------------------------


def _kind(key: bytes, prefix: str) -> str:
    rest = key.decode()[len(prefix):]
    m = re.match(r"[a-z]+", rest)
    return m.group(0) if m and rest[len(m.group(0)):][:1].isdigit() else rest


def _usage(r: redis.Redis, prefix: str) -> dict[str, tuple[int, int]]:
    """Key kind -> (keys, bytes by MEMORY USAGE with every element sampled)."""
    kinds: dict[str, list[int]] = {}
    for key in r.scan_iter(match=prefix.replace("{", "\\{").replace("}", "\\}") + "*", count=1000):
        k = kinds.setdefault(_kind(key, prefix), [0, 0])
        k[0] += 1
        k[1] += r.memory_usage(key, samples=0) or 0
    return {k: (v[0], v[1]) for k, v in sorted(kinds.items())}


def bench_memory(args) -> None:
    n, prefix = args.files, "{u_1_w_1}:"
    with tempfile.TemporaryDirectory(prefix="bench-mem-") as tmp, RedisServer.start(tmp) as server:
        m = RedisMetaEngine(server.url, prefix)
        m.format(Setting(name="mem", uuid=new_uuid(), trash_days=0, inline_cap=1 << 30), require_aof=False)
        r = redis.Redis(port=server.port)
        dirs = [m.mkdir(ROOT_INO, f"dir{i:04d}")[0] for i in range((n + 999) // 1000)]
        base = _usage(r, prefix)
        used0 = r.info("memory")["used_memory"]
        inos = [m.create(dirs[i // 1000], f"file-{i:06d}.txt")[0] for i in range(n)]
        used1 = r.info("memory")["used_memory"]
        empty = _usage(r, prefix)
        data = os.urandom(1024)
        for ino in inos:
            m.commit_slice(ino, 0, SliceRecord(pos=0, id=m.new_slice_id(), size=1024, off=0, len=1024), data=data)
        used2 = r.info("memory")["used_memory"]
        inline = _usage(r, prefix)
        m.close()
    print(f"\nRedis memory per file at {n:,} files (directories of 1,000; redis-server {_version()})")
    print(f"  empty file:        {(used1 - used0) / n:7.0f} B  (INFO used_memory delta / files)")
    print(f"  with 1 KiB inline: {(used2 - used0) / n:7.0f} B")
    print("  MEMORY USAGE by key kind, bytes per file (empty -> with 1 KiB inline):")
    for kind in sorted(set(empty) | set(inline)):
        e = empty.get(kind, (0, 0))[1] - base.get(kind, (0, 0))[1]
        i = inline.get(kind, (0, 0))[1] - base.get(kind, (0, 0))[1]
        if abs(e) > n or abs(i) > n:  # at least a byte per file
            print(f"    {kind:<14}{e / n:8.0f}{i / n:8.0f}   ({inline.get(kind, (0, 0))[0]:,} keys)")


def bench_acl(args) -> None:
    from artifacts_orchestrator.local import start_redis
    from artifacts_orchestrator.redis_acl import acl_rules

    rules = acl_rules("{u_1_w_1}:", read_only=False, sids=range(1, 9))
    print(f"\nACL SETUSER + ACL SAVE per session, by live ACL users (redis-server {_version()}, ACL file)")
    print(f"{'users':>8}{'ms per session':>16}{'bytes per user':>16}{'ACL file MB':>13}")
    with tempfile.TemporaryDirectory(prefix="bench-acl-") as tmp:
        server, url = start_redis(Path(tmp) / "redis")
        try:
            r = redis.Redis.from_url(url, socket_timeout=300)
            have = 0
            for target in (int(x) for x in args.users.split(",")):
                used0 = r.info("memory")["used_memory"]
                pipe = r.pipeline(transaction=False)
                for i in range(have, target):
                    pipe.execute_command("ACL", "SETUSER", f"ms-fill{i}", "reset", "on", "#" + "0" * 64, *rules)
                pipe.execute()
                per_user = (r.info("memory")["used_memory"] - used0) / max(target - have, 1)
                have = target
                r.execute_command("ACL", "SAVE")
                started = time.perf_counter()
                for i in range(20):
                    r.execute_command("ACL", "SETUSER", f"ms-probe{i}", "reset", "on", "#" + "1" * 64, *rules)
                    r.execute_command("ACL", "SAVE")
                took = (time.perf_counter() - started) / 20 * 1000
                r.execute_command("ACL", "DELUSER", *[f"ms-probe{i}" for i in range(20)])
                size = (Path(tmp) / "redis" / "users.acl").stat().st_size / 1e6
                print(f"{target:>8,}{took:>16.2f}{per_user:>16,.0f}{size:>13.1f}", flush=True)
            r.close()
        finally:
            server.stop()


def _version() -> str:
    out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
    m = re.search(r"v=(\S+)", out)
    return m.group(1) if m else "?"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="part", required=True)
    o = sub.add_parser("orchestrator")
    o.add_argument("--requests", type=int, default=300)
    o.add_argument("--concurrency", type=int, default=8)
    mt = sub.add_parser("meta")
    mt.add_argument("--ops", type=int, default=5000)
    mt.add_argument("--seconds", type=float, default=10.0)
    mem = sub.add_parser("memory")
    mem.add_argument("--files", type=int, default=100_000)
    acl = sub.add_parser("acl")
    acl.add_argument("--users", default="100,1000,10000")
    args = ap.parse_args(argv)
    {"orchestrator": bench_orchestrator, "meta": bench_meta, "memory": bench_memory,
     "acl": bench_acl}[args.part](args)
    return 0


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    sys.exit(main())
