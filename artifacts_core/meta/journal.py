"""The workspace journal: every change, attributed, durable, readable from a cursor and live.

Every mutating function appends its change records (``lua/00_common.lua``: ``change()``, where
the record format is specified; the same records the change channel carries, plus the length
change and the caller's tag) to the list ``<prefix>journal``, in the same call; a session's
registration is journaled too (kind ``s``), so the actor of a record stays known after its
session ended. ``lua/45_journal.lua`` reads it (``af_journal_read``: from a position or a time),
resolves current paths (``af_journal_paths``) and trims it (``af_journal_trim``: the
orchestrator's retention, full rights only). docs/journal.md has the whole story, including what
a hostile session can and cannot do to it.

A record's position (``Event.id``) is stable for its lifetime: ``jbase`` (records retention
dropped) + its index. A reader keeps the position after the last event it saw as its cursor.

``Journal.events(since=..., follow=True)`` iterates; following waits on the workspace's change
channel (``changes.Subscription``: each change record wakes the reader, which then reads the
journal from its cursor) and re-reads every ``FOLLOW_POLL`` seconds regardless, so a lost
subscription delays events, never loses them. Paths and actors are resolved at read time: a
path is where the inode is now (None once it has no name), ``where`` is the record's original
name under its parent's current path; the actor is the session's registration (from the
journal's ``s`` records, else the live ``sess<sid>``), plus whatever ``enrich`` adds (the
orchestrator adds account, tenant, grant and runtime).
"""

from __future__ import annotations

import datetime as _dt
import itertools
import json
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import msgspec

from artifacts_core.errors import InvalidArgument
from artifacts_core.meta.client import MetaClient

#: Kinds as records spell them.
_KINDS = {b"e": "entry", b"r": "rename", b"a": "attr", b"d": "data", b"s": "session", b"w": "workspace",
          b"o": "read"}
#: Records per af_journal_read call (the function's own cap is 10,000).
PAGE = 1000
#: A follower re-reads at least this often even without a wake-up (a lost subscription, a user
#: without channel rights): the bound on an event's delay when pub/sub fails.
FOLLOW_POLL = 1.0


