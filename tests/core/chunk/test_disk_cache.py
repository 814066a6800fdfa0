"""The local disk cache of encoded blocks: restart, damage, limits, failures (docs/chunks.md).

The cache may only ever make reads faster: a damaged file is dropped and re-fetched, a full or
failing disk skips caching, and no read fails because of the cache.
"""

from __future__ import annotations

import errno
import os
import stat

import pytest
from test_chunk_store import BS, Instrumented, payload, write_slice

from artifacts_core.chunk import ChunkStore, DiskCache, block_key, default_cache_dir, encode_block
from artifacts_core.objects.memory import MemoryObjectStore
from artifacts_core.types import SliceId


@pytest.fixture
def store():
    return Instrumented(MemoryObjectStore())


def cold_read(lt, store, cache: DiskCache, sid: int, data: bytes) -> ChunkStore:
    """A fresh chunk store (empty memory cache) reading the whole slice once, then closed."""
    chunks = ChunkStore(store, lt, block_size=BS, disk_cache=cache)
    try:
        assert chunks.read(SliceId(sid), len(data), 0, len(data)) == data
    finally:
        chunks.close()  # waits for the background cache writes
    return chunks


def test_blocks_survive_a_restart(lt, store, tmp_path):
    data = payload(3 * BS + 10)
    write_slice(ChunkStore(store, lt, block_size=BS), 1, data)
    cold_read(lt, store, DiskCache(tmp_path), 1, data)
    assert sum(store.gets.values()) == 4

    reopened = DiskCache(tmp_path)  # a new process: the index comes from scanning the directory
    assert len(reopened) == 4
    chunks = cold_read(lt, store, reopened, 1, data)
    assert sum(store.gets.values()) == 4  # no new GET
    assert chunks.stats()["disk_hits"] == 4


def test_a_damaged_cache_file_is_dropped_and_refetched(lt, store, tmp_path):
    data = payload(2 * BS)
    write_slice(ChunkStore(store, lt, block_size=BS), 2, data)
    cold_read(lt, store, DiskCache(tmp_path), 2, data)
    key = block_key(SliceId(2), 1, BS)
    path = tmp_path / key
    damaged = bytearray(path.read_bytes())
    damaged[100] ^= 0x01
    path.write_bytes(damaged)

    chunks = cold_read(lt, store, DiskCache(tmp_path), 2, data)  # correct bytes despite the damage
    assert chunks.stats()["disk_corrupt"] == 1
    assert chunks.stats()["disk_hits"] == 1
    assert store.gets[key] == 2  # re-fetched from the store ...
    assert path.read_bytes() == lt.run(store.inner.get(key))  # ... and re-cached intact


def test_size_limit_evicts_least_recently_used(tmp_path):
    blob = encode_block(os.urandom(10_000))
    per_file = len(blob) + 4096
    cache = DiskCache(tmp_path, capacity=3 * per_file + 100)
    keys = [block_key(SliceId(i), 0, 10_000) for i in range(5)]
    for key in keys[:3]:
        assert cache.put(key, blob)
    assert cache.get(keys[0]) == blob  # now the most recently used
    assert cache.put(keys[3], blob)  # over the limit: evicts down to 95 %, oldest first
    assert keys[1] not in cache and not (tmp_path / keys[1]).exists()
    assert keys[0] in cache and keys[3] in cache
    assert cache.used <= cache.capacity
    assert cache.put(keys[4], blob)
    assert cache.used <= cache.capacity and cache.evictions >= 2


def test_a_block_larger_than_the_limit_is_not_cached_and_reads_work(lt, store, tmp_path):
    data = payload(2 * BS)
    write_slice(ChunkStore(store, lt, block_size=BS), 3, data)
    cache = DiskCache(tmp_path, capacity=1000)
    cold_read(lt, store, cache, 3, data)
    assert len(cache) == 0 and cache.enabled


