"""Sessions, open-file registration and stale-session cleanup, on the real Redis.

Two engines on one workspace are two hosts. Expiry is exercised with the sweep's injected clock
offset (never by sleeping for the timeout).
"""

from __future__ import annotations

import errno
import fcntl
import itertools
import os
import threading
import time

import pytest

from artifacts_core.errors import IsADirectory, NotFound, PermissionDenied
from artifacts_core.meta import sessions as sessions_mod
from artifacts_core.meta.attrs import FLAG_SUSTAINED, Attr, unpack_attr
from artifacts_core.meta.sessions import SessionLost
from artifacts_core.types import ROOT_INO, Caller, Ino
from artifacts_orchestrator.redis_acl import acl_rules

# -- inode helpers: the namespace's create and unlink ------------------------------------------

_names: dict[tuple[str, int], bytes] = {}
_counter = itertools.count()


def make_file(engine, mode: int = 0o644, uid: int = 0, gid: int = 0) -> Ino:
    """A regular file in the root directory, owned by uid:gid."""
    name = f"f{next(_counter)}".encode()
    ino, _attr, _ = engine.create(ROOT_INO, name, mode, Caller(uid, gid))
    _names[engine.keys.prefix, ino] = name
    return ino


def unlink_open_file(engine, ino: Ino) -> None:
    """Unlink the file's only name while it is open somewhere: it stays, sustained."""
    assert held_by(engine, ino), "the file must be open"
    assert engine.unlink(ROOT_INO, _names[engine.keys.prefix, ino]) == 0
    attr = attr_of(engine, ino)
    assert attr.nlink == 0 and attr.flags & FLAG_SUSTAINED


def attr_of(engine, ino: Ino) -> Attr | None:
    raw = engine.client.command("GET", engine.keys.inode(ino))
    return unpack_attr(raw) if raw else None


def opens(engine, ino: Ino, sid: int | None = None) -> bytes | None:
    """How many times session ``sid`` (default: the engine's) holds ``ino`` open, as stored."""
    return engine.client.command("HGET", engine.keys.session_opens(sid or engine.sid), ino)


def held_by(engine, ino: Ino) -> list[int]:
    """The sessions of the workspace that hold ``ino`` open."""
    sids = [int(s) for s in engine.client.command("ZRANGE", engine.keys.sessions, 0, -1)]
    return [s for s in sids if opens(engine, ino, s) is not None]


def delfiles(engine) -> set[bytes]:
    return set(engine.client.command("ZRANGE", engine.keys.delfiles, 0, -1))


def fcall_calls(engine) -> int:
    stats = engine.client.node().info("commandstats")
    return int(stats.get("cmdstat_fcall", {}).get("calls", 0))


@pytest.fixture
def hosts(meta_factory, key_prefix):
    """Two clients ("hosts") on one workspace, each with its own session."""
    a, b = meta_factory(key_prefix), meta_factory(key_prefix)
    for engine in (a, b):
        engine.cleanup_interval = 0.0  # every sweep call is elected: tests decide when
        engine.new_session({"host": f"host-{'ab'[engine is b]}", "mountpoint": "/mnt/ws"})
    return a, b


# -- the session -----------------------------------------------------------------------------


def test_session_register_heartbeat_close(meta):
    sid = meta.new_session({"host": "h1", "mountpoint": "/mnt/x", "version": "9.9"}, timeout=30)
    assert sid > 0 and meta.sid == sid
    (info,) = meta.list_sessions()
    assert info["sid"] == sid and info["host"] == "h1" and info["mountpoint"] == "/mnt/x"
    assert info["pid"] == os.getpid() and info["read_only"] is False
    server_now = float(meta.client.command("TIME")[0])
    assert server_now + 25 < info["expire"] <= server_now + 31

    meta.session_timeout = 50
    before = meta.client.round_trips
    meta.heartbeat()
    assert meta.client.round_trips - before == 1
    (info,) = meta.list_sessions()
    assert info["expire"] > server_now + 45

    second = meta.new_session()
    assert second > sid  # ids are never reused
    meta.close_session()
    assert meta.sid == 0
    assert [s["sid"] for s in meta.list_sessions()] == [sid]


