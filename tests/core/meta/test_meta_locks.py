"""BSD flock and POSIX record locks across hosts, on the real Redis.

Two engines on one workspace are two hosts, each with its own session; owners are the lock
owner ids the VFS passes.
"""

from __future__ import annotations

import errno
import fcntl
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_meta_sessions import make_file

from artifacts_core.errors import ArtifactsError, InvalidArgument
from artifacts_core.meta.locks import MAX_OFFSET, Interrupted, WouldBlock, decode_locks, owner_hex

RD, WR, UN = fcntl.F_RDLCK, fcntl.F_WRLCK, fcntl.F_UNLCK
SH, EX, NB, LOCK_UN = fcntl.LOCK_SH, fcntl.LOCK_EX, fcntl.LOCK_NB, fcntl.LOCK_UN


@pytest.fixture
def hosts(meta_factory, key_prefix):
    a, b = meta_factory(key_prefix), meta_factory(key_prefix)
    for engine in (a, b):
        engine.cleanup_interval = 0.0
        engine.new_session()
    return a, b


def ranges(engine, ino, owner) -> list[tuple[int, int, int, int]]:
    """The stored POSIX records of one owner: (type, pid, start, end)."""
    return stored(engine, ino).get(owner_hex(owner), ("-", []))[1]


def stored(engine, ino) -> dict:
    """The session's locks on ``ino`` as stored in its own ``locks<sid>`` hash."""
    return decode_locks(engine.client.command("HGET", engine.keys.session_locks(engine.sid), ino))


