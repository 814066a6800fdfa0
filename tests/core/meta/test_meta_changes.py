"""Change records on a real redis-server: every mutating function of the library announces what
it changed on the workspace's channel and appends the same records to the workspace's journal,
in the same call (the contract), and the records decode to what happened.

The contract is enumerated from the library as Redis loaded it (``library.functions()``, from
``FUNCTION LIST``: every registration form counts): a function is read-only (``no-writes``), or on
the list of exclusions below with its reason, or it has a driver here that makes it change
something and says which records must follow. A new function without any of the three fails
``test_every_function_is_classified``.
"""

from __future__ import annotations

import time

import pytest

from artifacts_core.meta import library
from artifacts_core.meta.attrs import SLICE_INLINE, SliceRecord
from artifacts_core.meta.changes import Change, Subscription, decode
from artifacts_core.meta.journal import Journal
from artifacts_core.types import ROOT_INO, TRASH_INO

#: Mutating functions that announce nothing, and why.
EXCLUDED = {
    "af_format": "creates the volume: no client can have cached any of it",
    "af_set_limits": "the capacity and inode limits: every check and statfs reads them in Redis",
    "af_reserve_slices": "slice-id bookkeeping: nothing a client caches",
    "af_bgjob_elect": "background-job election bookkeeping",
    "af_reclaim_files": "releases the data of inodes no name refers to any more",
    "af_reclaim_slices": "deletes unreferenced slices (after the readers' grace period)",
    "af_reclaim_done": "forgets slices whose blocks are deleted",
    "af_compact": "rewrites a chunk's records as one slice of the same bytes: nothing changes",
    "af_session_new": "session bookkeeping",
    "af_session_beat": "session bookkeeping",
    "af_session_close": "session bookkeeping (frees only unlinked inodes no one holds open)",
    "af_session_sweep": "session bookkeeping (frees only unlinked inodes no one holds open)",
    "af_session_assign": "session-id bookkeeping of the orchestrator",
    "af_session_end": "session bookkeeping (frees only unlinked inodes no one holds open)",
    "af_open": "open registration",
    "af_close": "open registration (frees only an unlinked inode at its last close anywhere)",
    "af_flock": "lock bookkeeping",
    "af_setlk": "lock bookkeeping",
    "af_lock_release": "lock bookkeeping",
    "af_ck_create": "a checkpoint changes nothing a client caches (copy-on-write preserves, later)",
    "af_ck_delete": "drops preserved versions and history bookkeeping: nothing a client caches",
    "af_ck_restore": "announces kind 'w' (all): tests/core/history/test_checkpoints.py checks it",
    "af_journal_trim": "the journal's retention (full rights only): nothing a client caches",
    "af_session_tag": "session bookkeeping (the tag later change records carry)",
    "af_journal_reads": "a volume setting (the read audit on or off): nothing a client caches",
    "af_ck_pinned": "records what checkpoints keep (an accounting figure): nothing a client caches",
}


def _inline(m, data: bytes) -> tuple[SliceRecord, bytes]:
    sid = m.new_slice_id()
    return SliceRecord(0, sid, len(data), 0, len(data), SLICE_INLINE), data


def _file(m, name: str, data: bytes = b"") -> int:
    ino = m.create(ROOT_INO, name)[0]
    if data:
        rec, payload = _inline(m, data)
        m.commit_slice(ino, 0, rec, data=payload)
    return ino


# Each driver makes its function change something and returns the records that must follow, as
# (kind, op, ino, parent, name, new_parent, new_name) with None for "any".
def d_create(m):
    d = m.mkdir(ROOT_INO, "dir")[0]
    f = m.create(d, "f")[0]
    s = m.symlink(d, "s", "f")[0]
    return [("entry", "mkdir", d, ROOT_INO, b"dir", 0, b""), ("entry", "create", f, d, b"f", 0, b""),
            ("entry", "symlink", s, d, b"s", 0, b"")]


def d_link(m):
    f = _file(m, "orig")
    m.link(f, ROOT_INO, "hard")
    return [("entry", "link", f, ROOT_INO, b"hard", 0, b"")]


def d_unlink(m):
    f = _file(m, "victim")
    m.unlink(ROOT_INO, "victim")
    return [("entry", "unlink", f, ROOT_INO, b"victim", 0, b"")]


def d_rmdir(m):
    d = m.mkdir(ROOT_INO, "gone")[0]
    m.rmdir(ROOT_INO, "gone")
    return [("entry", "rmdir", d, ROOT_INO, b"gone", 0, b"")]


