"""S3 faults seen through the VFS: retries first, then a clear EIO — never wrong bytes, never a
silently lost write. Faults come from a proxy in front of the real SeaweedFS (tests/s3faults.py)."""

import errno
import gc
import logging
import os
import threading
import time
import warnings

import pytest
from s3faults import FaultProxy
from testbed import TEST_BUCKET

from artifacts_core.chunk.keys import BlockKey, parse_block_key
from artifacts_core.chunk.segmented import parse_table, table_size
from artifacts_core.config import profile_config
from artifacts_core.meta.engine import RedisMetaEngine
from artifacts_core.objects import PrefixedObjectStore, RetryPolicy, S3ObjectStore
from artifacts_core.servers import free_port
from artifacts_core.types import SliceId
from artifacts_core.volume import Volume, open_volume

FAST = RetryPolicy(max_attempts=4, base_delay=0.001, max_delay=0.01, total_timeout=20.0,
                   connect_timeout=2.0, read_timeout=5.0)


def open_through(endpoint, s3_server, s3_prefix, redis_url, key_prefix, cache_dir, retry=FAST) -> Volume:
    """A second client of the workspace whose S3 traffic goes to ``endpoint``; caches cold."""
    store = S3ObjectStore(TEST_BUCKET, endpoint=endpoint, region=s3_server.region,
                          access_key=s3_server.access_key, secret_key=s3_server.secret_key, retry=retry)
    meta = RedisMetaEngine(redis_url, key_prefix)
    meta.load(require_aof=False)
    config = profile_config("interactive", cache_dir=str(cache_dir), entry_ttl=0.0, attr_ttl=0.0)
    return Volume(meta, PrefixedObjectStore(store, f"{s3_prefix}testvol/"), config)


@pytest.fixture
def seeded(vol):
    payload = os.urandom(6 << 20)  # two 4 MiB blocks: real S3 objects
    vol.write_bytes("big.bin", payload)
    return payload


def test_transient_errors_are_retried_and_the_bytes_are_right(seeded, s3_server, s3_prefix, redis_url,
                                                             key_prefix, tmp_path):
    with FaultProxy(s3_server.s3_port, fail_first=3, status=503, code="SlowDown") as proxy:
        other = open_through(proxy.endpoint, s3_server, s3_prefix, redis_url, key_prefix, tmp_path / "c")
        try:
            assert other.read_bytes("big.bin") == seeded
        finally:
            other.close()
        assert proxy.faults == 3


def test_persistent_errors_become_eio_on_read_and_on_close(seeded, s3_server, s3_prefix, redis_url,
                                                           key_prefix, tmp_path, vol):
    with FaultProxy(s3_server.s3_port, fail_first=2, status=500, code="InternalError") as proxy:
        other = open_through(proxy.endpoint, s3_server, s3_prefix, redis_url, key_prefix, tmp_path / "c")
        proxy.fail_first = 10**9  # from now on every request fails
        try:
            with pytest.raises(OSError) as err:
                other.read_bytes("big.bin")
            assert err.value.errno == errno.EIO
            f = other.open("new.bin", "wb")
            f.write(os.urandom(5 << 20))
            with pytest.raises(OSError) as err:
                f.close()  # the failed upload is reported, not dropped
            assert err.value.errno == errno.EIO
        finally:
            proxy.fail_first = 0
            other.close()
    # Nothing half-committed: the file exists (created) but holds no data pointing at missing blocks.
    assert vol.stat("new.bin").st_size == 0
    assert vol.read_bytes("big.bin") == seeded


