"""The FUSE adapter on a real mount: each test checks a sentence of docs/SEMANTICS.md with plain
``os`` calls (one mount shared by the module; every test works in its own directory)."""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import stat
import time
from pathlib import Path

import pytest
from fuse_helpers import mount_entry, mounted, new_workspace

pytestmark = [pytest.mark.redis, pytest.mark.s3]

_libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2


def renameat2(src: str, dst: str, flags: int) -> None:
    if _libc.renameat2(AT_FDCWD, src.encode(), AT_FDCWD, dst.encode(), flags) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


@pytest.fixture(scope="module")
def mnt(ws, tmp_path_factory):
    mp = str(tmp_path_factory.mktemp("mnt"))
    with mounted(ws, mp) as m:
        yield m


def test_mount_table_shows_the_workspace_and_options(mnt, ws):
    entry = mount_entry(mnt.mountpoint)
    assert entry["fstype"] == "fuse.artifacts"
    assert entry["source"] == f"Artifacts:{ws.workspace}"
    line = [x for x in Path("/proc/self/mountinfo").read_text().splitlines() if f" {mnt.mountpoint} " in x][-1]
    assert "max_read=1048576" in line
    super_opts = line
    assert "default_permissions" in super_opts and "allow_other" in super_opts


def test_internal_files_at_the_root(mnt, ws):
    names = os.listdir(mnt.mountpoint)
    assert {".stats", ".config", ".accesslog", ".trash"} <= set(names)
    with open(os.path.join(mnt.mountpoint, ".stats")) as f:
        stats = f.read()
    assert "artifacts_ops_total" in stats
    with open(os.path.join(mnt.mountpoint, ".config")) as f:
        config = f.read()
    assert ws.workspace in config and ws.env["ARTIFACTS_S3_SECRET_ACCESS_KEY"] not in config
    with pytest.raises(PermissionError):
        os.unlink(os.path.join(mnt.mountpoint, ".stats"))


def test_no_secret_in_process_listing_or_log(mnt, ws):
    secret = ws.env["ARTIFACTS_S3_SECRET_ACCESS_KEY"].encode()
    with open(f"/proc/{mnt.pid}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[:4] == [b"artifacts", b"mount", ws.workspace.encode(),
                                            mnt.mountpoint.encode()]
    children = Path(f"/proc/{mnt.pid}/task/{mnt.pid}/children").read_text().split()
    assert children, "the supervisor has a FUSE-serving child"
    for pid in [mnt.pid, *map(int, children)]:
        for what in ("cmdline", "environ"):
            with open(f"/proc/{pid}/{what}", "rb") as f:
                assert secret not in f.read(), f"secret in /proc/{pid}/{what}"
    st = os.stat(mnt.log_path)
    assert stat.S_IMODE(st.st_mode) == 0o600
    with open(mnt.log_path, "rb") as f:
        assert secret not in f.read()


def test_write_read_and_inode_numbers(d):
    p = os.path.join(d, "f")
    with open(p, "wb") as f:
        f.write(b"hello world")
    st = os.stat(p)
    assert st.st_size == 11 and stat.S_ISREG(st.st_mode)
    assert {e.name: e.inode() for e in os.scandir(d)}["f"] == st.st_ino
    with open(p, "rb") as f:
        assert f.read() == b"hello world"


def test_rename_flags_reach_the_vfs(d):
    a, b = os.path.join(d, "a"), os.path.join(d, "b")
    for p, data in ((a, b"A"), (b, b"B")):
        with open(p, "wb") as f:
            f.write(data)
    with pytest.raises(FileExistsError):
        renameat2(a, b, RENAME_NOREPLACE)
    renameat2(a, b, RENAME_EXCHANGE)
    assert Path(a).read_bytes() == b"B" and Path(b).read_bytes() == b"A"
    renameat2(a, os.path.join(d, "c"), RENAME_NOREPLACE)
    assert sorted(os.listdir(d)) == ["b", "c"]


