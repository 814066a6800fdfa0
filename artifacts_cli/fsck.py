"""``artifacts gc WORKSPACE [--dry-run]`` and ``artifacts fsck WORKSPACE [--repair]``.

Both compare a workspace's objects with what its metadata refers to. The objects are listed by
this client, with a session as for a mount (``Volume.gc`` / ``Volume.check_objects``); the
metadata side takes ``SCAN``, which a session may not run, so the orchestrator answers it
(``GET /workspaces/<handle>/<name>/references``, ``artifacts_orchestrator/references.py``).

``gc`` removes block objects no chunk list refers to — what a crash between an upload and its
commit leaves — by ``artifacts_core/gc.py``'s rules: objects are listed before the metadata is
read, and an object in a live session's reserved slice ids (an upload that may still commit) or
younger than ``--min-age`` (1 h by default, as JuiceFS) is never removed. ``--dry-run`` lists
what it would remove (read-only session).

``fsck`` checks, and says what it found:

- objects: every block of every referenced slice exists (a missing block is data that cannot be
  read: the files are named); slices queued for deletion are not counted (the reclaim job may
  have removed part of them), and a slice reported missing is checked again against a second
  answer of the orchestrator, so one freed while fsck ran is not called lost;
- objects no slice refers to (what gc would remove);
- the namespace: a walk from the root through the VFS, where every entry's inode must answer
  (an entry whose inode is gone is *dangling*).

``--repair`` does only what is safe: it removes unreferenced objects by gc's rules. Missing blocks
cannot be repaired (the data is gone: restore those files from a copy); dangling entries are
reported for an operator (``artifacts inspect``). Exit status: 0 when nothing is damaged
(unreferenced objects are waste, not damage), 1 when a block is missing or an entry dangles.
"""

from __future__ import annotations

import stat
from typing import Any

from artifacts_cli import auth
from artifacts_cli.config import CliError
from artifacts_cli.errors import EXIT_ERROR, EXIT_OK, EXIT_USAGE
from artifacts_cli.output import human_bytes
from artifacts_cli.refs import check_ref
from artifacts_cli.trees import Workspaces

#: What --min-age defaults to: the core's gc margin (objects younger than this may belong to a
#: commit still on its way), shown in the help in seconds.
DEFAULT_MIN_AGE = 3600.0
#: Dangling entries and missing blocks shown in the text output (JSON has them all).
SHOWN = 20


def _references(api, ref: str) -> dict[str, Any]:
    return api.workspaces.references(ref)


def _gc_references(api, ref: str):
    """``Volume.gc``'s ``references``: asked after the listing, answered by the orchestrator."""
    def ask() -> tuple[set[int], list[tuple[int, int]]]:
        r = _references(api, ref)
        ids = {s["id"] for s in r["slices"]} | set(r["pending_delete"])
        return ids, [(lo, hi) for lo, hi in r["live_batches"]]
    return ask


def _min_age(value: float) -> float:
    if value < 0:
        raise CliError("--min-age cannot be negative", "give seconds, e.g. --min-age 3600", exit_code=EXIT_USAGE)
    return value


def cmd_gc(args) -> int:
    out = args.out
    check_ref(args.workspace)
    min_age = _min_age(args.min_age)
    api = auth.client()
    ws_view = api.workspaces.get(args.workspace)
    with Workspaces(read_only=args.dry_run) as ws:
        vol = ws.volume(ws_view.identifier)
        with out.phase(f"Listing {ws_view.identifier}'s objects and what its metadata refers to…"):
            report = vol.gc(delete=not args.dry_run, min_age=min_age,
                            references=_gc_references(api, ws_view.identifier))
    data = {"workspace": ws_view.identifier, "dry_run": args.dry_run, "min_age": min_age,
            "objects": report.objects, "bytes": report.bytes, "referenced": report.referenced,
            "in_flight": report.in_flight, "young": report.young, "leaked": len(report.leaked),
            "leaked_bytes": report.leaked_bytes, "deleted": report.deleted, "leaked_keys": report.leaked}
    verb = "would delete" if args.dry_run else "deleted"
    done = len(report.leaked) if args.dry_run else report.deleted
    text = (f"Scanned {report.objects} objects ({human_bytes(report.bytes)}): {report.referenced} referenced, "
            f"{report.in_flight} in flight, {report.young} younger than {min_age:g} s; "
            f"{len(report.leaked)} leaked ({human_bytes(report.leaked_bytes)}), {verb} {done}")
    if args.dry_run:
        for key in report.leaked[:SHOWN]:
            out.info(f"  leaked: {key}")
    out.result(text, data=data)
    return EXIT_OK


def _walk(vol) -> tuple[dict[int, str], dict[str, int], list[dict[str, str]]]:
    """(inode -> a path, counts by type, dangling entries) of the namespace, from the root (the
    root's own entries, ``.stats`` … ``.trash``, are not walked)."""
    from artifacts_core.vfs.internal import RESERVED_NAMES

    paths: dict[int, str] = {}
    counts = {"directories": 1, "files": 0, "symlinks": 0, "other": 0}
    dangling: list[dict[str, str]] = []
    todo = ["/"]
    while todo:
        d = todo.pop()
        try:
            names = vol.listdir(d)
        except OSError as e:
            dangling.append({"path": d, "problem": f"cannot list: {e.strerror or e}"})
            continue
        for name in names:
            if d == "/" and name in RESERVED_NAMES:
                continue
            p = d.rstrip("/") + "/" + name
            try:
                st = vol.lstat(p)
            except OSError as e:
                dangling.append({"path": p, "problem": f"its inode does not answer: {e.strerror or e}"})
                continue
            paths.setdefault(st.st_ino, p)
            if stat.S_ISDIR(st.st_mode):
                counts["directories"] += 1
                todo.append(p)
            elif stat.S_ISREG(st.st_mode):
                counts["files"] += 1
            elif stat.S_ISLNK(st.st_mode):
                counts["symlinks"] += 1
            else:
                counts["other"] += 1
    return paths, counts, dangling