def test_a_corrupted_block_is_eio_never_wrong_bytes(seeded, s3_server, s3_prefix, redis_url, key_prefix,
                                                   tmp_path, caplog):
    raw = S3ObjectStore(TEST_BUCKET, endpoint=s3_server.endpoint, region=s3_server.region,
                        access_key=s3_server.access_key, secret_key=s3_server.secret_key)
    other = open_through(s3_server.endpoint, s3_server, s3_prefix, redis_url, key_prefix, tmp_path / "c")
    try:
        async def corrupt() -> str:
            page = await raw.list(f"{s3_prefix}testvol/chunks/")
            key = page.objects[0].key
            data = bytearray(await raw.get(key))
            data[len(data) // 2] ^= 0x40
            await raw.put(key, bytes(data))
            await raw.close()
            return key

        key = other._loop.run(corrupt())
        with caplog.at_level(logging.ERROR, logger="artifacts"):
            with pytest.raises(OSError) as err:
                other.read_bytes("big.bin")
        assert err.value.errno == errno.EIO
        assert other.chunks.stats()["integrity_errors"] == 1
        assert _stats_value(other, "artifacts_chunks_integrity_errors") == 1  # in .stats
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and key[len(f"{s3_prefix}testvol/"):] in errors[0], errors  # once, keyed
    finally:
        other.close()


@pytest.fixture
def one_block(vol):
    payload = os.urandom(1 << 20)  # one block in S3: one GET per attempt
    vol.write_bytes("one.bin", payload)
    return payload


def block_gets(proxy: FaultProxy) -> int:
    return sum(1 for method, path, _ in proxy.seen if method == "GET" and "/chunks/" in path)


def test_an_outage_fails_an_uncached_read_after_one_retry_schedule(one_block, s3_server, s3_prefix,
                                                                 redis_url, key_prefix, tmp_path):
    with FaultProxy(s3_server.s3_port) as proxy:
        other = open_through(proxy.endpoint, s3_server, s3_prefix, redis_url, key_prefix, tmp_path / "c")
        try:
            proxy.fail_first = 10**9  # S3 is down from now on
            proxy.status, proxy.code = 503, "ServiceUnavailable"
            start = time.monotonic()
            with pytest.raises(OSError) as err:
                other.read_bytes("one.bin")
            elapsed = time.monotonic() - start
        finally:
            proxy.fail_first = 0
            other.close()
    assert err.value.errno == errno.EIO
    assert block_gets(proxy) == FAST.max_attempts  # the retry schedule ran once, not twice
    assert elapsed < 10.0  # loose: FAST's whole schedule is milliseconds


def _stats_value(vol, name: str) -> float:
    for line in vol.metrics.render().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def test_a_missing_block_is_eio_at_once_logged_once_with_its_key_and_counted(
        one_block, s3_server, s3_prefix, redis_url, key_prefix, tmp_path, caplog):
    raw = S3ObjectStore(TEST_BUCKET, endpoint=s3_server.endpoint, region=s3_server.region,
                        access_key=s3_server.access_key, secret_key=s3_server.secret_key)
    other = open_through(s3_server.endpoint, s3_server, s3_prefix, redis_url, key_prefix, tmp_path / "c")
    try:
        async def delete_block() -> str:
            page = await raw.list(f"{s3_prefix}testvol/chunks/")
            key = page.objects[0].key
            await raw.delete(key)
            await raw.close()
            return key[len(f"{s3_prefix}testvol/"):]

        key = other._loop.run(delete_block())
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="artifacts"):
            with pytest.raises(OSError) as err:
                other.read_bytes("one.bin")
        assert err.value.errno == errno.EIO
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and key in errors[0].getMessage(), [r.getMessage() for r in caplog.records]
        assert _stats_value(other, "artifacts_blocks_missing_total") == 1
        # the agent API's whole-file read (one snapshot per chunk) says and counts it the same way
        caplog.clear()
        with pytest.raises(OSError) as err:
            other.vfs.read_snapshot(other.stat("one.bin").st_ino)
        assert err.value.errno == errno.EIO
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and key in errors[0].getMessage(), [r.getMessage() for r in caplog.records]
        assert _stats_value(other, "artifacts_blocks_missing_total") == 2
    finally:
        other.close()


def test_a_random_read_of_a_missing_block_is_eio_logged_once_and_counted(
        seeded, s3_server, s3_prefix, redis_url, key_prefix, tmp_path, caplog):
    """A random read fetches only segments (format v2: table and ranged GETs); a block missing
    there is the same MissingObject as for a whole-block read: one refresh, EIO, one ERROR line
    with the key, ``artifacts_blocks_missing_total``."""
    raw = S3ObjectStore(TEST_BUCKET, endpoint=s3_server.endpoint, region=s3_server.region,
                        access_key=s3_server.access_key, secret_key=s3_server.secret_key)
    other = open_through(s3_server.endpoint, s3_server, s3_prefix, redis_url, key_prefix, tmp_path / "c")
    try:
        key = f"{_block_keys(other, raw, s3_prefix)[0]}"
        other._loop.run(raw.delete(f"{s3_prefix}testvol/{key}"))
        other._loop.run(raw.close())
        with other.open("big.bin", "rb", buffering=0) as f:
            f.seek(1 << 20)
            caplog.clear()
            with caplog.at_level(logging.INFO, logger="artifacts"):
                with pytest.raises(OSError) as err:
                    f.read(4096)
            assert err.value.errno == errno.EIO
            f.seek(5 << 20)  # the other block is still there, and read as segments
            assert f.read(4096) == seeded[5 << 20:(5 << 20) + 4096]
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and key in errors[0].getMessage(), [r.getMessage() for r in caplog.records]
        assert _stats_value(other, "artifacts_blocks_missing_total") == 1
        assert other.chunks.stats()["downloads"] == 0  # no whole-block GET: segments only
    finally:
        other.close()


