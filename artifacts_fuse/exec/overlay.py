"""Transactions: a run on a private copy-on-write view of the workspace, committed on success.

How (bubblewrap 0.8 has no overlay options, so one step runs before it)::

    unshare [-U -r] -m --propagation private                      a private mount namespace
      sh: mount -t overlay -o lowerdir=<warm mount>,upperdir=U,workdir=W  <run>/merged
      exec bwrap ... --bind <run>/merged /workspace ...           the usual sandbox on top

The lower layer is the workspace's warm FUSE mount (live: the command reads other writers' files
as they are now, unless it changed them itself); every write lands in the upper directory, a
private 0700 directory on local disk. A root runner mounts the overlay in a private mount
namespace of the host user namespace (``trusted.overlay.*`` xattrs, any file owner); a non-root
runner inside its own user namespace (``userxattr``, Linux ≥ 5.11; files it does not own map to
nobody and cannot be copied up).

After the run, ``read_upper`` turns the upper directory into a plan: regular files and symlinks
are written, directories created (mode kept), whiteouts (character devices 0:0) delete what the
lower had at that path, opaque directories (``*.overlay.opaque = y``) replace the lower's
directory, so what it had and the upper has not is deleted. A copied-up file whose size, mtime
and mode equal the lower's (opened for writing, nothing written) is no change.

Commit (only when the command exited 0 and did not time out), ``commit()``:

1. conflict check, all paths before any write: every path the plan touches must be as it was at
   the run's start (same inode and change counter; absent if it was absent; a deleted directory's
   whole subtree unchanged). Any difference: nothing is written, the plan and the conflicts are
   returned;
2. apply in order — directories, files, symlinks, modes, then deletions (deepest first). Each
   file up to one chunk (64 MiB) is replaced by one Redis function call that checks its start
   version (compare-and-swap: a writer slipping in between the check and the write is caught
   and reported, and the rest is not applied); larger files are written to a temporary name and
   renamed over (checked in step 1 only).

The guarantee (docs/exec.md): all-or-nothing conflict detection before the first write;
each file replaced atomically; the commit as a whole is not one atomic step across files — a
concurrent writer racing the apply window (milliseconds) or a crash mid-apply can leave a
prefix of the plan applied, which the result reports (``committed: "partial"``, ``applied``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat as _stat
import tempfile
import uuid
from dataclasses import dataclass, field

from artifacts_core.errors import ABSENT, ArtifactsError, NotFound, VersionMismatch
from artifacts_core.types import CHUNK_SIZE, Caller
from artifacts_fuse.exec.changes import Entry, Resolver
from artifacts_fuse.exec.errors import SandboxUnavailable

_OPAQUE = ("trusted.overlay.opaque", "user.overlay.opaque")
#: Marker the launcher prints when the overlay mount fails (told apart from bwrap's errors).
MOUNT_FAILED = "artifacts-exec: the overlay mount failed"
#: Characters overlayfs's option parser treats specially in a path.
_UNSAFE = set(",:\\\n")


class RunDir:
    """``<work>/<random>/{upper,work,merged}``, private to the runner (0700)."""

    def __init__(self, base: str | None) -> None:
        if base:
            os.makedirs(base, mode=0o700, exist_ok=True)
        self.path = tempfile.mkdtemp(prefix="txn-", dir=base)
        self.upper = os.path.join(self.path, "upper")
        self.work = os.path.join(self.path, "work")
        self.merged = os.path.join(self.path, "merged")
        for d in (self.upper, self.work, self.merged):
            os.mkdir(d, 0o755)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def launch_prefix(lower: str, run: RunDir) -> tuple[list[str], dict[str, str]]:
    """The argv steps (and their environment) that mount the overlay before bwrap runs."""
    for p in (lower, run.upper, run.work):
        if _UNSAFE & set(p):
            raise SandboxUnavailable(f"path {p!r} cannot be an overlay layer (it contains , : or \\)",
                                     hint="use a work directory and mountpoint without those characters")
    root = os.getuid() == 0
    options = f"lowerdir={lower},upperdir={run.upper},workdir={run.work}" + ("" if root else ",userxattr")
    unshare = ["/usr/bin/unshare", "--mount", "--propagation", "private"]
    if not root:
        unshare[1:1] = ["--user", "--map-root-user"]
    script = (f'mount -t overlay artifacts-txn -o "$ARTIFACTS_OVERLAY" "$ARTIFACTS_MERGED" '
              f'|| {{ echo "{MOUNT_FAILED}" >&2; exit 125; }}; unset ARTIFACTS_OVERLAY ARTIFACTS_MERGED; exec "$@"')
    env = {"ARTIFACTS_OVERLAY": options, "ARTIFACTS_MERGED": run.merged}
    return [*unshare, "/bin/sh", "-c", script, "sh"], env


# -- reading the upper directory -----------------------------------------------------------------

@dataclass
class Plan:
    """What a transaction would change, as workspace paths."""

    mkdirs: list[tuple[str, int]] = field(default_factory=list)  # (path, mode), parents first
    writes: list[tuple[str, str, int]] = field(default_factory=list)  # (path, upper file, mode)
    symlinks: list[tuple[str, str]] = field(default_factory=list)  # (path, target)
    chmods: list[tuple[str, int]] = field(default_factory=list)  # existing directories
    deletes: list[str] = field(default_factory=list)  # paths whose lower entry goes (subtrees too)
    skipped: list[str] = field(default_factory=list)  # fifos, sockets, devices: not stored

    def summary(self, start: dict[str, Entry]) -> dict[str, list[str]]:
        created: list[str] = []
        changed: list[str] = []
        deleted: list[str] = []
        for p, _ in self.mkdirs:
            (changed if p in start else created).append(p + "/")
        for p, *_ in self.writes + self.symlinks:
            (changed if p in start else created).append(p)
        for p, _ in self.chmods:
            changed.append(p + "/")
        for p in self.deletes:
            e = start.get(p)
            sub = [q for q in start if q.startswith(p + "/")]
            deleted += sorted(q + ("/" if start[q].kind == "dir" else "") for q in sub)
            deleted.append(p + ("/" if e is not None and e.kind == "dir" else ""))
        return {"created": sorted(created), "changed": sorted(changed), "deleted": sorted(set(deleted))}


def _is_opaque(path: str) -> bool:
    for name in _OPAQUE:
        with contextlib.suppress(OSError):
            if os.getxattr(path, name, follow_symlinks=False) == b"y":
                return True
    return False


def read_upper(upper: str, start: dict[str, Entry]) -> Plan:
    """The plan that makes the workspace look like the merged view (see the module note)."""
    plan = Plan()

    def walk(host_dir: str, rel: str) -> None:
        for name in sorted(os.listdir(host_dir)):
            host = os.path.join(host_dir, name)
            path = f"{rel}{name}"
            st = os.lstat(host)
            old = start.get(path)
            if _stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:  # whiteout
                if old is not None:
                    plan.deletes.append(path)
                continue
            if _stat.S_ISDIR(st.st_mode):
                mode = st.st_mode & 0o7777
                if old is None or old.kind != "dir":
                    if old is not None:
                        plan.deletes.append(path)
                    plan.mkdirs.append((path, mode))
                else:
                    if old.mode != mode:
                        plan.chmods.append((path, mode))
                    if _is_opaque(host):  # the lower's directory was replaced: drop what it had
                        present = set(os.listdir(host))
                        for q in start:
                            if q.startswith(path + "/") and "/" not in q[len(path) + 1:] \
                                    and q[len(path) + 1:] not in present:
                                plan.deletes.append(q)
                walk(host, path + "/")
                continue
            if old is not None and old.kind == "dir":
                plan.deletes.append(path)
                old = None
            if _stat.S_ISREG(st.st_mode):
                mode = st.st_mode & 0o7777
                if old is not None and old.kind == "file" and old.size == st.st_size \
                        and old.mtime_ns == st.st_mtime_ns and old.mode == mode:
                    continue  # copied up, never changed
                plan.writes.append((path, host, mode))
            elif _stat.S_ISLNK(st.st_mode):
                plan.symlinks.append((path, os.readlink(host)))
            else:
                plan.skipped.append(path)

    walk(upper, "")
    return plan


# -- conflict check and commit -------------------------------------------------------------------

@dataclass
class CommitResult:
    committed: bool | str  # True, False (conflict: nothing written) or "partial"
    conflicts: list[dict]
    applied: list[str]
    error: str | None = None


def _expected(path: str, start: dict[str, Entry], touched: set[str]) -> list[tuple[str, Entry | None]]:
    """(path, the entry it must have now) for every path the plan depends on."""
    out = [(path, start.get(path))]
    if path in start and start[path].kind == "dir" and path in touched:
        out += [(q, e) for q, e in start.items() if q.startswith(path + "/")]
    return out


def check(plan: Plan, start: dict[str, Entry], resolver: Resolver) -> list[dict]:
    """Every path the plan touches, compared with the run's start; [] when none changed."""
    conflicts: list[dict] = []
    deleted = set(plan.deletes)
    wanted: dict[str, Entry | None] = {}
    for p in [p for p, _ in plan.mkdirs] + [p for p, *_ in plan.writes] + [p for p, _ in plan.symlinks] \
            + [p for p, _ in plan.chmods] + plan.deletes:
        for q, e in _expected(p, start, deleted):
            wanted[q] = e
    for path, was in sorted(wanted.items()):
        now = resolver.entry(path)
        if not _same(was, now):
            conflicts.append({"path": path, "was": _describe(was), "now": _describe(now)})
    # a directory the run deletes must not have gained entries meanwhile
    for d in deleted:
        if d in start and start[d].kind == "dir":
            conflicts += _new_entries(d, start, resolver)
    return conflicts


