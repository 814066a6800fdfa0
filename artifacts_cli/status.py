"""``artifacts status [MOUNTPOINT|WORKSPACE] [--all]``: is everything this host uses healthy?

With no argument: the orchestrator (reachable? which login?), the local stack's pieces when
``artifacts up`` ran here, and every mount this CLI made (its session records under the state
directory), each checked where it lives:

- the kernel's mount table (``/proc/self/mountinfo``): mounted, or gone, or *stale* (listed but
  its FUSE process dead: reading it fails with ENOTCONN);
- the mount's own ``.stats`` (read with a bound, ``STATS_TIMEOUT``): pending uploads (in flight
  plus buffered bytes not yet in S3), the memory and disk cache, Redis round trips and errors,
  upload, download and integrity errors;
- the orchestrator: is the mount's session still live, and until when.

``--all`` adds every other Artifacts FUSE mount on the host (ticket mounts, other tools'), with
what its ``.stats`` says. A MOUNTPOINT narrows the report to that mount. A WORKSPACE reports the
workspace as the orchestrator knows it, its live sessions, this host's mounts of it, and a probe
of its Redis and S3 from here: a read-only session opens the volume (which reads the volume's
UUID object from S3 and its setting from Redis) and lists the root, each timed.

Exit status: 0 when everything looked at is healthy; otherwise the code of the first problem
(6 the orchestrator unreachable, 8 a mount stale or its ``.stats`` unreadable, 7 the bucket
refusing the workspace's keys, 1 any other failure of the probe), after the whole report.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from typing import Any

from artifacts_cli import auth
from artifacts_cli.config import CliError, state_path
from artifacts_cli.errors import EXIT_MOUNT, EXIT_OK, EXIT_UNAVAILABLE, describe
from artifacts_cli.output import human_bytes, iso_time
from artifacts_cli.stats import parse_prometheus

#: Seconds a mount's ``.stats`` may take to read: a healthy mount answers in milliseconds; a hung
#: FUSE process must not hang ``status`` with it.
STATS_TIMEOUT = 5.0
#: What the report takes from ``.stats`` (metric name without ``artifacts_`` -> report key).
STATS_KEYS = {"chunks_inflight_uploads": "uploads_in_flight", "chunks_buffer_used": "buffered_bytes",
              "chunks_memory_cache_bytes": "memory_cache_bytes", "chunks_disk_cache_bytes": "disk_cache_bytes",
              "redis_round_trips": "redis_round_trips", "redis_errors": "redis_errors",
              "chunks_upload_errors": "upload_errors", "chunks_download_errors": "download_errors",
              "chunks_integrity_errors": "integrity_errors"}


def read_internal(mountpoint: str, name: str = ".stats") -> tuple[str | None, str]:
    """The text of a mount's internal file (``.stats``, ``.config``), or None and why not; read
    in a thread bounded by ``STATS_TIMEOUT``."""
    result: dict[str, Any] = {}

    def read() -> None:
        try:
            with open(os.path.join(mountpoint, name), encoding="utf-8") as f:
                result["text"] = f.read()
        except OSError as e:
            result["error"] = e

    t = threading.Thread(target=read, daemon=True, name="status-read")
    t.start()
    t.join(STATS_TIMEOUT)
    if t.is_alive():
        return None, f"its {name} did not answer within {STATS_TIMEOUT:.0f} s (the FUSE process hangs)"
    if "error" in result:
        e = result["error"]
        return None, f"its {name} is unreadable: {e.strerror or e}"
    return result["text"], ""


def _read_stats(mountpoint: str) -> tuple[dict[str, Any] | None, str]:
    """The mount's counters that matter here, or None and why not."""
    text, why = read_internal(mountpoint)
    if text is None:
        return None, why
    found = {STATS_KEYS[name.removeprefix("artifacts_")]: int(value)
             for name, labels, value in parse_prometheus(text)
             if name.removeprefix("artifacts_") in STATS_KEYS and not labels}
    return found, ""


def _records() -> list[dict[str, Any]]:
    found = []
    for p in sorted(state_path("sessions").glob("*.json")):
        with contextlib.suppress(OSError, ValueError):
            found.append(json.loads(p.read_text()))
    return found


