"""Sessions and open-file registration: the sessions concern of the metadata engine.

Every client (mount, path-API process) registers a session: a record ``sess<sid>`` (info, expiry
on the server clock) it heartbeats. Opens are registered in the session's own ``opens<sid>``
(ino -> count) in the SAME function call that fetches the open-time attributes (``af_open``),
so an unlink anywhere keeps an open inode alive (sustained, nlink 0) until its last close, or
until its holder's session expires.

Who writes what (DESIGN.md §10, ``lua/31_sessions.lua``): a session writes only its own keys.
A client with a full-rights Redis user allocates its id itself; a session ACL user of the
orchestrator cannot write the shared ``sessions`` index or ``nextsession``, so the orchestrator
assigned its id when it minted the user, and ``new_session`` reads it from ``sessusers`` (one
extra round trip, once). Such a session never sweeps others: the orchestrator does.

Moving parts, all in ``lua/31_sessions.lua``, one round trip each:
- ``new_session`` / ``heartbeat`` / ``close_session``;
- ``open`` / ``close_file`` / ``close_many``;
- ``cleanup_stale_sessions`` (full-rights clients): the client that wins the ``jobs`` election
  ends every session whose expiry passed: locks released, opens dropped, sustained inodes no one
  else holds freed.

The invariant the VFS relies on: a session is live while its ``sess<sid>`` key exists. Once it
was swept (this host stalled past the expiry), its opens and locks are gone, so heartbeat raises
:class:`SessionLost` and the engine refuses further opens and locks with it (ESTALE): the VFS
must fail writes with a clear error instead of writing into files that may be freed.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from artifacts_core.errors import ArtifactsError, InvalidArgument, PermissionDenied
from artifacts_core.meta.attrs import Attr, unpack_attr
from artifacts_core.meta.state import EngineState
from artifacts_core.types import ROOT_CALLER, Caller, Ino

#: Heartbeat every 12 s and expire after 60 s, as JuiceFS: the expiry is 5 heartbeats, so a host
#: survives four missed beats (a GC pause, a Redis failover of ~30 s) before another host may
#: take its locks and free what it held open; longer would keep a crashed host's locks (and
#: unlinked files) for longer (JuiceFS #1587: MySQL waited minutes).
HEARTBEAT_INTERVAL = 12.0
SESSION_TIMEOUT = 60.0
#: The sweep of stale sessions runs at most once per this interval across all clients (0.9 of a
#: heartbeat, as JuiceFS: every live client tries on its beat, one wins).
CLEANUP_INTERVAL = 0.9 * HEARTBEAT_INTERVAL
#: Inodes (locks + opens) released per call: bounds how long one function keeps Redis busy
#: (~1 ms per 100 inodes); a bigger session takes several calls.
CLEANUP_BUDGET = 1000
#: Expired sessions looked at per sweep call.
CLEANUP_MAX_SESSIONS = 100


class SessionLost(ArtifactsError):
    """This client's session expired and was cleaned up by another client while it was alive
    (it missed heartbeats): its opens and locks are gone. ESTALE, so writes through handles
    opened under it fail clearly; register a new session for new opens."""

    default_errno = errno.ESTALE


def open_mask(flags: int) -> int:
    """The access mask (4 read, 2 write) ``open(2)`` flags need; O_TRUNC needs write too."""
    acc = flags & os.O_ACCMODE
    mask = {os.O_RDONLY: 4, os.O_WRONLY: 2, os.O_RDWR: 6}.get(acc, 6)
    if flags & os.O_TRUNC:
        mask |= 2
    return mask


class SessionOps(EngineState):
    """Sessions and open files (state: ``EngineState``'s ``client``, ``keys``, ``sid``)."""

    # Per-engine settings: tests shorten them; the class values are the production defaults.
    session_timeout: float = SESSION_TIMEOUT
    heartbeat_interval: float = HEARTBEAT_INTERVAL
    cleanup_interval: float = CLEANUP_INTERVAL
    session_lost: bool = False
    #: A read-only session's Redis ACL lets it write only its own session keys (DESIGN.md §10):
    #: it never frees inodes nor sweeps; what it would free is left to the sweep.
    session_read_only: bool = False
    #: The session id was assigned by the orchestrator to this Redis user (a session ACL user):
    #: it may write no other session's keys, so it never sweeps (the orchestrator does).
    session_assigned: bool = False

    # -- the session ---------------------------------------------------------------------------

    def new_session(self, info: Mapping[str, Any] | None = None, *, timeout: float | None = None) -> int:
        """Register this client's session; returns its id (also kept in ``self.sid``).
        ``info``: host, pid, mountpoint, version, read_only (defaults: this process)."""
        from artifacts_core import __version__

        if timeout is not None:
            self.session_timeout = float(timeout)
        desc = {"host": socket.gethostname(), "pid": os.getpid(), "mountpoint": "",
                "version": __version__, "read_only": False}
        desc.update(info or {})
        text, expiry = json.dumps(desc, sort_keys=True), _secs(self.session_timeout)
        assigned = self._assigned_sids()
        if assigned is None:
            try:
                sid = int(self.client.call("af_session_new", text, expiry, key=self.keys.setting))
            except PermissionDenied as e:
                if not self.client.target.username:
                    raise
                raise PermissionDenied(
                    f"Redis user {self.client.target.username!r} has no session id of this workspace and may "
                    "not allocate one", hint="ask the orchestrator for a new session (orchestrator and host "
                    "must run the same version of artifacts)") from e
        else:
            sid = self._register_assigned(assigned, text, expiry)
        self.sid = sid
        self.client.declared = self.keys.session(sid)  # every call now declares the session's key
        self.session_lost = False
        self.session_read_only = bool(desc.get("read_only"))
        self.session_assigned = assigned is not None
        return sid

    def set_tag(self, tag: str) -> None:
        """The tag this session's later change records carry in the journal ('' clears it). A
        no-op without a session (nothing to attach it to)."""
        if self.sid:
            self.client.call("af_session_tag", tag)

    def _assigned_sids(self) -> list[int] | None:
        """The session ids the orchestrator assigned to this client's Redis user, if any."""
        user = self.client.target.username
        if not user:
            return None
        raw = self.client.command("HGET", self.keys.sessusers, user)
        if not raw:
            return None
        first, _, count = raw.decode().partition(":")
        return list(range(int(first), int(first) + int(count or 1)))

    def _register_assigned(self, sids: list[int], text: str, timeout: str) -> int:
        """Register the first of ``sids`` no live client holds (one round trip per id tried)."""
        for sid in sids:
            try:
                return int(self.client.call("af_session_new", text, timeout, key=self.keys.session(sid)))
            except ArtifactsError as e:
                if e.errno != errno.EBUSY:
                    raise
        raise ArtifactsError(f"all {len(sids)} session ids of this grant are held by live clients",
                             errno=errno.EBUSY, hint="close one of them, or ask the orchestrator for a new session")

    def heartbeat(self) -> None:
        """Refresh this session's expiry (one round trip). Raises :class:`SessionLost` when the
        session was cleaned up as stale meanwhile; it is not silently re-registered."""
        if not self.sid:
            raise InvalidArgument("no session registered", hint="call new_session() first")
        if not self._scall("af_session_beat", self.sid, _secs(self.session_timeout)):
            self.session_lost = True
            raise SessionLost(f"session {self.sid} expired and was cleaned up by another client",
                              hint="its open files and locks were released; reopen files")

    def close_session(self) -> None:
        """End this session cleanly: release its locks and opens (freeing unlinked files no one
        else holds) and remove it. Usually one round trip; a huge session takes a few. A
        read-only session releases its locks and leaves its opens to the sweep."""
        if not self.sid:
            return
        while True:
            done, _freed = self._scall("af_session_close", self.sid, CLEANUP_BUDGET,
                                            self._may_free())
            if done:
                break
        self.sid = 0
        self.client.declared = self.keys.setting

    def cleanup_stale_sessions(self, now_offset: float = 0.0) -> int:
        """If this client wins the election (at most once per ``cleanup_interval`` across all
        clients), end every session whose expiry passed; returns how many were ended (0 when
        another client won, or this session is read-only or a session ACL user's: those may
        write no other session's keys). ``now_offset`` (seconds) shifts the server clock, for
        tests."""
        if self.session_read_only or self.session_assigned:
            return 0
        ended = 0
        force = 0
        while True:
            n, more, _freed = self.client.call(
                "af_session_sweep", self.sid, _secs(now_offset), _secs(self.cleanup_interval),
                force, CLEANUP_MAX_SESSIONS, CLEANUP_BUDGET)
            if n < 0:
                return 0
            ended += n
            if not more:
                return ended
            force = 1

    def list_sessions(self) -> list[dict[str, Any]]:
        """Registered sessions: their info plus ``sid`` and ``expire`` (server seconds). Ids of
        the index without a record (ended, or assigned to a grant and not registered) are left
        out. Two round trips."""
        members = self.client.command("ZRANGE", self.keys.sessions, 0, -1, "WITHSCORES") or []
        if members and not isinstance(members[0], (list, tuple)):
            members = list(zip(members[::2], members[1::2], strict=False))
        records = self.client.pipeline(
            lambda pipe: [pipe.execute_command("HMGET", self.keys.session(int(sid)), "info", "expire")
                          for sid, _ in members]) if members else []
        out = []
        for (sid, _score), (info, expire) in zip(members, records, strict=True):
            if info is None:
                continue
            desc = json.loads(info)
            desc.update(sid=int(sid), expire=float(expire))
            out.append(desc)
        return out

    def start_heartbeat(self, on_lost: Callable[[SessionLost], None] | None = None) -> threading.Event:
        """Heartbeat (and try the stale-session sweep) every ``heartbeat_interval`` in a daemon
        thread until the returned event is set or the session is lost (then ``on_lost`` runs).
        Redis outages are retried on the next beat."""
        stop = threading.Event()

        def run() -> None:
            while not stop.wait(self.heartbeat_interval):
                try:
                    self.heartbeat()
                    self.cleanup_stale_sessions()
                except SessionLost as e:
                    if on_lost is not None:
                        on_lost(e)
                    return
                except ArtifactsError:
                    continue  # Redis unreachable: the next beat retries; expiry leaves slack

        threading.Thread(target=run, name=f"artifacts-heartbeat-{self.sid}", daemon=True).start()
        return stop

    # -- open files ----------------------------------------------------------------------------

    def open(self, ino: Ino, flags: int = os.O_RDONLY, caller: Caller = ROOT_CALLER) -> Attr:
        """The open-time attribute fetch: checks that ``ino`` exists (ENOENT) and that ``caller``
        may open it with ``flags`` (EACCES; EISDIR for writing a directory), registers the open
        under this session, and returns the attributes. One round trip."""
        raw = self._session_call("af_open", ino, open_mask(flags), caller.uid, caller.gid_arg(), self.sid)
        return unpack_attr(raw)

    def close_file(self, ino: Ino) -> bool:
        """Deregister one open of ``ino``; frees it when it was unlinked and this was the last
        open anywhere. Returns whether it was freed. One round trip."""
        if not self.sid:
            return False
        return bool(self._scall("af_close", self.sid, self._may_free(), ino))

    def close_many(self, inos: Iterable[Ino]) -> int:
        """Deregister one open per item (an inode twice = two closes), in one round trip: the
        VFS batches releases in the background. Returns how many inodes were freed."""
        inos = list(inos)
        if not self.sid or not inos:
            return 0
        return int(self._scall("af_close", self.sid, self._may_free(), *inos))

    def _may_free(self) -> int:
        return 0 if self.session_read_only else 1

    def _scall(self, function: str, *args: Any, ro: bool = False) -> Any:
        """One call of a session or lock function. It declares this session's own ``sess<sid>``
        key (``setting`` without a session): FCALL needs write permission on its declared key, a
        session's ACL user may write its own session keys only, and the function takes the
        session id from that key."""
        return self.client.call(function, *args, ro=ro)

    def _session_call(self, function: str, *args: Any) -> Any:
        """``_scall`` that turns the engine's ESTALE (session swept) into SessionLost."""
        try:
            return self._scall(function, *args)
        except ArtifactsError as e:
            if e.errno == errno.ESTALE and not isinstance(e, SessionLost):
                self.session_lost = True
                raise SessionLost(str(e.strerror),
                                  hint="this session was cleaned up as stale; register a new one") from e
            raise


def _secs(value: float) -> str:
    """Seconds as Redis receives them (fractions kept: tests use sub-second expiries)."""
    return f"{float(value):.6f}"
