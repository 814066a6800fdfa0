"""Mounting and unmounting a workspace: the public ``mount`` / ``unmount`` and their guards.

``mount(settings, mountpoint)`` checks the mountpoint (SPEC.md §5.4: an existing mount point is
refused with its exact message, read from ``/proc/self/mountinfo``; a stale one — its FUSE process
gone, ``stat`` failing with ENOTCONN — is reported with the remedy; a missing or non-empty
directory is refused), starts the supervisor (``daemon.py``) and returns once the child reports
the kernel mount up. ``foreground=True`` serves in the calling process until unmounted.

``unmount(mountpoint)`` unmounts the way ``umount`` does: the kernel refuses while a process has
a file or its working directory on the mount (EBUSY; the message names the processes), otherwise
the FUSE loop ends and ``unmount`` waits for the supervisor (found through the state file under
``$XDG_STATE_HOME/tonbo/artifacts/mounts``) to exit: dirty data committed, session closed.
``force=True`` asks the supervisor to stop with SIGTERM instead: what open files hold is committed,
then libfuse detaches the mount lazily (its users get ENOTCONN). Without a live supervisor it falls
back to ``fusermount3 -u`` (``-uz`` for a stale mount). ``fusermount3 -u`` and SIGTERM/SIGINT to
the supervisor are just as graceful.

Logs go to ``$XDG_CACHE_HOME/tonbo/artifacts/logs/<workspace>.log`` (mode 0600, no secrets).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import msgspec

from artifacts_core.config import xdg_dir
from artifacts_core.errors import ArtifactsError
from artifacts_fuse.daemon import (
    PYTHON_ENV,
    READY_ENV,
    ChildRequest,
    MountSettings,
    serve,
    setup_logging,
    write_state,
)
from artifacts_fuse.mountinfo import mount_entry, state_file

#: Credentials handed to the child through the settings pipe and kept out of its environment.
SECRET_ENV = ("ARTIFACTS_S3_ACCESS_KEY_ID", "ARTIFACTS_S3_SECRET_ACCESS_KEY", "ARTIFACTS_S3_SESSION_TOKEN")
#: The caller's own credentials, dropped from the mount processes' environment: a mount never
#: calls the orchestrator (the CLI revokes its session on unmount), and a process that lives for
#: days should not carry an API key in /proc/<pid>/environ. (``TONBO_API_KEY``: the orchestrator
#: client's KEY_ENV; spelled here, as frontends do not import each other.)
CALLER_SECRET_ENV = ("TONBO_API_KEY",)
#: How long a mount may take to come up: opening a volume is a few round trips, but a Redis or
#: S3 that is slow to answer gets its client-side retries before the mount gives up.
READY_TIMEOUT = 60.0
#: A stat of a live mount point answers in microseconds; one that hangs this long is reported.
STAT_TIMEOUT = 2.0
#: Unmount waits this long for the FUSE process to commit dirty data and end its session.
UNMOUNT_TIMEOUT = 120.0
_ENTRY_DIR = Path(__file__).parent / "_entry"


class MountError(ArtifactsError):
    """The mount could not be made (or removed). ``f"Error: {e}"`` is the message for users."""

    default_errno = errno.EINVAL


@dataclass(frozen=True)
class Mount:
    """A background mount: its supervisor's pid (``ps`` shows ``artifacts mount <ws> <path>``)."""

    mountpoint: str
    pid: int
    log_path: str


# -- mountpoint checks ---------------------------------------------------------------------------

def _stat_errno(path: str) -> int | None:
    """errno of stat(path), or ETIMEDOUT when it hangs (a FUSE server that stopped answering)."""
    result: list[int] = []

    def probe() -> None:
        try:
            os.stat(path)
            result.append(0)
        except OSError as e:
            result.append(e.errno or errno.EIO)

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(STAT_TIMEOUT)
    return result[0] if result else errno.ETIMEDOUT