def _mount_report(mountpoint: str, record: dict[str, Any] | None, sessions: dict[str, Any]) -> dict[str, Any]:
    from artifacts_fuse.mountinfo import mount_entry

    entry = mount_entry(mountpoint)
    rep: dict[str, Any] = {"mountpoint": mountpoint, "workspace": (record or {}).get("workspace"),
                           "session": (record or {}).get("session"), "made_here": record is not None}
    if entry is None:
        rep.update(state="not mounted", healthy=False,
                   problem="a record of a mount that is gone", hint=f"`artifacts unmount {mountpoint}` clears it")
        return rep
    rep["mode"] = "ro" if entry["options"].split(",")[0] == "ro" else "rw"
    revoked = False
    live = sessions.get(rep["workspace"])
    if rep["session"] is not None and live is not None:
        if isinstance(live, str):
            rep["session_state"] = live
        else:
            match = [s for s in live if s.id == rep["session"]]
            rep["session_state"] = "live" if match else "revoked or expired"
            revoked = not match
            if match:
                rep["session_expires_at"] = iso_time(match[0].expires_at)
    stats, why = _read_stats(mountpoint)
    if revoked:
        rep.update(state="session revoked", healthy=False,
                   problem="its session is no longer live: every operation fails with EACCES",
                   hint=f"`artifacts unmount {mountpoint}` and mount it again")
    elif stats is None:
        rep.update(state="stale", healthy=False, problem=why,
                   hint=f"run `artifacts unmount {mountpoint}`, then mount it again")
    else:
        rep.update(state="live", healthy=True)
    rep.update(stats or {})
    return rep


def _orchestrator() -> tuple[dict[str, Any], Any]:
    try:
        api = auth.client()
        who = api.whoami()
        return {"url": api.base_url, "reachable": True, "handle": who.account.handle}, api
    except CliError as e:
        return {"reachable": None, "problem": e.message, "hint": e.hint}, None
    except Exception as e:
        f = describe(e)
        return {"reachable": False, "problem": f.message, "hint": f.hint}, None


