"""The ``changes`` tool: an agent reads the workspace's journal from a cursor, optionally waiting
for the next change, so it can wait for another agent's output ("the report appeared").

A cursor is an event id as a string (``Event.id + 1`` of the last event returned); without one
the call starts at the oldest event kept. ``wait`` (seconds, at most ``MAX_WAIT``) blocks until at
least one matching event exists or the time passes; the result is bounded (``limit`` events, at
most ``MAX_EVENTS``) and says ``truncated`` when more are ready. Paths are relative to the
workspace root, as every tool's; ``path`` filters to one file or directory (current or original
names). Events come from ``artifacts_core.meta.journal`` (docs/journal.md).
"""

from __future__ import annotations

import time

from artifacts_agentfs.errors import invalid
from artifacts_core.meta.journal import FOLLOW_POLL, PAGE, Event, Journal, Waker
from artifacts_core.volume import Volume

#: Longest wait one call may ask for: a tool call should return within a model's patience.
MAX_WAIT = 60
#: Most events per call (and the default): enough for a burst, small for a model's context.
MAX_EVENTS = 200
#: Most journal records one call looks at (a narrow ``path`` filter over a long journal): past it
#: the call returns what it found with ``truncated`` and the cursor reached.
MAX_SCAN = 10000


def _rel(path: str | None) -> str | None:
    return None if path is None else path.lstrip("/")


def _view(e: Event) -> dict:
    out: dict = {"id": e.id, "time": e.time, "op": e.op, "kind": e.kind, "path": _rel(e.path)}
    if e.where is not None:
        out["name_path"] = _rel(e.where)
    if e.new_where is not None:
        out["new_path"] = _rel(e.new_where)
    if e.length is not None:
        out["size"] = e.length
    if e.length_change is not None:
        out["size_change"] = e.length_change
    if e.tag:
        out["tag"] = e.tag
    actor = e.actor or {}
    out["actor"] = {k: v for k, v in actor.items() if k in ("session", "host", "mountpoint", "frontend", "user")}
    return out


def changes(vol: Volume, *, cursor: str | None = None, path: str | None = None, wait: int | None = None,
            limit: int | None = None) -> dict:
    """The ``changes`` tool (see the module note)."""
    if cursor is not None and not cursor.isdigit():
        raise invalid(f"cursor {cursor!r} is not a cursor from a previous changes call",
                      hint="pass the 'cursor' value a previous call returned, or omit it")
    wait = 0 if wait is None else wait
    if not 0 <= wait <= MAX_WAIT:
        raise invalid(f"wait must be 0..{MAX_WAIT} seconds")
    limit = MAX_EVENTS if limit is None else limit
    if not 1 <= limit <= MAX_EVENTS:
        raise invalid(f"limit must be 1..{MAX_EVENTS}")
    prefix = "/" + path.strip("/") if path else None
    journal = Journal(vol.meta.client)
    pos = int(cursor) if cursor is not None else 0
    events: list[Event] = []
    missed: int | None = None
    truncated = False
    scanned = 0
    deadline = time.monotonic() + wait
    waker: Waker | None = None
    try:
        while True:
            if waker is not None:
                waker.arm()
            page = journal.read(pos, path=prefix, limit=PAGE)
            missed = page.missed if missed is None else missed
            scanned += page.next - pos
            events += page.events
            pos = page.next
            if len(events) >= limit:
                events = events[:limit]
                pos, truncated = events[-1].id + 1, True
                break
            if page.more:
                if scanned < MAX_SCAN:
                    continue
                truncated = True
                break
            left = deadline - time.monotonic()
            if events or left <= 0:
                break
            if waker is None:
                waker = Waker(vol.meta.client)
                continue  # read again, now that a change would wake us
            waker.wait(min(left, FOLLOW_POLL))
    finally:
        if waker is not None:
            waker.close()
    return {"events": [_view(e) for e in events], "cursor": str(pos), "truncated": truncated,
            "missed": missed or 0}
