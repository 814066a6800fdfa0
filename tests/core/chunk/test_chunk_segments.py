"""Reading format v2 blocks through the chunk store (docs/chunks.md): small reads fetch segments
with ranged GETs, damage fails only the reads that touch it, identity is checked, v1 and v2
blocks of one volume both read, and the disk cache keeps segments across restarts -- on the
in-memory store and on the real SeaweedFS S3 gateway.
"""

from __future__ import annotations

import errno
import random
import threading

import pytest
from test_chunk_store import Gate, Instrumented, payload, wait_until, write_slice
from testbed import TEST_BUCKET

from artifacts_core.chunk import ChunkStore, DiskCache, block_key
from artifacts_core.chunk.keys import BlockKey, segment_cache_key
from artifacts_core.chunk.segmented import parse_table, table_size
from artifacts_core.errors import IntegrityError, MissingObject
from artifacts_core.objects.memory import MemoryObjectStore
from artifacts_core.types import SliceId

MiB = 1 << 20
BLOCK = 4 * MiB  # the real default: a read in the middle is far from the block start
SEG = 256 << 10
SMALL_BS, SMALL_SEG = 64 << 10, 4 << 10  # small blocks for the multi-block cases


@pytest.fixture(params=["memory", pytest.param("s3", marks=pytest.mark.s3)])
def store(request, lt):
    if request.param == "memory":
        inner = MemoryObjectStore()
    else:
        from artifacts_core.objects.prefix import PrefixedObjectStore
        from artifacts_core.objects.s3 import S3ObjectStore

        s3 = request.getfixturevalue("s3_server")
        inner = PrefixedObjectStore(S3ObjectStore(
            TEST_BUCKET, endpoint=s3.endpoint, region=s3.region, access_key=s3.access_key,
            secret_key=s3.secret_key), request.getfixturevalue("s3_prefix"))
    wrapped = Instrumented(inner)
    yield wrapped
    lt.run(wrapped.close())


@pytest.fixture
def chunks_on(lt):
    made: list[ChunkStore] = []

    def make(store, **kw) -> ChunkStore:
        kw.setdefault("block_size", BLOCK)
        kw.setdefault("segment_size", SEG)
        chunks = ChunkStore(store, lt, **kw)
        made.append(chunks)
        return chunks

    yield make
    for chunks in made:
        chunks.close()


def cold(store, chunks_on, **kw) -> ChunkStore:
    """A new reader: empty memory cache, GET counts reset."""
    store.gets.clear()
    store.ranges.clear()
    store.bytes_got = 0
    return chunks_on(store, **kw)


def test_sparse_small_reads_fetch_a_table_and_one_segment_per_block(store, chunks_on):
    data = random.Random(3).randbytes(2 * BLOCK)  # incompressible: every segment is stored raw
    write_slice(chunks_on(store), 1, data, piece=MiB)
    chunks = cold(store, chunks_on)
    tsize = table_size(BLOCK, SEG)
    for block, off in ((1, BLOCK + 3 * MiB + 1000), (0, 2 * MiB + 7)):  # far from each block start
        before = len(store.ranges)
        assert chunks.read(SliceId(1), len(data), off, 4096, whole=False) == data[off:off + 4096]
        key = block_key(SliceId(1), block, BLOCK)
        k = (off - block * BLOCK) // SEG
        # the table and, sent beside it, the segment where a raw layout puts it: one round trip
        assert sorted(store.ranges[before:]) == [(key, 0, tsize), (key, tsize + k * SEG, SEG)]
        assert chunks.read(SliceId(1), len(data), off + 10, 10, whole=False) == data[off + 10:off + 20]
        assert len(store.ranges) == before + 2  # the same segment again: memory
    assert store.bytes_got < 2 * SEG + 4000  # not two 4 MiB blocks
    stats = chunks.stats()
    assert stats["table_downloads"] == 2 and stats["segment_downloads"] == 2 and stats["downloads"] == 0


def test_on_compressible_data_the_layout_guess_stops_after_a_few_misses(store, chunks_on):
    data = payload(6 * BLOCK, seed=17)  # every segment lz4-compressed: the raw-layout guess is wrong
    write_slice(chunks_on(store), 18, data, piece=MiB)
    chunks = cold(store, chunks_on)
    guesses = []
    for block in range(6):
        off = block * BLOCK + 3 * MiB
        assert chunks.read(SliceId(18), len(data), off, 100, whole=False) == data[off:off + 100]
        guesses.append(chunks.stats()["layout_guesses"])
    assert guesses == [1, 2, 3, 4, 4, 4]  # each wrong, until the recent ones are mostly wrong
    assert chunks.stats()["layout_guesses_wrong"] == 4
    assert chunks.stats()["segment_downloads"] - 4 <= 6  # the ranged GET each read needs, plus the guesses sent


