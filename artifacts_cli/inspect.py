"""``inspect <workspace>``: a summary of a workspace's metadata keyspace (SPEC.md §2.2, NEW).

The orchestrator reads the keyspace (``GET /workspaces/<handle>/<name>/inspect``): it alone may
``SCAN``, since a session user that could would see every workspace's key names. What comes back:

- key counts by kind: each key under the prefix ``{u_X_w_Y}:`` classified by the letters that
  start its suffix (``i`` attrs, ``d`` directories, ``c`` chunk lists, ``b`` inline slices, ...;
  the table is ``artifacts_core/meta/keys.py``);
- the volume's counters: ``totalinodes``, ``usedspace``, ``inlinebytes``, ``nextinode``;
- the live metadata sessions (host, pid, mountpoint) and the orchestrator's live mount sessions.
"""

from __future__ import annotations

from artifacts_cli import auth
from artifacts_cli.refs import check_ref


def cmd_inspect(args) -> int:
    check_ref(args.workspace)
    api = auth.client()
    ws = api.workspaces.get(args.workspace)
    summary = api.workspaces.inspect(ws.identifier)
    summary.pop("workspace", None)
    live = api.sessions.list(ws.identifier).sessions
    c = summary["counters"]
    data = {"workspace": ws.identifier, "status": ws.status, "key_prefix": ws.metadata_key_prefix, **summary,
            "mount_sessions": live}
    out = args.out
    if out.json:
        out.result(data=data)
        return 0
    out.result(f"Workspace {ws.identifier} ({ws.status}), key prefix {ws.metadata_key_prefix}\n"
               f"Inodes: {c['totalinodes']}   Used space: {c['usedspace']} bytes   "
               f"Inline bytes: {c['inlinebytes']}   Keys: {summary['keys']}")
    out.table(("KIND", "KEYS"), list(summary["kinds"].items()))
    rows = [(s.id, s.mode, s.host or "-", s.mountpoint or "-") for s in live]
    if rows:
        out.table(("SESSION", "MODE", "HOST", "MOUNTPOINT"), rows)
    else:
        out.result("No live mount sessions.")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("inspect", help="summarize a workspace's metadata keyspace")
    p.add_argument("workspace", help="name, handle/name or artifacts://handle/name")
    p.set_defaults(func=cmd_inspect)
