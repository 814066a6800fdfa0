"""The two processes behind a background mount: the supervisor and the FUSE-serving child.

```
caller (artifacts mount)        supervisor ("artifacts mount <ws> <path>")       child (python -m artifacts_fuse serve)
  checks the mountpoint           own session, cwd /                             opens the volume, mounts FUSE
  spawns the supervisor --------> spawns the child, PDEATHSIG=SIGKILL ---------> init from the kernel -> "ready" on the pipe
  waits on the ready pipe         forwards SIGTERM/SIGINT/SIGHUP                 on exit of the FUSE loop: unmounted,
  <------------------------------------------------------------------ "ready"      volume closed (data committed, session ended)
  returns                         exits with the child's status
```

Settings travel as JSON on stdin (caller -> supervisor -> child), never in argv or the environment,
so Redis passwords and S3 keys never show in ``ps`` (the child puts the S3 keys into its own
environment after start, which ``/proc/<pid>/environ`` does not show). The ready pipe is an
inherited descriptor whose number is in ``ARTIFACTS_FUSE_READY_FD``; the child writes ``ready`` or
``error: <message>`` to it, and the caller reads until every writer has closed it, so a child that
dies early ends the wait at once.

A supervisor killed with SIGKILL takes the child with it (PDEATHSIG): the kernel mount stays,
stale (ENOTCONN), and the next mount explains how to clear it — as SPEC.md §5.3 describes.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from typing import TYPE_CHECKING

import msgspec

from artifacts_core.config import VolumeConfig
from artifacts_fuse.mountinfo import mount_entry, state_file

if TYPE_CHECKING:
    from artifacts_orchestrator.renewal import SessionRenewer

log = logging.getLogger("artifacts.fuse")

READY_ENV = "ARTIFACTS_FUSE_READY_FD"
PYTHON_ENV = "ARTIFACTS_FUSE_PYTHON"
#: FUSE worker threads: each blocked F_SETLKW / flock wait holds one, so 256 lets hundreds of
#: waiters block while other requests still find a thread; libfuse starts threads only on demand.
MAX_THREADS = 256
_PR_SET_PDEATHSIG = 1
#: How long the child may take to commit and close after the unmount: the client's own retries
#: ride out a Redis or S3 restart within this, and ``unmount`` waits a little longer (120 s).
CLOSE_TIMEOUT = 100.0


class MountSettings(msgspec.Struct, kw_only=True):
    """What the FUSE child needs to open the volume. ``env`` carries storage credentials
    (``ARTIFACTS_S3_*``) to the child through the settings pipe."""

    meta_url: str
    key_prefix: str
    workspace: str
    storage_url: str | None = None
    profile: str = "interactive"
    config: VolumeConfig | None = None
    require_aof: bool = True
    env: dict[str, str] = {}
    #: The session's renewal (docs/orchestrator.md): the orchestrator's URL, the renewal token
    #: (a secret: it travels only through the settings pipe) and the TTL it was issued with.
    #: Empty: nothing renews the session (a volume opened with full rights has none).
    renewal_url: str = ""
    renewal_token: str = ""
    renewal_ttl: float = 0.0


class ChildRequest(msgspec.Struct, kw_only=True):
    settings: MountSettings
    mountpoint: str
    read_only: bool = False
    log_path: str = ""


def _open_private(path: str, flags: int) -> int:
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fd = os.open(path, flags | os.O_CREAT, 0o600)
    os.fchmod(fd, 0o600)
    return fd


# -- supervisor ----------------------------------------------------------------------------------

def _pdeathsig() -> None:  # runs in the child between fork and exec
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def write_state(request: ChildRequest, child: int | None) -> str:
    """Record this process as the mount's supervisor (a foreground mount serves itself) so that
    ``unmount`` can find it and wait until it has committed and exited; returns the file."""
    state = str(state_file(request.mountpoint))
    with contextlib.suppress(OSError):
        fd = _open_private(state, os.O_WRONLY | os.O_TRUNC)
        os.write(fd, json.dumps({"supervisor": os.getpid(), "child": child, "mountpoint": request.mountpoint,
                                 "workspace": request.settings.workspace}).encode())
        os.close(fd)
    return state


def supervise() -> int:
    """Entry of the supervisor process: start the child, relay signals, wait, clean up."""
    os.chdir("/")
    payload = sys.stdin.buffer.read()
    request = msgspec.json.decode(payload, type=ChildRequest)
    ready_fd = int(os.environ.pop(READY_ENV))
    python = os.environ.get(PYTHON_ENV) or sys.executable
    env = dict(os.environ, **{READY_ENV: str(ready_fd)})
    log_fd = _open_private(request.log_path, os.O_WRONLY | os.O_APPEND)
    try:
        child = subprocess.Popen([python, "-m", "artifacts_fuse", "serve", request.mountpoint],
                                 stdin=subprocess.PIPE, stdout=log_fd, stderr=log_fd, env=env,
                                 pass_fds=(ready_fd,), preexec_fn=_pdeathsig)
    except OSError as e:
        os.write(ready_fd, f"error: cannot start the FUSE process: {e}\n".encode())
        return 1
    os.close(ready_fd)
    os.close(log_fd)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: child.send_signal(signum))
    state = write_state(request, child.pid)
    assert child.stdin is not None  # stdin=PIPE
    child.stdin.write(payload)
    child.stdin.close()
    rc = child.wait()
    with contextlib.suppress(OSError):
        os.unlink(state)
    return rc


# -- the FUSE-serving child ----------------------------------------------------------------------

def setup_logging(stream=None) -> None:
    logging.basicConfig(level=logging.INFO, stream=stream or sys.stderr,
                        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")


def serve(request: ChildRequest, ready=None) -> int:
    """Open the volume, mount it and serve until unmounted; then commit and close the volume.
    ``ready(message)`` is called once: ``"ready"`` when the kernel mount is up, or ``"error: ..."``."""
    from artifacts_core.volume import open_volume
    from artifacts_fuse.adapter import MAX_IO, Adapter
    from artifacts_fuse.handles import FileHandlers
    from artifacts_fuse.lowlevel import Session
    from artifacts_fuse.notify import Invalidator

    told: list[str] = []

    def tell(message: str) -> None:
        if not told and ready is not None:
            told.append(message)
            ready(message)

    s = request.settings
    os.environ.update(s.env)
    # Only the main thread may take SIGTERM/SIGINT/SIGHUP: libfuse's handler ends the loop by
    # interrupting the main thread's wait; taken by one of the volume's threads, it would leave
    # the loop running until the next request. Threads inherit the mask at creation.
    stop_signals = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    try:
        vol = open_volume(s.meta_url, s.storage_url, key_prefix=s.key_prefix, profile=s.profile,
                          config=s.config, read_only=request.read_only, require_aof=s.require_aof,
                          mountpoint=request.mountpoint)
    except Exception as e:
        log.error("cannot open workspace %s: %s", s.workspace, e)
        tell(f"error: cannot open workspace {s.workspace}: {e}")
        return 1
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    cfg = vol.config
    renewer = _start_renewal(s)

    def mounted() -> None:
        """Runs once libfuse has INIT: a stat waits for the INIT answer, then the mount is live."""
        try:
            os.stat(request.mountpoint)
            entry = mount_entry(request.mountpoint)
        except OSError as e:
            entry, why = None, str(e)
        else:
            why = "it is not in /proc/self/mountinfo"
        if entry is not None and entry["fstype"] == "fuse.artifacts":
            tell("ready")
        else:
            tell(f"error: the FUSE mount of {request.mountpoint} did not come up: {why}")

    adapter = Adapter(vol.vfs, entry_ttl=cfg.entry_ttl, attr_ttl=cfg.attr_ttl, on_ready=mounted)
    handlers = FileHandlers(vol.vfs, adapter)
    options = [f"fsname=Artifacts:{_opt_escape(s.workspace)}", "subtype=artifacts", "default_permissions",
               f"max_read={MAX_IO}"]
    if os.geteuid() == 0:
        options.append("allow_other")
    if request.read_only:
        options.append("ro")
    log.info("mounting workspace %s on %s", s.workspace, request.mountpoint)
    rc = 0
    session = invalidator = None
    try:
        session = Session([adapter, handlers], request.mountpoint, options, max_threads=MAX_THREADS)
        session.mount()
        invalidator = Invalidator(session, adapter.known)
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
        try:
            invalidator.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        vol.vfs.changes.add_listener(invalidator.on_change)
        res = session.loop()
        if session.failure is not None:
            raise session.failure
        # A loop ended by SIGTERM/SIGINT/SIGHUP reports the signal: a clean end.
        log.info("FUSE loop of %s ended (%d)", request.mountpoint, res)
    except Exception as e:
        if told:  # it was mounted and served
            log.error("FUSE loop of %s failed: %s", request.mountpoint, e)
            rc = 1
        else:
            log.error("FUSE mount of %s failed: %s", request.mountpoint, e)
            tell(f"error: the FUSE mount of {request.mountpoint} failed ({e})")
            rc = 1
    finally:
        if invalidator is not None:
            invalidator.stop()
        if session is not None:
            session.close()
        log.info("unmounted %s; committing and closing the workspace", request.mountpoint)
        rc = _close(vol, s.workspace) or rc
        if renewer is not None:
            renewer.stop()
    return rc


def _start_renewal(s: MountSettings) -> SessionRenewer | None:
    """The session renewer beside the mount's I/O (artifacts_orchestrator/renewal.py), if the
    session has a renewal token."""
    if not s.renewal_token:
        return None
    from artifacts_orchestrator.renewal import RenewalSettings, SessionRenewer

    return SessionRenewer(RenewalSettings(url=s.renewal_url, token=s.renewal_token, ttl=s.renewal_ttl)).start()


def _opt_escape(value: str) -> str:
    """A value inside ``-o a=b,c=d``: libfuse's option parser takes backslash escapes."""
    return value.replace("\\", "\\\\").replace(",", "\\,")


