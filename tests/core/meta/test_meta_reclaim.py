"""Reclaiming space on real Redis: compaction swaps, compaction under concurrent readers, release
of deleted files' data through reference counts, delayed slice deletion, trash expiry, elections."""

from __future__ import annotations

import threading
import time

import pytest
from test_meta_data import (  # noqa: F401 - anymeta is a fixture
    Blobs,
    anymeta,
    check_concatenation,
    counter,
    mkfile,
    pattern,
    read_file,
    refs,
    write,
)

from artifacts_core.errors import IntegrityError
from artifacts_core.meta.attrs import SLICE_INLINE, SLICE_S3, SliceRecord
from artifacts_core.meta.data import chunk_length
from artifacts_core.meta.slices import assemble, build_view
from artifacts_core.types import CHUNK_SIZE, ROOT_INO, TRASH_INO

GRACE_PAST = 3600.0  # an offset beyond any grace period


def s3_writer(meta, blobs):
    """A compaction writer storing the merged bytes as an S3 slice in ``blobs``."""
    def store(job):
        data = job.data(blobs.read)
        blobs.data[job.slice_id] = data
        return SliceRecord(job.start, job.slice_id, len(data), 0, len(data), SLICE_S3), None
    return store


def inline_writer(meta, blobs):
    def store(job):
        assert job.inline_ok
        data = job.data(blobs.read)
        return SliceRecord(job.start, job.slice_id, len(data), 0, len(data), SLICE_INLINE), data
    return store


def delslices(meta) -> list[str]:
    return [m.decode() for m in meta.client.command("ZRANGE", meta.keys.delslices, 0, -1)]


# -- deleted files ----------------------------------------------------------------------------------


def test_reclaim_deletes_exactly_the_unreferenced_slices_of_deleted_files(anymeta):  # noqa: F811
    meta, blobs = anymeta, Blobs()
    keep, gone = mkfile(meta, "keep"), mkfile(meta, "gone")
    write(meta, keep, 0, b"k" * 50, blobs)
    write(meta, gone, 0, b"g" * 50, blobs)
    write(meta, gone, CHUNK_SIZE + 7, b"G" * 20, blobs)
    write(meta, gone, 10, b"inline", inline=True)
    gone_ids = {r.id for i in (0, 1) for r in meta.read_chunk(gone, i)[0]}
    meta.unlink(ROOT_INO, "gone")
    stats = meta.reclaim(blobs.delete, interval=None)
    assert stats.files == 1 and stats.chunks == 2 and stats.inline_deleted == 0
    s3_ids = {sid for sid in gone_ids if sid in blobs.data or sid in dict(blobs.deleted)}
    assert {sid for sid, _ in blobs.deleted} == s3_ids and len(s3_ids) == 2
    assert stats.slices_deleted == 2
    assert meta.inline_bytes() == 0 and refs(meta) == {} and delslices(meta) == []
    assert meta.client.command("EXISTS", meta.keys.chunk(gone, 0), meta.keys.chunk(gone, 1)) == 0
    assert read_file(meta, keep, blobs) == b"k" * 50
    assert meta.reclaim(blobs.delete, interval=None).slices_deleted == 0  # nothing left


def test_shared_slices_survive_until_the_last_file_goes(meta):
    blobs = Blobs()
    src, dst = mkfile(meta, "src"), mkfile(meta, "dst")
    write(meta, src, 0, b"S" * 64, blobs)
    write(meta, src, 8, b"in", inline=True)
    meta.copy_file_range(src, 0, dst, 0, 64)
    meta.unlink(ROOT_INO, "src")
    meta.reclaim(blobs.delete, interval=None)
    assert blobs.deleted == [] and meta.inline_bytes() == 2
    assert read_file(meta, dst, blobs) == b"S" * 8 + b"in" + b"S" * 54
    meta.unlink(ROOT_INO, "dst")
    stats = meta.reclaim(blobs.delete, interval=None)
    assert len(blobs.deleted) == 1 and stats.slices_deleted == 1
    assert meta.inline_bytes() == 0 and refs(meta) == {}


