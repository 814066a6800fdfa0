"""The data map of the metadata engine: slice ids, chunk slice lists, commits (inline and append
slices), truncate, fallocate and copy_file_range. Functions: ``lua/20_data.lua``, ``21_resize.lua``.

Moving parts:

- **Slice ids** come from ``nextslice`` in batches of ``SLICE_ID_BATCH`` per client
  (``new_slice_id`` serves the local batch under a lock; DESIGN.md §10), recorded under the
  client's session (its *owner*).
- **Reading** a chunk is one ``FCALL_RO``: the records and the bytes of its inline slices together
  (``read_chunk``); ``slices.build_view`` merges them.
- **Committing** is one ``FCALL``: the record, the length, mtime/ctime, used space and -- for an
  inline slice -- its bytes (``commit_slice``). Every commit carries its owner. The same owner's
  second commit of a slice id is a no-op ("<owner>:<id>" is remembered for two minutes in
  ``commits``), so a retry after a timeout never applies a write twice, and no other client's
  commit is ever taken for a retry. An id outside the owner's reservation is refused:
  :class:`ReservationLost` (ESTALE), after which this client drops its batch -- Redis lost the
  reservation in a rollback, or the session ended (docs/SEMANTICS.md, "Redis rollback").
  ``append=True`` lets Redis place the slice at the file's length at
  commit time; an append crossing a chunk boundary is split into two records by the function,
  so it always lands whole and contiguous. ``replace_content`` swaps a file's whole content in
  one call (writeFile: atomic, the inode kept).
- **Resizing and sharing**: ``truncate`` and ``fallocate`` write no bytes (zeros are hole
  records); ``copy_file_range`` copies records, each taking one more reference to its slice.
- **Inline refusal**: over the inline limit, over the volume's inline cap, or while Redis is past
  ``INLINE_MEMORY_FRACTION`` of its ``maxmemory`` (a flag refreshed by
  ``refresh_inline_pressure``, which the client's background ticker calls: INFO cannot run inside
  a function), ``commit_slice`` raises :class:`InlineRefused` and the caller stores the slice in
  S3 instead -- never ENOSPC for that reason.

Invariant (kept by the Lua side, relied on by reads and reclaim): no visible data lies beyond a
file's length, so a file's chunks are exactly ``0 .. (length - 1) // CHUNK_SIZE``.
"""

from __future__ import annotations

import errno
import logging
import threading
from collections.abc import Sequence

import msgspec

from artifacts_core.errors import ArtifactsError, PermissionDenied
from artifacts_core.meta.attrs import Attr, SliceRecord, unpack_attr, unpack_slices
from artifacts_core.meta.client import MetaClient
from artifacts_core.meta.keys import Keys
from artifacts_core.meta.slices import needs_compaction
from artifacts_core.meta.state import EngineState
from artifacts_core.types import CHUNK_SIZE, ROOT_CALLER, Caller, Ino, SliceId

log = logging.getLogger("artifacts.meta")

#: Slice ids reserved per INCRBY: JuiceFS's batch. One round trip per 4096 slices; an id lost
#: when a client exits unused costs nothing (ids are 64-bit).
SLICE_ID_BATCH = 4096
#: No new inline data once Redis uses more than this share of maxmemory (DESIGN.md §10): the
#: rest is headroom for metadata, which must never hit OOM.
INLINE_MEMORY_FRACTION = 0.70
#: Seconds a slice dropped by truncate or compaction stays readable, so a reader holding an old
#: view (another host's cached slice list) still finds its blocks. A read takes well under this.
DEFAULT_SLICE_GRACE = 60.0

#: Bytes one ``af_copy_range`` call shares at most (21_resize.lua's COPY_MAX: 16 chunks).
COPY_MAX = 16 * CHUNK_SIZE

#: fallocate(2) mode bits (linux/falloc.h).
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
FALLOC_FL_ZERO_RANGE = 0x10


#: The first words of the ESTALE a commit gets for a slice id outside its owner's reservation
#: (``DATA.LOST`` in lua/20_data.lua).
RESERVATION_LOST = "slice reservation lost"


