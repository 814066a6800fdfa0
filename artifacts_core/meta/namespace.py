"""The namespace concern of the metadata engine: names, attributes, links, directories, xattrs.

Every operation is ONE round trip: mutations are one ``FCALL`` of a function in
``lua/10_namespace.lua`` … ``lua/14_attrs.lua`` (atomic, every check before the first write);
lookup, readlink, readdir (a page with or without attributes), getxattr and statfs are one
``FCALL_RO``; getattr is one ``GET`` and getattr_many one ``MGET``. Errors come back as the
errno Linux would return (``docs/metadata.md`` has the table), raised as the exceptions of
``artifacts_core.errors``.

Names are bytes, as on Linux: every method accepts ``str`` (encoded UTF-8 with
``surrogateescape``, so ``os.fsencode``/``os.fsdecode`` round-trip) or ``bytes``, and readdir
returns ``bytes``. A name is 1..255 bytes without ``/`` or NUL; "." and ".." are resolved by
lookup and refused by the mutations as Linux refuses them.

The caller (uid and groups) is passed to every function, which checks POSIX permissions with it;
the mode given to a create is final (the umask is the caller's business). Timestamps of implicit
changes come from the Redis clock; explicit times are nanoseconds since the epoch.
"""

from __future__ import annotations

import stat
from collections.abc import Iterable, Iterator
from typing import NamedTuple

import msgspec

from artifacts_core.errors import error_for
from artifacts_core.meta.attrs import (
    TYPE_BLK,
    TYPE_CHR,
    TYPE_DIR,
    TYPE_FIFO,
    TYPE_FILE,
    TYPE_SOCK,
    TYPE_SYMLINK,
    Attr,
    unpack_attr,
    unpack_entry,
)
from artifacts_core.meta.data import DataOps
from artifacts_core.types import RENAME_EXCHANGE, RENAME_NOREPLACE, ROOT_CALLER, Caller, Ino  # noqa: F401

XATTR_CREATE = 1  # linux/xattr.h
XATTR_REPLACE = 2
R_OK, W_OK, X_OK, F_OK = 4, 2, 1, 0

NAME_MAX = 255  # bytes per name (Linux NAME_MAX)
ID_NONE = (1 << 32) - 1  # uid/gid -1 as u32: chown(2)'s "leave unchanged", never a real id
TARGET_MAX = 4095  # bytes per symlink target: PATH_MAX (4096) less the terminating NUL
#: Entries asked of one HSCAN page: large enough that a 10,000-entry directory lists in ~10
#: round trips, small enough that one function call stays well under a millisecond of Redis time.
READDIR_PAGE = 1024
#: statfs of a volume without a capacity: report this much free space (1 PiB, as JuiceFS does),
#: so df and tools that check free space before writing behave.
UNLIMITED_SPACE = 1 << 50
#: statfs of a volume without an inode limit: free inodes to report (2^40, "plenty").
UNLIMITED_INODES = 1 << 40

_MKNOD_TYPES = {0: TYPE_FILE, stat.S_IFREG: TYPE_FILE, stat.S_IFIFO: TYPE_FIFO,
                stat.S_IFSOCK: TYPE_SOCK, stat.S_IFCHR: TYPE_CHR, stat.S_IFBLK: TYPE_BLK}


class DirEntry(msgspec.Struct, frozen=True):
    """One directory entry; ``attr`` is filled by the ``plus`` listings."""

    name: bytes
    ino: Ino
    type: int  # S_IFMT >> 12, as in attrs.TYPE_*
    attr: Attr | None = None


class StatFs(NamedTuple):
    total_space: int
    avail_space: int
    used_inodes: int
    avail_inodes: int


def fsname(name: str | bytes) -> bytes:
    """A name as stored: bytes (``str`` is encoded UTF-8 with surrogateescape)."""
    return name.encode("utf-8", "surrogateescape") if isinstance(name, str) else bytes(name)


def _time_arg(ns: int | None, now: bool) -> str:
    if now:
        return "now"
    if ns is None:
        return ""
    return f"{ns // 1_000_000_000} {ns % 1_000_000_000}"


