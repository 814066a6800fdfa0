"""Which Python binding of libfuse's low-level API serves requests fastest: ctypes on the system's
libfuse (``artifacts_fuse.lowlevel``) or pyfuse3 (Cython, trio). Not a test: run it as

    .venv/bin/python -m benchmarks.bench_binding [--seconds 3] [--runs 3]

(pyfuse3 column: ``pip install pyfuse3``, which needs ``libfuse3-dev`` and ``pkg-config``.)

Each binding serves the same tiny filesystem (a root and one file) with attribute and entry
time-outs of 0, so every ``stat`` is a LOOKUP and a GETATTR upcall. Two kinds of handler work:

- ``none``: the handler answers at once (the binding's own cost);
- ``redis``: the handler makes one Redis round trip (a ``PING`` over redis-py), the shape of a real
  metadata request. pyfuse3 runs it in a worker thread (``trio.to_thread``), as a blocking VFS call
  must be, or every request would wait for the one before it.

Measured: the p50 latency of one ``stat`` from one thread, and the aggregate ``stat`` rate of 16
threads (each in its own process, so the client side is not serialised by one GIL).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

FILE_INO = 2
PARALLEL = 16


# -- servers -----------------------------------------------------------------------------------

def _redis_ping(url: str | None):
    if not url:
        return lambda: None
    import redis

    client = redis.Redis.from_url(url)
    return client.ping


def serve_ctypes(mp: str, redis_url: str | None) -> None:
    import stat as st_

    from artifacts_fuse import lowlevel as ll

    ping = _redis_ping(redis_url)

    class Ops:
        def _stat(self, st, ino):
            mode = st_.S_IFDIR | 0o755 if ino == 1 else st_.S_IFREG | 0o644
            ll.fill_stat(st, ino, mode, 1, 0, 0, 0, 0, 0, 0, 0, 4096)

        def lookup(self, req, parent, name):
            ping()
            if name != b"f":
                ll.reply_err(req, 2)
                return
            e = ll.entry_param()
            e.ino = FILE_INO
            self._stat(e.attr, FILE_INO)
            ll.lib.fuse_reply_entry(req, e)

        def getattr(self, req, ino, fi):
            ping()
            st = ll.stat_t()
            self._stat(st, ino)
            ll.lib.fuse_reply_attr(req, st, 0.0)

        def forget(self, req, ino, n):
            pass

    s = ll.Session([Ops()], mp, ["fsname=bench", "subtype=bench", "default_permissions"], max_threads=64)
    s.mount()
    try:
        s.loop()
    finally:
        s.close()


def serve_pyfuse3(mp: str, redis_url: str | None) -> None:
    import stat as st_

    import pyfuse3
    import trio

    ping = _redis_ping(redis_url)

    class Ops(pyfuse3.Operations):
        def _attr(self, ino):
            a = pyfuse3.EntryAttributes()
            a.st_ino = ino
            a.st_mode = st_.S_IFDIR | 0o755 if ino == 1 else st_.S_IFREG | 0o644
            a.st_nlink = 1
            a.attr_timeout = 0
            a.entry_timeout = 0
            return a

        async def _work(self):
            if redis_url:
                await trio.to_thread.run_sync(ping)

        async def lookup(self, parent, name, ctx=None):
            await self._work()
            if name != b"f":
                raise pyfuse3.FUSEError(2)
            return self._attr(FILE_INO)

        async def getattr(self, ino, ctx=None):
            await self._work()
            return self._attr(ino)

    opts = set(pyfuse3.default_options)
    opts |= {"fsname=bench", "subtype=bench", "default_permissions"}
    pyfuse3.init(Ops(), mp, opts)
    try:
        # trio's default thread limiter (40) bounds concurrent blocking handlers.
        trio.run(pyfuse3.main)
    finally:
        pyfuse3.close(unmount=True)


# -- clients -----------------------------------------------------------------------------------

def _stat_loop(path: str, seconds: float, out) -> None:
    n = 0
    lat = []
    end = time.perf_counter() + seconds
    while True:
        t0 = time.perf_counter()
        os.stat(path)
        t1 = time.perf_counter()
        lat.append(t1 - t0)
        n += 1
        if t1 >= end:
            break
    out.put((n, statistics.median(lat)))


def measure(path: str, seconds: float) -> tuple[float, float]:
    """(p50 µs of one stat from one process, aggregate stat/s of 16 processes)."""
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    _stat_loop(path, seconds, q)
    _, p50 = q.get()
    procs = [ctx.Process(target=_stat_loop, args=(path, seconds, q)) for _ in range(PARALLEL)]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    results = [q.get() for _ in procs]
    took = time.perf_counter() - t0
    for p in procs:
        p.join()
    return p50 * 1e6, sum(n for n, _ in results) / took


def run_one(binding: str, work: str, seconds: float, redis_url: str | None) -> tuple[float, float]:
    mp = tempfile.mkdtemp(prefix=f"bind-{binding}-")
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.bench_binding", "--serve", binding, mp,
                             redis_url or ""])
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(os.path.join(mp, "f")):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"the {binding} server did not come up")
            time.sleep(0.01)
        return measure(os.path.join(mp, "f"), seconds)
    finally:
        subprocess.run(["fusermount3", "-u", mp], capture_output=True)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(mp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--serve", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        binding, mp, url = args.serve
        (serve_ctypes if binding == "ctypes" else serve_pyfuse3)(mp, url or None)
        return
    from artifacts_core.servers import RedisServer

    bindings = ["ctypes"]
    try:
        import pyfuse3  # noqa: F401

        bindings.append("pyfuse3")
    except ImportError:
        print("pyfuse3 is not installed: measuring ctypes only", file=sys.stderr)
    work = tempfile.mkdtemp(prefix="bench-binding-")
    redis = RedisServer.start(work)
    try:
        rows = []
        for mode, url in (("none", None), ("redis", redis.url)):
            for b in bindings:
                p50s, rates = [], []
                for _ in range(args.runs):
                    p50, rate = run_one(b, work, args.seconds, url)
                    p50s.append(p50)
                    rates.append(rate)
                rows.append((b, mode, statistics.median(p50s), statistics.median(rates)))
        print(f"{'binding':10} {'work':6} {'stat p50 µs':>12} {'16-way stat/s':>14}")
        for b, mode, p50, rate in rows:
            print(f"{b:10} {mode:6} {p50:12.1f} {rate:14.0f}")
    finally:
        redis.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