def test_reclaim_works_in_bounded_batches_and_keeps_failures_queued(meta):
    blobs = Blobs()
    ino = mkfile(meta)
    for i in range(5):
        write(meta, ino, i * CHUNK_SIZE, b"x" * 10, blobs)
    meta.unlink(ROOT_INO, "f")
    first = meta.client.call("af_reclaim_files", "2", "0")
    assert [int(v) for v in first] == [0, 2, 1]  # two chunks released, the file still queued
    remaining = meta.client.command("ZRANGE", meta.keys.delfiles, 0, -1)
    assert remaining == [f"{ino}:{4 * CHUNK_SIZE + 10}".encode()]
    assert meta.client.command("SCARD", meta.keys.chunk_indexes(ino)) == 2  # chunks 1 and 2 left

    def flaky(sid, size):
        raise OSError("S3 is down")

    stats = meta.reclaim(flaky, batch=2, interval=None)
    assert stats.files == 1 and stats.failed >= 1 and stats.slices_deleted == 0
    assert meta.client.command("EXISTS", meta.keys.chunk_indexes(ino), meta.keys.chunk(ino, 0)) == 0
    assert len(delslices(meta)) == 5  # nothing forgotten
    stats = meta.reclaim(blobs.delete, batch=2, interval=None)
    assert stats.slices_deleted == 5 and delslices(meta) == []


def test_election_lets_one_client_run_a_job_per_interval(meta_factory, key_prefix):
    a, b = meta_factory(key_prefix), meta_factory(key_prefix)
    assert a.claim_job("reclaim", 30) is True
    assert b.claim_job("reclaim", 30) is False
    assert b.reclaim(Blobs().delete, interval=30) is None
    assert b.claim_job("reclaim", 30, now_offset=31) is True
    assert a.claim_job("other", 30) is True


# -- compaction -------------------------------------------------------------------------------------


def test_compaction_swaps_when_the_prefix_is_unchanged(anymeta):  # noqa: F811
    meta, blobs = anymeta, Blobs()
    ino = mkfile(meta)
    write(meta, ino, 0, b"a" * 100, blobs)
    for i in range(6):
        write(meta, ino, 10 * i + 5, b"%d" % i, inline=True)
    meta.fallocate(ino, 2 | 1, 90, 5)
    expect = read_file(meta, ino, blobs)
    old = {r.id for r in meta.read_chunk(ino, 0)[0] if r.id}
    result = meta.compact_chunk(ino, 0, s3_writer(meta, blobs))
    assert result.status == "swapped" and result.records_before == 8 and result.records_after == 1
    records, inline = meta.read_chunk(ino, 0)
    assert records == [result.new] and inline == {}
    assert read_file(meta, ino, blobs) == expect
    # old slices wait for the grace period, then go
    assert sorted(int(m.split("_")[0]) for m in delslices(meta)) == sorted(old)
    assert meta.reclaim(blobs.delete, interval=None).slices_deleted == 0
    assert meta.inline_bytes() == 6
    stats = meta.reclaim(blobs.delete, interval=None, now_offset=GRACE_PAST)
    assert stats.slices_deleted == 1 and stats.inline_deleted == 6 and meta.inline_bytes() == 0
    assert read_file(meta, ino, blobs) == expect
    assert meta.inline_candidates(quiet=0) == []


def test_compaction_keeps_records_appended_meanwhile_at_the_tail(meta):
    blobs = Blobs()
    ino = mkfile(meta)
    for i in range(5):
        write(meta, ino, i * 3, b"abcd", inline=True)

    def racing_writer(job):
        write(meta, ino, 2, b"ZZ", blobs)  # another client commits while we store the slice
        return inline_writer(meta, blobs)(job)

    result = meta.compact_chunk(ino, 0, racing_writer)
    assert result.status == "swapped" and result.records_after == 2
    records, _ = meta.read_chunk(ino, 0)
    assert records[0] == result.new and records[1].len == 2
    assert read_file(meta, ino, blobs) == b"abZZbcabcabcabcd"
    assert meta.inline_candidates(quiet=0) == [(ino, 0)]  # the new slice is inline


