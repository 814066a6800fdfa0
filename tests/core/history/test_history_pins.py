"""Nothing a checkpoint refers to is ever deleted (docs/history.md "What keeps blocks alive"):
reclaim of deleted files, truncate, whole-file replace, compaction, inline migration and gc all
run while a checkpoint pins the old blocks; the checkpoint still reads back byte for byte, and
deleting it lets the normal reclaim free them. Then two hosts write while checkpoints are taken."""

from __future__ import annotations

import os
import random
import threading

from artifacts_core import gc
from artifacts_core.meta.attrs import SLICE_S3


def _free_everything(vol):
    """Run every job that deletes data, with every grace period over."""
    vol.meta.slice_grace = 0.0
    vol.meta.migrate_inline(vol.maintenance.write_merged, quiet=0, interval=None)
    vol.meta.expire_trash(now_offset=10 * 86400)
    vol.meta.reclaim(vol.chunks.remove, interval=None, now_offset=7200)
    report = vol._loop.run(gc.collect(vol.meta, vol._store, delete=True, min_age=0))
    return report


def test_reclaim_compaction_and_gc_never_free_a_pinned_block(volume_factory):
    vol = volume_factory(disk_cache=False, memory_cache=0)
    big = os.urandom(3 << 20)
    vol.write_bytes("big.bin", big)                # S3 blocks
    vol.write_bytes("small.txt", b"inline bytes")  # an inline slice
    model = bytearray(os.urandom(100_000))
    vol.write_bytes("log.bin", bytes(model))
    vol.checkpoints.create("pin")
    vol.remove("big.bin")
    vol.write_bytes("small.txt", b"replaced")
    rng = random.Random(3)
    for _ in range(120):  # many commits: compaction rewrites the list
        off = rng.randrange(0, 90_000)
        with vol.open("log.bin", "r+b") as f:
            f.seek(off)
            f.write(os.urandom(rng.randrange(1, 3000)))
    ino = vol.vfs.resolver.resolve("log.bin").ino
    vol.maintenance.compact(ino, 0, prefer_s3=True)
    vol.truncate("log.bin", 10)
    report = _free_everything(vol)
    assert report.deleted == 0
    view = vol.checkpoints.view("pin")
    assert view.read_bytes("big.bin") == big
    assert view.read_bytes("small.txt") == b"inline bytes"
    assert view.read_bytes("log.bin") == bytes(model)
    # deleting the checkpoint lets the normal path free the blocks
    refs_before = vol.meta.client.command("ZCARD", vol.meta.keys.delslices)
    vol.checkpoints.delete("pin")
    assert vol.meta.client.command("ZCARD", vol.meta.keys.delslices) > refs_before
    _free_everything(vol)
    s3_left = [r for r in vol.meta.read_chunk(ino, 0)[0] if r.kind == SLICE_S3 and r.id]
    assert {int(r.id) for r in s3_left} <= gc.referenced_slices(vol.meta)
    assert len(vol.read_bytes("log.bin")) == 10
    assert vol.meta.client.command("KEYS", vol.meta.keys.pattern[:-1] + "hk*") == []


def test_two_hosts_writing_while_checkpoints_are_taken_get_consistent_cuts(volume_factory):
    a, b = volume_factory(), volume_factory()
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer(vol, name):
        n = 0
        try:
            while not stop.is_set():
                n += 1
                # each file is written whole and closed: a cut holds a file entirely or not at all
                vol.write_bytes(f"{name}-{n % 7}", f"{name}:{n}\n".encode() * 50)
                with vol.open(f"{name}.log", "a") as f:
                    f.write(f"{n}\n")
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(v, n)) for v, n in ((a, "a"), (b, "b"))]
    for t in threads:
        t.start()
    names = []
    try:
        for i in range(8):
            names.append(a.checkpoints.create(f"cut{i}").name)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors
    for name in names:
        view = b.checkpoints.view(name)
        for f in view.listdir("/"):
            data = view.read_bytes(f)
            if f.endswith(".log"):
                lines = data.decode().splitlines()
                assert lines == [str(i) for i in range(1, len(lines) + 1)], (name, f)
            elif data:  # empty: opened with O_TRUNC, its close not yet committed at the cut
                (line,) = set(data.decode().splitlines())  # one close's content, never mixed
                assert data == (line + "\n").encode() * 50
    # restoring any cut on one host is seen whole by the other
    a.checkpoints.restore(names[3])
    view = a.checkpoints.view(names[3])
    for f in view.listdir("/"):
        assert b.read_bytes(f) == view.read_bytes(f)


def test_a_workspace_formatted_again_under_its_prefix_preserves_afresh(redis_url, key_prefix):
    """The copy-on-write hook remembers, across calls, which keys a checkpoint already preserved
    (docs/history.md "Copy-on-write"); a workspace deleted and formatted again under the same
    prefix restarts its epochs at 1, and must not inherit what was remembered for the old one."""
    from artifacts_core.meta.engine import RedisMetaEngine
    from artifacts_core.meta.format import Setting, new_uuid
    from artifacts_core.types import ROOT_INO

    def incarnation() -> RedisMetaEngine:
        m = RedisMetaEngine(redis_url, key_prefix)
        m.format(Setting(name="again", uuid=new_uuid(), trash_days=0), require_aof=False)
        return m

    def set_mode(m: RedisMetaEngine, ino, mode: int) -> None:
        m.setattr(ino, mode=mode)

    m = incarnation()
    ino = m.create(ROOT_INO, "f")[0]
    m.checkpoint_create("c1")
    set_mode(m, ino, 0o600)  # preserves i<ino> for epoch 1: remembered
    node = m.client.node()
    node.delete(*node.scan_iter(match=key_prefix.replace("{", "\\{").replace("}", "\\}") + "*", count=1000))
    m.close()
    m = incarnation()
    ino2 = m.create(ROOT_INO, "f")[0]
    assert ino2 == ino  # the same inode number, the same key
    set_mode(m, ino2, 0o640)
    c = m.checkpoint_create("c1")
    assert c.epoch == 1  # the same epoch number as the old incarnation's
    set_mode(m, ino2, 0o604)  # must preserve 0o640 for the new c1
    assert m.checkpoint_reader(c.epoch).attr(ino2).mode & 0o777 == 0o640
    m.close()