def d_rename(m):
    d = m.mkdir(ROOT_INO, "to")[0]
    a, b = _file(m, "a"), _file(m, "b")
    m.rename(ROOT_INO, "a", d, "a2")
    m.rename(d, "a2", ROOT_INO, "b")  # over b: b's inode loses its last name
    c = _file(m, "c")
    m.rename(ROOT_INO, "b", ROOT_INO, "c", 2)  # RENAME_EXCHANGE
    return [("rename", "rename", a, ROOT_INO, b"a", d, b"a2"), ("rename", "rename", a, d, b"a2", ROOT_INO, b"b"),
            ("attr", "rename", b, 0, b"", 0, b""), ("rename", "exchange", a, ROOT_INO, b"b", ROOT_INO, b"c"),
            ("attr", "exchange", c, 0, b"", 0, b"")]


def d_setattr(m):
    f = _file(m, "modes")
    m.setattr(f, mode=0o600)
    m.setattr(f, mtime_now=True)
    return [("attr", "setattr", f, 0, b"", 0, b"")] * 2


def d_setxattr(m):
    f = _file(m, "x")
    m.setxattr(f, "user.k", b"v")
    return [("attr", "setxattr", f, 0, b"", 0, b"")]


def d_removexattr(m):
    f = _file(m, "x2")
    m.setxattr(f, "user.k", b"v")
    m.removexattr(f, "user.k")
    return [("attr", "setxattr", f, 0, b"", 0, b""), ("attr", "removexattr", f, 0, b"", 0, b"")]


def d_commit(m):
    f = _file(m, "written")
    rec, data = _inline(m, b"hello")
    m.commit_slice(f, 0, rec, data=data)
    rec, data = _inline(m, b"!")
    m.commit_slice(f, 0, rec, data=data, append=True)
    return [("data", "commit", f, 0, b"", 0, b"")] * 2


def d_truncate(m):
    f = _file(m, "short", b"0123456789")
    m.truncate(f, 3)
    m.truncate(f, 30)
    return [("data", "truncate", f, 0, b"", 0, b"")] * 2


def d_fallocate(m):
    f = _file(m, "alloc", b"0123456789")
    m.fallocate(f, 0, 0, 100)
    m.fallocate(f, 0x03, 2, 4)  # PUNCH_HOLE | KEEP_SIZE
    return [("data", "fallocate", f, 0, b"", 0, b"")] * 2


def d_copy_range(m):
    src, dst = _file(m, "src", b"shared bytes"), _file(m, "dst")
    m.copy_file_range(src, 0, dst, 0, 12)
    return [("data", "copy", dst, 0, b"", 0, b"")]


def d_replace(m):
    f = _file(m, "whole", b"old")
    rec, data = _inline(m, b"new content")
    m.replace_content(f, len(data), [(0, rec, data)])
    return [("data", "replace", f, 0, b"", 0, b"")]


def d_replace_content(m):
    rec, data = _inline(m, b"v1")
    ino, _, _ = m.replace_entry(ROOT_INO, "doc", rec.id, rec.size, data=data)
    rec, data = _inline(m, b"v2")
    m.replace_entry(ROOT_INO, "doc", rec.id, rec.size, data=data)
    return [("entry", "replace_content", ino, ROOT_INO, b"doc", 0, b""), ("data", "replace_content", ino, 0, b"", 0, b"")]


def d_append_entry(m):
    rec, data = _inline(m, b"line 1\n")
    ino, _, _ = m.append_entry(ROOT_INO, "log", rec.id, rec.size, data=data)
    rec, data = _inline(m, b"line 2\n")
    m.append_entry(ROOT_INO, "log", rec.id, rec.size, data=data)
    return [("entry", "append_entry", ino, ROOT_INO, b"log", 0, b""), ("data", "append_entry", ino, 0, b"", 0, b"")]


def d_expire_trash(m):
    f = _file(m, "trashed")
    m.unlink(ROOT_INO, "trashed")  # into TRASH/<hour>/1-<ino>-trashed (the volume keeps a trash)
    hour, = [e for e in m.listdir(TRASH_INO)]
    m.expire_trash(now_offset=3 * 86400, interval=None)
    return [("entry", "unlink", f, ROOT_INO, b"trashed", 0, b""),
            ("entry", "unlink", hour.ino, TRASH_INO, hour.name, 0, b""),
            ("entry", "unlink", f, hour.ino, f"1-{f}-trashed".encode(), 0, b""),
            ("entry", "expire_trash", f, hour.ino, f"1-{f}-trashed".encode(), 0, b""),
            ("entry", "expire_trash", hour.ino, TRASH_INO, hour.name, 0, b"")]


def d_clone(m):
    f = _file(m, "src")
    ino, _ = m.clone(f, ROOT_INO, "copy")
    return [("entry", "clone", ino, ROOT_INO, b"copy", 0, b"")]