def test_compaction_aborts_when_the_prefix_changed(meta):
    blobs = Blobs()
    ino = mkfile(meta)
    for i in range(5):
        write(meta, ino, i, b"xy", blobs)
    expect = read_file(meta, ino, blobs)

    def rival(job):
        assert meta.compact_chunk(ino, 0, s3_writer(meta, blobs)).status == "swapped"
        return s3_writer(meta, blobs)(job)

    result = meta.compact_chunk(ino, 0, rival)
    assert result.status == "aborted"
    assert read_file(meta, ino, blobs) == expect
    # the aborted slice is queued for deletion at once: nothing references it
    stats = meta.reclaim(blobs.delete, interval=None)
    assert [sid for sid, _ in blobs.deleted] == [result.new.id] and stats.slices_deleted == 1
    # a retry of a swap that happened is recognised, not mistaken for an abort
    records, _ = meta.read_chunk(ino, 0)
    raw_new = records[0]
    reply = meta.client.call("af_compact", str(ino), "0", "0", "0", "", "0", str(raw_new.id),
                             str(raw_new.size), "0", str(raw_new.len), "60", meta._owner())
    assert int(reply[0]) == 2


def test_compaction_keeps_a_large_untouched_head_and_rewrites_only_the_tail(meta):
    blobs = Blobs()
    ino = mkfile(meta)
    head = bytes(range(256)) * 8192  # 2 MiB: a log's old, large slice
    write(meta, ino, 0, head, blobs)
    for i in range(5):
        write(meta, ino, 0, b"line %d\n" % i, blobs, append=True)
    result = meta.compact_chunk(ino, 0, s3_writer(meta, blobs))
    assert result.status == "swapped" and result.records_after == 2
    records, _ = meta.read_chunk(ino, 0)
    assert records[0].len == len(head) and records[1] == result.new
    assert result.new.pos == len(head) and result.new.len == 35  # only the appends were rewritten
    assert read_file(meta, ino, blobs) == head + b"".join(b"line %d\n" % i for i in range(5))
    assert meta.compact_chunk(ino, 0, s3_writer(meta, blobs)).status == "skipped"
    # a head that a later record overwrites is merged like everything else
    write(meta, ino, 10, b"X", blobs)
    result = meta.compact_chunk(ino, 0, s3_writer(meta, blobs))
    assert result.status == "swapped" and result.records_after == 1 and result.new.pos == 0


def test_cold_inline_data_migrates_to_s3(meta):
    blobs = Blobs()
    ino = mkfile(meta)
    write(meta, ino, 0, b"small", inline=True)
    assert meta.inline_candidates(quiet=60) == []
    assert meta.inline_candidates(quiet=60, now_offset=120) == [(ino, 0)]
    result = meta.compact_chunk(ino, 0, s3_writer(meta, blobs), prefer_s3=True)
    assert result.status == "swapped" and result.new.kind == SLICE_S3
    assert meta.inline_candidates(quiet=0) == []
    meta.reclaim(blobs.delete, interval=None, now_offset=GRACE_PAST)
    assert meta.inline_bytes() == 0 and read_file(meta, ino, blobs) == b"small"


def test_migrate_inline_moves_only_quiet_chunks(meta):
    blobs = Blobs()
    quiet_file, busy_file = mkfile(meta, "quiet"), mkfile(meta, "busy")
    write(meta, quiet_file, 0, b"old", inline=True)
    write(meta, quiet_file, CHUNK_SIZE, b"old too", inline=True)
    assert meta.migrate_inline(s3_writer(meta, blobs), quiet=60, interval=None) == 0
    write(meta, busy_file, 0, b"new", inline=True)
    meta.client.command("ZINCRBY", meta.keys.inlinechunks, 120, f"{busy_file}_0")  # written later
    assert meta.migrate_inline(s3_writer(meta, blobs), quiet=60, interval=None, now_offset=100) == 2
    assert meta.inline_candidates(quiet=0, now_offset=200) == [(busy_file, 0)]
    assert meta.migrate_inline(s3_writer(meta, blobs), quiet=60, interval=60, now_offset=100) is not None
    assert meta.migrate_inline(s3_writer(meta, blobs), quiet=60, interval=60, now_offset=100) is None
    assert read_file(meta, quiet_file, blobs, 0, 3) == b"old"
    assert read_file(meta, quiet_file, blobs, CHUNK_SIZE) == b"old too"


