"""``events [WORKSPACE] [--since TIME|ID] [--path PREFIX] [--actor …] [--follow]``: the
workspace's journal (docs/journal.md) — who changed what, when, through which mount or agent.

The orchestrator reads the journal for the account (``GET /workspaces/<handle>/<name>/events``,
pages from a cursor; ``--follow`` streams ``…/events/stream``, server-sent events, until
interrupted). A table for people, or with ``--format json`` one JSON object per line (JSON lines:
a stream has no end to close a document with). Without WORKSPACE, the account's only workspace.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from typing import Any

from artifacts_cli import auth
from artifacts_cli.refs import check_ref
from artifacts_orchestrator.errors import InvalidRequest

COLUMNS = ("ID", "TIME", "OP", "PATH", "SIZE", "ACTOR")


def _actor(a: dict[str, Any]) -> str:
    who = a.get("runtime") or a.get("grant") or a.get("mount_session") or a.get("user") or f"session {a.get('session')}"
    where = a.get("mountpoint") or a.get("frontend") or ""
    host = a.get("host", "")
    return " ".join(str(x) for x in (who, f"{host}:{where}" if host else where) if x)


def _row(e: dict[str, Any]) -> tuple[str, ...]:
    when = dt.datetime.fromtimestamp(e["time"]).isoformat(sep=" ", timespec="milliseconds")
    path = e.get("path") or e.get("where") or f"(inode {e.get('ino')})"
    if e.get("new_where") and e.get("where"):
        path = f"{e['where']} -> {e['new_where']}"
    elif not e.get("path") and e.get("where"):
        path = f"{e['where']} (gone)"
    size = "" if e.get("length") is None else f"{e['length']} ({e['length_change']:+d})"
    tag = f" [{e['tag']}]" if e.get("tag") else ""
    return (str(e["id"]), when, e["op"], path, size, _actor(e.get("actor") or {}) + tag)


def _workspace(api, given: str | None) -> str:
    if given:
        check_ref(given)
        return given
    spaces = [w for w in api.workspaces.list().workspaces if w.status == "active"]
    if len(spaces) != 1:
        raise InvalidRequest("name the workspace: the account has " + (
            "no active workspace" if not spaces else f"{len(spaces)} active workspaces"))
    return spaces[0].identifier


def cmd_events(args) -> int:
    api = auth.client()
    ref = _workspace(api, args.workspace)
    out = args.out
    since: str | None = args.since
    reads_since: int | None = None
    if not args.follow:
        events: list[dict] = []
        while True:
            page = api.workspaces.events(ref, since=since, path=args.path, actor=args.actor, reads=args.reads,
                                         reads_since=reads_since)
            events += page["events"]
            since, reads_since = str(page["cursor"]), page.get("reads_cursor")
            if not page["more"] or len(events) >= args.limit:
                break
        events = events[-args.limit:]
        if out.json:
            for e in events:
                sys.stdout.write(json.dumps(e) + "\n")
            return 0
        if page.get("missed"):
            out.warn(f"{page['missed']} older events were dropped by the journal's retention")
        out.table(COLUMNS, [_row(e) for e in events])
        return 0
    try:
        for e in api.stream_events(ref, since=since or "now", path=args.path, actor=args.actor, reads=args.reads):
            if out.json:
                sys.stdout.write(json.dumps(e) + "\n")
            else:
                sys.stdout.write("  ".join(_row(e)) + "\n")
            sys.stdout.flush()
    except KeyboardInterrupt:
        return 0
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("events", help="who changed what in a workspace, and when (the journal)")
    p.add_argument("workspace", nargs="?", help="name, handle/name or artifacts://handle/name")
    p.add_argument("--since", help="an event id, an ISO time (2026-01-31T12:00) or an age (10m, 2h, 1d); "
                                   "default: the oldest kept (with --follow: only new events)")
    p.add_argument("--path", help="only events under this path (current or original names)")
    p.add_argument("--actor", help="only events of this actor: a session id, host, mountpoint, tag or key=value")
    p.add_argument("--reads", action="store_true",
                   help="also the opens for reading (the read audit, when the workspace keeps it)")
    p.add_argument("--follow", "-f", action="store_true", help="stream new events until interrupted")
    p.add_argument("--limit", type=int, default=1000, help="the last N events at most (default 1000)")
    p.set_defaults(func=cmd_events)
