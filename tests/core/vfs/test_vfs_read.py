"""The VFS read path over format v2 blocks on the real Redis and SeaweedFS (docs/vfs.md "Reads"):
random readers fetch segments, sequential ones whole blocks, small files read whole are fetched
at open, and a volume holding v1 and v2 blocks (after its setting switched) reads, compacts and
collects both.
"""

from __future__ import annotations

import os
import random
import time

import msgspec

from artifacts_core.gc import collect
from artifacts_core.meta.format import Setting

MiB = 1 << 20


def wait_until(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def write(vol, path: str, data: bytes) -> None:
    with vol.open(path, "wb") as f:
        f.write(data)


def test_random_reads_fetch_segments_and_sequential_reads_whole_blocks(volume_factory):
    data = random.Random(1).randbytes(16 * MiB)
    write(volume_factory(), "big.bin", data)
    vol = volume_factory()  # another client: empty caches
    offsets = [(i * 4 + 1) * MiB + 12345 for i in range(4)]  # one read in each block, none at its start
    with vol.open("big.bin", "rb", buffering=0) as f:
        for off in offsets:
            f.seek(off)
            assert f.read(4096) == data[off:off + 4096]
    stats = vol.chunks.stats()
    assert stats["downloads"] == 0 and stats["segment_downloads"] >= 4
    assert stats["download_bytes"] < 4 * 300 * 1024  # a segment per read, not 4 MiB
    with vol.open("big.bin", "rb", buffering=0) as f:
        assert f.read() == data  # sequential: whole blocks, read ahead
    stats = vol.chunks.stats()
    assert stats["downloads"] == 4


def test_a_small_file_read_whole_is_fetched_at_open(volume_factory):
    data = random.Random(2).randbytes(MiB + 5)  # past the inline limit: an S3 block
    write(volume_factory(), "small.bin", data)
    vol = volume_factory()
    f = vol.open("small.bin", "rb", buffering=0)
    assert wait_until(lambda: vol.chunks.stats()["downloads"] == 1), "the open did not fetch the file"
    gets = vol.chunks.stats()["downloads"] + vol.chunks.stats()["segment_downloads"]
    assert f.read() == data
    f.close()
    stats = vol.chunks.stats()
    assert stats["downloads"] + stats["segment_downloads"] == gets  # the read found it in memory
    assert vol.vfs.whole_files.ratio == 1.0


def test_opens_stop_fetching_whole_files_when_handles_read_parts(volume_factory):
    data = random.Random(3).randbytes(2 * MiB)
    vol = volume_factory()
    write(vol, "part.bin", data)
    started = vol.vfs.whole_files.started
    for _ in range(5):  # handles that read a piece in the middle and close
        with vol.open("part.bin", "rb", buffering=0) as f:
            f.seek(MiB)
            f.read(100)
    assert vol.vfs.whole_files.ratio < 0.5
    before = vol.vfs.whole_files.started
    with vol.open("part.bin", "rb", buffering=0):
        pass
    assert vol.vfs.whole_files.started == before > started  # learned: no fetch at this open


def switch_to_v2(vol) -> None:
    """What an upgrade does: the setting's block_format becomes 2; clients opened afterwards write v2."""
    client = vol.meta.client
    setting = msgspec.json.decode(client.command("GET", client.keys.setting), type=Setting)
    assert setting.block_format == 1
    client.command("SET", client.keys.setting, msgspec.json.encode(msgspec.structs.replace(setting, block_format=2)))


def test_a_volume_switched_from_v1_to_v2_reads_compacts_and_collects_both(volume_factory):
    old = volume_factory(format_options={"block_format": 1})
    a = random.Random(4).randbytes(6 * MiB)
    write(old, "a.bin", a)
    switch_to_v2(old)
    new = volume_factory()
    assert new.chunks.block_format == 2 and old.chunks.block_format == 1  # each as it opened
    b = random.Random(5).randbytes(5 * MiB)
    write(new, "b.bin", b)
    with new.open("a.bin", "r+b") as f:  # a v2 slice over a v1 file
        f.seek(MiB)
        f.write(b"x" * MiB)
    a = a[:MiB] + b"x" * MiB + a[2 * MiB:]
    reader = volume_factory()
    for name, data in (("a.bin", a), ("b.bin", b)):
        with reader.open(name, "rb", buffering=0) as f:
            for off in (4 * MiB + 100, 300, 2 * MiB - 10):  # random (segment) reads first
                f.seek(off)
                assert f.read(50) == data[off:off + 50]
            f.seek(0)
            assert f.read() == data
    # gc knows both: every object is a block, every block is referenced, nothing leaked
    report = reader._loop.run(collect(reader.meta, reader._store, delete=False, min_age=0))
    assert report.objects == report.referenced == 2 + 2 + 1 and report.leaked == []
    ino = reader.stat("a.bin").st_ino
    assert reader.maintenance.compact(ino, 0, prefer_s3=True) == "swapped"  # rewritten as v2
    after = volume_factory()
    with after.open("a.bin", "rb", buffering=0) as f:
        f.seek(5 * MiB)
        assert f.read(10) == a[5 * MiB:5 * MiB + 10]
    assert after.chunks.stats()["table_downloads"] == 1  # the compacted slice is segmented
    assert after.read_bytes("a.bin") == a


def test_read_buffer_returns_a_view_without_copying(vol):
    data = os.urandom(3 * MiB)
    write(vol, "v.bin", data)
    fh = vol.vfs.open(vol.stat("v.bin").st_ino, os.O_RDONLY)
    try:
        assert vol.vfs.read(fh, 0, MiB) == data[:MiB]  # warms the cache
        view = vol.vfs.read_buffer(fh, 100, 4096)
        assert isinstance(view, memoryview) and view.readonly and view == data[100:4196]
        assert isinstance(vol.vfs.read(fh, 100, 4096), bytes)
    finally:
        vol.vfs.release(fh)


def test_stats_show_the_cache_counters(vol):
    write(vol, "s.bin", os.urandom(2 * MiB))
    with vol.open("s.bin", "rb", buffering=0) as f:
        f.seek(MiB + 7)
        f.read(10)
    text = vol.read_bytes(".stats").decode()
    for name in ("memory_hits", "memory_misses", "disk_hits", "disk_misses", "downloads", "table_downloads",
                 "segment_downloads", "layout_guesses", "download_bytes", "memory_cache_bytes",
                 "memory_cache_capacity", "disk_cache_bytes", "disk_cache_capacity", "disk_cache_files"):
        assert f"artifacts_chunks_{name} " in text, name


def test_random_reads_that_revisit_blocks_turn_dense():
    from artifacts_core.vfs.reader import DENSE_MIN_READS, Readahead

    ra = Readahead(4 * MiB, 16 * MiB, block_size=4 * MiB)
    rng = random.Random(6)
    for _ in range(200):  # sparse: a new block every time
        ra.advise(rng.randrange(1 << 40) // 4096 * 4096, 4096, 1 << 41)
    assert not ra.sequential and not ra.dense
    ra = Readahead(4 * MiB, 16 * MiB, block_size=4 * MiB)
    for i in range(DENSE_MIN_READS + 10):  # 8 blocks read over and over
        ra.advise((i % 8) * 4 * MiB + 8192 * (i % 3 + 1), 4096, 64 * MiB)
    assert ra.dense