def test_a_corrupted_segment_fails_only_the_random_reads_that_touch_it(
        seeded, s3_server, s3_prefix, redis_url, key_prefix, tmp_path, caplog):
    raw = S3ObjectStore(TEST_BUCKET, endpoint=s3_server.endpoint, region=s3_server.region,
                        access_key=s3_server.access_key, secret_key=s3_server.secret_key)
    other = open_through(s3_server.endpoint, s3_server, s3_prefix, redis_url, key_prefix, tmp_path / "c")
    seg = other.setting.segment_size
    bad = 20
    try:
        key = _block_keys(other, raw, s3_prefix)[0]

        async def corrupt() -> None:
            full = f"{s3_prefix}testvol/{key}"
            data = bytearray(await raw.get(full))
            block = parse_block_key(key)
            assert block is not None
            table = parse_table(bytes(data[:table_size(block.length, seg)]), block)
            data[(table.offsets[bad] + table.offsets[bad + 1]) // 2] ^= 0x40
            await raw.put(full, bytes(data))
            await raw.close()

        other._loop.run(corrupt())
        with other.open("big.bin", "rb", buffering=0) as f:
            with caplog.at_level(logging.ERROR, logger="artifacts"):
                for _ in range(2):  # nothing damaged is cached: the second round fails the same way
                    for off in (40 * seg + 100, (bad - 1) * seg, (bad + 1) * seg, 3 * seg):
                        f.seek(off)
                        assert f.read(4096) == seeded[off:off + 4096]
                    for off in (bad * seg + 10, bad * seg - 100):
                        f.seek(off)
                        with pytest.raises(OSError) as err:
                            f.read(4096)
                        assert err.value.errno == errno.EIO
        assert other.chunks.stats()["integrity_errors"] >= 1
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert errors and all(key in e for e in errors), errors
        with other.open("big.bin", "rb") as f:
            f.seek(4 << 20)
            assert f.read() == seeded[4 << 20:]  # the other block is intact
    finally:
        other.close()


def _block_keys(vol, raw, s3_prefix) -> list[str]:
    """The workspace's block keys (without the volume prefix), the first 4 MiB block first."""
    async def listing() -> list[str]:
        page = await raw.list(f"{s3_prefix}testvol/chunks/")
        return [o.key[len(f"{s3_prefix}testvol/"):] for o in page.objects]

    keys = vol._loop.run(listing())
    return sorted(keys, key=lambda k: (parse_block_key(k) or BlockKey(SliceId(0), 0, 0)).index)


def _bad_storage(kind: str, s3_server, s3_prefix, monkeypatch) -> str:
    monkeypatch.setenv("ARTIFACTS_S3_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("ARTIFACTS_S3_SECRET_ACCESS_KEY", s3_server.secret_key)
    endpoint, bucket = s3_server.endpoint, TEST_BUCKET
    if kind == "wrong-credentials":
        monkeypatch.setenv("ARTIFACTS_S3_SECRET_ACCESS_KEY", "not-the-secret")
    elif kind == "missing-bucket":
        bucket = "no-such-bucket-here"
    else:  # unreachable: a loopback port nothing listens on
        endpoint = f"http://127.0.0.1:{free_port()}"
    return f"s3://{bucket}/{s3_prefix.rstrip('/')}?endpoint={endpoint}&region={s3_server.region}"


@pytest.mark.parametrize("kind", ["wrong-credentials", "missing-bucket", "unreachable"])
def test_an_open_that_fails_leaves_no_connection_nor_thread_behind(vol, kind, s3_server, s3_prefix,
                                                                  redis_url, key_prefix, tmp_path,
                                                                  monkeypatch):
    url = _bad_storage(kind, s3_server, s3_prefix, monkeypatch)
    config = profile_config("interactive", cache_dir=str(tmp_path / "c"))
    gc.collect()
    threads = set(threading.enumerate())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        failure = None
        try:
            open_volume(redis_url, url, key_prefix=key_prefix, require_aof=False, config=config)
        except OSError as e:  # not kept: its traceback would keep the half-built volume alive
            failure = (e.errno, str(e))
        gc.collect()
    assert failure is not None and failure[0] in (errno.EACCES, errno.EIO), failure
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaks == []  # an unclosed aiohttp session or connector warns when collected
    left = [t.name for t in set(threading.enumerate()) - threads if t.is_alive()]
    assert left == []  # the volume's event-loop and worker threads are gone
