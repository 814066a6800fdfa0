"""ChunkStore (DESIGN.md §3, §5): the slice writer contract, reads, caches, single-flight,
back-pressure and integrity — on the in-memory store and on the real SeaweedFS S3 gateway.

Fault injection and request counting use :class:`Instrumented`, a wrapper around the real store.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import random
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from testbed import TEST_BUCKET

from artifacts_core.aio import LoopThread
from artifacts_core.chunk import ChunkStore, ReadaheadWindow, Span, WriterState, block_key
from artifacts_core.chunk.codec import INTEGRITY_ERRORS
from artifacts_core.errors import IntegrityError, InvalidArgument, StorageError
from artifacts_core.objects.base import list_all
from artifacts_core.objects.memory import MemoryObjectStore
from artifacts_core.types import SliceId

BS = 64 << 10  # small blocks keep multi-block tests fast


def payload(size: int, seed: int = 1) -> bytes:
    """Half-compressible bytes: random runs alternating with constant runs."""
    rng = random.Random(seed)
    out = bytearray()
    while len(out) < size:
        out += rng.randbytes(512) + bytes([rng.randrange(256)]) * 512
    return bytes(out[:size])


def wait_until(predicate, timeout: float = 10.0) -> bool:
    """Wait for a state change made by another thread (not for time to pass)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


class Gate:
    """Holds coroutines on the loop until opened from a test thread."""

    def __init__(self, lt: LoopThread) -> None:
        self._lt = lt
        self._event: asyncio.Event | None = None
        self._open = False

    async def wait(self) -> None:
        if self._open:
            return
        if self._event is None:
            self._event = asyncio.Event()
        await self._event.wait()

    def open(self) -> None:
        def _set() -> None:
            self._open = True
            if self._event is not None:
                self._event.set()

        self._lt.call_soon(_set)


