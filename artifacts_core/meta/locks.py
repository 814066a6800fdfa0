"""BSD flock and POSIX record locks across hosts: the locks concern of the metadata engine.

Locks live in Redis, each session's in its own ``locks<sid>`` hash (field: the inode; layout in
``lua/30_locks.lua``, decoded by ``decode_locks``), so a lock held on one host blocks every other
host and no session can write another's locks. Each attempt is one
function call that grants or reports a conflict without waiting; a blocking request
(``LOCK_EX`` without ``LOCK_NB``, ``F_SETLKW``) is a loop here with capped exponential backoff,
so a waiter never hammers Redis, and a timeout or a ``cancel`` event interrupts it with EINTR.

Ownership: a lock belongs to (session, owner). ``owner`` is what the VFS gets from FUSE: the
lock_owner for POSIX locks, the file handle for flocks. A session's death (clean close or the
stale-session sweep) releases all of its locks; the VFS calls ``release_locks`` on flush (that
owner's POSIX locks) and release (the handle's flock).

Ranges are inclusive ``[start, end]``; ``end = MAX_OFFSET`` (2^63-1) means "to end of file".
Offsets from 2^53 up are treated as end of file (Lua numbers are doubles; no file is that big).
No deadlock detection (EDEADLK) across hosts, as JuiceFS.
"""

from __future__ import annotations

import errno
import fcntl
import random
import struct
import threading
import time

from artifacts_core.errors import ArtifactsError, InvalidArgument
from artifacts_core.meta.sessions import SessionOps
from artifacts_core.types import Ino

#: "To end of file" (the kernel's OFFSET_MAX for a lock with l_len 0).
MAX_OFFSET = (1 << 63) - 1
#: The largest offset a Lua double holds exactly; larger ends mean end of file.
_EXACT = 1 << 53
#: A POSIX lock record as stored and returned by af_getlk: type, pid, start, end.
_RECORD = struct.Struct(">IIQQ")

#: Blocking waits poll with exponential backoff from 1 ms (a lock released right away is
#: picked up at once) to 100 ms (a long wait costs at most ~10 calls a second per waiter),
#: with +-20 % jitter so waiters on one lock do not retry in lockstep.
BACKOFF_START = 0.001
BACKOFF_CAP = 0.1
BACKOFF_JITTER = 0.2

_FLOCK_OPS = {fcntl.LOCK_SH: "R", fcntl.LOCK_EX: "W", fcntl.LOCK_UN: "U"}
_POSIX_TYPES = (fcntl.F_RDLCK, fcntl.F_WRLCK, fcntl.F_UNLCK)
# The stored type codes are Linux's (F_RDLCK 0, F_WRLCK 1, F_UNLCK 2); map in case the
# platform differs.
_TO_WIRE = {fcntl.F_RDLCK: 0, fcntl.F_WRLCK: 1, fcntl.F_UNLCK: 2}
_FROM_WIRE = {v: k for k, v in _TO_WIRE.items()}


class WouldBlock(ArtifactsError, BlockingIOError):
    """EAGAIN (= EWOULDBLOCK): a non-blocking lock request conflicts with another owner."""

    default_errno = errno.EAGAIN


class Interrupted(ArtifactsError, InterruptedError):
    """EINTR: a blocking lock wait was cancelled or timed out."""

    default_errno = errno.EINTR


def owner_hex(owner: int) -> str:
    """The lock owner as stored: a 64-bit int as 16 lower-case hex digits."""
    return f"{owner & 0xFFFF_FFFF_FFFF_FFFF:016x}"


