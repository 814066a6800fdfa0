"""Metadata engine: namespace operations against the bare redis-py ceiling, measured in one run.

    .venv/bin/python -m benchmarks.bench_meta [--ops 10000] [--entries 10000] [--url redis://...]
                                              [--change-records [--no-subscriber]]

Starts its own ``redis-server`` with AOF everysec (as production runs it; DESIGN.md §10) unless
``--url`` is given, formats a workspace, then measures from one process, one operation at a time:

1. the ceiling: a bare redis-py loop of ``FCALL af_noop`` (the cheapest possible function call)
   and of ``GET`` of an attr key, on the same connection settings the engine uses;
2. create, lookup, getattr, rename, unlink, mkdir through ``RedisMetaEngine``, with the round
   trips each cost (the client's counter) and p50/p99 latency;
3. listing a directory of ``--entries`` entries (readdir pages and readdir-plus pages).

Targets (issue 3): exactly one round trip per mutating operation; create >= 0.6x the FCALL
ceiling and getattr >= 0.8x the GET ceiling.

``--change-records`` measures instead what the change records cost (every mutating function
announces its changes on the workspace's channel, ``lua/00_common.lua``: ``change()``): the same
operations through a copy of the library, loaded next to it in the same Redis, whose ``change()``
returns at once (the library as it was before records), in alternating blocks, each workspace
with one subscriber on its channel as a mounted workspace has. Target: a few per cent.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

import redis

from artifacts_core.meta import library
from artifacts_core.meta.attrs import SLICE_INLINE, SliceRecord
from artifacts_core.meta.changes import Subscription
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


#: The commands whose Redis time ``paired`` reports (a function's inner commands are counted in
#: their own lines too, so a GET inside a function counts twice: the same on both sides).
TIMED_COMMANDS = ("fcall", "fcall_ro", "get", "mget")


def server_usec(r: redis.Redis, commands: tuple[str, ...] = TIMED_COMMANDS) -> tuple[int, int]:
    """Total (usec, calls) Redis spent in ``commands`` so far."""
    stats = r.info("commandstats")
    picked = [stats.get(f"cmdstat_{c}", {}) for c in commands]
    return sum(s.get("usec", 0) for s in picked), sum(s.get("calls", 0) for s in picked)


def paired(name: str, n: int, op: Callable[[int], object], ceiling_name: str,
           ceiling: Callable[[int], object], counter: Callable[[], int],
           admin: redis.Redis, ceiling_admin: redis.Redis | None = None,
           commands: tuple[str, ...] = TIMED_COMMANDS) -> tuple[Result, Result]:
    """``op`` and its ``ceiling`` in alternating blocks; Redis time from ``admin`` (and from
    ``ceiling_admin`` for the ceiling when it runs on another server)."""
    cadmin = ceiling_admin or admin
    lat: list[int] = []
    clat: list[int] = []
    trips = 0
    usec = calls = cusec = ccalls = 0
    clock = time.perf_counter_ns
    step = max(1, n // BLOCKS)
    for start in range(0, n, step):
        u0, c0 = server_usec(cadmin, commands)
        for i in range(start, min(n, start + step)):
            t = clock()
            ceiling(i)
            clat.append(clock() - t)
        u1, c1 = server_usec(cadmin, commands)
        u1b, c1b = server_usec(admin, commands)
        before = counter()
        for i in range(start, min(n, start + step)):
            t = clock()
            op(i)
            lat.append(clock() - t)
        trips += counter() - before
        u2, c2 = server_usec(admin, commands)
        cusec, ccalls, usec, calls = cusec + u1 - u0, ccalls + c1 - c0, usec + u2 - u1b, calls + c2 - c1b
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


#: The first line of the change-record helper in the library; the peer library returns right after.
CHANGE_HELPER = "local function change(p, keys, clock, kind, op, ino, parent, name, nparent, nname)\n"
#: Blocks per operation in the change-record comparison, in ABBA order (with, without, without,
#: with, ...), so a drift of the machine's load over the run hits both sides alike.
RECORD_BLOCKS = 40


def library_without_records() -> str:
    """The function library with ``change()`` returning at once -- the library as it was before
    records -- under another library name, its functions renamed ``afn_*``, so it can be loaded
    next to the real one in the same Redis."""
    code = library.library_code()
    if code.count(CHANGE_HELPER) != 1:
        raise SystemExit("bench_meta: the change() helper of 00_common.lua changed; update CHANGE_HELPER")
    code = code.replace(CHANGE_HELPER, CHANGE_HELPER + "  if true then return end  -- the peer: no record\n")
    code = code.replace(f"#!lua name={library.LIBRARY_NAME}\n", f"#!lua name={library.LIBRARY_NAME}_norec\n", 1)
    return renamed_functions(code, "afn_")


def renamed_functions(code: str, prefix: str) -> str:
    """The library's code with its functions' ``af_`` renamed ``prefix``, however each is
    registered (``redis.register_function`` in either form, or the ``register_allow_oom`` helper)."""
    return re.sub(r"((?:register_function|register_allow_oom)\s*\(\s*'|function_name\s*=\s*')af_",
                  rf"\1{prefix}", code)


def helper_cost(url: str, n: int = 100_000) -> tuple[float, float]:
    """Redis time of one ``change()`` call, in µs, without and with one subscriber: a copy of the
    library (functions renamed) plus one function that calls the helper ``n`` times and returns
    the time it took, read from Redis's own clock."""
    code = renamed_functions(library.library_code(), "afh_")
    code = code.replace(f"#!lua name={library.LIBRARY_NAME}\n", f"#!lua name={library.LIBRARY_NAME}_helper\n", 1)
    code += """
redis.register_function('afh_bench_change', function(keys, args)
  local p = prefix_of(keys)
  local _, _, clock = now()
  local t0 = redis.call('TIME')
  for _ = 1, tonumber(args[1]) do change(p, keys, clock, 'e', 'create', '123456', '1', 'file-000001') end
  local t1 = redis.call('TIME')
  return (t1[1] - t0[1]) * 1000000 + (t1[2] - t0[2])
end)
"""
    r = redis.Redis.from_url(url)
    r.execute_command("FUNCTION", "LOAD", "REPLACE", code)
    key = PREFIX + "sess12"  # as a session's call declares it: the record names session 12
    best = []
    for subscribed in (False, True):
        sub = r.pubsub()
        if subscribed:
            sub.execute_command("SSUBSCRIBE", PREFIX + "changes")
        best.append(min(int(r.execute_command("FCALL", "afh_bench_change", 1, key, n)) for _ in range(5)) / n)
        sub.close()
    r.execute_command("FUNCTION", "DELETE", f"{library.LIBRARY_NAME}_helper")
    r.close()
    return best[0], best[1]