def cmd_fsck(args) -> int:
    out = args.out
    check_ref(args.workspace)
    min_age = _min_age(args.min_age)
    api = auth.client()
    ws_view = api.workspaces.get(args.workspace)
    ident = ws_view.identifier
    with Workspaces(read_only=not args.repair) as ws:
        vol = ws.volume(ident)
        with out.phase(f"Reading what {ident}'s metadata refers to…"):
            refs = _references(api, ident)
        pending = set(refs["pending_delete"])
        slices = {s["id"]: s for s in refs["slices"] if s["id"] not in pending}
        with out.phase(f"Checking {sum(1 for _ in slices)} slices against the object store…"):
            check = vol.check_objects({sid: s["size"] for sid, s in slices.items()})
        if check.missing:  # freed while we looked? ask again; only what is still referenced counts
            again = _references(api, ident)
            still = {s["id"] for s in again["slices"]} - set(again["pending_delete"])
            check.missing = [(sid, key) for sid, key in check.missing if sid in still]
        with out.phase("Walking the namespace…"):
            paths, counts, dangling = _walk(vol)
        repaired = None
        if args.repair:
            with out.phase("Removing unreferenced objects (gc's rules)…"):
                report = vol.gc(delete=True, min_age=min_age, references=_gc_references(api, ident))
            repaired = {"deleted_objects": report.deleted, "deleted_bytes": report.leaked_bytes,
                        "kept_in_flight": report.in_flight, "kept_young": report.young}
    missing: dict[int, dict[str, Any]] = {}
    for sid, key in check.missing:
        entry = missing.setdefault(sid, {"slice": sid, "blocks": [], "files": [
            paths.get(ino, f"inode {ino} (not linked: open, in the trash, or only in a checkpoint)") for ino in slices[sid]["inodes"]]})
        entry["blocks"].append(key)
    damaged = bool(missing) or bool(dangling)
    data = {"workspace": ident, "clean": not damaged,
            "objects": {"slices": check.slices, "blocks": check.blocks,
                        "missing_blocks": len(check.missing), "missing": list(missing.values()),
                        "unreferenced": check.unreferenced, "unreferenced_bytes": check.unreferenced_bytes},
            "namespace": {**counts, "dangling": dangling}, "repaired": repaired}
    lines = [f"Objects: {check.blocks} blocks of {check.slices} slices checked, "
             f"{len(check.missing)} missing; {check.unreferenced} unreferenced "
             f"({human_bytes(check.unreferenced_bytes)})",
             f"Namespace: {counts['directories']} directories, {counts['files']} files, "
             f"{counts['symlinks']} symlinks; {len(dangling)} dangling entries"]
    for m in list(missing.values())[:SHOWN]:
        lines.append(f"  missing: {len(m['blocks'])} block(s) of slice {m['slice']}, in {', '.join(m['files'])}")
    for d in dangling[:SHOWN]:
        lines.append(f"  dangling: {d['path']}: {d['problem']}")
    if repaired is not None:
        lines.append(f"Repaired: deleted {repaired['deleted_objects']} unreferenced objects "
                     f"({human_bytes(repaired['deleted_bytes'])}); kept {repaired['kept_in_flight']} in flight "
                     f"and {repaired['kept_young']} younger than {min_age:g} s")
    elif check.unreferenced:
        lines.append(f"Hint: `artifacts gc {args.workspace}` removes unreferenced objects older than "
                     f"{DEFAULT_MIN_AGE:g} s (or run fsck with --repair)")
    lines.append("Damaged: missing data cannot be repaired; restore those files from a copy."
                 if missing else ("Damaged: dangling entries need an operator (artifacts inspect)." if dangling
                                  else "Clean."))
    out.result("\n".join(lines), data=data)
    return EXIT_ERROR if damaged else EXIT_OK


def add_parser(sub) -> None:
    p = sub.add_parser("gc", help="remove objects no metadata refers to (crash leftovers)")
    p.add_argument("workspace", help="name, handle/name or artifacts://handle/name")
    p.add_argument("--dry-run", action="store_true", help="list what would be removed; remove nothing")
    p.add_argument("--min-age", type=float, default=DEFAULT_MIN_AGE, metavar="SECONDS",
                   help="never remove objects younger than this (default 3600: a commit may be on its way)")
    p.set_defaults(func=cmd_gc)

    p = sub.add_parser("fsck", help="check a workspace's objects and namespace against its metadata")
    p.add_argument("workspace", help="name, handle/name or artifacts://handle/name")
    p.add_argument("--repair", action="store_true",
                   help="fix what is safe: remove unreferenced objects by gc's rules")
    p.add_argument("--min-age", type=float, default=DEFAULT_MIN_AGE, metavar="SECONDS",
                   help="with --repair: keep objects younger than this (default 3600)")
    p.set_defaults(func=cmd_fsck)