def _close(vol, workspace: str) -> int:
    """Close the volume (commit, end the session), bounded: with Redis or S3 gone for good the
    client would retry forever, and a process that never exits blocks ``unmount``."""
    errors: list[BaseException] = []

    def close() -> None:
        try:
            vol.close()
        except Exception as e:
            errors.append(e)

    t = threading.Thread(target=close, name="artifacts-close", daemon=True)
    t.start()
    t.join(CLOSE_TIMEOUT)
    if t.is_alive():
        log.error("workspace %s could not be closed within %.0f s (metadata or storage unreachable); "
                  "data not yet committed is lost", workspace, CLOSE_TIMEOUT)
        return 1
    if errors:
        log.error("closing workspace %s failed: %s", workspace, errors[0])
        return 1
    log.info("workspace %s closed", workspace)
    return 0


def serve_child() -> int:
    """Entry of ``python -m artifacts_fuse serve``: settings on stdin, ready fd in the environment."""
    setup_logging()
    request = msgspec.json.decode(sys.stdin.buffer.read(), type=ChildRequest)
    ready_fd = int(os.environ.pop(READY_ENV))

    def ready(message: str) -> None:
        with contextlib.suppress(OSError):
            os.write(ready_fd, message.encode() + b"\n")
            os.close(ready_fd)

    try:
        return serve(request, ready)
    finally:
        with contextlib.suppress(OSError):
            os.close(ready_fd)