def wait_thread(fn) -> tuple[threading.Thread, dict]:
    result: dict = {}

    def run():
        try:
            fn()
            result["ok"] = time.monotonic()
        except BaseException as e:
            result["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, result


# -- flock -----------------------------------------------------------------------------------


def test_flock_shared_and_exclusive_across_hosts(hosts):
    a, b = hosts
    ino = make_file(a)
    a.flock(ino, 1, SH)
    b.flock(ino, 2, SH | NB)  # shared locks coexist
    with pytest.raises(WouldBlock) as e:
        b.flock(ino, 3, EX | NB)
    assert e.value.errno == errno.EAGAIN == errno.EWOULDBLOCK
    assert isinstance(e.value, BlockingIOError)
    a.flock(ino, 1, SH | NB)  # re-taking what one holds is a no-op
    # A conversion that must wait drops the held lock first, as Linux does.
    with pytest.raises(WouldBlock):
        a.flock(ino, 1, EX | NB)
    assert owner_hex(1) not in stored(a, ino)
    b.flock(ino, 2, EX | NB)  # upgrade: B is the only holder now
    with pytest.raises(WouldBlock):
        a.flock(ino, 1, SH | NB)
    b.flock(ino, 2, SH | NB)  # downgrade
    a.flock(ino, 1, SH | NB)
    b.flock(ino, 2, LOCK_UN)
    a.flock(ino, 1, LOCK_UN)
    b.flock(ino, 2, EX | NB)
    # Two owners of one session are two open file descriptions: they conflict too.
    with pytest.raises(WouldBlock):
        b.flock(ino, 4, SH | NB)


def test_one_round_trip_per_lock_attempt(hosts):
    a, b = hosts
    ino = make_file(a)
    for fn in (lambda: a.flock(ino, 1, EX | NB), lambda: a.setlk(ino, 1, WR, 0, 9),
               lambda: b.getlk(ino, 2, RD, 0, 9), lambda: a.release_locks(ino, 1)):
        before, locks_before = a.client.round_trips + b.client.round_trips, \
            a.lock_round_trips + b.lock_round_trips
        fn()
        assert a.client.round_trips + b.client.round_trips - before == 1
        assert a.lock_round_trips + b.lock_round_trips - locks_before == 1
    with pytest.raises(WouldBlock):
        a.flock(ino, 1, EX | NB)  # unlocked: granted
        b.flock(ino, 2, EX | NB)


def test_blocking_flock_wakes_when_the_holder_unlocks(hosts):
    a, b = hosts
    ino = make_file(a)
    a.flock(ino, 1, EX)
    t, result = wait_thread(lambda: b.flock(ino, 2, EX, timeout=10))
    time.sleep(0.2)
    assert not result  # still waiting
    released = time.monotonic()
    a.flock(ino, 1, LOCK_UN)
    t.join(5)
    assert "ok" in result, result
    assert result["ok"] - released < 0.5  # backoff is capped at 100 ms
    with pytest.raises(WouldBlock):
        a.flock(ino, 1, SH | NB)


def test_blocking_waits_do_not_hammer_redis_and_can_be_interrupted(hosts):
    a, b = hosts
    ino = make_file(a)
    a.flock(ino, 1, EX)
    before, calls = b.client.round_trips, _fcalls(b)
    started = time.monotonic()
    with pytest.raises(Interrupted) as e:
        b.flock(ino, 2, SH, timeout=0.5)
    assert e.value.errno == errno.EINTR and isinstance(e.value, InterruptedError)
    assert 0.45 < time.monotonic() - started < 1.5
    attempts = b.client.round_trips - before
    print(f"round trips during a 0.5 s wait: {attempts}")
    assert 3 < attempts < 50, attempts
    assert _fcalls(b) - calls <= attempts + 2  # the server saw no more than that

    cancel = threading.Event()
    a.setlk(ino, 1, RD, 0, 0)
    t, result = wait_thread(lambda: b.setlk(ino, 2, WR, 0, 0, wait=True, cancel=cancel))
    time.sleep(0.1)
    cancel.set()
    t.join(2)
    assert isinstance(result.get("error"), Interrupted)


def _fcalls(engine) -> int:
    return int(engine.client.node().info("commandstats").get("cmdstat_fcall", {}).get("calls", 0))


# -- POSIX record locks ----------------------------------------------------------------------


def test_posix_split_merge_and_conflicts_only_with_other_owners(hosts):
    a, b = hosts
    ino = make_file(a)
    a.setlk(ino, 1, WR, 0, 99, pid=11)
    a.setlk(ino, 1, UN, 40, 59)  # unlocking the middle splits
    assert ranges(a, ino, 1) == [(1, 11, 0, 39), (1, 11, 60, 99)]
    b.setlk(ino, 2, WR, 40, 59, pid=22)
    with pytest.raises(WouldBlock):
        b.setlk(ino, 2, RD, 30, 45)
    a.setlk(ino, 1, RD, 20, 39, pid=11)  # own ranges never conflict; the type changes in place
    assert ranges(a, ino, 1) == [(1, 11, 0, 19), (0, 11, 20, 39), (1, 11, 60, 99)]
    b.setlk(ino, 3, RD, 25, 30)  # read locks share


def test_posix_write_over_a_foreign_read_lock_is_refused(hosts):
    a, b = hosts
    ino = make_file(a)
    a.setlk(ino, 1, RD, 20, 39, pid=11)
    b.setlk(ino, 3, RD, 25, 30)
    with pytest.raises(WouldBlock):
        a.setlk(ino, 1, WR, 20, 39, pid=11)
    assert ranges(a, ino, 1) == [(0, 11, 20, 39)]  # a refused request changes nothing
    b.setlk(ino, 3, UN, 0, MAX_OFFSET)
    a.setlk(ino, 1, WR, 20, 39, pid=11)
    a.setlk(ino, 1, WR, 40, 49, pid=11)  # adjacent, same type: merged
    a.setlk(ino, 1, WR, 10, 25, pid=11)  # overlapping: merged
    assert ranges(a, ino, 1) == [(1, 11, 10, 49)]
    a.setlk(ino, 1, RD, 50, 60, pid=11)  # adjacent, other type: kept apart
    assert ranges(a, ino, 1) == [(1, 11, 10, 49), (0, 11, 50, 60)]


def test_getlk_reports_the_holder(hosts):
    a, b = hosts
    ino = make_file(a)
    assert b.getlk(ino, 2, WR, 0, MAX_OFFSET) == (UN, 0, MAX_OFFSET, 0)
    a.setlk(ino, 1, RD, 10, 19, pid=4242)
    a.setlk(ino, 5, WR, 100, MAX_OFFSET, pid=4343)  # "to end of file"
    assert b.getlk(ino, 2, RD, 0, 50) == (UN, 0, 50, 0)  # read vs read: no conflict
    # another host: the holder's range and type, pid 0 (a pid on another host means nothing)
    assert b.getlk(ino, 2, WR, 0, 50) == (RD, 10, 19, 0)
    assert b.getlk(ino, 2, RD, 10**15, 10**15 + 1) == (WR, 100, MAX_OFFSET, 0)
    # the same session: the pid is reported
    assert a.getlk(ino, 3, WR, 15, 15) == (RD, 10, 19, 4242)
    assert a.getlk(ino, 1, WR, 0, 50) == (UN, 0, 50, 0)  # one's own locks never conflict
    with pytest.raises(WouldBlock):
        b.setlk(ino, 2, RD, 2**62, MAX_OFFSET)
    with pytest.raises(InvalidArgument):
        b.getlk(ino, 2, RD, 10, 5)
    with pytest.raises(InvalidArgument):
        b.getlk(ino, 2, UN, 0, 5)


def test_blocking_setlk_wakes_when_the_range_is_unlocked(hosts):
    a, b = hosts
    ino = make_file(a)
    a.setlk(ino, 1, WR, 0, 99)
    t, result = wait_thread(lambda: b.setlk(ino, 2, WR, 50, 149, wait=True, timeout=10))
    time.sleep(0.1)
    a.setlk(ino, 1, UN, 0, 49)  # not the part B waits for
    time.sleep(0.25)
    assert not result
    a.release_locks(ino, 1, flock=False)  # flush: drops owner 1's POSIX locks
    t.join(5)
    assert "ok" in result, result
    assert ranges(b, ino, 2) == [(1, 0, 50, 149)]


def test_release_locks_drops_posix_or_flock_of_one_owner(hosts):
    a, b = hosts
    ino = make_file(a)
    a.flock(ino, 1, EX)
    a.setlk(ino, 1, WR, 0, 9)
    a.setlk(ino, 2, WR, 10, 19)
    assert a.release_locks(ino, 1, flock=False) == 1  # flush: POSIX locks of owner 1
    b.setlk(ino, 3, WR, 0, 9)
    with pytest.raises(WouldBlock):
        b.flock(ino, 3, SH | NB)
    assert stored(a, ino)[owner_hex(1)] == ("W", [])  # owner 1 keeps its flock, no POSIX lock
    assert stored(a, ino)[owner_hex(2)] == ("-", [(1, 0, 10, 19)])
    assert a.release_locks(ino, 1, posix=False) == 1  # release: the handle's flock
    b.flock(ino, 3, SH | NB)
    a.setlk(ino, 2, UN, 0, MAX_OFFSET)
    assert a.client.command("HEXISTS", a.keys.session_locks(a.sid), ino) == 0  # nothing left there


def test_locks_are_released_when_the_session_closes(hosts):
    a, b = hosts
    x, y = make_file(a), make_file(a)
    a.flock(x, 1, EX)
    a.setlk(y, 1, WR, 0, MAX_OFFSET)
    with pytest.raises(WouldBlock):
        b.setlk(y, 2, RD, 5, 5)
    t, result = wait_thread(lambda: b.flock(x, 2, EX, timeout=10))
    sid = a.sid
    a.close_session()
    t.join(5)
    assert "ok" in result, result
    b.setlk(y, 2, WR, 5, 5)
    assert a.client.command("EXISTS", a.keys.session_locks(sid)) == 0


def test_locks_need_a_live_session(meta_factory, key_prefix):
    engine = meta_factory(key_prefix)
    ino = make_file(engine)
    with pytest.raises(ArtifactsError) as e:
        engine.flock(ino, 1, EX | NB)
    assert e.value.errno == errno.ENOLCK
    engine.new_session()
    with pytest.raises(FileNotFoundError):
        engine.setlk(987654, 1, WR, 0, 1)
    with pytest.raises(InvalidArgument):
        engine.setlk(ino, 1, WR, -1, 5)


# -- the range logic against a byte model ----------------------------------------------------

_ops = st.lists(st.tuples(st.sampled_from([0, 1]), st.sampled_from([RD, WR, UN]), st.integers(0, 24),
                          st.integers(0, 8)), min_size=1, max_size=14)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_ops)
