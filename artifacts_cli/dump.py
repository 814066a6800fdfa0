"""``artifacts dump WORKSPACE FILE [--data]`` and ``artifacts load FILE WORKSPACE [--from SOURCE]``.

A *logical* dump: the namespace as JSON — every directory, file and symlink with its mode,
owner, times, size, hard links (``link_of``: the first path of the same inode) and, for each
file, its SHA-256 — plus, with ``--data``, each file's bytes (base64), so the one file is a
complete backup. ``load`` recreates that tree in an empty workspace through the VFS and then
*verifies* it: every file is read back and its SHA-256 compared with the dump's (a mismatch is
exit 1). File data comes from the dump (``--data``) or, for a dump without it, from ``--from``:
a workspace path or a local directory holding the same tree (the workspace it was dumped from,
a mount of it, a restored copy).

Why logical and not the raw keys: a workspace's objects are blocks under its *own* volume
prefix, named by slice ids of its own counter; a fresh workspace has another prefix and counter,
so restoring chunk lists would point at objects it does not have. Writing the data through the
VFS gives the new workspace its own blocks, and the old one can go once the load verified.
Not dumped: xattrs, the trash, special files (devices, FIFOs: counted as skipped), the
workspace's own entries (``.stats`` …). Limits are carried (``quota`` shows them) but not set
by ``load``: a load into a workspace with smaller limits fails as a copy would.

The file format (``"format": "artifacts-dump", "version": 1``) is documented in docs/cli.md.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import sys
import time
from typing import Any

from artifacts_cli.config import CliError
from artifacts_cli.errors import EXIT_CONFLICT, EXIT_ERROR, EXIT_OK, EXIT_USAGE
from artifacts_cli.output import counted, human_bytes, iso_time
from artifacts_cli.trees import COPY_CHUNK, Location, Workspaces, entries, kind, reported, workspace_location

FORMAT, VERSION = "artifacts-dump", 1


def _digest(loc: Location, *, keep: bool) -> tuple[str, bytes | None]:
    """SHA-256 of a file (and its bytes when ``keep``), read in block-size pieces."""
    h = hashlib.sha256()
    kept = bytearray() if keep else None
    with reported(loc.display), loc.tree.open(loc.path, "rb") as f:
        while chunk := f.read(COPY_CHUNK):
            h.update(chunk)
            if kept is not None:
                kept += chunk
    return h.hexdigest(), bytes(kept) if kept is not None else None


def _entry(loc: Location, rel: str, st: os.stat_result) -> dict[str, Any]:
    return {"path": rel, "type": kind(st), "mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid,
            "mtime_ns": st.st_mtime_ns, "atime_ns": st.st_atime_ns}


def build_dump(root: Location, *, data: bool, out) -> dict[str, Any]:
    items: list[dict[str, Any]] = []
    first_path: dict[int, str] = {}
    skipped = 0
    with reported(root.display):
        top = root.tree.stat(root.path)
    items.append(_entry(root, "/", top))
    todo = [(root, "/")]
    while todo:
        d, rel = todo.pop(0)
        for name in entries(d):
            child, crel = d.child(name), rel.rstrip("/") + "/" + name
            with reported(child.display):
                st = child.tree.stat(child.path, follow_symlinks=False)
            e = _entry(child, crel, st)
            k = e["type"]
            if k == "dir":
                todo.append((child, crel))
            elif k == "symlink":
                with reported(child.display):
                    e["target"] = child.tree.readlink(child.path)
            elif k == "file":
                e["size"] = st.st_size
                if st.st_nlink > 1 and st.st_ino in first_path:
                    e["link_of"] = first_path[st.st_ino]
                else:
                    first_path[st.st_ino] = crel
                    e["sha256"], raw = _digest(child, keep=data)
                    if raw is not None:
                        e["data"] = base64.b64encode(raw).decode()
            else:
                skipped += 1
                out.warn(f"skipped {child.display}: not a regular file, directory or symlink")
                continue
            items.append(e)
    files = [e for e in items if e["type"] == "file" and "link_of" not in e]
    return {"format": FORMAT, "version": VERSION, "source": root.display, "created_at": iso_time(time.time()),
            "with_data": data, "entries": items,
            "totals": {"directories": sum(e["type"] == "dir" for e in items), "files": len(files),
                       "hard_links": sum("link_of" in e for e in items),
                       "symlinks": sum(e["type"] == "symlink" for e in items),
                       "bytes": sum(e["size"] for e in files), "skipped": skipped}}


def cmd_dump(args) -> int:
    out = args.out
    if args.file != "-" and os.path.exists(args.file) and not args.force:
        raise CliError(f"{args.file} exists", "pass --force to replace it, or name another file",
                       exit_code=EXIT_CONFLICT, code="EEXIST")
    with Workspaces(read_only=True) as ws:
        root = ws.locate(workspace_location(args.workspace))
        if not root.remote:
            raise CliError(f"{args.workspace} is not a workspace", "write WORKSPACE or WORKSPACE:PATH",
                           exit_code=EXIT_USAGE)
        with out.phase(f"Dumping {root.display}…"):
            dump = build_dump(root, data=args.data, out=out)
    text = json.dumps(dump, indent=1)
    if args.file == "-":
        sys.stdout.write(text + "\n")
        return EXIT_OK
    tmp = args.file + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text + "\n")
    os.replace(tmp, args.file)
    t = dump["totals"]
    out.result(f"Dumped {_summary(t)} to {args.file}"
               + ("" if args.data else " (metadata and checksums; load needs --from for the data)"),
               data={"file": args.file, **t, "with_data": args.data})
    return EXIT_OK


def _summary(t: dict[str, Any]) -> str:
    return (f"{counted(t['directories'], 'directory', 'directories')}, {counted(t['files'], 'file')} "
            f"({human_bytes(t['bytes'])}), {counted(t['symlinks'], 'symlink')}, "
            f"{counted(t['hard_links'], 'hard link')}")


def _read_dump(path: str) -> dict[str, Any]:
    try:
        with (sys.stdin if path == "-" else open(path, encoding="utf-8")) as f:
            dump = json.load(f)
    except FileNotFoundError:
        raise CliError(f"{path}: no such file", "name a file written by `artifacts dump`", exit_code=4,
                       code="ENOENT") from None
    except (OSError, ValueError) as e:
        raise CliError(f"{path} is not a readable dump: {e}", "name a file written by `artifacts dump`",
                       exit_code=EXIT_USAGE) from None
    if not isinstance(dump, dict) or dump.get("format") != FORMAT:
        raise CliError(f"{path} is not an artifacts dump", "name a file written by `artifacts dump`",
                       exit_code=EXIT_USAGE)
    if dump.get("version", 0) > VERSION:
        raise CliError(f"{path} is dump version {dump['version']}, newer than this CLI's {VERSION}",
                       "upgrade artifacts on this host", exit_code=EXIT_USAGE)
    return dump


def _file_bytes(e: dict[str, Any], source: Location | None) -> bytes:
    if "data" in e:
        return base64.b64decode(e["data"])
    assert source is not None
    loc = source.child(e["path"].lstrip("/")) if e["path"] != "/" else source
    with reported(loc.display), loc.tree.open(loc.path, "rb") as f:
        return f.read()


def cmd_load(args) -> int:
    out = args.out
    dump = _read_dump(args.file)
    items = dump["entries"]
    if not dump.get("with_data") and args.source is None:
        raise CliError("this dump holds no file data", "pass --from with the workspace (WORKSPACE:PATH) or "
                       "directory it was dumped from, or dump again with --data", exit_code=EXIT_USAGE)
    started = time.monotonic()
    with Workspaces() as ws:
        target = ws.locate(workspace_location(args.workspace))
        if not target.remote:
            raise CliError(f"{args.workspace} is not a workspace", "write WORKSPACE or WORKSPACE:PATH",
                           exit_code=EXIT_USAGE)
        with reported(target.display):
            target.tree.makedirs(target.path, exist_ok=True)
        if entries(target):
            raise CliError(f"{target.display} is not empty", "load into a new workspace "
                           "(`artifacts workspace create`) or an empty directory", exit_code=EXIT_CONFLICT,
                           code="ENOTEMPTY")
        source = ws.locate(args.source) if args.source else None
        vol = target.tree
        with out.phase(f"Loading {len(items)} entries into {target.display}…"):
            for e in items:
                loc = target.child(e["path"].lstrip("/")) if e["path"] != "/" else target
                with reported(loc.display):
                    if e["type"] == "dir" and e["path"] != "/":
                        vol.mkdir(loc.path)
                    elif e["type"] == "symlink":
                        vol.symlink(e["target"], loc.path)
                    elif e["type"] == "file" and "link_of" in e:
                        vol.link(target.child(e["link_of"].lstrip("/")).path, loc.path)
                    elif e["type"] == "file":
                        vol.write_bytes(loc.path, _file_bytes(e, source))
                    if e["type"] != "symlink":
                        vol.chown(loc.path, e["uid"], e["gid"])
                        if e["type"] == "file":
                            vol.chmod(loc.path, e["mode"])
                            vol.utime(loc.path, ns=(e["atime_ns"], e["mtime_ns"]))
            for e in reversed(items):  # directories last, deepest first: their times and modes stay
                if e["type"] == "dir":
                    loc = target.child(e["path"].lstrip("/")) if e["path"] != "/" else target
                    with reported(loc.display):
                        vol.chmod(loc.path, e["mode"])
                        vol.utime(loc.path, ns=(e["atime_ns"], e["mtime_ns"]))
        bad = []
        with out.phase("Verifying every file…"):
            for e in items:
                if e["type"] == "file" and "link_of" not in e:
                    loc = target.child(e["path"].lstrip("/"))
                    got, _ = _digest(loc, keep=False)
                    if got != e["sha256"]:
                        bad.append(e["path"])
    t = dump["totals"]
    data = {"into": target.display, **t, "verified": t["files"] - len(bad), "mismatched": bad,
            "seconds": round(time.monotonic() - started, 3)}
    if bad:
        out.result(f"Loaded, but {len(bad)} file(s) differ from the dump: {', '.join(bad[:10])}", data=data)
        return EXIT_ERROR
    out.result(f"Loaded {_summary(t)} into {target.display}; every file verified", data=data)
    return EXIT_OK


def add_parser(sub) -> None:
    p = sub.add_parser("dump", help="write a workspace's tree (metadata, checksums, optionally data) as JSON")
    p.add_argument("workspace", help="WORKSPACE or WORKSPACE:PATH (a subtree)")
    p.add_argument("file", help="the JSON file to write (- for stdout)")
    p.add_argument("--data", action="store_true", help="include every file's bytes (base64): a complete backup")
    p.add_argument("--force", action="store_true", help="replace FILE if it exists")
    p.set_defaults(func=cmd_dump)

    p = sub.add_parser("load", help="recreate a dumped tree in an empty workspace and verify every file")
    p.add_argument("file", help="a file written by `artifacts dump` (- for stdin)")
    p.add_argument("workspace", help="WORKSPACE or WORKSPACE:PATH to load into (must be empty)")
    p.add_argument("--from", dest="source", metavar="SOURCE",
                   help="where file data comes from for a dump without --data: WORKSPACE:PATH or a local directory")
    p.set_defaults(func=cmd_load)