class Side:
    """One side of the comparison: its engine, and per block its client and Redis time."""

    def __init__(self, name: str, engine: RedisMetaEngine) -> None:
        self.name, self.m = name, engine
        self.client_us: list[float] = []
        self.server_us: list[float] = []


def run_change_records(url: str, ops: int, *, subscribed: bool = True) -> list[tuple[str, Side, Side]]:
    """Each mutating operation with change records against the same without them: one Redis,
    both libraries loaded, two workspaces (each with one subscriber on its channel, unless not
    ``subscribed``)."""
    admin = redis.Redis.from_url(url)
    sides, subs = [], []
    for i, prefix in enumerate(("{u_1_w_1}:", "{u_1_w_2}:")):
        m = RedisMetaEngine(url, prefix)
        m.format(Setting(name="bench", uuid=new_uuid(), trash_days=0), require_aof=False)
        m.new_session()
        if i == 1:
            admin.execute_command("FUNCTION", "LOAD", "REPLACE", library_without_records())
            call = m.client.call
            m.client.call = lambda fn, *a, _call=call, **kw: _call("afn_" + fn[3:], *a, **kw)
        # as an open volume's feed with the core's listeners only: own records dropped undecoded
        if subscribed:
            sub = Subscription(m.client, deliver=lambda c: None, session=lambda m=m: m.sid,
                               own_wanted=lambda: False)
            sub.start()
            if not sub.wait_subscribed(10):
                raise SystemExit("bench_meta: could not subscribe to the change channel")
            subs.append(sub)
        sides.append(Side("with" if i == 0 else "without", m))
    names = [f"file-{i:06d}" for i in range(ops)]
    files = {id(s.m): [0] * ops for s in sides}
    dirs = {id(s.m): s.m.mkdir(ROOT_INO, "d")[0] for s in sides}

    def create(s, i):
        files[id(s.m)][i] = s.m.create(dirs[id(s.m)], names[i])[0]

    def commit(s, i):
        s.m.commit_slice(files[id(s.m)][i], 0, SliceRecord(0, s.m.new_slice_id(), 100, 0, 100, SLICE_INLINE),
                         data=b"x" * 100)

    kinds = [("create", create),
             ("setattr", lambda s, i: s.m.setattr(files[id(s.m)][i], mode=0o600)),
             ("commit 100 B", commit),
             ("rename", lambda s, i: s.m.rename(dirs[id(s.m)], names[i], dirs[id(s.m)], "r" + names[i])),
             ("unlink", lambda s, i: s.m.unlink(dirs[id(s.m)], "r" + names[i])),
             ("mkdir", lambda s, i: s.m.mkdir(dirs[id(s.m)], names[i]))]
    clock = time.perf_counter_ns
    out = []
    step = max(1, ops // RECORD_BLOCKS)
    for name, op in kinds:
        a, b = Side("with", sides[0].m), Side("without", sides[1].m)
        for k, start in enumerate(range(0, ops, step)):
            for side in ((a, b) if k % 4 in (0, 3) else (b, a)):
                fn = "fcall"
                u0, c0 = server_usec(admin, (fn,))
                t = clock()
                for i in range(start, min(ops, start + step)):
                    op(side, i)
                elapsed = clock() - t
                u1, c1 = server_usec(admin, (fn,))
                n = min(ops, start + step) - start
                side.client_us.append(elapsed / 1000 / n)
                side.server_us.append((u1 - u0) / max(c1 - c0, 1))
        out.append((name, a, b))
    for sub in subs:
        sub.stop()
    for s in sides:
        s.m.close()
    admin.close()
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
    ap.add_argument("--change-records", action="store_true",
                    help="measure the cost of the change records against a library without them")
    ap.add_argument("--no-subscriber", action="store_true",
                    help="with --change-records: nobody subscribes (the records' Redis cost alone, "
                         "without a subscriber's wake-ups competing for the CPU)")
    args = ap.parse_args(argv)
    if args.change_records:
        return change_records_main(args.ops, subscribed=not args.no_subscriber)
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


def change_records_main(ops: int, *, subscribed: bool = True) -> int:
    with tempfile.TemporaryDirectory(prefix="bench-meta-") as tmp, \
            RedisServer.start(tmp, appendonly=True) as server:
        rows = run_change_records(server.url, ops, subscribed=subscribed)
        alone, heard = helper_cost(server.url)
    med = statistics.median
    print(f"change() itself, from Redis's clock (best of 5 x 100,000 calls): {alone:.2f} us per record "
          f"without a subscriber, {heard:.2f} us with one")
    print("the cost of change records: each operation with them vs the same library without them")
    who = "one subscriber per workspace" if subscribed else "no subscriber"
    print(f"(one redis-server with AOF everysec, both libraries loaded, {who};"
          f" {RECORD_BLOCKS} blocks each in ABBA order; medians over blocks)")
    print(f"{'operation':<14}{'client us/op':>14}{'peer':>8}{'ratio':>8}   {'Redis us/call':>14}{'peer':>8}"
          f"{'extra':>8}{'ratio':>8}")
    for name, a, b in rows:
        ratio = med([x / y for x, y in zip(a.client_us, b.client_us, strict=True)])
        sratio = med([x / y for x, y in zip(a.server_us, b.server_us, strict=True) if y])
        print(f"{name:<14}{med(a.client_us):>14.1f}{med(b.client_us):>8.1f}{ratio - 1:>+8.1%}   "
              f"{med(a.server_us):>14.2f}{med(b.server_us):>8.2f}"
              f"{med(a.server_us) - med(b.server_us):>+8.2f}{sratio - 1:>+8.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
