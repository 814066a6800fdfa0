"""``warmup`` and ``cache show|evict|clear``: the local block cache, as JuiceFS users know it.

- ``warmup PATH…`` fetches files or whole trees into this host's disk cache, so a mount (or any
  client of the workspace on this host) reads them at local-disk speed. A PATH inside a mount of
  this CLI names its workspace; ``--workspace WS`` takes workspace paths instead (no mount
  needed). The workspace is opened as ``open_workspace`` does, with a read-only session, and
  the same cache directory a mount uses; a rich progress bar on stderr follows the bytes, and a
  summary line (``--format json``: one document) ends it. Blocks already cached cost a ``stat``.
- ``cache show`` lists the cache directories (which workspace, where, how big, when last used)
  and, for each live mount of this CLI, its memory and disk hit rates from ``.stats``.
- ``cache evict PATH…`` drops those files' blocks from the disk cache; ``cache clear [WS…]``
  removes whole cache directories (all of them, or those of the named workspaces). A mount whose
  cache was removed refills it from the object store; nothing is lost.

Exit codes as docs/cli.md has them: 2 for a usage mistake (no path, a path outside every mount
without ``--workspace``), 8 for ``cache show`` of a mountpoint that is not mounted, 1 when some
files or blocks could not be cached (the summary names them).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator

from artifacts_cli.config import CliError, state_path

MiB = 1 << 20


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


# -- where paths live ------------------------------------------------------------------------------

def live_mounts() -> list[tuple[str, str]]:
    """``(mountpoint, workspace)`` of this CLI's mounts that are live (from the session records)."""
    from artifacts_fuse.mountinfo import is_mounted

    found = []
    for p in sorted(state_path("sessions").glob("*.json")):
        with contextlib.suppress(OSError, ValueError, KeyError):
            rec = json.loads(p.read_text())
            if is_mounted(rec["mountpoint"]):
                found.append((rec["mountpoint"], rec["workspace"]))
    return found


def group_paths(paths: list[str], workspace: str | None) -> dict[str, list[str]]:
    """Workspace -> workspace paths. With ``workspace`` the paths are inside it already; else
    each must lie in a live mount of this CLI."""
    if not paths:
        raise CliError("no path given", "name files or directories: a mounted path, or --workspace WS and "
                                        "workspace paths", exit_code=2)
    if workspace is not None:
        from artifacts_cli.refs import check_ref

        check_ref(workspace)
        return {workspace: ["/" + p.lstrip("/") for p in paths]}
    mounts = sorted(live_mounts(), key=lambda m: -len(m[0]))  # the innermost mountpoint wins
    out: dict[str, list[str]] = {}
    for p in paths:
        full = os.path.abspath(p)
        for mp, ws in mounts:
            if full == mp or full.startswith(mp.rstrip("/") + "/"):
                out.setdefault(ws, []).append("/" + os.path.relpath(full, mp).lstrip("."))
                break
        else:
            raise CliError(f"{full} is not inside a mounted workspace",
                           "mount it with `artifacts mount`, or pass --workspace WS with workspace paths",
                           exit_code=2)
    return out


@contextlib.contextmanager
def open_for_cache(ref: str) -> Iterator:
    """The workspace through a read-only session, with the cache configuration its mounts use."""
    from artifacts_cli.connect import workspace_session
    from artifacts_cli.mount import custom_profile_file
    from artifacts_core.config import profile_config
    from artifacts_core.volume import open_volume

    with workspace_session(ref, read_only=True, label="(cache)") as (grant, env):
        os.environ.update(env)
        profile = grant.cache_profile
        custom = custom_profile_file(profile) if profile == "custom" else None
        config = profile_config(profile, custom_file=custom)
        vol = open_volume(grant.meta.url, grant.storage.url, key_prefix=grant.meta.key_prefix,
                          config=config, read_only=True)
        try:
            yield vol
        finally:
            vol.close()


# -- warmup ----------------------------------------------------------------------------------------