DRIVERS = {
    "af_clone": d_clone,
    "af_create": d_create, "af_link": d_link, "af_unlink": d_unlink, "af_rmdir": d_rmdir,
    "af_rename": d_rename, "af_setattr": d_setattr, "af_setxattr": d_setxattr,
    "af_removexattr": d_removexattr, "af_commit": d_commit, "af_truncate": d_truncate,
    "af_fallocate": d_fallocate, "af_copy_range": d_copy_range, "af_replace": d_replace,
    "af_replace_content": d_replace_content, "af_append_entry": d_append_entry,
    "af_expire_trash": d_expire_trash,
}


def test_every_function_is_classified(meta_factory, key_prefix):
    functions = library.functions(meta_factory(key_prefix).client.node())
    assert len(functions) > 40 and {"af_rename", "af_unlink", "af_lookup"} <= set(functions), functions
    writable = {name for name, read_only in functions.items() if not read_only}
    unclassified = writable - set(DRIVERS) - set(EXCLUDED)
    assert not unclassified, (f"{sorted(unclassified)} change state but neither announce a change record "
                              "(a driver in DRIVERS) nor are excluded with a reason (EXCLUDED)")
    assert set(DRIVERS) | set(EXCLUDED) <= writable  # nothing stale listed
    assert not set(DRIVERS) & set(EXCLUDED)


def _collect(engine):
    got: list[Change] = []
    sub = Subscription(engine.client, deliver=got.append, session=lambda: engine.sid)
    sub.start()
    assert sub.wait_subscribed(10)
    return sub, got


def _wait_for(got: list[Change], n: int, timeout: float = 10.0) -> list[Change]:
    deadline = time.monotonic() + timeout
    while len([c for c in got if c.kind != "all"]) < n and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.05)  # and nothing more than expected
    return [c for c in got if c.kind != "all"]


@pytest.mark.parametrize("function", sorted(DRIVERS))
def test_every_mutating_function_announces_its_changes(meta_factory, key_prefix, function):
    writer = meta_factory(key_prefix, trash_days=1 if function == "af_expire_trash" else 0)
    observer = meta_factory(key_prefix)
    writer.new_session()
    observer.new_session()
    sub, got = _collect(observer)
    try:
        t0 = time.time()
        expected = DRIVERS[function](writer)
        setup = _wait_for(got, len(expected))
        records = [(c.kind, c.op, c.ino, c.parent, c.name, c.new_parent, c.new_name) for c in setup]
        # the driver's setup (creating the files it works on) announces too; the function's own
        # records come last, in order
        expected = [tuple(int(v) if isinstance(v, int) else v for v in e) for e in expected]
        assert [r for r in records if r in expected] == expected, records
        assert all(c.session == writer.sid and not c.own for c in setup)
        assert all(t0 - 5 < c.time < time.time() + 5 for c in setup)  # server clock, this call's
        # the journal holds the same records, in the same order (one change record, two uses)
        journaled = [e for e in Journal(observer.client).read(0, limit=10000).events]
        assert [(e.kind, e.op, e.ino, e.parent, (e.name or "").encode(), e.new_parent, (e.new_name or "").encode(),
                 e.session, e.time) for e in journaled] == \
            [(c.kind, c.op, c.ino, c.parent, c.name, c.new_parent, c.new_name, c.session, c.time) for c in setup]
    finally:
        sub.stop()


def test_a_change_made_through_the_own_session_is_flagged_own(meta_factory, key_prefix):
    m = meta_factory(key_prefix)
    m.new_session()
    sub, got = _collect(m)
    try:
        m.create(ROOT_INO, "mine")
        (c,) = _wait_for(got, 1)
        assert c.own and c.session == m.sid
        m.close_session()  # without a session: session 0, never "own"
        m.create(ROOT_INO, "anonymous")
        assert [(c.session, c.own) for c in _wait_for(got, 2)][1] == (0, False)
    finally:
        sub.stop()


def test_records_decode_and_unknown_ones_mean_everything():
    assert decode(b"1\0e\0create\x007\x001700000000\x00250000\x0042\x001\0n\xffame", own_session=7) == Change(
        "entry", 42, 1, b"n\xffame", 0, b"", 7, True, "create", 1700000000.25)
    assert decode(b"1\0r\0rename\x003\x001\x000\x009\x001\0a\x002\0b") == Change(
        "rename", 9, 1, b"a", 2, b"b", 3, False, "rename", 1.0)
    # fields a later version appends are ignored
    assert decode(b"1\0d\0commit\x003\x001\x000\x009\0\0\0\0\0+4096\0tag").kind == "data"
    for bad in (b"2\0e\0create\x001\x001\x000\x009", b"1\0?\0x\x001\x001\x000\x009", b"garbage",
                b"1\0a\0setattr\0x\x001\x000\x009"):
        assert decode(bad).kind == "all"
