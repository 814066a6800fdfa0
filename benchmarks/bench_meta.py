"""Metadata engine: namespace operations against the bare redis-py ceiling, measured in one run.

    .venv/bin/python -m benchmarks.bench_meta [--ops 10000] [--entries 10000] [--url redis://...]

Starts its own ``redis-server`` with AOF everysec (as production runs it; DESIGN.md §10) unless
``--url`` is given, formats a workspace, then measures from one process, one operation at a time:

1. the ceiling: a bare redis-py loop of ``FCALL af_noop`` (the cheapest possible function call)
   and of ``GET`` of an attr key, on the same connection settings the engine uses;
2. create, lookup, getattr, rename, unlink, mkdir through ``RedisMetaEngine``, with the round
   trips each cost (the client's counter) and p50/p99 latency;
3. listing a directory of ``--entries`` entries (readdir pages and readdir-plus pages).

Targets (issue 3): exactly one round trip per mutating operation; create >= 0.6x the FCALL
ceiling and getattr >= 0.8x the GET ceiling.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable

import redis

from artifacts_core.meta.engine import RedisMetaEngine
from artifacts_core.meta.format import Setting, new_uuid
from artifacts_core.servers import RedisServer
from artifacts_core.types import ROOT_INO

PREFIX = "{u_1_w_1}:"


class Result:
    def __init__(self, name: str, lat_ns: list[int], trips: int, unit: str = "op") -> None:
        self.name, self.lat, self.trips, self.unit = name, sorted(lat_ns), trips, unit
        self.server_us = 0.0  # Redis's own time per call (INFO commandstats), when measured

    @property
    def rate(self) -> float:
        return len(self.lat) / (sum(self.lat) / 1e9)

    def pct(self, q: float) -> float:
        return self.lat[min(len(self.lat) - 1, int(q * len(self.lat)))] / 1000

    @property
    def trips_per(self) -> float:
        return self.trips / len(self.lat)


def timed(name: str, n: int, op: Callable[[int], object], counter: Callable[[], int] | None = None,
          unit: str = "op") -> Result:
    lat = []
    before = counter() if counter else 0
    clock = time.perf_counter_ns
    for i in range(n):
        t = clock()
        op(i)
        lat.append(clock() - t)
    return Result(name, lat, (counter() - before) if counter else n, unit)


#: Each operation is measured in blocks alternating with its ceiling loop, so both see the same
#: machine load (other processes, AOF rewrites): a ratio from one stretch of time is honest.
BLOCKS = 20


def server_usec(r: redis.Redis) -> tuple[int, int]:
    """Total (usec, calls) Redis spent in FCALL/FCALL_RO/GET/MGET so far."""
    stats = r.info("commandstats")
    picked = [stats.get(f"cmdstat_{c}", {}) for c in ("fcall", "fcall_ro", "get", "mget")]
    return sum(s.get("usec", 0) for s in picked), sum(s.get("calls", 0) for s in picked)


def paired(name: str, n: int, op: Callable[[int], object], ceiling_name: str,
           ceiling: Callable[[int], object], counter: Callable[[], int],
           admin: redis.Redis) -> tuple[Result, Result]:
    lat: list[int] = []
    clat: list[int] = []
    trips = 0
    usec = calls = cusec = ccalls = 0
    clock = time.perf_counter_ns
    step = max(1, n // BLOCKS)
    for start in range(0, n, step):
        u0, c0 = server_usec(admin)
        for i in range(start, min(n, start + step)):
            t = clock()
            ceiling(i)
            clat.append(clock() - t)
        u1, c1 = server_usec(admin)
        before = counter()
        for i in range(start, min(n, start + step)):
            t = clock()
            op(i)
            lat.append(clock() - t)
        trips += counter() - before
        u2, c2 = server_usec(admin)
        cusec, ccalls, usec, calls = cusec + u1 - u0, ccalls + c1 - c0, usec + u2 - u1, calls + c2 - c1
    r, c = Result(name, lat, trips), Result(ceiling_name, clat, len(clat))
    r.server_us, c.server_us = usec / max(calls, 1), cusec / max(ccalls, 1)
    return r, c


def run(url: str, ops: int, entries: int) -> list[tuple[Result, Result | None]]:
    m = RedisMetaEngine(url, PREFIX)
    m.format(Setting(name="bench", uuid=new_uuid(), trash_days=0), require_aof=False)
    rt = lambda: m.client.round_trips  # noqa: E731

    # the ceiling: bare redis-py on a connection like the engine's (same host, hiredis parser)
    kw = m.client.node().connection_pool.connection_kwargs
    bare = redis.Redis(host=kw["host"], port=kw["port"], db=kw.get("db", 0))
    admin = redis.Redis(host=kw["host"], port=kw["port"], db=kw.get("db", 0))  # INFO, outside the timing
    setting, attr_key = m.keys.setting, m.keys.inode(ROOT_INO)
    for _ in range(1000):  # warm-up: connections, function cache
        bare.execute_command("FCALL", "af_noop", 1, setting)
        m.getattr(ROOT_INO)

    def fcall(i):
        return bare.execute_command("FCALL", "af_noop", 1, setting)

    def get(i):
        return bare.execute_command("GET", attr_key)

    d, _ = m.mkdir(ROOT_INO, "bench")
    dirs, _ = m.mkdir(ROOT_INO, "dirs")
    names = [f"file-{i:06d}" for i in range(ops)]
    inos: list[int] = [0] * ops

    def create(i):
        inos[i] = m.create(d, names[i])[0]

    out = [
        paired("create", ops, create, "FCALL noop", fcall, rt, admin),
        paired("lookup", ops, lambda i: m.lookup(d, names[i]), "FCALL noop", fcall, rt, admin),
        paired("getattr", ops, lambda i: m.getattr(inos[i]), "GET", get, rt, admin),
        paired("rename", ops, lambda i: m.rename(d, names[i], d, "r" + names[i]), "FCALL noop", fcall, rt, admin),
        paired("unlink", ops, lambda i: m.unlink(d, "r" + names[i]), "FCALL noop", fcall, rt, admin),
        paired("mkdir", ops, lambda i: m.mkdir(dirs, names[i]), "FCALL noop", fcall, rt, admin),
    ]

    big, _ = m.mkdir(ROOT_INO, "big")
    for i in range(entries):
        m.create(big, f"entry-{i:06d}")
    listings = max(5, 200_000 // entries)  # enough listings for a stable p99, bounded time

    def listing(plus: bool) -> Callable[[int], object]:
        def op(i):
            n = sum(1 for _ in m.listdir(big, plus=plus))
            assert n == entries
        return op

    out.append((timed(f"readdir {entries}", listings, listing(False), rt, "listing"), None))
    out.append((timed(f"readdir+ {entries}", listings, listing(True), rt, "listing"), None))
    bare.close()
    admin.close()
    m.close()
    return out


def report(rows: list[tuple[Result, Result | None]], aof: str, entries: int) -> None:
    print(f"metadata engine vs bare redis-py, one process, one op at a time ({aof})")
    print("(server us: Redis's own time per call, from INFO commandstats)")
    print(f"{'operation':<18}{'ops/s':>10}{'p50 us':>9}{'p99 us':>9}{'RT/op':>7}{'server us':>10}   "
          f"{'ceiling':<11}{'ops/s':>9}{'p50 us':>8}{'server us':>10}   ratio")
    for r, c in rows:
        if r.unit == "op":
            print(f"{r.name:<18}{r.rate:>10,.0f}{r.pct(0.5):>9.1f}{r.pct(0.99):>9.1f}{r.trips_per:>7.2f}"
                  f"{r.server_us:>10.1f}   {c.name:<11}{c.rate:>9,.0f}{c.pct(0.5):>8.1f}{c.server_us:>10.1f}"
                  f"   {r.rate / c.rate:.2f}x")
        else:
            print(f"{r.name:<18}{r.rate:>8.1f}/s{r.pct(0.5) / 1000:>7.1f}ms{r.pct(0.99) / 1000:>7.1f}ms"
                  f"{r.trips_per:>7.1f}   per listing; {r.rate * entries:,.0f} entries/s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=10_000, help="operations per measured kind")
    ap.add_argument("--entries", type=int, default=10_000, help="entries of the listed directory")
    ap.add_argument("--url", help="an existing Redis (default: start one with AOF everysec)")
    args = ap.parse_args(argv)
    if args.url:
        rows = run(args.url, args.ops, args.entries)
        report(rows, "given Redis", args.entries)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-meta-") as tmp, \
                RedisServer.start(tmp, appendonly=True) as server:
            rows = run(server.url, args.ops, args.entries)
            report(rows, "redis-server, AOF everysec", args.entries)
    by_name = {r.name: (r, c) for r, c in rows}
    ok = True
    for name, floor in (("create", 0.6), ("getattr", 0.8)):
        r, c = by_name[name]
        if r.rate < floor * c.rate:
            print(f"below target: {name} {r.rate / c.rate:.2f}x < {floor}x", file=sys.stderr)
            ok = False
    for name in ("create", "rename", "unlink", "mkdir", "lookup", "getattr"):
        if by_name[name][0].trips_per != 1:
            print(f"not one round trip: {name} {by_name[name][0].trips_per}", file=sys.stderr)
            ok = False
    print("targets met" if ok else "targets missed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
