"""``artifacts checkpoint …``, ``artifacts clone``, ``artifacts trash …`` (docs/history.md).

Each command opens the workspace with a session from the orchestrator (``connect.open_workspace``:
read-only for list/show/diff/trash list, read-write otherwise) and calls ``vol.checkpoints`` /
``vol.clone`` / ``vol.trash``; the orchestrator is never on the data path. ``--format json``
prints the same data as a JSON document.
"""

from __future__ import annotations

import time

import msgspec

from artifacts_cli.connect import open_workspace
from artifacts_cli.refs import check_ref


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) + "Z"


def cmd_checkpoint(args) -> int:
    check_ref(args.workspace)
    out = args.out
    action = args.checkpoint_command
    read_only = action in ("list", "show", "diff")
    with open_workspace(args.workspace, read_only=read_only) as vol:
        cps = vol.checkpoints
        if action == "create":
            c = cps.create(args.name, keep=args.keep)
            out.result(f"Checkpoint {c.name} taken (epoch {c.epoch}).", data=msgspec.to_builtins(c))
        elif action == "list":
            rows = cps.list()
            out.table(("NAME", "CREATED", "KIND", "CHANGED KEYS", "KEEP"),
                      [(c.name, _when(c.created), c.kind, c.preserved, f"{c.keep:g}s" if c.keep else "-")
                       for c in rows], data=[msgspec.to_builtins(c) for c in rows])
        elif action == "show":
            info = cps.show(args.name)
            out.result("\n".join(f"{k}: {v}" for k, v in info.items()), data=info)
        elif action == "diff":
            changes = cps.diff(args.name, args.to, text=args.text)
            lines = []
            for c in changes:
                mark = {"added": "A", "removed": "D", "modified": "M", "renamed": "R"}[c.kind]
                lines.append(f"{mark} {c.old_path} -> {c.path}" if c.old_path else f"{mark} {c.path}")
                if c.diff:
                    lines.append(c.diff.rstrip("\n"))
            out.result("\n".join(lines) or "No changes.", data=[msgspec.to_builtins(c) for c in changes])
        elif action == "restore":
            r = cps.restore(args.name, safety=args.safety)
            out.result(f"Restored {r['restored']}; the state before is checkpoint {r['safety']}.", data=r)
        elif action == "delete":
            cps.delete(args.name)
            out.result(f"Checkpoint {args.name} deleted.", data={"deleted": args.name})
    return 0


def cmd_clone(args) -> int:
    check_ref(args.workspace)
    with open_workspace(args.workspace) as vol:
        n = vol.clone(args.src, args.dst)
    args.out.result(f"Cloned {args.src} to {args.dst} ({n} inodes, blocks shared).",
                    data={"src": args.src, "dst": args.dst, "inodes": n})
    return 0


def cmd_trash(args) -> int:
    check_ref(args.workspace)
    out = args.out
    action = args.trash_command
    with open_workspace(args.workspace, read_only=action == "list") as vol:
        if action == "list":
            items = vol.trash.list()
            out.table(("ID", "ORIGINAL PATH", "DELETED", "BY", "SIZE"),
                      [(t.id, t.path or "?", _when(t.deleted), t.by or "-", t.size) for t in items],
                      data=[msgspec.to_builtins(t) for t in items])
        elif action == "restore":
            path = vol.trash.restore(args.id, to=args.to)
            out.result(f"Restored to {path}.", data={"id": args.id, "path": path})
        elif action == "purge":
            n = vol.trash.purge(args.id, older_than=args.older_than)
            out.result(f"Purged {n} entries.", data={"purged": n})
    return 0


WORKSPACE_HELP = "the workspace's name"


def add_parser(sub) -> None:
    c = sub.add_parser("checkpoint", help="checkpoints of a workspace: create, list, show, diff, restore, delete")
    c.set_defaults(parser=c)
    csub = c.add_subparsers(dest="checkpoint_command", metavar="<subcommand>")
    p = csub.add_parser("create", help="take a checkpoint (constant time)")
    p.add_argument("workspace", help=WORKSPACE_HELP)
    p.add_argument("name", nargs="?", help="default: ckpt-<UTC time>")
    p.add_argument("--keep", help="retention, e.g. 12h, 7d (default: until deleted)")
    for name, helptext in (("list", "list checkpoints"), ("show", "a checkpoint's record and what changed since"),
                           ("delete", "delete a checkpoint (frees what only it pinned)")):
        p = csub.add_parser(name, help=helptext)
        p.add_argument("workspace", help=WORKSPACE_HELP)
        if name != "list":
            p.add_argument("name", help="the checkpoint's name (see `checkpoint list`)")
    p = csub.add_parser("diff", help="paths added, removed, modified, renamed since a checkpoint")
    p.add_argument("workspace", help=WORKSPACE_HELP)
    p.add_argument("name", help="the checkpoint's name (see `checkpoint list`)")
    p.add_argument("to", nargs="?", help="a later checkpoint (default: now)")
    p.add_argument("--text", action="store_true", help="unified diffs of modified text files")
    p = csub.add_parser("restore", help="make the workspace what a checkpoint was (atomic; safety checkpoint first)")
    p.add_argument("workspace", help=WORKSPACE_HELP)
    p.add_argument("name", help="the checkpoint's name (see `checkpoint list`)")
    p.add_argument("--safety", help="name of the safety checkpoint (default: before-restore-<time>)")
    for p in csub.choices.values():
        p.set_defaults(func=cmd_checkpoint)

    p = sub.add_parser("clone", help="copy a file or tree in metadata only, sharing blocks (atomic)")
    p.add_argument("workspace", help=WORKSPACE_HELP)
    p.add_argument("src", help="the file or directory to copy (a path in the workspace)")
    p.add_argument("dst", help="the path of the copy (a path in the workspace)")
    p.set_defaults(func=cmd_clone)

    t = sub.add_parser("trash", help="deleted files: list, restore, purge")
    t.set_defaults(parser=t)
    tsub = t.add_subparsers(dest="trash_command", metavar="<subcommand>")
    p = tsub.add_parser("list", help="deleted files, who deleted them and when")
    p.add_argument("workspace", help=WORKSPACE_HELP)
    p = tsub.add_parser("restore", help="put a deleted file back at its original path (or --to)")
    p.add_argument("workspace", help=WORKSPACE_HELP)
    p.add_argument("id", help="the ID from `trash list`")
    p.add_argument("--to", help="restore to this path instead")
    p = tsub.add_parser("purge", help="delete trash entries now")
    p.add_argument("workspace", help=WORKSPACE_HELP)
    p.add_argument("id", nargs="?", help="one entry (default: all)")
    p.add_argument("--older-than", help="only entries deleted longer ago than this, e.g. 2h, 1d")
    for p in tsub.choices.values():
        p.set_defaults(func=cmd_trash)