def _new_entries(d: str, start: dict[str, Entry], resolver: Resolver) -> list[dict]:
    out: list[dict] = []
    try:
        ino = resolver.dir_ino(d)
    except (NotFound, NotADirectoryError):
        return out
    cursor = 0
    while True:
        page, cursor = resolver.vfs.readdir(ino, cursor, 1024, plus=True)
        for name, _child, _attr in page:
            q = f"{d}/{name}"
            if q not in start:
                out.append({"path": q, "was": None, "now": "created meanwhile"})
            elif start[q].kind == "dir":
                out += _new_entries(q, start, resolver)
        if not cursor:
            return out


def _same(was: Entry | None, now: Entry | None) -> bool:
    """Unchanged since the start? A directory's own counter moves with its entries, which are
    checked one by one, so two directories compare equal."""
    if was is None or now is None:
        return was is None and now is None
    if was.kind == "dir" == now.kind:
        return True
    return was.same_content(now)


def _describe(e: Entry | None) -> str | None:
    return None if e is None else f"{e.kind} {e.ino}-{e.gen}"


def commit(plan: Plan, start: dict[str, Entry], vol, caller: Caller) -> CommitResult:
    """Check, then apply the plan through the core. See the module note for the guarantee."""
    vfs = vol.vfs
    resolver = Resolver(vfs)
    conflicts = check(plan, start, resolver)
    if conflicts:
        return CommitResult(False, conflicts, [])
    applied: list[str] = []
    try:
        # a path whose kind changes (file -> dir and back) is deleted first
        kind_changes = [p for p in plan.deletes if p in {q for q, _ in plan.mkdirs}
                        | {q for q, *_ in plan.writes} | {q for q, _ in plan.symlinks}]
        for p in kind_changes:
            _delete(p, start, resolver, caller)
            applied.append(f"delete {p}")
        for path, mode in plan.mkdirs:
            parent, _, name = path.rpartition("/")
            vfs.mkdir(resolver.dir_ino(parent), name, mode, caller=caller)
            applied.append(f"mkdir {path}")
        for path, host, mode in plan.writes:
            _write(vol, resolver, path, host, mode, start.get(path) if path not in kind_changes else None,
                   caller)
            applied.append(f"write {path}")
        for path, target in plan.symlinks:
            parent, _, name = path.rpartition("/")
            pino = resolver.dir_ino(parent)
            if path in start and path not in kind_changes:
                vfs.unlink(pino, name, caller=caller)
            vfs.symlink(pino, name, target, caller=caller)
            applied.append(f"symlink {path}")
        for path, mode in plan.chmods:
            parent, _, name = path.rpartition("/")
            ino, _ = vfs.lookup(resolver.dir_ino(parent), name)
            vfs.setattr(ino, mode=mode, caller=caller)
            applied.append(f"chmod {path}")
        for p in sorted(set(plan.deletes) - set(kind_changes), key=lambda q: -q.count("/")):
            _delete(p, start, resolver, caller)
            applied.append(f"delete {p}")
    except VersionMismatch as e:
        return CommitResult("partial" if applied else False,
                            [{"path": e.path, "was": None, "now": "changed during the commit"}], applied,
                            error=str(e))
    except (ArtifactsError, OSError) as e:
        return CommitResult("partial" if applied else False, [], applied, error=f"{e.__class__.__name__}: {e}")
    return CommitResult(True, [], applied)


