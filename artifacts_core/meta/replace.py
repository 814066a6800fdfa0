"""Whole-content replacement (``lua/26_replace.lua``): the metadata half of the agent API's
``writeFile`` (DESIGN.md §10: "writeFile replaces content atomically and keeps the inode").

One method, one round trip: ``replace_entry`` names the file by (parent, name), creates it
when asked, checks an optional version precondition, and swaps the file's chunk lists for one
record of a slice the caller already stored (inline bytes travel in the same call). Readers see
the old content or the new, never a mix; the old slices are released through the same
reference counts truncate and compaction use, S3 slices after the engine's ``slice_grace``.

``DataOps.replace_content`` (``af_replace``) is the inode-level twin: it needs the inode, so a new
file would first be created empty (a second round trip, and an empty file others could see) and it
takes no version. ``replace_entry`` resolves the name itself, creates the file with its content in
place and checks the version in the same call, which is what writeFile and editFile need.

A version is ``(ino, gen)``: the inode and its change counter (``Attr.gen``), which every change
of data or attributes bumps. ``expect`` takes ``None`` (no precondition), ``ABSENT`` (create only)
or such a pair; a mismatch raises :class:`VersionMismatch` (ESTALE).
"""

from __future__ import annotations

import errno

from artifacts_core.errors import ArtifactsError
from artifacts_core.meta.attrs import Attr, unpack_attr
from artifacts_core.meta.data import InlineRefused
from artifacts_core.types import ROOT_CALLER, Caller, Ino, SliceId

#: ``expect`` value meaning "the name must not exist yet" (exclusive create).
ABSENT = "-"


class VersionMismatch(ArtifactsError):
    """The file is not at the version the caller expected (it changed, or it is gone)."""

    default_errno = errno.ESTALE


class EntryIsSymlink(ArtifactsError):
    """The name is a symbolic link: resolve it and replace the target instead."""

    default_errno = errno.ELOOP


class ReplaceOps:
    """Mixin of ``RedisMetaEngine``. Needs ``self.client`` and ``self.slice_grace``."""

    def replace_entry(self, parent: Ino, name: str, slice_id: SliceId | int, size: int, *,
                        data: bytes | None = None, create: bool = True,
                        expect: tuple[int, int] | str | None = None, perm: int = 0o644,
                        caller: Caller = ROOT_CALLER) -> tuple[Ino, Attr, bool]:
        """Make ``name`` in ``parent`` hold exactly slice ``slice_id`` (``size`` bytes; 0 and 0
        for empty content). Returns (ino, new attr, created)."""
        if expect is None:
            exp = ""
        elif expect == ABSENT:
            exp = ABSENT
        else:
            exp = f"{int(expect[0])}:{int(expect[1])}"
        args: list[object] = [str(int(parent)), name.encode("utf-8", "surrogateescape"),
                              "1" if create else "0", exp, str(int(slice_id)), str(int(size)),
                              str(caller.uid), caller.gid_arg(), str(perm & 0o7777),
                              repr(float(self.slice_grace))]
        if data is not None:
            args.append(data)
        try:
            ino, raw, created = self.client.call("af_replace_content", *args)
        except ArtifactsError as e:
            if e.errno == errno.EAGAIN:
                raise InlineRefused(e.strerror or "inline refused") from e
            if e.errno == errno.ESTALE:
                raise VersionMismatch(e.strerror or "version mismatch", path=name) from e
            if e.errno == errno.ELOOP:
                raise EntryIsSymlink(e.strerror or "symbolic link", path=name) from e
            raise
        return Ino(int(ino)), unpack_attr(raw), bool(int(created))