def test_open_registers_in_one_round_trip(hosts):
    a, _b = hosts
    ino = make_file(a)
    before, calls = a.client.round_trips, fcall_calls(a)
    attr = a.open(ino, os.O_RDWR)
    assert a.client.round_trips - before == 1 and fcall_calls(a) - calls == 1
    assert attr.is_file and attr.nlink == 1
    a.open(ino)
    assert opens(a, ino) == b"2"
    assert a.close_file(ino) is False
    assert opens(a, ino) == b"1"
    a.close_file(ino)
    assert held_by(a, ino) == [] and a.client.command("EXISTS", a.keys.session_opens(a.sid)) == 0
    assert attr_of(a, ino) is not None  # closing a linked file frees nothing


def test_open_checks_existence_and_access(hosts):
    a, _ = hosts
    ino = make_file(a, mode=0o640, uid=1000, gid=100)
    with pytest.raises(NotFound):
        a.open(Ino(987654))
    with pytest.raises(PermissionDenied) as e:
        a.open(ino, os.O_RDONLY, Caller(2000, 2000))
    assert e.value.errno == errno.EACCES
    with pytest.raises(PermissionDenied):
        a.open(ino, os.O_WRONLY, Caller(2000, 100))  # group may read, not write
    with pytest.raises(PermissionDenied):
        a.open(ino, os.O_RDONLY | os.O_TRUNC, Caller(2000, 100))  # O_TRUNC needs write
    a.open(ino, os.O_RDONLY, Caller(2000, 100))
    a.open(ino, os.O_RDWR, Caller(1000, 1))
    with pytest.raises(IsADirectory):
        a.open(ROOT_INO, os.O_WRONLY)
    a.open(ROOT_INO, os.O_RDONLY)
    # a refused open registers nothing: exactly the two that succeeded on ino
    assert opens(a, ino) == b"2"


def test_close_many_is_one_round_trip(hosts):
    a, _ = hosts
    x, y = make_file(a), make_file(a)
    for ino in (x, x, y):
        a.open(ino)
    before = a.client.round_trips
    assert a.close_many([x, y, x]) == 0
    assert a.client.round_trips - before == 1
    assert held_by(a, x) == held_by(a, y) == []
    assert a.client.command("EXISTS", a.keys.session_opens(a.sid)) == 0


def test_unlinked_file_open_on_another_host_lives_until_it_closes(hosts):
    a, b = hosts
    ino = make_file(a)
    b.open(ino)
    b.open(ino)
    unlink_open_file(a, ino)  # host A unlinks; host B still holds it twice
    assert attr_of(a, ino).nlink == 0
    assert b.close_file(ino) is False
    assert attr_of(a, ino) is not None
    assert b.close_file(ino) is True  # the last close frees it
    assert attr_of(a, ino) is None
    assert f"{ino}:0".encode() in delfiles(a)
    assert held_by(a, ino) == []


def test_clean_close_frees_sustained_files_only_when_no_one_else_holds_them(hosts):
    a, b = hosts
    shared, only_a = make_file(a), make_file(a)
    a.open(shared)
    b.open(shared)
    a.open(only_a)
    unlink_open_file(a, shared)
    unlink_open_file(a, only_a)
    a.close_session()
    assert attr_of(b, only_a) is None and f"{only_a}:0".encode() in delfiles(b)
    assert attr_of(b, shared) is not None  # B still holds it
    assert held_by(b, shared) == [b.sid]
    b.close_session()
    assert attr_of(b, shared) is None


