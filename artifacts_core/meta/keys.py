"""Every Redis key of a workspace, spelled in one place.

A workspace's keys all start with its prefix ``{u_<account id>_w_<workspace id>}:`` (numeric ids
only: names would collide through ``_``). The braces are a Redis Cluster hash tag, so one
workspace lives in one slot and every function call may touch any of its keys.

The same layout is spelled once more, in Lua, in ``lua/00_common.lua`` (the functions compute keys
from the prefix); the metadata tests under ``tests/core/meta/`` read with Python's spelling what
the functions wrote with Lua's, so the two cannot drift apart unnoticed.

| key | type | value |
|---|---|---|
| ``setting`` | string | the volume's format (msgspec JSON) — declared as KEYS[1] by every call |
| ``nextinode`` / ``nextslice`` / ``nextsession`` | string int | highest id handed out (slice and session ids never lag the server clock in µs: a Redis rollback cannot hand them out twice) |
| ``usedspace`` / ``totalinodes`` / ``inlinebytes`` | string int | volume totals |
| ``i<ino>`` | string | the inode's attributes, fixed binary layout (``attrs.py``) |
| ``d<ino>`` | hash | directory entries: name -> type u8 + ino u64 |
| ``p<ino>`` | hash | parent ino -> link count, for hard-linked files (attr parent = 0) |
| ``c<ino>_<chunk>`` | list | 25-byte slice records, in commit order |
| ``ci<ino>`` | set | indexes >= 1 of the chunk lists a file may have (so a sparse file is walked by its lists, not its length) |
| ``b<slice>`` | string | the bytes of an inline slice |
| ``s<ino>`` | string | symlink target |
| ``x<ino>`` | hash | xattr name -> value |
| ``sliceref`` | hash | ``<slice>_<size>`` -> references - 1 (missing = 1 reference) |
| ``delfiles`` | zset | ``<ino>:<length>`` scored by deletion time: data to release |
| ``delslices`` | zset | ``<slice>_<size>`` scored by time: blocks to delete from S3 |
| ``commits`` | zset | ``<owner session>:<slice>`` committed in the last minutes (the owner's retried commit is a no-op) |
| ``inlinechunks`` | zset | ``<ino>_<chunk>`` holding inline slices, scored by last inline write |
| ``slicebatches`` | hash | session id (``0``: clients without one) -> "first-last" slice ids it reserved (gc: in-flight uploads; commits must lie inside) |
| ``jobs`` | hash | job name -> last run time (elections for background work) |
| ``sess<sid>`` | hash | a session's record: ``info`` (JSON: host, pid, mountpoint, version), ``expire``, ``user`` (assigned ids); live while it exists |
| ``opens<sid>`` | hash | ino -> how many times the session holds it open |
| ``locks<sid>`` | hash | ino -> the session's flocks and POSIX locks on it (``lua/30_locks.lua``) |
| ``sessions`` | zset | every session id that may hold state, scored by when the sweep looks at it next |
| ``sessusers`` | hash | session ACL user -> the id the orchestrator assigned it, and ``#<sid>`` -> user |
| ``limits`` | hash | capacity, inodes, inline_limit, inline_cap, trash_days (the fields of ``setting`` the functions need) |
| ``hnext`` / ``hcur`` | string | last checkpoint epoch handed out / ``<epoch>:<max ino>`` of the newest live checkpoint (docs/history.md) |
| ``hpinned`` | string int | bytes only checkpoints keep, as the accounting job last measured them (charged to capacity) |
| ``hepochs`` / ``hckpts`` | zset / hash | checkpoint name -> epoch / name -> JSON record |
| ``hx<epoch>`` | hash | key suffix -> ``1`` (preserved in ``hk<epoch>:<suffix>``) or ``0`` (absent at that checkpoint) |
| ``hk<epoch>:<suffix>`` | as the key | a key's value as that checkpoint saw it |
| ``trashinfo`` | hash | trashed ino -> JSON: who deleted it (session, uid), when, from which directory and name |
| ``journal`` | list | the workspace's journal: one change record per change, oldest first (``meta/journal.py``) |
| ``jbase`` | string int | journal records retention dropped from the head (a record's position = jbase + index) |
| ``reads`` / ``rbase`` | list / string int | the read audit (a volume's ``journal_reads`` opt-in): one record per open for reading, and its ``jbase`` |

Who may write what (DESIGN.md §10: a session writes only what it owns). The orchestrator's
session ACL users get write access by pattern: read-write sessions ``DATA_KEY_PATTERNS`` plus
their own ``session_key_names(sid)``; read-only sessions their own session keys only. Nobody
but the format step writes ``setting`` and ``limits`` (``FORMAT_KEYS``), and nobody but a
full-rights client or the orchestrator writes the shared session bookkeeping
(``SHARED_SESSION_KEYS``). The journal (``JOURNAL_KEYS``) is appended by sessions through their
functions but never written otherwise: a read-write session's user may RPUSH to ``journal`` and
run no other write command on it; ``jbase`` only retention (full rights) writes. ``reads``, the
read audit, is the same for every session user, read-only ones included (RPUSH alone), and
``rbase`` only retention writes.
``tests/test_orchestrator_acl.py`` checks that every key this module
builds falls in exactly one of these classes; a new key kind must be added to one.

Not a key: ``<prefix>changes`` is the workspace's sharded pub/sub channel, where every mutating
function announces its changes (``meta/changes.py``). It carries the hash tag too, so in a Cluster
it lives on the nodes of the workspace's slot.
"""

