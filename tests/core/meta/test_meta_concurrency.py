"""Several clients racing in one directory: threads with their own engines and separate
processes. Every race on a shared name has exactly one winner; at the end no entry is lost or
duplicated, no inode number was handed out twice, and link counts, used space and the inode
count agree with what is left."""

from __future__ import annotations

import multiprocessing as mp
import threading

from artifacts_core.errors import ArtifactsError
from artifacts_core.meta.engine import RedisMetaEngine
from artifacts_core.types import ROOT_INO

OWN = 60  # names per worker: enough interleaving to matter, fast enough for a unit test run
SHARED = 40  # names every worker races for


def work(url: str, prefix: str, worker: int, d: int, barrier) -> dict:
    """One client's workload, in three phases separated by a barrier (so a late creator cannot
    recreate a name another client already renamed away). In each phase every client races for
    the same shared names (create shared-i; rename it to moved-i; unlink moved-i for even i)
    while it also works on its own names (create; rename a third, unlink a third; mkdir some)."""
    m = RedisMetaEngine(url, prefix)
    m.load(require_aof=False)
    made, wins = [], {"create": 0, "rename": 0, "unlink": 0}
    shared = {
        "create": lambda i: made.append(m.create(d, f"shared-{i}")[0]),
        "rename": lambda i: m.rename(d, f"shared-{i}", d, f"moved-{i}"),
        "unlink": lambda i: i % 2 == 0 and m.unlink(d, f"moved-{i}"),
    }
    try:
        for phase, race in shared.items():
            barrier.wait(60)
            for i in range(SHARED):
                try:
                    if race(i) is not False:
                        wins[phase] += 1
                except ArtifactsError as e:
                    assert e.code in ("EEXIST", "ENOENT"), e
                own = f"w{worker}-{i}"
                if phase == "create":
                    made.append(m.create(d, own)[0])
                    if i % 10 == 0:
                        made.append(m.mkdir(d, f"dir-{own}")[0])
                elif phase == "rename" and i % 3 == 0:
                    m.rename(d, own, d, f"renamed-{own}")
                elif phase == "unlink" and i % 3 == 1:
                    m.unlink(d, own)
        for i in range(SHARED, OWN):
            made.append(m.create(d, f"w{worker}-{i}")[0])
    finally:
        m.close()
    return {"made": made, "wins": wins}


def _process_main(url, prefix, worker, d, barrier, out):
    out.put(work(url, prefix, worker, d, barrier))


def expected_own(worker: int) -> set[bytes]:
    names = set()
    for i in range(SHARED):
        own = f"w{worker}-{i}"
        if i % 3 == 0:
            names.add(f"renamed-{own}")
        elif i % 3 == 2:
            names.add(own)
        if i % 10 == 0:
            names.add(f"dir-{own}")
    names |= {f"w{worker}-{i}" for i in range(SHARED, OWN)}
    return {n.encode() for n in names}


def test_threads_and_processes_race_in_one_directory(meta_factory, key_prefix, redis_url):
    m = meta_factory(key_prefix)
    d, _ = m.mkdir(ROOT_INO, "race")
    base = m.statfs()
    threads_n, procs_n = 4, 2
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(threads_n + procs_n), ctx.Queue()
    procs = [ctx.Process(target=_process_main, args=(redis_url, key_prefix, threads_n + k, d, barrier, out))
             for k in range(procs_n)]
    for p in procs:
        p.start()
    results: list[dict] = []
    errors: list[BaseException] = []

    def run(k):
        try:
            results.append(work(redis_url, key_prefix, k, d, barrier))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    results += [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert not errors, errors

    # every shared race had exactly one winner
    for op, n in (("create", SHARED), ("rename", SHARED), ("unlink", SHARED // 2)):
        assert sum(r["wins"][op] for r in results) == n, op
    # no inode number handed out twice
    made = [ino for r in results for ino in r["made"]]
    assert len(made) == len(set(made))
    # nothing lost, nothing duplicated
    listing = list(m.listdir(d, plus=True, count=64))
    names = [e.name for e in listing]
    assert len(names) == len(set(names))
    expected = {f"moved-{i}".encode() for i in range(1, SHARED, 2)}
    for k in range(threads_n + procs_n):
        expected |= expected_own(k)
    assert set(names) == expected
    # counters agree with what is left
    subdirs = sum(e.attr.is_dir for e in listing)
    assert m.getattr(d).nlink == 2 + subdirs
    assert all(e.attr.nlink == (2 if e.attr.is_dir else 1) for e in listing)
    s = m.statfs()
    assert s.used_inodes == base.used_inodes + len(listing)
    assert (s.total_space - s.avail_space) - (base.total_space - base.avail_space) == 4096 * len(listing)


def test_racing_directory_moves_never_make_a_loop(meta_factory, key_prefix):
    """Clients moving directories under each other at random: each move is checked against the
    whole ancestry inside its function, so the tree stays a tree (every directory reachable from
    the root exactly once, parents and link counts consistent)."""
    import random

    m = meta_factory(key_prefix)
    dirs = {m.mkdir(ROOT_INO, f"d{k}")[0]: f"d{k}" for k in range(12)}
    errors: list[BaseException] = []
    moved = [0]

    def mover(seed):
        rnd = random.Random(seed)
        me = meta_factory(key_prefix)
        inos = sorted(dirs)
        try:
            for _ in range(150):
                x = rnd.choice(inos)
                target = rnd.choice([ROOT_INO, *inos])
                try:
                    me.rename(me.getattr(x).parent, dirs[x], target, dirs[x])
                    moved[0] += 1
                except ArtifactsError as e:
                    assert e.code in ("EINVAL", "ENOENT"), e
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=mover, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert moved[0] > 50
    seen: list[int] = []

    def walk(d):
        subs = [e for e in m.listdir(d, plus=True) if e.attr.is_dir]
        assert m.getattr(d).nlink == 2 + len(subs)
        for e in subs:
            assert e.attr.parent == d
            seen.append(e.ino)
            walk(e.ino)

    walk(ROOT_INO)
    assert sorted(seen) == sorted(dirs)
