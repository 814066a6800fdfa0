"""Trash moves, files kept while open, and the one-round-trip promise of the namespace."""

from __future__ import annotations

import datetime as dt

import pytest

from artifacts_core.meta.attrs import FLAG_SUSTAINED
from artifacts_core.meta.engine import RedisMetaEngine
from artifacts_core.meta.format import Setting, new_uuid
from artifacts_core.meta.namespace import RENAME_EXCHANGE
from artifacts_core.servers import RedisServer
from artifacts_core.types import ROOT_INO, TRASH_INO

ROOT = ROOT_INO


def hours(m):
    """The trash hour names possible around now (the Redis clock may cross an hour)."""
    sec = int(m.client.command("TIME")[0])
    return {dt.datetime.fromtimestamp(s, dt.UTC).strftime("%Y-%m-%d-%H") for s in (sec, sec + 5)}


@pytest.fixture
def tm(meta_factory, key_prefix):
    return meta_factory(key_prefix, trash_days=1)


def test_unlink_moves_the_last_link_into_the_hourly_trash(tm):
    d, _ = tm.mkdir(ROOT, "d")
    f, _, _ = tm.create(d, "report.txt")
    used = tm.statfs()
    possible = hours(tm)
    assert tm.unlink(d, "report.txt") == 1
    with pytest.raises(FileNotFoundError):
        tm.lookup(d, "report.txt")
    (hour,) = list(tm.listdir(TRASH_INO))
    assert hour.name.decode() in possible
    (entry,) = list(tm.listdir(hour.ino, plus=True))
    assert entry.name == f"{d}-{f}-report.txt".encode() and entry.ino == f
    assert entry.attr.parent == hour.ino and entry.attr.nlink == 1
    assert tm.getattr(TRASH_INO).nlink == 3 and tm.getattr(hour.ino).parent == TRASH_INO
    assert tm.statfs().used_inodes == used.used_inodes + 1  # the hour directory; the file stays
    # a second file lands in the same hour directory
    g, _, _ = tm.create(ROOT, "x" * 255)
    tm.unlink(ROOT, "x" * 255)
    names = {e.name for e in tm.listdir(hour.ino)}
    long_name = f"{ROOT}-{g}-".encode() + b"x" * (255 - len(f"{ROOT}-{g}-"))
    assert long_name in names and len(long_name) == 255
    # removing from the trash deletes for good
    assert tm.unlink(hour.ino, entry.name) == 0
    with pytest.raises(FileNotFoundError):
        tm.getattr(f)
    assert tm.client.command("ZSCORE", tm.keys.delfiles, f"{f}:0") is not None


def test_only_regular_files_and_last_links_go_to_the_trash(tm):
    f, _, _ = tm.create(ROOT, "f")
    tm.link(f, ROOT, "g")
    tm.unlink(ROOT, "f")
    assert list(tm.listdir(TRASH_INO)) == []
    s, _ = tm.symlink(ROOT, "s", "t")
    tm.unlink(ROOT, "s")
    assert list(tm.listdir(TRASH_INO)) == []
    with pytest.raises(FileNotFoundError):
        tm.getattr(s)
    victim, _, _ = tm.create(ROOT, "victim")
    tm.rename(ROOT, "g", ROOT, "victim")  # a replaced file goes to the trash too
    (hour,) = list(tm.listdir(TRASH_INO))
    assert [e.ino for e in tm.listdir(hour.ino)] == [victim]
    assert tm.getattr(f).parent == ROOT and tm.getattr(f).nlink == 1
    assert tm.client.command("EXISTS", tm.keys.parents(victim)) == 0


def test_an_open_file_outlives_its_last_name(meta):
    f, _, _ = meta.create(ROOT, "f")
    meta.new_session()
    meta.open(f)  # registered in the session's opens
    meta.unlink(ROOT, "f")
    kept = meta.getattr(f)
    assert kept.nlink == 0 and kept.flags & FLAG_SUSTAINED
    with pytest.raises(OSError):
        meta.link(f, ROOT, "back")  # an unlinked inode takes no new name