def test_compaction_under_concurrent_readers(meta):
    """Readers holding an old view keep reading correct bytes while compaction swaps slices and
    reclaim deletes released ones once their (short) grace period has passed."""
    blobs = Blobs()
    meta.slice_grace = 0.5  # short, so reclaim deletes released slices during the test
    ino = mkfile(meta)
    expect = bytearray(300)
    for i in range(60):
        data = bytes([65 + i % 26]) * 7
        pos = (i * 37) % 290
        write(meta, ino, pos, data, blobs, inline=i % 3 == 0)
        expect[pos:pos + 7] = data
    expect = bytes(expect[:max(len(expect.rstrip(b"\0")), 0)])
    length = meta.read_chunk_attr(ino, 0)[0].length
    stop = threading.Event()
    errors: list[BaseException] = []
    reads = [0]

    def reader():
        while not stop.is_set():
            _, records, inline = meta.read_chunk_attr(ino, 0)
            view = build_view(records, chunk_length(length, 0))
            time.sleep(0.01)  # hold the view a while, as a slow reader does
            try:
                got = assemble(view, 0, length, inline, blobs.read)
                if inline == {} and any(s.kind == SLICE_INLINE for s in view):
                    raise AssertionError("inline bytes missing from the read")
                assert got == expect[:length].ljust(length, b"\0")
                reads[0] += 1
            except BaseException as e:
                errors.append(e)
                stop.set()

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for th in threads:
        th.start()
    for round_ in range(12):
        for i in range(6):  # rewrite bytes with what they already hold: the content is stable
            pos = (round_ * 31 + i * 41) % 280
            write(meta, ino, pos, bytes(expect[pos:pos + 9]).ljust(9, b"\0"), blobs, inline=i % 2 == 0)
        writer = s3_writer(meta, blobs) if round_ % 2 else inline_writer(meta, blobs)
        assert meta.compact_chunk(ino, 0, writer).status == "swapped"
        time.sleep(0.1)
        meta.reclaim(blobs.delete, interval=None)  # deletes what was released > 0.5 s ago
    stop.set()
    for th in threads:
        th.join()
    assert not errors, errors[0]
    assert reads[0] > 10 and blobs.deleted  # deletions really happened while reading
    meta.reclaim(blobs.delete, interval=None, now_offset=GRACE_PAST)
    assert read_file(meta, ino, blobs) == expect[:length].ljust(length, b"\0")


def test_a_reader_past_the_grace_period_gets_eio_not_zeros(meta):
    blobs = Blobs()
    ino = mkfile(meta)
    write(meta, ino, 0, b"abc", inline=True)
    write(meta, ino, 1, b"X", inline=True)
    _, records, _ = meta.read_chunk_attr(ino, 0)
    meta.compact_chunk(ino, 0, s3_writer(meta, blobs))
    # during the grace period the old inline keys are still there for an old view
    old = records[0]
    assert meta.client.command("GET", meta.keys.inline(old.id)) == b"abc"
    meta.reclaim(blobs.delete, interval=None, now_offset=GRACE_PAST)
    assert meta.client.command("GET", meta.keys.inline(old.id)) is None
    with pytest.raises(IntegrityError):
        assemble(build_view(records, 3), 0, 3, {}, blobs.read)


def test_compacting_a_gone_or_empty_chunk(meta):
    blobs = Blobs()
    ino = mkfile(meta)
    assert meta.compact_chunk(ino, 0, s3_writer(meta, blobs)).status == "empty"
    write(meta, ino, 0, b"abc", blobs)
    meta.fallocate(ino, 3, 0, 3)  # all zeros now
    result = meta.compact_chunk(ino, 0, s3_writer(meta, blobs))
    assert result.status == "swapped" and result.new is None and result.records_after == 0
    assert read_file(meta, ino, blobs) == bytes(3)
    meta.unlink(ROOT_INO, "f")
    assert meta.compact_chunk(ino, 0, s3_writer(meta, blobs)).status == "gone"


# -- trash ------------------------------------------------------------------------------------------


def test_trash_expiry_frees_files_after_trash_days(meta_factory, key_prefix):
    meta = meta_factory(key_prefix, trash_days=1)
    blobs = Blobs()
    ino = mkfile(meta)
    write(meta, ino, 0, b"t" * 100, blobs)
    write(meta, ino, 100, b"inline", inline=True)
    meta.unlink(ROOT_INO, "f")
    inodes = counter(meta, "totalinodes")
    hours = meta.client.command("HGETALL", meta.keys.entries(TRASH_INO))
    assert len(hours) == 1
    assert meta.expire_trash(interval=None).entries == 0
    assert meta.expire_trash(interval=None, now_offset=23 * 3600).entries == 0  # not a day yet
    stats = meta.expire_trash(interval=None, now_offset=26 * 3600)
    assert stats.entries == 1 and stats.dirs == 1
    assert meta.client.command("HLEN", meta.keys.entries(TRASH_INO)) == 0
    assert counter(meta, "totalinodes") == inodes - 2  # the file and its hour directory
    assert meta.client.command("EXISTS", meta.keys.inode(ino)) == 0
    stats = meta.reclaim(blobs.delete, interval=None)
    assert stats.files == 1 and len(blobs.deleted) == 1 and meta.inline_bytes() == 0


