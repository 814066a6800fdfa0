"""A small seccomp denylist for the sandbox, as a classic BPF program for ``bwrap --seccomp FD``.

What it owns: the list of system calls a sandboxed command never needs and that widen the
kernel's attack surface (the same families Docker's and Flatpak's default profiles refuse), and
the encoding of that list as the ``struct sock_filter`` array bubblewrap loads. Everything else is
allowed: the namespaces, the dropped capabilities and ``no_new_privs`` are the main walls; this is
the second one (a kernel bug reachable only through ``bpf()`` or ``io_uring`` stays out of reach).

The program::

    load arch;      arch != x86_64           -> ENOSYS   (no i386 / x32 entry points)
    load nr;        nr >= 0x40000000 (x32)   -> ENOSYS
    nr in DENIED                             -> EPERM
    otherwise                                -> ALLOW

Only x86_64 numbers are spelled out (``filter_for_machine`` returns ``None`` elsewhere and the
sandbox runs with its other walls; docs/exec.md says so). ``ptrace`` is refused too: it is how one
process would read another's memory, and agent commands have no need for debuggers.
"""

from __future__ import annotations

import errno
import os
import platform
import struct

# BPF opcodes (linux/bpf_common.h) and seccomp return values (linux/seccomp.h).
_LD_W_ABS = 0x00 | 0x00 | 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ_K = 0x05 | 0x10 | 0x00  # BPF_JMP | BPF_JEQ | BPF_K
_JGE_K = 0x05 | 0x30 | 0x00  # BPF_JMP | BPF_JGE | BPF_K
_RET_K = 0x06 | 0x00  # BPF_RET | BPF_K
_RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000
#: offsetof(struct seccomp_data, nr) and (.., arch)
_OFF_NR, _OFF_ARCH = 0, 4
AUDIT_ARCH_X86_64 = 0xC000003E
_X32_SYSCALL_BIT = 0x40000000

#: x86_64 numbers (arch/x86/entry/syscalls/syscall_64.tbl) of the refused calls, grouped by why.
DENIED_X86_64: dict[str, int] = {
    # kernel modules, kexec, reboot, swap, accounting: host administration
    "init_module": 175, "finit_module": 313, "delete_module": 176, "kexec_load": 246,
    "kexec_file_load": 320, "reboot": 169, "swapon": 167, "swapoff": 168, "acct": 163,
    "quotactl": 179, "syslog": 103, "iopl": 172, "ioperm": 173, "lookup_dcookie": 212,
    # the kernel's most exploited interfaces, never needed by a build or a script
    "bpf": 321, "perf_event_open": 298, "userfaultfd": 323, "io_uring_setup": 425,
    "io_uring_enter": 426, "io_uring_register": 427, "keyctl": 250, "add_key": 248,
    "request_key": 249,
    # file handles bypass path permissions (the "shocker" container escape)
    "open_by_handle_at": 304, "name_to_handle_at": 303,
    # namespaces and mounts (they fail without capabilities anyway; refused outright)
    "mount": 165, "umount2": 166, "pivot_root": 155, "unshare": 272, "setns": 308,
    "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432,
    "fspick": 433, "mount_setattr": 442,
    # reading or writing another process's memory
    "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311,
}


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def build_filter(denied: dict[str, int], arch: int) -> bytes:
    """The BPF program (``struct sock_filter[]`` bytes) refusing ``denied`` with EPERM."""
    nrs = sorted(set(denied.values()))
    out = [_insn(_LD_W_ABS, 0, 0, _OFF_ARCH),
           # arch matches: skip the "wrong arch" return just below
           _insn(_JEQ_K, 1, 0, arch),
           _insn(_RET_K, 0, 0, _RET_ERRNO | errno.ENOSYS),
           _insn(_LD_W_ABS, 0, 0, _OFF_NR),
           _insn(_JGE_K, len(nrs) + 2, 0, _X32_SYSCALL_BIT)]  # -> the ENOSYS return at the end
    for i, nr in enumerate(nrs):
        # on a match jump to the EPERM return, which sits after the remaining tests and ALLOW
        out.append(_insn(_JEQ_K, len(nrs) - i, 0, nr))
    out.append(_insn(_RET_K, 0, 0, _RET_ALLOW))
    out.append(_insn(_RET_K, 0, 0, _RET_ERRNO | errno.EPERM))
    out.append(_insn(_RET_K, 0, 0, _RET_ERRNO | errno.ENOSYS))
    return b"".join(out)


def filter_for_machine(machine: str | None = None) -> bytes | None:
    """The filter for this machine's architecture, or None where no table is spelled out."""
    machine = machine or platform.machine()
    if machine in ("x86_64", "amd64"):
        return build_filter(DENIED_X86_64, AUDIT_ARCH_X86_64)
    return None


def filter_fd(program: bytes) -> int:
    """A readable descriptor holding ``program`` (a memfd; bwrap reads it to EOF)."""
    fd = os.memfd_create("artifacts-seccomp", os.MFD_CLOEXEC)
    os.write(fd, program)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