def check_mountpoint(mountpoint: str) -> str:
    """The absolute mountpoint if a workspace may be mounted there; MountError otherwise."""
    mp = os.path.abspath(mountpoint)
    if mount_entry(mp) is not None:
        code = _stat_errno(mp)
        if code in (errno.ENOTCONN, errno.ECONNABORTED, errno.ETIMEDOUT):
            raise MountError(f"path {mp} is a stale mount (its FUSE process is gone);\n"
                             f"       run `artifacts unmount {mp}` first",
                             errno=errno.ENOTCONN)
        raise MountError(f"path {mp} is already a mount point;\n"
                         f"       run `artifacts unmount {mp}` first", errno=errno.EBUSY)
    if not os.path.exists(mp):
        raise MountError(f"mountpoint {mp} does not exist; create it first (mkdir -p {mp})",
                         errno=errno.ENOENT)
    if not os.path.isdir(mp):
        raise MountError(f"mountpoint {mp} is not a directory", errno=errno.ENOTDIR)
    if os.listdir(mp):
        raise MountError(f"mountpoint {mp} is not empty; mount onto an empty directory",
                         errno=errno.ENOTEMPTY)
    return mp


# -- state and logs ------------------------------------------------------------------------------

def log_file(workspace: str) -> Path:
    return xdg_dir("cache") / "logs" / f"{workspace}.log"


def _read_state(mountpoint: str) -> dict | None:
    try:
        return json.loads(state_file(mountpoint).read_text())
    except (OSError, ValueError):
        return None


# -- mount ---------------------------------------------------------------------------------------

def _with_secrets(settings: MountSettings) -> MountSettings:
    env = {k: os.environ[k] for k in SECRET_ENV if k in os.environ}
    env.update(settings.env)
    return msgspec.structs.replace(settings, env=env)


def _child_env(ready_fd: int) -> dict[str, str]:
    """The supervisor's environment: no secrets (neither the S3 keys, which travel in the settings
    pipe, nor the caller's API key), this interpreter's import path (its argv[0] is
    ``artifacts``, so Python cannot find the virtual environment by itself)."""
    env = {k: v for k, v in os.environ.items() if k not in SECRET_ENV and k not in CALLER_SECRET_ENV}
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([root, *(p for p in sys.path if p and os.path.isdir(p))])
    env[READY_ENV] = str(ready_fd)
    env[PYTHON_ENV] = sys.executable
    return env


def mount(settings: MountSettings, mountpoint: str, foreground: bool = False,
          read_only: bool = False) -> Mount | None:
    """Mount a workspace; returns once the mount is live (in the foreground: once unmounted)."""
    mp = check_mountpoint(mountpoint)
    logp = log_file(settings.workspace)
    logp.parent.mkdir(parents=True, exist_ok=True)
    request = ChildRequest(settings=_with_secrets(settings), mountpoint=mp, read_only=read_only,
                           log_path=str(logp))
    if foreground:
        setup_logging()
        state = write_state(request, None)
        try:
            rc = serve(request, ready=lambda message: print(message, file=sys.stderr))
        finally:
            with contextlib.suppress(OSError):
                os.unlink(state)
        if rc:
            raise MountError(f"the mount of {mp} ended with an error (see the log above)")
        return None
    ready_r, ready_w = os.pipe()
    try:
        proc = subprocess.Popen(["artifacts", "mount", settings.workspace, mp], executable=sys.executable,
                                cwd=_ENTRY_DIR, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, pass_fds=(ready_w,), env=_child_env(ready_w),
                                start_new_session=True)
    finally:
        os.close(ready_w)
    assert proc.stdin is not None  # stdin=PIPE
    with os.fdopen(ready_r, "rb") as ready:
        proc.stdin.write(msgspec.json.encode(request))
        proc.stdin.close()
        message = _read_until_closed(ready, READY_TIMEOUT).decode(errors="replace").strip()
    if message != "ready":
        if not message:
            if proc.poll() is None:
                proc.kill()
            message = f"the mount process exited before the mount was up (see {logp})"
        elif message == "timeout":
            os.killpg(proc.pid, signal.SIGKILL)
            message = f"the mount did not come up within {READY_TIMEOUT:.0f} s (see {logp})"
        proc.wait(READY_TIMEOUT)
        raise MountError(message.removeprefix("error: "), errno=errno.EIO)
    return Mount(mp, proc.pid, str(logp))


def _read_until_closed(f, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    out = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([f], [], [], left)[0]:
            return b"timeout"
        chunk = os.read(f.fileno(), 4096)
        if not chunk:
            return out
        out += chunk


# -- unmount -------------------------------------------------------------------------------------

def _wait_exit(pid: int, timeout: float) -> bool:
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)


