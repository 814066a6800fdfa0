"""libfuse's ``fuse_main_real``, redone so the ``max_threads`` option is honoured.

libfuse 3.12-3.14's ``fuse_main_real`` parses the command line with the 3.0 layout of
``fuse_cmdline_opts``, so ``-o max_threads=N`` is dropped ("Ignoring invalid max threads value
4294967295") and the mount runs with the default 10 worker threads: ten blocked lock waits would
then starve every other request. ``main_real`` does the same steps as libfuse (parse, ``fuse_new``,
``fuse_mount``, signal handlers, multi-threaded loop, unmount, destroy) with the 3.12 calls, and
``glue.ArtifactsFUSE`` hands it to mfusepy in place of the library's function.
"""

from __future__ import annotations

import ctypes

import mfusepy

_lib = mfusepy._libfuse


class fuse_args(ctypes.Structure):
    _fields_ = [("argc", ctypes.c_int), ("argv", ctypes.POINTER(ctypes.c_char_p)), ("allocated", ctypes.c_int)]


class fuse_cmdline_opts(ctypes.Structure):  # fuse_lowlevel.h, libfuse >= 3.12
    _fields_ = [("singlethread", ctypes.c_int), ("foreground", ctypes.c_int), ("debug", ctypes.c_int),
                ("nodefault_subtype", ctypes.c_int), ("mountpoint", ctypes.c_char_p),
                ("show_version", ctypes.c_int), ("show_help", ctypes.c_int), ("clone_fd", ctypes.c_int),
                ("max_idle_threads", ctypes.c_uint), ("max_threads", ctypes.c_uint)]


def available() -> bool:
    return hasattr(_lib, "fuse_parse_cmdline_312") and hasattr(_lib, "fuse_loop_mt_312")


def _bind() -> None:
    vp = ctypes.c_void_p
    _lib.fuse_parse_cmdline_312.argtypes = [ctypes.POINTER(fuse_args), ctypes.POINTER(fuse_cmdline_opts)]
    _lib.fuse_new_31.argtypes = [ctypes.POINTER(fuse_args), vp, ctypes.c_size_t, vp]
    _lib.fuse_new_31.restype = vp
    _lib.fuse_mount.argtypes = [vp, ctypes.c_char_p]
    _lib.fuse_get_session.argtypes = [vp]
    _lib.fuse_get_session.restype = vp
    _lib.fuse_set_signal_handlers.argtypes = [vp]
    _lib.fuse_remove_signal_handlers.argtypes = [vp]
    _lib.fuse_loop_cfg_create.restype = vp
    _lib.fuse_loop_cfg_destroy.argtypes = [vp]
    _lib.fuse_loop_cfg_set_clone_fd.argtypes = [vp, ctypes.c_uint]
    _lib.fuse_loop_cfg_set_idle_threads.argtypes = [vp, ctypes.c_uint]
    _lib.fuse_loop_cfg_set_max_threads.argtypes = [vp, ctypes.c_uint]
    _lib.fuse_loop_mt_312.argtypes = [vp, vp]
    _lib.fuse_unmount.argtypes = [vp]
    _lib.fuse_destroy.argtypes = [vp]
    _lib.fuse_opt_free_args.argtypes = [ctypes.POINTER(fuse_args)]


def main_real(argc, argv, ops, ops_size, user_data) -> int:
    """``fuse_main_real`` for a foreground, multi-threaded mount; non-zero on failure."""
    _bind()
    args = fuse_args(argc, ctypes.cast(argv, ctypes.POINTER(ctypes.c_char_p)), 0)
    opts = fuse_cmdline_opts()
    if _lib.fuse_parse_cmdline_312(ctypes.byref(args), ctypes.byref(opts)) != 0 or not opts.mountpoint:
        return 1
    fuse = _lib.fuse_new_31(ctypes.byref(args), ctypes.cast(ops, ctypes.c_void_p), ops_size, user_data)
    try:
        if not fuse:
            return 3
        if _lib.fuse_mount(fuse, opts.mountpoint) != 0:
            _lib.fuse_destroy(fuse)
            return 4
        se = _lib.fuse_get_session(fuse)
        if _lib.fuse_set_signal_handlers(se) != 0:
            _lib.fuse_unmount(fuse)
            _lib.fuse_destroy(fuse)
            return 6
        cfg = _lib.fuse_loop_cfg_create()
        _lib.fuse_loop_cfg_set_clone_fd(cfg, opts.clone_fd)
        if opts.max_idle_threads != 0xFFFFFFFF:
            _lib.fuse_loop_cfg_set_idle_threads(cfg, opts.max_idle_threads)
        if opts.max_threads != 0xFFFFFFFF:
            _lib.fuse_loop_cfg_set_max_threads(cfg, opts.max_threads)
        res = _lib.fuse_loop_mt_312(fuse, cfg)  # ctypes releases the GIL for the whole loop
        _lib.fuse_loop_cfg_destroy(cfg)
        _lib.fuse_remove_signal_handlers(se)
        _lib.fuse_unmount(fuse)
        _lib.fuse_destroy(fuse)
        # A loop ended by SIGTERM/SIGINT/SIGHUP reports the signal: a clean end for us.
        return 0 if res == 0 or res in (1, 2, 15) else 7
    finally:
        _lib.fuse_opt_free_args(ctypes.byref(args))
