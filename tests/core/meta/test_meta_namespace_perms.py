"""Permissions as non-root callers: owner/group/other bits, sticky directories, setgid
inheritance, EPERM (not allowed at all) versus EACCES (the mode bits say no)."""

from __future__ import annotations

import contextlib
import errno
import stat

import pytest

from artifacts_core.meta.namespace import XATTR_CREATE
from artifacts_core.types import ROOT_INO, Caller

ROOT = ROOT_INO
ALICE = Caller(1000, 100)  # owner
BOB = Caller(1001, 100)  # same group
EVE = Caller(1002, 200)  # other
CAROL = Caller(1003, 300, gids=(100,))  # other primary group, member of 100 as a supplementary


@contextlib.contextmanager
def raises(code):
    with pytest.raises(OSError) as info:
        yield info
    assert errno.errorcode[info.value.errno] == code, info.value


def alice_dir(m, mode, name="home"):
    d, _ = m.mkdir(ROOT, name, mode)
    m.setattr(d, uid=ALICE.uid, gid=100)
    return d


def test_search_write_and_read_bits_of_directories(meta):
    m = meta
    d = alice_dir(m, 0o750)
    f, _, _ = m.create(d, "f", 0o644, ALICE)
    assert m.lookup(d, "f", BOB)[0] == f  # group: r-x
    with raises("EACCES"):
        m.lookup(d, "f", EVE)  # other: ---
    assert m.lookup(d, "f", CAROL)[0] == f  # a supplementary group counts
    with raises("EACCES"):
        m.create(d, "g", 0o644, BOB)  # no write for the group
    with raises("EACCES"):
        m.unlink(d, "f", BOB)
    with raises("EACCES"):
        m.mkdir(d, "x", 0o755, EVE)  # search is checked first
    with raises("EEXIST"):
        m.create(d, "f", 0o644, BOB)  # an existing name wins over the write check, as Linux
    with raises("EACCES"):
        m.readdir(d, caller=EVE)
    assert [e.name for e in m.listdir(d, BOB)] == [b"f"]
    m.setattr(d, mode=0o710, caller=ALICE)
    with raises("EACCES"):
        m.readdir(d, caller=BOB)  # search without read: lookups only
    assert m.lookup(d, "f", BOB)[0] == f
    # root passes every bit on directories
    m.setattr(d, mode=0o000, caller=ALICE)
    m.create(d, "byroot", 0o600)
    assert m.lookup(d, "byroot")[0]


def test_new_inodes_belong_to_the_caller(meta):
    m = meta
    _f, a, _ = m.create(ROOT, "f", 0o640, CAROL)
    assert (a.uid, a.gid) == (1003, 300)  # the primary group
    _d, a = m.mkdir(ROOT, "d", 0o755, ALICE)
    assert (a.uid, a.gid) == (1000, 100)


def test_setgid_directories_pass_their_group_on(meta):
    m = meta
    d = alice_dir(m, 0o2777)
    _f, a, _ = m.create(d, "f", 0o644, EVE)
    assert a.gid == 100 and a.uid == EVE.uid and not a.mode & stat.S_ISGID
    sub, a = m.mkdir(d, "sub", 0o755, EVE)
    assert a.gid == 100 and a.mode & stat.S_ISGID  # subdirectories inherit the bit
    _deeper, a = m.mkdir(sub, "deeper", 0o700, EVE)
    assert a.gid == 100 and a.mode & stat.S_ISGID
    # a group-executable setgid file made by a non-member loses setgid; a member keeps it
    _, a, _ = m.create(d, "sg", 0o2755, EVE)
    assert not a.mode & stat.S_ISGID
    _, a, _ = m.create(d, "sg2", 0o2755, BOB)
    assert a.mode & stat.S_ISGID


def test_sticky_directory_protects_other_users_entries(meta):
    m = meta
    tmp, _ = m.mkdir(ROOT, "tmp", 0o1777)
    m.create(tmp, "bobs", 0o644, BOB)
    m.mkdir(tmp, "bobdir", 0o755, BOB)
    with raises("EPERM"):
        m.unlink(tmp, "bobs", EVE)
    with raises("EPERM"):
        m.rename(tmp, "bobs", tmp, "mine", caller=EVE)
    with raises("EPERM"):
        m.rmdir(tmp, "bobdir", EVE)
    m.create(tmp, "eves", 0o644, EVE)
    with raises("EPERM"):
        m.rename(tmp, "eves", tmp, "bobs", caller=EVE)  # replacing someone else's entry
    m.rename(tmp, "eves", tmp, "eves2", caller=EVE)
    m.unlink(tmp, "bobs", BOB)  # the owner may
    m.unlink(tmp, "eves2")  # root may
    m.setattr(tmp, uid=ALICE.uid)
    m.rmdir(tmp, "bobdir", ALICE)  # the directory's owner may


