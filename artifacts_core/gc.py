"""``gc``: find (and with ``delete``, remove) block objects no metadata refers to.

A crash between uploading a slice's blocks and committing it leaves *orphans*: objects that no
chunk list names. They cost storage, never correctness (upload first, commit second). gc finds
them without ever deleting data that is about to be committed:

1. it lists the objects FIRST, then scans the metadata — an object uploaded after the listing is
   not looked at, and one listed before its commit is seen as referenced once the commit lands
   before the scan, or is protected by rule 3;
2. referenced = every slice id in every chunk list -- live ones and those a checkpoint
   preserved (``hk<epoch>:c<ino>_<n>``, docs/history.md) -- plus slices queued for deletion (the
   reclaim job owns those);
3. an unreferenced object whose slice id lies in the reserved batch of a LIVE session is in
   flight (that session may commit it any moment) and is skipped; so is one younger than
   ``min_age`` (a safety margin for clocks and slow commits, one hour by default as JuiceFS).

Step 2 reads every chunk list with ``SCAN``, which a session's Redis user may not run (it would
show every workspace's key names). A client with a session passes ``references``: a callable
asked *after* the listing, which gets the same answer elsewhere (``artifacts gc`` asks the
orchestrator, ``GET …/references``). ``Volume.gc`` runs ``collect`` on the volume's loop.

``check_objects`` is fsck's half: given every S3 slice the metadata refers to (id -> length), it
lists the objects once and names the blocks that are missing (data that cannot be read) and the
objects no slice refers to (what gc would remove).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from artifacts_core.chunk.keys import CHUNKS_PREFIX, parse_block_key, slice_blocks
from artifacts_core.meta.attrs import SLICE_S3, unpack_slices
from artifacts_core.objects.base import list_all
from artifacts_core.types import SliceId

#: Objects younger than this are never called leaked: their commit may still be on its way.
DEFAULT_MIN_AGE = 3600.0
#: Keys asked of one SCAN step over the workspace's chunk lists.
SCAN_COUNT = 1000
_CHUNK_KEY = re.compile(rb"c[0-9]+_[0-9]+")
_PRESERVED_CHUNK_KEY = re.compile(rb"hk[0-9]+:c[0-9]+_[0-9]+")


@dataclass
class GcReport:
    objects: int = 0
    bytes: int = 0
    referenced: int = 0
    in_flight: int = 0
    young: int = 0
    leaked: list[str] = field(default_factory=list)
    leaked_bytes: int = 0
    deleted: int = 0


#: What the metadata refers to: (every S3 slice id still referenced, the live sessions' reserved
#: slice-id batches as (first, last)).
References = tuple[set[int], list[tuple[int, int]]]


def referenced_slices(meta) -> set[int]:
    """Every S3 slice id the workspace's metadata still refers to (chunk lists, pending deletes)."""
    keys = meta.keys
    client = meta.client
    ids: set[int] = set()
    for glob, shape in (("c*", _CHUNK_KEY), ("hk*", _PRESERVED_CHUNK_KEY)):
        pattern = keys.pattern[:-1] + glob
        cursor = 0
        while True:
            cursor, found = client.command("SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT)
            cursor = int(cursor)
            found = [k for k in found if shape.fullmatch(k[len(keys.prefix):])]  # not commits, ci<ino>
            if found:
                lists = client.pipeline(lambda pipe, found=found: [pipe.lrange(k, 0, -1) for k in found])
                for records in lists:
                    for r in unpack_slices(b"".join(records)):
                        if r.id and r.kind == SLICE_S3:
                            ids.add(int(r.id))
            if cursor == 0:
                break
    for member in client.command("ZRANGE", keys.delslices, 0, -1) or []:
        ids.add(int(member.split(b"_")[0]))
    return ids


def live_batches(meta, now: float | None = None) -> list[tuple[int, int]]:
    """Slice-id batches reserved by sessions that are still alive."""
    keys = meta.keys
    batches = meta.client.command("HGETALL", keys.prefix + "slicebatches") or {}
    if isinstance(batches, list):
        batches = dict(zip(batches[::2], batches[1::2], strict=False))
    if not batches:
        return []
    sids = list(batches)
    expiries = meta.client.pipeline(lambda pipe: [pipe.hget(keys.session(int(s)), "expire") for s in sids])
    clock = now if now is not None else float(meta.client.command("TIME")[0])
    out = []
    for sid, expire in zip(sids, expiries, strict=True):
        if expire is not None and float(expire) > clock:
            lo, _, hi = batches[sid].partition(b"-")
            out.append((int(lo), int(hi)))
    return out


async def collect(meta, store, *, delete: bool = False, min_age: float = DEFAULT_MIN_AGE,
                  references: Callable[[], References] | None = None) -> GcReport:
    """Run on the volume's event loop (``Volume.gc``); see the module note. ``references`` is
    asked after the listing (default: ``SCAN`` the metadata with ``meta``'s own client)."""
    report = GcReport()
    listed = []
    async for info in list_all(store, CHUNKS_PREFIX):  # 1. objects first
        block = parse_block_key(info.key)
        if block is None:
            continue
        listed.append((block.slice_id, info))
        report.objects += 1
        report.bytes += info.size
    if references is None:  # 2. then the metadata
        referenced, batches = referenced_slices(meta), live_batches(meta)
    else:
        referenced, batches = references()
    now = time.time()
    for sid, info in listed:
        if sid in referenced:
            report.referenced += 1
        elif any(lo <= sid <= hi for lo, hi in batches):
            report.in_flight += 1
        elif now - info.mtime < min_age:
            report.young += 1
        else:
            report.leaked.append(info.key)
            report.leaked_bytes += info.size
            if delete:
                await store.delete(info.key)
                report.deleted += 1
    return report


@dataclass
class ObjectCheck:
    """fsck's view of the object store against the metadata's slices."""

    slices: int = 0
    blocks: int = 0
    #: (slice id, block key) of each block the metadata needs and the store lacks.
    missing: list[tuple[int, str]] = field(default_factory=list)
    #: Block objects of no referenced slice (what gc removes once old enough).
    unreferenced: int = 0
    unreferenced_bytes: int = 0


async def check_objects(store, slices: dict[int, int], block_size: int) -> ObjectCheck:
    """Every block of every slice in ``slices`` (id -> length) present in ``store``? One listing."""
    present: set[str] = set()
    report = ObjectCheck(slices=len(slices))
    async for info in list_all(store, CHUNKS_PREFIX):
        block = parse_block_key(info.key)
        if block is None:
            continue
        present.add(info.key)
        if block.slice_id not in slices:
            report.unreferenced += 1
            report.unreferenced_bytes += info.size
    for sid, length in sorted(slices.items()):
        for block in slice_blocks(SliceId(sid), length, block_size):
            report.blocks += 1
            if block.key not in present:
                report.missing.append((sid, block.key))
    return report