def test_a_second_miss_in_one_block_fetches_the_rest_of_it_whole(store, chunks_on):
    data = payload(BLOCK, seed=15)
    write_slice(chunks_on(store), 16, data, piece=MiB)
    chunks = cold(store, chunks_on)
    key = block_key(SliceId(16), 0, BLOCK)
    assert chunks.read(SliceId(16), BLOCK, 3 * MiB, 100, whole=False) == data[3 * MiB:3 * MiB + 100]
    assert chunks.stats()["prefetches"] == 0  # one miss: no promotion
    assert (key, 0, None) not in store.ranges
    assert chunks.read(SliceId(16), BLOCK, 2 * MiB, 100, whole=False) == data[2 * MiB:2 * MiB + 100]
    assert wait_until(lambda: key in chunks.memory_cache)  # the whole block, in the background
    assert (key, 0, None) in store.ranges and chunks.stats()["prefetches"] == 1
    gets = len(store.ranges)
    for off in range(0, BLOCK, 300_001):
        assert chunks.read(SliceId(16), BLOCK, off, 4096, whole=False) == data[off:off + 4096]
    assert len(store.ranges) == gets


def test_a_dense_reader_fetches_the_rest_of_a_block_on_its_first_miss(store, chunks_on):
    data = payload(BLOCK, seed=19)
    write_slice(chunks_on(store), 20, data, piece=MiB)
    chunks = cold(store, chunks_on)
    key = block_key(SliceId(20), 0, BLOCK)
    assert chunks.read(SliceId(20), BLOCK, 3 * MiB, 100, whole=False, dense=True) == data[3 * MiB:3 * MiB + 100]
    assert wait_until(lambda: key in chunks.memory_cache)
    assert chunks.stats()["prefetches"] == 1


def test_a_small_read_near_the_block_start_is_one_get(store, chunks_on):
    data = payload(BLOCK, seed=4)
    write_slice(chunks_on(store), 2, data, piece=MiB)
    chunks = cold(store, chunks_on)
    assert chunks.read(SliceId(2), len(data), 300_000, 5000, whole=False) == data[300_000:305_000]
    assert len(store.ranges) == 1  # header, table and the first two segments together
    assert chunks.read(SliceId(2), len(data), 10, 10, whole=False) == data[10:20]
    assert len(store.ranges) == 1  # segment 0 came with that GET


def test_sequential_reads_fetch_whole_blocks(store, chunks_on):
    data = payload(BLOCK + 5000, seed=5)
    write_slice(chunks_on(store), 3, data, piece=MiB)
    chunks = cold(store, chunks_on)
    assert chunks.read(SliceId(3), len(data), 0, 4096) == data[:4096]  # whole=True: the default
    assert store.ranges == [(block_key(SliceId(3), 0, BLOCK), 0, None)]
    assert chunks.read(SliceId(3), len(data), 2 * MiB, MiB, whole=False) == data[2 * MiB:3 * MiB]
    assert len(store.ranges) == 1  # the whole block is cached


def damage(lt, store, key: str, at: int) -> None:
    obj = bytearray(lt.run(store.inner.get(key)))
    obj[at] ^= 0x04
    lt.run(store.inner.put(key, bytes(obj)))


