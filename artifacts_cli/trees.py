"""Local paths and workspace paths as one kind of tree: what ``fs``, ``sync`` and ``import`` share.

A *location* on the command line is either a local path or a workspace path:

- ``WORKSPACE:PATH`` — ``name:path`` or ``handle/name:path`` (as ``scp`` writes hosts);
- ``artifacts://handle/name/path`` — the URL fsspec and pandas open;
- anything else is local (write ``./a:b`` for a local name with a colon in it).

A workspace is opened once per command through ``connect.open_workspace`` — a session as for a
mount, revoked when the command ends — and used through the volume's path API, whose methods are
named and behave as ``os``'s (``stat``, ``listdir``, ``open``, ``mkdir``, ``symlink``, ``utime``,
``chmod``, ``remove``, ``rmdir``). ``LocalTree`` gives the local filesystem the same face, so every
copy, listing and comparison below is written once for both sides and both directions.

Copies are *planned*, then *run*: ``plan_copy`` / ``plan_sync`` walk the source (and the
destination) and return a list of ``Op``; ``run_plan`` carries them out with a progress bar in
bytes on a terminal. A dry run prints the plan. What a copy keeps: file bytes, the permission
bits of files and directories, file modification times (``sync`` compares size and mtime), and
symlinks as symlinks (their targets verbatim). A workspace root's own entries (``.stats``,
``.config``, ``.accesslog``, ``.trash``) are never copied, compared or deleted. Owners, hard links, xattrs and special files
(devices, FIFOs, sockets) are not copied; a special file is reported as skipped.
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import re
import shutil
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from artifacts_cli.config import CliError
from artifacts_cli.errors import EXIT_CONFLICT, EXIT_ERROR, EXIT_NOT_FOUND, EXIT_USAGE

#: Bytes per read/write while copying a file: the workspace's block size (4 MiB), so each write
#: to a workspace fills whole blocks and a local read is large enough to stream at disk speed.
COPY_CHUNK = 4 << 20

#: A destination directory a copy makes itself (``cp a new/``): rwxr-xr-x, as mkdir with umask 022.
NEW_DIR_MODE = 0o755

_NAME = r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}"
_REMOTE = re.compile(rf"^({_NAME}(?:/{_NAME})?):(.*)$", re.S)
_URL = re.compile(rf"^artifacts://({_NAME})/({_NAME})(/.*)?$", re.S)


class LocalTree:
    """The local filesystem with the volume path API's method names."""

    label = "local"

    def stat(self, path: str, *, follow_symlinks: bool = True) -> os.stat_result:
        return os.stat(path, follow_symlinks=follow_symlinks)

    def listdir(self, path: str) -> list[str]:
        return os.listdir(path)

    def open(self, path: str, mode: str = "rb") -> IO[Any]:
        return open(path, mode)

    def mkdir(self, path: str, mode: int = 0o777) -> None:
        os.mkdir(path, mode)

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        os.makedirs(path, exist_ok=exist_ok)

    def symlink(self, target: str, path: str) -> None:
        os.symlink(target, path)

    def readlink(self, path: str) -> str:
        return os.readlink(path)

    def utime(self, path: str, *, ns: tuple[int, int]) -> None:
        os.utime(path, ns=ns)

    def chmod(self, path: str, mode: int) -> None:
        os.chmod(path, mode)

    def remove(self, path: str) -> None:
        os.remove(path)

    def rmdir(self, path: str) -> None:
        os.rmdir(path)

    def rmtree(self, path: str) -> None:
        shutil.rmtree(path)


@dataclass(frozen=True)
class Location:
    """One side of a command: a tree (``LocalTree`` or an open volume), a path in it, and how the
    user wrote it (for messages)."""

    tree: Any
    path: str
    display: str
    workspace: str | None = None

    def child(self, name: str) -> Location:
        sep = "" if self.display.endswith(("/", ":")) else "/"
        return Location(self.tree, posixpath.join(self.path, name), self.display + sep + name, self.workspace)

    @property
    def remote(self) -> bool:
        return self.workspace is not None


def split_location(text: str) -> tuple[str | None, str]:
    """``(workspace ref, path)`` for a workspace location, ``(None, text)`` for a local one."""
    m = _URL.match(text)
    if m:
        return f"artifacts://{m.group(1)}/{m.group(2)}", m.group(3) or "/"
    if text.startswith(("/", ".", "~")):
        return None, text
    m = _REMOTE.match(text)
    if m:
        return m.group(1), m.group(2) or "/"
    return None, text


