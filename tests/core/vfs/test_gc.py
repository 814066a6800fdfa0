"""Crash safety and gc: a writer killed between upload and commit leaves orphan blocks, never
metadata pointing at missing data; gc skips what a live session may still commit and removes
the orphans once that session is gone."""

import multiprocessing
import os
import signal

from artifacts_core import gc
from artifacts_core.meta.attrs import SLICE_S3


def _writer(redis_url, storage_url_env, key_prefix, cache_dir, ready):
    os.environ.update(storage_url_env)
    from artifacts_core.config import profile_config
    from artifacts_core.volume import open_volume

    vol = open_volume(redis_url, key_prefix=key_prefix, require_aof=False,
                      config=profile_config(cache_dir=cache_dir, background_jobs=False,
                                            flush_interval=3600, flush_idle=3600))
    f = vol.open("crash.bin", "wb", buffering=0)
    f.write(os.urandom(9 << 20))  # two full 4 MiB blocks upload at once; nothing is committed
    while vol.chunks.stats()["uploads"] < 2:
        pass
    ready.set()
    signal.pause()


def test_killed_writer_leaves_only_orphans_that_gc_removes(vol, redis_url, key_prefix, tmp_path):
    vol.write_bytes("keep.bin", os.urandom(5 << 20))  # referenced blocks gc must never touch
    env = {k: v for k, v in os.environ.items() if k.startswith("ARTIFACTS_S3_")}
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    child = ctx.Process(target=_writer, args=(redis_url, env, key_prefix, str(tmp_path / "c"), ready))
    child.start()
    assert ready.wait(120), "the writer never uploaded its blocks"
    os.kill(child.pid, signal.SIGKILL)
    child.join(30)

    # Metadata never points at missing data: the crashed file exists, empty, with no S3 slices.
    assert vol.stat("crash.bin").st_size == 0
    ino = vol.vfs.resolver.resolve("crash.bin").ino
    records, _ = vol.meta.read_chunk(ino, 0)
    assert not [r for r in records if r.kind == SLICE_S3 and r.id]

    # While the dead writer's session has not expired, its uploads count as in flight.
    report = vol._loop.run(gc.collect(vol.meta, vol._store, delete=True, min_age=0))
    assert report.leaked == [] and report.in_flight == 2 and report.referenced == 2

    # Once its session is swept, the two orphan blocks are found and removed; keep.bin stays.
    vol.meta.cleanup_interval = 0  # win the election even right after the background sweep
    assert vol.meta.cleanup_stale_sessions(now_offset=10_000) == 1
    report = vol._loop.run(gc.collect(vol.meta, vol._store, delete=True, min_age=0))
    assert len(report.leaked) == 2 and report.deleted == 2 and report.referenced == 2
    again = vol._loop.run(gc.collect(vol.meta, vol._store, delete=False, min_age=0))
    assert again.leaked == [] and again.objects == 2
    assert len(vol.read_bytes("keep.bin")) == 5 << 20


def test_young_objects_are_never_called_leaked(vol):
    vol.write_bytes("a.bin", os.urandom(5 << 20))
    vol.remove("a.bin")  # its slices are queued for deletion by the reclaim job
    report = vol._loop.run(gc.collect(vol.meta, vol._store, delete=True))  # default min_age: 1 h
    assert report.leaked == []
