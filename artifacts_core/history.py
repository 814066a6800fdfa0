"""``vol.checkpoints``: the workspace's history as Python programs and every frontend use it.

docs/history.md is the design. This module owns the volume-level side:

- ``Checkpoints`` — create (this client's dirty files are committed first, so the checkpoint
  holds what this process wrote: close-to-open across hosts), list, show, delete, restore (a
  safety checkpoint first; this client's entry cache is dropped after), diff, and ``view(name)``;
- ``CheckpointView`` — a read-only tree at one checkpoint: stat, listdir, walk, read_bytes,
  readlink. ``.checkpoints/<name>/…`` in the path API (and so the agent API's reads) is served
  by it; every write there is EROFS;
- ``diff`` — from the keys changed between two cuts (``af_ck_changed``) to paths: added,
  removed, modified (content or length differs), renamed (the same inode under another path).

A view reads through ``CheckpointReader`` (one ``af_ck_read`` per step) and the VFS's block
reader (``Reader.read_view``), so the same chunk store and caches serve checkpoint reads.
"""

from __future__ import annotations

import difflib
import errno
import io
import os
import re
import stat as _stat
import time
from collections.abc import Iterator
from typing import Any

import msgspec

from artifacts_core.errors import (
    ArtifactsError,
    InvalidArgument,
    IsADirectory,
    NotADirectory,
    NotFound,
    ReadOnly,
)
from artifacts_core.meta import slices as slicemath
from artifacts_core.meta.data import chunk_length
from artifacts_core.meta.engine import RedisMetaEngine
from artifacts_core.meta.history import Checkpoint, CheckpointReader
from artifacts_core.paths import canonicalize, join
from artifacts_core.types import CHUNK_SIZE, ROOT_INO, TRASH_INO, TYPE_DIR, TYPE_FILE, Attr, Ino
from artifacts_core.vfs.core import VFS
from artifacts_core.vfs.state import ChunkView

#: The directory at the workspace root under which checkpoints are browsed, read-only.
CHECKPOINTS_DIR = ".checkpoints"
#: Files larger than this get no text diff (a diff of megabytes helps no one reading it).
TEXT_DIFF_MAX = 1 << 20
#: Follow at most this many symlinks inside a checkpoint path (Linux's MAXSYMLINKS is 40).
MAX_LINKS = 40
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str | float | int | None) -> float:
    """``90``, ``90s``, ``15m``, ``12h``, ``7d``, ``2w`` -> seconds (0 / None: no retention)."""
    if text is None or text == "":
        return 0.0
    if isinstance(text, (int, float)):
        return float(text)
    m = _DURATION.match(text.strip())
    if not m:
        raise InvalidArgument(f"invalid duration {text!r}", hint="use e.g. 3600, 90m, 12h, 7d, 2w")
    return float(m.group(1)) * _UNITS[m.group(2)]


class Change(msgspec.Struct, frozen=True):
    """One difference between two cuts: ``kind`` is added, removed, modified or renamed."""

    kind: str
    path: str
    old_path: str | None = None
    type: str = "file"
    diff: str | None = None


def _type_name(mode: int) -> str:
    if _stat.S_ISDIR(mode):
        return "dir"
    if _stat.S_ISLNK(mode):
        return "symlink"
    return "file" if _stat.S_ISREG(mode) else "other"