def test_stale_session_is_cleaned_up_by_another_host(hosts):
    a, b = hosts
    held, shared, locked = make_file(a), make_file(a), make_file(a)
    a.open(held)
    a.open(shared)
    b.open(shared)
    a.flock(locked, 7, fcntl.LOCK_EX)
    a.setlk(shared, 7, fcntl.F_WRLCK, 0, 99, pid=123)
    unlink_open_file(b, held)
    unlink_open_file(b, shared)
    with pytest.raises(BlockingIOError):
        b.flock(locked, 1, fcntl.LOCK_SH | fcntl.LOCK_NB)
    with pytest.raises(BlockingIOError):
        b.setlk(shared, 1, fcntl.F_RDLCK, 50, 50)

    assert b.cleanup_stale_sessions() == 0  # A's expiry (60 s) has not passed
    # A stops heartbeating; 120 s later (injected), B's sweep ends A's session.
    assert b.cleanup_stale_sessions(now_offset=120) == 1
    assert [s["sid"] for s in b.list_sessions()] == [b.sid]  # B never sweeps itself
    b.heartbeat()

    b.flock(locked, 1, fcntl.LOCK_EX | fcntl.LOCK_NB)  # A's flock is gone ...
    b.setlk(shared, 1, fcntl.F_WRLCK, 0, 99)  # ... and its POSIX lock
    assert attr_of(b, held) is None and f"{held}:0".encode() in delfiles(b)  # A held it alone
    assert attr_of(b, shared) is not None  # B still holds it open
    for key in (a.keys.session(a.sid), a.keys.session_opens(a.sid), a.keys.session_locks(a.sid)):
        assert b.client.command("EXISTS", key) == 0

    # A was alive after all: its heartbeat, opens and locks say so clearly.
    with pytest.raises(SessionLost) as e:
        a.heartbeat()
    assert e.value.errno == errno.ESTALE and a.session_lost
    with pytest.raises(SessionLost):
        a.open(shared)
    with pytest.raises(SessionLost):
        a.flock(shared, 7, fcntl.LOCK_SH | fcntl.LOCK_NB)
    a.close_file(shared)  # closing what the sweep already released is harmless
    assert attr_of(b, shared) is not None
    b.close_file(shared)
    assert attr_of(b, shared) is None
    # A may start over with a new session.
    assert a.new_session() > b.sid and not a.session_lost
    a.heartbeat()


def test_only_one_client_per_interval_wins_the_sweep(hosts, meta_factory, key_prefix):
    a, b = hosts
    dead = meta_factory(key_prefix)
    dead.new_session()
    a.cleanup_interval = b.cleanup_interval = 60.0
    assert a.cleanup_stale_sessions() == 0  # elected; nothing expired yet
    assert b.cleanup_stale_sessions(now_offset=120) == 0  # not elected: A ran it just now
    assert dead.sid in [s["sid"] for s in b.list_sessions()]
    b.cleanup_interval = 0.0
    # every live session looks expired at +120 s except the sweeper's own
    assert b.cleanup_stale_sessions(now_offset=120) == 2
    assert [s["sid"] for s in b.list_sessions()] == [b.sid]


def test_large_sessions_are_released_in_bounded_steps(hosts, monkeypatch):
    a, b = hosts
    monkeypatch.setattr(sessions_mod, "CLEANUP_BUDGET", 3)
    files = [make_file(a) for _ in range(10)]
    for ino in files:
        a.open(ino)
        a.flock(ino, 1, fcntl.LOCK_SH)
    for ino in files[:5]:
        unlink_open_file(a, ino)
    before = b.client.round_trips
    assert b.cleanup_stale_sessions(now_offset=120) == 1
    assert b.client.round_trips - before >= 4  # 10 opens, 3 per call (its locks go at once)
    assert [attr_of(b, ino) is None for ino in files] == [True] * 5 + [False] * 5
    b.flock(files[9], 2, fcntl.LOCK_EX | fcntl.LOCK_NB)  # its flocks are gone

    other = [make_file(b) for _ in range(7)]
    for ino in other:
        b.open(ino)
    before, sid = b.client.round_trips, b.sid
    b.close_session()
    assert b.client.round_trips - before == 3  # 7 opens, 3 per call
    assert b.client.command("EXISTS", b.keys.session_opens(sid), b.keys.sessions) == 0


def test_heartbeat_thread_reports_a_lost_session(hosts):
    a, b = hosts
    a.heartbeat_interval = 0.02
    lost = threading.Event()
    stop = a.start_heartbeat(on_lost=lambda e: lost.set())
    try:
        time.sleep(0.1)
        assert not lost.is_set() and a.list_sessions()  # beating fine
        b.cleanup_stale_sessions(now_offset=120)
        assert lost.wait(2.0)
    finally:
        stop.set()


def test_no_session_means_no_registration(meta):
    ino = make_file(meta)
    assert meta.open(ino).is_file
    assert held_by(meta, ino) == []
    assert meta.close_file(ino) is False


