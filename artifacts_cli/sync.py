"""``artifacts sync SRC DST [--dry-run] [--delete]``: make DST hold what SRC holds, copying only
what differs.

SRC and DST are local directories or workspace paths (``WORKSPACE:PATH``,
``artifacts://handle/workspace/path``), in any combination: local → workspace, workspace →
local, workspace → workspace. As ``rsync -a SRC/ DST``: the *contents* of SRC land in DST (made
when missing). A file is copied when DST lacks it, or its size or modification time (to the
second) differs; a symlink when its target differs; an entry of another kind is replaced.
``--delete`` also removes what DST holds and SRC does not. ``--dry-run`` prints the plan and
changes nothing. What a copy keeps is ``trees.py``'s: bytes, permission bits, file mtimes,
symlinks.

The output: a line per step with ``-v`` or ``--dry-run``, then the totals (``Synced 3 files
(1.2 MiB), 1 directory; deleted 2 in 0.4 s; 10 unchanged``); ``--format json`` gives
``{"dry_run", "unchanged", totals…, "steps": [...]}``.
"""

from __future__ import annotations

from artifacts_cli.output import counted, human_bytes
from artifacts_cli.plans import Plan, Totals, plan_sync, run_plan
from artifacts_cli.trees import Workspaces


def show_plan(out, plan: Plan, *, dry_run: bool, verb: str) -> Totals:
    """Run ``plan`` (or only print it, ``dry_run``) and print the result line and JSON."""
    if dry_run:
        for op in plan.ops:
            out.result(f"would {op.action} {op.dst.display}"
                       + (f" ({op.size} bytes)" if op.action == "copy" else "")
                       + (f" -> {op.target}" if op.action == "symlink" else ""))
        totals = Totals(files=plan.count("copy"), dirs=plan.count("mkdir"), links=plan.count("symlink"),
                        deleted=plan.count("delete"), skipped=plan.count("skip"), bytes=plan.bytes)
        text = (f"Dry run: would copy {counted(totals.files, 'file')} ({human_bytes(totals.bytes)}), make "
                f"{counted(totals.dirs, 'directory', 'directories')} and {counted(totals.links, 'symlink')}, "
                f"delete {totals.deleted}")
    else:
        totals = run_plan(plan, out, what=verb)
        text = totals.summary(verb)
    out.result(f"{text}; {plan.same} unchanged",
               data={"dry_run": dry_run, "unchanged": plan.same, **totals.as_json(),
                     "steps": [op.as_json() for op in plan.ops]})
    return totals


def cmd_sync(args) -> int:
    with Workspaces(read_only=args.dry_run) as ws:
        src, dst = ws.locate(args.source), ws.locate(args.destination)
        plan = plan_sync(src, dst, delete=args.delete)
        show_plan(args.out, plan, dry_run=args.dry_run, verb="Synced")
    return 0


def add_parser(sub) -> None:
    where = "a local directory, WORKSPACE:PATH or artifacts://handle/workspace/path"
    p = sub.add_parser("sync", help="make a directory hold what another holds, copying only what differs")
    p.add_argument("source", help=where + "; its contents are synced")
    p.add_argument("destination", help=where + "; made when missing")
    p.add_argument("--dry-run", action="store_true", help="print what would change; change nothing")
    p.add_argument("--delete", action="store_true", help="also remove what the destination has and the source lacks")
    p.set_defaults(func=cmd_sync)
