"""The sandbox itself: the bubblewrap command line that isolates one command, and the host probe.

What a sandboxed command gets (docs/exec.md has the reasons):

- new user, mount, PID, IPC, UTS and cgroup namespaces, and a network namespace holding only a
  down loopback device unless ``Limits.network``; it runs as uid/gid 1000 ("sandbox") inside,
  with no capabilities (bounding set emptied), ``no_new_privs``, a seccomp denylist
  (``seccomp.py``), nested user namespaces disabled, a new session (no TIOCSTI into the caller's
  terminal), and dies with its runner;
- a root file system that is a fresh tmpfs, remounted read-only, holding only: the host's
  ``/usr`` (and the ``/bin``, ``/lib*``, ``/sbin`` links or directories) read-only; an allowlist
  of ``/etc`` entries that programs need (dynamic loader cache, alternatives, time zone, TLS
  roots; never ``shadow``, ``ssl/private`` or anything else) read-only; a generated
  ``/etc/passwd`` and ``/etc/group``; a new ``/proc`` for its own PID namespace; a minimal
  ``/dev`` (null, zero, full, random, urandom, tty, pts, shm); a private size-bounded ``/tmp``
  (also ``$HOME``); and the workspace at ``/workspace``, read-write;
- a scrubbed environment: ``PATH``, ``HOME``, ``LANG``... and what the caller passes explicitly —
  nothing is inherited, so no API key, Redis URL or S3 key of the runner reaches it;
- resource limits set inside the sandbox by ``prlimit`` (so RLIMIT_NPROC counts only the
  sandbox's processes: it is charged per user namespace): CPU seconds, address space, processes,
  file size, open files, no core dumps.

Why bubblewrap and not ``os.unshare``: the runner is a multi-threaded Python process (the
volume's I/O loop), which may not ``unshare(CLONE_NEWUSER)`` and should not run Python between
``fork`` and ``exec``; a Python helper would cost an interpreter start (~20 ms) per run and
re-implement, unaudited, what bwrap (Flatpak's sandbox, in Debian) already does carefully:
pivot_root, uid maps written by the parent, /proc and /dev set-up, capability and seccomp
handling. bwrap 0.8 (Debian 12) has no overlay options, so transactions add one
``unshare`` + ``mount -t overlay`` step before it (``overlay.py``).

``probe()`` checks the host once per process by starting a real sandbox running ``true``;
anything missing raises ``SandboxUnavailable`` naming it. There is never a fallback to running
without the sandbox.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess

from artifacts_fuse.exec.errors import SandboxUnavailable
from artifacts_fuse.exec.policy import Limits
from artifacts_fuse.exec.seccomp import filter_fd, filter_for_machine

#: Where the workspace appears inside the sandbox, and who the command runs as there.
WORKSPACE = "/workspace"
SANDBOX_UID = SANDBOX_GID = 1000
#: Top-level system directories bound read-only when they are real directories (on merged-/usr
#: systems they are symlinks into /usr and are recreated as such).
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
#: The /etc entries programs need. Everything else in /etc (shadow, gshadow, ssh keys,
#: ssl/private, sudoers, the host's passwd with its user names) stays out.
ETC_ALLOWLIST = ("alternatives", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "timezone",
                 "nsswitch.conf", "host.conf", "hosts", "gai.conf", "protocols", "services", "ssl/certs",
                 "ssl/openssl.cnf", "ca-certificates", "ca-certificates.conf", "mime.types", "magic",
                 "magic.mime", "os-release", "debian_version", "bash.bashrc", "inputrc", "terminfo",
                 "shells", "locale.alias", "python3", "python3.11", "python3.12", "python3.13", "perl",
                 "mailcap", "gitconfig")
#: With the host network: name resolution needs these too.
ETC_NETWORK = ("resolv.conf",)
PASSWD = (f"root:x:0:0:root:/root:/usr/sbin/nologin\n"
          f"sandbox:x:{SANDBOX_UID}:{SANDBOX_GID}:sandbox:/tmp:/bin/sh\n"
          "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")
GROUP = f"root:x:0:\nsandbox:x:{SANDBOX_GID}:\nnogroup:x:65534:\n"
BASE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "USER": "sandbox", "LOGNAME": "sandbox",
            "SHELL": "/bin/sh", "LANG": "C.UTF-8", "TMPDIR": "/tmp", "TERM": "dumb"}
PRLIMIT = "/usr/bin/prlimit"


def _data_fd(text: str) -> int:
    fd = os.memfd_create("artifacts-sandbox-file", os.MFD_CLOEXEC)
    os.write(fd, text.encode())
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def bwrap_path() -> str:
    path = shutil.which("bwrap", path="/usr/bin:/bin:/usr/local/bin")
    if not path:
        raise SandboxUnavailable("bubblewrap (bwrap) is not installed; the sandbox needs it",
                                 hint="install the Debian package `bubblewrap` (scripts/bootstrap does)")
    if not os.path.exists(PRLIMIT):
        raise SandboxUnavailable(f"{PRLIMIT} is missing; the sandbox sets its limits with it",
                                 hint="install util-linux")
    return path


class Command:
    """The argv of one sandboxed command, with the descriptors it needs passed to the child.
    ``close()`` closes the parent's copies (after the child started)."""

    def __init__(self, argv: list[str], fds: list[int], status_r: int) -> None:
        self.argv = argv
        self.fds = fds  # passed to the child (the status pipe's write end among them)
        self.status_r = status_r  # bwrap's JSON status records, read by the runner

    def close(self) -> None:
        """Close the parent's copies of what the child inherited (once it has started)."""
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds = []


