"""What a workspace's metadata refers to in its object store, for ``artifacts gc`` and ``fsck``.

Finding it means reading every chunk list (``c<ino>_<index>``), which takes ``SCAN``: session
Redis users may not run it (a key-less listing would show every workspace's key names), so the
orchestrator does, with its admin connection to the slot's owner, and answers
``GET /workspaces/<handle>/<name>/references``:

- ``slices``: every S3 slice a chunk list names (``id``, its ``size`` in bytes, the ``inodes``
  whose chunk lists name it, the ``checkpoints`` whose preserved chunk lists name it) — the live
  lists ``c<ino>_<index>`` and those a checkpoint preserved, ``hk<epoch>:c<ino>_<index>`` (the
  two shapes ``artifacts_core/gc.py`` reads); holes (id 0) and inline slices (bytes in Redis) are
  not objects;
- ``pending_delete``: slices queued in ``delslices`` for the reclaim job (still referenced: gc
  leaves them to it; their blocks may already be partly gone, so fsck does not count them);
- ``live_batches``: the slice-id ranges reserved by sessions that are alive (uploads in flight);
- ``chunk_lists``: how many chunk lists were read.

The client lists the objects *before* it asks (gc's rule 1, ``artifacts_core/gc.py``), so an
object uploaded after the listing is never looked at, and one committed before this scan is
seen as referenced.
"""

from __future__ import annotations

import re
from typing import Any, cast

import redis

from artifacts_core.meta.attrs import SLICE_S3, unpack_slices
from artifacts_core.meta.keys import Keys

#: Keys asked of one SCAN step, as the delete sweep's batch.
SCAN_COUNT = 1000
_CHUNK_KEY = re.compile(rb"c([0-9]+)_[0-9]+")
_PRESERVED_CHUNK_KEY = re.compile(rb"hk([0-9]+):c([0-9]+)_[0-9]+")


def references(node: redis.Redis, prefix: str) -> dict[str, Any]:
    """The answer described above, read from ``node`` (the owner of the workspace's slot)."""
    keys = Keys(prefix)
    raw_prefix = prefix.encode()
    slices: dict[int, dict[str, Any]] = {}
    lists = 0
    batch: list[tuple[bytes, int, int | None]] = []  # (key, inode, checkpoint epoch or None)

    def read(found: list[tuple[bytes, int, int | None]]) -> None:
        pipe = node.pipeline(transaction=False)
        for k, _, _ in found:
            pipe.lrange(k, 0, -1)
        for (_, ino, epoch), records in zip(found, pipe.execute(), strict=True):
            for r in unpack_slices(b"".join(records)):
                if r.id and r.kind == SLICE_S3:
                    entry = slices.setdefault(int(r.id), {"id": int(r.id), "size": r.size, "inodes": [],
                                                          "checkpoints": []})
                    if ino not in entry["inodes"]:
                        entry["inodes"].append(ino)
                    if epoch is not None and epoch not in entry["checkpoints"]:
                        entry["checkpoints"].append(epoch)

    for glob in ("c*", "hk*"):
        for key in node.scan_iter(match=keys.pattern[:-1] + glob, count=SCAN_COUNT):
            suffix = key[len(raw_prefix):]
            live, kept = _CHUNK_KEY.fullmatch(suffix), _PRESERVED_CHUNK_KEY.fullmatch(suffix)
            if live:
                batch.append((key, int(live.group(1)), None))
            elif kept:
                batch.append((key, int(kept.group(2)), int(kept.group(1))))
            else:  # ci<ino> (chunk indexes), commits, other preserved keys
                continue
            lists += 1
            if len(batch) >= SCAN_COUNT:
                read(batch)
                batch = []
    if batch:
        read(batch)
    members = cast(list[bytes], node.zrange(keys.prefix + "delslices", 0, -1))  # replies are bytes
    pending = sorted({int(m.split(b"_")[0]) for m in members})
    return {"slices": sorted(slices.values(), key=lambda s: s["id"]), "pending_delete": pending,
            "live_batches": _live_batches(node, keys), "chunk_lists": lists}


def _live_batches(node: redis.Redis, keys: Keys) -> list[list[int]]:
    batches = cast(dict[bytes, bytes], node.hgetall(keys.prefix + "slicebatches") or {})  # replies are bytes
    if not batches:
        return []
    sids = list(batches)
    pipe = node.pipeline(transaction=False)
    for sid in sids:
        pipe.hget(keys.session(int(sid)), "expire")
    expiries = pipe.execute()
    clock = float(node.time()[0])
    out = []
    for sid, expire in zip(sids, expiries, strict=True):
        if expire is not None and float(expire) > clock:
            lo, _, hi = batches[sid].partition(b"-")
            out.append([int(lo), int(hi)])
    return out
