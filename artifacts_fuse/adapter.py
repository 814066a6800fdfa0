"""``Adapter``: the low-level FUSE callbacks for names, attributes, directories and xattrs, a thin
layer over the VFS inode API (file data and locks are in ``handles.py``).

The kernel's node id *is* the workspace inode (``ROOT_INO`` is FUSE's root id 1), so hard links
are one kernel inode and every handle operation arrives with its inode. Each callback reads the
caller (uid, gid, supplementary groups, pid) from the request, calls one VFS method and replies;
errors are never handled here: every VFS error carries its errno and the one wrapper in
``lowlevel.Session`` answers it.

Kept here, because only FUSE needs them:

- ``KernelInodes``: how many lookups the kernel holds on each inode (every entry reply adds one,
  ``forget`` takes them back), i.e. exactly the inodes whose attributes or names the kernel may
  have cached; invalidations after a lost change feed walk this table.
- directory handles: a listing read once per ``opendir`` (or rewind) with every entry's
  attributes, served by index so any offset resumes; ``readdirplus`` hands names, inodes and
  attributes to the kernel in one reply.
- mount parameters set in ``init``: 1 MiB reads and writes, readdirplus always (the attributes
  come in the same Redis call as the names, so ``ls -l``, ``find`` and ``git status`` need no
  lookup per name afterwards).
"""

from __future__ import annotations

import ctypes
import errno
import itertools
import os
import stat as _stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from artifacts_core.types import ROOT_INO, Attr, Caller, Ino
from artifacts_core.vfs.core import VFS
from artifacts_fuse import lowlevel as ll

#: Largest FUSE read/write asked of the kernel: 256 pages, the kernel's default max_pages limit.
MAX_IO = 1 << 20
#: st_blksize reported: stdio and Python size their buffers by it, so one buffer is one FUSE write.
BLKSIZE = MAX_IO
#: A process's supplementary groups change only through setgroups(2); re-reading them from /proc
#: at most once a second per process spares a file read on every call of a non-root caller.
GROUPS_TTL = 1.0
#: Supplementary groups read per caller (NGROUPS_MAX is 65536; real processes have a handful).
MAX_GROUPS = 256
#: Processes whose groups are remembered before the table is simply cleared.
MAX_GROUP_ENTRIES = 4096
#: Host security labels a shared workspace does not carry, answered here without a Redis round
#: trip (reading: ENODATA; setting: ENOTSUP, as JuiceFS does). The kernel reads
#: ``security.capability`` before every write(2) to decide whether to drop file capabilities, and
#: ``ls -l`` reads ``security.selinux`` of every file it lists (SELinux labels FUSE mounts by
#: policy, not per file).
HOST_XATTRS = ("security.capability", "security.selinux")
#: Of those, the ones a workspace does not support at all: reading is ENOTSUP, not ENODATA, which
#: `ls -l` remembers per device instead of asking (an upcall) for every file it lists.
UNSUPPORTED_XATTRS = ("security.selinux",)
#: POSIX ACLs travel as these xattrs; the kernel interprets them only for filesystems that
#: support ACLs, which a workspace does not: refusing them (ENOTSUP) makes cp -a, tar and rsync
#: fall back to chmod instead of storing an ACL that would never change the mode.
ACL_XATTRS = ("system.posix_acl_access", "system.posix_acl_default")
#: (uid_t)-1 / (gid_t)-1 in a chown: leave unchanged.
NO_ID = 0xFFFFFFFF
#: The longest the kernel may trust a name or attributes while no change feed tells this mount
#: what other hosts change (no feed, or its subscription lost): the bound the mount had before
#: it had one, so another host's change shows within a second.
UNFED_TTL = 1.0
#: The mountpoint's own attributes are never trusted longer than this, change feed or not: a
#: ``stat`` of the mountpoint is how users and ``mount`` tell a dead mount (its process killed:
#: ENOTCONN) from a live one, and the kernel answers it from its cache without asking.
ROOT_ATTR_TTL = UNFED_TTL
#: Directories whose last full listing this mount remembers (a bound, not a cache size to tune:
#: forgetting one only costs that directory's next listing a readdirplus).
MAX_LISTED = 65536


