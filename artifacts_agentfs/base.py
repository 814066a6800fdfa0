"""``AgentBase``: the state every concern of ``AgentFS`` shares, and the primitives they all use.

``AgentFS`` is composed by concern: reading and writing (``api.py``), the namespace operations
(``namespace.py``), glob and grep (``search.py``), editFile (``edit.py``). Each concern is a class
derived from this one, so what it uses is declared here, where it is owned, not expected of a
host class:

- state: the open ``Volume`` (``vol``), its VFS (``vfs``) and path resolver (``resolver``), and the
  ``Limits`` every result is bounded by (``limits``), set once by ``__init__``;
- resolution: ``_file_mode`` (0666 less the umask), ``_dir`` (a directory, made on demand),
  ``_entry`` (its parent and name, reserved names refused where the path leads), ``_lookup`` (what a path names, a symlink followed while
  it stays inside the workspace), ``_file`` (a regular file or a clear error), ``_check_version``
  (an ``if_version`` precondition), ``_not_root``;
- writing by name: ``_named`` (one core call on the entry a path names, a symlink entry followed
  by the core's resolver, a new name checked for portability) and ``_replace`` (writeFile's
  create-or-overwrite on it), bounded by ``_bound_write``;
- ``_text``: file bytes as the UTF-8 text an agent reads, or a clear error for binary data.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import TypeVar

from artifacts_agentfs.errors import BinaryContentError, TooLargeError, conflict, invalid
from artifacts_agentfs.limits import DEFAULT_LIMITS, Limits, parse_version, version_of
from artifacts_agentfs.paths import AGENT_LINKS, AgentPath, check_new_name
from artifacts_core.errors import ArtifactsError, IsADirectory, NotADirectory, NotFound, VersionMismatch
from artifacts_core.errors import PermissionDenied as _Denied
from artifacts_core.paths import join
from artifacts_core.types import ROOT_INO, Attr, Ino
from artifacts_core.vfs.pathapi import FILE_MODE
from artifacts_core.volume import Volume

T = TypeVar("T")

#: What ``vfs.replace_content`` checks before it writes: None, ``errors.ABSENT`` or a version.
Expect = tuple[int, int] | str | None


class AgentBase:
    """The volume, its VFS and resolver, the limits; path resolution and by-name writes."""

    def __init__(self, vol: Volume, *, limits: Limits = DEFAULT_LIMITS) -> None:
        self.vol = vol
        self.vfs = vol.vfs
        self.resolver = vol.vfs.resolver
        self.limits = limits

    # -- resolution ----------------------------------------------------------------------------

    def _file_mode(self) -> int:
        """New files get 0666 less the volume's umask, as ``open(2)`` would (``vol.umask``)."""
        return FILE_MODE & ~self.vol.umask

    def _dir(self, parts: tuple[str, ...], *, create: bool = False) -> Ino:
        """The inode of the directory ``parts`` (made with its parents when ``create``)."""
        try:
            return self.resolver.walk(parts, policy=AGENT_LINKS).ino
        except NotFound:
            if not create:
                raise
        for name in parts:
            check_new_name(name, join(parts))
        self.vol.makedirs(join(parts), exist_ok=True)
        return self.resolver.walk(parts, policy=AGENT_LINKS).ino

    def _entry(self, parts: tuple[str, ...], *, create: bool = False) -> tuple[Ino, str]:
        """(the resolved directory, the name) of the entry ``parts`` names. Reserved names are
        checked where the path leads: one at the root is refused however the root was reached
        (``sub/up/.stats`` with ``sub/up -> ..``: EACCES)."""
        parent, name = self._dir(parts[:-1], create=create), parts[-1]
        if parent == ROOT_INO and name in AGENT_LINKS.reserved:
            raise _Denied(f"{name} is reserved by the workspace (reached through {join(parts)})",
                          path=join(parts), hint="internal files are read through a mount, not the agent API")
        return parent, name

    def _lookup(self, ap: AgentPath, *, follow: bool = True) -> tuple[Ino, Attr]:
        """(ino, attr) of what ``ap`` names: one lookup past the cached directories."""
        if ap.is_root:
            return ROOT_INO, self.vfs.getattr(ROOT_INO)
        parent, _ = self._entry(ap.parts)
        ino, attr = self.vfs.lookup(parent, ap.parts[-1])
        if attr.is_symlink and follow:
            ino = self.resolver.walk(ap.parts, policy=AGENT_LINKS).ino
            attr = self.vfs.getattr(ino)
        if ap.dir_only and not attr.is_dir:
            raise NotADirectory("not a directory (the path ends with '/')", path=ap.display)
        return ino, attr

    def _file(self, ap: AgentPath, what: str) -> tuple[Ino, Attr]:
        ino, attr = self._lookup(ap)
        if attr.is_dir:
            raise IsADirectory(f"{what} needs a file; this is a directory", path=ap.display)
        if not attr.is_file:
            raise invalid(f"{what} needs a regular file", path=ap.display)
        return ino, attr

    def _check_version(self, ap: AgentPath, token: str | None) -> None:
        want = parse_version(token)
        if want is None:
            return
        try:
            ino, attr = self._lookup(ap, follow=False)
        except NotFound:
            raise conflict(ap.display, None) from None
        if (ino, attr.gen) != want:
            raise conflict(ap.display, version_of(ino, attr))

    @staticmethod
    def _not_root(ap: AgentPath, what: str) -> None:
        if ap.is_root:
            raise _Denied(f"{what} of the workspace root is not allowed", path="/",
                          errno=errno.EPERM, hint="name a file or directory inside the workspace")

    def _bound_write(self, data: bytes, path: str) -> None:
        if len(data) > self.limits.max_write_bytes:
            raise TooLargeError(f"content of {len(data)} bytes exceeds the {self.limits.max_write_bytes}"
                                "-byte write limit", path=path)

    # -- content -------------------------------------------------------------------------------

    @staticmethod
    def _text(data: bytes, ap: AgentPath, *, cut: bool) -> str:
        """``data`` as UTF-8 text; ``cut``: a bound may have split the last character."""
        if cut:  # a bound may split the last character: drop its partial bytes (at most 3)
            for k in range(min(3, len(data)) + 1):
                try:
                    data[:len(data) - k].decode("utf-8")
                    data = data[:len(data) - k]
                    break
                except UnicodeDecodeError:
                    continue
        if b"\0" in data:
            raise BinaryContentError("the file holds binary data (NUL bytes)", path=ap.display)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise BinaryContentError("the file is not UTF-8 text", path=ap.display) from None

    # -- writing by name -----------------------------------------------------------------------

    def _named(self, ap: AgentPath, op: Callable[[Ino, str, bool], T], *, create_parents: bool = True,
               create: bool = True) -> T:
        """Run ``op(parent, name, may_create)`` on the entry ``ap`` names: one call in the common
        case. The core's resolver follows a symlink entry (under the agent policy) and repeats
        the call on its target; a new name must pass the portability rules (else the call may
        only overwrite)."""
        if ap.dir_only and create:  # open("x/", O_CREAT) is EISDIR on Linux
            raise IsADirectory("a path ending with '/' names a directory", path=ap.display + "/",
                               hint="remove the trailing '/' to name a file")

        def attempt(parent: Ino, name: str, parts: tuple[str, ...]) -> T:
            refused = None
            try:
                check_new_name(name, join(parts))
            except ArtifactsError as e:
                refused = e
            try:
                return op(parent, name, create and refused is None)
            except VersionMismatch:
                try:
                    cur = version_of(*self.vfs.lookup(parent, name))
                except NotFound:
                    cur = None
                raise conflict(ap.display, cur) from None
            except NotFound:
                if create and refused is not None:
                    raise refused from None
                raise

        return self.resolver.at_entry(ap.parts, attempt, policy=AGENT_LINKS, path=ap.display,
                                      parent_of=lambda parts: self._dir(parts, create=create_parents and create))

    def _replace(self, ap: AgentPath, data: bytes, *, expect: Expect, create_parents: bool = True) -> dict:
        def op(parent: Ino, name: str, may_create: bool) -> dict:
            ino, attr, created = self.vfs.replace_content(parent, name, data, create=may_create,
                                                          expect=expect, perm=self._file_mode())
            return {"path": ap.display, "size": attr.length, "created": created,
                    "version": version_of(ino, attr)}

        return self._named(ap, op, create_parents=create_parents)