def cmd_warmup(args) -> int:
    out = args.out
    results = []
    failed = False
    for ws, paths in group_paths(args.paths, args.workspace).items():
        with open_for_cache(ws) as vol:
            report = _warm_with_progress(out, ws, vol, paths, args.concurrency)
            results.append(_warm_summary(ws, vol.cache_dir, report))
        failed = failed or bool(report.errors)
        if not out.json:
            r = report
            rate = r.fetched_bytes / MiB / r.seconds if r.seconds else 0.0
            out.result(f"Warmed {r.files} file(s) ({_size(r.bytes)}) of {ws} in {r.seconds:.1f} s: "
                       f"{r.fetched} block(s) fetched ({_size(r.fetched_bytes)}, {rate:.0f} MiB/s), "
                       f"{r.already_cached} already cached, {r.inline_files} inline (kept in Redis).")
            for path, message in r.errors:
                out.warn(f"{path}: {message}" if path else message)
    if out.json:
        out.result(data={"workspaces": results})
    return 1 if failed else 0


def _warm_with_progress(out, ws: str, vol, paths: list[str], concurrency: int):
    """Run the warmup under a rich progress bar on stderr (bytes of blocks handled)."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                        TimeRemainingColumn(), console=out.err, disable=out.json or out.quiet)
    task = progress.add_task(f"Warming {ws}", total=None)

    def on_plan(report) -> None:
        progress.update(task, total=max(report.bytes, 1))

    def on_block(block, outcome: str) -> None:
        progress.advance(task, block.length)

    with progress:
        return vol.warmup(paths, concurrency=concurrency, on_plan=on_plan, progress=on_block)


def _warm_summary(ws: str, cache_dir: str | None, r) -> dict:
    return {"workspace": ws, "cache_dir": cache_dir, "files": r.files, "bytes": r.bytes,
            "inline_files": r.inline_files, "blocks": r.blocks, "fetched": r.fetched,
            "fetched_bytes": r.fetched_bytes, "already_cached": r.already_cached, "failed": r.failed,
            "seconds": round(r.seconds, 3),
            "errors": [{"path": p, "error": m} for p, m in r.errors]}


# -- cache show / evict / clear --------------------------------------------------------------------

def _mount_rates(mp: str) -> dict:
    from artifacts_cli.stats import parse_prometheus

    try:
        with open(os.path.join(mp, ".stats"), encoding="utf-8") as f:
            samples = parse_prometheus(f.read())
    except OSError as e:
        return {"error": e.strerror or str(e)}
    v = {name.removeprefix("artifacts_chunks_"): value for name, labels, value in samples
         if name.startswith("artifacts_chunks_") and not labels}

    def rate(hits: str, misses: str) -> float | None:
        total = v.get(hits, 0) + v.get(misses, 0)
        return round(v.get(hits, 0) / total, 4) if total else None

    return {"memory_hit_rate": rate("memory_hits", "memory_misses"),
            "disk_hit_rate": rate("disk_hits", "disk_misses"),
            "memory_cache_bytes": int(v.get("memory_cache_bytes", 0)),
            "disk_cache_bytes": int(v.get("disk_cache_bytes", 0)),
            "disk_cache_capacity": int(v.get("disk_cache_capacity", 0)),
            "s3_bytes": int(v.get("download_bytes", 0))}


def cmd_show(args) -> int:
    from artifacts_core.chunk import cache_dirs

    base = cache_dirs.cache_base(args.cache_dir or "")
    dirs = cache_dirs.list_dirs(base)
    mounts = [{"mountpoint": mp, "workspace": ws, **_mount_rates(mp)} for mp, ws in live_mounts()]
    data = {"base": str(base), "caches": [
        {"volume": d.volume, "uuid": d.uuid, "path": str(d.path), "bytes": d.bytes, "blocks": d.blocks,
         "segments": d.segments, "last_used": d.last_used, "storage": d.storage} for d in dirs],
        "mounts": mounts}
    if args.out.json:
        args.out.result(data=data)
        return 0
    rows = [(d.volume or "(unnamed, older layout)", _size(d.bytes), f"{d.blocks}+{d.segments}",
             time.strftime("%Y-%m-%d %H:%M", time.localtime(d.last_used)) if d.last_used else "-", str(d.path))
            for d in dirs]
    args.out.result(f"Cache directories under {base} ({_size(sum(d.bytes for d in dirs))} in {len(dirs)}):")
    if rows:
        args.out.table(("WORKSPACE", "SIZE", "BLOCKS+SEGMENTS", "LAST USED", "PATH"), rows)

    def pct(x):
        return "-" if x is None else f"{x:.1%}"

    if mounts:
        args.out.result("Live mounts:")
        args.out.table(("MOUNTPOINT", "WORKSPACE", "MEMORY HITS", "DISK HITS", "DISK CACHE", "FROM S3"), [
            (m["mountpoint"], m["workspace"], pct(m.get("memory_hit_rate")), pct(m.get("disk_hit_rate")),
             f"{_size(m.get('disk_cache_bytes', 0))} of {_size(m.get('disk_cache_capacity', 0))}",
             _size(m.get("s3_bytes", 0))) for m in mounts])
    return 0


def cmd_evict(args) -> int:
    out = args.out
    results = []
    failed = False
    for ws, paths in group_paths(args.paths, args.workspace).items():
        with open_for_cache(ws) as vol:
            r = vol.evict(paths)
        failed = failed or bool(r.errors)
        results.append({"workspace": ws, "files": r.files, "bytes": r.bytes, "removed_files": r.freed_files,
                        "freed_bytes": r.freed_bytes, "errors": [{"path": p, "error": m} for p, m in r.errors]})
        if not out.json:
            out.result(f"Evicted {r.files} file(s) of {ws} from the cache: {r.freed_files} cached "
                       f"object(s), {_size(r.freed_bytes)} freed.")
            for path, message in r.errors:
                out.warn(f"{path}: {message}")
    if out.json:
        out.result(data={"workspaces": results})
    return 1 if failed else 0


def cmd_clear(args) -> int:
    from artifacts_core.chunk import cache_dirs

    base = cache_dirs.cache_base(args.cache_dir or "")
    dirs = cache_dirs.list_dirs(base)
    if args.workspaces:
        wanted = set(args.workspaces)
        dirs = [d for d in dirs if d.volume in wanted or d.uuid in wanted or _workspace_of(d.volume) in wanted]
        unknown = wanted - {d.volume for d in dirs} - {d.uuid for d in dirs} - {_workspace_of(d.volume) for d in dirs}
        if unknown:
            raise CliError(f"no cache directory for {', '.join(sorted(unknown))} under {base}",
                           "see `artifacts cache show` for the cached workspaces", exit_code=4)
    for d in dirs:
        cache_dirs.remove_dir(d.path)
    freed = sum(d.bytes for d in dirs)
    args.out.result(f"Removed {len(dirs)} cache director{'y' if len(dirs) == 1 else 'ies'} ({_size(freed)}).",
                    data={"base": str(base), "removed": [str(d.path) for d in dirs], "freed_bytes": freed})
    return 0


def _workspace_of(volume: str) -> str:
    """``name`` of a volume named ``<handle>-<name>-<id>`` (names may hold dashes themselves)."""
    parts = volume.split("-")
    return "-".join(parts[1:-1]) if len(parts) >= 3 and parts[-1].isdigit() else volume


def add_parser(sub) -> None:
    p = sub.add_parser("warmup", help="prefetch files or trees into the local cache")
    p.add_argument("paths", nargs="*", metavar="PATH", help="files or directories: in a mount, or workspace paths")
    p.add_argument("-w", "--workspace", help="name, handle/name or artifacts://handle/name: PATHs are in it")
    p.add_argument("--concurrency", type=int, default=16, help="blocks fetched at once (default 16)")
    p.set_defaults(func=cmd_warmup)
    c = sub.add_parser("cache", help="the local block cache: show, evict, clear")
    c.set_defaults(parser=c)
    csub = c.add_subparsers(dest="cache_command", metavar="<subcommand>")
    s = csub.add_parser("show", help="cache directories, sizes and the live mounts' hit rates")
    s.add_argument("--cache-dir", help="the cache base directory (default: $XDG_CACHE_HOME/tonbo/artifacts)")
    s.set_defaults(func=cmd_show)
    e = csub.add_parser("evict", help="drop files or trees from the local cache")
    e.add_argument("paths", nargs="*", metavar="PATH", help="files or directories whose blocks to drop: in a mount, or workspace paths")
    e.add_argument("-w", "--workspace", help="PATHs are workspace paths of this workspace")
    e.set_defaults(func=cmd_evict)
    cl = csub.add_parser("clear", help="remove cache directories (all, or those of the named workspaces)")
    cl.add_argument("workspaces", nargs="*", metavar="WORKSPACE", help="volume name, workspace name or uuid")
    cl.add_argument("--cache-dir", help="the cache base directory (default: $XDG_CACHE_HOME/tonbo/artifacts)")
    cl.set_defaults(func=cmd_clear)
