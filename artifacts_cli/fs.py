"""``artifacts fs ls|cat|stat|mkdir|rm|cp|put|get``: a workspace's files without a mount.

JuiceFS and AgentFS users reach for these first: look at and move files in a workspace from a
shell or a script, with no FUSE. Paths are ``WORKSPACE:PATH`` (``demo:notes/a.md``,
``alice/demo:/``, ``artifacts://alice/demo/notes/a.md``); ``cp`` also takes local paths on either
side (``trees.py`` says how locations are told apart and what a copy keeps). Each command opens
the workspaces it names once, with a session as for a mount (``connect.open_workspace``), and
revokes it when done; reading commands ask for a read-only session.

| command | what |
|---|---|
| ``ls [-l] [-R] [-a] WS:PATH`` | names (``-l``: type, mode, size, mtime); ``-R`` recursive |
| ``cat WS:PATH…`` | the bytes, to stdout |
| ``stat WS:PATH`` | type, size, mode, owner, times, inode, links (a symlink itself; its target) |
| ``mkdir [-p] WS:PATH…`` | a directory (``-p``: with its parents, an existing one fine) |
| ``rm [-r] [-f] WS:PATH…`` | a file or symlink (``-r``: a directory and what it holds; ``-f``: a missing path is fine) |
| ``cp [-r] SRC… DST`` | any direction: local↔workspace, workspace↔workspace; progress on a terminal |
| ``put LOCAL… WS:PATH`` / ``get WS:PATH… LOCAL`` | ``cp -r`` with the direction checked |

``--format json`` gives each command's result as one document (``ls``: ``{"path", "entries":
[{"name", "type", "size", "mode", "mtime"}]}``; ``cp``: the totals and every step). ``cat`` writes
the raw bytes whatever the format. A missing path exits 4, one in the way (exists, not empty,
not a directory) 5, with the errno's name as the JSON ``code``.
"""

from __future__ import annotations

import stat
import sys
from typing import Any

from artifacts_cli.config import CliError
from artifacts_cli.errors import EXIT_NOT_FOUND, EXIT_USAGE
from artifacts_cli.output import iso_time
from artifacts_cli.plans import Plan, plan_copy, run_plan
from artifacts_cli.trees import Location, Workspaces, kind, reported, split_location


def _remote(text: str) -> str:
    ref, _ = split_location(text)
    if ref is None:
        raise CliError(f"{text!r} is not a workspace path", "write WORKSPACE:PATH, e.g. demo:notes/a.md "
                       "(or artifacts://handle/workspace/path)", exit_code=EXIT_USAGE)
    return text


def _entry(loc: Location, name: str, st) -> dict[str, Any]:
    return {"name": name, "type": kind(st), "size": st.st_size, "mode": oct(stat.S_IMODE(st.st_mode)),
            "mtime": iso_time(st.st_mtime)}


def _listing(loc: Location, *, recursive: bool, hidden: bool, prefix: str = "") -> list[dict[str, Any]]:
    with reported(loc.display):
        st = loc.tree.stat(loc.path)
        if not stat.S_ISDIR(st.st_mode):
            return [_entry(loc, prefix or loc.path.rsplit("/", 1)[-1], st)]
        names = sorted(loc.tree.listdir(loc.path))
    rows = []
    for name in names:
        if name.startswith(".") and not hidden:
            continue
        child = loc.child(name)
        with reported(child.display):
            cst = child.tree.stat(child.path, follow_symlinks=False)
        rows.append(_entry(child, prefix + name, cst))
        if recursive and stat.S_ISDIR(cst.st_mode):
            rows.extend(_listing(child, recursive=True, hidden=hidden, prefix=prefix + name + "/"))
    return rows


