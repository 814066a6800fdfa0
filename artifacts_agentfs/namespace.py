"""deleteFile, copyFile, moveFile, mkdir and rmdir: the namespace half of ``AgentFS``.

Overwrite rules (stated once, here and in docs/agentfs.md): copyFile and moveFile refuse an
existing destination (EEXIST) unless ``overwrite=True``; the refusal is atomic -- the final step is
renameat2 with RENAME_NOREPLACE, so two agents racing for one name cannot both win. Nothing ever
replaces a directory (EISDIR). Missing destination parents are created.

- deleteFile removes a file or a symlink (never what it points to); the file is gone at once for
  every caller, and sits in the volume's trash until expiry when ``trash_days`` > 0.
  A directory is refused with EISDIR and a hint to use rmdir.
- copyFile is a clone (``af_clone``: the source's slices shared, attributes and xattrs copied, no
  byte read or written; docs/history.md), made at the destination in one atomic call (with
  overwrite: beside it, then renamed over it): a reader sees no file or the whole copy. The copy
  gets a new inode and createdAt.
- moveFile is one atomic rename of a file or a directory (createdAt and the inode are kept).
- mkdir creates missing parents and is fine with an existing directory (``created: false``).
- rmdir deletes recursively, never following symlinks; the root is refused (EPERM).
"""

from __future__ import annotations

import errno
import uuid

from artifacts_agentfs.base import AgentBase
from artifacts_agentfs.limits import version_of
from artifacts_agentfs.paths import agent_path, check_new_name
from artifacts_core.errors import ArtifactsError, Exists, IsADirectory, NotADirectory, NotFound
from artifacts_core.types import RENAME_NOREPLACE


class NamespaceOps(AgentBase):
    """deleteFile, copyFile, moveFile, mkdir, rmdir (``AgentFS`` derives from this)."""

    def delete_file(self, path, *, if_version: str | None = None) -> dict:
        """Delete a file (or a symlink); gone at once for every caller. Directories: rmdir."""
        ap = agent_path(path)
        self._not_root(ap, "deleteFile")
        if ap.dir_only:
            self._lookup(ap)  # a file: ENOTDIR, as unlink("file/"); a directory: EISDIR below
        self._check_version(ap, if_version)
        parent, name = self._entry(ap.parts)
        try:
            self.vfs.unlink(parent, name)
        except IsADirectory:
            raise IsADirectory("deleteFile deletes files; this is a directory", path=ap.display,
                               hint="use rmdir to delete a directory and its contents") from None
        return {"path": ap.display, "deleted": True,
                "trash": bool(getattr(self.vol.setting, "trash_days", 0))}

    def copy_file(self, src, dest, *, overwrite: bool = False) -> dict:
        """Copy a file, sharing its data (no bytes copied); the destination appears whole."""
        sp, dp = agent_path(src, what="src"), agent_path(dest, what="dest")
        self._not_root(dp, "copyFile")
        sino, _sattr = self._file(sp, "copyFile")
        check_new_name(dp.parts[-1], dp.display)
        dparent, dname = self._entry(dp.parts, create=True)
        if not overwrite:
            try:
                self.vfs.lookup(dparent, dname)
                raise Exists("the destination exists", path=dp.display)
            except NotFound:
                pass
        if not overwrite:  # one atomic clone: EEXIST if the name appeared meanwhile
            tino, _ = self.vfs.clone(sino, dparent, dname)
        else:  # clone beside it, then rename over the old file in one step
            tmp = f".{dname[:180]}.{uuid.uuid4().hex[:12]}.agentfs-tmp"
            tino, _ = self.vfs.clone(sino, dparent, tmp)
            try:
                self.vfs.rename(dparent, tmp, dparent, dname, 0)
            except BaseException:
                try:
                    self.vfs.unlink(dparent, tmp)
                except ArtifactsError:
                    pass
                raise
        attr = self.vfs.getattr(tino)  # the rename changed its ctime, so its version too
        return {"src": sp.display, "dest": dp.display, "size": attr.length,
                "version": version_of(tino, attr)}

    def move_file(self, src, dest, *, overwrite: bool = False, if_version: str | None = None) -> dict:
        """Move or rename a file or directory atomically."""
        sp, dp = agent_path(src, what="src"), agent_path(dest, what="dest")
        self._not_root(sp, "moveFile")
        self._not_root(dp, "moveFile")
        check_new_name(dp.parts[-1], dp.display)
        self._check_version(sp, if_version)
        sparent, _ = self._entry(sp.parts)
        self.vfs.lookup(sparent, sp.parts[-1])  # a missing source fails before parents are made
        dparent, _ = self._entry(dp.parts, create=True)
        if overwrite:
            try:
                if self.vfs.lookup(dparent, dp.parts[-1])[1].is_dir:
                    raise IsADirectory("moveFile never replaces a directory", path=dp.display)
            except NotFound:
                pass
        self.vfs.rename(sparent, sp.parts[-1], dparent, dp.parts[-1], 0 if overwrite else RENAME_NOREPLACE)
        return {"src": sp.display, "dest": dp.display}

    def mkdir(self, path) -> dict:
        """Create a directory and any missing parents; an existing directory is fine."""
        ap = agent_path(path)
        if ap.is_root:
            return {"path": "/", "created": False}
        try:
            _, attr = self._lookup(ap)
            if not attr.is_dir:
                raise Exists("a file exists at this path", path=ap.display)
            return {"path": ap.display, "created": False}
        except NotFound:
            pass
        self._dir(ap.parts, create=True)
        return {"path": ap.display, "created": True}

    def rmdir(self, path) -> dict:
        """Delete a directory and everything in it (recursively). The root is refused."""
        ap = agent_path(path)
        self._not_root(ap, "rmdir")
        _, attr = self._lookup(ap, follow=False)
        if not attr.is_dir:
            raise NotADirectory("rmdir deletes directories; this is not one", path=ap.display,
                                hint="use deleteFile for a file or a symlink")
        removed = self._rmtree(ap.display)
        return {"path": ap.display, "removed": removed}

    def _rmtree(self, path: str) -> int:
        removed = 0
        for _ in range(3):  # entries created meanwhile make the last rmdir fail: sweep again
            for entry in list(self.vol.scandir(path)):
                if entry.is_dir(follow_symlinks=False):
                    removed += self._rmtree(entry.path)
                else:
                    self.vol.remove(entry.path)
                    removed += 1
            try:
                self.vol.rmdir(path)
                return removed + 1
            except ArtifactsError as e:
                if e.errno != errno.ENOTEMPTY:
                    raise
        self.vol.rmdir(path)
        return removed + 1
