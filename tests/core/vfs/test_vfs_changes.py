"""Cross-host invalidation through ``vol.vfs.changes`` on real servers: two volumes ("hosts") on
one workspace; what one changes reaches the other's listeners and caches at once, a lost
subscription is reported as "all" and recovers (CLIENT KILL, a Redis restart), and the same holds
on a 3-master Redis Cluster."""

from __future__ import annotations

import os
import random
import threading
import time

import pytest
import redis

from artifacts_core.config import profile_config
from artifacts_core.meta.changes import Change
from artifacts_core.servers import RedisServer
from artifacts_core.types import ROOT_INO
from artifacts_core.volume import format_volume, open_volume

LONG_TTL = 3600.0  # without invalidation, a cached name would outlive every test


class Recorder:
    """A listener that keeps what it is given and lets a test wait for a change."""

    def __init__(self) -> None:
        self.changes: list[Change] = []
        self._cond = threading.Condition()

    def __call__(self, change: Change) -> None:
        with self._cond:
            self.changes.append(change)
            self._cond.notify_all()

    def wait(self, pred, timeout: float = 10.0) -> Change:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for c in self.changes:
                    if pred(c):
                        return c
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no such change within {timeout} s; got {self.changes}")
                self._cond.wait(left)

    def ops(self, kind: str | None = None) -> list[str]:
        with self._cond:
            return [c.op for c in self.changes if kind is None or c.kind == kind]