def test_utimens_now_omit_and_exact_nanoseconds(d):
    p = os.path.join(d, "t")
    open(p, "wb").close()
    os.utime(p, ns=(1_000_000_001, 2_000_000_002))
    st = os.stat(p)
    assert (st.st_atime_ns, st.st_mtime_ns) == (1_000_000_001, 2_000_000_002)
    UTIME_NOW, UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2

    class timespec(ctypes.Structure):
        _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]

    times = (timespec * 2)(timespec(0, UTIME_OMIT), timespec(0, UTIME_NOW))
    assert _libc.utimensat(AT_FDCWD, p.encode(), times, 0) == 0
    st2 = os.stat(p)
    assert st2.st_atime_ns == 1_000_000_001  # omitted: unchanged
    assert st2.st_mtime_ns > 2_000_000_002 * 100  # now: a current time, not 2^30-1 ns


def test_handle_operations_work_on_an_unlinked_open_file(d):
    p = os.path.join(d, "gone")
    fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.write(fd, b"x" * 100)
        os.unlink(p)
        assert not os.path.exists(p)
        os.ftruncate(fd, 10)
        assert os.fstat(fd).st_size == 10
        # The kernel names the inode, not a path: attribute changes work too.
        os.fchmod(fd, 0o600)
        os.fchown(fd, 1000, 1000)
        os.utime(fd, ns=(5_000_000_000, 6_000_000_000))
        os.setxattr(fd, "user.k", b"v")
        st = os.fstat(fd)
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o600, 1000, 1000)
        assert st.st_mtime_ns == 6_000_000_000 and os.getxattr(fd, "user.k") == b"v"
        os.lseek(fd, 0, os.SEEK_SET)
        assert os.read(fd, 100) == b"x" * 10
    finally:
        os.close(fd)


def test_hard_links_are_one_inode_for_the_kernel(d):
    a, b = os.path.join(d, "a"), os.path.join(d, "b")
    with open(a, "wb") as f:
        f.write(b"data")
    os.stat(a)  # cached by the kernel before the link
    os.link(a, b)
    assert os.lstat(a).st_nlink == 2 and os.lstat(b).st_nlink == 2
    os.chmod(b, 0o600)
    os.chown(b, 1000, 1000)
    st = os.lstat(a)  # at once, not after the attribute time-out
    assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o600, 1000)
    os.unlink(b)
    assert os.lstat(a).st_nlink == 1


def test_links_symlinks_fifos_and_xattrs(d):
    p = os.path.join(d, "f")
    with open(p, "wb") as f:
        f.write(b"data")
    os.link(p, os.path.join(d, "hard"))
    assert os.stat(p).st_nlink == 2 and os.stat(os.path.join(d, "hard")).st_ino == os.stat(p).st_ino
    os.symlink("/absolute/target", os.path.join(d, "abs"))
    os.symlink("f", os.path.join(d, "rel"))
    assert os.readlink(os.path.join(d, "abs")) == "/absolute/target"
    assert Path(os.path.join(d, "rel")).read_bytes() == b"data"
    os.mkfifo(os.path.join(d, "fifo"))
    assert stat.S_ISFIFO(os.lstat(os.path.join(d, "fifo")).st_mode)
    os.setxattr(p, "user.k", b"v1")
    with pytest.raises(FileExistsError):
        os.setxattr(p, "user.k", b"v2", os.XATTR_CREATE)
    assert os.getxattr(p, "user.k") == b"v1" and "user.k" in os.listxattr(p)
    os.removexattr(p, "user.k")
    with pytest.raises(OSError) as e:
        os.getxattr(p, "user.k")
    assert e.value.errno == errno.ENODATA


def test_errors_carry_their_errno(d):
    with pytest.raises(FileNotFoundError):
        os.stat(os.path.join(d, "missing"))
    os.mkdir(os.path.join(d, "sub"))
    open(os.path.join(d, "sub", "x"), "wb").close()
    with pytest.raises(OSError) as e:
        os.rmdir(os.path.join(d, "sub"))
    assert e.value.errno == errno.ENOTEMPTY
    with pytest.raises(FileExistsError):
        os.mkdir(os.path.join(d, "sub"))
    with pytest.raises(NotADirectoryError):
        os.listdir(os.path.join(d, "sub", "x"))
    with pytest.raises(OSError) as e:
        os.open(os.path.join(d, "n" * 256), os.O_CREAT | os.O_WRONLY)
    assert e.value.errno == errno.ENAMETOOLONG


def test_large_directory_lists_every_entry_once(d):
    names = {f"file-{i:04d}" for i in range(1500)}  # more than one readdir page and getdents buffer
    for n in names:
        open(os.path.join(d, n), "wb").close()
    listed = os.listdir(d)
    assert len(listed) == len(names) and set(listed) == names


