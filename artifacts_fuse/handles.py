"""``FileHandlers``: the low-level FUSE callbacks of open files — open/create, read, write, flush,
fsync, release, fallocate, copy_file_range — and of locks (flock, POSIX record locks).

Every request carries its handle (``fi.fh`` is the VFS handle), so ``fstat``, ``ftruncate``,
``fchmod`` and friends work on a file unlinked while open: the kernel names the inode, the VFS
keeps it alive until the last close. Names and attributes are ``adapter.Adapter``'s; this class
uses it for the caller of a request and for entry replies (``create``).

Page-cache rules (``open``):

- ``keep_cache`` only when the inode's change counter equals the one this mount's previous open
  saw: nothing changed it anywhere since, so close-to-open holds; any change, ours included,
  drops the cache once;
- ``direct_io`` for the internal files, whose size is reported as 0 and whose content is made on
  open.

Locks: a blocked ``F_SETLKW`` or ``flock`` holds one libfuse worker (up to ``MAX_THREADS``) and
ends with EINTR once the kernel forwards the waiting process's signal as an INTERRUPT
(``fuse_req_interrupted``). ``close(2)`` of *any* descriptor of a process drops its POSIX locks on
the file (the kernel sends FLUSH with the lock owner); the handle the owner locked through is
remembered for that.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import threading
import time

from artifacts_core.vfs import internal
from artifacts_fuse import lowlevel as ll

#: Inodes whose last-open change counter is remembered for keep_cache (a few MB at most).
MAX_GENS = 1 << 16
#: "To end of file" for POSIX locks (the kernel's OFFSET_MAX).
LOCK_EOF = (1 << 63) - 1


class Interrupt:
    """The ``cancel`` of a blocking lock wait: the wait ends with EINTR once the kernel has sent
    an INTERRUPT for this request (the waiting process got a signal). Checked between retries."""

    def __init__(self, req) -> None:
        self.req = req

    def wait(self, timeout: float) -> bool:
        time.sleep(timeout)
        return ll.interrupted(self.req)


class FileHandlers:
    def __init__(self, vfs, adapter) -> None:
        self.vfs = vfs
        self.adapter = adapter
        self._gens: dict[int, int] = {}
        self._posix_locks: dict[tuple[int, int], int] = {}  # (ino, lock owner) -> handle it locked through
        self._locks_lock = threading.Lock()

    # -- open, create, release -------------------------------------------------------------------

    def _cache_mode(self, fi, fh: int) -> None:
        ino = self.vfs.handle_ino(fh)
        if internal.is_internal(ino):
            fi.direct_io = 1
            return
        gen = self.vfs.handle_gen(fh)
        if self._gens.get(ino) == gen:
            fi.keep_cache = 1
        if len(self._gens) >= MAX_GENS:
            self._gens.clear()
        self._gens[ino] = gen

    def open(self, req, ino, fip) -> None:
        fi = fip.contents
        fi.fh = fh = self.vfs.open(ino, fi.flags, self.adapter.caller(req))
        self._cache_mode(fi, fh)
        if ll.lib.fuse_reply_open(req, fip) != 0:  # the opener is gone (interrupted)
            self.vfs.release(fh)

    def create(self, req, parent, name, mode, fip) -> None:
        fi = fip.contents
        fh, ino, attr = self.vfs.create(parent, os.fsdecode(name), mode, fi.flags, self.adapter.caller(req))
        fi.fh = fh
        self._cache_mode(fi, fh)
        if ll.lib.fuse_reply_create(req, self.adapter.entry(ino, attr), fip) == 0:
            self.adapter.known.add(ino, parent, name)
        else:
            self.vfs.release(fh)

    def release(self, req, ino, fip) -> None:
        fi = fip.contents
        if fi.flock_release:
            self.vfs.release_locks(fi.fh, fi.lock_owner, posix=False, flock=True)
        self.vfs.release(fi.fh)
        ll.reply_err(req, 0)

    # -- data ------------------------------------------------------------------------------------

    def read(self, req, ino, size, offset, fip) -> None:
        ll.reply_buf(req, self.vfs.read(fip.contents.fh, offset, size))

    def write(self, req, ino, buf, size, offset, fip) -> None:
        n = self.vfs.write(fip.contents.fh, offset, ctypes.string_at(buf, size))
        ll.lib.fuse_reply_write(req, n)

    def flush(self, req, ino, fip) -> None:
        fi = fip.contents
        # close(2) of any descriptor drops the process's POSIX locks on the file (POSIX), also
        # those taken through another descriptor; free when the owner locked nothing here.
        with self._locks_lock:
            locked_through = self._posix_locks.pop((ino, fi.lock_owner), None)
        if locked_through is not None:
            self.vfs.release_locks(locked_through, fi.lock_owner, posix=True, flock=False)
        self.vfs.flush(fi.fh)
        ll.reply_err(req, 0)

    def fsync(self, req, ino, datasync, fip) -> None:
        self.vfs.fsync(fip.contents.fh, bool(datasync))
        ll.reply_err(req, 0)

    def fallocate(self, req, ino, mode, offset, length, fip) -> None:
        self.vfs.fallocate(ino, mode, offset, length)
        ll.reply_err(req, 0)

    def copy_file_range(self, req, ino_in, off_in, fi_in, ino_out, off_out, fi_out, length, flags) -> None:
        n = self.vfs.copy_file_range(fi_in.contents.fh, off_in, fi_out.contents.fh, off_out, length)
        ll.lib.fuse_reply_write(req, n)

    # -- locks -----------------------------------------------------------------------------------

    def flock(self, req, ino, fip, op) -> None:
        fi = fip.contents
        self.vfs.flock(fi.fh, fi.lock_owner, op, cancel=None if op & fcntl.LOCK_NB else Interrupt(req))
        ll.reply_err(req, 0)

    def getlk(self, req, ino, fip, lock) -> None:
        fi, lk = fip.contents, lock.contents
        end = LOCK_EOF if lk.l_len == 0 else lk.l_start + lk.l_len - 1
        typ, s, e, pid = self.vfs.getlk(fi.fh, fi.lock_owner, lk.l_type, lk.l_start, end)
        lk.l_type, lk.l_start, lk.l_pid = typ, s, pid
        lk.l_len = 0 if e >= LOCK_EOF else e - s + 1
        ll.lib.fuse_reply_lock(req, lock)

    def setlk(self, req, ino, fip, lock, sleep) -> None:
        fi, lk = fip.contents, lock.contents
        end = LOCK_EOF if lk.l_len == 0 else lk.l_start + lk.l_len - 1
        pid = ll.caller_ids(req)[2]
        self.vfs.setlk(fi.fh, fi.lock_owner, lk.l_type, lk.l_start, end, pid, bool(sleep),
                       cancel=Interrupt(req) if sleep else None)
        if lk.l_type != fcntl.F_UNLCK:
            with self._locks_lock:
                self._posix_locks[(ino, fi.lock_owner)] = fi.fh
        ll.reply_err(req, 0)