def workspace_location(text: str) -> str:
    """A location for a command that takes a workspace and an optional path in it: ``demo``,
    ``alice/demo`` and ``artifacts://alice/demo`` mean its root; ``demo:sub`` and
    ``artifacts://alice/demo/sub`` a directory in it."""
    ref, path = split_location(text)
    if ref is None:
        ref, path = text, "/"
    if ref.startswith("artifacts://"):
        return ref + "/" + path.lstrip("/")
    return f"{ref}:{path}"


class Workspaces:
    """Open each workspace a command names once (``open_workspace``); closed (sessions revoked)
    when the ``with`` block ends."""

    def __init__(self, *, read_only: bool = False) -> None:
        self.read_only = read_only
        self._stack = contextlib.ExitStack()
        self._open: dict[str, Any] = {}
        self.local = LocalTree()

    def __enter__(self) -> Workspaces:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def volume(self, ref: str) -> Any:
        from artifacts_cli.connect import ConnectError, open_workspace

        if ref not in self._open:
            try:
                self._open[ref] = self._stack.enter_context(open_workspace(ref, read_only=self.read_only))
            except ConnectError as e:
                raise CliError(e.message, e.hint, exit_code=e.exit_code, code=e.code) from None
        return self._open[ref]

    def locate(self, text: str) -> Location:
        ref, path = split_location(text)
        if ref is None:
            return Location(self.local, os.path.expanduser(path), text)
        return Location(self.volume(ref), "/" + path.lstrip("/"), text, ref)


# -- errors -------------------------------------------------------------------------------------

#: errno -> exit code for a file operation that failed: a missing path is "not found" (4) like a
#: missing workspace; one in the way (exists, not empty, wrong type) is a conflict (5).
_ERRNO_EXIT = {errno.ENOENT: EXIT_NOT_FOUND, errno.EEXIST: EXIT_CONFLICT, errno.ENOTEMPTY: EXIT_CONFLICT,
               errno.EISDIR: EXIT_CONFLICT, errno.ENOTDIR: EXIT_CONFLICT}


def file_error(e: OSError, where: str) -> CliError:
    """A failed file operation as the CLI reports it: the path as the user wrote it, the errno's
    name as the JSON code."""
    from artifacts_core.errors import ArtifactsError

    code = errno.errorcode.get(e.errno or 0, "EIO")
    reason = e.strerror or str(e)
    hint = getattr(e, "hint", "") or "" if isinstance(e, ArtifactsError) else ""
    return CliError(f"{where}: {reason}", hint, exit_code=_ERRNO_EXIT.get(e.errno or 0, EXIT_ERROR), code=code)


@contextlib.contextmanager
def reported(where: str) -> Iterator[None]:
    """Turn an ``OSError`` (local or a workspace's) inside the block into ``file_error``."""
    try:
        yield
    except CliError:
        raise
    except OSError as e:
        raise file_error(e, where) from None


def entries(loc: Location) -> list[str]:
    """The names in directory ``loc``, sorted; at a workspace's root without the workspace's own
    entries (``.stats``, ``.config``, ``.accesslog``, ``.trash``): they are not its files, and
    ``.accesslog`` streams for as long as it is open."""
    from artifacts_core.vfs.internal import RESERVED_NAMES

    with reported(loc.display):
        names = sorted(loc.tree.listdir(loc.path))
    if loc.remote and loc.path.strip("/") == "":
        names = [n for n in names if n not in RESERVED_NAMES]
    return names


def lstat_or_none(loc: Location) -> os.stat_result | None:
    try:
        return loc.tree.stat(loc.path, follow_symlinks=False)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None


def kind(st: os.stat_result | None) -> str:
    if st is None:
        return "missing"
    if stat.S_ISDIR(st.st_mode):
        return "dir"
    if stat.S_ISREG(st.st_mode):
        return "file"
    if stat.S_ISLNK(st.st_mode):
        return "symlink"
    return "special"


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


def counted(n: int, word: str, plural: str = "") -> str:
    return f"{n} {word if n == 1 else plural or word + 's'}"


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover - the loop returns


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