class Event(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One journal event. ``id`` is its position (a cursor: read on from ``id + 1``)."""

    id: int
    time: float
    kind: str
    op: str
    session: int
    ino: int = 0
    parent: int = 0
    name: str | None = None
    new_parent: int = 0
    new_name: str | None = None
    length_change: int | None = None
    length: int | None = None
    tag: str | None = None
    #: resolved at read time
    path: str | None = None
    where: str | None = None
    new_where: str | None = None
    actor: dict[str, Any] | None = None


def _text(b: bytes) -> str:
    return b.decode("utf-8", "backslashreplace")


def decode(pos: int, raw: bytes) -> Event:
    """One journal record (see ``change()`` in ``lua/00_common.lua``); an unreadable one becomes
    an event of kind ``unknown`` (kept, never dropped: the journal shows what it holds)."""
    f = raw.split(b"\0")
    try:
        kind = _KINDS.get(f[1], "unknown") if f[0] == b"1" and len(f) >= 7 else "unknown"
        if kind == "unknown":
            return Event(id=pos, time=0.0, kind="unknown", op="", session=0, tag=_text(raw[:200]))
        ev = Event(id=pos, time=int(f[4]) + int(f[5]) / 1e6, kind=kind, op=_text(f[2]), session=int(f[3]),
                   ino=int(f[6]))
        if kind == "session":
            ev.name = _text(f[7]) if len(f) > 7 else ""  # the ACL user
            ev.tag = _text(f[8]) if len(f) > 8 else "{}"  # the info JSON
            return ev
        if len(f) > 8 and f[7]:
            ev.parent, ev.name = int(f[7]), _text(f[8])
        if len(f) > 10 and f[9]:
            ev.new_parent, ev.new_name = int(f[9]), _text(f[10])
        if len(f) > 11 and f[11]:
            ev.length_change = int(f[11])
        if len(f) > 12 and f[12]:
            ev.tag = _text(f[12])
        if len(f) > 13 and f[13]:
            ev.length = int(f[13])
        return ev
    except (ValueError, IndexError):
        return Event(id=pos, time=0.0, kind="unknown", op="", session=0, tag=_text(raw[:200]))


_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(since: int | float | str | _dt.datetime | None) -> tuple[int | None, float | None]:
    """(position, time) from what a user gives: an int or digits = a position (event id); a
    datetime, an ISO 8601 time or a relative age (``30s``, ``10m``, ``2h``, ``1d``) = a time;
    a float = a Unix time; None or ``now`` = from now (the end)."""
    if since is None:
        return None, None
    if isinstance(since, bool):
        raise InvalidArgument("since must be an event id, a time or an age like 10m")
    if isinstance(since, int):
        if since < 0:
            raise InvalidArgument(f"event id {since} is negative")
        return since, None
    if isinstance(since, float):
        return None, since
    if isinstance(since, _dt.datetime):
        return None, (since if since.tzinfo else since.astimezone()).timestamp()
    text = str(since).strip()
    if text == "now":
        return None, None
    if text.isdigit():
        return int(text), None
    m = _RELATIVE.match(text)
    if m:
        return None, time.time() - float(m.group(1)) * _UNITS[m.group(2)]
    try:
        return None, parse_since(_dt.datetime.fromisoformat(text.replace("Z", "+00:00")))[1]
    except ValueError:
        raise InvalidArgument(f"cannot read {text!r} as an event id, a time or an age",
                              hint="give an event id (digits), an ISO time (2026-01-31T12:00) or an age "
                                   "(30s, 10m, 2h, 1d)") from None


class Page(msgspec.Struct):
    """One read: the events, the cursor to read on from, and how many events between the cursor
    asked for and the oldest kept were dropped by retention (0: nothing missed). With the read
    audit (``reads=True``), ``reads_next`` is the cursor in that list (its own positions: a
    ``read`` event's ``id`` is one of them) and ``reads_missed`` its count of dropped records."""

    events: list[Event]
    next: int
    missed: int = 0
    #: more records follow (the read stopped at its limit)
    more: bool = False
    reads_next: int | None = None
    reads_missed: int = 0
    #: the positions this read started from (a stream's per-event cursors are built from them)
    first: int = 0
    reads_first: int | None = None


class _Raw(msgspec.Struct):
    """One af_journal_read reply, decoded: events from position ``first``; ``end`` the position
    the next record will get."""

    base: int
    first: int
    end: int
    events: list[Event]

    @property
    def next(self) -> int:
        return self.first + len(self.events)


def _matches_actor(ev: Event, want: str) -> bool:
    a = ev.actor or {}
    key, sep, value = want.partition("=")
    if sep:
        return str(a.get(key, "")) == value
    return any(str(v) == want for v in a.values()) or str(ev.session) == want or ev.tag == want


class Waker:
    """Wakes a follower when the workspace changes: a subscription to its change channel (each
    record sets a flag). ``arm()`` before reading, ``wait(t)`` after finding nothing new: a
    change made in between is not missed. Without the subscription (refused, lost) ``wait``
    simply times out: the caller polls."""

    def __init__(self, client: MetaClient) -> None:
        from artifacts_core.meta.changes import Subscription  # the journal needs it only to follow

        self._flag = threading.Event()
        self._sub = Subscription(client, deliver=lambda _c: self._flag.set())
        self._sub.start()
        self._sub.wait_first_attempt(2.0)

    def arm(self) -> None:
        self._flag.clear()

    def wait(self, timeout: float) -> bool:
        return self._flag.wait(max(0.0, timeout))

    def close(self) -> None:
        self._sub.stop()


class Journal:
    """Reads one workspace's journal through ``client`` (a full-rights or any session user)."""

    def __init__(self, client: MetaClient, *, enrich: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                 resolve_paths: bool = True) -> None:
        self.client = client
        self.enrich = enrich
        self.resolve_paths = resolve_paths
        self._actors: dict[int, dict[str, Any]] = {}

    # -- one page --------------------------------------------------------------------------

    def end(self, lst: str = "journal") -> int:
        """The position the next event will get (``since=journal.end()``: only new events);
        ``lst="reads"``: in the read audit."""
        return int(self.client.call("af_journal_read", 0, 1, "", lst, ro=True)[1])

    def _raw(self, pos: int | None, at: float | None, limit: int, lst: str = "journal") -> _Raw:
        reply = self.client.call("af_journal_read", "" if pos is None else pos, limit,
                                 "" if at is None else int(at * 1e6), lst, ro=True)
        first = int(reply[2])
        return _Raw(int(reply[0]), first, int(reply[1]), [decode(first + i, r) for i, r in enumerate(reply[3:])])

    def read(self, since: int | float | str | _dt.datetime | None = 0, *, limit: int = PAGE,
             path: str | None = None, actor: str | None = None, sessions: bool = False,
             reads: bool = False, reads_since: int | str | None = None) -> Page:
        """Events from ``since`` (a position, a time, an age; None: the end), at most ``limit``
        records read (filters apply after: a page may hold fewer events than records read).
        ``path``: events whose path, original name or new name lies under this prefix;
        ``actor``: events whose actor has a field equal to this (``key=value`` for one field).
        ``sessions``: include the session-registration events. ``reads``: merge in the read
        audit's events (kind ``read``), in time order, from ``reads_since`` (a position in that
        list; None: from the time ``since`` names, or that of the journal event at ``since``)."""
        if not 1 <= limit <= 10000:
            raise InvalidArgument(f"limit {limit} is outside 1..10000")
        pos, at = parse_since(since)
        if pos is None and at is None:
            end = self.end()
            if not reads:
                return Page([], end)
            rpos = parse_since(reads_since)[0] if reads_since is not None else self.end("reads")
            return self.read(end, limit=limit, path=path, actor=actor, sessions=sessions, reads=True,
                             reads_since=rpos)
        j = self._raw(pos, at, limit)
        missed = max(0, j.base - pos) if pos is not None else 0
        page = Page([], j.next, missed, j.next < j.end, first=j.first)
        events = j.events
        if reads:
            rpos, rat = (parse_since(reads_since)[0], None) if reads_since is not None else (None, at)
            if rpos is None and rat is None:  # from the time of the journal event at `since`
                rat = j.events[0].time if j.events else None
                if rat is None:
                    rpos = self.end("reads")
            r = self._raw(rpos, rat, limit, "reads")
            events, page.next, page.reads_next = _merge(j, r)
            page.more = page.next < j.end or page.reads_next < r.end
            page.reads_missed = max(0, r.base - rpos) if rpos is not None else 0
            page.reads_first = r.first
        self._learn_sessions(events)
        events = [e for e in events if sessions or e.kind != "session"]
        self._resolve(events)
        if path:
            prefix = "/" + path.strip("/")
            events = [e for e in events if any(_under(p, prefix) for p in (e.path, e.where, e.new_where))]
        if actor:
            events = [e for e in events if _matches_actor(e, actor)]
        page.events = events
        return page

    # -- iteration -------------------------------------------------------------------------

    def events(self, since: int | float | str | _dt.datetime | None = 0, *, follow: bool = False,
               path: str | None = None, actor: str | None = None, timeout: float | None = None,
               stop: threading.Event | None = None, reads: bool = False) -> Iterator[Event]:
        """Every event from ``since`` (default: the oldest kept); with ``follow``, then every new
        one as it happens, until ``timeout`` seconds pass without one (None: forever) or ``stop``
        is set. Stop early by closing the generator. ``reads``: the read audit's events merged in
        (a follower sees them within ``FOLLOW_POLL``: opens are not announced on the channel)."""
        cursor: int | float | str | _dt.datetime | None = since
        rcursor: int | None = None
        if since is None:
            cursor = self.end()
            rcursor = self.end("reads") if reads else None
        waker = Waker(self.client) if follow else None
        try:
            idle_since = time.monotonic()
            while True:
                if waker is not None:
                    waker.arm()
                page = self.read(cursor, path=path, actor=actor, reads=reads, reads_since=rcursor)
                yield from page.events
                cursor, rcursor = page.next, page.reads_next
                if page.events:
                    idle_since = time.monotonic()
                if page.more:
                    continue
                if not follow:
                    return
                if stop is not None and stop.is_set():
                    return
                left = FOLLOW_POLL
                if timeout is not None:
                    left = min(left, timeout - (time.monotonic() - idle_since))
                    if left <= 0:
                        return
                assert waker is not None
                waker.wait(left)
        finally:
            if waker is not None:
                waker.close()

    async def aevents(self, since: int | float | str | _dt.datetime | None = 0, *, follow: bool = False,
                      path: str | None = None, actor: str | None = None,
                      timeout: float | None = None, reads: bool = False) -> AsyncIterator[Event]:
        """``events`` as an async iterator: the blocking reads run in a worker thread."""
        import asyncio

        stop = threading.Event()
        it = self.events(since, follow=follow, path=path, actor=actor, timeout=timeout, stop=stop, reads=reads)
        done = object()
        try:
            while True:
                ev = await asyncio.to_thread(next, it, done)
                if ev is done:
                    return
                assert isinstance(ev, Event)
                yield ev
        finally:
            stop.set()

    # -- resolution ------------------------------------------------------------------------

    def _learn_sessions(self, events: list[Event]) -> None:
        for e in events:
            if e.kind == "session":
                self._actors[e.session] = self._actor(e.session, e.name or "", e.tag or "{}")

    def _actor(self, sid: int, user: str, info: str | bytes | None) -> dict[str, Any]:
        try:
            desc = json.loads(info) if info else {}
        except ValueError:
            desc = {}
        actor: dict[str, Any] = {"session": sid}
        if user:
            actor["user"] = user
        for k in ("host", "pid", "mountpoint", "frontend", "read_only"):
            if k in desc and desc[k] not in ("", None):
                actor[k] = desc[k]
        if "frontend" not in actor and sid:
            actor["frontend"] = "mount" if desc.get("mountpoint") else "python"
        return self.enrich(actor) if self.enrich else actor

    def _resolve(self, events: list[Event]) -> None:
        missing = sorted({e.session for e in events if e.session and e.session not in self._actors})
        if missing:
            keys = self.client.keys
            rows = self.client.pipeline(lambda pipe: [pipe.execute_command("HMGET", keys.session(s), "info", "user")
                                                      for s in missing])
            for sid, (info, user) in zip(missing, rows, strict=True):
                if info is not None:
                    self._actors[sid] = self._actor(sid, (user or b"").decode(), info)
        for e in events:
            e.actor = self._actors.get(e.session, {"session": e.session})
        if not self.resolve_paths:
            return
        triples: list[tuple[int, int, str]] = []
        index: dict[tuple[int, int, str], int] = {}

        def want(ino: int, parent: int = 0, name: str = "") -> int:
            key = (ino, parent, name)
            if key not in index:
                index[key] = len(triples)
                triples.append(key)
            return index[key]

        plan: list[tuple[int | None, int | None, int | None]] = []
        for e in events:
            if e.kind in ("unknown", "session"):
                plan.append((None, None, None))
                continue
            p = want(e.ino, e.new_parent or e.parent, (e.new_name if e.new_parent else e.name) or "")
            w = want(e.parent) if e.parent else None
            nw = want(e.new_parent) if e.new_parent else None
            plan.append((p, w, nw))
        if not triples:
            return
        args: list[Any] = []
        for ino, parent, name in triples:
            args += [ino, parent or "", name.encode("utf-8", "surrogateescape") if name else ""]
        paths = []
        for i in range(0, len(args), 3 * 500):  # 500 per call: one call stays short
            paths += self.client.call("af_journal_paths", *args[i:i + 3 * 500], ro=True)
        found = [_text(p) if p else None for p in paths]
        for e, (pi, w, nw) in zip(events, plan, strict=True):
            if pi is None:
                continue
            e.path = found[pi]
            wd = found[w] if w is not None else None
            if wd is not None and e.name is not None:
                e.where = _join(wd, e.name)
            nwd = found[nw] if nw is not None else None
            if nwd is not None and e.new_name is not None:
                e.new_where = _join(nwd, e.new_name)


class EventStream:
    """``vol.events(...)``: iterate it (``for ev in ...``) or async-iterate it (``async for``)."""

    def __init__(self, journal: Journal, since: int | float | str | _dt.datetime | None, **options: Any) -> None:
        self.journal, self.since, self.options = journal, since, options

    def __iter__(self) -> Iterator[Event]:
        return self.journal.events(self.since, **self.options)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self.journal.aevents(self.since, **self.options)


def _merge(j: _Raw, r: _Raw) -> tuple[list[Event], int, int]:
    """The journal's and the read audit's events of one read in time order (the journal's first
    at equal times), and the cursor of each. A list cut short by the read's limit bounds the
    other: events of the other past its last one wait for the next read, so order holds across
    pages."""
    cut = min([x.events[-1].time for x in (j, r) if x.next < x.end and x.events] or [float("inf")])
    jk = list(itertools.takewhile(lambda e: e.time <= cut, j.events))
    rk = list(itertools.takewhile(lambda e: e.time <= cut, r.events))
    merged = sorted(jk + rk, key=lambda e: (e.time, e.kind == "read", e.id))
    return merged, j.first + len(jk), r.first + len(rk)


def _join(d: str, name: str) -> str:
    return ("" if d == "/" else d) + "/" + name


def _under(path: str | None, prefix: str) -> bool:
    if path is None:
        return False
    return prefix == "/" or path == prefix or path.startswith(prefix + "/")


def trim(client: MetaClient, *, max_events: int, max_age: float, budget: int = 10000,
         now_offset: float = 0) -> int:
    """Retention: drop the oldest records past ``max_events`` or older than ``max_age`` seconds
    (0: no limit), in steps of ``budget``. Full rights only (session users may not). Returns how
    many were dropped."""
    dropped = 0
    while True:
        n, _left, more = client.call("af_journal_trim", int(max_events), int(max_age), int(budget), int(now_offset),
                                     key=client.keys.setting)
        dropped += int(n)
        if not int(more):
            return dropped