class CheckpointView:
    """A read-only tree: one checkpoint (``epoch`` > 0) or the live workspace (0). Without a
    ``vfs`` (the orchestrator: metadata only) names and attributes read, file contents do not."""

    def __init__(self, reader: CheckpointReader, vfs: VFS | None, name: str = "") -> None:
        self.reader = reader
        self.vfs = vfs
        self.name = name
        self._dirs: dict[Ino, dict[bytes, tuple[int, Ino]]] = {}

    # -- names ---------------------------------------------------------------------------------

    def entries(self, ino: Ino) -> dict[bytes, tuple[int, Ino]]:
        got = self._dirs.get(ino)
        if got is None:
            got = self._dirs[ino] = self.reader.entries(ino)
        return got

    def resolve(self, path: str, *, follow: bool = True) -> tuple[Ino, Attr]:
        parts = list(canonicalize(path))
        ino, links = ROOT_INO, 0
        attr = self.reader.attr(ino)
        i = 0
        while i < len(parts):
            if attr is None or attr.type != TYPE_DIR:
                raise NotADirectory(f"{'/'.join(parts[:i])} is not a directory in checkpoint {self.name}")
            hit = self.entries(ino).get(os.fsencode(parts[i]))
            if hit is None:
                raise NotFound(f"no {'/'.join(parts[:i + 1])} in checkpoint {self.name or 'now'}", path=path)
            child = hit[1]
            cattr = self.reader.attr(child)
            if cattr is None:
                raise NotFound(f"{'/'.join(parts[:i + 1])} is gone in checkpoint {self.name}", path=path)
            if _stat.S_ISLNK(cattr.mode) and (follow or i < len(parts) - 1):
                links += 1
                target = os.fsdecode(self.reader.readlink(child) or b"")
                if links > MAX_LINKS or target.startswith("/"):
                    raise ArtifactsError(f"symlink {'/'.join(parts[:i + 1])} leaves the checkpoint",
                                         errno=errno.EACCES if links <= MAX_LINKS else errno.ELOOP)
                parts = list(canonicalize("/".join([*parts[:i], target, *parts[i + 1:]])))
                i, ino, attr = 0, ROOT_INO, self.reader.attr(ROOT_INO)
                continue
            ino, attr = child, cattr
            i += 1
        if attr is None:
            raise NotFound(f"the root is missing in checkpoint {self.name}")
        return ino, attr

    # -- the read API (os-shaped) ----------------------------------------------------------------

    def stat(self, path: str = "/", *, follow_symlinks: bool = True) -> os.stat_result:
        from artifacts_core.vfs.pathapi import stat_result
        ino, attr = self.resolve(path, follow=follow_symlinks)
        return stat_result(ino, attr)

    def exists(self, path: str) -> bool:
        try:
            self.resolve(path)
            return True
        except (NotFound, NotADirectory):
            return False

    def listdir(self, path: str = "/") -> list[str]:
        ino, attr = self.resolve(path)
        if attr.type != TYPE_DIR:
            raise NotADirectory(f"{path} is not a directory", path=path)
        names = [os.fsdecode(n) for n in self.entries(ino)]
        if ino == ROOT_INO:
            names = [n for n in names if n != CHECKPOINTS_DIR]
        return sorted(names)

    def walk(self, top: str = "/") -> Iterator[tuple[str, list[str], list[str]]]:
        ino, _attr = self.resolve(top)
        stack = [(join(canonicalize(top)), ino)]
        while stack:
            path, d = stack.pop()
            dirs: list[str] = []
            files: list[str] = []
            for name, (typ, child) in sorted(self.entries(d).items()):
                if d == TRASH_INO or (d == ROOT_INO and child == TRASH_INO):
                    continue
                (dirs if typ == TYPE_DIR else files).append(os.fsdecode(name))
                if typ == TYPE_DIR:
                    stack.append((path.rstrip("/") + "/" + os.fsdecode(name), child))
            yield path, dirs, files

    def readlink(self, path: str) -> str:
        ino, attr = self.resolve(path, follow=False)
        if not _stat.S_ISLNK(attr.mode):
            raise InvalidArgument(f"{path} is not a symlink", path=path)
        return os.fsdecode(self.reader.readlink(ino) or b"")

    def read_ino(self, ino: Ino, attr: Attr, offset: int = 0, size: int | None = None) -> bytes:
        if self.vfs is None:
            raise InvalidArgument("file contents are read on the data path, not here",
                                  hint="read them through a volume, a mount or the CLI")
        end = attr.length if size is None else min(attr.length, offset + size)
        out = bytearray()
        pos = offset
        while pos < end:
            index, inner = divmod(pos, CHUNK_SIZE)
            records, inline = self.reader.chunk(ino, index)
            view = ChunkView(slicemath.build_view(records, chunk_length(attr.length, index)), inline)
            n = min(end - pos, CHUNK_SIZE - inner)
            out += self.vfs.reader.read_view(view, inner, n)
            pos += n
        return bytes(out)

    def read_bytes(self, path: str) -> bytes:
        ino, attr = self.resolve(path)
        if attr.type == TYPE_DIR:
            raise IsADirectory(f"{path} is a directory", path=path)
        return self.read_ino(ino, attr)

    def open(self, path: str, mode: str = "rb", encoding: str | None = None) -> Any:
        if any(c in mode for c in "wax+"):
            raise ReadOnly(f"{CHECKPOINTS_DIR}/{self.name}{join(canonicalize(path))} is read-only",
                           hint="restore the checkpoint, or copy the file out of it")
        data = io.BytesIO(self.read_bytes(path))
        return data if "b" in mode else io.TextIOWrapper(data, encoding=encoding or "utf-8")

    # -- paths of inodes (diff) ------------------------------------------------------------------

    def paths_of(self, inos: set[Ino], within: set[Ino]) -> dict[Ino, str]:
        """Paths of ``inos`` in this view, found by walking down from the root through the
        directories in ``within`` (and their ancestors) only."""
        parents: dict[Ino, tuple[Ino, bytes]] = {}
        for d in within:
            attr = self.reader.attr(d)
            if attr is None or attr.type != TYPE_DIR:
                continue
            for name, (_typ, child) in self.entries(d).items():
                parents.setdefault(child, (d, name))
        out: dict[Ino, str] = {}
        for ino in inos:
            parts, cur, seen = [], ino, set()
            while cur != ROOT_INO and cur in parents and cur not in seen:
                seen.add(cur)
                d, name = parents[cur]
                parts.append(os.fsdecode(name))
                cur = d
            if cur == ROOT_INO:
                out[ino] = "/" + "/".join(reversed(parts))
            else:
                a = self.reader.attr(cur)
                pieces = list(reversed(parts))
                while a is not None and a.parent and cur != ROOT_INO and cur not in seen:
                    seen.add(cur)
                    pname = next((n for n, (_t, c) in self.entries(Ino(a.parent)).items() if c == cur), None)
                    if pname is None:
                        break
                    pieces.insert(0, os.fsdecode(pname))
                    cur = Ino(a.parent)
                    a = self.reader.attr(cur)
                if cur == ROOT_INO:
                    out[ino] = "/" + "/".join(pieces)
        return out

    def files_under(self, ino: Ino, path: str) -> Iterator[tuple[str, Ino, int]]:
        for name, (typ, child) in self.entries(ino).items():
            p = path.rstrip("/") + "/" + os.fsdecode(name)
            yield p, child, typ
            if typ == TYPE_DIR:
                yield from self.files_under(child, p)