def _write(vol, resolver: Resolver, path: str, host: str, mode: int, was: Entry | None, caller: Caller) -> None:
    vfs = vol.vfs
    parent, _, name = path.rpartition("/")
    pino = resolver.dir_ino(parent)
    fd = os.open(host, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        size = os.fstat(fd).st_size
        if size <= CHUNK_SIZE:
            with os.fdopen(os.dup(fd), "rb") as f:
                data = f.read()
            expect = ABSENT if was is None else (was.ino, was.gen)
            try:
                ino, attr, _ = vfs.replace_content(pino, name, data, create=was is None, expect=expect,
                                                   perm=mode, caller=caller)
            except VersionMismatch as e:
                e.path = path
                raise
            if attr.mode & 0o7777 != mode:
                vfs.setattr(ino, mode=mode, caller=caller)
            return
        # Past one chunk: a temporary sibling, then an atomic rename over the name.
        tmp = f"{parent + '/' if parent else ''}.{name}.artifacts-txn-{uuid.uuid4().hex[:8]}"
        with vol.open(tmp, "wb") as out, os.fdopen(os.dup(fd), "rb") as f:
            shutil.copyfileobj(f, out, 4 << 20)
        vol.chmod(tmp, mode)
        vol.replace(tmp, path)
    finally:
        os.close(fd)


def _delete(path: str, start: dict[str, Entry], resolver: Resolver, caller: Caller) -> None:
    vfs = resolver.vfs
    e = start.get(path)
    if e is None:
        return
    if e.kind == "dir":
        children = sorted((q for q in start if q.startswith(path + "/")), key=lambda q: -q.count("/"))
        for q in children:
            parent, _, name = q.rpartition("/")
            with contextlib.suppress(NotFound):
                if start[q].kind == "dir":
                    vfs.rmdir(resolver.dir_ino(parent), name, caller=caller)
                else:
                    vfs.unlink(resolver.dir_ino(parent), name, caller=caller)
        parent, _, name = path.rpartition("/")
        vfs.rmdir(resolver.dir_ino(parent), name, caller=caller)
        resolver.forget(path)
        return
    parent, _, name = path.rpartition("/")
    try:
        vfs.unlink(resolver.dir_ino(parent), name, caller=caller)
    except NotFound:
        pass
    except OSError as err:
        if err.errno != errno.ENOENT:
            raise
