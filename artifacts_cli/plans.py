"""Copy plans between trees (``trees.py``): what ``fs cp``, ``sync`` and ``import`` run.

Copies are *planned*, then *run*: ``plan_copy`` / ``plan_sync`` walk the source (and the
destination) and return a list of ``Op``; ``run_plan`` carries them out in order with a progress
bar in bytes on a terminal (``-v`` names each step); a dry run only prints the plan. What a copy
keeps: file bytes, the permission bits of files and directories (a directory's last, so a
read-only one first receives its files), file modification times (``sync`` compares size and
mtime to the second), and symlinks as symlinks (their targets verbatim). Owners, hard links,
xattrs and special files (devices, FIFOs, sockets) are not copied; a special file is reported
as skipped.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from artifacts_cli.config import CliError
from artifacts_cli.errors import EXIT_USAGE
from artifacts_cli.output import counted, human_bytes
from artifacts_cli.trees import COPY_CHUNK, Location, entries, kind, lstat_or_none, reported

#: A destination directory a copy makes itself (``cp a new/``): rwxr-xr-x, as mkdir with umask 022.
NEW_DIR_MODE = 0o755


# -- plans --------------------------------------------------------------------------------------


@dataclass
class Op:
    """One step of a plan. ``action``: mkdir, copy, symlink, delete, or skip (a special file)."""

    action: str
    dst: Location
    src: Location | None = None
    size: int = 0
    mode: int = 0
    mtime_ns: int = 0
    target: str = ""
    replace: bool = False  # an entry of another kind is in the way: removed first

    def as_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"action": self.action, "path": self.dst.display}
        if self.src is not None:
            d["from"] = self.src.display
        if self.action == "copy":
            d["size"] = self.size
        if self.action == "symlink":
            d["target"] = self.target
        return d


@dataclass
class Plan:
    ops: list[Op] = field(default_factory=list)
    #: Files the destination already had as the source has them (``sync`` only).
    same: int = 0

    @property
    def bytes(self) -> int:
        return sum(op.size for op in self.ops if op.action == "copy")

    def count(self, action: str) -> int:
        return sum(1 for op in self.ops if op.action == action)


def _walk_source(src: Location, dst: Location, plan: Plan, st: os.stat_result, *, skip_same: bool) -> None:
    """Add what makes ``dst`` a copy of ``src`` (``st``: its lstat) to ``plan``. What ``dst``
    already holds decides the step: a directory is kept, an entry of another kind is replaced,
    and with ``skip_same`` a file of the same size and mtime (or a link to the same target) is
    left alone (``sync``)."""
    have = lstat_or_none(dst)
    k = kind(st)
    if k == "dir":
        if kind(have) != "dir":
            plan.ops.append(Op("mkdir", dst, src, mode=stat.S_IMODE(st.st_mode), replace=have is not None))
        for name in entries(src):
            child = src.child(name)
            with reported(child.display):
                cst = child.tree.stat(child.path, follow_symlinks=False)
            _walk_source(child, dst.child(name), plan, cst, skip_same=skip_same)
    elif k == "file":
        if skip_same and have is not None and kind(have) == "file" and have.st_size == st.st_size \
                and have.st_mtime_ns // 10**9 == st.st_mtime_ns // 10**9:
            plan.same += 1  # same size and mtime (to the second: what every store keeps)
            return
        plan.ops.append(Op("copy", dst, src, size=st.st_size, mode=stat.S_IMODE(st.st_mode),
                           mtime_ns=st.st_mtime_ns, replace=have is not None and kind(have) != "file"))
    elif k == "symlink":
        with reported(src.display):
            target = src.tree.readlink(src.path)
        if skip_same and kind(have) == "symlink":
            with contextlib.suppress(OSError):
                if dst.tree.readlink(dst.path) == target:
                    plan.same += 1
                    return
        plan.ops.append(Op("symlink", dst, src, target=target, replace=have is not None))
    else:
        plan.ops.append(Op("skip", dst, src))


def plan_copy(src: Location, dst: Location, *, recursive: bool) -> Plan:
    """``cp`` semantics: a source directory needs ``recursive``; into an existing directory
    ``dst`` (or one named with a trailing ``/``) the source goes under its own name; files are
    written over, directories that exist are kept; a symlink named on the command line is
    followed, one met inside a tree is copied as a link."""
    with reported(src.display):
        st = src.tree.stat(src.path)
    if stat.S_ISDIR(st.st_mode) and not recursive:
        raise CliError(f"{src.display} is a directory", "pass -r to copy a directory and what it holds",
                       exit_code=EXIT_USAGE, code="EISDIR")
    plan = Plan()
    if dst.display.endswith("/") and lstat_or_none(dst) is None:  # `cp a new/`: new is made
        plan.ops.append(Op("mkdir", dst, mode=NEW_DIR_MODE))
    if _is_dir(dst) or dst.display.endswith("/"):
        dst = dst.child(posixpath.basename(src.path.rstrip("/")) or "root")
    _walk_source(src, dst, plan, st, skip_same=False)
    return plan


def _is_dir(loc: Location) -> bool:
    try:
        return stat.S_ISDIR(loc.tree.stat(loc.path).st_mode)
    except OSError:
        return False


def plan_sync(src: Location, dst: Location, *, delete: bool) -> Plan:
    """Make ``dst`` hold what ``src`` holds (rsync's ``src/ dst``: the contents, not the
    directory itself): only files whose size or mtime differ are copied; ``delete`` removes what
    ``dst`` has and ``src`` has not."""
    with reported(src.display):
        st = src.tree.stat(src.path)
    plan = Plan()
    _walk_source(src, dst, plan, st, skip_same=True)
    if delete and stat.S_ISDIR(st.st_mode):
        plan.ops.extend(_extra(src, dst))
    return plan


def _extra(src: Location, dst: Location) -> list[Op]:
    """Deletions: what ``dst`` holds below itself that ``src`` does not (deepest last decided)."""
    if kind(lstat_or_none(dst)) != "dir":
        return []
    ops: list[Op] = []
    for name in entries(dst):
        s, d = src.child(name), dst.child(name)
        sst, dst_st = lstat_or_none(s), lstat_or_none(d)
        if sst is None:
            ops.append(Op("delete", d, size=0, replace=kind(dst_st) == "dir"))
        elif kind(sst) == "dir" and kind(dst_st) == "dir":
            ops.extend(_extra(s, d))
    return ops


# -- running a plan -----------------------------------------------------------------------------


@dataclass
class Totals:
    files: int = 0
    dirs: int = 0
    links: int = 0
    deleted: int = 0
    skipped: int = 0
    bytes: int = 0
    seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {"files": self.files, "directories": self.dirs, "symlinks": self.links, "deleted": self.deleted,
                "skipped": self.skipped, "bytes": self.bytes, "seconds": round(self.seconds, 3)}

    def summary(self, verb: str = "Copied") -> str:
        parts = [f"{counted(self.files, 'file')} ({human_bytes(self.bytes)})"]
        if self.dirs:
            parts.append(counted(self.dirs, "directory", "directories"))
        if self.links:
            parts.append(counted(self.links, "symlink"))
        text = f"{verb} {', '.join(parts)}"
        if self.deleted:
            text += f"; deleted {self.deleted}"
        if self.skipped:
            text += f"; skipped {counted(self.skipped, 'special file')}"
        return text + f" in {self.seconds:.1f} s"


def _remove_any(loc: Location) -> None:
    if kind(lstat_or_none(loc)) == "dir":
        loc.tree.rmtree(loc.path)
    else:
        loc.tree.remove(loc.path)


def _copy_file(op: Op, advance: Callable[[int], None]) -> None:
    assert op.src is not None
    with op.src.tree.open(op.src.path, "rb") as r, op.dst.tree.open(op.dst.path, "wb") as w:
        while True:
            chunk = r.read(COPY_CHUNK)
            if not chunk:
                break
            w.write(chunk)
            advance(len(chunk))
    op.dst.tree.chmod(op.dst.path, op.mode)
    op.dst.tree.utime(op.dst.path, ns=(op.mtime_ns, op.mtime_ns))


def run_plan(plan: Plan, out, *, what: str = "Copying") -> Totals:
    """Carry out ``plan`` in order; a progress bar in bytes on a terminal, each step with ``-v``."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    totals = Totals()
    started = time.monotonic()
    show = out.err.is_terminal and not out.quiet and plan.bytes > 0
    progress = Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                        TransferSpeedColumn(), console=out.err, transient=True, disable=not show)
    dir_modes: list[Op] = []  # set last: a read-only directory must first receive its files
    with progress:
        task = progress.add_task(what, total=plan.bytes)
        for op in plan.ops:
            out.detail(f"{op.action} {op.dst.display}")
            with reported(op.dst.display):
                if op.replace and op.action != "delete":
                    _remove_any(op.dst)
                if op.action == "mkdir":
                    op.dst.tree.mkdir(op.dst.path)
                    dir_modes.append(op)
                    totals.dirs += 1
                elif op.action == "copy":
                    _copy_file(op, lambda n: progress.advance(task, n))
                    totals.files += 1
                    totals.bytes += op.size
                elif op.action == "symlink":
                    op.dst.tree.symlink(op.target, op.dst.path)
                    totals.links += 1
                elif op.action == "delete":
                    _remove_any(op.dst)
                    totals.deleted += 1
                else:
                    out.warn(f"skipped {op.src.display if op.src else op.dst.display}: not a regular file, "
                             "directory or symlink")
                    totals.skipped += 1
        for op in reversed(dir_modes):
            with reported(op.dst.display):
                op.dst.tree.chmod(op.dst.path, op.mode)
    totals.seconds = time.monotonic() - started
    return totals
