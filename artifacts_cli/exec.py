"""``artifacts exec <workspace> [options] -- <command> [args...]``: run a command in a sandbox
with the workspace at ``/workspace`` (docs/exec.md).

It opens a session as ``open_workspace`` does, opens the volume (snapshots and transaction
commits go through the core), and runs the command with ``artifacts_fuse.exec.Executor``: on this
CLI's existing mount of the workspace when there is one (``artifacts mount``), else on a mount
made for this run (about 0.75 s more; keep a mount for repeated runs). The session is revoked
at the end.

Text output streams the command's stdout and stderr as they come; ``-v`` adds the list of
changed files on stderr. ``--format json`` prints one document (``ExecResult.to_dict``).

Exit status: the command's own; 124 when the timeout killed it (as ``timeout(1)``); 125 when no
sandbox could be made (the error names what the host lacks — nothing runs unsandboxed); 5 when
an ``--isolated`` run exited 0 but its changes conflicted (nothing committed) or only part
could be committed.
"""

from __future__ import annotations

import os
import sys

from artifacts_cli.config import CliError

EXIT_TIMEOUT, EXIT_SANDBOX, EXIT_CONFLICT = 124, 125, 5
#: Captured output per stream in the CLI: the terminal shows everything up to this.
CLI_MAX_OUTPUT = 64 << 20


def _env_pairs(values: list[str]) -> dict[str, str]:
    out = {}
    for item in values or ():
        name, sep, value = item.partition("=")
        if not sep:
            raise CliError(f"--env takes NAME=VALUE, not {item!r}", exit_code=2)
        out[name] = value
    return out


def _stream(stream: str, data: bytes) -> None:
    target = sys.stdout.buffer if stream == "stdout" else sys.stderr.buffer
    target.write(data)
    target.flush()


def cmd_exec(args) -> int:
    from artifacts_cli.connect import workspace_session
    from artifacts_cli.mount import local_mounts_of
    from artifacts_cli.workspace import check_ref
    from artifacts_core.volume import open_volume
    from artifacts_fuse.exec import Executor, Limits, SandboxError, SandboxUnavailable

    out = args.out
    argv = list(args.argv)  # main.run takes everything after "--" unparsed
    if not argv:
        raise CliError("exec needs a command", "artifacts exec <workspace> -- <command> [args...]", exit_code=2)
    check_ref(args.workspace)
    env = _env_pairs(args.env)
    try:
        limits = Limits(max_output=CLI_MAX_OUTPUT).with_(
            timeout=args.timeout, network=args.network or None, memory_bytes=args.memory,
            processes=args.processes, cpu_seconds=args.cpu).check()
    except ValueError as e:
        raise CliError(str(e), exit_code=2) from None
    with workspace_session(args.workspace, label="(exec)") as (grant, s3env):
        os.environ.update(s3env)
        mounts = local_mounts_of(grant.session.workspace)
        profile = grant.cache_profile if grant.cache_profile != "custom" else "interactive"
        vol = open_volume(grant.meta.url, grant.storage.url, key_prefix=grant.meta.key_prefix, profile=profile)
        try:
            with Executor(vol, mountpoint=mounts[0] if mounts else None, limits=limits) as ex:
                if not mounts:
                    out.detail("no mount of this workspace here: mounting one for this run")
                try:
                    result = ex.run(argv, isolated=args.isolated, cwd=args.cwd or "", env=env,
                                    stdin=sys.stdin.buffer.read() if args.stdin else None,
                                    on_output=None if out.json else _stream)
                except (SandboxUnavailable, SandboxError) as e:
                    out.error(e.strerror or str(e), e.hint or "")
                    return EXIT_SANDBOX
        finally:
            vol.close()
    return _report(out, result)


def _report(out, result) -> int:
    if out.json:
        out.result(data=result.to_dict())
    for kind in ("created", "changed", "deleted"):
        for path in getattr(result, kind):
            out.detail(f"{kind} {path}")
    for stream in ("stdout", "stderr"):
        if getattr(result, f"{stream}_truncated"):
            out.warn(f"{stream} was cut at {CLI_MAX_OUTPUT} bytes")
    if result.timed_out:
        out.error(f"the command was killed after its timeout ({result.duration:.1f} s)",
                  "raise --timeout if it needs longer")
        return EXIT_TIMEOUT
    if result.mode == "transaction" and result.exit_code == 0 and result.committed is not True:
        if result.committed == "partial":
            out.error(f"the transaction was only partly committed: {result.commit_error}",
                      "see --format json for what was applied")
        else:
            paths = ", ".join(c["path"] for c in result.conflicts[:5])
            out.error(f"nothing committed: files changed meanwhile by someone else ({paths})"
                      if result.conflicts else f"nothing committed: {result.commit_error}",
                      "run it again on the current files")
        return EXIT_CONFLICT
    return result.exit_code


def add_parser(sub) -> None:
    p = sub.add_parser("exec", help="run a command in a sandbox on a workspace",
                       description="Run a command in a sandbox with the workspace at /workspace.")
    p.add_argument("workspace", help="name, handle/name or artifacts://handle/name")
    p.add_argument("--isolated", action="store_true",
                   help="a transaction: run on a private copy-on-write view, commit on exit 0 unless "
                        "the files it changed were changed meanwhile")
    p.add_argument("--timeout", type=float, help="seconds before the whole process tree is killed (300)")
    p.add_argument("--network", action="store_true",
                   help="allow ALL network access (the host's network, unfiltered); default: none")
    p.add_argument("--cwd", help="working directory inside the workspace")
    p.add_argument("--env", action="append", metavar="NAME=VALUE",
                   help="set a variable (nothing is inherited from this shell)")
    p.add_argument("--stdin", action="store_true", help="pass this command's stdin to the command")
    p.add_argument("--memory", type=int, metavar="BYTES", help="address space per process (4 GiB)")
    p.add_argument("--processes", type=int, help="processes at once (256)")
    p.add_argument("--cpu", type=int, metavar="SECONDS", help="CPU seconds per process (600)")
    p.add_argument("argv", nargs="*", metavar="-- command [args...]",
                   help="the command to run in the sandbox, after --")
    p.set_defaults(func=cmd_exec)
