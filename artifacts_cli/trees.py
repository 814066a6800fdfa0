"""Local paths and workspace paths as one kind of tree: what ``fs``, ``sync``, ``import`` and
``dump`` share (``plans.py`` copies between them).

A *location* on the command line is either a local path or a workspace path:

- ``WORKSPACE:PATH`` — ``name:path`` or ``handle/name:path`` (as ``scp`` writes hosts);
- ``artifacts://handle/name/path`` — the URL fsspec and pandas open;
- anything else is local (write ``./a:b`` for a local name with a colon in it).

A workspace is opened once per command through ``connect.open_workspace`` — a session as for a
mount, revoked when the command ends — and used through the volume's path API, whose methods are
named and behave as ``os``'s (``stat``, ``listdir``, ``open``, ``mkdir``, ``symlink``, ``utime``,
``chmod``, ``remove``, ``rmdir``). ``LocalTree`` gives the local filesystem the same face, so every
copy, listing and comparison below is written once for both sides and both directions.

Also here: a failed file operation as the CLI reports it (``file_error``, ``reported``: the path
as the user wrote it, the errno's name as the JSON code, 4 for a missing path, 5 for one in the
way), and ``entries``, which leaves a workspace root's own entries (``.stats``, ``.config``,
``.accesslog``, ``.trash``) out of every walk.
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import re
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from artifacts_cli.config import CliError
from artifacts_cli.errors import EXIT_CONFLICT, EXIT_ERROR, EXIT_NOT_FOUND

#: Bytes per read/write while copying a file: the workspace's block size (4 MiB), so each write
#: to a workspace fills whole blocks and a local read is large enough to stream at disk speed.
COPY_CHUNK = 4 << 20

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