#: ``list`` is also a method name of ``Checkpoints``: its annotations use this alias.
Changes = list[Change]


class Checkpoints:
    """``vol.checkpoints``: create, list, show, delete, restore, diff, view. ``vfs`` None: the
    orchestrator's metadata-only use (no client caches to flush or drop, no file contents)."""

    def __init__(self, meta: RedisMetaEngine, vfs: VFS | None, *, origin: dict[str, Any]) -> None:
        self.meta = meta
        self.vfs = vfs
        self.origin = origin

    def _writable(self) -> None:
        if self.vfs is not None and self.vfs.read_only:
            raise ReadOnly("this session is read-only: it may list and read checkpoints, not change them")

    def create(self, name: str | None = None, *, keep: str | float | None = None) -> Checkpoint:
        """Take a checkpoint (this client's unflushed writes are committed first)."""
        self._writable()
        if self.vfs is not None:
            self.vfs.inodes.flush_dirty()
        name = name or time.strftime("ckpt-%Y%m%d-%H%M%S", time.gmtime()) + f"-{time.time_ns() % 1000000:06d}"
        return self.meta.checkpoint_create(name, origin=self.origin, keep=parse_duration(keep))

    def list(self) -> list[Checkpoint]:
        return self.meta.checkpoint_list()

    def get(self, name: str) -> Checkpoint:
        c = self.meta.checkpoint_get(name)
        if c is None or c.state != "live":
            raise NotFound(f"no checkpoint named {name!r}", hint="list them with `artifacts checkpoint list`")
        return c

    def show(self, name: str) -> dict[str, Any]:
        """The record, plus what changed since (keys, paths) and the bytes only history keeps."""
        c = self.get(name)
        changes = self.diff(name)
        info = msgspec.to_builtins(c)
        info["changes_since"] = len(changes)
        info["changed_keys"] = len(self.meta.checkpoint_changed(c.epoch))
        info["pinned_bytes"] = self.pinned_bytes(c)
        return info

    def pinned_bytes(self, c: Checkpoint) -> int:
        """Bytes of the slices named by this checkpoint's preserved chunk lists and not by a live
        list: what deleting it (with nothing older sharing them) could free."""
        keys = self.meta.keys
        flat = self.meta.client.command("HGETALL", keys.preserved_index(c.epoch)) or []
        pairs = flat.items() if isinstance(flat, dict) else zip(flat[::2], flat[1::2], strict=False)
        lists = [s.decode() for s, v in pairs if v == b"1" and re.fullmatch(rb"c\d+_\d+", s)]
        if not lists:
            return 0
        from artifacts_core.meta.attrs import unpack_slices
        kept = self.meta.client.pipeline(
            lambda pipe: [pipe.lrange(keys.preserved(c.epoch, s), 0, -1) for s in lists])
        live = self.meta.client.pipeline(lambda pipe: [pipe.lrange(keys.prefix + s, 0, -1) for s in lists])
        live_ids = {r.id for recs in live for r in unpack_slices(b"".join(recs))}
        sizes = {r.id: r.size for recs in kept for r in unpack_slices(b"".join(recs)) if r.id}
        return sum(size for sid, size in sizes.items() if sid not in live_ids)

    def delete(self, name: str) -> None:
        self._writable()
        self.get(name)
        self.meta.checkpoint_delete(name, grace=self.meta.slice_grace)

    def restore(self, name: str, *, safety: str | None = None) -> dict[str, Any]:
        """Make the workspace what checkpoint ``name`` was, atomically, after a safety checkpoint."""
        self._writable()
        self.get(name)  # the error with its hint; af_ck_restore checks again, atomically
        if self.vfs is not None:
            self.vfs.inodes.flush_dirty()
        safety = safety or f"before-restore-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{time.time_ns() % 1000000:06d}"
        made, restored, removed = self.meta.checkpoint_restore(name, safety, origin=self.origin,
                                                               grace=self.meta.slice_grace)
        if self.vfs is not None:
            self._forget_cached(self.vfs)
        return {"restored": name, "safety": made.name, "keys": restored, "removed_inodes": removed}

    def _forget_cached(self, vfs: VFS) -> None:
        """This client's cached names and attributes go: the restore changed them wholesale."""
        vfs.resolver.forget_all()
        for st in vfs.inodes.all():
            a = self.meta.client.command("GET", self.meta.keys.inode(st.ino))
            if a:
                from artifacts_core.meta.attrs import unpack_attr
                vfs.inodes.adopt(st.ino, unpack_attr(a))

    def view(self, name: str | None) -> CheckpointView:
        """A read-only tree of checkpoint ``name`` (None: the live workspace)."""
        epoch = self.get(name).epoch if name else 0
        return CheckpointView(self.meta.checkpoint_reader(epoch), self.vfs, name or "")

    def diff(self, a: str, b: str | None = None, *, text: bool = False) -> Changes:
        """What changed from checkpoint ``a`` to ``b`` (None: now)."""
        ca = self.get(a)
        cb = self.get(b) if b else None
        if cb is not None and cb.epoch < ca.epoch:
            raise InvalidArgument(f"checkpoint {b} is older than {a}", hint="give the older checkpoint first")
        old, new = self.view(a), self.view(b)
        suffixes = self.meta.checkpoint_changed(ca.epoch, cb.epoch if cb else 0)
        dirs: set[Ino] = set()
        touched: set[Ino] = set()
        for s in suffixes:
            m = re.fullmatch(r"(d|i|c|ci|s)(\d+)(?:_\d+)?", s)
            if not m:
                continue
            ino = Ino(int(m.group(2)))
            (dirs if m.group(1) == "d" else touched).add(ino)
        return _diff(old, new, dirs, touched, text=text)