def eventually(pred, timeout: float = 2.0) -> None:
    """Loose bound (the feed delivers in milliseconds): a few hundred times the target."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("the other host's change was not seen in time")
        time.sleep(0.002)


def test_changes_on_one_host_reach_the_other_hosts_listeners(volume_factory):
    a, b = volume_factory(entry_ttl=LONG_TTL), volume_factory(entry_ttl=LONG_TTL)
    assert a.vfs.changes.subscribed and b.vfs.changes.subscribed  # opening waits for it
    seen_a, seen_b = Recorder(), Recorder()
    a.vfs.changes.add_listener(seen_a)
    remove = b.vfs.changes.add_listener(seen_b)
    a.makedirs("dir")
    d = a.stat("dir").st_ino
    with a.open("dir/f", "wb") as f:
        f.write(b"hello")
    ino = a.stat("dir/f").st_ino
    a.chmod("dir/f", 0o600)
    a.vfs.setxattr(ino, "user.tag", b"x")
    a.rename("dir/f", "dir/g")
    a.remove("dir/g")
    a.rmdir("dir")
    last = seen_b.wait(lambda c: c.op == "rmdir")
    assert (last.kind, last.parent, last.name, last.ino) == ("entry", ROOT_INO, b"dir", d)
    got = {(c.kind, c.op): c for c in seen_b.changes}
    assert got[("entry", "mkdir")].ino == d
    assert (got[("entry", "create")].parent, got[("entry", "create")].name) == (d, b"f")
    assert got[("data", "commit")].ino == ino
    assert got[("attr", "setattr")].ino == ino and got[("attr", "setxattr")].ino == ino
    r = got[("rename", "rename")]
    assert (r.ino, r.parent, r.name, r.new_parent, r.new_name) == (ino, d, b"f", d, b"g")
    assert (got[("entry", "unlink")].name, got[("entry", "unlink")].ino) == (b"g", ino)
    theirs = [c for c in seen_b.changes if c.kind != "all"]
    assert theirs and all(c.session == a.meta.sid and not c.own for c in theirs)
    # the acting host sees its own changes flagged as its own
    seen_a.wait(lambda c: c.op == "rmdir")
    assert all(c.own for c in seen_a.changes if c.kind != "all")
    remove()
    a.makedirs("after")
    seen_a.wait(lambda c: c.op == "mkdir" and c.name == b"after")
    time.sleep(0.05)
    assert "after" not in [c.name.decode() for c in seen_b.changes]  # removed listeners hear nothing


def test_the_path_api_sees_another_hosts_changes_at_once_despite_a_long_entry_ttl(volume_factory):
    a, b = volume_factory(entry_ttl=LONG_TTL), volume_factory(entry_ttl=LONG_TTL)
    a.makedirs("dir/sub")
    a.write_bytes("dir/f", b"content")
    assert b.read_bytes("dir/f") == b"content" and b.isdir("dir/sub")  # B has cached the names
    a.rename("dir/f", "dir/g")
    eventually(lambda: not b.exists("dir/f") and b.read_bytes("dir/g") == b"content")
    a.rename("dir/sub", "dir/sub2")  # a directory: names below it stay valid under the new name
    eventually(lambda: not b.exists("dir/sub") and b.isdir("dir/sub2"))
    a.chmod("dir/g", 0o640)
    eventually(lambda: b.stat("dir/g").st_mode & 0o777 == 0o640)
    a.remove("dir/g")
    eventually(lambda: not b.exists("dir/g"))
    a.write_bytes("dir/g", b"again")  # a new inode under a name B cached as gone
    eventually(lambda: b.exists("dir/g") and b.read_bytes("dir/g") == b"again")
    a.rmdir("dir/sub2")
    eventually(lambda: not b.exists("dir/sub2"))
    # B's own changes: cached names move with B's own rename at once (no feed needed)
    b.rename("dir/g", "dir/h")
    assert not b.exists("dir/g") and b.read_bytes("dir/h") == b"again"


def test_an_open_handle_sees_another_hosts_appends_and_truncates(volume_factory):
    a, b = volume_factory(), volume_factory()
    a.write_bytes("log", b"first\n")
    reader = b.open("log", "rb", buffering=0)
    try:
        assert reader.read() == b"first\n"
        with a.open("log", "ab") as f:
            f.write(b"second\n")
        eventually(lambda: reader.read() == b"second\n")
        a.truncate("log", 2)
        reader.seek(0)
        eventually(lambda: reader.seek(0) == 0 and reader.read() == b"fi")
    finally:
        reader.close()


def test_while_unsubscribed_the_entry_cache_is_not_used(volume_factory):
    a, b = volume_factory(entry_ttl=LONG_TTL), volume_factory(entry_ttl=LONG_TTL)
    a.write_bytes("f", b"1")
    assert b.exists("f")
    b.vfs.changes.close()  # no more invalidations reach B
    assert not b.vfs.changes.subscribed
    a.rename("f", "g")
    assert not b.exists("f") and b.exists("g")  # at once: nothing cached is trusted
    before = b.meta.client.round_trips
    b.exists("g")
    b.exists("g")
    assert b.meta.client.round_trips - before == 2  # and nothing new is cached either


def test_a_listener_may_skip_its_own_volumes_changes(volume_factory):
    a, b = volume_factory(), volume_factory()
    others_only, everything = Recorder(), Recorder()
    a.vfs.changes.add_listener(others_only, own=False)
    a.vfs.changes.add_listener(everything)
    a.makedirs("mine")
    b.makedirs("theirs")
    others_only.wait(lambda c: c.name == b"theirs")
    everything.wait(lambda c: c.name == b"theirs")
    assert [c.name for c in others_only.changes if c.kind != "all"] == [b"theirs"]
    assert [(c.name, c.own) for c in everything.changes if c.kind != "all"] == [(b"mine", True), (b"theirs", False)]


def test_a_failing_listener_does_not_starve_the_others(volume_factory):
    a, b = volume_factory(), volume_factory()

    def broken(change: Change) -> None:
        raise RuntimeError("listener bug")

    seen = Recorder()
    b.vfs.changes.add_listener(broken)
    b.vfs.changes.add_listener(seen)
    a.makedirs("x")
    seen.wait(lambda c: c.op == "mkdir")
    assert b.metrics.get("change_listener_errors") >= 1 and b.vfs.changes.subscribed


# -- losing the subscription: a Redis of this module's own (killed and restarted) ---------------

@pytest.fixture(scope="module")
def own_redis(tmp_path_factory):
    holder = {"server": RedisServer.start(tmp_path_factory.mktemp("own-redis"), appendonly=True)}
    yield holder
    holder["server"].stop()


@pytest.fixture
def own_volumes(own_redis, storage_url, tmp_path):
    url = own_redis["server"].url
    prefix = f"{{u_{os.getpid()}_w_{random.randrange(10**9)}}}:"
    format_volume(url, storage_url, "lossvol", key_prefix=prefix, require_aof=False, trash_days=0)
    vols = []

    def make():
        vol = open_volume(url, key_prefix=prefix, require_aof=False,
                          config=profile_config(entry_ttl=LONG_TTL, cache_dir=str(tmp_path / f"c{len(vols)}")))
        vols.append(vol)
        return vol

    yield make
    for vol in vols:
        vol.close()


def test_a_killed_subscription_delivers_all_then_recovers(own_redis, own_volumes):
    a, b = own_volumes(), own_volumes()
    seen = Recorder()
    b.vfs.changes.add_listener(seen)
    a.write_bytes("f", b"1")
    assert b.exists("f")
    admin = redis.Redis(host="127.0.0.1", port=own_redis["server"].port)
    assert admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub") >= 2  # A's and B's
    admin.close()
    lost = seen.wait(lambda c: c.kind == "all" and c.op == "lost")
    seen.wait(lambda c: c.kind == "all" and c.op == "subscribed" and
              seen.changes.index(c) > seen.changes.index(lost))
    assert b.vfs.changes.wait_subscribed(10)
    a.rename("f", "g")  # changes flow again, and reach B's caches
    seen.wait(lambda c: c.op == "rename")
    eventually(lambda: not b.exists("f") and b.exists("g"))
    assert b.vfs.changes.stats()["losses"] >= 1


def test_a_redis_restart_delivers_all_then_recovers(own_redis, own_volumes):
    a, b = own_volumes(), own_volumes()
    seen = Recorder()
    b.vfs.changes.add_listener(seen)
    a.write_bytes("before", b"kept")
    assert b.exists("before")
    server = own_redis["server"]
    server.stop()
    seen.wait(lambda c: c.kind == "all" and c.op == "lost")
    assert not b.vfs.changes.subscribed
    own_redis["server"] = RedisServer.start(server.workdir, port=server.port, appendonly=True)
    assert b.vfs.changes.wait_subscribed(15)
    seen.wait(lambda c: c.kind == "all" and c.op == "subscribed")
    a.rename("before", "after")
    seen.wait(lambda c: c.op == "rename")
    eventually(lambda: not b.exists("before") and b.read_bytes("after") == b"kept")


# -- a Redis Cluster ---------------------------------------------------------------------------

@pytest.mark.cluster
def test_changes_flow_between_hosts_on_a_redis_cluster(redis_cluster, storage_url, tmp_path):
    first = redis_cluster.ports[0]
    probe = redis.RedisCluster(host="127.0.0.1", port=first)
    try:  # a workspace whose slot is NOT on the seed node: the subscriber must find the owner
        prefix = next(p for p in (f"{{u_{os.getpid()}_w_{random.randrange(10**9)}}}:" for _ in range(1000))
                      if probe.get_node_from_key(p + "setting").port != first)
    finally:
        probe.close()
    format_volume(redis_cluster.url, storage_url, "clustervol", key_prefix=prefix, require_aof=False,
                  trash_days=0)
    vols = [open_volume(redis_cluster.url, key_prefix=prefix, require_aof=False,
                        config=profile_config(entry_ttl=LONG_TTL, cache_dir=str(tmp_path / f"c{i}")))
            for i in range(2)]
    a, b = vols
    try:
        assert a.vfs.changes.subscribed and b.vfs.changes.subscribed
        seen = Recorder()
        b.vfs.changes.add_listener(seen)
        a.write_bytes("f", b"1")
        assert b.read_bytes("f") == b"1"
        a.rename("f", "g")
        c = seen.wait(lambda c: c.op == "rename")
        assert (c.parent, c.name, c.new_name, c.own) == (ROOT_INO, b"f", b"g", False)
        eventually(lambda: not b.exists("f") and b.exists("g"))
    finally:
        for v in vols:
            v.close()
