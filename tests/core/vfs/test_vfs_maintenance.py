"""Background maintenance seen through the VFS: compaction, cold-inline migration, and readers
whose cached view was compacted away on another host."""

import os
import random

from artifacts_core.meta.attrs import SLICE_S3


def test_many_overwrites_are_compacted_and_read_back_exactly(vol):
    model = bytearray(os.urandom(200_000))
    vol.write_bytes("f.bin", bytes(model))
    rng = random.Random(7)
    for _ in range(150):  # each overwrite is its own commit: the slice list grows
        off = rng.randrange(0, 190_000)
        data = os.urandom(rng.randrange(1, 5000))
        with vol.open("f.bin", "r+b") as f:
            f.seek(off)
            f.write(data)
        model[off:off + len(data)] = data
    ino = vol.vfs.resolver.resolve("f.bin").ino
    assert vol.read_bytes("f.bin") == bytes(model)
    vol.maintenance.compact_queued()
    assert vol.maintenance.compact(ino, 0) in ("swapped", "skipped")
    records, _ = vol.meta.read_chunk(ino, 0)
    assert len(records) <= 2
    assert vol.read_bytes("f.bin") == bytes(model)
    assert vol.metrics.get("compactions") >= 1


def test_quiet_inline_data_migrates_to_s3_and_reads_the_same(vol):
    vol.write_bytes("small.txt", b"tiny but precious\n")
    ino = vol.vfs.resolver.resolve("small.txt").ino
    before = vol.meta.inline_bytes()
    assert before >= 18
    vol.meta.slice_grace = 0.0  # old slices are released at once, not after the grace period
    moved = vol.meta.migrate_inline(vol.maintenance.write_merged, quiet=0, interval=None)
    assert moved == 1
    records, inline = vol.meta.read_chunk(ino, 0)
    assert [r.kind for r in records] == [SLICE_S3] and not inline
    vol.meta.reclaim(vol.chunks.remove, interval=None)
    assert vol.meta.inline_bytes() < before
    assert vol.read_bytes("small.txt") == b"tiny but precious\n"


def test_reader_with_a_view_compacted_away_elsewhere_refreshes_it(volume_factory):
    a, b = volume_factory(), volume_factory()
    a.write_bytes("f.bin", os.urandom(5 << 20))  # slice A: blocks A0 (4 MiB) and A1
    with a.open("f.bin", "r+b") as f:
        f.seek(4_600_000)
        f.write(os.urandom(500_000))  # slice B overwrites part of A1
    expected = a.read_bytes("f.bin")
    reader = b.open("f.bin", "rb")
    assert reader.read(100) == expected[:100]  # b caches the view [A, B] and block A0 only
    ino = a.vfs.resolver.resolve("f.bin").ino
    a.meta.slice_grace = 0.0  # release the old slices at once instead of after the grace period
    assert a.maintenance.compact(ino, 0) == "swapped"
    stats = a.meta.reclaim(a.chunks.remove, interval=None)
    assert stats.slices_deleted == 2  # A's and B's blocks are gone from S3
    reader.seek(4 << 20)
    assert reader.read() == expected[4 << 20:]  # A1 is missing: b re-read the chunk's view
    reader.close()