class LockOps(SessionOps):
    """flock and POSIX locks, held by this client's session: built on ``SessionOps`` (``sid``,
    ``_scall`` / ``_session_call``: one function call on the session's own key; ESTALE -> SessionLost)."""

    #: Lock function calls made (one per attempt; a blocking wait adds one per retry).
    lock_round_trips: int = 0

    def flock(self, ino: Ino, owner: int, op: int, *, timeout: float | None = None,
              cancel: threading.Event | None = None) -> None:
        """BSD ``flock``: ``op`` is LOCK_SH, LOCK_EX or LOCK_UN, optionally | LOCK_NB.
        Same owner converts (shared <-> exclusive; as on Linux, a conversion that must wait
        first drops the lock held). Raises WouldBlock (EAGAIN) with LOCK_NB on a conflict,
        Interrupted (EINTR) when a blocking wait times out or ``cancel`` is set."""
        code = _FLOCK_OPS.get(op & ~fcntl.LOCK_NB)
        if code is None:
            raise InvalidArgument(f"invalid flock operation {op}")
        args = (ino, self.sid, owner_hex(owner), code)
        self._lock_loop("af_flock", args, wait=not op & fcntl.LOCK_NB and code != "U",
                        timeout=timeout, cancel=cancel)

    def setlk(self, ino: Ino, owner: int, type: int, start: int, end: int, pid: int = 0,
              wait: bool = False, *, timeout: float | None = None,
              cancel: threading.Event | None = None) -> None:
        """POSIX ``F_SETLK`` / ``F_SETLKW`` (``wait``) on the inclusive range [start, end]:
        F_RDLCK, F_WRLCK or F_UNLCK. The owner's own ranges split and merge; only other owners
        conflict. Raises WouldBlock (EAGAIN) without ``wait``, Interrupted (EINTR) when a wait
        times out or is cancelled."""
        start, end = _check_range(start, end)
        if type not in _POSIX_TYPES:
            raise InvalidArgument(f"invalid lock type {type}")
        args = (ino, self.sid, owner_hex(owner), _TO_WIRE[type], start, end, pid)
        self._lock_loop("af_setlk", args, wait=wait and type != fcntl.F_UNLCK,
                        timeout=timeout, cancel=cancel)

    def getlk(self, ino: Ino, owner: int, type: int, start: int, end: int) -> tuple[int, int, int, int]:
        """POSIX ``F_GETLK``: ``(type, start, end, pid)`` of a lock of another owner that would
        block this request, or ``(F_UNLCK, start, end, 0)`` when none would. ``pid`` is 0 for a
        holder in another session (its pid names a process on another host)."""
        start, end = _check_range(start, end)
        if type not in (fcntl.F_RDLCK, fcntl.F_WRLCK):
            raise InvalidArgument(f"invalid lock type {type} for F_GETLK")
        self.lock_round_trips += 1
        raw = self._scall("af_getlk", ino, self.sid, owner_hex(owner), _TO_WIRE[type],
                          start, end, ro=True)
        if raw is None:
            return fcntl.F_UNLCK, start, end, 0
        t, pid, s, e = _RECORD.unpack(raw)
        return _FROM_WIRE[t], s, e, pid

    def release_locks(self, ino: Ino, owner: int, *, posix: bool = True, flock: bool = True) -> int:
        """Drop ``owner``'s POSIX locks (on flush) and/or flock (on release) of ``ino`` in one
        round trip; returns how many lock records went. Waiters elsewhere see it on their next
        try. (The VFS should call it only for owners that locked something on that inode.)"""
        which = ("p" if posix else "") + ("f" if flock else "")
        if not which or not self.sid:
            return 0
        self.lock_round_trips += 1
        return int(self._scall("af_lock_release", ino, self.sid, owner_hex(owner), which))

    def _lock_loop(self, function: str, args: tuple, *, wait: bool, timeout: float | None,
                   cancel: threading.Event | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = BACKOFF_START
        while True:
            self.lock_round_trips += 1
            if self._session_call(function, *args):
                return
            if not wait:
                raise WouldBlock("the lock is held by another owner")
            pause = delay * random.uniform(1 - BACKOFF_JITTER, 1 + BACKOFF_JITTER)
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Interrupted("lock wait timed out")
                pause = min(pause, left)
            if cancel is not None:
                if cancel.wait(pause):
                    raise Interrupted("lock wait cancelled")
            else:
                time.sleep(pause)
            delay = min(delay * 2, BACKOFF_CAP)


_OWNER = struct.Struct(">16scI")


def decode_locks(blob: bytes | None) -> dict[str, tuple[str, list[tuple[int, int, int, int]]]]:
    """One session's locks on one inode as stored (``locks<sid>`` field ``<ino>``): owner hex ->
    (flock ``"R"``/``"W"``/``"-"``, POSIX records ``(type, pid, start, end)``)."""
    out = {}
    off = 0
    blob = blob or b""
    while off + _OWNER.size <= len(blob):
        owner, flock, n = _OWNER.unpack_from(blob, off)
        off += _OWNER.size
        recs = [_RECORD.unpack_from(blob, off + i * _RECORD.size) for i in range(n)]
        off += n * _RECORD.size
        out[owner.decode()] = (flock.decode(), recs)
    return out


def _check_range(start: int, end: int) -> tuple[int, int]:
    if start < 0 or end < start or end > MAX_OFFSET:
        raise InvalidArgument(f"invalid lock range [{start}, {end}]")
    return start, (MAX_OFFSET if end >= _EXACT else end)
