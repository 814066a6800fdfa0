"""ctypes bindings for libfuse 3's low-level (inode) API: structures, the operations table,
replies, notifications and the session loop. Nothing here knows about workspaces.

Why ctypes on the system's ``libfuse3.so.3`` rather than pyfuse3 is measured in ``docs/fuse.md``
(``benchmarks/bench_binding.py``): libfuse's multi-threaded loop calls into Python on its own
worker threads, so a request blocked in Redis or in a lock wait holds one thread and never the
others, and a request costs one ctypes upcall.

The moving parts:

- ``Session``: ``fuse_session_new`` with an operations table built from a Python object's
  methods, ``fuse_session_mount``, libfuse's signal handlers (SIGTERM/SIGINT/SIGHUP end the loop),
  the multi-threaded loop with a bounded number of worker threads, then unmount and destroy.
- Every callback goes through ``Session._wrap``: the handler replies on success; an exception
  becomes ``fuse_reply_err`` with its errno (anything without one is logged once with its
  traceback and answered EIO). ``forget`` answers nothing, as libfuse requires.
- Worker threads are libfuse's, not Python's: ctypes would create and destroy a Python thread
  state on every upcall; ``_pin_thread_state`` keeps one per worker for the thread's life.
- Layouts follow ``fuse_lowlevel.h``/``fuse_common.h`` of libfuse 3.12-3.16 and Linux's
  ``struct stat``/``struct flock`` on x86_64 and aarch64; ``check_library`` refuses anything else
  with a clear message.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import platform
import struct
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _ctypes import CFuncPtr  # the class of CFUNCTYPE prototypes (ctypes names it only privately)

log = logging.getLogger("artifacts.fuse")

c_ino = ctypes.c_uint64
c_off = ctypes.c_int64
c_req = ctypes.c_void_p
c_size = ctypes.c_size_t


_PATH = os.environ.get("FUSE_LIBRARY_PATH") or ctypes.util.find_library("fuse3") or "libfuse3.so.3"
lib = ctypes.CDLL(_PATH, use_errno=True)
#: The same library, called without releasing the GIL: replies and directory-entry packing take
#: a microsecond, and a released GIL can take a thread switch interval (5 ms) to come back when
#: another thread is busy. Calls that may block (the loop, mounting, notifications) use ``lib``.
_held = ctypes.PyDLL(_PATH)
_GIL_HELD = ("fuse_reply_", "fuse_add_direntry", "fuse_req_ctx", "fuse_req_interrupted")
lib.fuse_version.restype = ctypes.c_int
#: libfuse's version as an integer, e.g. 314 for 3.14.
VERSION = lib.fuse_version()


def check_library() -> None:
    """Raise RuntimeError unless this libfuse and machine match the layouts below."""
    if not 312 <= VERSION < 317:
        raise RuntimeError(f"libfuse {VERSION // 100}.{VERSION % 100} is not supported: the mount needs "
                           "libfuse 3.12 to 3.16 (apt-get install fuse3 libfuse3-3)")
    if platform.machine() not in ("x86_64", "aarch64"):
        raise RuntimeError(f"the FUSE mount supports x86_64 and aarch64 Linux, not {platform.machine()}")


# -- structures ------------------------------------------------------------------------------------

class timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_int64), ("tv_nsec", ctypes.c_int64)]


if platform.machine() == "aarch64":
    class stat_t(ctypes.Structure):  # asm-generic/stat.h
        _fields_ = [("st_dev", ctypes.c_uint64), ("st_ino", ctypes.c_uint64), ("st_mode", ctypes.c_uint32),
                    ("st_nlink", ctypes.c_uint32), ("st_uid", ctypes.c_uint32), ("st_gid", ctypes.c_uint32),
                    ("st_rdev", ctypes.c_uint64), ("_pad1", ctypes.c_uint64), ("st_size", ctypes.c_int64),
                    ("st_blksize", ctypes.c_int32), ("_pad2", ctypes.c_int32), ("st_blocks", ctypes.c_int64),
                    ("st_atim", timespec), ("st_mtim", timespec), ("st_ctim", timespec),
                    ("_unused", ctypes.c_int32 * 2)]
else:
    class stat_t(ctypes.Structure):  # type: ignore[no-redef]  # x86_64 (one layout per architecture)
        _fields_ = [("st_dev", ctypes.c_uint64), ("st_ino", ctypes.c_uint64), ("st_nlink", ctypes.c_uint64),
                    ("st_mode", ctypes.c_uint32), ("st_uid", ctypes.c_uint32), ("st_gid", ctypes.c_uint32),
                    ("_pad0", ctypes.c_int32), ("st_rdev", ctypes.c_uint64), ("st_size", ctypes.c_int64),
                    ("st_blksize", ctypes.c_int64), ("st_blocks", ctypes.c_int64),
                    ("st_atim", timespec), ("st_mtim", timespec), ("st_ctim", timespec),
                    ("_unused", ctypes.c_int64 * 3)]


class statvfs_t(ctypes.Structure):
    _fields_ = [("f_bsize", ctypes.c_ulong), ("f_frsize", ctypes.c_ulong), ("f_blocks", ctypes.c_uint64),
                ("f_bfree", ctypes.c_uint64), ("f_bavail", ctypes.c_uint64), ("f_files", ctypes.c_uint64),
                ("f_ffree", ctypes.c_uint64), ("f_favail", ctypes.c_uint64), ("f_fsid", ctypes.c_ulong),
                ("f_flag", ctypes.c_ulong), ("f_namemax", ctypes.c_ulong), ("_spare", ctypes.c_int * 6)]


class flock_t(ctypes.Structure):
    _fields_ = [("l_type", ctypes.c_short), ("l_whence", ctypes.c_short), ("l_start", c_off),
                ("l_len", c_off), ("l_pid", ctypes.c_int)]


class entry_param(ctypes.Structure):
    _fields_ = [("ino", c_ino), ("generation", ctypes.c_uint64), ("attr", stat_t),
                ("attr_timeout", ctypes.c_double), ("entry_timeout", ctypes.c_double)]


class file_info(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_int),
                ("writepage", ctypes.c_uint, 1), ("direct_io", ctypes.c_uint, 1),
                ("keep_cache", ctypes.c_uint, 1), ("flush", ctypes.c_uint, 1),
                ("nonseekable", ctypes.c_uint, 1), ("flock_release", ctypes.c_uint, 1),
                ("cache_readdir", ctypes.c_uint, 1), ("noflush", ctypes.c_uint, 1),
                ("padding", ctypes.c_uint, 24), ("padding2", ctypes.c_uint, 32),
                ("fh", ctypes.c_uint64), ("lock_owner", ctypes.c_uint64), ("poll_events", ctypes.c_uint32)]


class conn_info(ctypes.Structure):
    _fields_ = [("proto_major", ctypes.c_uint), ("proto_minor", ctypes.c_uint), ("max_write", ctypes.c_uint),
                ("max_read", ctypes.c_uint), ("max_readahead", ctypes.c_uint), ("capable", ctypes.c_uint),
                ("want", ctypes.c_uint), ("max_background", ctypes.c_uint),
                ("congestion_threshold", ctypes.c_uint), ("time_gran", ctypes.c_uint),
                ("reserved", ctypes.c_uint * 22)]


class req_ctx(ctypes.Structure):
    _fields_ = [("uid", ctypes.c_uint32), ("gid", ctypes.c_uint32), ("pid", ctypes.c_int32),
                ("umask", ctypes.c_uint32)]


class forget_data(ctypes.Structure):
    _fields_ = [("ino", c_ino), ("nlookup", ctypes.c_uint64)]


class fuse_args(ctypes.Structure):
    _fields_ = [("argc", ctypes.c_int), ("argv", ctypes.POINTER(ctypes.c_char_p)), ("allocated", ctypes.c_int)]


# Capability bits of conn_info.want (fuse_common.h).
CAP_READDIRPLUS = 1 << 13
CAP_READDIRPLUS_AUTO = 1 << 14
CAP_HANDLE_KILLPRIV = 1 << 20

# setattr's to_set bits (fuse_lowlevel.h).
SET_ATTR_MODE = 1 << 0
SET_ATTR_UID = 1 << 1
SET_ATTR_GID = 1 << 2
SET_ATTR_SIZE = 1 << 3
SET_ATTR_ATIME = 1 << 4
SET_ATTR_MTIME = 1 << 5
SET_ATTR_ATIME_NOW = 1 << 7
SET_ATTR_MTIME_NOW = 1 << 8
SET_ATTR_CTIME = 1 << 10

P = ctypes.POINTER
_cb = ctypes.CFUNCTYPE
_V = None
#: The operations table, in fuse_lowlevel_ops order; None marks an operation left to libfuse.
OPS: list[tuple[str, type[CFuncPtr] | None]] = [
    ("init", _cb(_V, ctypes.c_void_p, P(conn_info))),
    ("destroy", _cb(_V, ctypes.c_void_p)),
    ("lookup", _cb(_V, c_req, c_ino, ctypes.c_char_p)),
    ("forget", _cb(_V, c_req, c_ino, ctypes.c_uint64)),
    ("getattr", _cb(_V, c_req, c_ino, P(file_info))),
    ("setattr", _cb(_V, c_req, c_ino, P(stat_t), ctypes.c_int, P(file_info))),
    ("readlink", _cb(_V, c_req, c_ino)),
    ("mknod", _cb(_V, c_req, c_ino, ctypes.c_char_p, ctypes.c_uint32, ctypes.c_uint64)),
    ("mkdir", _cb(_V, c_req, c_ino, ctypes.c_char_p, ctypes.c_uint32)),
    ("unlink", _cb(_V, c_req, c_ino, ctypes.c_char_p)),
    ("rmdir", _cb(_V, c_req, c_ino, ctypes.c_char_p)),
    ("symlink", _cb(_V, c_req, ctypes.c_char_p, c_ino, ctypes.c_char_p)),
    ("rename", _cb(_V, c_req, c_ino, ctypes.c_char_p, c_ino, ctypes.c_char_p, ctypes.c_uint)),
    ("link", _cb(_V, c_req, c_ino, c_ino, ctypes.c_char_p)),
    ("open", _cb(_V, c_req, c_ino, P(file_info))),
    ("read", _cb(_V, c_req, c_ino, c_size, c_off, P(file_info))),
    ("write", _cb(_V, c_req, c_ino, ctypes.c_void_p, c_size, c_off, P(file_info))),
    ("flush", _cb(_V, c_req, c_ino, P(file_info))),
    ("release", _cb(_V, c_req, c_ino, P(file_info))),
    ("fsync", _cb(_V, c_req, c_ino, ctypes.c_int, P(file_info))),
    ("opendir", _cb(_V, c_req, c_ino, P(file_info))),
    ("readdir", _cb(_V, c_req, c_ino, c_size, c_off, P(file_info))),
    ("releasedir", _cb(_V, c_req, c_ino, P(file_info))),
    ("fsyncdir", _cb(_V, c_req, c_ino, ctypes.c_int, P(file_info))),
    ("statfs", _cb(_V, c_req, c_ino)),
    ("setxattr", _cb(_V, c_req, c_ino, ctypes.c_char_p, ctypes.c_void_p, c_size, ctypes.c_int)),
    ("getxattr", _cb(_V, c_req, c_ino, ctypes.c_char_p, c_size)),
    ("listxattr", _cb(_V, c_req, c_ino, c_size)),
    ("removexattr", _cb(_V, c_req, c_ino, ctypes.c_char_p)),
    ("access", _cb(_V, c_req, c_ino, ctypes.c_int)),
    ("create", _cb(_V, c_req, c_ino, ctypes.c_char_p, ctypes.c_uint32, P(file_info))),
    ("getlk", _cb(_V, c_req, c_ino, P(file_info), P(flock_t))),
    ("setlk", _cb(_V, c_req, c_ino, P(file_info), P(flock_t), ctypes.c_int)),
    ("bmap", None), ("ioctl", None), ("poll", None), ("write_buf", None), ("retrieve_reply", None),
    ("forget_multi", _cb(_V, c_req, c_size, P(forget_data))),
    ("flock", _cb(_V, c_req, c_ino, P(file_info), ctypes.c_int)),
    ("fallocate", _cb(_V, c_req, c_ino, ctypes.c_int, c_off, c_off, P(file_info))),
    ("readdirplus", _cb(_V, c_req, c_ino, c_size, c_off, P(file_info))),
    ("copy_file_range", _cb(_V, c_req, c_ino, c_off, P(file_info), c_ino, c_off, P(file_info), c_size,
                            ctypes.c_int)),
    ("lseek", None),
]


class lowlevel_ops(ctypes.Structure):
    _fields_ = [(name, proto if proto is not None else ctypes.c_void_p) for name, proto in OPS]


def _declare() -> None:
    vp, ci, cu = ctypes.c_void_p, ctypes.c_int, ctypes.c_uint
    sigs = {
        "fuse_session_new": ([P(fuse_args), P(lowlevel_ops), c_size, vp], vp),
        "fuse_session_mount": ([vp, ctypes.c_char_p], ci),
        "fuse_session_unmount": ([vp], None),
        "fuse_session_destroy": ([vp], None),
        "fuse_session_exit": ([vp], None),
        "fuse_set_signal_handlers": ([vp], ci),
        "fuse_remove_signal_handlers": ([vp], None),
        "fuse_loop_cfg_create": ([], vp),
        "fuse_loop_cfg_destroy": ([vp], None),
        "fuse_loop_cfg_set_clone_fd": ([vp, cu], None),
        "fuse_loop_cfg_set_idle_threads": ([vp, cu], None),
        "fuse_loop_cfg_set_max_threads": ([vp, cu], None),
        "fuse_session_loop_mt_312": ([vp, vp], ci),
        "fuse_opt_free_args": ([P(fuse_args)], None),
        "fuse_reply_err": ([c_req, ci], ci),
        "fuse_reply_none": ([c_req], None),
        "fuse_reply_entry": ([c_req, P(entry_param)], ci),
        "fuse_reply_create": ([c_req, P(entry_param), P(file_info)], ci),
        "fuse_reply_attr": ([c_req, P(stat_t), ctypes.c_double], ci),
        "fuse_reply_readlink": ([c_req, ctypes.c_char_p], ci),
        "fuse_reply_open": ([c_req, P(file_info)], ci),
        "fuse_reply_write": ([c_req, c_size], ci),
        "fuse_reply_buf": ([c_req, ctypes.c_char_p, c_size], ci),
        "fuse_reply_statfs": ([c_req, P(statvfs_t)], ci),
        "fuse_reply_xattr": ([c_req, c_size], ci),
        "fuse_reply_lock": ([c_req, P(flock_t)], ci),
        "fuse_add_direntry": ([c_req, vp, c_size, ctypes.c_char_p, P(stat_t), c_off], c_size),
        "fuse_add_direntry_plus": ([c_req, vp, c_size, ctypes.c_char_p, P(entry_param), c_off], c_size),
        "fuse_req_ctx": ([c_req], P(req_ctx)),
        "fuse_req_getgroups": ([c_req, ci, P(ctypes.c_uint32)], ci),
        "fuse_req_interrupted": ([c_req], ci),
        "fuse_lowlevel_notify_inval_inode": ([vp, c_ino, c_off, c_off], ci),
        "fuse_lowlevel_notify_inval_entry": ([vp, c_ino, ctypes.c_char_p, c_size], ci),
        "fuse_lowlevel_notify_delete": ([vp, c_ino, c_ino, ctypes.c_char_p, c_size], ci),
    }
    for name, (args, res) in sigs.items():
        fn = getattr(_held if name.startswith(_GIL_HELD) else lib, name)
        fn.argtypes = args
        fn.restype = res
        setattr(lib, name, fn)


_declare()


# -- replies ------------------------------------------------------------------------------------

# ``struct stat`` packed in one ``struct.pack_into`` call (a ctypes field assignment costs about
# as much as the whole pack): the layout above, field values in ``stat_values`` order.
if platform.machine() == "aarch64":
    _STAT = "QQIIIIQ8xqi4xqqqqqqq8x"

    def stat_values(ino: int, mode: int, nlink: int, uid: int, gid: int, rdev: int, size: int,
                    blksize: int, atime_ns: int, mtime_ns: int, ctime_ns: int) -> tuple:
        return (0, ino, mode, nlink, uid, gid, rdev, size, blksize, (size + 511) // 512,
                *divmod(atime_ns, 1_000_000_000), *divmod(mtime_ns, 1_000_000_000),
                *divmod(ctime_ns, 1_000_000_000))
else:
    _STAT = "QQQIII4xQqqqqqqqqq24x"

    def stat_values(ino: int, mode: int, nlink: int, uid: int, gid: int, rdev: int, size: int,
                    blksize: int, atime_ns: int, mtime_ns: int, ctime_ns: int) -> tuple:
        return (0, ino, nlink, mode, uid, gid, rdev, size, blksize, (size + 511) // 512,
                *divmod(atime_ns, 1_000_000_000), *divmod(mtime_ns, 1_000_000_000),
                *divmod(ctime_ns, 1_000_000_000))

STAT_PACK = struct.Struct("=" + _STAT)
ENTRY_PACK = struct.Struct("=QQ" + _STAT + "dd")
assert STAT_PACK.size == ctypes.sizeof(stat_t) and ENTRY_PACK.size == ctypes.sizeof(entry_param)


def fill_stat(st: stat_t, ino: int, mode: int, nlink: int, uid: int, gid: int, size: int, rdev: int,
              atime_ns: int, mtime_ns: int, ctime_ns: int, blksize: int) -> None:
    STAT_PACK.pack_into(st, 0, *stat_values(ino, mode, nlink, uid, gid, rdev, size, blksize,
                                            atime_ns, mtime_ns, ctime_ns))


def reply_err(req, err: int) -> None:
    lib.fuse_reply_err(req, err)


def reply_buf(req, data) -> None:
    if not isinstance(data, bytes):
        data = bytes(data)
    lib.fuse_reply_buf(req, data, len(data))


def caller_ids(req) -> tuple[int, int, int]:
    """``(uid, gid, pid)`` of the process that made the request."""
    c = lib.fuse_req_ctx(req).contents
    return c.uid, c.gid, c.pid


def groups(req, limit: int) -> tuple[int, ...]:
    """Supplementary groups of the requesting process (libfuse reads ``/proc/<pid>/status``)."""
    buf = (ctypes.c_uint32 * limit)()
    n = lib.fuse_req_getgroups(req, limit, buf)
    return tuple(buf[:min(n, limit)]) if n > 0 else ()


def interrupted(req) -> bool:
    return bool(lib.fuse_req_interrupted(req))


# -- thread states ------------------------------------------------------------------------------

_pinned = threading.local()
_ensure = ctypes.pythonapi.PyGILState_Ensure
_ensure.restype = ctypes.c_int


def _pin_thread_state() -> None:
    """Keep this (libfuse) thread's Python thread state alive between upcalls: one extra
    ``PyGILState_Ensure`` that is never released. Without it ctypes creates and tears down a
    thread state (and its thread-locals) on every request."""
    if not getattr(_pinned, "done", False):
        _ensure()
        _pinned.done = True


# -- session ------------------------------------------------------------------------------------

class Session:
    """A low-level FUSE session serving ``ops`` (objects whose methods are named as in ``OPS``;
    the first object with a method serves it; each ``method(req, *args)`` replies itself).
    ``mount()``, then ``loop()`` until unmounted, then ``close()``."""

    def __init__(self, ops: list, mountpoint: str, options: list[str], *, max_threads: int,
                 max_idle_threads: int | None = None) -> None:
        check_library()
        self.mountpoint = mountpoint
        self.max_threads = max_threads
        # Idle workers are kept (threads start on demand, up to max_threads): a worker that
        # exited would leave its pinned Python thread state behind.
        self.max_idle_threads = max_threads if max_idle_threads is None else max_idle_threads
        self.se: int | None = None
        self.failure: BaseException | None = None
        table = lowlevel_ops()
        self._callbacks = []  # CFUNCTYPE objects must outlive the session
        for name, proto in OPS:
            fn = next((getattr(o, name) for o in ops if hasattr(o, name)), None) if proto else None
            if fn is None or proto is None:
                continue
            cb = proto(self._wrap(name, fn))
            self._callbacks.append(cb)
            setattr(table, name, cb)
        self._table = table
        argv = [b"artifacts", b"-o", ",".join(options).encode()]
        self._argv = (ctypes.c_char_p * (len(argv) + 1))(*argv, None)
        self._args = fuse_args(len(argv), self._argv, 0)

    def _wrap(self, name: str, fn):
        if name in ("init", "destroy"):
            def lifecycle(*args):
                _pin_thread_state()
                try:
                    fn(*args)
                except BaseException as e:
                    log.exception("FUSE %s failed", name)
                    self.failure = e
                    self.exit()
            return lifecycle
        if name in ("forget", "forget_multi"):
            def forget(req, *args):
                _pin_thread_state()
                try:
                    fn(req, *args)
                except BaseException:
                    log.exception("FUSE %s failed", name)
                finally:
                    lib.fuse_reply_none(req)
            return forget

        def handler(req, *args):
            _pin_thread_state()
            try:
                fn(req, *args)
            except OSError as e:
                code = e.errno
                if not isinstance(code, int) or code <= 0:
                    log.exception("FUSE %s failed with an OSError without errno; answering EIO", name)
                    code = errno.EIO
                lib.fuse_reply_err(req, code)
            except Exception:
                log.exception("FUSE %s failed unexpectedly; answering EIO", name)
                lib.fuse_reply_err(req, errno.EIO)
            except BaseException as e:  # SystemExit, KeyboardInterrupt: stop serving
                log.critical("FUSE %s raised %r; stopping the mount", name, e)
                self.failure = e
                lib.fuse_reply_err(req, errno.EIO)
                self.exit()
        return handler

    def mount(self) -> None:
        """Create the session and mount it (the kernel answers once ``init`` has run)."""
        se = lib.fuse_session_new(ctypes.byref(self._args), ctypes.byref(self._table),
                                  ctypes.sizeof(self._table), None)
        if not se:
            raise OSError(errno.EINVAL, f"libfuse refused the mount options {(self._argv[2] or b'').decode()!r}")
        if lib.fuse_set_signal_handlers(se) != 0:
            lib.fuse_session_destroy(se)
            raise OSError(errno.EIO, "cannot install libfuse's signal handlers")
        if lib.fuse_session_mount(se, os.fsencode(self.mountpoint)) != 0:
            lib.fuse_remove_signal_handlers(se)
            lib.fuse_session_destroy(se)
            raise OSError(errno.EIO, f"cannot mount on {self.mountpoint} (see the log above)")
        self.se = se

    def loop(self) -> int:
        """Serve requests on up to ``max_threads`` libfuse threads until unmounted or signalled."""
        cfg = lib.fuse_loop_cfg_create()
        lib.fuse_loop_cfg_set_clone_fd(cfg, 0)
        lib.fuse_loop_cfg_set_idle_threads(cfg, self.max_idle_threads)
        lib.fuse_loop_cfg_set_max_threads(cfg, self.max_threads)
        try:
            return lib.fuse_session_loop_mt_312(self.se, cfg)  # ctypes releases the GIL meanwhile
        finally:
            lib.fuse_loop_cfg_destroy(cfg)

    def close(self) -> None:
        se, self.se = self.se, None
        if se:
            lib.fuse_remove_signal_handlers(se)
            lib.fuse_session_unmount(se)
            lib.fuse_session_destroy(se)
        lib.fuse_opt_free_args(ctypes.byref(self._args))

    def exit(self) -> None:
        if self.se:
            lib.fuse_session_exit(self.se)

    # -- notifications (never from inside a request handler: see notify.py) ---------------------

    def inval_inode(self, ino: int, offset: int = 0, length: int = 0) -> int:
        """Drop the kernel's attributes of ``ino`` and its cached data from ``offset`` for
        ``length`` bytes (0: to the end; a negative offset: attributes only)."""
        se = self.se
        return lib.fuse_lowlevel_notify_inval_inode(se, ino, offset, length) if se else 0

    def inval_entry(self, parent: int, name: bytes) -> int:
        se = self.se
        return lib.fuse_lowlevel_notify_inval_entry(se, parent, name, len(name)) if se else 0
