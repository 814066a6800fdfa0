"""editFile: replace an exact piece of text in a file, unique by default, with a diff.

The contract is the one models are trained on (Anthropic's ``str_replace``), made safe:

- ``old_text`` must occur exactly once, or ``replace_all=True`` replaces every occurrence;
  zero matches raise ENOMATCH with the closest line as a hint, several raise EAMBIGUOUS naming
  the lines they start on;
- replacement is literal (no regex, no ``$1`` expansion);
- a file with CRLF line endings is matched on its LF view when ``old_text`` has no ``\\r``, and
  written back with CRLF, so a model that never saw the ``\\r`` still edits it;
- ``dry_run=True`` changes nothing and returns the unified diff the edit would make;
- the write is a compare-and-swap on the version the edit read (``replace_content`` with the
  read's (ino, gen)): a concurrent change in between is never overwritten -- the edit fails with
  ECONFLICT and the agent reads again. ``if_version`` additionally pins the version the agent saw.

Bounds: the file at most ``Limits.max_scan_bytes``; the diff at most ``max_read_bytes`` (cut,
with ``diff_truncated``).
"""

from __future__ import annotations

import difflib

from artifacts_agentfs.base import AgentBase
from artifacts_agentfs.errors import AmbiguousMatchError, NoMatchError, TooLargeError, conflict, invalid
from artifacts_agentfs.limits import parse_version, version_of
from artifacts_agentfs.paths import agent_path

#: Lines of context around each change in the diff (unified diff's customary 3).
DIFF_CONTEXT = 3
#: Match lines named in an EAMBIGUOUS error: enough to locate them, few enough for one line.
MAX_NAMED_LINES = 10


def _line_of(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


class EditOps(AgentBase):
    """``edit_file`` (``AgentFS`` derives from this)."""

    def edit_file(self, path, old_text: str, new_text: str, *, replace_all: bool = False,
                  dry_run: bool = False, if_version: str | None = None) -> dict:
        ap = agent_path(path)
        if not isinstance(old_text, str) or not isinstance(new_text, str):
            raise invalid("old_text and new_text must be strings", ap.display)
        if old_text == "":
            raise invalid("old_text must not be empty", ap.display,
                          hint="to create or replace a whole file use writeFile")
        ino, attr = self._file(ap, "editFile")
        if attr.length > self.limits.max_scan_bytes:
            raise TooLargeError(f"file larger than the {self.limits.max_scan_bytes}-byte edit limit",
                                path=ap.display, hint="rewrite it with writeFile in a program")
        attr, data = self.vfs.read_snapshot(ino, 0, attr.length)
        want = parse_version(if_version)
        if want is not None and want != (ino, attr.gen):
            raise conflict(ap.display, version_of(ino, attr))
        text = self._text(data, ap, cut=False)
        crlf = "\r\n" in text and "\r" not in old_text and text.count("\r\n") == text.count("\n")
        view = text.replace("\r\n", "\n") if crlf else text
        count = view.count(old_text)
        if count == 0:
            raise NoMatchError("old_text was not found", path=ap.display, hint=self._nearest(view, old_text))
        if count > 1 and not replace_all:
            starts: list[int] = []
            pos = view.find(old_text)
            while pos >= 0 and len(starts) < MAX_NAMED_LINES:
                starts.append(_line_of(view, pos))
                pos = view.find(old_text, pos + len(old_text))
            raise AmbiguousMatchError(
                f"old_text matches {count} times (lines {', '.join(map(str, starts))})", path=ap.display,
                hint="add surrounding lines to old_text so it matches once, or pass replace_all=true")
        new_view = view.replace(old_text, new_text) if replace_all else view.replace(old_text, new_text, 1)
        new = new_view.replace("\n", "\r\n") if crlf else new_view
        diff = "".join(difflib.unified_diff(view.splitlines(keepends=True),
                                            new_view.splitlines(keepends=True),
                                            fromfile=f"a/{ap.display}", tofile=f"b/{ap.display}",
                                            n=DIFF_CONTEXT))
        cap = self.limits.max_read_bytes
        cut = len(diff.encode()) > cap
        if cut:
            diff = diff.encode()[:cap].decode("utf-8", "ignore")
        result = {"path": ap.display, "replacements": count if replace_all else 1, "diff": diff,
                  "diff_truncated": cut, "applied": False, "version": version_of(ino, attr)}
        if dry_run:
            return result
        data = new.encode("utf-8")
        self._bound_write(data, ap.display)
        written = self._replace(ap, data, expect=(ino, attr.gen), create_parents=False)
        result.update(applied=True, version=written["version"])
        return result

    @staticmethod
    def _nearest(view: str, old_text: str) -> str:
        first = old_text.strip().splitlines()[0] if old_text.strip() else old_text
        lines = view.splitlines()
        close = difflib.get_close_matches(first.strip(), [ln.strip() for ln in lines], n=1, cutoff=0.6)
        if close:
            idx = [ln.strip() for ln in lines].index(close[0]) + 1
            return (f"closest line is {idx}: {close[0][:120]!r}; read the file again and copy the "
                    "exact text, including whitespace")
        return "read the file again and copy the exact text, including whitespace"
