"""The one path canonicaliser every frontend shares (DESIGN.md §10, "Paths").

A workspace path names a file relative to the workspace root; ``/a/b`` and ``a/b`` are the same.
The canonical form is a tuple of components with ``.`` and ``..`` resolved lexically and empty
components dropped, so ``a//b/./c/..`` is ``("a", "b")``. Rules, enforced once here:

- no NUL byte anywhere (EINVAL): C APIs would cut the path short;
- every component at most 255 bytes of UTF-8, the whole path at most 4096 bytes (ENAMETOOLONG),
  the limits of Linux (NAME_MAX, PATH_MAX);
- never above the root: ``..`` at the root stays at the root (as the kernel does for ``/``) in the
  default mode; in ``strict`` mode (the agent API) any ``..`` that would climb above the root is
  refused with EACCES instead, so an agent learns its path was wrong.

Non-UTF-8 names travel as ``str`` with ``surrogateescape`` (as ``os.fsdecode`` does), so every
byte string Linux allows round-trips.

Symlinks are not followed here: resolution needs the namespace, and the VFS does it, staying
inside the workspace.
"""

from __future__ import annotations

import os

from artifacts_core.errors import InvalidArgument, NameTooLong, PermissionDenied

NAME_MAX = 255
PATH_MAX = 4096

Parts = tuple[str, ...]


def name_bytes(name: str) -> bytes:
    return name.encode("utf-8", "surrogateescape")


def check_name(name: str) -> str:
    """Validate one directory entry name (not ``.``/``..``, no ``/`` or NUL, ≤ 255 bytes)."""
    if not name or name in (".", ".."):
        raise InvalidArgument("invalid file name", path=name)
    if "/" in name or "\0" in name:
        raise InvalidArgument("a file name cannot contain '/' or NUL", path=name.replace("\0", "\\0"))
    if len(name_bytes(name)) > NAME_MAX:
        raise NameTooLong(f"file name longer than {NAME_MAX} bytes", path=name[:64] + "...")
    return name


def canonicalize(path: str | bytes | os.PathLike, *, strict: bool = False) -> Parts:
    """The canonical components of a workspace path (see the module note)."""
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    if isinstance(path, bytes):
        path = path.decode("utf-8", "surrogateescape")
    if not isinstance(path, str):
        raise TypeError(f"path must be str, bytes or os.PathLike, not {type(path).__name__}")
    if "\0" in path:
        raise InvalidArgument("path contains a NUL byte", path=path.replace("\0", "\\0"))
    if len(name_bytes(path)) > PATH_MAX:
        raise NameTooLong(f"path longer than {PATH_MAX} bytes", path=path[:64] + "...")
    parts: list[str] = []
    for comp in path.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if parts:
                parts.pop()
            elif strict:
                raise PermissionDenied("path escapes the workspace root", path=path,
                                       hint="use a path relative to the workspace root, without leading '..'")
            continue
        if len(name_bytes(comp)) > NAME_MAX:
            raise NameTooLong(f"path component longer than {NAME_MAX} bytes", path=comp[:64] + "...")
        parts.append(comp)
    return tuple(parts)


def join(parts: Parts) -> str:
    """The display form of canonical parts: ``/a/b`` (``/`` for the root)."""
    return "/" + "/".join(parts)


def split(path: str | bytes | os.PathLike, *, strict: bool = False) -> tuple[Parts, str]:
    """(parent parts, last name) of a path that names an entry; the root has no name (EINVAL)."""
    parts = canonicalize(path, strict=strict)
    if not parts:
        raise InvalidArgument("the workspace root cannot be used here", path="/")
    return parts[:-1], parts[-1]