from __future__ import annotations

import re

from artifacts_core.errors import ConfigError
from artifacts_core.types import Ino, SliceId

#: ``{u_<account id>_w_<workspace id>}:`` — numeric ids only.
PREFIX_RE = re.compile(r"^\{u_(\d{1,19})_w_(\d{1,19})\}:$")


def workspace_prefix(account_id: int, workspace_id: int) -> str:
    """The key prefix of a workspace; the only place prefixes are built."""
    if account_id < 0 or workspace_id < 0:
        raise ConfigError(f"account and workspace ids must be non-negative, got {account_id}, {workspace_id}")
    return f"{{u_{account_id}_w_{workspace_id}}}:"


def check_prefix(prefix: str) -> str:
    if not PREFIX_RE.match(prefix):
        raise ConfigError(
            f"invalid workspace key prefix {prefix!r}",
            hint="expected {u_<account id>_w_<workspace id>}: with numeric ids")
    return prefix


#: Key kinds a read-write session writes through the functions (patterns after the prefix, Redis
#: glob syntax): the namespace and data of the workspace, its counters and the data maintenance
#: bookkeeping. Per-inode kinds name a digit after their letter, so ``sess<sid>`` never matches
#: ``s<ino>`` (symlinks) and ``locks<sid>`` never matches anything here.
DATA_KEY_PATTERNS = ("i[0-9]*", "d[0-9]*", "p[0-9]*", "c[0-9]*", "ci[0-9]*", "b[0-9]*", "s[0-9]*", "x[0-9]*",
                     "nextinode", "nextslice", "usedspace", "totalinodes", "inlinebytes", "sliceref",
                     "delfiles", "delslices", "commits", "inlinechunks", "slicebatches", "jobs",
                     "hnext", "hcur", "hepochs", "hckpts", "hpinned", "hx[0-9]*", "hk[0-9]*", "trashinfo")
#: Written only when the volume is formatted.
FORMAT_KEYS = ("setting", "limits")
#: Session bookkeeping others depend on: written only by full-rights clients and the orchestrator.
SHARED_SESSION_KEYS = ("sessions", "sessusers", "nextsession")
#: The journal (``lua/45_journal.lua``): append-only for read-write sessions (RPUSH alone, an ACL
#: selector), trimmed only by full-rights retention.
JOURNAL_KEYS = ("journal", "jbase", "reads", "rbase")


def session_key_names(sid: int) -> tuple[str, str, str]:
    """The keys (after the prefix) session ``sid`` alone writes: its record, opens and locks."""
    return f"sess{int(sid)}", f"opens{int(sid)}", f"locks{int(sid)}"