def test_free_space_floor_skips_caching(tmp_path):
    cache = DiskCache(tmp_path, free_ratio=1.0)  # "keep 100 % free": no room ever
    assert not cache.put(block_key(SliceId(1), 0, 3), encode_block(b"abc"))
    assert len(cache) == 0


def test_failing_writes_never_fail_reads_and_disable_the_cache(lt, store, tmp_path, monkeypatch):
    data = payload(4 * BS + 1)
    write_slice(ChunkStore(store, lt, block_size=BS), 4, data)
    cache = DiskCache(tmp_path)

    def disk_full(path, encoded):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache, "_write", disk_full)
    cold_read(lt, store, cache, 4, data)
    assert not cache.enabled and cache.write_errors >= 3  # writes already queued may fail too
    assert len(cache) == 0 and cache.used == 0
    cold_read(lt, store, cache, 4, data)  # still fine, straight from the store


def test_an_unusable_directory_disables_the_cache(lt, store, tmp_path):
    data = payload(BS)
    write_slice(ChunkStore(store, lt, block_size=BS), 5, data)
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    cache = DiskCache(blocker / "cache")
    assert not cache.enabled
    cold_read(lt, store, cache, 5, data)


def test_modes_atomic_leftovers_and_foreign_files(tmp_path):
    cache = DiskCache(tmp_path / "c")
    key = block_key(SliceId(1_000_001), 2, 3)
    assert cache.put(key, encode_block(b"abc"))
    path = tmp_path / "c" / key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for d in (tmp_path / "c", path.parent, path.parent.parent):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
    leftover = path.parent / ".x.tmp"
    leftover.write_bytes(b"half a block")  # a write interrupted by a crash
    (tmp_path / "c" / "chunks" / "notes.txt").write_text("not a block")
    reopened = DiskCache(tmp_path / "c")
    assert not leftover.exists()
    assert len(reopened) == 1 and reopened.get(key) == encode_block(b"abc")


def test_default_cache_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir("uuid-1") == tmp_path / "tonbo" / "artifacts" / "uuid-1"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir("u") == tmp_path / "home" / ".cache" / "tonbo" / "artifacts" / "u"


def test_files_another_process_cached_are_found_and_counted(tmp_path):
    """`artifacts warmup` (another process) fills the directory a running mount's index was built
    from: the mount finds those files on its next lookup instead of going to the store."""
    mount = DiskCache(tmp_path)
    warmup = DiskCache(tmp_path)
    key = block_key(SliceId(7), 0, 3)
    assert warmup.put(key, encode_block(b"abc"))
    assert key not in mount  # not in its index ...
    assert mount.has(key) and mount.get(key) == encode_block(b"abc")  # ... but found on disk
    assert len(mount) == 1 and mount.used > 0


def test_cache_directories_are_named_after_their_volume_and_marked(tmp_path):
    from artifacts_core.chunk import cache_dirs

    uuid = "0f0e0d0c-0b0a-4908-8706-050403020100"
    old = tmp_path / uuid  # the layout before names: moved into place when the volume opens
    (old / "chunks" / "0" / "0").mkdir(parents=True)
    (old / "chunks" / "0" / "0" / "1_0_3").write_bytes(encode_block(b"abc"))
    path = cache_dirs.prepare(tmp_path, "alice-demo-7", uuid, "s3://bkt/p")
    assert path == tmp_path / f"alice-demo-7-{uuid}" and not old.exists()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o700
    [listed] = cache_dirs.list_dirs(tmp_path)
    assert (listed.volume, listed.uuid, listed.storage, listed.blocks) == ("alice-demo-7", uuid, "s3://bkt/p", 1)
    assert cache_dirs.volume_cache_dir(tmp_path, "we/ird name", uuid).name == f"we_ird_name-{uuid}"
    (tmp_path / "logs").mkdir()  # not a cache directory: not listed, never removed by clear
    assert [d.path for d in cache_dirs.list_dirs(tmp_path)] == [path]