def _diff(old: CheckpointView, new: CheckpointView, dirs: set[Ino], touched: set[Ino], *,
          text: bool) -> list[Change]:
    out: list[Change] = []
    gone: dict[Ino, tuple[str, int]] = {}
    came: dict[Ino, tuple[str, int]] = {}
    skip = {TRASH_INO}
    for d in sorted(dirs):
        if d in skip:
            continue
        ea = old.entries(d) if old.reader.attr(d) else {}
        eb = new.entries(d) if new.reader.attr(d) else {}
        for name in ea.keys() - eb.keys() | {n for n in ea.keys() & eb.keys() if ea[n][1] != eb[n][1]}:
            gone[ea[name][1]] = ("", ea[name][0])
        for name in eb.keys() - ea.keys() | {n for n in ea.keys() & eb.keys() if ea[n][1] != eb[n][1]}:
            came[eb[name][1]] = ("", eb[name][0])
    old_paths = old.paths_of(set(gone) | touched, dirs | set(gone))
    new_paths = new.paths_of(set(came) | touched, dirs | set(came))
    in_trash = _trash_members(old) | _trash_members(new)
    for ino in sorted(set(gone) | set(came)):
        if ino in in_trash and ino not in old_paths and ino not in new_paths:
            continue
        op, np_ = old_paths.get(ino), new_paths.get(ino)
        typ = gone.get(ino, came.get(ino, ("", TYPE_FILE)))[1]
        tname = "dir" if typ == TYPE_DIR else "file"
        if op and np_ and op != np_:
            out.append(Change("renamed", np_, old_path=op, type=tname))
        elif op and not np_:
            out += _expand(old, ino, op, "removed", typ)
        elif np_ and not op:
            out += _expand(new, ino, np_, "added", typ)
    for ino in sorted(touched - set(gone) - set(came)):
        a, b = old.reader.attr(ino), new.reader.attr(ino)
        if a is None or b is None or a.type != TYPE_FILE or ino not in old_paths or ino not in new_paths:
            continue
        if a.length == b.length and _same_content(old, new, ino, a):
            continue
        diff = _text_diff(old, new, ino, a, b, new_paths[ino]) if text else None
        out.append(Change("modified", new_paths[ino], type="file", diff=diff))
    return sorted(out, key=lambda c: (c.path, c.kind))