class Keys:
    """Key builders for one workspace. Every key carries the checked prefix."""

    __slots__ = ("prefix",)

    def __init__(self, prefix: str) -> None:
        self.prefix = check_prefix(prefix)

    def own(self, key: str | bytes) -> bool:
        """Whether ``key`` belongs to this workspace."""
        if isinstance(key, bytes):
            key = key.decode("utf-8", "surrogateescape")
        return key.startswith(self.prefix)

    @property
    def setting(self) -> str:
        return self.prefix + "setting"

    @property
    def pattern(self) -> str:
        """Glob matching every key of the workspace (SCAN MATCH, ACL ``~`` selectors)."""
        return self.prefix.replace("{", "\\{").replace("}", "\\}") + "*"

    def counter(self, name: str) -> str:
        assert name in ("nextinode", "nextslice", "nextsession", "usedspace", "totalinodes", "inlinebytes")
        return self.prefix + name

    def inode(self, ino: Ino) -> str:
        return f"{self.prefix}i{ino}"

    def entries(self, ino: Ino) -> str:
        return f"{self.prefix}d{ino}"

    def parents(self, ino: Ino) -> str:
        return f"{self.prefix}p{ino}"

    def chunk(self, ino: Ino, index: int) -> str:
        return f"{self.prefix}c{ino}_{index}"

    def chunk_indexes(self, ino: Ino) -> str:
        return f"{self.prefix}ci{ino}"

    def inline(self, slice_id: SliceId) -> str:
        return f"{self.prefix}b{slice_id}"

    def symlink(self, ino: Ino) -> str:
        return f"{self.prefix}s{ino}"

    def xattrs(self, ino: Ino) -> str:
        return f"{self.prefix}x{ino}"

    def session(self, sid: int) -> str:
        """``sess<sid>``: the session's record; every session function declares it as KEYS[1]."""
        return f"{self.prefix}sess{int(sid)}"

    def session_opens(self, sid: int) -> str:
        return f"{self.prefix}opens{int(sid)}"

    def session_locks(self, sid: int) -> str:
        return f"{self.prefix}locks{int(sid)}"

    @property
    def sliceref(self) -> str:
        return self.prefix + "sliceref"

    @property
    def delfiles(self) -> str:
        return self.prefix + "delfiles"

    @property
    def delslices(self) -> str:
        return self.prefix + "delslices"

    @property
    def commits(self) -> str:
        return self.prefix + "commits"

    @property
    def inlinechunks(self) -> str:
        return self.prefix + "inlinechunks"

    @property
    def sessions(self) -> str:
        return self.prefix + "sessions"

    @property
    def sessusers(self) -> str:
        return self.prefix + "sessusers"

    @property
    def jobs(self) -> str:
        return self.prefix + "jobs"

    @property
    def limits(self) -> str:
        return self.prefix + "limits"

    @property
    def journal(self) -> str:
        return self.prefix + "journal"

    @property
    def journal_base(self) -> str:
        return self.prefix + "jbase"

    @property
    def reads(self) -> str:
        return self.prefix + "reads"

    @property
    def reads_base(self) -> str:
        return self.prefix + "rbase"

    @property
    def changes(self) -> str:
        """The workspace's change channel (sharded pub/sub; not a key)."""
        return self.prefix + "changes"

    def history(self, name: str) -> str:
        """``hnext``, ``hcur``, ``hepochs``, ``hckpts``, ``hpinned``: checkpoint bookkeeping
        (docs/history.md)."""
        assert name in ("hnext", "hcur", "hepochs", "hckpts", "hpinned")
        return self.prefix + name

    def preserved_index(self, epoch: int) -> str:
        """``hx<epoch>``: which keys checkpoint ``epoch`` preserved."""
        return f"{self.prefix}hx{int(epoch)}"

    def preserved(self, epoch: int, suffix: str) -> str:
        """``hk<epoch>:<suffix>``: a key as checkpoint ``epoch`` saw it."""
        return f"{self.prefix}hk{int(epoch)}:{suffix}"

    @property
    def trashinfo(self) -> str:
        return self.prefix + "trashinfo"
