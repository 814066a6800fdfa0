"""The workspace journal's cost: per mutating operation against the same library with the journal
off, Redis memory per event, and how soon a follower sees a change.

1. Overhead: each mutating operation (create, setattr, commit 100 B, rename, unlink, mkdir)
   through the library against a copy of it whose ``journal()`` helper returns at once (change
   records still published: the peer is the library as it was before the journal), both loaded in
   one redis-server with AOF everysec, in ABBA blocks (``bench_meta.run_change_records``); client
   time per operation and Redis time per call, medians. Goal: <= 10 % per operation.
2. Memory: ``MEMORY USAGE`` of the journal list (exact) and the change of ``used_memory`` after
   ``--events`` typical records (creates of 12-character names, commits with lengths).
3. Follow latency: a follower in another process iterates ``Journal.events(follow=True)`` and
   stamps CLOCK_MONOTONIC (shared by processes on Linux) as each event arrives; this process
   makes one change at a time (``--changes`` of them, 20 ms apart) and stamps when each call
   started. p50/p99 of arrival - start. Goal: p99 <= 50 ms.

4. The read audit (opt-in, ``journal_reads``): ``af_open`` for reading on a workspace with the
   audit on against one with it off, the same session client and redis-server, ABBA blocks of
   ``--opens`` opens; client time per open and Redis time per call (``INFO commandstats`` after a
   ``CONFIG RESETSTAT`` per block), medians; and ``MEMORY USAGE`` per read record.

Run: ``.venv/bin/python -m benchmarks.bench_journal [--ops 3000] [--events 50000] [--changes 500]
[--opens 2000]``
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time

import redis

from artifacts_core.meta import library
from artifacts_core.meta.engine import RedisMetaEngine
from artifacts_core.meta.format import Setting, new_uuid
from artifacts_core.meta.journal import Journal
from artifacts_core.servers import RedisServer
from artifacts_core.types import ROOT_INO
from benchmarks.bench_meta import RECORD_BLOCKS, run_change_records

#: The journal helper's first line in the library; the peer returns right after it.
JOURNAL_HELPER = "local function journal(p, r)\n"


def library_without_journal() -> str:
    """The library with ``journal()`` returning at once, as library ``artifacts_nojournal`` with
    its functions renamed ``afn_*`` (loaded beside the real one)."""
    import re

    code = library.library_code()
    if code.count(JOURNAL_HELPER) != 1:
        raise SystemExit("bench_journal: the journal() helper of 00_common.lua changed; update JOURNAL_HELPER")
    code = code.replace(JOURNAL_HELPER, JOURNAL_HELPER + "  if true then return end  -- the peer: no journal\n")
    code = code.replace(f"#!lua name={library.LIBRARY_NAME}\n", f"#!lua name={library.LIBRARY_NAME}_nojournal\n", 1)
    return re.sub(r"(register_function\s*\(\s*'|register_allow_oom\s*\(\s*'|function_name\s*=\s*')af_", r"\1afn_", code)


def overhead(url: str, ops: int) -> bool:
    med = statistics.median
    rows = run_change_records(url, ops, peer=library_without_journal())
    print("1. overhead: each operation journaled vs the same library with journal() returning at once")
    print(f"   (one redis-server, AOF everysec, both libraries, a subscriber per workspace; {RECORD_BLOCKS} "
          "ABBA blocks; medians)")
    print(f"   {'operation':<14}{'client us/op':>14}{'peer':>8}{'ratio':>8}   {'Redis us/call':>14}{'peer':>8}"
          f"{'extra':>8}")
    ok = True
    for name, a, b in rows:
        ratio = med([x / y for x, y in zip(a.client_us, b.client_us, strict=True)])
        print(f"   {name:<14}{med(a.client_us):>14.1f}{med(b.client_us):>8.1f}{ratio - 1:>+8.1%}   "
              f"{med(a.server_us):>14.2f}{med(b.server_us):>8.2f}{med(a.server_us) - med(b.server_us):>+8.2f}")
        ok = ok and ratio <= 1.10
    return ok


def memory(url: str, events: int) -> None:
    r = redis.Redis.from_url(url)
    prefix = "{u_2_w_1}:"
    m = RedisMetaEngine(url, prefix)
    m.format(Setting(name="mem", uuid=new_uuid(), trash_days=0), require_aof=False)
    m.new_session({"mountpoint": "/mnt/bench"})
    before = int(r.info("memory")["used_memory"])
    d = m.mkdir(ROOT_INO, "d")[0]
    for i in range(events // 2):
        ino = m.create(d, f"file-{i:07d}")[0]
        m.truncate(ino, 4096)  # a data record with a length change
    n = int(r.llen(prefix + "journal"))
    used = int(r.execute_command("MEMORY", "USAGE", prefix + "journal", "SAMPLES", "0"))
    after = int(r.info("memory")["used_memory"])
    sample = r.lrange(prefix + "journal", -2, -1)
    print(f"2. memory: {n:,} events take {used / n:.1f} bytes each in the journal list (MEMORY USAGE); "
          f"records {len(sample[0])} and {len(sample[1])} bytes; whole workspace incl. inodes: "
          f"{(after - before) / n:.0f} bytes per event")
    m.close()
    r.close()


def _follower(url: str, prefix: str, start: int, n: int, out) -> None:
    got = []
    for ev in Journal(RedisMetaEngine(url, prefix, may_load_library=False).client, resolve_paths=False).events(
            start, follow=True, timeout=30):
        got.append((ev.name, time.monotonic()))
        if len(got) == n:
            break
    out.send(got)


def latency(url: str, changes: int) -> bool:
    prefix = "{u_3_w_1}:"
    m = RedisMetaEngine(url, prefix)
    m.format(Setting(name="lat", uuid=new_uuid(), trash_days=0), require_aof=False)
    m.new_session()
    start = Journal(m.client).end()
    recv, send = mp.Pipe(duplex=False)
    proc = mp.get_context("spawn").Process(target=_follower, args=(url, prefix, start, changes, send))
    proc.start()
    time.sleep(2.0)  # the follower has subscribed
    sent = {}
    for i in range(changes):
        name = f"f{i:06d}"
        sent[name] = time.monotonic()
        m.create(ROOT_INO, name)
        time.sleep(0.02)
    got = recv.recv() if recv.poll(60) else []
    proc.join(10)
    delays = sorted((at - sent[name]) * 1000 for name, at in got if name in sent)
    if len(delays) != changes:
        print(f"3. follow latency: only {len(delays)} of {changes} events arrived")
        return False
    p50, p99 = delays[len(delays) // 2], delays[int(len(delays) * 0.99) - 1]
    print(f"3. follow latency, change started -> event in another process's follower ({changes} changes, "
          f"20 ms apart): p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {delays[-1]:.2f} ms")
    m.close()
    return p99 <= 50


def _open_block(r: redis.Redis, m: RedisMetaEngine, ino: int, n: int) -> tuple[float, float]:
    """n opens for reading: (client µs per open, Redis µs per FCALL)."""
    r.config_resetstat()
    t0 = time.perf_counter()
    for _ in range(n):
        m.open(ino, os.O_RDONLY)
    client = (time.perf_counter() - t0) / n * 1e6
    stat = r.info("commandstats").get("cmdstat_fcall", {})
    return client, float(stat.get("usec_per_call", 0.0))


def read_audit(url: str, opens: int, blocks: int = 8) -> None:
    r = redis.Redis.from_url(url)
    engines, inos = {}, {}
    for on, prefix in ((True, "{u_3_w_1}:"), (False, "{u_3_w_2}:")):
        m = RedisMetaEngine(url, prefix)
        m.format(Setting(name="audit", uuid=new_uuid(), trash_days=0, journal_reads=on), require_aof=False)
        m.new_session({"mountpoint": "/mnt/bench"})
        engines[on], inos[on] = m, m.create(ROOT_INO, "f")[0]
        _open_block(r, m, inos[on], opens // 10)  # warm up
    res: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    for b in range(blocks):
        for on in ((True, False) if b % 2 == 0 else (False, True)):  # ABBA
            res[on].append(_open_block(r, engines[on], inos[on], opens))
    c_on, c_off = (statistics.median(x[0] for x in res[v]) for v in (True, False))
    s_on, s_off = (statistics.median(x[1] for x in res[v]) for v in (True, False))
    n = int(r.llen("{u_3_w_1}:reads"))
    used = int(r.execute_command("MEMORY", "USAGE", "{u_3_w_1}:reads", "SAMPLES", "0"))
    print(f"4. read audit: open for reading {c_on:.1f} µs with it on, {c_off:.1f} µs off "
          f"({(c_on / c_off - 1) * 100:+.1f} %); Redis {s_on:.2f} vs {s_off:.2f} µs per call "
          f"({s_on - s_off:+.2f}); {used / n:.1f} bytes per read record ({n:,} records)")
    for m in engines.values():
        m.close()
    r.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=3000, help="operations per kind in the overhead comparison")
    ap.add_argument("--events", type=int, default=50_000, help="events written for the memory figure")
    ap.add_argument("--changes", type=int, default=500, help="changes timed for the follow latency")
    ap.add_argument("--opens", type=int, default=2000, help="opens per block in the read audit comparison")
    ap.add_argument("--only-reads", action="store_true", help="run the read audit comparison alone")
    args = ap.parse_args(argv)
    if args.only_reads:
        with tempfile.TemporaryDirectory(prefix="bench-journal-") as tmp, \
                RedisServer.start(tmp, appendonly=True) as server:
            read_audit(server.url, args.opens)
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-journal-") as tmp, \
            RedisServer.start(tmp, appendonly=True) as server:
        ok = overhead(server.url, args.ops)
        memory(server.url, args.events)
        ok = latency(server.url, args.changes) and ok
        read_audit(server.url, args.opens)
    print("targets met" if ok else "targets missed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
