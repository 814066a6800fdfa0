"""Contract suite of the namespace (meta/namespace.py + lua/10-14): every operation and errno,
run on standalone Redis and on a 3-master Redis Cluster."""

from __future__ import annotations

import contextlib
import errno
import stat

import pytest

from artifacts_core.meta.attrs import TYPE_DIR, TYPE_FILE, TYPE_SYMLINK
from artifacts_core.meta.namespace import RENAME_EXCHANGE, RENAME_NOREPLACE, XATTR_CREATE, XATTR_REPLACE
from artifacts_core.types import ROOT_INO

ROOT = ROOT_INO


@pytest.fixture(params=["standalone", "cluster"])
def m(request, meta_factory, key_prefix):
    if request.param == "cluster":
        return meta_factory(key_prefix, url=request.getfixturevalue("redis_cluster").url)
    return meta_factory(key_prefix)


@contextlib.contextmanager
def raises(code):
    """pytest.raises for an OSError carrying the errno named ``code``."""
    with pytest.raises(OSError) as info:
        yield info
    assert errno.errorcode[info.value.errno] == code, info.value


def counters(m):
    used, inodes = m.client.command("MGET", m.keys.counter("usedspace"), m.keys.counter("totalinodes"))
    return int(used), int(inodes)


# -- lookup / getattr ------------------------------------------------------------------------------

def test_lookup_resolves_names_dot_and_dotdot(m):
    d, _da = m.mkdir(ROOT, "d")
    f, fa, created = m.create(d, "f", 0o640)
    assert created and m.lookup(d, "f") == (f, fa)
    assert m.lookup(d, ".")[0] == d
    assert m.lookup(d, "..")[0] == ROOT
    assert m.lookup(ROOT, "..")[0] == ROOT
    with raises("ENOENT"):
        m.lookup(d, "missing")
    with raises("ENOTDIR"):
        m.lookup(f, "x")
    with raises("ENOENT"):
        m.lookup(999999, "x")
    with raises("ENAMETOOLONG"):
        m.lookup(d, "x" * 256)


def test_getattr_and_getattr_many(m):
    f, fa, _ = m.create(ROOT, "f")
    assert m.getattr(f) == fa
    assert m.getattr_many([f, 999999, ROOT]) == [fa, None, m.getattr(ROOT)]
    assert m.getattr_many([]) == []
    with raises("ENOENT"):
        m.getattr(999999)


def test_access_follows_posix_bits_and_root_rules(m):
    from artifacts_core.types import Caller
    f, _, _ = m.create(ROOT, "f", 0o640)
    m.setattr(f, uid=1000, gid=100)
    m.access(f, 6, Caller(1000, 100))
    m.access(f, 4, Caller(2000, 100))
    with raises("EACCES"):
        m.access(f, 2, Caller(2000, 100))
    with raises("EACCES"):
        m.access(f, 4, Caller(3000, 300))
    m.access(f, 0, Caller(3000, 300))
    m.access(f, 6)  # root reads and writes anything
    with raises("EACCES"):
        m.access(f, 1)  # ...but executes only what has an exec bit
    m.access(ROOT, 1)


# -- create / mknod / mkdir / symlink --------------------------------------------------------------

def test_create_sets_attrs_counters_and_touches_parent(m):
    before = m.getattr(ROOT)
    used, inodes = counters(m)
    f, fa, created = m.create(ROOT, "f", 0o4755)
    assert created and fa.mode == stat.S_IFREG | 0o4755 and fa.nlink == 1 and fa.length == 0
    assert fa.parent == ROOT and fa.uid == 0 and fa.gid == 0 and fa.ctime_ns == fa.mtime_ns == fa.btime_ns
    after = m.getattr(ROOT)
    assert after.mtime_ns >= before.mtime_ns and after.ctime_ns == after.mtime_ns and after.gen > before.gen
    assert after.nlink == before.nlink
    assert counters(m) == (used + 4096, inodes + 1)
    with raises("EEXIST"):
        m.create(ROOT, "f")
    again, attr, created = m.create(ROOT, "f", exclusive=False)
    assert (again, attr, created) == (f, fa, False)
    m.mkdir(ROOT, "d")
    with raises("EISDIR"):
        m.create(ROOT, "d", exclusive=False)
    with raises("EINVAL"):
        m.create(ROOT, "x", stat.S_IFDIR | 0o755)


