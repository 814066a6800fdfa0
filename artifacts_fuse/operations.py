"""``ArtifactsOperations``: the FUSE callbacks, a thin adapter over the VFS inode API.

Each callback resolves its path (``InodeCache``) or takes its handle, calls one VFS method with
the ``Caller`` the kernel reported (uid, gid, supplementary groups, pid), and converts the
result. Errors are not handled here: every VFS error carries its errno, and the one mapping in
``glue.ArtifactsFUSE._wrapper`` turns it into ``-errno`` (anything unexpected into EIO, logged once).

Kept by the adapter, because only FUSE needs them: the path cache, directory handles (a listing
read once per ``opendir``/rewind and served by index, so any ``readdir`` offset resumes), and the
mount parameters handed to libfuse in ``init_with_config`` (inode numbers from the VFS,
``hard_remove`` because the VFS keeps unlinked open files itself, ``nullpath_ok`` because handle
operations need no path, kernel cache timeouts from the cache profile, 1 MiB reads and writes).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import itertools
import os
import stat as _stat
import threading
import time
from dataclasses import dataclass, field

import mfusepy

from artifacts_core.types import ROOT_INO, Attr, Caller, Ino
from artifacts_core.vfs import internal
from artifacts_core.vfs.core import VFS
from artifacts_fuse.inodes import InodeCache, split

#: Largest FUSE read/write asked of the kernel: 256 pages, the kernel's default max_pages limit.
MAX_IO = 1 << 20
#: st_blksize reported: stdio and Python size their buffers by it, so one buffer is one FUSE write.
BLKSIZE = MAX_IO
#: A process's supplementary groups change only through setgroups(2); re-reading them from /proc
#: at most once a second per process spares a file read on every call of a non-root caller.
GROUPS_TTL = 1.0
#: Supplementary groups read per caller (NGROUPS_MAX is 65536; real processes have a handful).
MAX_GROUPS = 256
#: Directory handles live in their own number space so they never collide with VFS file handles.
DIR_FH_BASE = 1 << 62
#: The kernel reads this xattr before every write(2) to decide whether to drop file capabilities;
#: answering it here (ENODATA; setting it is ENOTSUP, as JuiceFS does) saves a Redis round trip
#: per write. File capabilities are a host security feature a shared workspace does not carry.
CAPABILITY_XATTR = "security.capability"
#: POSIX ACLs travel as these xattrs; the kernel interprets them only for filesystems that
#: support ACLs, which a workspace does not: refusing them (ENOTSUP) makes cp -a, tar and rsync
#: fall back to chmod instead of storing an ACL that would never change the mode.
ACL_XATTRS = ("system.posix_acl_access", "system.posix_acl_default")
#: Inodes whose last-open change counter is remembered for keep_cache (a few MB at most).
MAX_GENS = 1 << 16
#: "To end of file" for POSIX locks (the kernel's OFFSET_MAX).
LOCK_EOF = (1 << 63) - 1

_lib = mfusepy._libfuse
_lib.fuse_getgroups.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_uint)]
_lib.fuse_getgroups.restype = ctypes.c_int
_lib.fuse_interrupted.restype = ctypes.c_int


class _Interrupt:
    """The ``cancel`` of a blocking lock wait: the wait ends with EINTR once the kernel has sent
    an INTERRUPT for this request (the waiting process got a signal). Checked between retries."""

    def wait(self, timeout: float) -> bool:
        time.sleep(timeout)
        return bool(_lib.fuse_interrupted())


@dataclass
class DirHandle:
    ino: Ino
    parent: Ino
    caller: Caller
    entries: list[tuple[str, int, int]] = field(default_factory=list)


def stat_dict(ino: int, a: Attr) -> dict[str, int]:
    return {"st_ino": ino, "st_mode": a.mode, "st_nlink": a.nlink, "st_uid": a.uid, "st_gid": a.gid,
            "st_size": a.length, "st_rdev": a.rdev, "st_blksize": BLKSIZE, "st_blocks": (a.length + 511) // 512,
            "st_atime": a.atime_ns, "st_mtime": a.mtime_ns, "st_ctime": a.ctime_ns}


class ArtifactsOperations(mfusepy.Operations):
    use_ns = True  # times as integer nanoseconds, both ways

    def __init__(self, vfs: VFS, *, entry_ttl: float, attr_ttl: float, negative_ttl: float = 0.0,
                 on_ready=None) -> None:
        self.vfs = vfs
        self.inodes = InodeCache(vfs, entry_ttl)
        self.ttls = (entry_ttl, attr_ttl, negative_ttl)
        self.on_ready = on_ready
        self._dirs: dict[int, DirHandle] = {}
        self._dir_fhs = itertools.count(DIR_FH_BASE)
        self._groups: dict[int, tuple[float, tuple[int, ...]]] = {}
        self._gens: dict[int, int] = {}
        self._posix_locks: dict[tuple[int, int], int] = {}  # (ino, lock owner) -> handle it locked through

    # -- who is calling ------------------------------------------------------------------------

    def _caller(self) -> Caller:
        uid, gid, pid = mfusepy.fuse_get_context()
        if uid == 0:
            return Caller(0, gid, (), pid)
        hit = self._groups.get(pid)
        now = time.monotonic()
        if hit is None or hit[0] < now:
            buf = (ctypes.c_uint * MAX_GROUPS)()
            n = _lib.fuse_getgroups(MAX_GROUPS, buf)
            hit = (now + GROUPS_TTL, tuple(buf[:n]) if n > 0 else ())
            if len(self._groups) > 4096:  # bounded: forget every process at once
                self._groups.clear()
            self._groups[pid] = hit
        return Caller(uid, gid, hit[1], pid)

    def _ino(self, path: str | None, fh: int | None = None) -> Ino:
        if fh is not None:
            return self.vfs.handle_ino(fh)
        return self.inodes.resolve(path, self._caller())

    # -- mount setup ---------------------------------------------------------------------------

    def init_with_config(self, conn, config) -> None:
        if config is not None:
            config.use_ino = 1
            config.hard_remove = 1
            config.nullpath_ok = 1
            config.entry_timeout, config.attr_timeout, config.negative_timeout = self.ttls
        if conn is not None:
            conn.max_write = MAX_IO
            conn.max_read = MAX_IO  # must equal the max_read mount option, or libfuse refuses INIT
            conn.max_readahead = MAX_IO
        if self.on_ready is not None:
            # The kernel sees the mount only after this returns and libfuse answers INIT.
            threading.Thread(target=self.on_ready, name="artifacts-ready", daemon=True).start()

    # -- attributes ----------------------------------------------------------------------------

    def getattr(self, path, fh=None):
        if fh is not None:
            ino = self.vfs.handle_ino(fh)
            return stat_dict(ino, self.vfs.getattr(ino))
        return stat_dict(*self.inodes.stat(path, self._caller()))

    def access(self, path, amode):
        self.vfs.access(self._ino(path), amode, self._caller())

    def chmod(self, path, mode, fh=None):
        ino, mode = self._ino(path, fh), mode & 0o7777
        try:
            self.vfs.setattr(ino, mode=mode, caller=self._caller())
        except PermissionError:
            # After a write or chown by someone else, the kernel clears setuid/setgid with a chmod
            # on the writer's behalf ("kill-priv"); it already checked the write. Allow exactly that.
            old = self.vfs.getattr(ino).mode & 0o7777
            if old == mode or mode != old & ~(_stat.S_ISUID | _stat.S_ISGID):
                raise
            self.vfs.setattr(ino, mode=mode)

    def chown(self, path, uid, gid, fh=None):
        self.vfs.setattr(self._ino(path, fh), uid=uid, gid=gid, caller=self._caller())

    def truncate(self, path, length, fh=None):
        self.vfs.truncate(self._ino(path, fh), length, caller=self._caller())

    def utimens(self, path, atime, mtime, fh=None):
        self.vfs.setattr(self._ino(path, fh), atime_ns=None if atime == "now" else atime,
                         mtime_ns=None if mtime == "now" else mtime, atime_now=atime == "now",
                         mtime_now=mtime == "now", caller=self._caller())

    def statfs(self, path):
        s = self.vfs.statfs()
        bsize = 4096
        return {"f_bsize": bsize, "f_frsize": bsize, "f_blocks": s.total_space // bsize,
                "f_bfree": s.avail_space // bsize, "f_bavail": s.avail_space // bsize,
                "f_files": s.used_inodes + s.avail_inodes, "f_ffree": s.avail_inodes,
                "f_favail": s.avail_inodes, "f_namemax": 255}

    # -- namespace -----------------------------------------------------------------------------

    def _made(self, parent: Ino, name: str, result) -> int:
        self.inodes.remember(parent, name, result[0])
        return 0

    def mknod(self, path, mode, dev):
        caller = self._caller()
        parent, name = self.inodes.parent(path, caller)
        return self._made(parent, name, self.vfs.mknod(parent, name, mode, dev, caller))

    def mkdir(self, path, mode):
        caller = self._caller()
        parent, name = self.inodes.parent(path, caller)
        return self._made(parent, name, self.vfs.mkdir(parent, name, mode, caller))

    def symlink(self, path, target):
        caller = self._caller()
        parent, name = self.inodes.parent(path, caller)
        return self._made(parent, name, self.vfs.symlink(parent, name, target, caller))

    def link(self, path, existing):
        caller = self._caller()
        ino = self.inodes.resolve(existing, caller)
        parent, name = self.inodes.parent(path, caller)
        self.vfs.link(ino, parent, name, caller)
        self.inodes.remember(parent, name, ino)

    def readlink(self, path):
        return self.vfs.readlink(self._ino(path))

    def unlink(self, path):
        caller = self._caller()
        parent, name = self.inodes.parent(path, caller)
        self.inodes.forget(parent, name)
        self.vfs.unlink(parent, name, caller)

    def rmdir(self, path):
        caller = self._caller()
        parent, name = self.inodes.parent(path, caller)
        self.inodes.forget(parent, name)
        self.vfs.rmdir(parent, name, caller)

    def rename(self, old, new, flags=0):
        caller = self._caller()
        p1, n1 = self.inodes.parent(old, caller)
        p2, n2 = self.inodes.parent(new, caller)
        self.inodes.forget(p1, n1)
        self.inodes.forget(p2, n2)
        self.vfs.rename(p1, n1, p2, n2, flags, caller)

    # -- directories ---------------------------------------------------------------------------

    def opendir(self, path):
        caller = self._caller()
        ino = self.inodes.resolve(path, caller)
        parent = ROOT_INO if path == "/" else self.inodes.resolve(split(path)[0], caller)
        fh = next(self._dir_fhs)
        self._dirs[fh] = DirHandle(ino, parent, caller)
        return fh

    def readdir(self, path, fh):  # bound for libfuse; glue.readdir_fuse_3 calls readdir_from
        return [os.fsdecode(name) for name, *_ in self.readdir_from(fh, 0)]

    def readdir_from(self, fh, offset):
        """Yield ``(name as bytes, ino, mode, next offset)`` from ``offset`` (0 rereads the
        directory, as rewinddir does); names are encoded once, when the listing is read."""
        d = self._dirs[fh]
        if offset == 0:
            entries = {".": (d.ino, _stat.S_IFDIR), "..": (d.parent, _stat.S_IFDIR)}
            cursor = 0
            while True:
                page, cursor = self.vfs.readdir(d.ino, cursor, caller=d.caller)
                for name, ino, typ in page:  # HSCAN may repeat a name across pages: keep one
                    entries[name] = (ino, typ << 12)
                if not cursor:
                    break
            self.inodes.remember_many(d.ino, ((n, i) for n, (i, _) in entries.items()
                                              if n not in (".", "..") and not internal.is_internal(i)))
            d.entries = [(os.fsencode(n), i, m) for n, (i, m) in entries.items()]
        for i in range(offset, len(d.entries)):
            name, ino, mode = d.entries[i]
            yield name, ino, mode, i + 1

    def releasedir(self, path, fh):
        self._dirs.pop(fh, None)

    def fsyncdir(self, path, datasync, fh):
        return 0

    # -- files ---------------------------------------------------------------------------------

    def open(self, path, flags):
        return self.vfs.open(self._ino(path), flags, self._caller())

    def direct_io(self, fh) -> bool:
        """Internal files report size 0 and are generated on open: read them past their size."""
        return internal.is_internal(self.vfs.handle_ino(fh))

    def keep_cache(self, fh) -> bool:
        """Keep the kernel's page cache of this file iff its change counter is the one our
        previous open saw: nothing changed it anywhere since (close-to-open holds); any change,
        ours included, drops the cache once."""
        ino, gen = self.vfs.handle_ino(fh), self.vfs.handle_gen(fh)
        kept = self._gens.get(ino) == gen
        if len(self._gens) >= MAX_GENS:
            self._gens.clear()
        self._gens[ino] = gen
        return kept

    def create(self, path, mode, flags):
        caller = self._caller()
        parent, name = self.inodes.parent(path, caller)
        fh, ino, _ = self.vfs.create(parent, name, mode, flags, caller)
        self.inodes.remember(parent, name, ino)
        return fh

    def read(self, path, size, offset, fh):
        return self.vfs.read(fh, offset, size)

    def write(self, path, data, offset, fh):
        return self.vfs.write(fh, offset, data)

    def flush(self, path, fh):
        self.vfs.flush(fh)

    def fsync(self, path, datasync, fh):
        self.vfs.fsync(fh, bool(datasync))

    def release(self, path, fh, flock_owner=None):
        if flock_owner is not None:
            self.vfs.release_locks(fh, flock_owner, posix=False, flock=True)
        self.vfs.release(fh)

    def fallocate(self, path, mode, offset, size, fh):
        self.vfs.fallocate(self.vfs.handle_ino(fh), mode, offset, size)

    def copy_file_range(self, fh_in, off_in, fh_out, off_out, length, flags):
        return self.vfs.copy_file_range(fh_in, off_in, fh_out, off_out, length)

    # -- locks ---------------------------------------------------------------------------------

    def flock(self, fh, owner, op):
        self.vfs.flock(fh, owner, op, cancel=None if op & fcntl.LOCK_NB else _Interrupt())

    def lock(self, fh, owner, cmd, lk, flush=False):
        start = lk.l_start
        end = LOCK_EOF if lk.l_len == 0 else start + lk.l_len - 1
        if cmd == fcntl.F_GETLK:
            typ, s, e, pid = self.vfs.getlk(fh, owner, lk.l_type, start, end)
            lk.l_type, lk.l_start, lk.l_pid = typ, s, pid
            lk.l_len = 0 if e >= LOCK_EOF else e - s + 1
            return 0
        wait = cmd == fcntl.F_SETLKW
        key = (self.vfs.handle_ino(fh), owner)
        if lk.l_type == fcntl.F_UNLCK and flush:
            # close(2) of any descriptor drops the process's POSIX locks on the file (POSIX), also
            # those taken through another descriptor; free when the owner locked nothing here.
            locked_through = self._posix_locks.pop(key, None)
            if locked_through is not None:
                self.vfs.release_locks(locked_through, owner, posix=True, flock=False)
            return 0
        self.vfs.setlk(fh, owner, lk.l_type, start, end, self._caller().pid, wait,
                       cancel=_Interrupt() if wait else None)
        if lk.l_type != fcntl.F_UNLCK:
            self._posix_locks[key] = fh
        return 0

    # -- xattrs --------------------------------------------------------------------------------

    def getxattr(self, path, name, position=0):
        if name == CAPABILITY_XATTR:  # asked by the kernel before every write; never stored
            raise OSError(errno.ENODATA, "no file capabilities on a workspace")
        if name in ACL_XATTRS:
            raise OSError(errno.ENOTSUP, "POSIX ACLs are not supported on a workspace")
        return self.vfs.getxattr(self._ino(path), name)

    def listxattr(self, path):
        return self.vfs.listxattr(self._ino(path))

    def setxattr(self, path, name, value, options, position=0):
        if name == CAPABILITY_XATTR or name in ACL_XATTRS:
            raise OSError(errno.ENOTSUP, f"{name} is not supported on a workspace")
        self.vfs.setxattr(self._ino(path), name, value, options, self._caller())

    def removexattr(self, path, name):
        self.vfs.removexattr(self._ino(path), name, self._caller())