def cmd_ls(args) -> int:
    with Workspaces(read_only=True) as ws:
        loc = ws.locate(_remote(args.path))
        rows = _listing(loc, recursive=args.recursive, hidden=args.all)
    out = args.out
    if out.json:
        out.result(data={"path": args.path, "entries": rows})
    elif args.long:
        out.table(("TYPE", "MODE", "SIZE", "MODIFIED", "NAME"),
                  [(r["type"], r["mode"], r["size"], r["mtime"], r["name"]) for r in rows])
    else:
        for r in rows:
            out.result(r["name"] + ("/" if r["type"] == "dir" else ""))
    return 0


def cmd_cat(args) -> int:
    with Workspaces(read_only=True) as ws:
        for text in args.paths:
            loc = ws.locate(_remote(text))
            with reported(loc.display), loc.tree.open(loc.path, "rb") as f:
                while chunk := f.read(1 << 20):
                    sys.stdout.buffer.write(chunk)
    sys.stdout.buffer.flush()
    return 0


def cmd_stat(args) -> int:
    with Workspaces(read_only=True) as ws:
        loc = ws.locate(_remote(args.path))
        with reported(loc.display):
            st = loc.tree.stat(loc.path, follow_symlinks=False)
            target = loc.tree.readlink(loc.path) if stat.S_ISLNK(st.st_mode) else None
    data: dict[str, Any] = {"path": args.path, "type": kind(st), "size": st.st_size,
                            "mode": oct(stat.S_IMODE(st.st_mode)), "permissions": stat.filemode(st.st_mode),
                            "uid": st.st_uid, "gid": st.st_gid, "inode": st.st_ino, "links": st.st_nlink,
                            "mtime": iso_time(st.st_mtime), "ctime": iso_time(st.st_ctime),
                            "atime": iso_time(st.st_atime)}
    if target is not None:
        data["target"] = target
    width = max(len(k) for k in data) + 2
    args.out.result("\n".join(f"{(k + ':').ljust(width)}{v}" for k, v in data.items()), data=data)
    return 0


def cmd_mkdir(args) -> int:
    with Workspaces() as ws:
        for text in args.paths:
            loc = ws.locate(_remote(text))
            with reported(loc.display):
                if args.parents:
                    loc.tree.makedirs(loc.path, exist_ok=True)
                else:
                    loc.tree.mkdir(loc.path)
    args.out.result(data={"created": args.paths})
    return 0


def cmd_rm(args) -> int:
    removed = []
    with Workspaces() as ws:
        for text in args.paths:
            loc = ws.locate(_remote(text))
            if loc.path.strip("/") == "":
                raise CliError(f"{text} is the workspace root", "remove what it holds by name, "
                               "or delete the workspace: `artifacts workspace delete`", exit_code=EXIT_USAGE)
            try:
                with reported(loc.display):
                    st = loc.tree.stat(loc.path, follow_symlinks=False)
                    if stat.S_ISDIR(st.st_mode):
                        if not args.recursive:
                            raise CliError(f"{text} is a directory", "pass -r to remove it and what it holds",
                                           exit_code=EXIT_USAGE, code="EISDIR")
                        loc.tree.rmtree(loc.path)
                    else:
                        loc.tree.remove(loc.path)
                removed.append(text)
            except CliError as e:
                if not (args.force and e.exit_code == EXIT_NOT_FOUND):
                    raise
    args.out.result(data={"removed": removed})
    return 0


def _copy(args, sources: list[str], target: str, *, recursive: bool) -> int:
    out = args.out
    if not sources:
        raise CliError("name a source and a target", f"e.g. `artifacts fs {args.fs_command} SRC DST`",
                       exit_code=EXIT_USAGE)
    with Workspaces() as ws:
        dst = ws.locate(target)
        srcs = [ws.locate(s) for s in sources]
        if len(srcs) > 1 and not _is_dir(dst) and not target.endswith("/"):
            raise CliError(f"copying {len(srcs)} sources needs a directory as the target; {target} is not one",
                           "name an existing directory, or end the target with / to make it",
                           exit_code=EXIT_USAGE, code="ENOTDIR")
        plan = Plan()
        for src in srcs:
            for op in plan_copy(src, dst, recursive=recursive).ops:
                if op.action == "mkdir" and op.src is None and plan.ops:
                    continue  # `cp a b new/`: the first source's plan makes new/
                plan.ops.append(op)
        totals = run_plan(plan, out)
    out.result(totals.summary(), data={**totals.as_json(), "steps": [op.as_json() for op in plan.ops]})
    return 0