def test_names_are_bytes_and_validated(m):
    raw = b"caf\xe9-\xff\x01"  # not UTF-8: stored and listed verbatim
    f, _, _ = m.create(ROOT, raw)
    assert m.lookup(ROOT, raw)[0] == f
    assert m.lookup(ROOT, raw.decode("utf-8", "surrogateescape"))[0] == f
    assert raw in {e.name for e in m.listdir(ROOT)}
    m.create(ROOT, "x" * 255)
    m.create(ROOT, "é" * 127)  # 254 bytes
    with raises("ENAMETOOLONG"):
        m.create(ROOT, "é" * 128)  # 256 bytes
    with raises("ENAMETOOLONG"):
        m.mkdir(ROOT, "x" * 256)
    for bad in ("a/b", "a\0b"):
        with raises("EINVAL"):
            m.create(ROOT, bad)
    with raises("ENOENT"):
        m.create(ROOT, "")
    for dot in (".", ".."):
        with raises("EEXIST"):
            m.mkdir(ROOT, dot)
        with raises("EEXIST"):
            m.symlink(ROOT, dot, "t")


def test_mknod_kinds(m):
    for fmt in (stat.S_IFIFO, stat.S_IFSOCK, stat.S_IFREG, 0):
        ino, a = m.mknod(ROOT, f"n{fmt}", fmt | 0o600)
        assert stat.S_IFMT(a.mode) == (fmt or stat.S_IFREG) and a.rdev == 0
    ino, a = m.mknod(ROOT, "chr", stat.S_IFCHR | 0o600, rdev=(1 << 8) | 3)
    assert stat.S_ISCHR(a.mode) and a.rdev == 259 and m.getattr(ino).rdev == 259
    _, a = m.mknod(ROOT, "blk", stat.S_IFBLK | 0o600, rdev=7)
    assert stat.S_ISBLK(a.mode) and a.rdev == 7
    with raises("EPERM"):
        m.mknod(ROOT, "dir", stat.S_IFDIR | 0o755)
    with raises("EINVAL"):
        m.mknod(ROOT, "lnk", stat.S_IFLNK | 0o777)
    with raises("EEXIST"):
        m.mknod(ROOT, "chr", stat.S_IFIFO | 0o600)


def test_mkdir_counts_links_and_resolves_only_in_directories(m):
    d, da = m.mkdir(ROOT, "d", 0o750)
    assert da.mode == stat.S_IFDIR | 0o750 and da.nlink == 2 and da.parent == ROOT
    root_links = m.getattr(ROOT).nlink
    m.mkdir(d, "sub")
    assert m.getattr(d).nlink == 3 and m.getattr(ROOT).nlink == root_links
    f, _, _ = m.create(d, "f")
    assert m.getattr(d).nlink == 3  # files do not count
    with raises("ENOTDIR"):
        m.mkdir(f, "x")
    with raises("ENOENT"):
        m.mkdir(999999, "x")


def test_symlink_and_readlink(m):
    s, a = m.symlink(ROOT, "s", "../some/where")
    assert a.type == TYPE_SYMLINK and a.perm == 0o777 and a.length == len("../some/where")
    assert m.readlink(s) == b"../some/where"
    assert m.symlink(ROOT, "abs", b"/\xff")[1].length == 2
    f, _, _ = m.create(ROOT, "f")
    with raises("EINVAL"):
        m.readlink(f)
    with raises("ENOENT"):
        m.readlink(999999)
    with raises("ENOENT"):
        m.symlink(ROOT, "e", "")
    with raises("ENAMETOOLONG"):
        m.symlink(ROOT, "l", "x" * 4096)
    m.symlink(ROOT, "l", "x" * 4095)
    m.unlink(ROOT, "s")
    with raises("ENOENT"):
        m.readlink(s)


