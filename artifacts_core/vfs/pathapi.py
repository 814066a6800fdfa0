"""The path API for Python programs: ``os``/``shutil``-shaped methods over the VFS inode API.

Paths are workspace paths (``/a/b`` or ``a/b``), validated once by ``paths.canonicalize``. Names
and exceptions follow ``os``: ``vol.remove`` of a missing file raises ``FileNotFoundError``,
``vol.rmdir`` of a non-empty directory ``OSError(ENOTEMPTY)``, and so on.

Paths resolve through the VFS's resolver (``resolve.py``) with its ``INSIDE_WORKSPACE`` policy:
symlink targets are stored verbatim (tar and venvs need absolute ones) and a link is followed only
while it stays inside the workspace -- a relative target is resolved against the link's directory,
and one that climbs above the root, or an absolute target, is refused with EACCES (the kernel, on
a mount, resolves them as the host sees them). The walk costs one lookup (one Redis round trip)
per component not in the resolver's entry cache (``entry_ttl``), which every namespace change of
this client keeps coherent, whichever frontend made it.

New files get mode 0666 and new directories 0777 (or the ``mode`` given), less ``self.umask`` —
the process umask when the path API was made (the volume opened), as ``open(2)``/``mkdir(2)``
would apply it (the kernel does it for a mount). It is an attribute: a program may set
``vol.umask`` to another mask.
"""

from __future__ import annotations

import os
import stat as _stat
from collections.abc import Iterator
from typing import Literal, overload

from artifacts_core.errors import (
    ArtifactsError,
    Exists,
    IsADirectory,
    NotADirectory,
    NotFound,
    PermissionDenied,
)
from artifacts_core.paths import canonicalize, join
from artifacts_core.types import Attr, Ino
from artifacts_core.vfs.core import VFS
from artifacts_core.vfs.fileio import VFSRawIO, mode_flags, wrap

#: What open(2) and mkdir(2) ask for before the umask is applied.
FILE_MODE, DIR_MODE = 0o666, 0o777