def _is_supervisor(pid: int, mountpoint: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    # A background supervisor is exactly "artifacts mount <ws> <path>"; a foreground mount is
    # whatever command served it, with "mount" and the path among its arguments.
    return b"mount" in argv and os.fsencode(mountpoint) in argv


def busy_holders(mountpoint: str, limit: int = 5) -> list[str]:
    """``"<command> (pid N)"`` of processes with a file, directory or working directory on the
    mount (what ``fuser -m`` reports), at most ``limit``; read from ``/proc`` without touching the
    mount itself."""
    entry = mount_entry(mountpoint)
    if entry is None:
        return []
    mnt_id, prefix = entry["id"], mountpoint.rstrip("/") + "/"
    found: list[str] = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            uses = any(os.readlink(f"/proc/{pid}/{link}") in (mountpoint,) or
                       os.readlink(f"/proc/{pid}/{link}").startswith(prefix) for link in ("cwd", "root"))
            if not uses:
                for fd in os.listdir(f"/proc/{pid}/fdinfo"):
                    with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                        if f"mnt_id:\t{mnt_id}\n" in f.read():
                            uses = True
                            break
            if uses:
                with open(f"/proc/{pid}/comm") as f:
                    found.append(f"{f.read().strip()} (pid {pid})")
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if len(found) >= limit:
            break
    return found


def _busy_error(mp: str) -> MountError:
    holders = busy_holders(mp)
    who = f" ({', '.join(holders)})" if holders else ""
    return MountError(f"{mp} is busy: processes still use it{who}",
                      hint=f"close them (fuser -vm {mp} lists them), or `artifacts unmount --force {mp}` "
                           "to commit what is written so far and detach it anyway", errno=errno.EBUSY)


def _umount_if_idle(mp: str) -> None:
    """Unmount as ``umount`` does: the kernel refuses (EBUSY) while a process has a file or its
    working directory on the mount, and then nothing has changed."""
    tool = shutil.which("fusermount3") or "fusermount3"
    res = subprocess.run([tool, "-u", mp], capture_output=True, text=True)
    if res.returncode == 0:
        return
    if "busy" in res.stderr.lower():
        raise _busy_error(mp)
    raise MountError(f"cannot unmount {mp}: {res.stderr.strip() or res.returncode}", errno=errno.EBUSY)


def unmount(mountpoint: str, timeout: float = UNMOUNT_TIMEOUT, *, force: bool = False) -> None:
    """Unmount and return once the workspace is closed (data committed, session ended).

    A mount that processes still use (open files, working directories) is refused with EBUSY and
    the processes named, as ``umount`` does. ``force=True`` detaches it anyway after committing
    what its open files hold; their later calls fail with ENOTCONN."""
    mp = os.path.abspath(mountpoint)
    if mount_entry(mp) is None:
        raise MountError(f"path {mp} is not mounted", errno=errno.EINVAL)
    state = _read_state(mp)
    pid = state.get("supervisor") if state else None
    if pid and not _is_supervisor(pid, mp):
        pid = None  # a stale state file: that pid is now someone else
    if pid and not force:
        # The kernel unmount ends the FUSE loop; the child then commits and closes the volume.
        _umount_if_idle(mp)
        if not _wait_exit(pid, timeout):
            raise MountError(f"the mount process of {mp} (pid {pid}) did not exit within {timeout:.0f} s",
                             errno=errno.ETIMEDOUT)
        return
    if pid:
        try:
            os.kill(pid, signal.SIGTERM)  # libfuse ends its loop and detaches lazily
        except ProcessLookupError:
            pid = None
    if pid:
        if not _wait_exit(pid, timeout):
            raise MountError(f"the mount process of {mp} (pid {pid}) did not exit within {timeout:.0f} s",
                             errno=errno.ETIMEDOUT)
        if mount_entry(mp) is None:
            return
        # The supervisor was already gone (killed): what is left is a stale mount.
    stale = _stat_errno(mp) in (errno.ENOTCONN, errno.ECONNABORTED, errno.ETIMEDOUT)
    if stale or force:
        tool = shutil.which("fusermount3") or "fusermount3"
        res = subprocess.run([tool, "-uz", mp], capture_output=True, text=True)
        if res.returncode != 0:
            raise MountError(f"cannot unmount {mp}: {res.stderr.strip() or res.returncode}", errno=errno.EBUSY)
    else:
        _umount_if_idle(mp)
