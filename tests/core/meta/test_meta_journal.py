"""The workspace journal on a real redis-server: what a record holds (length change, tag, actor,
paths resolved at read time with the original names kept), reading from a position or a time,
retention by count and age with stable positions, and following live from two writers.

That every mutating function journals its changes is the contract test's
(``test_meta_changes.py``: the journal holds exactly the records the channel carried)."""

from __future__ import annotations

import os
import threading
import time

import pytest

from artifacts_core.errors import InvalidArgument
from artifacts_core.meta.attrs import SLICE_INLINE, SliceRecord
from artifacts_core.meta.journal import Journal, decode, parse_since, trim
from artifacts_core.types import ROOT_INO

pytestmark = pytest.mark.redis


def _write(m, ino: int, data: bytes, *, append: bool = False) -> None:
    sid = m.new_slice_id()
    m.commit_slice(ino, 0, SliceRecord(0, sid, len(data), 0, len(data), SLICE_INLINE), data=data, append=append)


def test_records_carry_length_changes_tags_and_the_actor(meta_factory, key_prefix):
    m = meta_factory(key_prefix)
    m.new_session({"mountpoint": "/mnt/w", "host": "host-a"})
    f = m.create(ROOT_INO, "f")[0]
    _write(m, f, b"hello")
    m.client.call("af_session_tag", "call-42")
    _write(m, f, b"!!", append=True)
    m.client.call("af_session_tag", "")
    m.truncate(f, 1)
    evs = Journal(m.client).read(0).events
    assert [(e.op, e.length_change, e.length, e.tag) for e in evs] == [
        ("create", None, None, None), ("commit", 5, 5, None), ("commit", 2, 7, "call-42"), ("truncate", -6, 1, None)]
    a = evs[0].actor
    assert a is not None and (a["session"], a["host"], a["mountpoint"], a["frontend"]) == (
        m.sid, "host-a", "/mnt/w", "mount")
    # the session's registration is an event too, on request
    assert Journal(m.client).read(0, sessions=True).events[0].kind == "session"


def test_the_actor_outlives_its_session(meta_factory, key_prefix):
    m = meta_factory(key_prefix)
    m.new_session({"mountpoint": "/mnt/gone", "host": "host-b"})
    sid = m.sid
    m.mkdir(ROOT_INO, "d")
    m.close_session()
    assert m.client.command("EXISTS", m.keys.session(sid)) == 0
    (ev,) = Journal(meta_factory(key_prefix).client).read(0).events
    assert ev.actor is not None and ev.actor["session"] == sid and ev.actor["host"] == "host-b"


def test_paths_are_resolved_at_read_time_and_original_names_kept(meta_factory, key_prefix):
    m = meta_factory(key_prefix)
    d = m.mkdir(ROOT_INO, "reports")[0]
    f = m.create(d, "draft.txt")[0]
    m.rename(d, "draft.txt", d, "final.txt")
    g = m.create(d, "tmp")[0]
    m.unlink(d, "tmp")
    m.rename(ROOT_INO, "reports", ROOT_INO, "out")
    evs = Journal(m.client).read(0).events
    by = {(e.op, e.ino): e for e in evs}
    created = by[("create", f)]
    assert (created.name, created.path, created.where) == ("draft.txt", "/out/final.txt", "/out/draft.txt")
    moved = by[("rename", f)]
    assert (moved.name, moved.new_name, moved.where, moved.new_where) == (
        "draft.txt", "final.txt", "/out/draft.txt", "/out/final.txt")
    gone = by[("unlink", g)]
    assert gone.path is None and gone.where == "/out/tmp"
    # path filters see the current names and the original ones
    assert {e.op for e in Journal(m.client).read(0, path="/out/draft.txt").events} == {"create", "rename"}
    assert {e.ino for e in Journal(m.client).read(0, path="out").events} >= {f, g}


def test_since_a_position_a_time_or_an_age(meta_factory, key_prefix):
    m = meta_factory(key_prefix)
    j = Journal(m.client)
    assert j.end() == 0
    m.create(ROOT_INO, "a")
    time.sleep(0.05)
    t = time.time()
    time.sleep(0.05)
    m.create(ROOT_INO, "b")
    assert [e.name for e in j.read(0).events] == ["a", "b"]
    assert [e.name for e in j.read(1).events] == ["b"]
    assert [e.name for e in j.read(t).events] == ["b"]
    assert [e.name for e in j.read("1h").events] == ["a", "b"]
    assert j.read(None).events == [] and j.read(None).next == 2
    assert parse_since("17") == (17, None) and parse_since("2026-01-01T00:00:00Z")[1] == 1767225600.0
    with pytest.raises(InvalidArgument, match="event id"):
        parse_since("yesterday-ish")


def test_retention_trims_by_count_and_age_and_positions_stay(meta_factory, key_prefix):
    m = meta_factory(key_prefix)
    for i in range(10):
        m.create(ROOT_INO, f"f{i}")
    j = Journal(m.client)
    assert trim(m.client, max_events=4, max_age=0) == 6
    page = j.read(0)
    assert [e.id for e in page.events] == [6, 7, 8, 9] and page.missed == 6  # a reader behind is told
    assert [e.name for e in page.events] == ["f6", "f7", "f8", "f9"]
    assert [e.id for e in j.read(8).events] == [8, 9]  # positions did not move
    # age: an hour from now, everything is older than 30 minutes
    assert trim(m.client, max_events=0, max_age=1800) == 0
    assert trim(m.client, max_events=0, max_age=1800, now_offset=3600, budget=3) == 4
    assert j.read(0).events == [] and j.end() == 10
    m.create(ROOT_INO, "after")
    assert [(e.id, e.name) for e in j.read(0).events] == [(10, "after")]


