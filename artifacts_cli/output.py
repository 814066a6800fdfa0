"""What the CLI shows: one ``Output`` object per run, built from the global flags.

- Results go to stdout: tables and lines for people, one JSON document with ``--format json``
  (then nothing else is written to stdout, so ``| jq .`` always parses; a failure is the document
  ``{"error": {...}}``). In JSON every ``*_at`` field (a Unix time in the API's models) is an
  ISO 8601 UTC string, as the text output prints times (``iso_time``).
- Progress, notes and errors go to stderr: phases of a long step show as rich spinners on a
  terminal (``phase``); when the step ends its line stays, so logs and pipes read the same story.
- ``-q`` keeps only warnings and errors; ``-v`` adds the detail lines (``detail``) and debug
  logging of ``artifacts*`` loggers; ``--trace`` logs everything and lets unexpected exceptions
  show their traceback. Third-party loggers stay at INFO even then: botocore logs whole response
  bodies at DEBUG, which can hold secret keys.
- ``--no-color`` (or ``NO_COLOR``) turns colour off; styles are never needed to read the output.

Nothing here formats a secret: callers pass masked values.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

import msgspec
from rich.console import Console
from rich.markup import escape
from rich.table import Table

#: Columns assumed when stdout/stderr is a pipe: wide enough for any identifier or metric name.
PIPE_WIDTH = 400


class Output:
    def __init__(self, *, fmt: str = "text", quiet: bool = False, verbose: bool = False,
                 trace: bool = False, color: bool = True) -> None:
        self.json = fmt == "json"
        self.quiet = quiet
        self.verbose = verbose or trace
        self.trace = trace
        no_color = not color or bool(os.environ.get("NO_COLOR"))
        # soft_wrap: long paths and identifiers stay on one line (copy-pasteable).
        self.out = _console(sys.stdout, no_color)
        self.err = _console(sys.stderr, no_color)

    # -- results (stdout) --------------------------------------------------------------------------

    def result(self, text: str = "", *, data: Any = None) -> None:
        """A command's result: ``data`` as JSON with ``--format json``, else ``text``."""
        if self.json:
            if data is not None:
                sys.stdout.write(json.dumps(to_plain(data), indent=2, sort_keys=False) + "\n")
                sys.stdout.flush()
            return
        if text:
            self.out.print(escape(text))

    def table(self, columns: Sequence[str], rows: Sequence[Sequence[Any]], *, data: Any = None) -> None:
        if self.json:
            self.result(data=data)
            return
        t = Table(box=None, show_edge=False, pad_edge=False, header_style="bold")
        for c in columns:
            t.add_column(c, no_wrap=True)
        for r in rows:
            t.add_row(*(escape(str(v)) for v in r))
        with self.out.capture() as cap:
            self.out.print(t)
        # Cells are padded to the column width; trailing blanks only get in the way of grep/diff.
        sys.stdout.write("\n".join(line.rstrip() for line in cap.get().splitlines()) + "\n")
        sys.stdout.flush()

    # -- messages (stderr) -------------------------------------------------------------------------

    def info(self, text: str) -> None:
        if not self.quiet:
            self.err.print(escape(text))

    def detail(self, text: str) -> None:
        """Shown with -v only."""
        if self.verbose and not self.quiet:
            self.err.print(escape(text), style="dim")

    def warn(self, text: str) -> None:
        self.err.print(f"[yellow]Warning:[/yellow] {escape(text)}")

    def error(self, message: str, hint: str = "") -> None:
        self.err.print(f"[bold red]Error:[/bold red] {escape(message)}")
        if hint:
            self.err.print(f"[dim]Hint:[/dim] {escape(hint)}")

    def failure(self, failure) -> None:
        """A command's failure (``errors.Failure``): the ``Error:``/``Hint:`` lines on stderr and,
        with ``--format json``, ``{"error": {code, message, hint, exit_code}}`` on stdout."""
        self.error(failure.message, failure.hint)
        if self.json:
            sys.stdout.write(json.dumps(failure.as_json(), indent=2) + "\n")
            sys.stdout.flush()

    @contextlib.contextmanager
    def phase(self, text: str) -> Iterator[None]:
        """A spinner with ``text`` while the body runs (terminals only); the line stays after."""
        if self.quiet:
            yield
            return
        if self.err.is_terminal:
            with self.err.status(escape(text), spinner="dots"):
                yield
        else:
            yield
        self.err.print(escape(text))


def _console(stream, no_color: bool) -> Console:
    # soft_wrap: long paths and identifiers stay on one line (copy-pasteable). Piped output gets a
    # wide virtual terminal, so tables are never cut at rich's default 80 columns.
    console = Console(file=stream, no_color=no_color, highlight=False, soft_wrap=True)
    if not console.is_terminal:
        console = Console(file=stream, no_color=no_color, highlight=False, soft_wrap=True, width=PIPE_WIDTH)
    return console


def iso_time(ts: float | None) -> str:
    """A Unix time as the CLI prints it everywhere: ISO 8601 UTC to the second (``-`` for none)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)) if ts else "-"


def to_plain(data: Any) -> Any:
    """msgspec structs, dataclasses and plain containers as JSON-ready builtins, every ``*_at``
    time (a Unix time in the API's models) as an ISO 8601 string like the text output's."""
    return _times(msgspec.to_builtins(data))


def _times(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: iso_time(v) if (k.endswith("_at") and isinstance(v, (int, float))
                                   and not isinstance(v, bool)) else _times(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_times(v) for v in value]
    return value


def setup_logging(out: Output) -> None:
    level = logging.DEBUG if out.verbose else (logging.ERROR if out.quiet else logging.WARNING)
    logging.basicConfig(level=logging.DEBUG if out.trace else level, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("artifacts").setLevel(level if not out.trace else logging.DEBUG)
    for name in ("botocore", "aiobotocore", "urllib3", "redis", "asyncio"):
        logging.getLogger(name).setLevel(max(logging.INFO, level))


def counted(n: int, word: str, plural: str = "") -> str:
    """``1 file``, ``2 files``, ``3 directories`` (``plural`` when adding an s is wrong)."""
    return f"{n} {word if n == 1 else plural or word + 's'}"


def human_bytes(n: float) -> str:
    """A byte count as people read it: ``512 B``, ``2.9 MiB`` (powers of 1024)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover - the loop returns
