"""``ArtifactsFUSE``: mfusepy's ``FUSE`` with the places where its high-level glue loses information
fixed, so the adapter (``operations.py``) sees what the kernel said.

What mfusepy's glue (3.1, libfuse 3) drops, and what this subclass passes on instead:

| callback | mfusepy | here |
|---|---|---|
| every callback | an exception without errno becomes EINVAL | the one error mapping: errno kept, anything else logged once with its traceback and answered EIO |
| ``rename`` | the RENAME_NOREPLACE / RENAME_EXCHANGE flags are dropped | passed as ``flags`` |
| ``utimens`` | UTIME_NOW / UTIME_OMIT become absurd timestamps; the handle is dropped | ``now`` / omitted per time, and the handle |
| ``chmod``, ``chown``, ``truncate`` | the file handle is dropped (with ``nullpath_ok`` the path is then None) | the handle |
| ``open`` | only ``fi.fh`` can be set | ``direct_io`` for files whose size is unknown (the internal files), ``keep_cache`` for files unchanged since the last open |
| ``lock``, ``flock``, ``release`` | the lock owner and ``flock_release`` are dropped | passed on |
| ``copy_file_range`` | not bound at all | bound |

Nothing here decides anything about storage; it converts C structures to Python values.
"""

from __future__ import annotations

import ctypes
import errno
import logging

import mfusepy

from artifacts_fuse import loop

log = logging.getLogger("artifacts.fuse")

# utimensat(2) markers in tv_nsec (include/linux/stat.h).
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2


def _decode(fuse: mfusepy.FUSE, path: bytes | None) -> str | None:
    return None if path is None else path.decode(fuse.encoding, fuse.errors)


def _fh(fip) -> int | None:
    return fip.contents.fh if fip else None


class ArtifactsFUSE(mfusepy.FUSE):
    """Mounts ``operations`` (an ``ArtifactsOperations``); blocks until unmounted."""

    def __init__(self, operations, mountpoint: str, **options) -> None:
        original = mfusepy.fuse_main_real
        if loop.available():  # honour max_threads (see loop.py)
            mfusepy.fuse_main_real = loop.main_real
        try:
            super().__init__(operations, mountpoint, **options)
        finally:
            mfusepy.fuse_main_real = original

    # -- the one error mapping ------------------------------------------------------------------

    def _wrapper(self, func, *args, **kwargs):
        try:
            return func(*args, **kwargs) or 0
        except OSError as e:
            if func.__name__.startswith("init"):
                raise
            if isinstance(e.errno, int) and e.errno > 0:
                return -e.errno
            log.exception("FUSE %s failed with an OSError without errno; answering EIO", func.__name__)
            return -errno.EIO
        except Exception:
            if func.__name__.startswith("init"):
                raise
            log.exception("FUSE %s failed unexpectedly; answering EIO", func.__name__)
            return -errno.EIO
        except BaseException as e:  # SystemExit, KeyboardInterrupt: stop serving, re-raised by FUSE()
            self._FUSE__critical_exception = e
            log.critical("FUSE %s raised %r; stopping the mount", func.__name__, e)
            mfusepy.fuse_exit()
            return -errno.EFAULT

    # -- information mfusepy drops --------------------------------------------------------------

    def rename_fuse_3(self, old: bytes, new: bytes, flags: int) -> int:
        return self.operations.rename(_decode(self, old), _decode(self, new), flags)

    def chmod_fuse_3(self, path, mode: int, fip) -> int:
        return self.operations.chmod(_decode(self, path), mode, _fh(fip))

    def chown_fuse_3(self, path, uid: int, gid: int, fip) -> int:
        # (uid_t)-1 / (gid_t)-1 mean "leave unchanged".
        uid = None if uid == 0xFFFFFFFF else uid
        gid = None if gid == 0xFFFFFFFF else gid
        return self.operations.chown(_decode(self, path), uid, gid, _fh(fip))

    def truncate_fuse_3(self, path, length: int, fip) -> int:
        return self.operations.truncate(_decode(self, path), length, _fh(fip))

    def utimens_fuse_3(self, path, buf, fip) -> int:
        times: list[int | str | None] = []
        for ts in ((buf.contents.actime, buf.contents.modtime) if buf else ()):
            if ts.tv_nsec == UTIME_NOW:
                times.append("now")
            elif ts.tv_nsec == UTIME_OMIT:
                times.append(None)
            else:
                times.append(ts.tv_sec * 1_000_000_000 + ts.tv_nsec)
        atime, mtime = times if times else ("now", "now")
        return self.operations.utimens(_decode(self, path), atime, mtime, _fh(fip))

    def open(self, path: bytes, fip) -> int:
        fi = fip.contents
        fi.fh = self.operations.open(_decode(self, path), fi.flags)
        if self.operations.direct_io(fi.fh):
            fi.direct_io = 1
        elif self.operations.keep_cache(fi.fh):
            fi.keep_cache = 1
        return 0

    def lock(self, path, fip, cmd: int, lock) -> int:
        fi = fip.contents
        return self.operations.lock(fi.fh, fi.lock_owner, cmd, lock.contents, bool(fi.flush))

    def flock(self, path, fip, op: int) -> int:
        fi = fip.contents
        return self.operations.flock(fi.fh, fi.lock_owner, op)

    def release(self, path, fip) -> int:
        fi = fip.contents
        return self.operations.release(_decode(self, path), fi.fh,
                                       fi.lock_owner if fi.flock_release else None)

    def copy_file_range(self, path_in, fip_in, off_in: int, path_out, fip_out, off_out: int,
                        length: int, flags: int) -> int:
        return self.operations.copy_file_range(fip_in.contents.fh, off_in, fip_out.contents.fh,
                                               off_out, length, flags)

    def readdir_fuse_3(self, path, buf, filler, offset: int, fip, flags: int) -> int:
        """Entries with their inode numbers and types; resumable at any offset (the index)."""
        st = mfusepy.c_stat()
        pst = ctypes.pointer(st)
        for name, ino, mode, nxt in self.operations.readdir_from(fip.contents.fh, offset):
            st.st_ino = ino
            st.st_mode = mode
            if filler(buf, name, pst, nxt, 0):
                break
        return 0