class Instrumented:
    """A real store, wrapped: counts requests, can hold GETs/PUTs at a gate and fail PUTs."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.gets: collections.Counter[str] = collections.Counter()
        self.ranges: list[tuple[str, int, int | None]] = []  # every GET: key, offset, length
        self.bytes_got = 0
        self.puts: list[str] = []
        self.get_gate: Gate | None = None
        self.put_gate: Gate | None = None
        self.fail_put = lambda key: False
        self._cond = threading.Condition()

    def describe(self) -> str:
        return "instrumented " + self.inner.describe()

    async def get(self, key, offset=0, length=None):
        self.gets[key] += 1
        self.ranges.append((key, offset, length))
        if self.get_gate is not None:
            await self.get_gate.wait()
        data = await self.inner.get(key, offset, length)
        self.bytes_got += len(data)
        return data

    async def put(self, key, data, **options):
        if self.put_gate is not None:
            await self.put_gate.wait()
        if self.fail_put(key):
            raise StorageError("injected PUT failure", path=key)
        await self.inner.put(key, data, **options)
        with self._cond:
            self.puts.append(key)
            self._cond.notify_all()

    async def delete(self, key):
        await self.inner.delete(key)

    async def head(self, key):
        return await self.inner.head(key)

    async def list(self, prefix="", start_after="", limit=1000):
        return await self.inner.list(prefix, start_after, limit)

    async def close(self):
        await self.inner.close()

    def wait_puts(self, n: int, timeout: float = 10.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.puts) >= n, timeout)


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
def make_chunks(lt):
    made: list[ChunkStore] = []

    def make(store, **kw) -> ChunkStore:
        kw.setdefault("block_size", BS)
        chunks = ChunkStore(store, lt, **kw)
        made.append(chunks)
        return chunks

    yield make
    for chunks in made:
        chunks.close()


def stored(lt, store) -> list[str]:
    async def collect():
        return [info.key async for info in list_all(store, "chunks/")]

    return sorted(lt.run(collect()))


def write_slice(chunks: ChunkStore, sid: int, data: bytes, piece: int = 10_000) -> int:
    w = chunks.writer(SliceId(sid))
    for off in range(0, len(data), piece):
        w.write(off, data[off:off + piece])
    return w.finish()


# -- writing -----------------------------------------------------------------------------------

def test_multi_block_slice_round_trips_under_the_documented_keys(lt, store, make_chunks):
    chunks = make_chunks(store)
    data = payload(5 * BS + 1234)
    assert write_slice(chunks, 1_234_567, data) == len(data)
    expected = [block_key(SliceId(1_234_567), i, BS) for i in range(5)] + [block_key(SliceId(1_234_567), 5, 1234)]
    assert stored(lt, store) == sorted(expected)
    assert expected[0] == "chunks/1/1234/1234567_0_65536"
    chunks.memory_cache.clear()
    assert chunks.read(SliceId(1_234_567), len(data), 0, len(data)) == data
    assert chunks.stats()["downloads"] == 6


def test_default_4mib_blocks(lt, store, make_chunks):
    chunks = make_chunks(store, block_size=4 << 20)
    data = payload(10 << 20, seed=4)
    assert write_slice(chunks, 77, data, piece=1 << 20) == len(data)
    assert [k.rsplit("/", 1)[1] for k in stored(lt, store)] == ["77_0_4194304", "77_1_4194304", "77_2_2097152"]
    chunks.memory_cache.clear()
    for offset, length in [(0, len(data)), ((4 << 20) - 10, 20), ((8 << 20) + 5, 3 << 20), (100, 1)]:
        assert chunks.read(SliceId(77), len(data), offset, length) == data[offset:offset + length]


def test_full_blocks_stream_to_the_store_before_finish(lt, store, make_chunks):
    chunks = make_chunks(store)
    data = payload(3 * BS + 100)
    w = chunks.writer(SliceId(5))
    w.write(0, data)
    assert store.wait_puts(3), "full blocks were not uploaded while the slice was still open"
    keys = stored(lt, store)
    assert keys == sorted(block_key(SliceId(5), i, BS) for i in range(3))
    assert w.frozen_offset == 3 * BS and w.state is WriterState.WRITING
    assert w.finish() == len(data)
    assert len(stored(lt, store)) == 4


def test_writes_at_offsets_gaps_and_tail_rewrites(lt, store, make_chunks):
    chunks = make_chunks(store)
    model = bytearray()
    w = chunks.writer(SliceId(9))

    def write(offset, data):
        w.write(offset, data)
        if offset > len(model):
            model.extend(bytes(offset - len(model)))
        model[offset:offset + len(data)] = data

    write(0, payload(1000, 1))
    write(500, payload(2000, 2))           # rewrite inside the open tail
    write(BS + 10, payload(300, 3))        # a gap: block 0 fills with zeros and freezes
    write(BS, payload(5, 4))               # rewrite the gap's start in the tail block
    write(3 * BS + 7, payload(BS, 5))      # gap spanning whole blocks
    with pytest.raises(InvalidArgument):
        w.write(100, b"late")              # block 0 is uploading: the VFS must start a new slice
    assert w.finish() == len(model)
    chunks.memory_cache.clear()
    assert chunks.read(SliceId(9), len(model), 0, len(model)) == bytes(model)
    with pytest.raises(InvalidArgument):
        chunks.writer(SliceId(10)).write((64 << 20) - 1, b"xy")  # a slice ends within its chunk


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(st.tuples(st.integers(0, 3 * 4096), st.integers(0, 3 * 4096)), min_size=1, max_size=12))
def test_any_write_sequence_reads_back_like_a_bytearray(lt, ops):
    chunks = ChunkStore(MemoryObjectStore(), lt, block_size=4096)
    try:
        model = bytearray()
        w = chunks.writer(SliceId(1))
        for i, (back, size) in enumerate(ops):
            offset = max(w.frozen_offset, len(model) - back)
            data = random.Random(i).randbytes(size)
            w.write(offset, data)
            model.extend(bytes(max(0, offset - len(model))))
            model[offset:offset + size] = data
        assert w.finish() == len(model)
        chunks.memory_cache.clear()
        assert chunks.read(SliceId(1), len(model), 0, len(model)) == bytes(model)
    finally:
        chunks.close()


def test_finish_raises_the_first_upload_error_and_abort_cleans_up(lt, store, make_chunks):
    chunks = make_chunks(store)
    bad = block_key(SliceId(3), 1, BS)
    store.fail_put = lambda key: key == bad
    w = chunks.writer(SliceId(3))
    w.write(0, payload(4 * BS + 10))
    with pytest.raises(StorageError) as info:
        w.finish()
    assert info.value.errno == errno.EIO
    assert w.state is WriterState.FAILED
    with pytest.raises(StorageError):
        w.write(w.length, b"more")
    assert chunks.stats()["upload_errors"] == 1
    assert stored(lt, store)  # the other blocks were stored ...
    w.abort()
    assert stored(lt, store) == []  # ... and abort deleted them
    assert chunks.budget.used == 0


def test_abort_deletes_uploaded_blocks_and_releases_the_budget(lt, store, make_chunks):
    chunks = make_chunks(store)
    w = chunks.writer(SliceId(4))
    w.write(0, payload(3 * BS + 50))
    assert store.wait_puts(3)
    w.abort()
    w.abort()  # idempotent
    assert stored(lt, store) == []
    assert w.state is WriterState.ABORTED
    assert chunks.budget.used == 0
    with pytest.raises(InvalidArgument):
        w.write(w.length, b"x")


@pytest.mark.parametrize("block_format", [1, 2])
def test_a_block_is_never_overwritten_by_another_slice(lt, store, make_chunks, block_format):
    """A slice id handed out twice (a Redis rollback) must not let the second writer replace the
    first one's blocks: its upload fails loudly, is counted, and the first slice reads back. The
    same bytes again (a retried PUT whose answer was lost) are not a collision. Both block
    formats: a v2 segmented block is as create-only as a v1 frame."""
    reused = []
    chunks = make_chunks(store, on_reused_id=lambda: reused.append(1), block_format=block_format,
                         segment_size=4 << 10)
    first, second = payload(2 * BS + 10), bytes(reversed(payload(2 * BS + 10)))
    write_slice(chunks, 71, first)
    with pytest.raises(StorageError) as err:
        write_slice(chunks, 71, second)
    assert err.value.errno == errno.EIO and "another slice" in str(err.value)
    assert chunks.stats()["block_collisions"] >= 1 and reused
    chunks.memory_cache.remove(block_key(SliceId(71), 0, BS))
    chunks.memory_cache.remove(block_key(SliceId(71), 2, 10))
    assert chunks.read(SliceId(71), len(first), 0, len(first)) == first
    before = chunks.stats()["block_collisions"]
    assert write_slice(chunks, 71, first) == len(first)  # identical bytes: our own earlier PUT
    assert chunks.stats()["block_collisions"] == before


def test_writes_block_while_the_budget_is_exhausted_and_resume(lt, make_chunks):
    store = Instrumented(MemoryObjectStore())
    store.put_gate = Gate(lt)
    chunks = make_chunks(store, buffer_budget=4 * BS)
    data = payload(8 * BS)
    progress: list[int] = []
    w = chunks.writer(SliceId(8))

    def writer():
        for i in range(8):
            w.write(i * BS, data[i * BS:(i + 1) * BS])
            progress.append(i)

    thread = threading.Thread(target=writer)
    thread.start()
    assert wait_until(lambda: chunks.budget.waits >= 1), "the writer never hit back-pressure"
    assert thread.is_alive()
    assert progress == [0, 1, 2, 3]  # four blocks in flight fill the budget; the fifth waits
    assert chunks.budget.used <= 4 * BS and store.puts == []
    store.put_gate.open()
    thread.join(10)
    assert not thread.is_alive() and progress == list(range(8))
    assert w.finish() == len(data)
    assert chunks.budget.used == 0
    chunks.memory_cache.clear()
    assert chunks.read(SliceId(8), len(data), 0, len(data)) == data


# -- reading -----------------------------------------------------------------------------------

def test_reads_across_block_boundaries_and_partial_ranges(store, make_chunks):
    chunks = make_chunks(store)
    data = payload(4 * BS + 999, seed=9)
    n = write_slice(chunks, 11, data)
    ranges = [(0, 1), (BS - 1, 2), (BS - 100, 2 * BS + 200), (3 * BS, BS + 999), (4 * BS + 998, 10),
              (5, len(data) * 2), (len(data), 10), (len(data) + 5, 1), (123, 0)]
    for warm in (False, True):
        if not warm:
            chunks.memory_cache.clear()
        for offset, length in ranges:
            assert chunks.read(SliceId(11), n, offset, length) == data[offset:offset + length], (offset, length)
    assert chunks.stats()["memory_hits"] > 0


def test_concurrent_readers_of_one_block_share_one_download(lt, store, make_chunks):
    readers = 8
    arrived = threading.Event()

    entered = []
    data = payload(2 * BS)
    writer_chunks = make_chunks(store)
    write_slice(writer_chunks, 21, data)
    chunks = ChunkStore(store, lt, block_size=BS)
    fetch = chunks.fetcher.read

    async def probe(*args, **kwargs):
        entered.append(1)
        if len(entered) == readers:
            arrived.set()
        return await fetch(*args, **kwargs)

    chunks.fetcher.read = probe
    store.get_gate = Gate(lt)
    results: list[bytes] = []
    threads = [threading.Thread(target=lambda: results.append(chunks.read(SliceId(21), len(data), 10, 100)))
               for _ in range(readers)]
    for t in threads:
        t.start()
    assert arrived.wait(10), "not every reader reached the block fetch"
    store.get_gate.open()  # only now may the (single) download finish
    for t in threads:
        t.join(10)
    chunks.close()
    assert results == [data[10:110]] * readers
    assert store.gets[block_key(SliceId(21), 0, BS)] == 1


def test_corrupted_object_fails_with_eio_is_counted_and_never_returned(lt, store, make_chunks):
    chunks = make_chunks(store)
    data = payload(3 * BS)
    write_slice(chunks, 31, data)
    key = block_key(SliceId(31), 1, BS)
    damaged = bytearray(lt.run(store.inner.get(key)))
    damaged[len(damaged) // 2] ^= 0x10
    lt.run(store.inner.put(key, bytes(damaged)))
    chunks.memory_cache.clear()
    before = INTEGRITY_ERRORS.value
    for _ in range(2):  # a damaged block never gets cached: every read fails
        with pytest.raises(IntegrityError) as info:
            chunks.read(SliceId(31), len(data), BS + 5, 10)
        assert info.value.errno == errno.EIO
    assert chunks.stats()["integrity_errors"] == 2
    assert INTEGRITY_ERRORS.value == before + 2
    assert chunks.read(SliceId(31), len(data), 0, 10) == data[:10]  # other blocks are fine


def test_missing_block_is_eio_not_enoent(lt, store, make_chunks):
    chunks = make_chunks(store)
    data = payload(2 * BS)
    write_slice(chunks, 41, data)
    lt.run(store.delete(block_key(SliceId(41), 0, BS)))
    chunks.memory_cache.clear()
    with pytest.raises(StorageError) as info:
        chunks.read(SliceId(41), len(data), 0, 10)
    assert info.value.errno == errno.EIO


def test_remove_deletes_every_block_and_drops_the_caches(lt, store, make_chunks):
    chunks = make_chunks(store)
    data = payload(3 * BS + 7)
    write_slice(chunks, 51, data)
    assert chunks.read(SliceId(51), len(data), 0, len(data)) == data  # now cached
    chunks.remove(SliceId(51), len(data))
    assert stored(lt, store) == []
    assert chunks.memory_cache.size == 0
    chunks.remove(SliceId(51), len(data))  # missing blocks are fine
    with pytest.raises(StorageError):
        chunks.read(SliceId(51), len(data), 0, 1)


# -- readahead ---------------------------------------------------------------------------------

def test_prefetch_fills_the_cache_once_per_block(lt, make_chunks):
    store = Instrumented(MemoryObjectStore())
    chunks = make_chunks(store)
    data = payload(4 * BS)
    write_slice(chunks, 61, data)
    store.get_gate = Gate(lt)
    chunks.prefetch(SliceId(61), len(data), 0, len(data))
    chunks.prefetch(SliceId(61), len(data), BS, 2 * BS)  # deduplicated against the first
    store.get_gate.open()
    keys = [block_key(SliceId(61), i, BS) for i in range(4)]
    assert wait_until(lambda: all(k in chunks.memory_cache for k in keys))
    assert wait_until(lambda: chunks.budget.used == 0)
    assert chunks.read(SliceId(61), len(data), 0, len(data)) == data
    assert [store.gets[k] for k in keys] == [1, 1, 1, 1]
    assert chunks.stats()["prefetches"] == 4


def test_prefetch_stays_within_the_budget(lt, make_chunks):
    store = Instrumented(MemoryObjectStore())
    chunks = make_chunks(store, buffer_budget=BS)
    data = payload(4 * BS)
    write_slice(chunks, 62, data)
    store.get_gate = Gate(lt)
    chunks.prefetch(SliceId(62), len(data), 0, len(data))
    assert wait_until(lambda: chunks.stats()["prefetch_skipped"] == 3)
    assert chunks.stats()["prefetches"] == 1
    assert chunks.budget.used == BS
    store.get_gate.open()
    assert wait_until(lambda: chunks.budget.used == 0)


def test_readahead_window_grows_while_sequential_and_resets_on_random():
    ra = ReadaheadWindow(block_size=100, max_window=400)
    assert ra.on_read(0, 50) == Span(50, 100)      # window 100: up to 150
    assert ra.on_read(50, 50) == Span(150, 150)    # window 200: up to 300, 150 already asked for
    assert ra.on_read(100, 50) == Span(300, 250)   # window 400: up to 550
    assert ra.on_read(150, 50) == Span(550, 50)    # window capped at 400: up to 600
    assert ra.on_read(5000, 10) is None and ra.window == 0
    assert ra.on_read(5010, 10) == Span(5020, 100)


def test_stats_snapshot_names_the_counters(store, make_chunks):
    chunks = make_chunks(store)
    write_slice(chunks, 71, payload(BS + 1))
    snap = chunks.stats()
    assert snap["uploads"] == 2 and snap["upload_bytes"] > 0
    for name in ("downloads", "memory_hits", "memory_misses", "disk_hits", "disk_misses", "integrity_errors",
                 "inflight_uploads", "inflight_downloads", "buffer_used"):
        assert name in snap


def test_empty_reads_fetch_nothing(make_chunks):
    store = Instrumented(MemoryObjectStore())
    chunks = make_chunks(store)
    data = payload(2 * BS)
    write_slice(chunks, 81, data)
    chunks.memory_cache.clear()
    assert chunks.read(SliceId(81), len(data), 123, 0) == b""
    assert chunks.read(SliceId(81), len(data), len(data) + 1, 10) == b""
    assert sum(store.gets.values()) == 0