def test_chmod_chown_chgrp_rules(meta):
    m = meta
    f, _, _ = m.create(ROOT, "f", 0o644, ALICE)
    with raises("EPERM"):
        m.setattr(f, mode=0o600, caller=BOB)
    with raises("EPERM"):
        m.setattr(f, uid=BOB.uid, caller=ALICE)  # giving away: root only
    m.setattr(f, uid=ALICE.uid, caller=ALICE)  # a no-op chown is allowed
    with raises("EPERM"):
        m.setattr(f, gid=200, caller=ALICE)  # not her group
    with raises("EPERM"):
        m.setattr(f, gid=100, caller=BOB)  # not his file
    a = m.setattr(f, mode=0o2755, caller=ALICE)
    assert a.mode & stat.S_ISGID  # her group
    m.setattr(f, gid=300)
    a = m.setattr(f, mode=0o2755, caller=ALICE)
    assert not a.mode & stat.S_ISGID and a.perm == 0o755  # not in group 300: setgid cleared
    c = Caller(1000, 100, gids=(300,))
    a = m.setattr(f, mode=0o6755, caller=c)
    assert a.perm == 0o6755
    a = m.setattr(f, gid=100, caller=c)  # chgrp to a group she is in clears setuid/setgid
    assert a.gid == 100 and a.perm == 0o755
    d, _ = m.mkdir(ROOT, "d", 0o6755, ALICE)
    a = m.setattr(d, gid=100, caller=ALICE)
    assert a.perm == 0o6755  # not on directories


def test_times_now_needs_write_explicit_needs_ownership(meta):
    m = meta
    f, _, _ = m.create(ROOT, "f", 0o664, ALICE)
    m.setattr(f, gid=100)
    m.setattr(f, atime_now=True, mtime_now=True, caller=BOB)  # group may write
    with raises("EPERM"):
        m.setattr(f, mtime_ns=10**18, caller=BOB)
    with raises("EACCES"):
        m.setattr(f, atime_now=True, mtime_now=True, caller=EVE)
    m.setattr(f, mtime_ns=10**18, caller=ALICE)
    m.setattr(f, mode=0o400, caller=ALICE)
    m.setattr(f, mtime_now=True, caller=ALICE)  # the owner needs no write bit
    with raises("EPERM"):
        m.setattr(f, ctime_ns=5, caller=ALICE)  # ctime: root only


def test_rename_and_link_permissions(meta):
    m = meta
    src = alice_dir(m, 0o755, "src")
    dst = alice_dir(m, 0o777, "dst")
    m.create(src, "f", 0o644, ALICE)
    with raises("EACCES"):
        m.rename(src, "f", dst, "f", caller=BOB)  # no write in the source directory
    _sub, _ = m.mkdir(dst, "sub", 0o555, BOB)
    other = alice_dir(m, 0o777, "other")
    with raises("EACCES"):
        m.rename(dst, "sub", other, "sub", caller=BOB)  # its ".." changes: needs write on it
    m.rename(dst, "sub", dst, "sub2", caller=BOB)  # same parent: fine
    f, _, _ = m.create(dst, "g", 0o644, BOB)
    with raises("EACCES"):
        m.link(f, src, "g", BOB)
    m.link(f, other, "g", EVE)


def test_xattr_permissions(meta):
    m = meta
    f, _, _ = m.create(ROOT, "f", 0o644, ALICE)
    m.setxattr(f, "user.a", b"1", XATTR_CREATE, ALICE)
    assert m.getxattr(f, "user.a", EVE) == b"1"
    with raises("EACCES"):
        m.setxattr(f, "user.a", b"2", caller=EVE)
    with raises("EACCES"):
        m.removexattr(f, "user.a", EVE)
    with raises("EPERM"):
        m.setxattr(f, "trusted.x", b"1", caller=ALICE)
    m.setxattr(f, "trusted.x", b"1")
    with raises("ENODATA"):
        m.getxattr(f, "trusted.x", ALICE)
    assert m.listxattr(f, ALICE) == [b"user.a"]
    assert sorted(m.listxattr(f)) == [b"trusted.x", b"user.a"]
    s, _ = m.symlink(ROOT, "s", "f", ALICE)
    with raises("EPERM"):
        m.setxattr(s, "user.a", b"1", caller=ALICE)
    tmp, _ = m.mkdir(ROOT, "tmp", 0o1777)
    with raises("EPERM"):
        m.setxattr(tmp, "user.a", b"1", caller=EVE)
    m.setattr(f, mode=0o000, caller=ALICE)
    with raises("EACCES"):
        m.getxattr(f, "user.a", ALICE)
