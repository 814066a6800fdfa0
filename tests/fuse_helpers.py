"""Shared pieces of the FUSE end-to-end tests: a formatted workspace per test module, real
mounts that are always taken down (unmount, then a lazy detach if anything is left), and bounded
waits on conditions (never sleeps for timing)."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import time
import uuid

from artifacts_core.config import profile_config
from artifacts_core.volume import format_volume
from artifacts_fuse import MountSettings, is_mounted, mount, unmount
from artifacts_fuse.mountinfo import mount_entry

TEST_BUCKET = "artifacts-test"
_ids = itertools.count(1)


def new_workspace(redis_url: str, s3_server, cache_dir: str, **config) -> MountSettings:
    """Format a fresh workspace (own key prefix and bucket prefix) and return mount settings."""
    n = next(_ids)
    prefix = f"{{u_{os.getpid()}_w_{700_000 + n}}}:"
    name = f"fuse{n}"
    storage = (f"s3://{TEST_BUCKET}/fuse-{uuid.uuid4().hex[:10]}?endpoint={s3_server.endpoint}"
               f"&region={s3_server.region}")
    env = {"ARTIFACTS_S3_ACCESS_KEY_ID": s3_server.access_key,
           "ARTIFACTS_S3_SECRET_ACCESS_KEY": s3_server.secret_key}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        format_volume(redis_url, storage, name, key_prefix=prefix, require_aof=False, trash_days=0)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return MountSettings(meta_url=redis_url, key_prefix=prefix, workspace=name, storage_url=storage,
                         require_aof=False, env=env,
                         config=profile_config("interactive", cache_dir=cache_dir, **config))


def force_unmount(mp: str, pid: int | None = None) -> None:
    """Take a mount down whatever state it is in (fixture finalizers)."""
    if pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not _alive(pid), 30, "the supervisor to exit", raise_=False)
    if is_mounted(mp):
        with contextlib.suppress(Exception):
            unmount(mp, timeout=30)
    if is_mounted(mp):
        subprocess.run(["fusermount3", "-uz", mp], capture_output=True)
    if pid and _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as f:
        return f.read().split(") ")[-1][0] != "Z"
    return False


@contextlib.contextmanager
def mounted(settings: MountSettings, mp: str, **kw):
    os.makedirs(mp, exist_ok=True)
    m = mount(settings, mp, **kw)
    try:
        yield m
    finally:
        force_unmount(mp, m.pid)


def wait_for(cond, timeout: float, what: str, *, raise_: bool = True) -> bool:
    """Poll ``cond`` until true (every 10 ms) or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    if raise_:
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")
    return False


def as_user(cmd: str, uid: int = 1000, gid: int = 1000, groups: str | None = None, **kw):
    """Run a shell command as an unprivileged user (setpriv), returning the CompletedProcess."""
    grp = ["--groups", groups] if groups else ["--clear-groups"]
    return subprocess.run(["setpriv", "--reuid", str(uid), "--regid", str(gid), *grp, "sh", "-c", cmd],
                          capture_output=True, text=True, timeout=60, **kw)


def sh(cmd: str, **kw) -> subprocess.CompletedProcess:
    res = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=kw.pop("timeout", 120), **kw)
    assert res.returncode == 0, f"{cmd!r} failed ({res.returncode}): {res.stderr[-2000:]}"
    return res


__all__ = ["as_user", "force_unmount", "mount_entry", "mounted", "new_workspace", "sh", "wait_for"]