class InlineRefused(ArtifactsError):
    """This slice may not be stored inline (limit, volume cap, Redis memory): store it in S3."""

    default_errno = errno.EAGAIN


class ReservationLost(ArtifactsError):
    """Redis no longer knows the slice ids this client reserved: it lost recent writes (restarted
    from an older state, failed over to a replica that was behind) or this client's session
    ended. The commit was refused -- those ids may now be someone else's -- and the client's
    batch is dropped, so its next write reserves fresh ids. ESTALE."""

    default_errno = errno.ESTALE


class CommitResult(msgspec.Struct, frozen=True):
    """What a commit did. ``attr`` is the file's new attr (None only for a duplicate commit of a
    file deleted since); ``offset`` the file offset where the slice's data landed (for an append,
    decided by Redis; -1 for a duplicate); ``records`` the length of the chunk list after it."""

    attr: Attr | None
    offset: int
    records: int
    duplicate: bool = False

    @property
    def compaction(self) -> int:
        """``slices.COMPACT_NONE`` / ``COMPACT_SOON`` / ``COMPACT_NOW`` (compact before committing
        more to this chunk)."""
        return needs_compaction(self.records)


def _ok(value) -> str:
    return str(int(value))


class DataOps(EngineState):
    """The data map of ``RedisMetaEngine`` (state: ``EngineState``'s ``client``, ``keys``, ``sid``
    and ``setting``); owns the state below."""

    def __init__(self, keys: Keys, client: MetaClient) -> None:
        super().__init__(keys, client)
        #: Seconds a slice dropped by truncate, compaction or a replace stays readable (tests
        #: shorten it); reclaim and replace pass it to their functions too.
        self.slice_grace: float = DEFAULT_SLICE_GRACE
        # This client's batch of slice ids, [next, end), reserved by _slice_owner; the lock is held
        # across one reservation at most.
        self._slice_lock = threading.Lock()
        self._slice_next = 0
        self._slice_end = 0
        self._slice_owner = ""
        #: Redis is past INLINE_MEMORY_FRACTION of maxmemory (``refresh_inline_pressure``).
        self._inline_pressure = False

    # -- slice ids -----------------------------------------------------------------------------

    def _owner(self) -> str:
        """Who reserves and commits slice ids: this client's session ('0' without one)."""
        return str(self.sid or 0)

    def new_slice_ids(self, n: int) -> range:
        """Reserve ``n`` fresh slice ids (one round trip); returns them as a range."""
        if n <= 0:
            raise ValueError("reserve at least one slice id")
        # One function call: INCRBY plus a note of the batch under this session, so gc knows
        # which unreferenced objects may still be in flight (about to be committed), and commits
        # can be checked against it.
        last = int(self.client.call("af_reserve_slices", self._owner(), n))
        return range(last - n + 1, last + 1)

    def new_slice_id(self) -> SliceId:
        """One fresh slice id from this client's batch (a round trip once per SLICE_ID_BATCH).
        A batch reserved under another session (before a new one was registered) is not used."""
        with self._slice_lock:
            owner = self._owner()
            if self._slice_next >= self._slice_end or self._slice_owner != owner:
                ids = self.new_slice_ids(SLICE_ID_BATCH)
                self._slice_next, self._slice_end, self._slice_owner = ids.start, ids.stop, owner
            sid = self._slice_next
            self._slice_next = sid + 1
        return SliceId(sid)

    def drop_slice_ids(self) -> None:
        """Forget this client's batch: the next id comes from a new reservation."""
        with self._slice_lock:
            self._slice_next = self._slice_end = 0

    # -- reading -------------------------------------------------------------------------------

    def read_chunk(self, ino: Ino, index: int, start: int = 0, end: int = CHUNK_SIZE,
                   ) -> tuple[list[SliceRecord], dict[SliceId, bytes]]:
        """The slice records of chunk ``index`` (commit order) and the bytes of its inline slices
        -- of those whose records intersect chunk range ``[start, end)``: a small read need not
        fetch every inline slice of the chunk. One round trip."""
        _, records, inline = self.read_chunk_attr(ino, index, start, end)
        return records, inline

    def read_chunk_attr(self, ino: Ino, index: int, start: int = 0, end: int = CHUNK_SIZE,
                        ) -> tuple[Attr | None, list[SliceRecord], dict[SliceId, bytes]]:
        """As ``read_chunk``, plus the file's attr at the same instant (None if the inode is gone)."""
        reply = self.client.call("af_read_chunk", _ok(ino), _ok(index), _ok(start), _ok(end), ro=True)
        attr = unpack_attr(reply[0]) if reply[0] else None
        records = unpack_slices(reply[1] or b"")
        inline = {SliceId(int(reply[k])): reply[k + 1] for k in range(2, len(reply), 2)}
        return attr, records, inline

    # -- committing ----------------------------------------------------------------------------

    def refresh_inline_pressure(self) -> bool:
        """Re-read Redis memory use (INFO memory; one round trip) and return whether inline data
        is refused for memory. A client whose ACL forbids INFO keeps inline on: Redis's own OOM
        refusal still maps to ENOSPC, and the orchestrator watches memory."""
        try:
            info = self.client.command("INFO", "memory")
        except PermissionDenied:
            info = {}
        used, cap = int(info.get("used_memory", 0)), int(info.get("maxmemory", 0))
        self._inline_pressure = cap > 0 and used > INLINE_MEMORY_FRACTION * cap
        return self._inline_pressure

    def inline_allowed(self, size: int) -> bool:
        """Whether a new slice of ``size`` bytes may go inline now: within the volume's inline
        limit and Redis below the memory threshold (the function still checks the volume's cap)."""
        return not self._inline_pressure and self.setting is not None and size <= self.setting.inline_limit

    def _commit_call(self, function: str, args: list, *, inline: bool):
        """Run a function that commits slice ids this client reserved (every such call passes
        here). ``inline``: it may store inline bytes -- refused up front while Redis is under
        memory pressure, and the function's EAGAIN (over the inline limit or the volume's inline
        cap) raised as InlineRefused, so the caller stores the slices in S3 instead. A refusal
        for an id outside this client's reservation drops the batch and raises ReservationLost."""
        if inline and self._inline_pressure:
            raise InlineRefused("Redis memory is past the inline threshold")
        try:
            return self.client.call(function, *args)
        except ArtifactsError as e:
            if e.errno == errno.EAGAIN:
                raise InlineRefused(e.strerror or "inline refused") from e
            if e.errno == errno.ESTALE and (e.strerror or "").startswith(RESERVATION_LOST):
                self.drop_slice_ids()
                log.error("%s: Redis no longer holds this client's slice reservation; the write was "
                          "not committed and the next one reserves fresh ids", e.strerror)
                raise ReservationLost(
                    f"{e.strerror}; this write was not committed", hint=(
                        "Redis lost recent writes (it restarted from an older state or failed over "
                        "to a replica that was behind) or this client's session ended; write the "
                        "data again")) from e
            raise

    def commit_slice(self, ino: Ino, index: int, record: SliceRecord, *, data: bytes | None = None,
                     append: bool = False, caller: Caller = ROOT_CALLER) -> CommitResult:
        """Commit ``record`` (a slice already stored in S3, or inline with ``data``) to chunk
        ``index`` of ``ino``: one round trip.

        ``append``: the position is the file's length at commit time (``index`` and
        ``record.pos`` are ignored). Raises NotFound when the inode is gone and the slice was not
        committed before (the caller then deletes the uploaded blocks), InlineRefused when inline
        storage is refused (store in S3 and commit again with the same or a new id), NoSpace over
        capacity, ReservationLost when Redis no longer knows the id was reserved by this client
        (leave the blocks to gc: the id may be someone else's now).
        """
        args: list[str | bytes]  # FCALL arguments; inline data goes as bytes
        args = [_ok(ino), _ok(0 if append else index), _ok(record.pos), _ok(record.id),
                _ok(record.size), _ok(record.off), _ok(record.len), "1" if append else "0",
                _ok(caller.uid), self._owner()]
        if data is not None:
            args.append(data)
        reply = self._commit_call("af_commit", args, inline=data is not None)
        attr = unpack_attr(reply[0]) if reply[0] else None
        return CommitResult(attr, int(reply[2]), int(reply[1]), bool(int(reply[3])))

    # -- truncate, fallocate, copy -------------------------------------------------------------

    def truncate(self, ino: Ino, length: int, *, caller: Caller = ROOT_CALLER,
                 check_access: bool = False) -> Attr:
        """Set a regular file's length (one round trip). ``check_access``: the caller needs write
        permission (truncate by path); without it the caller holds a writable fd."""
        reply = self.client.call("af_truncate", _ok(ino), _ok(length), _ok(caller.uid),
                                 caller.gid_arg(), "1" if check_access else "0", repr(self.slice_grace))
        return unpack_attr(reply)

    def fallocate(self, ino: Ino, mode: int, offset: int, length: int, *,
                  caller: Caller = ROOT_CALLER) -> Attr:
        """fallocate(2): mode 0, KEEP_SIZE, PUNCH_HOLE|KEEP_SIZE, ZERO_RANGE[|KEEP_SIZE]."""
        reply = self.client.call("af_fallocate", _ok(ino), _ok(mode), _ok(offset), _ok(length),
                                 _ok(caller.uid))
        return unpack_attr(reply)

    def copy_file_range(self, src: Ino, src_off: int, dst: Ino, dst_off: int, length: int, *,
                        caller: Caller = ROOT_CALLER) -> tuple[int, Attr]:
        """Share ``length`` bytes of ``src`` at ``src_off`` into ``dst`` at ``dst_off`` without
        copying data. Returns (bytes copied, dst attr). One round trip per 1 GiB (16 chunks); a
        copy stopping at the source's end returns fewer bytes, as copy_file_range(2)."""
        copied = 0
        while True:
            reply = self.client.call("af_copy_range", _ok(src), _ok(src_off + copied), _ok(dst),
                                     _ok(dst_off + copied), _ok(length - copied), _ok(caller.uid))
            attr = unpack_attr(reply[0])
            n = int(reply[1])
            copied += n
            if n < COPY_MAX or copied >= length:  # short: the source ended
                return copied, attr

    def replace_content(self, ino: Ino, length: int,
                        records: Sequence[tuple[int, SliceRecord, bytes | None]], *,
                        caller: Caller = ROOT_CALLER) -> CommitResult:
        """Replace the whole content of ``ino`` atomically, keeping the inode (writeFile): one
        round trip after the new S3 blocks are stored. ``records``: (chunk index, record, inline
        bytes or None). The old slices are released with the grace period. Idempotent by the
        first record's slice id. Raises InlineRefused (store those slices in S3, call again)."""
        args: list[str | bytes]  # FCALL arguments; inline data goes as bytes
        args = [_ok(ino), _ok(length), _ok(caller.uid), repr(float(self.slice_grace)), self._owner()]
        for index, r, data in records:
            args += [_ok(index), _ok(r.pos), _ok(r.id), _ok(r.size), _ok(r.off), _ok(r.len),
                     b"" if data is None else data]
        reply = self._commit_call("af_replace", args, inline=any(data is not None for _, _, data in records))
        attr = unpack_attr(reply[0]) if reply[0] else None
        return CommitResult(attr, 0, len(records), bool(int(reply[1])))

    # -- totals --------------------------------------------------------------------------------

    def inline_bytes(self) -> int:
        """Bytes of inline slices stored in Redis for this volume (for ``.stats``)."""
        return int(self.client.command("GET", self.keys.counter("inlinebytes")) or 0)


def chunk_length(file_length: int, index: int) -> int:
    """The part of chunk ``index`` inside a file of ``file_length`` bytes (build_view's bound)."""
    return max(0, min(CHUNK_SIZE, file_length - index * CHUNK_SIZE))
