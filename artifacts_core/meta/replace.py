"""The agent API's data operations by name (``lua/26_replace.lua``), one round trip each.

- ``replace_entry`` (writeFile; DESIGN.md §10: "writeFile replaces content atomically and keeps
  the inode") names the file by (parent, name), creates it when asked, checks an optional version
  precondition, and swaps the file's chunk lists for one record of a slice the caller already
  stored (inline bytes travel in the same call). Readers see the old content or the new, never a
  mix; the old slices are released through the same reference counts truncate and compaction
  use, S3 slices after the engine's ``slice_grace``.
- ``append_entry`` (appendFile) resolves the name, creates a missing file, checks the version
  and commits an *append slice* at the file's length, all in one call -- the by-name twin of
  ``commit_slice(append=True)``.
- ``read_entry`` (readFile) resolves the name and returns one chunk's records and inline bytes
  with the attr, at one instant.

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

from artifacts_core.errors import ABSENT, ArtifactsError, EntryIsSymlink, VersionMismatch
from artifacts_core.meta.attrs import TYPE_FILE, Attr, SliceRecord, unpack_attr, unpack_slices
from artifacts_core.meta.data import CommitResult, DataOps, InlineRefused, ReservationLost
from artifacts_core.types import ROOT_CALLER, Caller, Ino, SliceId


def _expect_arg(expect) -> str:
    if expect is None:
        return ""
    if expect == ABSENT:
        return ABSENT
    return f"{int(expect[0])}:{int(expect[1])}"


def _mapped(e: ArtifactsError, name: str) -> ArtifactsError:
    if isinstance(e, (InlineRefused, ReservationLost)):
        return e
    if e.errno == errno.EAGAIN:
        return InlineRefused(e.strerror or "inline refused")
    if e.errno == errno.ESTALE:
        return VersionMismatch(e.strerror or "version mismatch", path=name)
    if e.errno == errno.ELOOP:
        return EntryIsSymlink(e.strerror or "symbolic link", path=name)
    return e


class ReplaceOps(DataOps):
    """Writes by name, built on ``DataOps`` (``client``, ``slice_grace``, ``_commit_call`` and
    ``_owner``: every commit of a slice id passes there)."""

    def append_entry(self, parent: Ino, name: str, slice_id: SliceId | int, size: int, *,
                     data: bytes | None = None, create: bool = True,
                     expect: tuple[int, int] | None = None, perm: int = 0o644,
                     caller: Caller = ROOT_CALLER) -> tuple[Ino, CommitResult, bool]:
        """Append slice ``slice_id`` (``size`` bytes, inline with ``data``) to ``parent/name``.
        Returns (ino, commit result: attr, landing offset, list length, duplicate; created)."""
        args: list[object] = [str(int(parent)), name.encode("utf-8", "surrogateescape"),
                              "1" if create else "0", _expect_arg(expect), str(int(slice_id)),
                              str(int(size)), str(caller.uid), caller.gid_arg(), str(perm & 0o7777),
                              self._owner()]
        if data is not None:
            args.append(data)
        try:
            ino, raw, offset, records, created, dup = self._commit_call("af_append_entry", args,
                                                                        inline=data is not None)
        except ArtifactsError as e:
            mapped = _mapped(e, name)
            if mapped is e:
                raise
            raise mapped from e
        result = CommitResult(unpack_attr(raw) if raw else None, int(offset), int(records), bool(int(dup)))
        return Ino(int(ino)), result, bool(int(created))

    def read_entry(self, parent: Ino, name: str, index: int = 0, *, caller: Caller = ROOT_CALLER
                   ) -> tuple[Ino, Attr, list[SliceRecord], dict[SliceId, bytes]]:
        """(ino, attr, records of chunk ``index``, inline bytes) of ``parent/name`` in one call.
        Raises EntryIsSymlink for a symlink (resolve it); a directory has no records."""
        reply = self.client.call("af_read_entry", str(int(parent)), name.encode("utf-8", "surrogateescape"),
                                 str(int(index)), str(caller.uid), caller.gid_arg(), ro=True)
        ino, typ, attr = Ino(int(reply[0])), int(reply[1]), unpack_attr(reply[2])
        if attr.is_symlink:
            raise EntryIsSymlink("symbolic link", path=name)
        records = unpack_slices(reply[3] or b"") if typ == TYPE_FILE else []
        inline = {SliceId(int(reply[k])): reply[k + 1] for k in range(4, len(reply), 2)}
        return ino, attr, records, inline

    def replace_entry(self, parent: Ino, name: str, slice_id: SliceId | int, size: int, *,
                        data: bytes | None = None, create: bool = True,
                        expect: tuple[int, int] | str | None = None, perm: int = 0o644,
                        caller: Caller = ROOT_CALLER) -> tuple[Ino, Attr, bool]:
        """Make ``name`` in ``parent`` hold exactly slice ``slice_id`` (``size`` bytes; 0 and 0
        for empty content). Returns (ino, new attr, created)."""
        exp = _expect_arg(expect)
        args: list[object] = [str(int(parent)), name.encode("utf-8", "surrogateescape"),
                              "1" if create else "0", exp, str(int(slice_id)), str(int(size)),
                              str(caller.uid), caller.gid_arg(), str(perm & 0o7777),
                              repr(float(self.slice_grace)), self._owner()]
        if data is not None:
            args.append(data)
        try:
            ino, raw, created = self._commit_call("af_replace_content", args, inline=data is not None)
        except ArtifactsError as e:
            mapped = _mapped(e, name)
            if mapped is e:
                raise
            raise mapped from e
        return Ino(int(ino)), unpack_attr(raw), bool(int(created))
