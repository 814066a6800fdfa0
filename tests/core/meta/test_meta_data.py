"""Contract tests of the data map on real Redis: commits (S3, inline, append), truncate,
fallocate, copy_file_range, and their accounting. The core ones also run on a Redis Cluster."""

from __future__ import annotations

import errno
import os
import stat
import struct
import subprocess
import sys
import threading
import time

import pytest

from artifacts_core.errors import (
    ArtifactsError,
    InvalidArgument,
    IsADirectory,
    NoSpace,
    NotFound,
    PermissionDenied,
)
from artifacts_core.meta.attrs import SLICE_INLINE, SLICE_S3, SliceRecord, unpack_attr
from artifacts_core.meta.data import (
    FALLOC_FL_KEEP_SIZE,
    FALLOC_FL_PUNCH_HOLE,
    FALLOC_FL_ZERO_RANGE,
    InlineRefused,
    chunk_length,
)
from artifacts_core.meta.slices import COMPACT_NOW, assemble, build_view
from artifacts_core.servers import RedisServer
from artifacts_core.types import CHUNK_SIZE, ROOT_INO, Caller, SliceId

# -- helpers shared with test_meta_reclaim.py -----------------------------------------------------


def space_of(length: int) -> int:
    return max(4096, -(-length // 4096) * 4096)


def pattern(sid: int, size: int) -> bytes:
    """Self-describing slice content: the slice id repeated (so a reader can tell slices apart)."""
    unit = struct.pack(">Q", sid)
    return (unit * (size // 8 + 1))[:size]


class Blobs:
    """A stand-in for the chunk store: S3 slices as bytes in a dict, deletions recorded."""

    def __init__(self) -> None:
        self.data: dict[int, bytes] = {}
        self.deleted: list[tuple[int, int]] = []

    def read(self, sid, size, off, ln) -> bytes:
        return self.data[sid][off:off + ln]

    def delete(self, sid, size) -> None:
        assert len(self.data.get(sid, b"")) == size or sid not in self.data
        self.deleted.append((int(sid), size))
        self.data.pop(sid, None)


def mkfile(meta, name: str = "f", mode: int = 0o644, caller=None):
    kwargs = {"caller": caller} if caller is not None else {}
    ino, _, _ = meta.create(ROOT_INO, name, mode, **kwargs)
    return ino


def write(meta, ino, offset, data, blobs=None, *, inline=False, append=False, caller=None):
    """Commit ``data`` at ``offset`` as one slice per chunk touched (inline or S3); returns the
    last CommitResult."""
    kwargs = {"caller": caller} if caller is not None else {}
    if append:
        sid = meta.new_slice_id()
        rec = SliceRecord(0, sid, len(data), 0, len(data), SLICE_INLINE if inline else SLICE_S3)
        if not inline:
            blobs.data[sid] = data
        return meta.commit_slice(ino, 0, rec, data=data if inline else None, append=True, **kwargs)
    result = None
    pos = 0
    while pos < len(data):
        index, cpos = divmod(offset + pos, CHUNK_SIZE)
        piece = data[pos:pos + CHUNK_SIZE - cpos]
        sid = meta.new_slice_id()
        rec = SliceRecord(cpos, sid, len(piece), 0, len(piece), SLICE_INLINE if inline else SLICE_S3)
        if not inline:
            blobs.data[sid] = piece
        result = meta.commit_slice(ino, index, rec, data=piece if inline else None, **kwargs)
        pos += len(piece)
    return result


def read_file(meta, ino, blobs=None, start=0, end=None) -> bytes:
    attr, _, _ = meta.read_chunk_attr(ino, 0)
    length = attr.length
    end = length if end is None else min(end, length)
    out = []
    for index in range(start // CHUNK_SIZE, (end - 1) // CHUNK_SIZE + 1 if end > start else 0):
        _, records, inline = meta.read_chunk_attr(ino, index)
        view = build_view(records, chunk_length(length, index))
        cs = index * CHUNK_SIZE
        out.append(assemble(view, max(start, cs) - cs, min(end, cs + CHUNK_SIZE) - cs, inline,
                            blobs.read if blobs else None))
    return b"".join(out)


def counter(meta, name) -> int:
    return int(meta.client.command("GET", meta.keys.counter(name)) or 0)


def refs(meta) -> dict[str, int]:
    raw = meta.client.command("HGETALL", meta.keys.sliceref)
    return {k.decode(): int(v) for k, v in raw.items()}


@pytest.fixture(params=["standalone", "cluster"])
def anymeta(request, meta_factory, key_prefix):
    """An engine on standalone Redis and on the 3-master cluster."""
    if request.param == "cluster":
        cluster = request.getfixturevalue("redis_cluster")
        return meta_factory(key_prefix, url=cluster.url)
    return meta_factory(key_prefix)


# -- commits --------------------------------------------------------------------------------------


def test_commit_and_read_round_trip_with_accounting(anymeta):
    meta, blobs = anymeta, Blobs()
    ino = mkfile(meta)
    used = counter(meta, "usedspace")
    before = meta.client.round_trips
    sid = meta.new_slice_ids(1).start
    blobs.data[sid] = b"x" * 10000
    result = meta.commit_slice(ino, 0, SliceRecord(100, SliceId(sid), 10000, 0, 10000))
    assert meta.client.round_trips - before == 2  # the id batch, then ONE commit
    assert result.attr.length == 10100 and result.offset == 100 and result.records == 1
    assert not result.duplicate
    assert counter(meta, "usedspace") - used == space_of(10100) - space_of(0)
    before = meta.client.round_trips
    records, inline = meta.read_chunk(ino, 0)
    assert meta.client.round_trips - before == 1
    assert records == [SliceRecord(100, SliceId(sid), 10000, 0, 10000)] and inline == {}
    assert read_file(meta, ino, blobs) == bytes(100) + b"x" * 10000
    # mtime/ctime from the server clock move forward, gen counts the change
    second = write(meta, ino, 5, b"abc", blobs)
    assert second.attr.mtime_ns >= result.attr.mtime_ns and second.attr.gen == result.attr.gen + 1
    assert second.attr.ctime_ns == second.attr.mtime_ns
    assert read_file(meta, ino, blobs)[:10] == b"\0" * 5 + b"abc\0\0"


def test_inline_commit_is_one_round_trip_and_read_returns_the_bytes(anymeta):
    meta = anymeta
    ino = mkfile(meta)
    sid = meta.new_slice_id()
    node = meta.client.node()
    calls = lambda: node.info("commandstats").get("cmdstat_fcall", {}).get("calls", 0)  # noqa: E731
    fcalls = calls()
    before = meta.client.round_trips
    result = meta.commit_slice(ino, 0, SliceRecord(0, sid, 5, 0, 5, SLICE_INLINE), data=b"hello")
    assert meta.client.round_trips - before == 1
    assert calls() - fcalls == 1  # checked on the server too: one FCALL
    assert result.attr.length == 5
    assert counter(meta, "inlinebytes") == 5 == meta.inline_bytes()
    records, inline = meta.read_chunk(ino, 0)
    assert records[0].kind == SLICE_INLINE and inline == {sid: b"hello"}
    assert meta.inline_candidates(quiet=0) == [(ino, 0)]
    assert meta.inline_candidates(quiet=3600) == []
    # a ranged read fetches only the inline slices whose records touch the range
    write(meta, ino, 1000, b"far away", inline=True)
    records, inline = meta.read_chunk(ino, 0, 990, 1200)
    assert len(records) == 2 and list(inline.values()) == [b"far away"]
    assert meta.read_chunk(ino, 0, 0, 5)[1] == {sid: b"hello"}


def test_recommit_is_a_no_op(anymeta):
    meta, blobs = anymeta, Blobs()
    ino = mkfile(meta)
    sid = meta.new_slice_id()
    rec = SliceRecord(0, sid, 3, 0, 3, SLICE_INLINE)
    first = meta.commit_slice(ino, 0, rec, data=b"abc")
    used = counter(meta, "usedspace")
    again = meta.commit_slice(ino, 0, rec, data=b"abc")
    assert again.duplicate and again.attr == first.attr
    assert len(meta.read_chunk(ino, 0)[0]) == 1
    assert counter(meta, "usedspace") == used and counter(meta, "inlinebytes") == 3
    # an append retried after a timeout lands once
    appended = write(meta, ino, 0, b"defg", blobs, append=True)
    sid2 = meta.read_chunk(ino, 0)[0][-1].id
    dup = meta.commit_slice(ino, 0, SliceRecord(0, sid2, 4, 0, 4), append=True)
    assert dup.duplicate and dup.attr.length == appended.attr.length == 7
    assert read_file(meta, ino, blobs) == b"abcdefg"


def test_commit_to_a_deleted_inode_is_enoent(meta):
    ino = mkfile(meta)
    meta.unlink(ROOT_INO, "f")
    sid = meta.new_slice_id()
    with pytest.raises(NotFound):
        meta.commit_slice(ino, 0, SliceRecord(0, sid, 4, 0, 4))
    assert meta.read_chunk(ino, 0) == ([], {})
    with pytest.raises(NotFound):
        meta.commit_slice(ino, 0, SliceRecord(0, sid, 4, 0, 4, SLICE_INLINE), data=b"abcd")
    assert counter(meta, "inlinebytes") == 0


def test_commit_refuses_bad_records_and_directories(meta):
    ino = mkfile(meta)
    sid = meta.new_slice_id()
    with pytest.raises(InvalidArgument):
        meta.commit_slice(ino, 0, SliceRecord(CHUNK_SIZE - 2, sid, 4, 0, 4))  # crosses the chunk
    with pytest.raises(InvalidArgument):
        meta.commit_slice(ino, 0, SliceRecord(0, sid, 4, 2, 4))  # past the slice's end
    with pytest.raises(InvalidArgument):
        meta.commit_slice(ino, 0, SliceRecord(0, sid, 4, 0, 4, SLICE_INLINE), data=b"abc")
    with pytest.raises(IsADirectory):
        meta.commit_slice(ROOT_INO, 0, SliceRecord(0, sid, 4, 0, 4))
    assert meta.read_chunk(ino, 0) == ([], {})


def test_capacity_quota_is_enospc_before_any_write(meta_factory, key_prefix):
    meta = meta_factory(key_prefix, capacity=64 << 10)
    ino = mkfile(meta)
    used = counter(meta, "usedspace")
    sid = meta.new_slice_id()
    with pytest.raises(NoSpace):
        meta.commit_slice(ino, 0, SliceRecord(0, sid, 1 << 20, 0, 1 << 20))
    assert meta.read_chunk(ino, 0) == ([], {}) and counter(meta, "usedspace") == used
    with pytest.raises(NoSpace):
        meta.truncate(ino, 1 << 20)
    with pytest.raises(NoSpace):
        meta.fallocate(ino, 0, 0, 1 << 20)


# -- inline limits --------------------------------------------------------------------------------


def test_inline_cap_and_limit_fall_back_to_s3(meta_factory, key_prefix):
    meta, blobs = meta_factory(key_prefix, inline_limit=16, inline_cap=20), Blobs()
    ino = mkfile(meta)
    write(meta, ino, 0, b"a" * 16, inline=True)
    sid = meta.new_slice_id()
    with pytest.raises(InlineRefused) as cap:
        meta.commit_slice(ino, 0, SliceRecord(16, sid, 8, 0, 8, SLICE_INLINE), data=b"b" * 8)
    assert cap.value.errno == errno.EAGAIN  # never ENOSPC for this
    # the same slice then goes to S3 and commits fine
    blobs.data[sid] = b"b" * 8
    assert meta.commit_slice(ino, 0, SliceRecord(16, sid, 8, 0, 8)).attr.length == 24
    with pytest.raises(InlineRefused):  # over the per-slice limit
        write(meta, ino, 0, b"c" * 17, inline=True)
    assert read_file(meta, ino, blobs) == b"a" * 16 + b"b" * 8
    assert meta.inline_bytes() == 16


def test_every_inline_writer_refuses_past_the_limit_and_the_cap_and_changes_nothing(meta_factory, key_prefix):
    """replace_content (af_replace), replace_entry (af_replace_content) and append_entry
    (af_append_entry) refuse inline bytes over the per-slice limit or the volume's cap with EAGAIN
    (InlineRefused: the caller stores them in S3), before any write; within both they store them."""
    meta = meta_factory(key_prefix, inline_limit=16, inline_cap=20)
    ino = mkfile(meta)
    write(meta, ino, 0, b"a" * 12, inline=True)  # 12 of the 20 cap bytes taken
    before = meta.getattr(ino)

    def refused(call, *args, **kwargs):
        with pytest.raises(InlineRefused) as e:
            call(*args, **kwargs)
        assert e.value.errno == errno.EAGAIN

    for size in (17, 9):  # over the limit; within it but past the cap (12 + 9 > 20)
        sid = meta.new_slice_id()
        refused(meta.replace_content, ino, size, [(0, SliceRecord(0, sid, size, 0, size, SLICE_INLINE), b"r" * size)])
        refused(meta.replace_entry, ROOT_INO, "f", meta.new_slice_id(), size, data=b"w" * size)
        refused(meta.append_entry, ROOT_INO, "f", meta.new_slice_id(), size, data=b"p" * size)
        refused(meta.replace_entry, ROOT_INO, "new", meta.new_slice_id(), size, data=b"n" * size)
    assert meta.getattr(ino) == before and meta.inline_bytes() == 12
    assert read_file(meta, ino) == b"a" * 12
    with pytest.raises(NotFound):
        meta.lookup(ROOT_INO, "new")
    _, result, _ = meta.append_entry(ROOT_INO, "f", meta.new_slice_id(), 8, data=b"p" * 8)  # 12 + 8 fits
    assert result.attr.length == 20 and meta.inline_bytes() == 20
    assert read_file(meta, ino) == b"a" * 12 + b"p" * 8


def test_inline_refused_while_redis_memory_is_high(tmp_path, key_prefix):
    from artifacts_core.meta.engine import RedisMetaEngine
    from artifacts_core.meta.format import Setting, new_uuid

    with RedisServer.start(tmp_path / "r") as server:
        meta = RedisMetaEngine(server.url, key_prefix)
        meta.format(Setting(name="m", uuid=new_uuid(), trash_days=0), require_aof=False)
        ino = mkfile(meta)
        used = int(meta.client.node().info("memory")["used_memory"])
        meta.client.command("CONFIG", "SET", "maxmemory", str(int(used * 1.2)))
        assert meta.refresh_inline_pressure() is True
        before = meta.client.round_trips
        with pytest.raises(InlineRefused):
            write(meta, ino, 0, b"x" * 10, inline=True)
        assert meta.client.round_trips - before <= 1  # at most the id batch: no commit was sent
        meta.client.command("CONFIG", "SET", "maxmemory", "0")
        assert meta.refresh_inline_pressure() is False
        write(meta, ino, 0, b"x" * 10, inline=True)
        assert read_file(meta, ino) == b"x" * 10
        meta.close()


# -- append slices --------------------------------------------------------------------------------


def check_concatenation(data: bytes, sizes: dict[int, int], *, complete: bool = True) -> None:
    """``data`` is the committed records, each whole (pattern(sid, size)), in some order."""
    pos, seen = 0, set()
    while pos < len(data):
        (sid,) = struct.unpack(">Q", data[pos:pos + 8])
        assert sid in sizes and sid not in seen, f"torn or unknown record at {pos}"
        assert data[pos:pos + sizes[sid]] == pattern(sid, sizes[sid]), f"slice {sid} is not whole"
        seen.add(sid)
        pos += sizes[sid]
    assert seen == set(sizes) or not complete


def _appender(meta, ino, count, sizes, lock, seed):
    for i in range(count):
        sid = meta.new_slice_id()
        size = 8 + (seed * 7 + i * 13) % 40
        data = pattern(sid, size)
        inline = i % 2 == 0
        if not inline:
            meta.client.command("SET", f"{meta.keys.prefix}testblob{sid}", data)
        rec = SliceRecord(0, sid, size, 0, size, SLICE_INLINE if inline else SLICE_S3)
        meta.commit_slice(ino, 0, rec, data=data if inline else None, append=True)
        with lock:
            sizes[sid] = size


APPEND_SCRIPT = """
import sys
from artifacts_core.meta.engine import RedisMetaEngine
from artifacts_core.types import Ino
sys.path.insert(0, sys.argv[4])
import test_meta_data as t
import threading
meta = RedisMetaEngine(sys.argv[1], sys.argv[2])
meta.load(require_aof=False)
sizes = {}
t._appender(meta, Ino(int(sys.argv[3])), 40, sizes, threading.Lock(), int(sys.argv[5]))
print(" ".join(f"{k}:{v}" for k, v in sizes.items()))
"""


def test_appends_from_threads_and_processes_land_whole(meta):
    ino = mkfile(meta)
    sizes: dict[int, int] = {}
    lock = threading.Lock()
    url = meta.client.target.redacted()  # the test server has no password
    procs = [subprocess.Popen([sys.executable, "-c", APPEND_SCRIPT, url, meta.keys.prefix, str(ino),
                               os.path.dirname(__file__), str(seed)], stdout=subprocess.PIPE, text=True)
             for seed in (100, 200)]
    threads = [threading.Thread(target=_appender, args=(meta, ino, 40, sizes, lock, seed)) for seed in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for proc in procs:
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        for item in out.split():
            k, v = item.split(":")
            sizes[int(k)] = int(v)
    assert len(sizes) == 4 * 40 + 2 * 40

    def read_s3(sid, size, off, ln):
        return meta.client.command("GET", f"{meta.keys.prefix}testblob{sid}")[off:off + ln]

    attr, records, inline = meta.read_chunk_attr(ino, 0)
    assert attr.length == sum(sizes.values()) and len(records) == len(sizes)
    check_concatenation(assemble(build_view(records, attr.length), 0, attr.length, inline, read_s3), sizes)


def test_append_across_a_chunk_boundary_is_split_and_whole(meta):
    blobs = Blobs()
    ino = mkfile(meta)
    meta.truncate(ino, CHUNK_SIZE - 3)
    result = write(meta, ino, 0, b"0123456789", blobs, append=True)
    assert result.offset == CHUNK_SIZE - 3 and result.attr.length == CHUNK_SIZE + 7
    sid = meta.read_chunk(ino, 1)[0][0].id
    assert meta.read_chunk(ino, 0)[0][-1] == SliceRecord(CHUNK_SIZE - 3, sid, 10, 0, 3)
    assert meta.read_chunk(ino, 1)[0] == [SliceRecord(0, sid, 10, 3, 7)]
    assert refs(meta) == {f"{sid}_10": 1}  # two records: two references
    assert read_file(meta, ino, blobs, CHUNK_SIZE - 5) == b"\0\0" + b"0123456789"


# -- truncate ---------------------------------------------------------------------------------------


def test_truncate_shrink_and_grow_read_zeros(anymeta):
    meta, blobs = anymeta, Blobs()
    ino = mkfile(meta)
    write(meta, ino, 0, bytes(range(100)), blobs)
    write(meta, ino, 50, b"inline", inline=True)
    before = meta.client.round_trips
    attr = meta.truncate(ino, 40)
    assert meta.client.round_trips - before == 1
    assert attr.length == 40 and read_file(meta, ino, blobs) == bytes(range(40))
    attr = meta.truncate(ino, 100)
    assert read_file(meta, ino, blobs) == bytes(range(40)) + bytes(60)
    assert counter(meta, "usedspace") >= space_of(100)


def test_truncate_drops_whole_chunks_with_a_grace_period(meta):
    blobs = Blobs()
    ino = mkfile(meta)
    write(meta, ino, 10, b"a" * 10, blobs)
    write(meta, ino, 2 * CHUNK_SIZE + 5, b"b" * 10, blobs)
    write(meta, ino, CHUNK_SIZE + 1, b"c" * 4, inline=True)
    used = counter(meta, "usedspace")
    attr = meta.truncate(ino, 15)
    assert counter(meta, "usedspace") == used - space_of(2 * CHUNK_SIZE + 15) + space_of(15)
    assert meta.client.command("EXISTS", meta.keys.chunk(ino, 1), meta.keys.chunk(ino, 2)) == 0
    assert meta.client.command("SMEMBERS", meta.keys.chunk_indexes(ino)) == set()
    due = meta.client.command("ZRANGE", meta.keys.delslices, 0, -1, "WITHSCORES")
    assert len(due) == 2  # the S3 slice and the inline one, deletable after the grace period
    assert meta.inline_bytes() == 4  # inline bytes stay readable until then
    assert read_file(meta, ino, blobs) == bytes(10) + b"aaaaa" and attr.length == 15
    # regrowing never shows the old data
    meta.truncate(ino, 2 * CHUNK_SIZE + 20)
    assert read_file(meta, ino, blobs, 10, 20) == b"aaaaa" + bytes(5)
    assert read_file(meta, ino, blobs, 2 * CHUNK_SIZE, 2 * CHUNK_SIZE + 20) == bytes(20)


def test_truncate_permissions_and_setuid_clearing(meta):
    ino = mkfile(meta, mode=0o6755)
    user = Caller(1000, 1000)
    with pytest.raises(PermissionDenied):
        meta.truncate(ino, 10, caller=user, check_access=True)
    attr = meta.truncate(ino, 10, caller=user)  # a writable fd: no permission check
    assert attr.perm == 0o755  # setuid and (group-exec) setgid cleared by a non-root write
    ino2 = mkfile(meta, "g", mode=0o6745)
    attr = write(meta, ino2, 0, b"x", inline=True, caller=user).attr
    assert attr.perm == 0o2745  # setgid without group exec stays (mandatory-locking marker)
    assert meta.truncate(ino2, 0).perm == 0o2745  # root clears nothing
    with pytest.raises(InvalidArgument):
        meta.truncate(ino, -1)
    with pytest.raises(IsADirectory):
        meta.truncate(ROOT_INO, 0)
    with pytest.raises(ArtifactsError) as big:
        meta.truncate(ino, 1 << 60)
    assert big.value.errno == errno.EFBIG


# -- fallocate ------------------------------------------------------------------------------------


def test_fallocate_modes(meta):
    blobs = Blobs()
    ino = mkfile(meta)
    write(meta, ino, 0, b"z" * 100, blobs)
    before = meta.client.round_trips
    assert meta.fallocate(ino, 0, 50, 100).length == 150  # grows, keeps data
    assert meta.client.round_trips - before == 1
    assert read_file(meta, ino, blobs) == b"z" * 100 + bytes(50)
    assert meta.fallocate(ino, FALLOC_FL_KEEP_SIZE, 0, 1000).length == 150
    attr = meta.fallocate(ino, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 10, 20)
    assert attr.length == 150 and read_file(meta, ino, blobs)[:40] == b"z" * 10 + bytes(20) + b"z" * 10
    attr = meta.fallocate(ino, FALLOC_FL_ZERO_RANGE, 90, 100)
    assert attr.length == 190 and read_file(meta, ino, blobs)[80:] == b"z" * 10 + bytes(100)
    attr = meta.fallocate(ino, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 0, 5000)
    assert attr.length == 190 and read_file(meta, ino, blobs) == bytes(190)
    for mode in (FALLOC_FL_PUNCH_HOLE, 0x08, 0x20, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE | 1):
        with pytest.raises(ArtifactsError) as e:
            meta.fallocate(ino, mode, 0, 10)
        assert e.value.errno == errno.EOPNOTSUPP
    with pytest.raises(InvalidArgument):
        meta.fallocate(ino, 0, -1, 10)
    with pytest.raises(InvalidArgument):
        meta.fallocate(ino, 0, 0, 0)
    with pytest.raises(IsADirectory):
        meta.fallocate(ROOT_INO, 0, 0, 10)
    with pytest.raises(InvalidArgument):  # EINVAL comes before EOPNOTSUPP, as in Linux
        meta.fallocate(ino, 0x08, 0, 0)
    fifo, _ = meta.mknod(ROOT_INO, "fifo", stat.S_IFIFO | 0o644)
    with pytest.raises(ArtifactsError) as e:
        meta.fallocate(fifo, 0, 0, 10)
    assert e.value.errno == errno.ESPIPE
    sock, _ = meta.mknod(ROOT_INO, "sock", stat.S_IFSOCK | 0o644)
    with pytest.raises(ArtifactsError) as e:
        meta.fallocate(sock, 0, 0, 10)
    assert e.value.errno == errno.ENODEV


# -- copy_file_range -------------------------------------------------------------------------------


def test_copy_file_range_shares_slices(anymeta):
    meta, blobs = anymeta, Blobs()
    src, dst = mkfile(meta, "src"), mkfile(meta, "dst")
    write(meta, src, 0, b"S" * 100, blobs)
    write(meta, src, 20, b"inline", inline=True)
    write(meta, dst, 0, b"D" * 300, blobs)
    before = meta.client.round_trips
    copied, attr = meta.copy_file_range(src, 10, dst, 250, 1000)
    assert meta.client.round_trips - before == 1
    assert copied == 90 and attr.length == 340  # short copy: the source ends at 100
    expect = b"D" * 250 + b"S" * 10 + b"inline" + b"S" * 74
    assert read_file(meta, dst, blobs) == expect
    assert sorted(refs(meta).values()) == [1, 1]  # both source slices now have two references
    assert meta.copy_file_range(src, 100, dst, 0, 10) == (0, attr)
    with pytest.raises(InvalidArgument):
        meta.copy_file_range(src, 0, src, 50, 60)  # overlapping ranges of one file


def test_copy_file_range_across_chunk_boundaries_and_holes(meta):
    blobs = Blobs()
    src, dst = mkfile(meta, "src"), mkfile(meta, "dst")
    write(meta, src, CHUNK_SIZE - 10, b"A" * 20, blobs)
    meta.fallocate(src, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, CHUNK_SIZE - 5, 2)
    write(meta, dst, 0, b"d" * 40, blobs)
    copied, _ = meta.copy_file_range(src, CHUNK_SIZE - 12, dst, 3, 30)
    assert copied == 22
    assert read_file(meta, dst, blobs) == b"ddd" + bytes(2) + b"A" * 5 + bytes(2) + b"A" * 13 + b"d" * 15
    # the one source slice is now referenced by its record plus the (split) copies
    src_slices = {r.id for i in (0, 1) for r in meta.read_chunk(src, i)[0] if r.id}
    assert len(src_slices) == 2


def test_forced_compaction_flag_after_many_overwrites(meta):
    ino = mkfile(meta)
    result = None
    for i in range(1000):
        result = write(meta, ino, i % 7, b"x", inline=True)
    assert result.records == 1000 and result.compaction == COMPACT_NOW


def test_attr_bytes_are_what_getattr_sees(meta):
    ino = mkfile(meta)
    result = write(meta, ino, 0, b"hello", inline=True)
    raw = meta.client.command("GET", meta.keys.inode(ino))
    assert unpack_attr(raw) == result.attr


def test_slice_ids_are_unique_across_threads_and_clients(meta_factory, key_prefix):
    a, b = meta_factory(key_prefix), meta_factory(key_prefix)
    got: list[int] = []
    lock = threading.Lock()

    def take(engine):
        ids = [engine.new_slice_id() for _ in range(3000)]
        with lock:
            got.extend(ids)

    threads = [threading.Thread(target=take, args=(e,)) for e in (a, a, b, b)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(got) == len(set(got)) == 12000 and min(got) > 0
    batch = a.new_slice_ids(10)
    assert len(batch) == 10 and not set(batch) & set(got)


def test_replace_content_swaps_everything_in_one_call(anymeta):
    meta, blobs = anymeta, Blobs()
    ino = mkfile(meta)
    write(meta, ino, 0, b"old" * 100, blobs)
    write(meta, ino, CHUNK_SIZE + 5, b"tail", inline=True)
    a, b = meta.new_slice_id(), meta.new_slice_id()
    blobs.data[a] = b"N" * 20
    new = [(0, SliceRecord(0, a, 20, 0, 20), None),
           (0, SliceRecord(20, b, 5, 0, 5, SLICE_INLINE), b"fresh"),
           (1, SliceRecord(0, a, 20, 10, 10), None)]  # one slice in two places: two references
    before = meta.client.round_trips
    result = meta.replace_content(ino, CHUNK_SIZE + 10, new)
    assert meta.client.round_trips - before == 1
    assert result.attr.length == CHUNK_SIZE + 10 and not result.duplicate
    assert read_file(meta, ino, blobs, 0, 30) == b"N" * 20 + b"fresh" + bytes(5)
    assert read_file(meta, ino, blobs, CHUNK_SIZE) == b"N" * 10
    assert refs(meta) == {f"{a}_20": 1}
    assert meta.inline_bytes() == 4 + 5  # the old inline slice waits for its grace period
    assert len(meta.client.command("ZRANGE", meta.keys.delslices, 0, -1)) == 2
    again = meta.replace_content(ino, CHUNK_SIZE + 10, new)
    assert again.duplicate and meta.read_chunk(ino, 0)[0] == [r for i, r, _ in new if i == 0]
    c = meta.new_slice_id()
    with pytest.raises(InvalidArgument):  # a record past the new length
        meta.replace_content(ino, 10, [(0, SliceRecord(0, c, 20, 0, 20), None)])
    meta.unlink(ROOT_INO, "f")
    with pytest.raises(NotFound):
        meta.replace_content(ino, 0, [])


def test_a_huge_sparse_file_is_walked_by_its_lists_not_its_length(meta):
    """Truncating, punching or deleting a sparse 1 PiB file touches the few lists it has: one
    call must never loop over millions of chunk indexes while Redis serves everyone else."""
    blobs = Blobs()
    ino = mkfile(meta)
    huge = 1 << 50
    meta.truncate(ino, huge)
    write(meta, ino, huge - 10, b"end", blobs)
    write(meta, ino, 5 * CHUNK_SIZE, b"mid", inline=True)
    assert meta.client.command("SMEMBERS", meta.keys.chunk_indexes(ino)) == {
        str((huge - 10) // CHUNK_SIZE).encode(), b"5"}
    started = time.monotonic()
    meta.fallocate(ino, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, huge)
    assert read_file(meta, ino, blobs, huge - 10) == bytes(10)
    meta.truncate(ino, 4)
    # a walk over 2^24 chunk indexes would take many seconds; the lists are two
    assert time.monotonic() - started < 1.0
    assert meta.client.command("SMEMBERS", meta.keys.chunk_indexes(ino)) == set()
    assert len(meta.client.command("ZRANGE", meta.keys.delslices, 0, -1)) == 2
    write(meta, ino, 7 * CHUNK_SIZE, b"again", blobs)
    meta.unlink(ROOT_INO, "f")
    stats = meta.reclaim(blobs.delete, interval=None, now_offset=3600)
    assert stats.files == 1 and stats.chunks == 2 and len(blobs.deleted) == 2