def process_umask() -> int:
    """The process umask, read without changing it (``/proc/self/status``, Linux 4.7+); the
    set-and-restore fallback would race with other threads creating files."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def stat_result(ino: int, a: Attr) -> os.stat_result:
    blocks = (a.length + 511) // 512
    return os.stat_result(
        (a.mode, ino, 0, a.nlink, a.uid, a.gid, a.length,
         a.atime_ns // 10**9, a.mtime_ns // 10**9, a.ctime_ns // 10**9),
        {"st_atime": a.atime_ns / 1e9, "st_mtime": a.mtime_ns / 1e9, "st_ctime": a.ctime_ns / 1e9,
         "st_atime_ns": a.atime_ns, "st_mtime_ns": a.mtime_ns, "st_ctime_ns": a.ctime_ns,
         "st_blksize": 4096, "st_blocks": blocks, "st_rdev": a.rdev})


class DirEntry:
    """What ``scandir`` yields (the ``os.DirEntry`` interface)."""

    def __init__(self, api: PathAPI, parent: str, name: str, ino: int, attr: Attr | None, typ: int) -> None:
        self._api = api
        self.name = name
        self.path = parent.rstrip("/") + "/" + name
        self._ino = ino
        self._attr = attr
        self._type = typ

    def inode(self) -> int:
        return self._ino

    def is_dir(self, *, follow_symlinks: bool = True) -> bool:
        if follow_symlinks and self._type == _stat.S_IFLNK >> 12:
            return self._api.isdir(self.path)
        return self._type == _stat.S_IFDIR >> 12

    def is_file(self, *, follow_symlinks: bool = True) -> bool:
        if follow_symlinks and self._type == _stat.S_IFLNK >> 12:
            return self._api.isfile(self.path)
        return self._type == _stat.S_IFREG >> 12

    def is_symlink(self) -> bool:
        return self._type == _stat.S_IFLNK >> 12

    def stat(self, *, follow_symlinks: bool = True) -> os.stat_result:
        if self._attr is not None and not (follow_symlinks and self.is_symlink()):
            return stat_result(self._ino, self._attr)
        return self._api.stat(self.path) if follow_symlinks else self._api.lstat(self.path)

    def __fspath__(self) -> str:
        return self.path

    def __repr__(self) -> str:
        return f"<DirEntry {self.name!r}>"


class PathAPI:
    """The path API over one VFS; ``Volume`` is one. Paths resolve through ``vfs.resolver``."""

    def __init__(self, vfs: VFS) -> None:
        self.vfs = vfs
        self.umask = process_umask()

    def _ino(self, path, *, follow: bool = True) -> Ino:
        return self.vfs.resolver.resolve(path, follow=follow).ino

    # -- files ---------------------------------------------------------------------------------

    def open(self, path, mode: str = "r", buffering: int = -1, encoding: str | None = None,
             errors: str | None = None, newline: str | None = None):
        flags, binary, _ = mode_flags(mode)
        if not canonicalize(path):
            raise IsADirectory("is a directory", path="/")
        parent, name, parts = self.vfs.resolver.parent(path)
        if flags & os.O_CREAT:
            try:
                ino, _, typ = self.vfs.resolver.lookup(parent, name)
                if typ == _stat.S_IFLNK >> 12:
                    ino = self._ino(path)
                if flags & os.O_EXCL:
                    raise Exists("file exists", path=join(parts))
                fh = self.vfs.open(ino, flags & ~(os.O_CREAT | os.O_EXCL))
            except NotFound:
                fh, ino, _ = self.vfs.create(parent, name, FILE_MODE & ~self.umask, flags)
        else:
            ino = self._ino(path)
            fh = self.vfs.open(ino, flags)
        try:
            raw = VFSRawIO(self.vfs, fh, ino, join(parts), flags)
            return wrap(raw, binary=binary, buffering=buffering, encoding=encoding, errors=errors,
                        newline=newline)
        except BaseException:
            self.vfs.release(fh)
            raise

    def read_bytes(self, path) -> bytes:
        with self.open(path, "rb") as f:
            return f.read()

    def write_bytes(self, path, data: bytes) -> int:
        with self.open(path, "wb") as f:
            return f.write(data)

    # -- metadata ------------------------------------------------------------------------------

    def stat(self, path, *, follow_symlinks: bool = True) -> os.stat_result:
        ino, _, attr = self.vfs.resolver.resolve(path, follow=follow_symlinks)
        return stat_result(ino, attr if attr is not None else self.vfs.getattr(ino))

    def lstat(self, path) -> os.stat_result:
        return self.stat(path, follow_symlinks=False)

    def exists(self, path) -> bool:
        try:
            self._ino(path)
            return True
        except (NotFound, NotADirectory, PermissionDenied):
            return False

    def isdir(self, path) -> bool:
        try:
            return _stat.S_ISDIR(self.stat(path).st_mode)
        except ArtifactsError:
            return False

    def isfile(self, path) -> bool:
        try:
            return _stat.S_ISREG(self.stat(path).st_mode)
        except ArtifactsError:
            return False

    def chmod(self, path, mode: int) -> None:
        ino = self._ino(path)
        self.vfs.setattr(ino, mode=mode & 0o7777)

    def chown(self, path, uid: int, gid: int) -> None:
        ino = self._ino(path)
        self.vfs.setattr(ino, uid=None if uid == -1 else uid, gid=None if gid == -1 else gid)

    def utime(self, path, times: tuple[float, float] | None = None, *, ns: tuple[int, int] | None = None) -> None:
        ino = self._ino(path)
        if ns is not None:
            self.vfs.setattr(ino, atime_ns=ns[0], mtime_ns=ns[1])
        elif times is not None:
            self.vfs.setattr(ino, atime_ns=int(times[0] * 1e9), mtime_ns=int(times[1] * 1e9))
        else:
            self.vfs.setattr(ino, atime_now=True, mtime_now=True)

    def truncate(self, path, length: int) -> None:
        ino = self._ino(path)
        if self.vfs.getattr(ino).is_dir:
            raise IsADirectory("is a directory", path=str(path))
        self.vfs.truncate(ino, length)

    def statvfs(self) -> os.statvfs_result:
        total, avail, used_inodes, avail_inodes = self.vfs.statfs()
        bsize = 4096
        return os.statvfs_result((bsize, bsize, total // bsize, avail // bsize, avail // bsize,
                                  used_inodes + avail_inodes, avail_inodes, avail_inodes, 0, 255))

    # -- directories ---------------------------------------------------------------------------

    @overload
    def _entries_of(self, ino: Ino, *, plus: Literal[True]) -> Iterator[tuple[str, Ino, Attr]]: ...
    @overload
    def _entries_of(self, ino: Ino, *, plus: Literal[False]) -> Iterator[tuple[str, Ino, int]]: ...

    def _entries_of(self, ino: Ino, *, plus: bool) -> Iterator[tuple[str, Ino, Attr | int]]:
        """Every entry (name, ino, its Attr when ``plus``, else its type), page by page."""
        cursor = 0
        while True:
            entries, cursor = self.vfs.readdir(ino, cursor, 1000, plus=plus)
            yield from entries
            if not cursor:
                return

    def listdir(self, path=".") -> list[str]:
        ino = self._ino(path)
        if not self.vfs.getattr(ino).is_dir:
            raise NotADirectory("not a directory", path=str(path))
        return [name for name, _, _ in self._entries_of(ino, plus=False)]

    def scandir(self, path=".") -> Iterator[DirEntry]:
        ino, parts, _ = self.vfs.resolver.resolve(path)
        if not self.vfs.getattr(ino).is_dir:
            raise NotADirectory("not a directory", path=str(path))
        base = join(parts)
        for name, child, attr in self._entries_of(ino, plus=True):
            yield DirEntry(self, base, name, child, attr, attr.type)

    def walk(self, top=".", topdown: bool = True) -> Iterator[tuple[str, list[str], list[str]]]:
        try:
            entries = list(self.scandir(top))
        except ArtifactsError:
            return
        dirs = [e.name for e in entries if e.is_dir(follow_symlinks=False)]
        files = [e.name for e in entries if not e.is_dir(follow_symlinks=False)]
        base = join(canonicalize(top))
        if topdown:
            yield base, dirs, files
        for d in dirs:
            yield from self.walk(base.rstrip("/") + "/" + d, topdown)
        if not topdown:
            yield base, dirs, files

    def mkdir(self, path, mode: int = DIR_MODE) -> None:
        parent, name, _ = self.vfs.resolver.parent(path)
        self.vfs.mkdir(parent, name, mode & ~self.umask)

    def makedirs(self, path, mode: int = DIR_MODE, exist_ok: bool = False) -> None:
        """As ``os.makedirs``: an existing intermediate name that is not a directory makes the
        next mkdir fail with NotADirectoryError; an existing final name is FileExistsError unless
        it is a directory and ``exist_ok``."""
        parts = canonicalize(path)
        for i in range(1, len(parts) + 1):
            try:
                self.mkdir(join(parts[:i]), mode)
            except Exists:
                if i == len(parts) and not (exist_ok and self.isdir(join(parts))):
                    raise
        if not parts and not exist_ok:
            raise Exists("file exists", path="/")

    def remove(self, path) -> None:
        parent, name, _ = self.vfs.resolver.parent(path)
        self.vfs.unlink(parent, name)

    unlink = remove

    def rmdir(self, path) -> None:
        parent, name, _ = self.vfs.resolver.parent(path)
        self.vfs.rmdir(parent, name)

    def rmtree(self, path) -> None:
        for entry in list(self.scandir(path)):
            if entry.is_dir(follow_symlinks=False):
                self.rmtree(entry.path)
            else:
                self.remove(entry.path)
        self.rmdir(path)

    def rename(self, src, dst) -> None:
        self._rename(src, dst, 0)

    def replace(self, src, dst) -> None:
        self._rename(src, dst, 0)

    def _rename(self, src, dst, flags: int) -> None:
        sp, sn, _ = self.vfs.resolver.parent(src)
        dp, dn, _ = self.vfs.resolver.parent(dst)
        self.vfs.rename(sp, sn, dp, dn, flags)

    def clone(self, src, dst) -> int:
        """Copy file or tree ``src`` to ``dst`` sharing its blocks (metadata only, atomic);
        returns the number of inodes cloned. A symlink is cloned as a link."""
        ino = self._ino(src, follow=False)
        parent, name, _ = self.vfs.resolver.parent(dst)
        return self.vfs.clone(ino, parent, name)[1]

    def symlink(self, target: str, path) -> None:
        parent, name, _ = self.vfs.resolver.parent(path)
        self.vfs.symlink(parent, name, os.fspath(target))

    def readlink(self, path) -> str:
        ino = self._ino(path, follow=False)
        return self.vfs.readlink(ino)

    def link(self, src, dst) -> None:
        ino = self._ino(src, follow=False)
        parent, name, _ = self.vfs.resolver.parent(dst)
        self.vfs.link(ino, parent, name)
