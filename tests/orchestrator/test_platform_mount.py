
"""Seed 003's platform quickstart end to end on the real local stack (orchestrator over loopback
HTTP, Redis with an ACL file, SeaweedFS with IAM, FUSE): the platform's backend creates a workspace
and a mount ticket; the "runtime" — a separate process with its own XDG directories and no API key
in its environment — mounts with the ticket file; the agent writes through the mount; the platform
revokes and the mount fails with EACCES within the bound; the workspace is deleted.

Also: a loose ticket file is refused; a ticket mounts once; a ticket cannot mount another
workspace; an ``ro`` ticket cannot write; an expired ticket is refused; the platform's API key is in
none of the runtime's files, process arguments or environments.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest
from orchestrator_stack import (  # noqa: F401 - fixtures
    _config,
    _reset_clock,
    create_and_format,
    s3_env,
    wait_deleted,
)

from artifacts_core.volume import open_volume
from artifacts_fuse import is_mounted, unmount

pytestmark = [pytest.mark.redis, pytest.mark.s3]

#: The revocation bound asserted here: the target is about one second (DESIGN.md §10); tests assert
#: three times the target (redis-py retrying a refused AUTH once made it 4 s); the figure itself
#: comes from benchmarks/bench_revocation.py.
REVOCATION_BOUND = 3.0
#: The ``artifacts`` console script of this environment.
ARTIFACTS = str(Path(sys.executable).parent / "artifacts")


class Runtime:
    """A customer runtime: its own HOME and XDG directories, a ticket file, no platform key."""

    def __init__(self, root: Path, orchestrator_url: str) -> None:
        self.root = root
        self.ticket_file = root / "run" / "tonbo" / "artifacts" / "mount-ticket.json"
        self.env = {"PATH": os.environ["PATH"], "HOME": str(root / "home"), "LANG": "C.UTF-8",
                    "XDG_CONFIG_HOME": str(root / "config"), "XDG_CACHE_HOME": str(root / "cache"),
                    "XDG_STATE_HOME": str(root / "state")}
        for d in ("home", "config", "cache", "state"):
            (root / d).mkdir(parents=True, exist_ok=True)
        self.ticket_file.parent.mkdir(parents=True, exist_ok=True)
        self.ticket_file.parent.chmod(0o700)
        self.mounts: list[str] = []

    def inject(self, issued, mode: int = 0o600) -> None:
        """What the platform's launcher does (seed 003 step 7)."""
        self.ticket_file.unlink(missing_ok=True)
        fd = os.open(self.ticket_file, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(msgspec.json.encode(issued.mount_ticket))
        self.ticket_file.chmod(mode)

    def mount(self, mountpoint: Path, workspace: str | None = None) -> subprocess.CompletedProcess:
        """``artifacts mount --ticket-file FILE [WORKSPACE] MOUNTPOINT`` as a separate process (the
        venv's console script, so PATH needs nothing of ours)."""
        mountpoint.mkdir(parents=True, exist_ok=True)
        self.mounts.append(str(mountpoint))
        cmd = [ARTIFACTS, "mount", "--ticket-file", str(self.ticket_file),
               *([workspace] if workspace else []), str(mountpoint)]
        return subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=120,
                              cwd=str(self.root / "home"))

    def mount_pids(self) -> list[int]:
        pids = []
        for state in (self.root / "state" / "tonbo" / "artifacts" / "mounts").glob("*.json"):
            info = json.loads(state.read_text())
            pids += [info["supervisor"], info["child"]]
        return pids

    def files(self) -> list[Path]:
        return [p for p in self.root.rglob("*") if p.is_file() and not p.is_symlink()]

    def unmount_all(self) -> None:
        for mp in self.mounts:
            if is_mounted(mp):
                with contextlib.suppress(Exception):
                    unmount(mp, timeout=30)
            if is_mounted(mp):
                subprocess.run(["fusermount3", "-uz", mp], capture_output=True)


@pytest.fixture
def rt(stack, tmp_path):
    r = Runtime(tmp_path / "runtime", stack["server"].url)
    yield r
    r.unmount_all()