def _system_binds() -> list[str]:
    args: list[str] = []
    for d in SYSTEM_DIRS:
        if os.path.islink(d):
            args += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            args += ["--ro-bind", d, d]
    return args


def _etc_binds(network: bool) -> list[str]:
    args: list[str] = []
    for name in ETC_ALLOWLIST + (ETC_NETWORK if network else ()):
        path = f"/etc/{name}"
        if os.path.lexists(path):
            args += ["--ro-bind-try", path, path]
    return args


def limit_args(limits: Limits) -> list[str]:
    """``prlimit`` in front of the command: set inside the sandbox's user namespace, so the
    process count is the sandbox's own (the kernel charges RLIMIT_NPROC per user namespace)."""
    return [PRLIMIT, f"--cpu={limits.cpu_seconds}", f"--as={limits.memory_bytes}",
            f"--nproc={limits.processes}", f"--fsize={limits.file_bytes}", f"--nofile={limits.open_files}",
            "--core=0", "--"]


def build(workspace_dir: str, argv: list[str], limits: Limits, *, cwd: str = "",
          env: dict[str, str] | None = None) -> Command:
    """The bwrap command running ``argv`` with ``workspace_dir`` (a host path: the warm mount or
    a transaction's overlay) at /workspace and ``cwd`` (workspace-relative) as its directory."""
    status_r, status_w = os.pipe()
    fds: list[int] = [status_w]
    args = [bwrap_path(), "--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try"]
    if not limits.network:
        args.append("--unshare-net")
    args += ["--disable-userns", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
             "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_GID), "--hostname", "sandbox"]
    args += _system_binds()
    args += _etc_binds(limits.network)
    for dest, text in (("/etc/passwd", PASSWD), ("/etc/group", GROUP)):
        fd = _data_fd(text)
        fds.append(fd)
        args += ["--ro-bind-data", str(fd), dest]
    args += ["--proc", "/proc", "--dev", "/dev", "--size", str(limits.tmp_bytes), "--tmpfs", "/tmp",
             "--dir", "/var", "--symlink", "../tmp", "/var/tmp",
             "--bind", workspace_dir, WORKSPACE,
             "--chdir", WORKSPACE + ("/" + cwd if cwd else ""), "--clearenv"]
    for k, v in {**BASE_ENV, "PWD": WORKSPACE + ("/" + cwd if cwd else ""), **(env or {})}.items():
        args += ["--setenv", k, v]
    program = filter_for_machine()
    if program is not None:
        fd = filter_fd(program)
        fds.append(fd)
        args += ["--seccomp", str(fd)]
    args += ["--json-status-fd", str(status_w)]
    args += ["--remount-ro", "/", "--", *limit_args(limits), *argv]
    return Command(args, fds, status_r)


def check_env(env: dict[str, str] | None) -> dict[str, str]:
    """Variables a caller passes explicitly: names must be plain, values without NUL."""
    out = {}
    for k, v in (env or {}).items():
        if not k or not (k[0].isalpha() or k[0] == "_") or not all(c.isalnum() or c == "_" for c in k):
            raise ValueError(f"invalid environment variable name {k!r}")
        if "\0" in v or "\0" in k:
            raise ValueError(f"environment variable {k} contains a NUL byte")
        out[k] = v
    return out


_NAMED_FAILURES = (
    ("No permissions to creat", "unprivileged user namespaces are disabled on this host "
     "(kernel.unprivileged_userns_clone=0, user.max_user_namespaces=0, or an AppArmor/SELinux policy)"),
    ("Creating new namespace failed", "the kernel refused to create the sandbox's namespaces"),
    ("setting up uid map", "the kernel refused the sandbox's uid map (user namespaces restricted)"),
    ("Operation not permitted", "the kernel refused a namespace or mount the sandbox needs "
     "(is this a container without user-namespace support?)"),
)


def explain_failure(stderr: str) -> str:
    for needle, meaning in _NAMED_FAILURES:
        if needle in stderr:
            return f"{meaning}: {stderr.strip()}"
    return stderr.strip() or "bwrap exited before starting the command"


@functools.lru_cache(maxsize=1)
def probe() -> None:
    """Start one real sandbox (running ``true`` on an empty directory); SandboxUnavailable
    naming what is missing if the host refuses. Cached: the answer does not change."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="artifacts-probe-") as d:
        cmd = build(d, ["/bin/true"], Limits())
        try:
            res = subprocess.run(cmd.argv, pass_fds=cmd.fds, capture_output=True, text=True, timeout=30,
                                 env={"PATH": "/usr/bin:/bin"})
        finally:
            cmd.close()
            os.close(cmd.status_r)
    if res.returncode != 0:
        raise SandboxUnavailable(f"cannot start a sandbox: {explain_failure(res.stderr)}",
                                 hint="the sandbox needs unprivileged user namespaces; "
                                      "it never runs a command unsandboxed")
