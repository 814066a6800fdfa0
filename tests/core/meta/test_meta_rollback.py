"""A Redis rollback never mixes two clients' data (DESIGN.md §10, docs/SEMANTICS.md "Redis rollback").

With AOF ``everysec`` an OS crash, or a failover to a replica that is behind, brings Redis back
with up to a second (or the replica's lag) of writes missing. These tests replay exactly that on a
real ``redis-server``: its AOF directory is copied, a client writes, Redis is killed with SIGKILL
and restarted from the copy on the same port. A client that reserved slice ids in the lost writes
must fail loudly; no one else may ever be handed those ids, see that client's bytes, or have a
commit taken for a duplicate of it.
"""

from __future__ import annotations

import errno
import os
import shutil

import pytest

from artifacts_core.config import profile_config
from artifacts_core.meta.attrs import SLICE_INLINE, SliceRecord
from artifacts_core.meta.data import ReservationLost
from artifacts_core.meta.sessions import SessionLost
from artifacts_core.servers import RedisServer
from artifacts_core.types import ROOT_CALLER, ROOT_INO, SliceId
from artifacts_core.volume import format_volume, open_volume


@pytest.fixture
def aof_redis(tmp_path):
    server = RedisServer.start(tmp_path / "redis", appendonly=True)  # AOF everysec, as deployed
    yield server
    server.stop()


def _rollback(server: RedisServer, snapshot) -> None:
    """Kill Redis (a crash) and bring it back from an older copy of its AOF, on the same port."""
    server.kill()
    shutil.rmtree(server.aof_dir)
    shutil.copytree(snapshot, server.aof_dir)
    server.restart()


@pytest.mark.parametrize("size", [100 << 10, 1 << 10], ids=["s3-slices", "inline-slices"])
def test_a_rollback_never_gives_one_client_another_clients_bytes(aof_redis, storage_url, key_prefix,
                                                                 tmp_path, size):
    format_volume(aof_redis.url, storage_url, "rb", key_prefix=key_prefix, trash_days=0)
    volumes = []

    def client(name: str):
        config = profile_config("interactive", cache_dir=str(tmp_path / name), entry_ttl=0.0,
                                attr_ttl=0.0, background_jobs=False)
        vol = open_volume(aof_redis.url, key_prefix=key_prefix, config=config)
        volumes.append(vol)
        return vol

    try:
        a = client("a")
        snapshot = tmp_path / "aof-before-a-writes"
        shutil.copytree(aof_redis.aof_dir, snapshot)  # acknowledged writes are in the page cache
        a1 = os.urandom(size)
        a.write_bytes("a1", a1)  # reserves A's batch of slice ids: lost below
        _rollback(aof_redis, snapshot)

        b = client("b")
        b1, b2 = os.urandom(size), os.urandom(size)
        b.write_bytes("b1", b1)
        b.write_bytes("b2", b2)

        a2 = os.urandom(size)
        try:
            a.write_bytes("a2", a2)  # A still holds its batch, which Redis no longer knows
            a_failed = None
        except OSError as e:
            a_failed = e

        reader = client("reader")  # cold caches: every byte from Redis and S3
        assert reader.read_bytes("b1") == b1
        assert reader.read_bytes("b2") == b2
        if a_failed is None:  # a success must mean the bytes are there: never a silent 0-byte file
            assert reader.read_bytes("a2") == a2
        # ... and A, whose reservation was lost, is told so rather than writing under it
        assert a_failed is not None, "a client whose reservation was lost wrote without a word"
        assert a_failed.errno == errno.ESTALE and "reservation" in str(a_failed), a_failed

        a3 = os.urandom(size)
        a.write_bytes("a3", a3)  # after a loud failure the client re-reserves and writes again
        assert reader.read_bytes("a3") == a3
        assert reader.read_bytes("b1") == b1 and reader.read_bytes("b2") == b2
    finally:
        for vol in volumes:
            try:
                vol.close()
            except OSError:
                pass  # A's failed handle may report its error once more at close


def test_ids_handed_out_after_a_rollback_are_new_and_a_lost_session_is_told(aof_redis, meta_factory,
                                                                            key_prefix, tmp_path):
    a = meta_factory(key_prefix, url=aof_redis.url)
    a.new_slice_ids(1)
    snapshot = tmp_path / "aof"
    shutil.copytree(aof_redis.aof_dir, snapshot)
    a.new_session()  # lost below, with its batch
    lost = a.new_slice_ids(4096)
    _rollback(aof_redis, snapshot)

    b = meta_factory(key_prefix, url=aof_redis.url)
    b.new_session()
    assert b.sid != a.sid  # the lost session's id is not anyone else's
    fresh = b.new_slice_ids(4096)
    assert fresh.start > lost.stop - 1  # nor are the lost slice ids
    with pytest.raises(SessionLost):
        a.heartbeat()


def test_a_commit_is_never_taken_for_a_retry_of_another_clients(meta_factory, key_prefix):
    """Only the client that reserved a slice id may commit it, and only its own second commit is
    a retry (a no-op): a commit of the same id by anyone else is refused, never silently dropped."""
    a, b = meta_factory(key_prefix), meta_factory(key_prefix)
    a.new_session()
    b.new_session()
    ino, _, _ = a.create(ROOT_INO, "f", 0o644, ROOT_CALLER)
    sid = a.new_slice_id()
    first = a.commit_slice(ino, 0, SliceRecord(0, sid, 4, 0, 4, SLICE_INLINE), data=b"aaaa")
    assert not first.duplicate
    again = a.commit_slice(ino, 0, SliceRecord(0, sid, 4, 0, 4, SLICE_INLINE), data=b"aaaa")
    assert again.duplicate  # a retry after a timeout applies nothing twice
    with pytest.raises(ReservationLost) as err:
        b.commit_slice(ino, 0, SliceRecord(4, sid, 4, 0, 4, SLICE_INLINE), data=b"bbbb")
    assert err.value.errno == errno.ESTALE
    with pytest.raises(ReservationLost):  # an id nobody reserved
        b.commit_slice(ino, 0, SliceRecord(4, SliceId(sid + 10**9), 4, 0, 4))
    records, inline = a.read_chunk(ino, 0)
    assert [r.id for r in records] == [sid] and inline == {sid: b"aaaa"}
    # after a refusal the client reserves a fresh batch and its writes land again
    ok = b.commit_slice(ino, 0, SliceRecord(4, b.new_slice_id(), 4, 0, 4, SLICE_INLINE), data=b"bbbb")
    assert not ok.duplicate and ok.attr.length == 8