def test_trash_expiry_keeps_open_files_and_works_in_batches(meta_factory, key_prefix):
    meta = meta_factory(key_prefix, trash_days=1)
    inos = []
    for i in range(5):
        inos.append(mkfile(meta, f"f{i}"))
        meta.unlink(ROOT_INO, f"f{i}")
    meta.new_session({"host": "test"})
    meta.open(inos[0])  # still open on this host when its trash hour expires
    first = meta.client.call("af_expire_trash", "2", str(26 * 3600))
    assert [int(v) for v in first] == [2, 0, 1]
    stats = meta.expire_trash(interval=None, now_offset=26 * 3600, batch=2)
    assert stats.entries == 3 and stats.dirs == 1
    assert int(meta.client.command("ZCARD", meta.keys.delfiles)) == 4
    attr = meta.read_chunk_attr(inos[0], 0)[0]
    assert attr.nlink == 0 and attr.flags & 1  # kept (sustained) until its last close
    meta.close_file(inos[0])
    assert int(meta.client.command("ZCARD", meta.keys.delfiles)) == 5


def test_compaction_racing_appends_and_readers_loses_nothing(meta):
    """Two appenders, a compactor and a reader at once: every append lands whole, each read is a
    run of whole records, and the final file holds every record exactly once."""
    blobs = Blobs()
    meta.slice_grace = 0.5
    ino = mkfile(meta)
    sizes: dict[int, int] = {}
    stop = threading.Event()
    errors: list[BaseException] = []

    def appender(seed):
        try:
            for i in range(60):
                sid = meta.new_slice_id()
                size = 8 + (seed + i * 11) % 30
                data = pattern(sid, size)
                sizes[sid] = size
                inline = (i + seed) % 2 == 0
                if not inline:
                    blobs.data[sid] = data
                rec = SliceRecord(0, sid, size, 0, size, SLICE_INLINE if inline else SLICE_S3)
                meta.commit_slice(ino, 0, rec, data=data if inline else None, append=True)
        except BaseException as e:
            errors.append(e)

    def compactor():
        n = 0
        while not stop.is_set():
            writer = s3_writer(meta, blobs) if n % 2 else inline_writer_or_s3(meta, blobs)
            try:
                meta.compact_chunk(ino, 0, writer)
                meta.reclaim(blobs.delete, interval=None)
            except BaseException as e:
                errors.append(e)
                return
            n += 1

    def reader():
        while not stop.is_set():
            try:
                attr, records, inline = meta.read_chunk_attr(ino, 0)
                data = assemble(build_view(records, attr.length), 0, attr.length, inline, blobs.read)
                check_concatenation(data, dict(sizes), complete=False)
            except BaseException as e:
                errors.append(e)
                return

    workers = [threading.Thread(target=appender, args=(s,)) for s in (0, 1)]
    background = [threading.Thread(target=compactor), threading.Thread(target=reader)]
    for th in workers + background:
        th.start()
    for th in workers:
        th.join()
    stop.set()
    for th in background:
        th.join()
    assert not errors, errors[0]
    meta.compact_chunk(ino, 0, s3_writer(meta, blobs))
    meta.reclaim(blobs.delete, interval=None, now_offset=GRACE_PAST)
    attr, records, inline = meta.read_chunk_attr(ino, 0)
    assert len(records) == 1
    check_concatenation(assemble(build_view(records, attr.length), 0, attr.length, inline, blobs.read), sizes)


def inline_writer_or_s3(meta, blobs):
    def store(job):
        data = job.data(blobs.read)
        if job.inline_ok:
            return SliceRecord(job.start, job.slice_id, len(data), 0, len(data), SLICE_INLINE), data
        blobs.data[job.slice_id] = data
        return SliceRecord(job.start, job.slice_id, len(data), 0, len(data), SLICE_S3), None
    return store