def _trash_members(view: CheckpointView) -> set[Ino]:
    out: set[Ino] = set()
    if view.reader.attr(TRASH_INO) is None:
        return out
    for _n, (_t, hour) in view.entries(TRASH_INO).items():
        out.update(c for _n2, (_t2, c) in view.entries(hour).items())
    return out


def _expand(view: CheckpointView, ino: Ino, path: str, kind: str, typ: int) -> list[Change]:
    if typ != TYPE_DIR:
        return [Change(kind, path, type="file" if typ == TYPE_FILE else "other")]
    out = [Change(kind, path, type="dir")]
    for p, _child, t in view.files_under(ino, path):
        out.append(Change(kind, p, type="dir" if t == TYPE_DIR else "file"))
    return out


def _same_content(old: CheckpointView, new: CheckpointView, ino: Ino, a: Attr) -> bool:
    for index in set(old.reader.chunk_indexes(ino)) | set(new.reader.chunk_indexes(ino)):
        if old.reader.chunk(ino, index)[0] != new.reader.chunk(ino, index)[0]:
            return False
    return True


def _text_diff(old: CheckpointView, new: CheckpointView, ino: Ino, a: Attr, b: Attr, path: str) -> str | None:
    if max(a.length, b.length) > TEXT_DIFF_MAX:
        return None
    try:
        before = old.read_ino(ino, a).decode("utf-8")
        after = new.read_ino(ino, b).decode("utf-8")
    except UnicodeDecodeError:
        return None
    return "".join(difflib.unified_diff(before.splitlines(True), after.splitlines(True),
                                        fromfile=f"a{path}", tofile=f"b{path}"))