def attr_values(ino: int, a) -> tuple:
    """The ``struct stat`` fields of an attribute record, in ``lowlevel`` packing order."""
    return ll.stat_values(ino, a.mode, a.nlink, a.uid, a.gid, a.rdev, a.length, BLKSIZE,
                          a.atime_ns, a.mtime_ns, a.ctime_ns)


class KernelInodes:
    """What the kernel holds: lookup counts per inode (FUSE's ``nlookup``) and the names it was
    given for each, so that everything it may have cached can be invalidated after a lost change
    feed. A name is dropped with its inode (a dentry pins its inode, so an inode the kernel has
    forgotten has no cached name left); names that went away by other means are kept until then,
    and invalidating them is a harmless no-op."""

    #: Names remembered per inode; more hard links than this are rare, and a name left out is
    #: still dropped by its entry time-out.
    MAX_NAMES = 16

    def __init__(self) -> None:
        self._counts: dict[int, int] = {}
        self._names: dict[int, set[tuple[int, bytes]]] = {}
        self._lock = threading.Lock()

    def add(self, ino: int, parent: int, name: bytes) -> None:
        with self._lock:
            self._counts[ino] = self._counts.get(ino, 0) + 1
            names = self._names.get(ino)
            if names is None:
                self._names[ino] = {(parent, name)}
            elif len(names) < self.MAX_NAMES:
                names.add((parent, name))

    def add_many(self, parent: int, entries: list[tuple[int, bytes]]) -> None:
        with self._lock:
            counts, all_names = self._counts, self._names
            for ino, name in entries:
                counts[ino] = counts.get(ino, 0) + 1
                names = all_names.get(ino)
                if names is None:
                    all_names[ino] = {(parent, name)}
                elif len(names) < self.MAX_NAMES:
                    names.add((parent, name))

    def forget(self, ino: int, n: int) -> None:
        with self._lock:
            left = self._counts.get(ino, 0) - n
            if left > 0:
                self._counts[ino] = left
            else:
                self._counts.pop(ino, None)
                self._names.pop(ino, None)

    def snapshot(self) -> tuple[list[int], list[tuple[int, bytes]]]:
        """Every inode the kernel knows, and every ``(parent, name)`` it was given."""
        with self._lock:
            return list(self._counts), [pn for names in self._names.values() for pn in names]

    def __contains__(self, ino: int) -> bool:
        return ino in self._counts


@dataclass
class DirHandle:
    ino: Ino
    caller: Caller
    entries: list[tuple[bytes, int, Attr | None]] = field(default_factory=list)  # (name, ino, attr)