def _sessions_of(api, workspaces: set[str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for w in workspaces:
        try:
            found[w] = api.sessions.list(w).sessions
        except Exception as e:  # a deleted workspace, a revoked key: say so per mount
            found[w] = f"unknown ({describe(e).message})"
    return found


def _probe(ref: str) -> dict[str, Any]:
    """Open the workspace read-only from here and list its root, each step timed."""
    from artifacts_cli.connect import ConnectError, open_workspace

    started = time.monotonic()
    try:
        with open_workspace(ref, read_only=True) as vol:
            opened = time.monotonic()
            entries = len(vol.listdir("/"))
            listed = time.monotonic()
            used = vol.statvfs()
    except ConnectError as e:
        return {"ok": False, "problem": e.message, "hint": e.hint, "exit_code": e.exit_code}
    except OSError as e:
        f = describe(e)
        code = 7 if getattr(e, "code", "") == "EACCES" else 1
        return {"ok": False, "problem": f.message, "hint": f.hint, "exit_code": code}
    return {"ok": True, "open_ms": round((opened - started) * 1000, 1),
            "list_ms": round((listed - opened) * 1000, 1), "root_entries": entries,
            "inodes_used": used.f_files - used.f_ffree}


def _text_mount(out, m: dict[str, Any]) -> None:
    head = f"{m['mountpoint']}  {m['workspace'] or '(not made by this login)'}  {m['state']}"
    if m.get("mode"):
        head += f" ({m['mode']})"
    out.result(head)
    if m["state"] == "live":
        pending = f"{m.get('uploads_in_flight', 0)} uploads in flight, {human_bytes(m.get('buffered_bytes', 0))} buffered"
        out.result(f"  pending:  {pending}")
        out.result(f"  cache:    memory {human_bytes(m.get('memory_cache_bytes', 0))}, "
                   f"disk {human_bytes(m.get('disk_cache_bytes', 0))}")
        out.result(f"  errors:   redis {m.get('redis_errors', 0)} (of {m.get('redis_round_trips', 0)} round trips), "
                   f"upload {m.get('upload_errors', 0)}, download {m.get('download_errors', 0)}, "
                   f"integrity {m.get('integrity_errors', 0)}")
    if m.get("session"):
        extra = f", until {m['session_expires_at']}" if m.get("session_expires_at") else ""
        out.result(f"  session:  {m['session']} {m.get('session_state', '')}{extra}")
    if m.get("problem"):
        out.result(f"  problem:  {m['problem']}; {m.get('hint', '')}")


def build_report(target: str | None, *, everything: bool = False) -> tuple[dict[str, Any], int]:
    """The report ``status`` prints (also ``artifacts debug``'s ``status.json``) and its exit code."""
    from artifacts_cli.stack import pieces
    from artifacts_fuse.mountinfo import is_mounted, mounts_of_type

    orch, api = _orchestrator()
    records = {r["mountpoint"]: r for r in _records() if "mountpoint" in r}
    report: dict[str, Any] = {"orchestrator": orch}
    code = EXIT_OK if orch.get("reachable") is not False else EXIT_UNAVAILABLE
    workspace = None
    if target and (os.path.isabs(target) or target.startswith(".") or os.path.isdir(target)):
        mp = os.path.abspath(target)
        if not is_mounted(mp) and mp not in records:
            raise CliError(f"path {mp} is not mounted", "name a mountpoint, or a workspace", exit_code=EXIT_MOUNT)
        mountpoints = [mp]
    elif target:
        from artifacts_cli.refs import check_ref

        check_ref(target)
        if api is None:
            raise CliError(orch["problem"], orch.get("hint", ""), exit_code=EXIT_UNAVAILABLE)
        ws = api.workspaces.get(target)
        workspace = ws.identifier
        report["workspace"] = {"identifier": ws.identifier, "status": ws.status, "backend": ws.backend,
                               "sessions": [{"id": s.id, "mode": s.mode, "host": s.host, "mountpoint": s.mountpoint,
                                             "expires_at": s.expires_at}
                                            for s in api.sessions.list(ws.identifier).sessions]}
        mountpoints = [mp for mp, r in records.items() if r.get("workspace") == workspace]
    else:
        report["local_stack"] = pieces()
        mountpoints = list(records)
        if everything:
            mountpoints += [m["mountpoint"] for m in mounts_of_type() if m["mountpoint"] not in records]
    sessions = _sessions_of(api, {r["workspace"] for mp, r in records.items() if mp in mountpoints}) if api else {}
    mounts = [_mount_report(mp, records.get(mp), sessions) for mp in mountpoints]
    report["mounts"] = mounts
    if workspace is not None:
        report["probe"] = _probe(workspace)
        if not report["probe"]["ok"] and code == EXIT_OK:
            code = report["probe"]["exit_code"]
    if code == EXIT_OK and any(not m["healthy"] for m in mounts):
        code = EXIT_MOUNT
    report["healthy"] = code == EXIT_OK
    return report, code


def cmd_status(args) -> int:
    out = args.out
    report, code = build_report(args.target, everything=args.all)
    orch, mounts = report["orchestrator"], report["mounts"]
    workspace = report.get("workspace", {}).get("identifier")
    if out.json:
        out.result(data=report)
        return code
    if orch.get("reachable"):
        out.result(f"Orchestrator: {orch['url']} reachable, logged in as {orch['handle']}")
    else:
        out.result(f"Orchestrator: {'unreachable' if orch.get('reachable') is False else 'no login'}: "
                   f"{orch['problem']}" + (f" ({orch['hint']})" if orch.get("hint") else ""))
    for name, piece in report.get("local_stack", {}).items():
        where = piece.get("url") or piece.get("endpoint") or (f"port {piece['port']}" if piece.get("port") else "")
        out.result(f"Local {name}: {'running' if piece['running'] else 'stopped'} {where}".rstrip())
    if "workspace" in report:
        w = report["workspace"]
        out.result(f"Workspace {w['identifier']}: {w['status']} ({w['backend']}), "
                   f"{len(w['sessions'])} live session(s)")
        p = report["probe"]
        if p["ok"]:
            out.result(f"  from here: opened (Redis + S3) in {p['open_ms']} ms, listed / in {p['list_ms']} ms, "
                       f"{p['inodes_used']} inodes")
        else:
            out.result(f"  from here: {p['problem']}" + (f" ({p['hint']})" if p.get("hint") else ""))
    if not mounts:
        out.result("No mounts." if workspace is None else "No mounts of it on this host.")
    for m in mounts:
        _text_mount(out, m)
    return code


def add_parser(sub) -> None:
    p = sub.add_parser("status", help="health of this host's mounts, the orchestrator and the local stack")
    p.add_argument("target", nargs="?", metavar="MOUNTPOINT|WORKSPACE",
                   help="one mount (a path), or a workspace (its sessions, this host's mounts, a probe)")
    p.add_argument("--all", action="store_true", help="every Artifacts FUSE mount on the host, not only this CLI's")
    p.set_defaults(func=cmd_status)