@pytest.mark.cluster
def test_sessions_opens_and_locks_on_a_cluster(redis_cluster, meta_factory):
    """Smoke run on a 3-master Cluster: two workspaces on different slots, two hosts each."""
    from redis.cluster import key_slot

    prefixes = [f"{{u_{os.getpid()}_w_{900 + i}}}:" for i in range(40)]
    p1 = prefixes[0]
    p2 = next(p for p in prefixes if key_slot(p.encode()) != key_slot(p1.encode()))
    for prefix in (p1, p2):
        a = meta_factory(prefix, url=redis_cluster.url)
        b = meta_factory(prefix, url=redis_cluster.url)
        for engine in (a, b):
            engine.cleanup_interval = 0.0
            engine.new_session()
        ino = make_file(a)
        b.open(ino)
        unlink_open_file(a, ino)
        a.flock(ino, 1, fcntl.LOCK_EX)
        a.setlk(ino, 1, fcntl.F_WRLCK, 0, 9)
        with pytest.raises(BlockingIOError):
            b.flock(ino, 2, fcntl.LOCK_SH | fcntl.LOCK_NB)
        assert b.getlk(ino, 2, fcntl.F_RDLCK, 5, 5) == (fcntl.F_WRLCK, 0, 9, 0)
        assert b.cleanup_stale_sessions(now_offset=120) == 1  # A is swept
        b.flock(ino, 2, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(SessionLost):
            a.heartbeat()
        assert attr_of(b, ino) is not None
        b.close_session()  # B held the unlinked file last
        assert attr_of(b, ino) is None and f"{ino}:0".encode() in delfiles(b)


def test_read_only_session_works_within_its_acl(redis_url, meta_factory, key_prefix):
    """A read-only session's ACL user (DESIGN.md §10: read everything of the workspace, write
    session and lock keys only) can register, open, lock and close; what it cannot free (an
    unlinked file it held last) is freed by a read-write client's sweep."""
    from artifacts_core.meta.engine import RedisMetaEngine

    rw = meta_factory(key_prefix)
    rw.cleanup_interval = 0.0
    rw.new_session()
    p = key_prefix
    user = f"ro_{os.getpid()}_{next(_counter)}"
    # As the orchestrator mints it: an assigned session id, then the ACL rules that name it.
    sid = rw.client.call("af_session_assign", user, 2)
    rw.client.command("ACL", "SETUSER", user, "on", ">secret", *acl_rules(p, read_only=True, sids=(sid, sid + 1)))
    ro = RedisMetaEngine(redis_url.replace("redis://", f"redis://{user}:secret@"), p)
    try:
        ino = make_file(rw)
        ro.new_session({"read_only": True})
        assert ro.open(ino).is_file
        ro.flock(ino, 1, fcntl.LOCK_SH)
        ro.setlk(ino, 1, fcntl.F_RDLCK, 0, 9)
        assert ro.getlk(ino, 1, fcntl.F_WRLCK, 0, 9)[0] == fcntl.F_UNLCK
        ro.heartbeat()
        with pytest.raises(PermissionDenied):  # the ACL is real: no namespace writes
            ro.unlink(ROOT_INO, _names[p, ino])
        unlink_open_file(rw, ino)
        assert ro.close_file(ino) is False  # it cannot free: its registration stays
        assert held_by(rw, ino) == [sid] == [ro.sid]
        ro.close_session()
        rw.flock(ino, 2, fcntl.LOCK_EX | fcntl.LOCK_NB)  # its locks are released at once
        assert rw.client.command("EXISTS", rw.keys.session(sid)) == 0
        assert ro.cleanup_stale_sessions(now_offset=120) == 0  # read-only never sweeps
        assert attr_of(rw, ino) is not None
        assert rw.cleanup_stale_sessions(now_offset=120) == 1
        assert attr_of(rw, ino) is None and f"{ino}:0".encode() in delfiles(rw)
    finally:
        ro.close()
        rw.client.command("ACL", "DELUSER", user)


def test_a_short_expiry_passes_on_the_server_clock(hosts):
    """No offset: a session registered with a 50 ms expiry is stale 150 ms later."""
    a, b = hosts
    a.session_timeout = 0.05
    a.heartbeat()
    assert b.cleanup_stale_sessions() == 0
    time.sleep(0.15)
    assert b.cleanup_stale_sessions() == 1
    with pytest.raises(SessionLost):
        a.heartbeat()


def test_a_lock_waiter_whose_session_is_swept_stops_with_session_lost(hosts):
    a, b = hosts
    ino = make_file(a)
    b.flock(ino, 1, fcntl.LOCK_EX)
    result: dict = {}

    def wait():
        try:
            a.flock(ino, 2, fcntl.LOCK_EX, timeout=10)
        except BaseException as e:
            result["error"] = e

    t = threading.Thread(target=wait, daemon=True)
    t.start()
    time.sleep(0.1)
    b.cleanup_stale_sessions(now_offset=120)
    t.join(5)
    assert isinstance(result.get("error"), SessionLost)