def _is_dir(loc: Location) -> bool:
    try:
        return stat.S_ISDIR(loc.tree.stat(loc.path).st_mode)
    except OSError:
        return False


def cmd_cp(args) -> int:
    return _copy(args, args.paths[:-1], args.paths[-1], recursive=args.recursive)


def cmd_put(args) -> int:
    for s in args.paths[:-1]:
        if split_location(s)[0] is not None:
            raise CliError(f"put copies local paths into a workspace; {s} is a workspace path",
                           "use `artifacts fs get` or `artifacts fs cp`", exit_code=EXIT_USAGE)
    return _copy(args, args.paths[:-1], _remote(args.paths[-1]), recursive=True)


def cmd_get(args) -> int:
    if split_location(args.paths[-1])[0] is not None:
        raise CliError(f"get copies from a workspace to a local path; {args.paths[-1]} is a workspace path",
                       "use `artifacts fs cp` between workspaces", exit_code=EXIT_USAGE)
    return _copy(args, [_remote(s) for s in args.paths[:-1]], args.paths[-1], recursive=True)


def add_parser(sub) -> None:
    f = sub.add_parser("fs", help="list, read and copy a workspace's files without a mount")
    f.set_defaults(parser=f)
    fsub = f.add_subparsers(dest="fs_command", metavar="<subcommand>")
    where = "WORKSPACE:PATH (e.g. demo:notes/a.md) or artifacts://handle/workspace/path"

    p = fsub.add_parser("ls", help="list a directory (or show one file)")
    p.add_argument("path", help=where)
    p.add_argument("-l", "--long", action="store_true", help="type, mode, size and modification time")
    p.add_argument("-R", "--recursive", action="store_true", help="list subdirectories too")
    p.add_argument("-a", "--all", action="store_true", help="include names that start with '.'")
    p.set_defaults(func=cmd_ls)

    p = fsub.add_parser("cat", help="write files' bytes to stdout")
    p.add_argument("paths", nargs="+", metavar="path", help=where)
    p.set_defaults(func=cmd_cat)

    p = fsub.add_parser("stat", help="a file's type, size, mode, owner and times")
    p.add_argument("path", help=where)
    p.set_defaults(func=cmd_stat)

    p = fsub.add_parser("mkdir", help="make directories")
    p.add_argument("paths", nargs="+", metavar="path", help=where)
    p.add_argument("-p", "--parents", action="store_true", help="make parents too; an existing directory is fine")
    p.set_defaults(func=cmd_mkdir)

    p = fsub.add_parser("rm", help="remove files (and with -r, directories)")
    p.add_argument("paths", nargs="+", metavar="path", help=where)
    p.add_argument("-r", "--recursive", action="store_true", help="remove directories and what they hold")
    p.add_argument("-f", "--force", action="store_true", help="a path that does not exist is not an error")
    p.set_defaults(func=cmd_rm)

    p = fsub.add_parser("cp", help="copy between local paths and workspaces, either way")
    p.add_argument("paths", nargs="+", metavar="path",
                   help="sources, then the target: local paths or " + where)
    p.add_argument("-r", "--recursive", action="store_true", help="copy directories and what they hold")
    p.set_defaults(func=cmd_cp)

    p = fsub.add_parser("put", help="copy local files and directories into a workspace")
    p.add_argument("paths", nargs="+", metavar="path", help="local sources, then the target " + where)
    p.set_defaults(func=cmd_put)

    p = fsub.add_parser("get", help="copy a workspace's files and directories to a local path")
    p.add_argument("paths", nargs="+", metavar="path", help="sources (" + where + "), then a local target")
    p.set_defaults(func=cmd_get)