# -- hard links ------------------------------------------------------------------------------------

def test_hard_links_count_names_per_parent(m):
    d, _ = m.mkdir(ROOT, "d")
    f, _, _ = m.create(ROOT, "f")
    a = m.link(f, d, "g")
    assert a.nlink == 2 and a.parent == 0
    m.link(f, d, "h")
    parents = m.client.command("HGETALL", m.keys.parents(f))
    assert parents == {str(ROOT).encode(): b"1", str(d).encode(): b"2"}
    assert m.lookup(d, "g") == m.lookup(ROOT, "f")
    assert m.unlink(d, "g") == 2
    assert m.client.command("HGETALL", m.keys.parents(f)) == {str(ROOT).encode(): b"1", str(d).encode(): b"1"}
    assert m.unlink(ROOT, "f") == 1
    assert m.client.command("EXISTS", m.keys.parents(f)) == 0  # one name again: a plain parent
    assert m.getattr(f).nlink == 1 and m.getattr(f).parent == d
    with raises("EPERM"):
        m.link(d, ROOT, "dlink")
    with raises("EEXIST"):
        m.link(f, d, "h")
    with raises("EEXIST"):
        m.link(f, d, ".")
    with raises("ENOENT"):
        m.link(999999, d, "x")
    with raises("ENOTDIR"):
        m.link(d, f, "x")
    m.unlink(d, "h")
    with raises("ENOENT"):
        m.link(f, d, "again")
    assert m.client.command("EXISTS", m.keys.parents(f)) == 0


# -- unlink / rmdir --------------------------------------------------------------------------------

def test_unlink_frees_the_inode_and_queues_its_data(m):
    used, inodes = counters(m)
    f, _, _ = m.create(ROOT, "f")
    m.setxattr(f, "user.k", b"v")
    assert m.unlink(ROOT, "f") == 0
    with raises("ENOENT"):
        m.getattr(f)
    with raises("ENOENT"):
        m.lookup(ROOT, "f")
    assert m.client.command("EXISTS", m.keys.xattrs(f)) == 0
    assert m.client.command("ZSCORE", m.keys.delfiles, f"{f}:0") is not None
    assert counters(m) == (used, inodes)
    with raises("ENOENT"):
        m.unlink(ROOT, "f")
    m.mkdir(ROOT, "d")
    with raises("EISDIR"):
        m.unlink(ROOT, "d")
    for dot in (".", ".."):
        with raises("EISDIR"):
            m.unlink(ROOT, dot)
    s, _ = m.symlink(ROOT, "s", "t")
    m.unlink(ROOT, "s")
    assert m.client.command("EXISTS", m.keys.symlink(s)) == 0


def test_rmdir_rules(m):
    d, _ = m.mkdir(ROOT, "d")
    links = m.getattr(ROOT).nlink
    m.create(d, "f")
    with raises("ENOTEMPTY"):
        m.rmdir(ROOT, "d")
    with raises("ENOTDIR"):
        m.rmdir(d, "f")
    with raises("EINVAL"):
        m.rmdir(d, ".")
    with raises("ENOTEMPTY"):
        m.rmdir(d, "..")
    with raises("ENOENT"):
        m.rmdir(d, "none")
    m.unlink(d, "f")
    used, inodes = counters(m)
    assert m.rmdir(ROOT, "d") == d
    assert m.getattr(ROOT).nlink == links - 1
    assert counters(m) == (used - 4096, inodes - 1)
    with raises("ENOENT"):
        m.getattr(d)
    with raises("ENOENT"):
        m.create(d, "late")  # a removed directory takes no entries


# -- rename ----------------------------------------------------------------------------------------