def test_statvfs(mnt):
    sv = os.statvfs(mnt.mountpoint)
    assert sv.f_bsize == 4096 and sv.f_namemax == 255 and sv.f_bavail > 0


def test_unexpected_exception_becomes_eio_and_is_logged_once(caplog, monkeypatch):
    from artifacts_fuse import lowlevel

    answers = []
    monkeypatch.setattr(lowlevel.lib, "fuse_reply_err", lambda req, err: answers.append(err))
    session = object.__new__(lowlevel.Session)

    def getattr(req, ino, fi):
        raise ValueError("bug")

    def mknod(req, *args):
        raise FileExistsError(errno.EEXIST, "exists")

    with caplog.at_level(logging.ERROR, logger="artifacts.fuse"):
        session._wrap("getattr", getattr)(None, 1, None)
        session._wrap("mknod", mknod)(None, 1, b"x", 0, 0)
    assert answers == [errno.EIO, errno.EEXIST]
    records = [r for r in caplog.records if r.name == "artifacts.fuse"]
    assert len(records) == 1 and records[0].exc_info[0] is ValueError


def test_fallocate_and_copy_file_range(d):
    p, q = os.path.join(d, "alloc"), os.path.join(d, "copy")
    fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.posix_fallocate(fd, 0, 1 << 20)
        assert os.fstat(fd).st_size == 1 << 20
        os.pwrite(fd, b"abc", 100)
        out = os.open(q, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            assert os.copy_file_range(fd, out, 1 << 20, 0, 0) == 1 << 20
        finally:
            os.close(out)
    finally:
        os.close(fd)
    with open(q, "rb") as f:
        data = f.read()
    assert len(data) == 1 << 20 and data[100:103] == b"abc" and data[:100] == bytes(100)


def test_accesslog_streams_operations_but_not_its_own_reads(mnt, d):
    fd = os.open(os.path.join(mnt.mountpoint, ".accesslog"), os.O_RDONLY)
    try:
        os.mkdir(os.path.join(d, "logged"))
        seen = b""
        for _ in range(50):  # each read returns what is there, waiting up to 1 s for a first line
            seen += os.read(fd, 65536)
            if b"mkdir" in seen:
                break
        assert b"mkdir" in seen and b"logged" in seen
        rest = os.read(fd, 65536)  # nothing happened since: no lines about reading this file
        assert b" read (" not in rest
    finally:
        os.close(fd)


def test_link_unlink_and_rename_change_the_inode_ctime(d):
    a = os.path.join(d, "a")
    open(a, "wb").close()
    os.utime(a, ns=(10**9, 10**9))

    def ctime_moves(change) -> None:
        before = os.lstat(a if os.path.exists(a) else os.path.join(d, "c")).st_ctime_ns
        change()
        after = os.lstat(a if os.path.exists(a) else os.path.join(d, "c")).st_ctime_ns
        assert after > before, change

    ctime_moves(lambda: os.link(a, os.path.join(d, "b")))
    ctime_moves(lambda: os.unlink(os.path.join(d, "b")))
    ctime_moves(lambda: os.rename(a, os.path.join(d, "c")))
    assert os.lstat(os.path.join(d, "c")).st_mtime_ns == 10**9  # mtime stays


def test_a_cached_listing_follows_every_change_made_through_the_mount(d):
    names = {f"n{i}" for i in range(50)}
    for n in names:
        open(os.path.join(d, n), "wb").close()
    assert set(os.listdir(d)) == names
    assert set(os.listdir(d)) == names  # served from the kernel's cache
    open(os.path.join(d, "added"), "wb").close()
    os.unlink(os.path.join(d, "n0"))
    os.rename(os.path.join(d, "n1"), os.path.join(d, "moved"))
    os.utime(d, ns=(10**9, 10**9))
    assert set(os.listdir(d)) == names - {"n0", "n1"} | {"added", "moved"}


def test_host_security_xattrs_are_not_stored(d):
    p = os.path.join(d, "f")
    open(p, "wb").close()
    with pytest.raises(OSError) as e:
        os.getxattr(p, "security.capability")
    assert e.value.errno == errno.ENODATA
    # Labels are unsupported, not merely absent: `ls -l` then stops asking for each file's label
    # (coreutils remembers a device without them), one upcall per listing instead of per name.
    with pytest.raises(OSError) as e:
        os.getxattr(p, "security.selinux")
    assert e.value.errno == errno.ENOTSUP
    with pytest.raises(OSError) as e:  # (the kernel checks a capability's format before we see it)
        os.setxattr(p, "security.selinux", b"system_u:object_r:tmp_t:s0")
    assert e.value.errno == errno.ENOTSUP
    os.setxattr(p, "security.other", b"kept")  # other security.* names are stored
    assert os.getxattr(p, "security.other") == b"kept"


def _ops(mp: str, *names: str) -> int:
    """The mount's count of the named VFS operations so far (its ``.stats``)."""
    with open(os.path.join(mp, ".stats")) as f:
        stats = f.read()
    total = 0
    for name in names:
        prefix = f'artifacts_ops_total{{op="{name}"}} '
        total += sum(int(float(line[len(prefix):])) for line in stats.splitlines() if line.startswith(prefix))
    return total


def test_a_long_listing_after_the_time_outs_is_one_listing_not_a_lookup_per_name(
        redis_url, s3_server, tmp_path_factory):
    """``ls -l`` of a directory listed before, once the kernel's time-outs have passed: the
    listing is read again with its attributes (readdirplus) rather than served from the kernel's
    cached listing, which would leave one lookup upcall and Redis round trip per name. (Its own
    mount with short time-outs: the module's mount keeps attributes for a minute.)"""
    ws = new_workspace(redis_url, s3_server, str(tmp_path_factory.mktemp("cache")), attr_ttl=0.3,
                       entry_ttl=0.3)
    with mounted(ws, str(tmp_path_factory.mktemp("mnt"))) as m:
        d = os.path.join(m.mountpoint, "d")
        os.mkdir(d)
        for i in range(40):
            Path(d, f"f{i}").write_bytes(b"x")
        for name in os.listdir(d):
            os.lstat(os.path.join(d, name))
        time.sleep(0.6)  # past the time-outs
        before = _ops(m.mountpoint, "lookup", "getattr")
        for name in os.listdir(d):
            os.lstat(os.path.join(d, name))
        assert _ops(m.mountpoint, "lookup", "getattr") - before < 10


def _round_trips(mnt) -> int:
    with open(os.path.join(mnt.mountpoint, ".stats")) as f:
        for line in f:
            if line.startswith("artifacts_redis_round_trips "):
                return int(float(line.split()[1]))
    raise AssertionError("artifacts_redis_round_trips is missing from .stats")


def _cost(mnt, prepare, op) -> int:
    """Redis round trips of ``op(i)`` on the mount, after ``prepare()``: the fewest of a few tries
    (a background job's call only ever adds), less what reading ``.stats`` itself costs."""
    reads, ops = [], []
    for i in range(3):
        prepare()
        a = _round_trips(mnt)
        b = _round_trips(mnt)
        op(i)
        c = _round_trips(mnt)
        reads.append(b - a)
        ops.append(c - b)
    # a background call only ever adds, to either difference: the fewest of each is the cost
    return min(ops) - min(reads)


def test_rename_and_rmdir_through_the_mount_are_one_function_call(mnt, d):
    """The adapter's rename, rmdir and unlink are one Redis call each. What the kernel adds: it always
    looks a rename's target up again (fuse_dentry_revalidate forces LOOKUP_RENAME_TARGET), and
    it re-reads a directory's attributes after a namespace change in it (a reply carries none),
    which ``prepare`` does here before each measured call."""
    for i in range(3):
        for n in (f"x{i}", f"y{i}"):
            open(os.path.join(d, n), "wb").close()
        os.mkdir(os.path.join(d, f"e{i}"))

    def warm() -> None:
        os.stat(d)
        for n in os.listdir(d):
            os.stat(os.path.join(d, n))  # every name and attribute is in the kernel's caches

    assert _cost(mnt, warm, lambda i: os.rmdir(os.path.join(d, f"e{i}"))) == 1
    # the target's lookup + the rename, over an existing name or to a new one
    assert _cost(mnt, warm, lambda i: os.rename(os.path.join(d, f"x{i}"), os.path.join(d, f"y{i}"))) == 2
    assert _cost(mnt, warm, lambda i: os.rename(os.path.join(d, f"y{i}"), os.path.join(d, f"z{i}"))) == 2
    assert _cost(mnt, warm, lambda i: os.unlink(os.path.join(d, f"z{i}"))) == 1