def test_unknown_records_are_shown_not_dropped():
    assert decode(7, b"garbage").kind == "unknown"
    assert decode(8, b"1\0w\0restore\x003\x001\x000\x001").kind == "workspace"  # a checkpoint restore
    assert decode(7, b"1\0d\0commit\x003\x001\x000\x009\0\0\0\0\0+4096\0tag\x004096").length_change == 4096


def test_a_follower_sees_two_writers_in_order_without_loss(meta_factory, key_prefix):
    a, b, reader = meta_factory(key_prefix), meta_factory(key_prefix), meta_factory(key_prefix)
    a.new_session({"host": "a"})
    b.new_session({"host": "b"})
    n = 150
    got = []
    stop = threading.Event()

    def follow():
        for ev in Journal(reader.client).events(0, follow=True, timeout=10, stop=stop):
            got.append((ev, time.monotonic()))
            if len(got) == 2 * n:
                return

    t = threading.Thread(target=follow)
    t.start()
    sent: dict[str, float] = {}

    def write(m, tag):
        for i in range(n):
            sent[f"{tag}{i}"] = time.monotonic()
            m.create(ROOT_INO, f"{tag}{i}")

    writers = [threading.Thread(target=write, args=(a, "a")), threading.Thread(target=write, args=(b, "b"))]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    t.join(20)
    stop.set()
    evs = [e for e, _ in got]
    # none lost, in order (positions 0 and 1: the two sessions' registrations)
    assert len(evs) == 2 * n and [e.id for e in evs] == list(range(2, 2 * n + 2))
    for tag, m in (("a", a), ("b", b)):  # each writer's own order kept
        assert [e.name for e in evs if e.session == m.sid] == [f"{tag}{i}" for i in range(n)]
    delays = sorted(at - sent[e.name] for e, at in got)
    assert delays[len(delays) // 2] < 0.5  # live: loose bound, the benchmark measures it


def test_trim_needs_full_rights_and_counts(meta_factory, key_prefix):
    m = meta_factory(key_prefix)
    with pytest.raises(InvalidArgument):
        m.client.call("af_journal_trim", -1, 0, 10, 0, key=m.keys.setting)
    with pytest.raises(InvalidArgument):
        Journal(m.client).read(0, limit=0)


# -- the read audit (a volume's journal_reads opt-in) -------------------------------------------


def test_reads_are_not_recorded_by_default(meta_factory, key_prefix):
    m = meta_factory(key_prefix)
    m.new_session({"host": "h"})
    f = m.create(ROOT_INO, "f")[0]
    m.open(f, os.O_RDONLY)
    assert m.client.command("LLEN", m.keys.reads) == 0
    assert [e.op for e in Journal(m.client).read(0, reads=True).events] == ["create"]


def test_opens_for_reading_are_recorded_with_actor_and_tag_when_opted_in(meta_factory, key_prefix):
    m = meta_factory(key_prefix, journal_reads=True)
    m.new_session({"host": "auditor", "mountpoint": "/mnt/a"})
    f = m.create(ROOT_INO, "f")[0]
    m.open(f, os.O_WRONLY)  # no read: no record
    m.client.call("af_session_tag", "call-7")
    m.open(f, os.O_RDONLY)
    m.client.call("af_session_tag", "")
    m.open(f, os.O_RDWR)
    m.unlink(ROOT_INO, "f")
    j = Journal(m.client)
    assert [e.op for e in j.read(0).events] == ["create", "unlink"]  # not in the journal itself
    page = j.read(0, reads=True)
    assert [(e.kind, e.op, e.id, e.tag) for e in page.events] == [
        ("entry", "create", 1, None), ("read", "open", 1, "call-7"), ("read", "open-rw", 2, None),
        ("entry", "unlink", 2, None)]  # position 0 of each list: the session's registration
    ev = page.events[1]
    assert ev.ino == f and ev.actor is not None and ev.actor["host"] == "auditor"
    assert (page.next, page.reads_next, page.more) == (3, 3, False)
    # cursors: each list from its own position; since a position, reads from that event's time
    assert [e.op for e in j.read(2, reads=True, reads_since=2).events] == ["open-rw", "unlink"]
    assert [e.op for e in j.read(2, reads=True).events] == ["unlink"]
    # a short page keeps the time order across pages
    seen, cur, rcur = [], 0, 0
    while True:
        p = j.read(cur, reads=True, reads_since=rcur, limit=1)
        seen += [e.op for e in p.events]
        cur, rcur = p.next, p.reads_next
        if not p.more:
            break
    assert seen == ["create", "open", "open-rw", "unlink"]
    # the Python iterator merges them too
    assert [e.op for e in Journal(m.client).events(0, reads=True)] == seen


def test_the_read_audit_can_be_turned_on_later_and_retention_covers_it(meta_factory, key_prefix):
    from artifacts_core.meta.format import load_setting, set_journal_reads

    m = meta_factory(key_prefix)
    m.new_session({})
    f = m.create(ROOT_INO, "f")[0]
    m.open(f, os.O_RDONLY)
    assert set_journal_reads(m.client, True).journal_reads and load_setting(m.client).journal_reads
    for _ in range(5):
        m.open(f, os.O_RDONLY)
    assert m.client.command("LLEN", m.keys.reads) == 5
    assert trim(m.client, max_events=2, max_age=0) == 3  # the read audit's own bound
    page = Journal(m.client).read(0, reads=True, reads_since=0)
    assert [e.id for e in page.events if e.kind == "read"] == [3, 4] and page.reads_missed == 3
    set_journal_reads(m.client, False)
    m.open(f, os.O_RDONLY)
    assert m.client.command("LLEN", m.keys.reads) == 2
