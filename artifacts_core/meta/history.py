"""The history concern of the metadata engine: checkpoints, versioned reads, clones, the trash.

Every operation is one ``FCALL`` of a function in ``lua/45_history.lua`` (the copy-on-write hook
itself is in ``lua/00_common.lua``): create is O(1), restore is one atomic call whose cost is
what changed since the checkpoint, delete runs in bounded batches, reads of a checkpoint resolve
each key's version and read it in the same call. ``docs/history.md`` is the design.

``CheckpointReader`` is the read side at one epoch (0: now), the same interface for a checkpoint
and for the live workspace, so diff and browsing compare two of them without caring which is which.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import msgspec

from artifacts_core.meta.attrs import Attr, SliceRecord, unpack_attr, unpack_entry, unpack_slices
from artifacts_core.meta.state import EngineState
from artifacts_core.types import ROOT_CALLER, Caller, Ino, SliceId

#: Preserved keys handled per ``af_ck_delete`` call: a few milliseconds of Redis time at most.
DELETE_BATCH = 1000
#: Preserved chunk lists (and slice fields) read per pipelined round trip when measuring what
#: checkpoints pin: a few hundred KB of reply at most.
PINNED_BATCH = 500
_CHUNK_LIST = re.compile(rb"c\d+_\d+")
#: Inodes one ``af_clone`` call copies at most (CLONE.MAX in lua/46_clone.lua): a clone blocks
#: the workspace's Redis for ~10 us per inode, so about 100 ms at worst.
CLONE_MAX = 10000


class Checkpoint(msgspec.Struct, frozen=True):
    """One checkpoint: its name, epoch, when it was taken (server clock), the highest inode
    number then, who took it, retention (seconds, 0 = until deleted), kind and state."""

    name: str
    epoch: int
    created: float
    maxino: int
    origin: dict[str, Any] = {}
    keep: float = 0.0
    kind: str = "user"
    state: str = "live"
    preserved: int = 0  # keys preserved for it so far (what changed since, as keys)


def _checkpoint(raw: bytes | str, preserved: int = 0) -> Checkpoint:
    d = json.loads(raw)
    origin = d.get("origin") or {}
    if isinstance(origin, str):
        try:
            origin = json.loads(origin) if origin else {}
        except ValueError:
            origin = {"text": origin}
    return Checkpoint(name=d["name"], epoch=int(d["epoch"]), created=float(d["created"]),
                      maxino=int(d["maxino"]), origin=origin, keep=float(d.get("keep") or 0),
                      kind=d.get("kind") or "user", state=d.get("state") or "live", preserved=preserved)


def _lranges(keys: list[str]) -> Callable[[Any], object]:
    return lambda pipe: [pipe.lrange(k, 0, -1) for k in keys]


class HistoryOps(EngineState):
    """Checkpoint functions over ``self.client`` (composed into ``RedisMetaEngine``)."""

    def checkpoint_create(self, name: str, *, origin: dict[str, Any] | None = None, keep: float = 0.0,
                          kind: str = "user") -> Checkpoint:
        raw = self.client.call("af_ck_create", name, json.dumps(origin or {}), str(float(keep)), kind)
        return _checkpoint(raw)

    def checkpoint_list(self, *, include_deleting: bool = False) -> list[Checkpoint]:
        reply = self.client.call("af_ck_list", ro=True)
        out = [_checkpoint(reply[i], int(reply[i + 1])) for i in range(0, len(reply), 2)]
        return [c for c in out if include_deleting or c.state == "live"]

    def checkpoint_get(self, name: str) -> Checkpoint | None:
        for c in self.checkpoint_list(include_deleting=True):
            if c.name == name:
                return c
        return None

    def checkpoint_restore(self, name: str, safety: str, *, origin: dict[str, Any] | None = None,
                           grace: float = 0.0) -> tuple[Checkpoint, int, int]:
        """Restore ``name`` after taking checkpoint ``safety``; returns (safety, keys restored,
        inodes created since that were removed)."""
        reply = self.client.call("af_ck_restore", name, safety, json.dumps(origin or {}), str(float(grace)))
        return _checkpoint(reply[0]), int(reply[1]), int(reply[2])

    def checkpoint_delete(self, name: str, *, batch: int = DELETE_BATCH, grace: float = 0.0) -> int:
        """Delete ``name`` (bounded calls until done); returns the calls it took."""
        calls = 0
        while True:
            calls += 1
            if int(self.client.call("af_ck_delete", name, str(batch), str(float(grace)))) == 0:
                return calls

    def history_pinned_bytes(self) -> int:
        """Bytes of the slices only checkpoints still name: a slice whose every reference
        (``sliceref`` holds references - 1, missing = 1) comes from a preserved chunk list. Read
        in pipelined batches, not one function call: the cost grows with the history, and Redis
        keeps serving between batches (an accounting figure, refreshed by the background job)."""
        epochs = [c.epoch for c in self.checkpoint_list(include_deleting=True)]
        indexes = self.client.pipeline(lambda pipe: [pipe.hgetall(self.keys.preserved_index(e)) for e in epochs])
        lists = [self.keys.preserved(e, s.decode()) for e, idx in zip(epochs, indexes, strict=True)
                 for s, v in idx.items() if v == b"1" and _CHUNK_LIST.fullmatch(s)]
        held: dict[bytes, int] = {}  # "<id>_<size>" -> references from preserved lists
        sizes: dict[bytes, int] = {}
        for i in range(0, len(lists), PINNED_BATCH):
            for recs in self.client.pipeline(_lranges(lists[i:i + PINNED_BATCH])):
                for r in unpack_slices(b"".join(recs)):
                    if r.id:
                        f = f"{r.id}_{r.size}".encode()
                        held[f] = held.get(f, 0) + 1
                        sizes[f] = r.size
        fields = list(held)
        pinned = 0
        for i in range(0, len(fields), PINNED_BATCH):
            batch = fields[i:i + PINNED_BATCH]
            extra = self.client.command("HMGET", self.keys.sliceref, *batch)
            for field, more in zip(batch, extra, strict=True):
                if held[field] >= 1 + int(more or 0):
                    pinned += sizes[field]
        return pinned

    def account_history(self) -> int:
        """Measure the bytes only checkpoints keep and record them (``hpinned``), where the quota
        check and statfs charge them; returns them."""
        pinned = self.history_pinned_bytes()
        self.client.call("af_ck_pinned", str(pinned))
        return pinned

    def history_stats(self) -> dict[str, float]:
        """For ``.stats``: live checkpoints, keys preserved for them, bytes only they keep (as
        last measured)."""
        live = self.checkpoint_list()
        pinned = self.client.command("GET", self.keys.history("hpinned"))
        return {"count": len(live), "preserved_keys": sum(c.preserved for c in live),
                "pinned_bytes": int(pinned or 0)}

    def checkpoints_due(self, *, now_offset: float = 0.0) -> list[str]:
        """Names of the checkpoints whose retention passed, or left half-deleted (``af_ck_due``)."""
        return [n.decode() for n in self.client.call("af_ck_due", str(float(now_offset)), ro=True)]

    def checkpoint_changed(self, from_epoch: int, to_epoch: int = 0) -> list[str]:
        """Key suffixes changed between two checkpoints (``to_epoch`` 0: now)."""
        return [k.decode() for k in self.client.call("af_ck_changed", str(from_epoch), str(to_epoch), ro=True)]

    def clone(self, src: Ino, parent: Ino, name: str | bytes, caller: Caller = ROOT_CALLER, *,
              max_inodes: int = CLONE_MAX) -> tuple[Ino, int]:
        """Clone file or tree ``src`` as ``parent/name`` (``af_clone``); returns (new ino, inodes)."""
        raw = name.encode("utf-8", "surrogateescape") if isinstance(name, str) else name
        reply = self.client.call("af_clone", str(src), str(parent), raw, str(caller.uid), caller.gid_arg(),
                                 str(max_inodes))
        return Ino(int(reply[0])), int(reply[1])

    def checkpoint_reader(self, epoch: int) -> CheckpointReader:
        return CheckpointReader(self.client, epoch)


class CheckpointReader:
    """Reads of one checkpoint (``epoch`` > 0) or of the live workspace (0). Each method is one
    ``FCALL_RO`` of ``af_ck_read``: a key's version is resolved and read in one consistent call."""

    def __init__(self, client: Any, epoch: int) -> None:
        self.client = client
        self.epoch = epoch

    def _read(self, op: str, *args: Any) -> Any:
        operands = [a if isinstance(a, bytes) else str(a) for a in args]
        return self.client.call("af_ck_read", str(self.epoch), op, *operands, ro=True)

    def attrs(self, inos: list[Ino]) -> list[Attr | None]:
        if not inos:
            return []
        return [unpack_attr(b) if b else None for b in self._read("attr", *inos)]

    def attr(self, ino: Ino) -> Attr | None:
        return self.attrs([ino])[0]

    def entries(self, ino: Ino) -> dict[bytes, tuple[int, Ino]]:
        flat = self._read("entries", ino)
        return {flat[i]: unpack_entry(flat[i + 1]) for i in range(0, len(flat), 2)}

    def lookup(self, parent: Ino, name: bytes) -> tuple[int, Ino] | None:
        raw = self._read("lookup", parent, name)
        return unpack_entry(raw) if raw else None

    def chunk(self, ino: Ino, index: int) -> tuple[list[SliceRecord], dict[SliceId, bytes]]:
        reply = self._read("chunk", ino, index)
        inline = {SliceId(int(reply[k])): reply[k + 1] for k in range(1, len(reply), 2)}
        return unpack_slices(reply[0] or b""), inline

    def chunk_indexes(self, ino: Ino) -> list[int]:
        return sorted({0, *(int(i) for i in self._read("indexes", ino))})

    def readlink(self, ino: Ino) -> bytes | None:
        return self._read("link", ino) or None

    def xattrs(self, ino: Ino) -> dict[bytes, bytes]:
        flat = self._read("xattrs", ino)
        return {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}

    def counters(self) -> tuple[int, int]:
        used, inodes = self._read("counters")
        return int(used), int(inodes)
