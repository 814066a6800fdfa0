"""``artifacts quota show WORKSPACE`` and ``artifacts quota set WORKSPACE [--capacity SIZE] [--inodes N]``.

The volume has always had a capacity (bytes) and an inode limit, checked by the metadata
functions on every create and write (ENOSPC past them) and reported by ``statfs`` (``df`` on a
mount), but they could only be given at format time. These commands read and change them
through the orchestrator (``GET``/``PUT /workspaces/<handle>/<name>/quota``,
``artifacts_orchestrator/quota.py``): a session may not write the volume's setting, so an agent
working in a workspace cannot raise its own limits. A change applies at once to every mount and
client. ``0`` (or ``unlimited``) removes a limit; a limit below current usage is accepted and
refuses growth until usage falls under it (nothing is deleted).

Sizes take a unit: ``500M``, ``10GiB``, ``1.5T`` (powers of 1024: ``K``/``KiB``, ``M``/``MiB``,
``G``/``GiB``, ``T``/``TiB``, ``P``/``PiB``); a plain number is bytes.
"""

from __future__ import annotations

import re

from artifacts_cli import auth
from artifacts_cli.config import CliError
from artifacts_cli.errors import EXIT_USAGE
from artifacts_cli.output import human_bytes
from artifacts_cli.refs import check_ref

_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGTP]?)(?:I?B)?\s*$", re.I)
_UNITS = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4, "P": 5}


def parse_size(text: str) -> int:
    """``10G`` -> 10737418240; ``unlimited`` and ``0`` -> 0."""
    if text.strip().lower() in ("unlimited", "none"):
        return 0
    m = _SIZE.match(text)
    if not m:
        raise CliError(f"{text!r} is not a size", "write bytes or a number with a unit: 500M, 10GiB, 1.5T, "
                       "or 0 / unlimited", exit_code=EXIT_USAGE)
    return int(float(m.group(1)) * 1024 ** _UNITS[m.group(2).upper()])


def parse_count(text: str) -> int:
    if text.strip().lower() in ("unlimited", "none"):
        return 0
    if not text.strip().isdigit():
        raise CliError(f"{text!r} is not a number of inodes", "write a whole number, or 0 / unlimited",
                       exit_code=EXIT_USAGE)
    return int(text)


def _render(q) -> str:
    def part(used: int, limit: int, fmt) -> str:
        if not limit:
            return f"{fmt(used)} used, no limit"
        return f"{fmt(used)} of {fmt(limit)} ({used / limit:.0%})"

    return (f"Workspace {q.workspace}\n"
            f"  capacity: {part(q.used_bytes, q.capacity, human_bytes)}\n"
            f"  inodes:   {part(q.used_inodes, q.inodes, str)}")


def cmd_show(args) -> int:
    check_ref(args.workspace)
    q = auth.client().workspaces.quota(args.workspace)
    args.out.result(_render(q), data=q)
    return 0


def cmd_set(args) -> int:
    check_ref(args.workspace)
    if args.capacity is None and args.inodes is None:
        raise CliError("nothing to set", "give --capacity SIZE and/or --inodes N (0 or unlimited removes one)",
                       exit_code=EXIT_USAGE)
    capacity = parse_size(args.capacity) if args.capacity is not None else None
    inodes = parse_count(args.inodes) if args.inodes is not None else None
    q = auth.client().workspaces.set_quota(args.workspace, capacity=capacity, inodes=inodes)
    if (q.capacity and q.used_bytes > q.capacity) or (q.inodes and q.used_inodes > q.inodes):
        args.out.warn("the workspace already uses more than the new limit: nothing is removed, "
                      "but creates and writes that grow it fail (ENOSPC) until usage falls below it")
    args.out.result(_render(q), data=q)
    return 0


def add_parser(sub) -> None:
    q = sub.add_parser("quota", help="show or change a workspace's capacity and inode limits")
    q.set_defaults(parser=q)
    qsub = q.add_subparsers(dest="quota_command", metavar="<subcommand>")
    p = qsub.add_parser("show", help="the limits and what the workspace uses")
    p.add_argument("workspace", help="name, handle/name or artifacts://handle/name")
    p.set_defaults(func=cmd_show)
    p = qsub.add_parser("set", help="change the limits (applies at once to every mount)")
    p.add_argument("workspace", help="name, handle/name or artifacts://handle/name")
    p.add_argument("--capacity", metavar="SIZE", help="bytes the workspace may hold: 500M, 10GiB, 0 or unlimited")
    p.add_argument("--inodes", metavar="N", help="files, directories and links it may hold: 0 or unlimited")
    p.set_defaults(func=cmd_set)