def may(attr: Attr, caller: Caller, mask: int) -> bool:
    """POSIX access check, the Python twin of ``may()`` in ``lua/00_common.lua``: root may read
    and write anything and execute anything with an exec bit (directories always)."""
    perm = attr.mode & 0o7777
    if caller.uid == 0:
        if mask & X_OK and not attr.is_dir:
            return bool(perm & 0o111)
        return True
    if caller.uid == attr.uid:
        bits = (perm >> 6) & 7
    elif attr.gid in caller.gids:
        bits = (perm >> 3) & 7
    else:
        bits = perm & 7
    return bits & mask == mask


class NamespaceOps(DataOps):
    """Namespace operations of ``RedisMetaEngine`` (state: ``EngineState``'s ``client``, ``keys``,
    ``sid``); built on ``DataOps`` for ``setattr(size=...)``, which is a truncate."""

    # -- reads ---------------------------------------------------------------------------------

    def lookup(self, parent: Ino, name: str | bytes, caller: Caller = ROOT_CALLER) -> tuple[Ino, Attr]:
        ino, raw = self.client.call("af_lookup", parent, fsname(name), caller.uid, caller.gid_arg(),
                                    ro=True)
        return Ino(ino), unpack_attr(raw)

    def getattr(self, ino: Ino) -> Attr:
        raw = self.client.command("GET", self.keys.inode(ino))
        if raw is None:
            raise error_for("ENOENT", f"no inode {ino}")
        return unpack_attr(raw)

    def getattr_many(self, inos: Iterable[Ino]) -> list[Attr | None]:
        """Attributes of many inodes in one MGET (None for a missing one)."""
        keys = [self.keys.inode(i) for i in inos]
        if not keys:
            return []
        return [None if raw is None else unpack_attr(raw) for raw in self.client.command("MGET", *keys)]

    def access(self, ino: Ino, mask: int, caller: Caller = ROOT_CALLER) -> None:
        """Raise EACCES unless ``caller`` may access ``ino`` for ``mask`` (R_OK|W_OK|X_OK, or F_OK)."""
        attr = self.getattr(ino)
        if mask and not may(attr, caller, mask):
            raise error_for("EACCES", f"access {mask:o} denied on inode {ino}")

    def readlink(self, ino: Ino) -> bytes:
        return self.client.call("af_readlink", ino, ro=True)

    def readdir(self, ino: Ino, cursor: int = 0, count: int = READDIR_PAGE,
                caller: Caller = ROOT_CALLER, *, plus: bool = False) -> tuple[list[DirEntry], int]:
        """One page of entries from ``cursor`` (0 starts; the returned cursor 0 means the end).
        An entry present for the whole listing is returned at least once across pages (HSCAN's
        guarantee); ``listdir`` drops the rare repeats. "." and ".." are not listed."""
        nxt, flat, raw_attrs = self.client.call("af_readdir", ino, cursor, count, "1" if plus else "0",
                                                caller.uid, caller.gid_arg(), ro=True)
        entries = []
        for i in range(0, len(flat), 2):
            typ, child = unpack_entry(flat[i + 1])
            if plus:
                raw = raw_attrs[i // 2]
                if raw is None:
                    continue  # an entry without inode: not listable
                entries.append(DirEntry(flat[i], child, typ, unpack_attr(raw)))
            else:
                entries.append(DirEntry(flat[i], child, typ))
        return entries, int(nxt)

    def readdir_plus(self, ino: Ino, cursor: int = 0, count: int = READDIR_PAGE,
                     caller: Caller = ROOT_CALLER) -> tuple[list[DirEntry], int]:
        """``readdir`` with every entry's attributes, still one round trip per page."""
        return self.readdir(ino, cursor, count, caller, plus=True)

    def listdir(self, ino: Ino, caller: Caller = ROOT_CALLER, *, plus: bool = False,
                count: int = READDIR_PAGE) -> Iterator[DirEntry]:
        """Every entry of a directory, page by page, each name once."""
        seen: set[bytes] = set()
        cursor = 0
        while True:
            entries, cursor = self.readdir(ino, cursor, count, caller, plus=plus)
            for e in entries:
                if e.name not in seen:
                    seen.add(e.name)
                    yield e
            if cursor == 0:
                return

    def statfs(self) -> StatFs:
        used, inodes, capacity, inode_limit = self.client.call("af_statfs", ro=True)
        total = capacity if capacity else used + UNLIMITED_SPACE
        avail_inodes = max(inode_limit - inodes, 0) if inode_limit else UNLIMITED_INODES
        return StatFs(total, max(total - used, 0), inodes, avail_inodes)

    # -- new names -----------------------------------------------------------------------------

    def _create(self, parent: Ino, name: str | bytes, typ: int, mode: int, caller: Caller, *,
                rdev: int = 0, exclusive: bool = True, target: bytes = b"",
                open_sid: int = 0) -> tuple[Ino, Attr, bool]:
        ino, raw, created = self.client.call(
            "af_create", parent, fsname(name), typ, mode & 0o7777, rdev, caller.uid, caller.gid_arg(),
            "1" if exclusive else "0", target, open_sid)
        return Ino(ino), unpack_attr(raw), bool(created)

    def create(self, parent: Ino, name: str | bytes, mode: int = 0o644, caller: Caller = ROOT_CALLER, *,
               exclusive: bool = True, register_open: bool = False) -> tuple[Ino, Attr, bool]:
        """A regular file. Returns (ino, attr, created): with ``exclusive=False`` an existing
        non-directory is returned with ``created`` False (open with O_CREAT, without O_EXCL).
        ``register_open``: a newly created file is also opened by this session in the same call
        (as ``open`` would register it; the creator may open what it creates whatever its mode)."""
        if stat.S_IFMT(mode) not in (0, stat.S_IFREG):
            raise error_for("EINVAL", "create makes regular files; use mknod or mkdir")
        return self._create(parent, name, TYPE_FILE, mode, caller, exclusive=exclusive,
                            open_sid=self.sid if register_open else 0)

    def mknod(self, parent: Ino, name: str | bytes, mode: int, rdev: int = 0,
              caller: Caller = ROOT_CALLER) -> tuple[Ino, Attr]:
        """A regular file, fifo, socket or device record (``mode`` carries the type, as mknod(2))."""
        fmt = stat.S_IFMT(mode)
        if fmt == stat.S_IFDIR:
            raise error_for("EPERM", "mknod cannot make a directory")
        if fmt not in _MKNOD_TYPES:
            raise error_for("EINVAL", f"mknod cannot make file type {fmt:o}")
        typ = _MKNOD_TYPES[fmt]
        if typ in (TYPE_CHR, TYPE_BLK) and caller.uid != 0:
            raise error_for("EPERM", "only root may make device nodes")
        ino, attr, _ = self._create(parent, name, typ, mode, caller, rdev=rdev)
        return ino, attr

    def mkdir(self, parent: Ino, name: str | bytes, mode: int = 0o755,
              caller: Caller = ROOT_CALLER) -> tuple[Ino, Attr]:
        ino, attr, _ = self._create(parent, name, TYPE_DIR, mode, caller)
        return ino, attr

    def symlink(self, parent: Ino, name: str | bytes, target: str | bytes,
                caller: Caller = ROOT_CALLER) -> tuple[Ino, Attr]:
        """A symlink; the target is stored verbatim (DESIGN.md §10)."""
        raw = fsname(target)
        if not raw:
            raise error_for("ENOENT", "empty symlink target")
        if len(raw) > TARGET_MAX:
            raise error_for("ENAMETOOLONG", "symlink target longer than 4095 bytes")
        if b"\0" in raw:
            raise error_for("EINVAL", "symlink target contains NUL")
        ino, attr, _ = self._create(parent, name, TYPE_SYMLINK, 0o777, caller, target=raw)
        return ino, attr

    def link(self, ino: Ino, new_parent: Ino, new_name: str | bytes,
             caller: Caller = ROOT_CALLER) -> Attr:
        """A hard link; returns the inode's new attributes."""
        return unpack_attr(self.client.call("af_link", ino, new_parent, fsname(new_name), caller.uid,
                                            caller.gid_arg()))

    # -- removing and moving names -------------------------------------------------------------

    def unlink(self, parent: Ino, name: str | bytes, caller: Caller = ROOT_CALLER) -> int:
        """Remove a non-directory's name. Returns the links left (0: gone, or kept only while open;
        a file moved into the trash keeps its 1)."""
        return int(self.client.call("af_unlink", parent, fsname(name), caller.uid, caller.gid_arg()))

    def rmdir(self, parent: Ino, name: str | bytes, caller: Caller = ROOT_CALLER) -> Ino:
        """Remove an empty directory; returns its inode number."""
        return Ino(self.client.call("af_rmdir", parent, fsname(name), caller.uid, caller.gid_arg()))

    def rename(self, parent: Ino, name: str | bytes, new_parent: Ino, new_name: str | bytes,
               flags: int = 0, caller: Caller = ROOT_CALLER) -> bool:
        """rename(2) / renameat2 with RENAME_NOREPLACE or RENAME_EXCHANGE. Returns False when
        both names already were the same inode (nothing changed)."""
        return bool(self.client.call("af_rename", parent, fsname(name), new_parent, fsname(new_name),
                                     flags, caller.uid, caller.gid_arg()))

    # -- attributes ----------------------------------------------------------------------------

    def setattr(self, ino: Ino, *, mode: int | None = None, uid: int | None = None,
                gid: int | None = None, atime_ns: int | None = None, mtime_ns: int | None = None,
                atime_now: bool = False, mtime_now: bool = False, ctime_ns: int | None = None,
                size: int | None = None, caller: Caller = ROOT_CALLER) -> Attr:
        """chmod / chown / utimens in one call; returns the new attrs. ``size`` is delegated to
        ``truncate`` (DataOps) with the write-permission check of truncate(2) by path, one more
        round trip; a holder of a writable handle calls ``truncate(..., check_access=False)``."""
        for t in (atime_ns, mtime_ns, ctime_ns):
            if t is not None and t < 0:
                raise error_for("EINVAL", "times before 1970 are not supported")
        for ident in (uid, gid):
            if ident is not None and not 0 <= ident < ID_NONE:
                raise error_for("EINVAL", f"invalid uid/gid {ident}")
        if size is not None:
            attr = self.truncate(ino, size, caller=caller, check_access=True)
            if mode is None and uid is None and gid is None and not (atime_now or mtime_now) and \
                    atime_ns is None and mtime_ns is None and ctime_ns is None:
                return attr
        raw = self.client.call(
            "af_setattr", ino, caller.uid, caller.gid_arg(),
            "" if mode is None else mode & 0o7777, "" if uid is None else uid, "" if gid is None else gid,
            _time_arg(atime_ns, atime_now), _time_arg(mtime_ns, mtime_now), _time_arg(ctime_ns, False))
        return unpack_attr(raw)

    def getxattr(self, ino: Ino, name: str | bytes, caller: Caller = ROOT_CALLER) -> bytes:
        return self.client.call("af_getxattr", ino, fsname(name), caller.uid, caller.gid_arg(), ro=True)

    def listxattr(self, ino: Ino, caller: Caller = ROOT_CALLER) -> list[bytes]:
        return list(self.client.call("af_listxattr", ino, caller.uid, caller.gid_arg(), ro=True))

    def setxattr(self, ino: Ino, name: str | bytes, value: bytes, flags: int = 0,
                 caller: Caller = ROOT_CALLER) -> None:
        self.client.call("af_setxattr", ino, fsname(name), bytes(value), flags, caller.uid,
                         caller.gid_arg())

    def removexattr(self, ino: Ino, name: str | bytes, caller: Caller = ROOT_CALLER) -> None:
        self.client.call("af_removexattr", ino, fsname(name), caller.uid, caller.gid_arg())