def test_rename_within_and_across_directories(m):
    a, _ = m.mkdir(ROOT, "a")
    b, _ = m.mkdir(ROOT, "b")
    f, fa, _ = m.create(a, "f")
    assert m.rename(a, "f", a, "g")
    assert m.lookup(a, "g")[0] == f
    m.rename(a, "g", b, "h")
    moved = m.getattr(f)
    assert moved.parent == b and moved.ctime_ns >= fa.ctime_ns and moved.gen > fa.gen
    sub, _ = m.mkdir(a, "sub")
    m.create(sub, "inner")
    m.rename(a, "sub", b, "sub2")
    assert m.getattr(sub).parent == b
    assert m.getattr(a).nlink == 2 and m.getattr(b).nlink == 3
    assert m.lookup(b, "sub2")[0] == sub and m.lookup(sub, "..")[0] == b
    assert [e.name for e in m.listdir(a)] == []


def test_rename_replacing_follows_unlink_rules(m):
    used, inodes = counters(m)
    f, _, _ = m.create(ROOT, "f")
    g, _, _ = m.create(ROOT, "g")
    m.rename(ROOT, "f", ROOT, "g")
    assert m.lookup(ROOT, "g")[0] == f
    with raises("ENOENT"):
        m.getattr(g)
    assert counters(m) == (used + 4096, inodes + 1)
    d1, _ = m.mkdir(ROOT, "d1")
    d2, _ = m.mkdir(ROOT, "d2")
    links = m.getattr(ROOT).nlink
    m.rename(ROOT, "d1", ROOT, "d2")  # dir over empty dir
    assert m.lookup(ROOT, "d2")[0] == d1 and m.getattr(ROOT).nlink == links - 1
    with raises("ENOENT"):
        m.getattr(d2)
    m.create(d1, "x")
    _e, _ = m.mkdir(ROOT, "e")
    with raises("ENOTEMPTY"):
        m.rename(ROOT, "e", ROOT, "d2")
    with raises("ENOTDIR"):
        m.rename(ROOT, "e", ROOT, "g")
    with raises("EISDIR"):
        m.rename(ROOT, "g", ROOT, "e")
    # a hard-linked target loses one name only
    h, _, _ = m.create(ROOT, "h")
    m.link(h, d1, "h2")
    m.rename(ROOT, "g", d1, "h2")
    assert m.getattr(h).nlink == 1 and m.getattr(h).parent == ROOT
    assert m.client.command("EXISTS", m.keys.parents(h)) == 0


def test_rename_flags(m):
    f, _, _ = m.create(ROOT, "f")
    g, _, _ = m.create(ROOT, "g")
    with raises("EEXIST"):
        m.rename(ROOT, "f", ROOT, "g", RENAME_NOREPLACE)
    m.rename(ROOT, "f", ROOT, "f2", RENAME_NOREPLACE)
    with raises("ENOENT"):
        m.rename(ROOT, "f2", ROOT, "none", RENAME_EXCHANGE)
    with raises("EINVAL"):
        m.rename(ROOT, "f2", ROOT, "g", RENAME_NOREPLACE | RENAME_EXCHANGE)
    with raises("EINVAL"):
        m.rename(ROOT, "f2", ROOT, "g", 4)  # RENAME_WHITEOUT
    d, _ = m.mkdir(ROOT, "d")
    sub, _ = m.mkdir(d, "sub")
    m.rename(ROOT, "f2", d, "sub", RENAME_EXCHANGE)  # a file and a directory swap parents
    assert m.lookup(ROOT, "f2")[0] == sub and m.lookup(d, "sub")[0] == f
    assert m.getattr(sub).parent == ROOT and m.getattr(f).parent == d
    assert m.getattr(d).nlink == 2
    m.rename(ROOT, "g", ROOT, "f2", RENAME_EXCHANGE)
    assert m.lookup(ROOT, "f2")[0] == g and m.lookup(ROOT, "g")[0] == sub


