"""``artifacts``: the command line (SPEC.md §2, NEW docs), its parser and its one error path.

Each concern registers its commands in its own module (``auth``, ``workspace``, ``mount``,
``storage``, ``stack``, ``inspect``, ``events``, ``stats``, ``connect`` for ``mcp serve``, ``exec``,
``cache`` for ``warmup`` and ``cache show|evict|clear``); a command is
``func(args) -> int`` with ``args.out`` (``output.Output``) already set. A new command module is one
more name in ``COMMAND_MODULES`` (or ``OPTIONAL_MODULES`` when it may be absent): its
``add_parser(sub)`` registers it, and everything below — global flags, "did you mean", errors in
JSON — covers it without more code.

Global flags (``-v``, ``-q``, ``--trace``, ``--format json``, ``--no-color``) are accepted before
or after the command (``artifacts workspace list --format json`` works as well).

Every failure ends here, in ``run``: ``errors.describe`` turns it into one ``Error:`` line, an
optional ``Hint:`` line and an exit code (the table is in ``errors.py`` and docs/cli.md), plus a
JSON object on stdout with ``--format json``. A mistyped command, sub-command or choice gets the
closest known one ("did you mean `artifacts mount`?"), found among the parser's own choices.

A user mistake never shows a Python traceback; only ``--trace`` shows one, for unexpected errors.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import importlib.util
import json
import sys
from typing import Any

from artifacts_cli.errors import (  # noqa: F401 - the exit codes are re-exported for callers
    API_ERRORS,
    EXIT_AUTH,
    EXIT_CONFLICT,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_MOUNT,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_STORAGE,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    Failure,
    describe,
)
from artifacts_cli.output import Output, setup_logging

COMMAND_MODULES = ("auth", "workspace", "mount", "storage", "stack", "inspect", "events", "stats", "connect",
                   "exec", "history", "cache", "fs", "sync", "importer", "status", "fsck", "quota", "dump",
                   "completion", "debug")
#: Registered when the module exists (``artifacts platform …``).
OPTIONAL_MODULES = ("platform",)
#: How close a typo must be to a known word to be suggested (difflib's ratio; 0.6 is its default,
#: which suggests ``mount`` for ``mout`` and ``workspace`` for ``wrkspace`` but nothing for ``x``).
SUGGEST_CUTOFF = 0.6


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
    """argparse with our error line (exit 2), "did you mean", and global flags on every sub-command."""

    #: Set by ``run`` when ``--format json`` is on the command line: usage errors are JSON then too.
    json_errors = False

    def error(self, message: str) -> None:  # type: ignore[override]
        if message.startswith("unrecognized arguments:"):
            message += _suggest_option(message.split(":", 1)[1].split(), self)
        self.print_usage(sys.stderr)
        failure = Failure(EXIT_USAGE, "usage", message, f"see `{self.prog} --help`")
        print(f"Error: {failure.message}", file=sys.stderr)
        print(f"Hint: {failure.hint}", file=sys.stderr)
        if _Parser.json_errors:
            print(json.dumps(failure.as_json(), indent=2))
        raise SystemExit(EXIT_USAGE)

    def _check_value(self, action, value) -> None:
        if action.choices is not None and value not in action.choices:
            known = [str(c) for c in action.choices]
            close = difflib.get_close_matches(str(value), known, n=1, cutoff=SUGGEST_CUTOFF)
            if isinstance(action, argparse._SubParsersAction):
                maybe = f"; did you mean `{self.prog} {close[0]}`?" if close else ""
                raise argparse.ArgumentError(None, f"unknown command {value!r}{maybe} "
                                                     f"(choose from {', '.join(known)})")
            maybe = f"; did you mean {close[0]!r}?" if close else ""
            raise argparse.ArgumentError(action, f"invalid choice: {value!r}{maybe} "
                                                 f"(choose from {', '.join(known)})")

    def add_subparsers(self, **kwargs):  # every sub-parser is a _Parser with the global flags
        kwargs.setdefault("parser_class", _SubParser)
        return super().add_subparsers(**kwargs)


def _all_options(parser: argparse.ArgumentParser) -> set[str]:
    found: set[str] = set()
    for action in parser._actions:
        found.update(s for s in action.option_strings if s.startswith("--"))
        if isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                found |= _all_options(sub)
    return found


def _suggest_option(words: list[str], parser: argparse.ArgumentParser) -> str:
    known = sorted(_all_options(parser))
    for word in words:
        if word.startswith("--"):
            close = difflib.get_close_matches(word.split("=", 1)[0], known, n=1, cutoff=SUGGEST_CUTOFF)
            if close:
                return f"; did you mean {close[0]}?"
    return ""


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
    for name in OPTIONAL_MODULES:
        if importlib.util.find_spec(f"artifacts_cli.{name}") is not None:
            importlib.import_module(f"artifacts_cli.{name}").add_parser(sub)
    return parser


def handle_error(e: BaseException, out: Output, args=None) -> int:
    """Print ``e`` as the user should see it (``errors.describe``); its exit code."""
    failure = describe(e, args, trace=out.trace)
    out.failure(failure)
    return failure.exit_code


def _wants_json(argv: list[str]) -> bool:
    for i, word in enumerate(argv):
        if word == "--":
            break
        if word == "--format=json" or (word == "--format" and argv[i + 1:i + 2] == ["json"]):
            return True
    return False


def run(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    _Parser.json_errors = _wants_json(argv)
    parser = build_parser()
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
        return handle_error(e, out, args)


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
