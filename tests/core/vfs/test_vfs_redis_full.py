"""A full Redis (``maxmemory`` reached, ``noeviction``) on a real ``redis-server``.

What a user needs then (docs/SEMANTICS.md, "When servers fail"): ENOSPC with a hint, not EIO, and
one log line per burst rather than one per operation; and the ways out still open -- deleting,
truncating, renaming and reading files, including files not opened yet -- while the session's
heartbeat keeps it alive and every acknowledged file stays intact.
"""

from __future__ import annotations

import errno
import logging
import os

import pytest
import redis

from artifacts_core.config import profile_config
from artifacts_core.servers import RedisServer
from artifacts_core.volume import format_volume, open_volume

#: Room left above the memory in use when the test shrinks maxmemory: the junk that fills it.
HEADROOM = 1 << 20
#: How far below the filled Redis's memory use maxmemory ends up (client buffers come and go).
SLACK = 256 << 10


@pytest.fixture
def small_redis(tmp_path):
    server = RedisServer.start(tmp_path / "redis")
    yield server
    server.stop()


def fill(server: RedisServer) -> redis.Redis:
    """Shrink maxmemory to what is used plus HEADROOM, then fill it with junk until even a small
    write is refused (a big refused value only filled the query buffer for a moment), as a busy
    workspace fills it."""
    raw = redis.Redis(port=server.port)
    used = int(raw.info("memory")["used_memory"])
    raw.config_set("maxmemory", used + HEADROOM)
    n = 0
    for size in (64 << 10, 4 << 10, 64):
        for _ in range(10 * HEADROOM // size):
            n += 1
            try:
                raw.set(f"junk:{n}", b"j" * size)
            except redis.exceptions.OutOfMemoryError:
                break
        else:
            raise AssertionError("Redis never filled up")
    # A little below what is used now: freed client buffers must not let a write through by chance.
    raw.config_set("maxmemory", int(raw.info("memory")["used_memory"]) - SLACK)
    return raw


def test_a_full_redis_is_enospc_and_rm_truncate_mv_reads_and_the_session_survive(
        small_redis, storage_url, key_prefix, tmp_path, caplog):
    format_volume(small_redis.url, storage_url, "full", key_prefix=key_prefix, trash_days=0,
                  require_aof=False)
    config = profile_config("interactive", cache_dir=str(tmp_path / "cache"), entry_ttl=0.0,
                            attr_ttl=0.0, disk_cache=False)
    vol = open_volume(small_redis.url, key_prefix=key_prefix, require_aof=False, config=config)
    try:
        keep, big = b"acknowledged\n" * 100, os.urandom(300 << 10)
        vol.write_bytes("keep.txt", keep)
        vol.write_bytes("big.bin", big)
        vol.write_bytes("gone.txt", b"x" * 5000)
        vol.write_bytes("old-name.txt", b"y" * 100)
        vol.mkdir("emptydir")
        vol.write_bytes("existing.txt", b"z")
        vol.vfs.flush_closes()
        raw = fill(small_redis)

        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="artifacts"):
            for i in range(20):  # a burst of operations that need memory
                with pytest.raises(OSError) as err:
                    vol.write_bytes(f"new-{i}.txt", b"data")
                assert err.value.errno == errno.ENOSPC, err.value
            assert "maxmemory" in str(err.value) and "delet" in str(err.value)  # says what to do
            with pytest.raises(OSError) as err:
                vol.mkdir("newdir")
            assert err.value.errno == errno.ENOSPC
            with pytest.raises(OSError) as err:
                with vol.open("existing.txt", "ab") as f:
                    f.write(b"more")
            assert err.value.errno == errno.ENOSPC
        noisy = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(noisy) == 1, [r.getMessage() for r in noisy]  # one line per burst
        assert "maxmemory" in noisy[0].getMessage()

        # the ways out stay open while Redis is full
        assert vol.read_bytes("big.bin") == big  # opening registers the open: allowed
        assert vol.read_bytes("keep.txt") == keep
        vol.meta.heartbeat()  # the session survives
        vol.unlink("gone.txt")
        vol.rename("old-name.txt", "new-name.txt")
        vol.truncate("big.bin", 1000)
        vol.rmdir("emptydir")
        names = sorted(n for n in vol.listdir("") if not n.startswith("."))
        assert names == ["big.bin", "existing.txt", "keep.txt", "new-name.txt"]
        assert vol.read_bytes("big.bin") == big[:1000]

        raw.delete(*[k for k in raw.scan_iter("junk:*")])  # room again: writes resume
        vol.write_bytes("after.txt", b"fine")
        assert vol.read_bytes("after.txt") == b"fine"
        assert vol.read_bytes("keep.txt") == keep and vol.read_bytes("existing.txt") == b"z"
    finally:
        vol.close()
