"""Change records and the subscription that receives them: the metadata half of cross-host
invalidation (DESIGN.md §10, "AFS-callback style").

Every mutating function announces each change it makes, in the same call, on the workspace's
sharded pub/sub channel ``<prefix>changes`` (``lua/00_common.lua``: ``change()``, where the
record format is specified; docs/metadata.md has the table). ``decode`` turns one record into a
:class:`Change`. :class:`Subscription` holds one subscriber connection per volume, to the master
that owns the workspace's slot (``SSUBSCRIBE`` works the same on a standalone Redis and in a
Cluster), in its own thread, and hands every decoded change to one ``deliver`` callback — the
VFS's ``ChangeFeed`` (``vfs/changes.py``), which owns the listeners.

Losing the subscription (connection error, Redis restart, the slot moved, no answer to a PING)
is reported before anything else: ``deliver`` gets a change of kind ``"all"`` (anything may have
changed while nobody listened) and ``subscribed`` turns false; the thread then re-subscribes with
capped exponential backoff and, once the server confirms, delivers ``"all"`` again (what was
cached while unsubscribed may be stale) with ``subscribed`` true. So a cache is trustworthy
exactly while ``subscribed`` is true and no ``"all"`` came after it was filled.

Concurrency: the thread only reads its own connection; ``deliver`` runs on it, in channel order.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Literal

import msgspec
import redis.exceptions as rex

from artifacts_core.meta.client import MetaClient
from artifacts_core.meta.pubsub import SubscriberConnection
from artifacts_core.types import Ino

log = logging.getLogger("artifacts.meta")

ChangeKind = Literal["entry", "rename", "attr", "data", "all"]

#: Record kinds as the functions spell them (one letter: records are per operation).
_KINDS: dict[bytes, ChangeKind] = {b"e": "entry", b"r": "rename", b"a": "attr", b"d": "data",
                                   b"w": "all"}  # "w": a restore changed the whole workspace
#: The record version this reader understands (later versions of it only append fields).
RECORD_VERSION = b"1"


class Change(msgspec.Struct, frozen=True, gc=False):
    """One change of the workspace.

    - ``entry``: the name ``name`` in directory ``parent`` was created, removed or replaced;
      ``ino`` is the inode it refers (or referred) to, whose link count changed with it, and the
      directory's own attributes (mtime, link count) changed too.
    - ``rename``: ``parent``/``name`` moved to ``new_parent``/``new_name`` (op ``rename``), or
      the two names were swapped (op ``exchange``); ``ino`` is the moved inode. Both directories'
      attributes changed. A replaced target comes as a separate ``attr`` change of its inode.
    - ``attr``: attributes or extended attributes of ``ino`` (chmod, chown, utimens, xattrs).
    - ``data``: the content of ``ino`` (write, truncate, fallocate, copy, replace), so its
      length and times too. Compaction is not announced: it changes no byte.
    - ``all``: anything may have changed: the subscription was lost (op ``lost``) or has just
      been (re-)established (op ``subscribed``), or a record could not be read (op ``unknown``).

    ``session`` is the acting session (0 when the change was made without one); ``own`` is true
    when that session is this volume's own. ``time`` is the server clock when it happened
    (seconds, microsecond resolution). Names are bytes, exactly as stored.
    """

    kind: ChangeKind
    ino: Ino = Ino(0)
    parent: Ino = Ino(0)
    name: bytes = b""
    new_parent: Ino = Ino(0)
    new_name: bytes = b""
    session: int = 0
    own: bool = False
    op: str = ""
    time: float = 0.0


def decode(raw: bytes, own_session: int = 0) -> Change:
    """One record as ``change()`` in ``lua/00_common.lua`` writes it. A record this reader does
    not understand becomes an ``all`` change: dropping every cache is always safe."""
    f = raw.split(b"\0")
    kind = _KINDS.get(f[1]) if len(f) >= 7 and f[0] == RECORD_VERSION else None
    if kind is None:
        log.warning("unreadable change record %r: treating it as a change of everything", raw[:80])
        return Change("all", op="unknown")
    try:
        session = int(f[3])
        parent = new_parent = 0
        name = new_name = b""
        if len(f) >= 9 and f[7]:  # an empty field: absent (a later field follows)
            parent, name = int(f[7]), f[8]
            if len(f) >= 11 and f[9]:
                new_parent, new_name = int(f[9]), f[10]
        return Change(kind, Ino(int(f[6])), Ino(parent), name, Ino(new_parent), new_name, session,
                      session != 0 and session == own_session, f[2].decode("ascii", "replace"),
                      int(f[4]) + int(f[5]) / 1e6)
    except ValueError:
        log.warning("malformed change record %r: treating it as a change of everything", raw[:80])
        return Change("all", op="unknown")


LOST = Change("all", op="lost")
SUBSCRIBED = Change("all", op="subscribed")


class _Lost(Exception):
    """The subscription ended without a socket error (server unsubscribed us, PING unanswered)."""


class Subscription:
    """One subscriber connection to the workspace's change channel, served by its own thread."""

    #: Idle seconds before a PING checks that the connection still carries messages (a half-open
    #: TCP connection reads as silence forever), and how long its answer may take: a dead
    #: subscription is noticed within ~10 s even when nothing is written.
    PING_AFTER = 5.0
    PING_TIMEOUT = 5.0
    #: Re-subscription backoff: quick for a Redis restart, capped so a long outage costs one
    #: connection attempt every few seconds.
    BACKOFF_MIN = 0.05
    BACKOFF_MAX = 2.0
    #: Longest wait for data before the thread looks at its stop flag and PING timer again.
    POLL = 0.5
    #: While records stream in (the previous batch came less than STREAM_GAP ago), the thread
    #: waits COALESCE after each batch so the next read takes several at once: a wake-up costs
    #: ~15 µs of CPU on a loaded machine, and a writing mount receives one record of its own per
    #: operation. It adds at most COALESCE to a record's delay, and only under a stream.
    STREAM_GAP = 0.002
    COALESCE = 0.0005

    def __init__(self, client: MetaClient, *, deliver: Callable[[Change], None],
                 session: Callable[[], int] = lambda: 0, own_wanted: Callable[[], bool] = lambda: True) -> None:
        """``session``: this volume's session id (its records are flagged ``own``);
        ``own_wanted``: False when no consumer wants those records: they are then dropped
        undecoded (a writing mount receives one record per operation of its own)."""
        self._client = client
        self._deliver = deliver
        self._session = session
        self._own_wanted = own_wanted
        self._channel = client.keys.changes
        self._stop = threading.Event()
        self._subscribed = threading.Event()
        self._tried = threading.Event()  # the first attempt has ended, well or not
        self._conn: SubscriberConnection | None = None
        self._thread: threading.Thread | None = None
        self._denied_logged = False
        self.received = 0  # change records read
        self.losses = 0  # subscriptions lost after being established

    @property
    def subscribed(self) -> bool:
        return self._subscribed.is_set()

    def wait_subscribed(self, timeout: float | None = None) -> bool:
        return self._subscribed.wait(timeout)

    def wait_first_attempt(self, timeout: float | None = None) -> bool:
        """Wait until the first subscription attempt succeeded or failed; returns ``subscribed``."""
        self._tried.wait(timeout)
        return self.subscribed

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._main, name=f"artifacts-changes-{self._channel}",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Unsubscribe and end the thread (prompt: the socket is shut to wake a blocked read)."""
        self._stop.set()
        conn = self._conn
        if conn is not None:
            conn.close()  # wakes the thread if it is waiting for data
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._subscribed.clear()

    # -- the thread ----------------------------------------------------------------------------

    def _main(self) -> None:
        delay = self.BACKOFF_MIN
        while not self._stop.is_set():
            try:
                self._conn = conn = SubscriberConnection(self._client.target, *self._client.owner_address(),
                                                         timeout=self._client.timeout)
                try:
                    conn.connect()
                    conn.send("SSUBSCRIBE", self._channel)
                    self._confirm(conn)
                    self._subscribed.set()
                    self._tried.set()
                    delay = self.BACKOFF_MIN
                    self._hand(SUBSCRIBED)
                    self._listen(conn)
                finally:
                    self._conn = None
                    conn.close()
            except Exception as e:  # every failure is a lost subscription
                if self._stop.is_set():
                    break
                self._lost(e)
                self._tried.set()
                if isinstance(e, rex.NoPermissionError) or "NOPERM" in str(e):
                    delay = self.BACKOFF_MAX
                if self._stop.wait(delay * random.uniform(0.5, 1.0)):  # jitter only
                    break
                delay = min(delay * 2, self.BACKOFF_MAX)
        if self._subscribed.is_set():
            self._subscribed.clear()

    def _confirm(self, conn: SubscriberConnection) -> None:
        reply = conn.reply()
        if not (isinstance(reply, list) and reply and reply[0] == b"ssubscribe"):
            raise _Lost(f"unexpected reply to SSUBSCRIBE: {reply!r}")

    def _listen(self, conn: SubscriberConnection) -> None:
        last = time.monotonic()
        pinged = 0.0
        while not self._stop.is_set():
            replies = conn.replies(self.POLL)
            if replies:
                for reply in replies:
                    self._handle(reply)
                now = time.monotonic()
                if now - last < self.STREAM_GAP:
                    time.sleep(self.COALESCE)
                last, pinged = now, 0.0
                continue
            now = time.monotonic()
            if pinged and now - pinged > self.PING_TIMEOUT:
                raise _Lost(f"no answer to PING within {self.PING_TIMEOUT:.0f} s")
            if not pinged and now - last > self.PING_AFTER:
                conn.send("PING")
                pinged = now

    def _handle(self, reply) -> None:
        if isinstance(reply, Exception):
            raise reply
        if not isinstance(reply, list) or not reply:
            return  # the answer to a PING
        kind = reply[0]
        if kind == b"smessage" and len(reply) == 3:
            self.received += 1
            raw, own = reply[2], self._session()
            if own and not self._own_wanted() and raw.split(b"\0", 4)[3:4] == [b"%d" % own]:
                return
            self._hand(decode(raw, own))
        elif kind == b"sunsubscribe":
            raise _Lost("the server ended the subscription (the workspace's slot moved)")

    def _hand(self, change: Change) -> None:
        try:
            self._deliver(change)
        except Exception:  # a failing consumer must not end the subscription
            log.exception("delivering a change failed")

    def _lost(self, error: Exception) -> None:
        if isinstance(error, rex.MovedError):
            self._client.refresh_owner()
        denied = isinstance(error, rex.NoPermissionError) or "NOPERM" in str(error)
        if self._subscribed.is_set():
            self._subscribed.clear()
            self.losses += 1
            log.warning("change subscription on %s lost (%s); dropping cached metadata and "
                        "re-subscribing", self._channel, error)
            self._hand(LOST)
        elif denied and not self._denied_logged:
            self._denied_logged = True
            log.warning("this Redis user may not subscribe to %s: other hosts' changes show up only "
                        "when caches expire (ask the orchestrator for a new session)", self._channel)
        else:
            log.debug("change subscription on %s failed: %s", self._channel, error)