class Adapter:
    def __init__(self, vfs: VFS, *, entry_ttl: float, attr_ttl: float,
                 on_ready: Callable[[], None] | None = None) -> None:
        self.vfs = vfs
        self.entry_ttl = entry_ttl
        self.attr_ttl = attr_ttl
        self.changes = vfs.changes  # the change feed: its subscription decides the time-outs
        self.on_ready = on_ready
        self.known = KernelInodes()
        self._dirs: dict[int, DirHandle] = {}
        self._dir_fhs = itertools.count(1)
        self._listed: dict[int, float] = {}  # dir ino -> until when the kernel holds its children's attrs
        self._groups: dict[int, tuple[float, tuple[int, ...]]] = {}

    # -- replies and callers ---------------------------------------------------------------------

    def caller(self, req) -> Caller:
        uid, gid, pid = ll.caller_ids(req)
        if uid == 0:
            return Caller(0, gid, (), pid)
        hit = self._groups.get(pid)
        now = time.monotonic()
        if hit is None or hit[0] < now:
            hit = (now + GROUPS_TTL, ll.groups(req, MAX_GROUPS))
            if len(self._groups) >= MAX_GROUP_ENTRIES:
                self._groups.clear()
            self._groups[pid] = hit
        return Caller(uid, gid, hit[1], pid)

    def ttls(self) -> tuple[float, float]:
        """(attribute, entry) time-outs for a reply now: the profile's while the change feed is
        subscribed (another host's change then invalidates the kernel's copy within
        milliseconds), at most ``UNFED_TTL`` otherwise."""
        if self.changes.subscribed:
            return self.attr_ttl, self.entry_ttl
        return min(self.attr_ttl, UNFED_TTL), min(self.entry_ttl, UNFED_TTL)

    def entry(self, ino: int, attr) -> ll.entry_param:
        e = ll.entry_param()
        ll.ENTRY_PACK.pack_into(e, 0, ino, 0, *attr_values(ino, attr), *self.ttls())
        return e

    def reply_entry(self, req, ino: int, attr, parent: int, name: bytes) -> None:
        """Answer a lookup-like request; the kernel now holds one more lookup of ``ino``."""
        if ll.lib.fuse_reply_entry(req, self.entry(ino, attr)) == 0:
            self.known.add(ino, parent, name)

    def reply_attr(self, req, ino: int, attr) -> None:
        st = ll.stat_t()
        ll.STAT_PACK.pack_into(st, 0, *attr_values(ino, attr))
        ttl = self.ttls()[0]
        ll.lib.fuse_reply_attr(req, st, min(ttl, ROOT_ATTR_TTL) if ino == ROOT_INO else ttl)

    # -- mount setup -----------------------------------------------------------------------------

    def init(self, userdata, conn) -> None:
        c = conn.contents
        c.max_write = MAX_IO
        c.max_read = MAX_IO  # must equal the max_read mount option, or libfuse refuses INIT
        c.max_readahead = MAX_IO
        if c.capable & ll.CAP_READDIRPLUS:
            c.want |= ll.CAP_READDIRPLUS
            c.want &= ~ll.CAP_READDIRPLUS_AUTO
        # The kernel clears setuid/setgid itself (a chmod on the writer's behalf, see setattr).
        c.want &= ~ll.CAP_HANDLE_KILLPRIV
        if self.on_ready is not None:
            # The kernel sees the mount only after this returns and libfuse answers INIT.
            threading.Thread(target=self.on_ready, name="artifacts-ready", daemon=True).start()

    # -- names and attributes --------------------------------------------------------------------

    def lookup(self, req, parent, name) -> None:
        ino, attr = self.vfs.lookup(parent, os.fsdecode(name), self.caller(req))
        self.reply_entry(req, ino, attr, parent, name)

    def forget(self, req, ino, nlookup) -> None:
        self.known.forget(ino, nlookup)

    def forget_multi(self, req, count, forgets) -> None:
        for i in range(count):
            f = forgets[i]
            self.known.forget(f.ino, f.nlookup)

    def getattr(self, req, ino, fi) -> None:
        self.reply_attr(req, ino, self.vfs.getattr(ino))

    def setattr(self, req, ino, attr, to_set, fi) -> None:
        a = attr.contents
        caller = self.caller(req)
        result = None
        if to_set & ll.SET_ATTR_SIZE:
            result = self.vfs.truncate(ino, a.st_size, caller=caller)
        if to_set & ll.SET_ATTR_MODE:
            result = self._chmod(ino, a.st_mode & 0o7777, caller)
        if to_set & (ll.SET_ATTR_UID | ll.SET_ATTR_GID):
            uid = a.st_uid if to_set & ll.SET_ATTR_UID and a.st_uid != NO_ID else None
            gid = a.st_gid if to_set & ll.SET_ATTR_GID and a.st_gid != NO_ID else None
            result = self.vfs.setattr(ino, uid=uid, gid=gid, caller=caller)
        times = to_set & (ll.SET_ATTR_ATIME | ll.SET_ATTR_MTIME | ll.SET_ATTR_ATIME_NOW | ll.SET_ATTR_MTIME_NOW)
        if times:
            atime_now, mtime_now = bool(to_set & ll.SET_ATTR_ATIME_NOW), bool(to_set & ll.SET_ATTR_MTIME_NOW)
            at = a.st_atim.tv_sec * 1_000_000_000 + a.st_atim.tv_nsec
            mt = a.st_mtim.tv_sec * 1_000_000_000 + a.st_mtim.tv_nsec
            result = self.vfs.setattr(
                ino, atime_ns=at if to_set & ll.SET_ATTR_ATIME and not atime_now else None,
                mtime_ns=mt if to_set & ll.SET_ATTR_MTIME and not mtime_now else None,
                atime_now=atime_now, mtime_now=mtime_now, caller=caller)
        self.reply_attr(req, ino, result if result is not None else self.vfs.getattr(ino))

    def _chmod(self, ino: Ino, mode: int, caller: Caller):
        try:
            return self.vfs.setattr(ino, mode=mode, caller=caller)
        except PermissionError:
            # After a write or chown by someone else, the kernel clears setuid/setgid with a chmod
            # on the writer's behalf ("kill-priv"); it already checked the write. Allow exactly that.
            old = self.vfs.getattr(ino).mode & 0o7777
            if old == mode or mode != old & ~(_stat.S_ISUID | _stat.S_ISGID):
                raise
            return self.vfs.setattr(ino, mode=mode)

    def access(self, req, ino, mask) -> None:
        self.vfs.access(ino, mask, self.caller(req))
        ll.reply_err(req, 0)

    def statfs(self, req, ino) -> None:
        s = self.vfs.statfs()
        bsize = 4096
        v = ll.statvfs_t(f_bsize=bsize, f_frsize=bsize, f_blocks=s.total_space // bsize,
                         f_bfree=s.avail_space // bsize, f_bavail=s.avail_space // bsize,
                         f_files=s.used_inodes + s.avail_inodes, f_ffree=s.avail_inodes,
                         f_favail=s.avail_inodes, f_namemax=255)
        ll.lib.fuse_reply_statfs(req, v)

    def readlink(self, req, ino) -> None:
        ll.lib.fuse_reply_readlink(req, os.fsencode(self.vfs.readlink(ino)))

    # -- namespace -------------------------------------------------------------------------------

    def mknod(self, req, parent, name, mode, rdev) -> None:
        ino, attr = self.vfs.mknod(parent, os.fsdecode(name), mode, rdev, self.caller(req))
        self.reply_entry(req, ino, attr, parent, name)

    def mkdir(self, req, parent, name, mode) -> None:
        ino, attr = self.vfs.mkdir(parent, os.fsdecode(name), mode, self.caller(req))
        self.reply_entry(req, ino, attr, parent, name)

    def symlink(self, req, target, parent, name) -> None:
        ino, attr = self.vfs.symlink(parent, os.fsdecode(name), os.fsdecode(target), self.caller(req))
        self.reply_entry(req, ino, attr, parent, name)

    def link(self, req, ino, parent, name) -> None:
        attr = self.vfs.link(ino, parent, os.fsdecode(name), self.caller(req))
        self.reply_entry(req, ino, attr, parent, name)

    def unlink(self, req, parent, name) -> None:
        self.vfs.unlink(parent, os.fsdecode(name), self.caller(req))
        ll.reply_err(req, 0)

    def rmdir(self, req, parent, name) -> None:
        self.vfs.rmdir(parent, os.fsdecode(name), self.caller(req))
        ll.reply_err(req, 0)

    def rename(self, req, parent, name, new_parent, new_name, flags) -> None:
        self.vfs.rename(parent, os.fsdecode(name), new_parent, os.fsdecode(new_name), flags, self.caller(req))
        ll.reply_err(req, 0)

    # -- directories -----------------------------------------------------------------------------

    def opendir(self, req, ino, fip) -> None:
        fh = next(self._dir_fhs)
        self._dirs[fh] = DirHandle(ino, self.caller(req))
        fi = fip.contents
        fi.fh = fh
        # The kernel keeps listings in the directory's page cache and reuses one only while the
        # directory's mtime and change version are those it was read at: any change through this
        # mount, or a change elsewhere once the attributes are refreshed (or invalidated),
        # rereads it. A cached listing carries names only, so it is kept only while the
        # attributes and entries its readdirplus handed out are still within their time-outs:
        # after that, `ls -l` over a cached listing would cost a lookup (an upcall and a Redis
        # round trip) per name, where reading the listing again costs one call per 1,000 names.
        fi.cache_readdir = 1
        fi.keep_cache = int(self._listed.get(ino, 0.0) > time.monotonic())
        ll.lib.fuse_reply_open(req, fip)

    def _listing(self, fh: int, offset: int) -> list[tuple[bytes, int, Attr | None]]:
        """The handle's entries with attributes; offset 0 (re)reads the directory, as rewinddir."""
        d = self._dirs[fh]
        if offset == 0:
            own = self.vfs.getattr(d.ino)
            parent = own.parent if d.ino != ROOT_INO and own.parent else d.ino
            entries: dict[str, tuple[int, Attr | None]] = {".": (d.ino, own), "..": (parent, None)}
            cursor = 0
            while True:
                page, cursor = self.vfs.readdir(d.ino, cursor, plus=True, caller=d.caller)
                for name, ino, attr in page:  # HSCAN may repeat a name across pages: keep one
                    entries[name] = (ino, attr)
                if not cursor:
                    break
            d.entries = [(os.fsencode(n), i, a) for n, (i, a) in entries.items()]
        return d.entries

    def readdirplus(self, req, ino, size, offset, fi) -> None:
        entries = self._listing(fi.contents.fh, offset)
        buf = ctypes.create_string_buffer(size)
        base = ctypes.addressof(buf)
        e = ll.entry_param()
        pack = ll.ENTRY_PACK.pack_into
        add = ll.lib.fuse_add_direntry_plus
        attr_ttl, entry_ttl = self.ttls()
        if offset == 0:
            if len(self._listed) >= MAX_LISTED:
                self._listed.clear()
            self._listed[ino] = time.monotonic() + min(attr_ttl, entry_ttl)
        pos = 0
        added: list[tuple[int, bytes]] = []
        for i in range(offset, len(entries)):
            name, child, attr = entries[i]
            if attr is None:  # "..": the kernel takes only its inode and type
                pack(e, 0, child, 0, *ll.stat_values(child, _stat.S_IFDIR, 0, 0, 0, 0, 0, 0, 0, 0, 0), 0.0, 0.0)
            else:
                pack(e, 0, child, 0, *attr_values(child, attr), attr_ttl, entry_ttl)
            n = add(req, base + pos, size - pos, name, e, i + 1)
            if n > size - pos:
                break
            pos += n
            if name not in (b".", b".."):
                added.append((child, name))
        if ll.lib.fuse_reply_buf(req, buf, pos) == 0 and added:
            self.known.add_many(ino, added)

    def readdir(self, req, ino, size, offset, fi) -> None:
        entries = self._listing(fi.contents.fh, offset)
        buf = ctypes.create_string_buffer(size)
        base = ctypes.addressof(buf)
        st = ll.stat_t()
        pos = 0
        for i in range(offset, len(entries)):
            name, child, attr = entries[i]
            st.st_ino = child
            st.st_mode = attr.mode if attr is not None else _stat.S_IFDIR
            n = ll.lib.fuse_add_direntry(req, base + pos, size - pos, name, st, i + 1)
            if n > size - pos:
                break
            pos += n
        ll.lib.fuse_reply_buf(req, buf, pos)

    def releasedir(self, req, ino, fi) -> None:
        self._dirs.pop(fi.contents.fh, None)
        ll.reply_err(req, 0)

    def fsyncdir(self, req, ino, datasync, fi) -> None:
        ll.reply_err(req, 0)

    # -- xattrs ----------------------------------------------------------------------------------

    def getxattr(self, req, ino, name, size) -> None:
        key = os.fsdecode(name)
        if key in UNSUPPORTED_XATTRS:  # asked by ls -l (once per device when refused so)
            raise OSError(errno.ENOTSUP, f"{key} is not supported on a workspace")
        if key in HOST_XATTRS:  # asked before every write; never stored
            raise OSError(errno.ENODATA, f"no {key} on a workspace")
        if key in ACL_XATTRS:
            raise OSError(errno.ENOTSUP, "POSIX ACLs are not supported on a workspace")
        self._reply_sized(req, self.vfs.getxattr(ino, key), size)

    def listxattr(self, req, ino, size) -> None:
        names = b"".join(os.fsencode(n) + b"\0" for n in self.vfs.listxattr(ino))
        self._reply_sized(req, names, size)

    @staticmethod
    def _reply_sized(req, value: bytes, size: int) -> None:
        if size == 0:
            ll.lib.fuse_reply_xattr(req, len(value))
        elif len(value) > size:
            ll.reply_err(req, errno.ERANGE)
        else:
            ll.reply_buf(req, value)

    def setxattr(self, req, ino, name, value, size, flags) -> None:
        key = os.fsdecode(name)
        if key in HOST_XATTRS or key in ACL_XATTRS:
            raise OSError(errno.ENOTSUP, f"{key} is not supported on a workspace")
        self.vfs.setxattr(ino, key, ctypes.string_at(value, size), flags, self.caller(req))
        ll.reply_err(req, 0)

    def removexattr(self, req, ino, name) -> None:
        self.vfs.removexattr(ino, os.fsdecode(name), self.caller(req))
        ll.reply_err(req, 0)


__all__ = ["MAX_IO", "Adapter", "KernelInodes"]
