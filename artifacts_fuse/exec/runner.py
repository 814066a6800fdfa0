"""``Executor``: run commands in a sandbox on one workspace, shared or as a transaction.

One ``Executor`` serves one open ``Volume`` (``vol.exec`` makes it on first use; the CLI and the
agent host make their own). It owns:

- the **warm mount**: the workspace mounted once through ``artifacts_fuse.mount`` under a private
  0700 directory and bound into every sandbox at ``/workspace`` (a per-run mount costs ~0.75 s;
  binding a live one costs nothing), unmounted by ``close()``. A caller that already has a mount
  of the same workspace passes ``mountpoint=`` and it is used instead. The warm mount's kernel
  caches are off (``entry_ttl = attr_ttl = 0``) so a command sees at once what the agent wrote a
  moment before through another frontend;
- the runs: ``run(argv, ...)`` snapshots the tree through the core, launches the sandbox
  (``sandbox.py``, ``process.py``; a pids cgroup for root runners, ``cgroup.py``; an overlay for
  transactions, ``overlay.py``), then lists what changed — or, for a transaction, commits it.

Runs are independent: several may run at once on one workspace (threads), each with its own
sandbox, limits and, for transactions, its own upper directory.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import msgspec

from artifacts_core.config import xdg_dir
from artifacts_core.errors import ArtifactsError, InvalidArgument, NotADirectory, ReadOnly
from artifacts_core.paths import canonicalize, join
from artifacts_core.types import Caller
from artifacts_fuse.exec import cgroup, overlay, process, sandbox
from artifacts_fuse.exec.changes import SNAPSHOT_LIMIT, Changes, Resolver, diff, snapshot
from artifacts_fuse.exec.errors import SandboxError, SandboxUnavailable
from artifacts_fuse.exec.policy import DEFAULT_LIMITS, Limits

#: The launcher's environment: a PATH for sh/unshare/bwrap and nothing else of the runner's.
LAUNCH_ENV = {"PATH": "/usr/bin:/bin"}
_JOIN_CGROUP = 'echo $$ > "$ARTIFACTS_CGROUP" || exit 125; unset ARTIFACTS_CGROUP; exec "$@"'


@dataclass
class ExecResult:
    """What a run did. ``stdout``/``stderr`` are bytes (``to_dict`` decodes them as UTF-8)."""

    exit_code: int
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool
    stderr_truncated: bool
    timed_out: bool
    duration: float
    mode: str  # "shared" or "transaction"
    created: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    changes_complete: bool = True
    changes_truncated: bool = False
    committed: bool | str | None = None  # transactions: True, False or "partial"
    conflicts: list[dict] = field(default_factory=list)
    commit_error: str | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and self.committed in (None, True)

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["stdout"] = self.stdout.decode("utf-8", "replace")
        d["stderr"] = self.stderr.decode("utf-8", "replace")
        d["duration_ms"] = round(self.duration * 1000, 1)
        del d["duration"]
        return d


def mount_settings_for(vol):
    """``MountSettings`` for the workspace ``vol`` is open on (from ``vol.source``), with the
    kernel caches off (see the module note)."""
    from artifacts_fuse import MountSettings

    src = getattr(vol, "source", None)
    if src is None:
        raise InvalidArgument("this volume does not say how it was opened (vol.source), so it cannot be mounted",
                              hint="open it with artifacts_core.open_volume, or pass mountpoint=")
    config = msgspec.structs.replace(src.config, entry_ttl=0.0, attr_ttl=0.0)
    return MountSettings(meta_url=src.meta_url, key_prefix=src.key_prefix, workspace=vol.setting.name,
                         storage_url=src.storage_url, config=config, require_aof=src.require_aof)


class Executor:
    def __init__(self, vol, *, mountpoint: str | None = None, limits: Limits = DEFAULT_LIMITS,
                 work_dir: str | None = None, snapshot_limit: int = SNAPSHOT_LIMIT, mount_settings=None) -> None:
        self.vol = vol
        self.limits = limits.check()
        self.work_dir = work_dir or str(xdg_dir("state") / "exec")
        self.snapshot_limit = snapshot_limit
        self._given_mount = mountpoint
        self._mount_settings = mount_settings
        self._warm: str | None = None
        self._lock = threading.Lock()
        self._closed = False
        #: Who commits a transaction's files: the runner's own uid, as the mount's files it wrote.
        self.caller = Caller(os.getuid(), os.getgid())

    # -- the warm mount ------------------------------------------------------------------------

    def mountpoint(self) -> str:
        """The workspace's mount the sandboxes bind (made on first use)."""
        from artifacts_fuse import is_mounted, mount

        with self._lock:
            if self._closed:
                raise InvalidArgument("this executor is closed")
            if self._given_mount:
                if not is_mounted(self._given_mount):
                    raise InvalidArgument(f"{self._given_mount} is not mounted",
                                          hint="mount the workspace there, or let the executor mount it")
                return self._given_mount
            if self._warm is None:
                os.makedirs(self.work_dir, mode=0o700, exist_ok=True)
                mp = tempfile.mkdtemp(prefix="mnt-", dir=self.work_dir)
                try:
                    mount(self._mount_settings or mount_settings_for(self.vol), mp)
                except BaseException:
                    os.rmdir(mp)
                    raise
                self._warm = mp
            return self._warm

    def close(self) -> None:
        from artifacts_fuse import is_mounted, unmount

        with self._lock:
            self._closed = True
            mp, self._warm = self._warm, None
        if mp is not None:
            if is_mounted(mp):
                # The executor's own mount: whatever still holds it is a sandbox being torn down.
                unmount(mp, force=True)
            with contextlib.suppress(OSError):
                os.rmdir(mp)

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- runs ----------------------------------------------------------------------------------

    def run(self, argv: Sequence[str], *, stdin: bytes | str | None = None, timeout: float | None = None,
            max_output: int | None = None, isolated: bool = False, cwd: str = "",
            env: dict[str, str] | None = None, network: bool | None = None, limits: Limits | None = None,
            on_output: Callable[[str, bytes], None] | None = None) -> ExecResult:
        """Run ``argv`` in a sandbox with the workspace at /workspace (``cwd`` inside it).
        ``isolated``: a transaction (committed on exit 0 unless it conflicts)."""
        argv = list(argv)
        if not argv or not all(isinstance(a, str) and "\0" not in a for a in argv):
            raise InvalidArgument("the command must be a non-empty list of strings without NUL bytes")
        lim = (limits or self.limits).with_(timeout=timeout, max_output=max_output, network=network).check()
        if isinstance(stdin, str):
            stdin = stdin.encode()
        env = sandbox.check_env(env)
        if isolated and self.vol.read_only:
            raise ReadOnly("a transaction cannot commit to a read-only workspace")
        sandbox.probe()
        rel = join(canonicalize(cwd)).lstrip("/") if cwd else ""
        if rel:
            e = Resolver(self.vol.vfs).entry(rel)
            if e is None or e.kind != "dir":
                raise NotADirectory("the working directory is not a directory of the workspace", path=rel)
        mp = self.mountpoint()
        before = snapshot(self.vol.vfs, limit=self.snapshot_limit)
        if isolated and before is None:
            raise ArtifactsError(f"the workspace has more than {self.snapshot_limit} entries, too many for a "
                                 "transaction's conflict check", hint="run it shared, or raise snapshot_limit")
        prefix: list[str] = []
        launch_env = dict(LAUNCH_ENV)
        group = cgroup.PidsGroup(lim.processes) if cgroup.needed() else None
        run_dir = None
        try:
            if group is not None:
                prefix += ["/bin/sh", "-c", _JOIN_CGROUP, "sh"]
                launch_env["ARTIFACTS_CGROUP"] = group.procs_file
            workspace_dir = mp
            if isolated:
                run_dir = overlay.RunDir(self.work_dir)
                steps, extra = overlay.launch_prefix(mp, run_dir)
                prefix += steps
                launch_env.update(extra)
                workspace_dir = run_dir.merged
            cmd = sandbox.build(workspace_dir, argv, lim, cwd=rel, env=env)
            try:
                done = process.run(cmd, prefix=prefix, env=launch_env, stdin=stdin, timeout=lim.timeout,
                                   max_output=lim.max_output, on_output=on_output,
                                   kill_extra=group.kill_all if group is not None else None)
            except SandboxError as e:
                if overlay.MOUNT_FAILED in str(e):
                    raise SandboxUnavailable(f"overlayfs refused to stack on the workspace mount: {e}",
                                             hint="transactions need overlayfs (Linux >= 5.11 for non-root "
                                                  "runners) and an upper directory on ext4/xfs/btrfs") from e
                raise
            if group is not None:
                group.kill_all()
            result = ExecResult(done.exit_code, done.stdout, done.stderr, done.stdout_truncated,
                                done.stderr_truncated, done.timed_out, done.duration,
                                "transaction" if isolated else "shared")
            if isolated:
                assert run_dir is not None and before is not None  # made and checked above for a transaction
                self._finish_transaction(result, run_dir, before)
            else:
                self._list_changes(result, diff(before, snapshot(self.vol.vfs, limit=self.snapshot_limit)))
            return result
        finally:
            if group is not None:
                group.remove()
            if run_dir is not None:
                run_dir.remove()

    @staticmethod
    def _list_changes(result: ExecResult, changes: Changes) -> None:
        result.created, result.changed, result.deleted = changes.created, changes.changed, changes.deleted
        result.changes_complete, result.changes_truncated = changes.complete, changes.truncated

    def _finish_transaction(self, result: ExecResult, run_dir: overlay.RunDir, before: dict) -> None:
        plan = overlay.read_upper(run_dir.upper, before)
        summary = plan.summary(before)
        self._list_changes(result, Changes(summary["created"], summary["changed"], summary["deleted"]))
        if result.exit_code != 0 or result.timed_out:
            result.committed = False
            return
        outcome = overlay.commit(plan, before, self.vol, self.caller)
        result.committed = outcome.committed
        result.conflicts = outcome.conflicts
        result.commit_error = outcome.error
