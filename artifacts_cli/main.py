"""``artifacts``: the command line (SPEC.md §2, NEW docs), its global flags and its exit codes.

Each concern registers its commands in its own module (``auth``, ``workspace``, ``mount``,
``storage``, ``stack``, ``inspect``, ``stats``, ``connect`` for ``mcp serve``); a command is
``func(args) -> int`` with ``args.out`` (``output.Output``) already set. ``artifacts_cli.platform.add_parser`` is
called when that module exists (issue 8 adds ``artifacts platform …``).

Global flags (``-v``, ``-q``, ``--trace``, ``--format json``, ``--no-color``) are accepted before
or after the command (``artifacts workspace list --format json`` works as well).

Every failure ends here, in ``run``, and becomes one ``Error:`` line, an optional ``Hint:`` line and
one of these exit codes (docs/cli.md has the table):

| code | meaning |
|---|---|
| 0 | success |
| 1 | error (the server failed, an unexpected exception: "run with --trace for details") |
| 2 | usage: bad flags or arguments, an invalid name, a refused confirmation |
| 3 | authentication: not logged in, key unknown or revoked, workspace of another account |
| 4 | not found: no such workspace (or session) |
| 5 | conflict: the workspace exists, or is not in a state that allows this |
| 6 | unavailable: the orchestrator (or the local stack) cannot be reached |
| 7 | storage credentials: none for a BYO bucket, or the bucket refused them |
| 8 | mount: the mountpoint is busy, missing, not empty, or not mounted |
| 130 | interrupted (Ctrl-C) |

A user mistake never shows a Python traceback; only ``--trace`` shows one, for unexpected errors.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import traceback
from typing import Any

from artifacts_cli.config import CliError
from artifacts_cli.output import Output, setup_logging

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_AUTH, EXIT_NOT_FOUND, EXIT_CONFLICT = 0, 1, 2, 3, 4, 5
EXIT_UNAVAILABLE, EXIT_STORAGE, EXIT_MOUNT, EXIT_INTERRUPTED = 6, 7, 8, 130

#: Orchestrator error code -> (exit code, hint). Messages come from the server (SPEC.md §3.2).
API_ERRORS: dict[str, tuple[int, str]] = {
    "unauthorized": (EXIT_AUTH, "run `artifacts login` again (or `artifacts up` on this machine), or check TONBO_API_KEY"),
    "forbidden": (EXIT_AUTH, "that workspace belongs to another account"),
    "workspace_not_found": (EXIT_NOT_FOUND, "check the name with `artifacts workspace list`"),
    "session_not_found": (EXIT_NOT_FOUND, ""),
    "key_not_found": (EXIT_NOT_FOUND, ""),
    "workspace_exists": (EXIT_CONFLICT, "pick another name, or mount it with `artifacts mount <name> <mountpoint>`"),
    "workspace_not_active": (EXIT_CONFLICT, "if it is pending_format, re-run `artifacts workspace create`; "
                                            "if deleting or deleted, create it again"),
    "workspace_not_completable": (EXIT_CONFLICT, "the workspace is being deleted; create it again"),
    "setting_key_missing": (EXIT_CONFLICT, "the format step did not finish; re-run `artifacts workspace create`"),
    "invalid_request": (EXIT_USAGE, ""),
    "metadata_acl_provisioning_failed": (EXIT_ERROR, "transient: retry in a few seconds"),
    "storage_provisioning_failed": (EXIT_ERROR, "the managed storage refused or is down: retry in a few seconds"),
    "orchestrator_unavailable": (EXIT_UNAVAILABLE, "start the local stack with `artifacts up`, or check "
                                                   "ARTIFACTS_ORCHESTRATOR_URL"),
}

COMMAND_MODULES = ("auth", "workspace", "mount", "storage", "stack", "inspect", "stats", "connect", "exec",
                   "history")


def _version() -> str:
    from artifacts_core import __version__

    return f"artifacts {__version__}"


def _global_flags(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    d: dict[str, Any] = {"default": argparse.SUPPRESS} if suppress else {}
    g = parser.add_argument_group("global options")
    g.add_argument("-v", "--verbose", action="store_true", help="more detail (debug logging)", **d)
    g.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only", **d)
    g.add_argument("--trace", action="store_true", help="trace logging; tracebacks for unexpected errors", **d)
    g.add_argument("--format", choices=("text", "json"), help="json: machine-readable output", **d)
    g.add_argument("--no-color", action="store_true", help="no colour", **d)


class _Parser(argparse.ArgumentParser):
    """argparse with our error line (exit 2) and global flags on every sub-command."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"Error: {message}", file=sys.stderr)
        print(f"Hint: see `{self.prog} --help`", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)

    def add_subparsers(self, **kwargs):  # every sub-parser is a _Parser with the global flags
        kwargs.setdefault("parser_class", _SubParser)
        return super().add_subparsers(**kwargs)


class _SubParser(_Parser):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        _global_flags(self, suppress=True)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="artifacts", description="Persistent, shareable POSIX workspaces for AI agents.")
    parser.add_argument("-V", "--version", action="version", version=_version())
    _global_flags(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name in COMMAND_MODULES:
        importlib.import_module(f"artifacts_cli.{name}").add_parser(sub)
    if importlib.util.find_spec("artifacts_cli.platform") is not None:
        importlib.import_module("artifacts_cli.platform").add_parser(sub)
    return parser


def handle_error(e: BaseException, out: Output) -> int:
    """The one place an exception becomes a message and an exit code."""
    from artifacts_core.errors import ArtifactsError
    from artifacts_fuse.mount import MountError
    from artifacts_orchestrator.errors import ApiError

    if isinstance(e, CliError):
        out.error(e.message, e.hint)
        return e.exit_code
    if isinstance(e, ApiError):
        code, hint = API_ERRORS.get(e.code, (EXIT_ERROR, ""))
        text = e.message if e.code == "orchestrator_unavailable" else f"{e.code}: {e.message}"
        out.error(text, hint)
        return code
    if isinstance(e, MountError):
        out.error(str(e.strerror or e), e.hint or "")
        return EXIT_MOUNT
    if isinstance(e, ArtifactsError):
        out.error(e.strerror or str(e), e.hint or "")
        return EXIT_ERROR
    if isinstance(e, KeyboardInterrupt):
        out.error("interrupted")
        return EXIT_INTERRUPTED
    if out.trace:
        traceback.print_exception(e)
    out.error(f"unexpected {type(e).__name__}: {e}", "run with --trace for details")
    return EXIT_ERROR


def run(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    command = None
    if "--" in argv:  # `artifacts exec <ws> [options] -- <command> ...`: the command is not parsed
        i = argv.index("--")
        argv, command = argv[:i], argv[i + 1:]
    args = parser.parse_args(argv)
    if command is not None:
        if not hasattr(args, "argv"):
            parser.error("'--' only separates the command of `artifacts exec`")
        args.argv = [*args.argv, *command]
    out = Output(fmt=args.format or "text", quiet=args.quiet, verbose=args.verbose, trace=args.trace,
                 color=not args.no_color)
    args.out = out
    setup_logging(out)
    if not getattr(args, "func", None):
        if args.command:  # a group without its sub-command: show that group's help
            args.parser.print_help(sys.stderr)
        else:
            parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except (Exception, KeyboardInterrupt) as e:
        return handle_error(e, out)


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