# -- one round trip per operation ------------------------------------------------------------------

def trips(m, op):
    before = m.client.round_trips
    op()
    return m.client.round_trips - before


def test_every_operation_is_one_round_trip(meta):
    m = meta
    d, _ = m.mkdir(ROOT, "warm")  # loads the library and connects
    made = {}
    ops = {
        "mkdir": lambda: m.mkdir(ROOT, "d"),
        "create": lambda: made.setdefault("f", m.create(ROOT, "f")[0]),
        "mknod": lambda: m.mknod(ROOT, "fifo", 0o10644),
        "symlink": lambda: made.setdefault("s", m.symlink(ROOT, "s", "f")[0]),
        "lookup": lambda: m.lookup(ROOT, "f"),
        "getattr": lambda: m.getattr(d),
        "getattr_many": lambda: m.getattr_many([ROOT, d]),
        "readlink": lambda: m.readlink(made["s"]),
        "link": lambda: m.link(made["f"], d, "f2"),
        "setattr": lambda: m.setattr(d, mode=0o700, mtime_now=True),
        "setxattr": lambda: m.setxattr(d, "user.a", b"1"),
        "getxattr": lambda: m.getxattr(d, "user.a"),
        "listxattr": lambda: m.listxattr(d),
        "removexattr": lambda: m.removexattr(d, "user.a"),
        "rename": lambda: m.rename(ROOT, "f", d, "g"),
        "exchange": lambda: m.rename(d, "g", d, "f2", RENAME_EXCHANGE),
        "unlink": lambda: m.unlink(d, "g"),
        "rmdir": lambda: m.rmdir(ROOT, "d"),
        "readdir": lambda: m.readdir(ROOT),
        "readdir_plus": lambda: m.readdir_plus(ROOT),
        "statfs": lambda: m.statfs(),
        "access": lambda: m.access(ROOT, 7),
    }
    assert {name: trips(m, op) for name, op in ops.items()} == dict.fromkeys(ops, 1)


def test_one_fcall_on_the_server(tmp_path, key_prefix):
    """The client's counter agrees with Redis: one create is one FCALL and nothing else. A Redis
    of its own, so no other client's commands (a heartbeat thread of another test) are counted."""
    with RedisServer.start(tmp_path / "redis") as server:
        meta = RedisMetaEngine(server.url, key_prefix)
        meta.format(Setting(name="rt", uuid=new_uuid(), trash_days=0), require_aof=False)
        meta.create(ROOT, "warm")

        def stats():
            info = meta.client.node().info("commandstats")
            return {k: v["calls"] for k, v in info.items()}

        before = stats()
        meta.create(ROOT, "f")
        after = stats()
        meta.close()
    delta = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    delta.pop("cmdstat_info", None)  # our own INFO call
    # commands a function runs are counted too; the client sent exactly one FCALL
    assert delta.pop("cmdstat_fcall") == 1
    assert set(delta) <= {"cmdstat_get", "cmdstat_set", "cmdstat_hget", "cmdstat_hset", "cmdstat_hmget",
                          "cmdstat_incr", "cmdstat_incrby", "cmdstat_time",
                          "cmdstat_spublish",  # the change record, announced by the function itself
                          "cmdstat_rpush"}  # and journaled by it


def test_rename_over_an_open_file_keeps_it_until_closed(meta):
    f, _, _ = meta.create(ROOT, "f")
    meta.create(ROOT, "g")
    meta.new_session()
    meta.open(f)  # registered in the session's opens
    meta.rename(ROOT, "g", ROOT, "f")
    kept = meta.getattr(f)
    assert kept.nlink == 0 and kept.flags & FLAG_SUSTAINED
    assert meta.client.command("ZSCORE", meta.keys.delfiles, f"{f}:0") is None  # data not released