def first_eacces(mp: Path, timeout: float) -> float:
    """Stat a fresh name in the mount (negative lookups are never cached, so each goes to the
    FUSE process) until one fails with EACCES; seconds it took."""
    started = time.monotonic()
    n = 0
    while time.monotonic() - started < timeout:
        n += 1
        try:
            os.stat(mp / f"probe-{n}")
        except FileNotFoundError:
            continue
        except PermissionError:
            return time.monotonic() - started
    raise AssertionError(f"no EACCES within {timeout} s after revocation")


def test_platform_quickstart_end_to_end(stack, api, monkeypatch, rt, tmp_path):
    # Step 5 on the platform's backend: `artifacts workspace create task-4711` with TONBO_API_KEY.
    backend = tmp_path / "backend"
    env = {"PATH": os.environ["PATH"], "HOME": str(backend), "TONBO_API_KEY": api._api_key,
           "ARTIFACTS_ORCHESTRATOR_URL": api.base_url, **{f"XDG_{d}_HOME": str(backend / d.lower())
                                                           for d in ("CONFIG", "CACHE", "STATE")}}
    made = subprocess.run([ARTIFACTS, "workspace", "create", "task-4711"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    assert api.workspaces.get("task-4711").status == "active"
    # Step 6: a one-hour rw ticket for the task (tenant and runtime grant made on the way).
    issued = api.platform.create_mount_ticket("acme", "task-4711", workspace=f"{api.handle}/task-4711",
                                              mode="rw", ttl_seconds=3600)
    # Step 7, done wrong first: a world-readable ticket file is refused before it is used.
    rt.inject(issued, mode=0o644)
    bad = rt.mount(tmp_path / "mnt" / "work")
    assert bad.returncode == 2 and "accessible by group or others" in bad.stderr and "chmod 600" in bad.stderr
    assert not is_mounted(str(tmp_path / "mnt" / "work"))
    rt.ticket_file.chmod(0o600)

    # Step 8: mount in the runtime, and the agent uses it like a local directory.
    work = tmp_path / "mnt" / "work"
    done = rt.mount(work)
    assert done.returncode == 0, done.stderr
    assert is_mounted(str(work))
    (work / "output.txt").write_text("hello")
    (work / "big.bin").write_bytes(os.urandom(3 << 20))  # past the inline limit: blocks in S3
    assert (work / "output.txt").read_text() == "hello"
    sessions = api.sessions.list("task-4711").sessions
    assert len(sessions) == 1 and sessions[0].mountpoint == str(work) and sessions[0].runtime_id == "task-4711"
    assert sessions[0].ticket_id == issued.ticket_id and sessions[0].grant_id == issued.grant.id
    # What the agent wrote is in the workspace: the platform reads it back with a session of its own.
    own = api.sessions.create("task-4711", mode="ro")
    s3_env(monkeypatch, own.storage.credentials)
    with open_volume(own.meta.url, own.storage.url, key_prefix=own.meta.key_prefix, read_only=True,
                     config=_config(tmp_path / "backend-cache")) as vol:
        with vol.open("output.txt") as f:
            assert f.read() == "hello"
        assert vol.stat("big.bin").st_size == 3 << 20
    api.sessions.revoke("task-4711", own.session.id)

    # The platform's key is nowhere in the runtime: files, process arguments, environments.
    key = api._api_key.encode()
    pids = rt.mount_pids()
    assert len(pids) == 2
    for pid in pids:
        for what in ("cmdline", "environ"):
            blob = Path(f"/proc/{pid}/{what}").read_bytes()
            assert key not in blob and b"tbo_" not in blob, f"/proc/{pid}/{what}"
        assert b"redis://" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    files = rt.files()
    assert rt.ticket_file in files and any("logs" in str(p) for p in files)
    for p in files:
        assert key not in p.read_bytes(), p
    for p in files:
        if "state" in p.parts or "logs" in p.parts:
            assert p.stat().st_mode & 0o077 == 0, f"{p} is {oct(p.stat().st_mode)}"

    # A ticket mounts once.
    again = rt.mount(tmp_path / "mnt" / "again")
    assert again.returncode == 5 and "ticket_used" in again.stderr

    # Step 9: revoke the runtime; the mount fails with EACCES on its next operation.
    api.platform.revoke_access_grants(tenant_slug="acme", runtime_id="task-4711")
    took = first_eacces(work, REVOCATION_BOUND)
    assert took < REVOCATION_BOUND
    with pytest.raises(PermissionError):
        (work / "after.txt").write_text("no")
    assert api.sessions.list("task-4711").sessions == []
    rt.unmount_all()
    api.workspaces.delete(f"{api.handle}/task-4711")
    assert wait_deleted(api, "task-4711").status == "deleted"


def test_a_runtime_ticket_cannot_mount_another_workspace_and_expired_tickets_are_refused(
        stack, api, monkeypatch, rt, tmp_path):
    create_and_format(api, "mine", monkeypatch)
    create_and_format(api, "other", monkeypatch)
    rt.inject(api.platform.create_mount_ticket("acme", "r1", workspace="mine", ttl_seconds=60))
    res = rt.mount(tmp_path / "m1", f"{api.handle}/other")
    assert res.returncode == 3 and "forbidden" in res.stderr and f"{api.handle}/mine" in res.stderr
    assert not is_mounted(str(tmp_path / "m1"))
    assert api.sessions.list("other").sessions == []
    stack["clock"].offset = 61  # the orchestrator's clock: the 60-second ticket has expired
    res = rt.mount(tmp_path / "m2")
    assert res.returncode == 3 and "ticket_expired" in res.stderr
    stack["clock"].offset = 0
    res = rt.mount(tmp_path / "m3")  # the refusals above did not consume the ticket
    assert res.returncode == 0, res.stderr


def test_an_ro_ticket_mounts_read_only_and_cannot_write(stack, api, monkeypatch, rt, tmp_path):
    create_and_format(api, "docs", monkeypatch)
    writer = Runtime(tmp_path / "writer", stack["server"].url)
    try:
        writer.inject(api.platform.create_mount_ticket("acme", "w", workspace="docs", ttl_seconds=60))
        assert writer.mount(tmp_path / "w").returncode == 0
        (tmp_path / "w" / "readme.txt").write_text("read me")
        writer.unmount_all()
    finally:
        writer.unmount_all()
    rt.inject(api.platform.create_mount_ticket("acme", "reader", workspace="docs", mode="ro", ttl_seconds=60))
    res = rt.mount(tmp_path / "r")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "r" / "readme.txt").read_text() == "read me"
    for attempt in (lambda: (tmp_path / "r" / "new.txt").write_text("x"),
                    lambda: (tmp_path / "r" / "readme.txt").write_text("changed"),
                    lambda: (tmp_path / "r" / "d").mkdir()):
        with pytest.raises(OSError) as e:
            attempt()
        assert e.value.errno in (errno.EROFS, errno.EACCES)
    assert (tmp_path / "r" / "readme.txt").read_text() == "read me"


@pytest.mark.slow
def test_a_ticket_mount_renews_its_session_and_outlives_it(stack, api, monkeypatch, rt, tmp_path):
    """With 2-second ticket sessions and the reaper running all along, a real mount keeps working
    for three lifetimes (its process renews the session with the renewal token it got through
    its settings pipe, never argv or the environment); revoking the grant still ends it."""
    create_and_format(api, "months", monkeypatch)
    stack["platform"].session_ttl = 2
    try:
        rt.inject(api.platform.create_mount_ticket("acme", "long", workspace="months", ttl_seconds=60))
        mp = tmp_path / "m"
        res = rt.mount(mp)
        assert res.returncode == 0, res.stderr
        first = api.sessions.list("months").sessions[0]
        started, n = time.monotonic(), 0
        while time.monotonic() - started < 6.0:
            stack["service"].reap()
            (mp / f"f{n % 3}").write_text(str(n))
            assert (mp / f"f{n % 3}").read_text() == str(n)
            n += 1
            time.sleep(0.2)
        now = api.sessions.list("months").sessions
        assert [s.id for s in now] == [first.id] and now[0].expires_at > first.expires_at + 3
        for pid in rt.mount_pids():
            for what in ("cmdline", "environ"):
                assert b"tbr_" not in Path(f"/proc/{pid}/{what}").read_bytes()
        api.platform.revoke_access_grants(tenant_slug="acme", runtime_id="long")
        assert first_eacces(mp, REVOCATION_BOUND) < REVOCATION_BOUND
    finally:
        stack["platform"].session_ttl = 7 * 24 * 3600
