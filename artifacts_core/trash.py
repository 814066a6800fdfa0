"""``vol.trash``: the trash as a feature — list (who deleted what, when), restore, purge.

A deleted regular file lives at ``.trash/<YYYY-MM-DD-HH>/<parent ino>-<ino>-<name>`` until trash
expiry (DESIGN.md §10); the function that moved it there recorded in ``trashinfo`` the session
that deleted it and when (``lua/10_namespace.lua`` ``ns.to_trash``). ``restore`` is one rename out
of the trash (``RENAME_NOREPLACE``: an existing file at the target is never overwritten);
``purge`` unlinks trash entries, which ends the files' lives through the normal reclaim (data a
checkpoint still refers to stays, docs/history.md).
"""

from __future__ import annotations

import json
import os
import re
import time

import msgspec

from artifacts_core.errors import Exists, InvalidArgument, NotFound
from artifacts_core.history import CheckpointView, parse_duration
from artifacts_core.meta.engine import RedisMetaEngine
from artifacts_core.paths import split
from artifacts_core.types import RENAME_NOREPLACE, ROOT_INO, TRASH_INO, Ino
from artifacts_core.vfs.core import VFS

_ENTRY = re.compile(r"^(\d+)-(\d+)-(.*)$", re.S)


class TrashItem(msgspec.Struct, frozen=True):
    """One deleted file: ``id`` (``<hour>/<entry>``, what restore and purge take), the path it had
    (None when its directory is gone too), when and by whom it was deleted, its size."""

    id: str
    path: str | None
    deleted: float
    by: str | None
    session: int
    size: int
    ino: int


class Trash:
    def __init__(self, meta: RedisMetaEngine, vfs: VFS) -> None:
        self.meta = meta
        self.vfs = vfs

    def _entries(self) -> list[tuple[str, Ino, str, Ino, str]]:
        """(hour, hour ino, entry name, ino, original name) of every trash entry."""
        live = CheckpointView(self.meta.checkpoint_reader(0), self.vfs)
        out = []
        for hour, (_t, hino) in sorted(live.entries(TRASH_INO).items()):
            for entry, (_t2, ino) in sorted(live.entries(hino).items()):
                out.append((os.fsdecode(hour), hino, os.fsdecode(entry), ino, os.fsdecode(entry)))
        return out

    def list(self) -> list[TrashItem]:
        live = CheckpointView(self.meta.checkpoint_reader(0), self.vfs)
        entries = self._entries()
        info = self.meta.client.command("HGETALL", self.meta.keys.trashinfo) or {}
        if isinstance(info, list):
            info = dict(zip(info[::2], info[1::2], strict=False))
        hosts = {s["sid"]: f"{s.get('host', '?')} pid {s.get('pid', '?')}" for s in self.meta.list_sessions()}
        parents = {Ino(int(m.group(1))) for *_x, name in entries if (m := _ENTRY.match(name))}
        paths = live.paths_of(parents, set())
        paths[ROOT_INO] = "/"
        attrs = live.reader.attrs([ino for _h, _hi, _e, ino, _n in entries])
        out = []
        for (hour, _hino, entry, ino, _n), attr in zip(entries, attrs, strict=True):
            m = _ENTRY.match(entry)
            rec = json.loads(info.get(str(ino).encode(), b"{}"))
            parent_path = paths.get(Ino(int(m.group(1)))) if m else None
            path = (parent_path.rstrip("/") + "/" + m.group(3)) if (m and parent_path) else None
            sid = int(rec.get("session") or 0)
            out.append(TrashItem(id=f"{hour}/{entry}", path=path,
                                 deleted=float(rec.get("time") or (attr.ctime_ns / 1e9 if attr else 0)),
                                 by=hosts.get(sid, f"session {sid}" if sid else None), session=sid,
                                 size=attr.length if attr else 0, ino=int(ino)))
        return out

    def _find(self, item_id: str) -> tuple[Ino, str, TrashItem]:
        for it in self.list():
            if it.id == item_id:
                hour, _, entry = item_id.partition("/")
                hino = self.meta.lookup(TRASH_INO, hour)[0]
                return hino, entry, it
        raise NotFound(f"no trash entry {item_id!r}", hint="list them with `artifacts trash list`")

    def restore(self, item_id: str, *, to: str | None = None) -> str:
        """Move a deleted file back to its original path (or ``to``); returns the path."""
        hino, entry, it = self._find(item_id)
        target = to or it.path
        if not target:
            raise NotFound(f"the directory {item_id!r} was deleted from is gone too",
                           hint="give another path with --to")
        parts, name = split(target)
        parent = self.vfs.resolver.walk(parts).ino if parts else ROOT_INO
        try:
            self.vfs.rename(hino, entry, parent, name, RENAME_NOREPLACE)
        except Exists:
            raise Exists(f"{target} exists", path=target, hint="restore it elsewhere with --to") from None
        return "/" + "/".join((*parts, name))

    def purge(self, item_id: str | None = None, *, older_than: str | float | None = None) -> int:
        """Delete trash entries now (one, or all — those deleted more than ``older_than`` ago)."""
        if item_id is not None and older_than is not None:
            raise InvalidArgument("give an entry or --older-than, not both")
        cutoff = time.time() - parse_duration(older_than) if older_than is not None else None
        n = 0
        for it in self.list():
            if (item_id is not None and it.id != item_id) or (cutoff is not None and it.deleted > cutoff):
                continue
            hour, _, entry = it.id.partition("/")
            self.vfs.unlink(self.meta.lookup(TRASH_INO, hour)[0], entry)
            n += 1
        if item_id is not None and n == 0:
            raise NotFound(f"no trash entry {item_id!r}")
        return n