@pytest.mark.parametrize("whole", [True, False])
def test_a_damaged_segment_fails_only_the_reads_that_touch_it(lt, store, chunks_on, whole):
    data = payload(BLOCK, seed=6)
    write_slice(chunks_on(store), 4, data, piece=MiB)
    key = block_key(SliceId(4), 0, BLOCK)
    table = parse_table(lt.run(store.inner.get(key, 0, table_size(BLOCK, SEG))), BlockKey(SliceId(4), 0, BLOCK))
    bad = 9
    damage(lt, store, key, (table.offsets[bad] + table.offsets[bad + 1]) // 2)
    chunks = cold(store, chunks_on)
    good = [(0, 100), (bad * SEG - 4096, 4096), ((bad + 1) * SEG, 4096), (BLOCK - 10, 10)]
    touching = [(bad * SEG + 5, 10), (bad * SEG - 10, 20), ((bad + 1) * SEG - 1, 2)]
    for _ in range(2):  # nothing damaged is cached: the second round fails the same way
        for off, n in good:
            assert chunks.read(SliceId(4), BLOCK, off, n, whole=whole) == data[off:off + n]
        for off, n in touching:
            with pytest.raises(IntegrityError) as info:
                chunks.read(SliceId(4), BLOCK, off, n, whole=whole)
            assert info.value.errno == errno.EIO
    with pytest.raises(IntegrityError):
        chunks.read(SliceId(4), BLOCK, 0, BLOCK, whole=whole)
    assert chunks.stats()["integrity_errors"] >= 2


@pytest.mark.parametrize("whole", [True, False])
def test_a_missing_block_is_missing_object_whichever_shape_asked(lt, store, chunks_on, whole):
    """A deleted v2 block is ``MissingObject`` (EIO, naming the key) for a whole-block GET and for
    the table/segment GETs of a small read alike: the VFS refreshes its view and counts it only
    for that error (docs/vfs.md), so the segment path must not report it as another failure."""
    data = payload(2 * BLOCK, seed=12)
    write_slice(chunks_on(store), 13, data, piece=MiB)
    key = block_key(SliceId(13), 1, BLOCK)
    lt.run(store.delete(key))
    chunks = cold(store, chunks_on)
    with pytest.raises(MissingObject) as info:
        chunks.read(SliceId(13), 2 * BLOCK, BLOCK + 3 * MiB, 4096, whole=whole)
    assert info.value.errno == errno.EIO and info.value.path.endswith(key)
    assert chunks.read(SliceId(13), 2 * BLOCK, 3 * MiB, 4096, whole=whole) == data[3 * MiB:3 * MiB + 4096]


@pytest.mark.parametrize("whole", [True, False])
def test_a_valid_block_stored_under_another_key_fails(lt, store, chunks_on, whole):
    a, b = payload(BLOCK, seed=7), payload(BLOCK, seed=8)
    writer = chunks_on(store)
    write_slice(writer, 5, a, piece=MiB)
    write_slice(writer, 6, b, piece=MiB)
    lt.run(store.inner.put(block_key(SliceId(6), 0, BLOCK), lt.run(store.inner.get(block_key(SliceId(5), 0, BLOCK)))))
    chunks = cold(store, chunks_on)
    with pytest.raises(IntegrityError, match="identity"):
        chunks.read(SliceId(6), BLOCK, 3 * MiB, 100, whole=whole)
    assert chunks.read(SliceId(5), BLOCK, 3 * MiB, 100, whole=whole) == a[3 * MiB:3 * MiB + 100]


def test_v1_and_v2_blocks_of_one_volume_read_in_both_modes(store, chunks_on):
    """A v1 volume switched to v2 holds both: readers take the version from each block."""
    old, new = payload(BLOCK, seed=9), payload(BLOCK, seed=10)
    write_slice(chunks_on(store, block_format=1), 7, old, piece=MiB)
    write_slice(chunks_on(store), 8, new, piece=MiB)
    for fmt in (2, 1):
        for whole in (False, True):
            chunks = cold(store, chunks_on, block_format=fmt)
            for sid, data in ((7, old), (8, new)):
                for off in (3 * MiB, 10, 3 * MiB + 7):
                    assert chunks.read(SliceId(sid), BLOCK, off, 4096, whole=whole) == data[off:off + 4096]
            # a v1 block in segment mode: probed once (the table GET finds a v1 frame), fetched
            # whole once, then served from memory
            key = block_key(SliceId(7), 0, BLOCK)
            probes = store.ranges.count((key, 0, table_size(BLOCK, SEG)))
            assert probes == (1 if fmt == 2 and not whole else 0)
            assert store.ranges.count((key, 0, None)) == 1


def test_concurrent_small_readers_of_one_segment_share_one_get(lt, store, chunks_on):
    data = payload(BLOCK, seed=11)
    write_slice(chunks_on(store), 9, data, piece=MiB)
    chunks = cold(store, chunks_on)
    store.get_gate = Gate(lt)
    results: list[bytes] = []
    threads = [threading.Thread(target=lambda i=i: results.append(
        bytes(chunks.read(SliceId(9), BLOCK, 2 * MiB + i * 100, 100, whole=False)))) for i in range(6)]
    for t in threads:
        t.start()
    assert wait_until(lambda: len(store.ranges) >= 1)
    store.get_gate.open()
    for t in threads:
        t.join(10)
    assert sorted(results) == sorted(data[2 * MiB + i * 100:2 * MiB + i * 100 + 100] for i in range(6))
    assert len(store.ranges) == 3  # one table GET, one guessed segment GET, one segment GET


def test_segments_survive_a_restart_in_the_disk_cache(store, chunks_on, tmp_path):
    data = payload(BLOCK, seed=12)
    write_slice(chunks_on(store), 10, data, piece=MiB)
    chunks = cold(store, chunks_on, disk_cache=DiskCache(tmp_path))
    off = 3 * MiB + 5
    assert chunks.read(SliceId(10), BLOCK, off, 100, whole=False) == data[off:off + 100]
    chunks.close()  # the background cache writes finish
    name = segment_cache_key(block_key(SliceId(10), 0, BLOCK), off // SEG)
    assert (tmp_path / name).is_file()
    reopened = DiskCache(tmp_path)
    chunks = cold(store, chunks_on, disk_cache=reopened)
    assert chunks.read(SliceId(10), BLOCK, off, 100, whole=False) == data[off:off + 100]
    assert store.ranges == [] and chunks.stats()["disk_hits"] == 1
    # a damaged segment file is dropped and the segment fetched again
    path = tmp_path / name
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 1
    path.write_bytes(raw)
    chunks = cold(store, chunks_on, disk_cache=DiskCache(tmp_path))
    assert chunks.read(SliceId(10), BLOCK, off, 100, whole=False) == data[off:off + 100]
    stats = chunks.stats()
    # the file's table verified (it is reused); its damaged segment comes from the store
    assert stats["disk_corrupt"] == 1 and stats["table_downloads"] == 0 and stats["segment_downloads"] == 1


def test_warm_fills_the_disk_cache_and_evict_empties_it(lt, store, chunks_on, tmp_path):
    data = payload(2 * SMALL_BS + 100, seed=13)
    write_slice(chunks_on(store, block_size=SMALL_BS, segment_size=SMALL_SEG), 11, data)
    chunks = cold(store, chunks_on, block_size=SMALL_BS, segment_size=SMALL_SEG, disk_cache=DiskCache(tmp_path))
    blocks = chunks.blocks(SliceId(11), len(data))
    seen = []
    counts = lt.run(chunks.warm(blocks, progress=lambda b, outcome: seen.append(outcome)))
    assert (counts["fetched"], counts["cached"], counts["failed"]) == (3, 0, 0) and seen == ["fetched"] * 3
    assert counts["fetched_bytes"] == store.bytes_got > 0  # the objects as stored (compressed)
    stored = counts["fetched_bytes"]
    counts = lt.run(chunks.warm(blocks))
    assert (counts["fetched"], counts["cached"]) == (0, 3)
    assert chunks.memory_cache.size == 0  # warmup fills the disk, not memory
    chunks.read(SliceId(11), len(data), SMALL_BS + 5, 10, whole=False)
    other = cold(store, chunks_on, block_size=SMALL_BS, segment_size=SMALL_SEG, disk_cache=DiskCache(tmp_path))
    assert other.read(SliceId(11), len(data), 0, len(data)) == data
    assert store.ranges == []
    assert blocks == [BlockKey(SliceId(11), i, n) for i, n in enumerate((SMALL_BS, SMALL_BS, 100))]
    files, freed = other.evict(blocks)
    assert (files, freed) == (3, stored)
    assert len(DiskCache(tmp_path)) == 0


def test_remove_drops_cached_segments_from_memory_and_disk(store, chunks_on, tmp_path):
    data = payload(BLOCK, seed=14)
    write_slice(chunks_on(store), 12, data, piece=MiB)
    chunks = cold(store, chunks_on, disk_cache=DiskCache(tmp_path))
    chunks.read(SliceId(12), BLOCK, 3 * MiB, 10, whole=False)
    chunks.close()
    chunks = cold(store, chunks_on, disk_cache=DiskCache(tmp_path))
    chunks.read(SliceId(12), BLOCK, 3 * MiB, 10, whole=False)
    chunks.remove(SliceId(12), BLOCK)
    assert len(DiskCache(tmp_path)) == 0
    assert chunks.memory_cache.size == 0