def test_rename_refuses_loops_at_any_depth_and_dots(m):
    a, _ = m.mkdir(ROOT, "a")
    b, _ = m.mkdir(a, "b")
    c, _ = m.mkdir(b, "c")
    d, _ = m.mkdir(c, "d")
    with raises("EINVAL"):
        m.rename(ROOT, "a", d, "loop")
    with raises("EINVAL"):
        m.rename(ROOT, "a", a, "self")
    with raises("EINVAL"):
        m.rename(a, "b", d, "x", RENAME_NOREPLACE)
    with raises("ENOTEMPTY"):
        m.rename(c, "d", ROOT, "a")  # the target is an ancestor of the source
    with raises("EINVAL"):
        m.rename(c, "d", ROOT, "a", RENAME_EXCHANGE)
    with raises("EBUSY"):
        m.rename(a, ".", ROOT, "z")
    with raises("EBUSY"):
        m.rename(ROOT, "a", b, "..")
    with raises("EEXIST"):
        m.rename(ROOT, "a", b, "..", RENAME_NOREPLACE)
    with raises("ENOENT"):
        m.rename(ROOT, "none", ROOT, "z")
    m.rename(c, "d", ROOT, "d")  # moving up is fine
    assert m.getattr(d).parent == ROOT


def test_rename_between_names_of_one_inode_changes_nothing(m):
    f, _, _ = m.create(ROOT, "f")
    m.link(f, ROOT, "g")
    gen = m.getattr(f).gen
    assert m.rename(ROOT, "f", ROOT, "g") is False
    assert m.lookup(ROOT, "f")[0] == m.lookup(ROOT, "g")[0] == f and m.getattr(f).gen == gen
    assert m.rename(ROOT, "f", ROOT, "f") is False


# -- setattr ---------------------------------------------------------------------------------------

def test_setattr_mode_owner_and_times(m):
    f, fa, _ = m.create(ROOT, "f", 0o644)
    a = m.setattr(f, mode=0o600)
    assert a.mode == stat.S_IFREG | 0o600 and a.ctime_ns >= fa.ctime_ns and a.gen == fa.gen + 1
    a = m.setattr(f, uid=1000, gid=2000)
    assert (a.uid, a.gid) == (1000, 2000)
    a = m.setattr(f, atime_ns=1_234_567_890_123_456_789, mtime_ns=5)
    assert a.atime_ns == 1_234_567_890_123_456_789 and a.mtime_ns == 5
    b = m.setattr(f, atime_now=True, mtime_now=True)
    assert b.atime_ns == b.mtime_ns == b.ctime_ns and b.atime_ns > a.atime_ns
    c = m.setattr(f, ctime_ns=42)
    assert c.ctime_ns == 42
    assert m.setattr(f) == m.getattr(f)  # nothing asked, nothing changed
    assert m.getattr(f) == c
    m.setattr(f, mode=0o6755)
    a = m.setattr(f, uid=3)  # chown of a non-directory clears setuid and (group-exec) setgid
    assert a.perm == 0o755
    with raises("ENOENT"):
        m.setattr(999999, mode=0o600)


# -- xattrs ----------------------------------------------------------------------------------------

def test_xattrs(m):
    f, _, _ = m.create(ROOT, "f")
    with raises("ENODATA"):
        m.getxattr(f, "user.a")
    m.setxattr(f, "user.a", b"1")
    with raises("EEXIST"):
        m.setxattr(f, "user.a", b"2", XATTR_CREATE)
    m.setxattr(f, "user.a", b"2", XATTR_REPLACE)
    with raises("ENODATA"):
        m.setxattr(f, "user.b", b"2", XATTR_REPLACE)
    m.setxattr(f, "user.b", b"", XATTR_CREATE)
    assert m.getxattr(f, "user.a") == b"2" and m.getxattr(f, "user.b") == b""
    assert sorted(m.listxattr(f)) == [b"user.a", b"user.b"]
    m.removexattr(f, "user.a")
    with raises("ENODATA"):
        m.removexattr(f, "user.a")
    assert m.listxattr(f) == [b"user.b"]
    m.setxattr(f, "user." + "n" * 250, b"x" * 65536)
    with raises("ERANGE"):
        m.setxattr(f, "user." + "n" * 251, b"x")
    with raises("ERANGE"):
        m.getxattr(f, "")
    with raises("E2BIG"):
        m.setxattr(f, "user.big", b"x" * 65537)
    with raises("EINVAL"):
        m.setxattr(f, "user.c", b"x", 3)
    with raises("ENOENT"):
        m.setxattr(999999, "user.a", b"x")
    with raises("ENOENT"):
        m.listxattr(999999)


