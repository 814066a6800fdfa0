"""``inspect <workspace>``: a summary of a workspace's metadata keyspace (SPEC.md §2.2, NEW).

The CLI asks the orchestrator for a *read-only* mount session (Redis refuses its writes), reads
with it, and revokes it at the end, so inspecting never changes the workspace. What it reads:

- key counts by kind: each key under the prefix ``{u_X_w_Y}:`` is classified by the letters
  that start its suffix (``i`` attrs, ``d`` directories, ``c`` chunk lists, ``b`` inline slices,
  ``sess`` open sets, ...; the table is ``artifacts_core/meta/keys.py``), found with
  ``SCAN MATCH <prefix>* COUNT 1000`` on the slot's owner;
- the volume's counters: ``totalinodes``, ``usedspace``, ``inlinebytes``, ``nextinode``;
- the live metadata sessions (``sessions`` zset and ``sessioninfo``: host, pid, mountpoint) and
  the orchestrator's live mount sessions.

``SCAN`` walks the whole database with a pattern, which costs O(total keys) on a shared Redis;
``COUNT 1000`` keeps each step short. It is a diagnostic, not something to run in a loop.
"""

from __future__ import annotations

import json
import re
import socket

from artifacts_cli import auth
from artifacts_cli.workspace import check_ref

#: Keys per SCAN step: large enough that a big workspace takes few round trips, small enough
#: that one step never blocks Redis for long.
SCAN_COUNT = 1000
#: Seconds the inspect session lives if revoking it fails: the reaper removes it after that.
INSPECT_TTL = 300
COUNTERS = ("totalinodes", "usedspace", "inlinebytes", "nextinode", "nextslice")
_KIND = re.compile(r"^([a-z]+)")


def _escape_glob(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def summarize(client, prefix: str) -> dict:
    kinds: dict[str, int] = {}
    total = 0
    for key in client.scan_iter(match=_escape_glob(prefix) + "*", count=SCAN_COUNT):
        key = key.decode("utf-8", "surrogateescape") if isinstance(key, bytes) else key
        suffix = key[len(prefix):]
        m = _KIND.match(suffix)
        kind = m.group(1) if m else "(other)"
        if kind in COUNTERS or kind in ("setting", "limits", "sessions", "sessioninfo", "jobs", "commits",
                                        "sliceref", "delfiles", "delslices", "inlinechunks", "slicebatches"):
            kind = suffix
        kinds[kind] = kinds.get(kind, 0) + 1
        total += 1
    values = client.mget([prefix + c for c in COUNTERS])
    counters = {c: int(v) if v is not None else 0 for c, v in zip(COUNTERS, values, strict=True)}
    sessions = []
    for sid, info in (client.hgetall(prefix + "sessioninfo") or {}).items():
        sid = sid.decode() if isinstance(sid, bytes) else sid
        try:
            detail = json.loads(info)
        except ValueError:
            detail = {}
        sessions.append({"sid": sid, **{k: detail.get(k) for k in ("host", "pid", "mountpoint", "read_only")}})
    return {"keys": total, "kinds": dict(sorted(kinds.items())), "counters": counters, "meta_sessions": sessions}


def cmd_inspect(args) -> int:
    from artifacts_core.meta.client import MetaClient
    from artifacts_core.meta.keys import Keys

    check_ref(args.workspace)
    api = auth.client()
    ws = api.workspaces.get(args.workspace)
    grant = api.sessions.create(ws.identifier, mode="ro", ttl_seconds=INSPECT_TTL, host=socket.gethostname(),
                                mountpoint="(artifacts inspect)")
    try:
        meta = MetaClient(grant.meta.url, Keys(grant.meta.key_prefix))
        try:
            summary = summarize(meta.node(), grant.meta.key_prefix)
        finally:
            meta.close()
        live = [s for s in api.sessions.list(ws.identifier).sessions if s.id != grant.session.id]
    finally:
        api.sessions.revoke(ws.identifier, grant.session.id)
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