def test_posix_locks_of_two_hosts_match_a_per_byte_model(hosts, ops):
    """Owners on two hosts lock, convert and unlock random ranges. Every request is granted or
    refused (EAGAIN) exactly as a per-byte model says, and each owner's stored ranges stay
    sorted, disjoint, maximally merged, and cover exactly the model's bytes with their types."""
    engines = hosts
    ino = make_file(engines[0])
    owners = (1, 2)
    model: list[dict[int, int]] = [{}, {}]
    for who, typ, start, length in ops:
        span = range(start, start + length + 1)
        other = model[1 - who]
        blocked = typ != UN and any(
            i in other and (typ == WR or other[i] == WR) for i in span)
        if blocked:
            with pytest.raises(WouldBlock):
                engines[who].setlk(ino, owners[who], typ, start, start + length)
            continue
        engines[who].setlk(ino, owners[who], typ, start, start + length)
        for i in span:
            if typ == UN:
                model[who].pop(i, None)
            else:
                model[who][i] = typ
    for who in (0, 1):
        recs = ranges(engines[who], ino, owners[who])
        got: dict[int, int] = {}
        for i, (t, _pid, s, e) in enumerate(recs):
            assert s <= e
            if i:
                pt, _, _ps, pe = recs[i - 1]
                assert pe < s and not (pt == t and pe + 1 == s)  # disjoint, merged
            for x in range(s, e + 1):
                got[x] = {0: RD, 1: WR}[t]
        assert got == model[who]
        # F_GETLK by the other owner reports this owner's first conflicting range
        held = sorted(model[who])
        kind, s, _e, _pid = engines[1 - who].getlk(ino, owners[1 - who], WR, 0, MAX_OFFSET)
        assert (kind, s) == ((model[who][held[0]], held[0]) if held else (UN, 0))