# -- readdir ---------------------------------------------------------------------------------------

def test_readdir_pages_and_plus(m):
    d, _ = m.mkdir(ROOT, "d")
    names = {f"e{i:04d}".encode() for i in range(1500)}
    for n in names:
        m.create(d, n)
    m.mkdir(d, "sub")
    pages, cursor, seen = 0, 0, []
    while True:
        entries, cursor = m.readdir(d, cursor, 100)
        seen += entries
        pages += 1
        if cursor == 0:
            break
    assert pages > 5
    assert {e.name for e in seen} == names | {b"sub"}
    listed = list(m.listdir(d, plus=True, count=200))
    assert len(listed) == 1501 and len({e.name for e in listed}) == 1501
    by_name = {e.name: e for e in listed}
    assert by_name[b"sub"].type == TYPE_DIR and by_name[b"sub"].attr.is_dir
    assert by_name[b"e0001"].type == TYPE_FILE and by_name[b"e0001"].attr == m.getattr(by_name[b"e0001"].ino)
    page, _ = m.readdir_plus(d, 0, 10)
    assert page and all(e.attr is not None for e in page)
    f = by_name[b"e0001"].ino
    with raises("ENOTDIR"):
        m.readdir(f)
    with raises("ENOENT"):
        m.readdir(999999)
    assert list(m.listdir(by_name[b"sub"].ino)) == []


def test_readdir_returns_every_entry_that_exists_throughout_despite_inserts(m):
    d, _ = m.mkdir(ROOT, "d")
    old = {f"old{i}".encode() for i in range(600)}
    for n in old:
        m.create(d, n)
    seen, cursor, k = [], 0, 0
    while True:
        entries, cursor = m.readdir(d, cursor, 50)
        seen += [e.name for e in entries]
        for _ in range(40):  # grow the hash under the scan: rehashing happens
            m.create(d, f"new{k}")
            k += 1
        if cursor == 0:
            break
    assert old <= set(seen)


# -- statfs and quotas -----------------------------------------------------------------------------

def test_statfs_reports_usage_and_unlimited(m):
    s = m.statfs()
    assert s.used_inodes == 2 and s.avail_space >= 1 << 50 and s.avail_inodes >= 1 << 32
    m.create(ROOT, "f")
    m.mkdir(ROOT, "d")
    s2 = m.statfs()
    assert s2.used_inodes == 4 and s2.total_space - s2.avail_space == s.total_space - s.avail_space + 8192


def test_capacity_and_inode_quotas(meta_factory, key_prefix):
    m = meta_factory(key_prefix, inodes=4, capacity=6 * 4096)
    s = m.statfs()
    assert s.total_space == 6 * 4096 and s.avail_inodes == 2
    m.create(ROOT, "a")
    m.mkdir(ROOT, "b")
    with raises("ENOSPC"):
        m.create(ROOT, "c")
    with raises("ENOSPC"):
        m.symlink(ROOT, "c", "t")
    assert m.statfs().avail_inodes == 0
    m.unlink(ROOT, "a")
    m.create(ROOT, "c")
    m2 = meta_factory(key_prefix.replace("_w_", "_w_900000"), capacity=3 * 4096)
    m2.create(ROOT, "a")
    with raises("ENOSPC"):
        m2.create(ROOT, "b")
