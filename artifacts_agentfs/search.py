r"""glob and grep: finding files by name and by content, with bounded output and linear time.

Both walk the workspace themselves (``vol.scandir``, one readdir-plus round trip per 1024
entries), never following a symlink into a directory, and match patterns against the canonical
workspace-relative paths the walk produces -- a pattern never reaches Redis (names like ``*`` or
``[a-z]`` are plain names there) and cannot name anything above its search directory
(``paths.check_pattern`` refuses ``..`` segments and absolute patterns).

Matching is RE2 (the ``google-re2`` binding): time linear in pattern size times text length,
whatever the pattern, and the GIL released while it runs, so one agent's pattern cannot stall
the other calls of the process (the MCP server's included). Python's ``re`` backtracks:
``((a+))+$``, ``(a|a)+$``, ``(a?){25}a{25}`` and the glob ``*a*a*a*a*a*a*a*a*b`` ran for minutes
holding the GIL, and no syntactic filter caught them all.

glob syntax: ``*`` (any characters but ``/``), ``?``, ``[abc]`` / ``[!abc]``, and ``**`` (any
number of directories, including none), translated to an RE2 expression matched against the
whole path. Without ``**`` the walk stops at the pattern's depth.

grep: an RE2 regular expression (Python ``re`` syntax minus what needs backtracking: no
backreferences ``\1``/``(?P=name)``, no lookaround ``(?=``, ``(?!``, ``(?<=``, ``(?<!``, no
``\Z`` (use ``\z`` or ``$``), repetition counts at most 1000, compiled program within
``RE2_MAX_MEM``); such a pattern is refused with EINVAL naming what RE2 rejected. With
``fixed=True`` the pattern is a literal string. Only the first ``MATCH_LINE_CHARS`` characters of
a line are searched. Binary files (a NUL byte or invalid UTF-8) and files over
``max_grep_file_bytes`` are skipped and counted. Every bound that cuts a result sets
``truncated``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import re2

from artifacts_agentfs.base import AgentBase
from artifacts_agentfs.errors import invalid
from artifacts_agentfs.paths import RESERVED, AgentPath, agent_path, check_pattern
from artifacts_core.errors import ArtifactsError, NotADirectory
from artifacts_core.paths import join
from artifacts_core.types import ROOT_INO
from artifacts_core.vfs.pathapi import DirEntry

#: Characters of one line that grep searches: long enough for any source line; a minified 10 MB
#: line is searched in its first 4096 characters only, which keeps one line's cost small.
MATCH_LINE_CHARS = 4096
#: Memory RE2 may use to compile a pattern: RE2's own default (8 MiB), stated here because it
#: bounds the pattern size an agent can submit (``\w{1000}`` repeated past it is refused).
RE2_MAX_MEM = 8 << 20


def _options(*, ignore_case: bool = False, literal: bool = False) -> re2.Options:
    o = re2.Options()
    o.log_errors = False  # a refused pattern is the caller's error, not a line on our stderr
    o.max_mem = RE2_MAX_MEM
    o.case_sensitive = not ignore_case
    o.literal = literal
    o.dot_nl = True  # names may hold a newline; '**' at the end must cross it
    return o


def _compile(pattern: str, options: re2.Options, what: str):
    try:
        return re2.compile(pattern, options)
    except re2.error as e:
        msg = e.args[0].decode(errors="replace") if e.args and isinstance(e.args[0], bytes) else str(e)
        raise invalid(f"invalid {what} (RE2 syntax): {msg}", hint="no backreferences or lookaround; "
                      "repetition counts up to 1000; or pass fixed=true for a literal") from None


def _class_end(seg: str, i: int) -> int:
    """Index of the ']' closing the class opened at ``seg[i]``, or -1 (then '[' is literal)."""
    j = i + 1
    if seg[j:j + 1] == "!":
        j += 1
    if seg[j:j + 1] == "]":
        j += 1
    return seg.find("]", j)


def glob_regex(pattern: str):
    """The compiled RE2 expression of a glob pattern over '/'-separated relative paths; match it
    with ``fullmatch``."""
    out, segs = [], pattern.split("/")
    for k, seg in enumerate(segs):
        last = k == len(segs) - 1
        if seg == "**":
            out.append(".*" if last else "(?:[^/]+/)*")
            continue
        i, piece = 0, []
        while i < len(seg):
            c = seg[i]
            if c == "*":
                piece.append("[^/]*")
            elif c == "?":
                piece.append("[^/]")
            elif c == "[" and (close := _class_end(seg, i)) > 0:
                body = seg[i + 1:close]
                if body.startswith("!"):
                    body = "^" + body[1:]
                piece.append("[" + body.replace("\\", "\\\\").replace("[", "\\[") + "]")
                i = close
            else:
                piece.append(re2.escape(c))
            i += 1
        out.append("".join(piece) + ("" if last else "/"))
    return _compile("".join(out), _options(), "glob pattern")


class SearchOps(AgentBase):
    """``glob`` and ``grep`` (``AgentFS`` derives from this)."""

    def _walk(self, base: AgentPath, max_depth: int | None, budget: list[int]) -> Iterator[tuple[str, DirEntry]]:
        """(relative path, DirEntry) below ``base`` in sorted order, depth-first; ``budget[0]``
        counts down visited entries (0: stop, truncated)."""
        at_root = not base.parts or self._lookup(base)[0] == ROOT_INO  # also through a link to the root
        stack = [("", join(base.parts), 0)]
        while stack:
            rel, full, depth = stack.pop()
            try:
                entries = sorted(self.vol.scandir(full), key=lambda e: e.name, reverse=True)
            except ArtifactsError:
                continue
            if at_root and not rel:
                entries = [e for e in entries if e.name not in RESERVED]
            subdirs = []
            for e in reversed(entries):
                if budget[0] <= 0:
                    return
                budget[0] -= 1
                path = f"{rel}/{e.name}" if rel else e.name
                yield path, e
                if e.is_dir(follow_symlinks=False) and (max_depth is None or depth + 1 < max_depth):
                    subdirs.append((path, f"{full.rstrip('/')}/{e.name}", depth + 1))
            stack.extend(reversed(subdirs))

    def _base(self, path) -> AgentPath:
        ap = agent_path(path)
        _, attr = self._lookup(ap)
        if not attr.is_dir:
            raise NotADirectory("search path must be a directory", path=ap.display)
        return ap

    def glob(self, pattern: str, *, path="", limit: int | None = None, include_dirs: bool = True) -> dict:
        pattern = check_pattern(pattern)
        base = self._base(path)
        limit = self._limit(limit, self.limits.max_glob_results)
        rx = glob_regex(pattern)
        depth = None if "**" in pattern else pattern.count("/") + 1
        budget = [self.limits.max_walk_entries]
        matches: list[str] = []
        truncated = False
        for rel, e in self._walk(base, depth, budget):
            if not include_dirs and e.is_dir(follow_symlinks=False):
                continue
            if rx.fullmatch(rel):
                if len(matches) >= limit:
                    truncated = True
                    break
                matches.append("/".join((*base.parts, rel)))
        truncated = truncated or budget[0] <= 0
        return {"pattern": pattern, "path": base.display, "matches": sorted(matches), "truncated": truncated}

    def grep(self, pattern: str, *, path="", glob: str | None = None, fixed: bool = False,
             ignore_case: bool = False, limit: int | None = None) -> dict:
        if not isinstance(pattern, str) or not pattern:
            raise invalid("pattern must be a non-empty string")
        rx = _compile(pattern, _options(ignore_case=ignore_case, literal=fixed), "regular expression")
        limit = self._limit(limit, self.limits.max_grep_matches)
        name_rx = glob_regex(check_pattern(glob)) if glob else None
        ap = agent_path(path)
        _, attr = self._lookup(ap)
        files: Iterable[tuple[str, str | None]]
        if attr.is_file:
            files = [(ap.display, None)]
            budget = [1]
        else:
            budget = [self.limits.max_walk_entries]
            files = ((("/".join((*ap.parts, rel))), rel) for rel, e in self._walk(ap, None, budget)
                     if e.is_file(follow_symlinks=False))
        matches: list[dict[str, Any]] = []
        scanned, skipped, truncated = 0, 0, False
        cap = self.limits.max_line_chars
        for full, rel in files:
            if glob and name_rx is not None and rel is not None:
                target = rel if "/" in glob else rel.rsplit("/", 1)[-1]
                if not name_rx.fullmatch(target):
                    continue
            if scanned >= self.limits.max_grep_files:
                truncated = True
                break
            scanned += 1
            try:
                fino, fattr = self._lookup(agent_path(full))
                if fattr.length > self.limits.max_grep_file_bytes:
                    skipped += 1
                    continue
                _, data = self.vfs.read_snapshot(fino, 0, fattr.length)
                if b"\0" in data:
                    raise UnicodeDecodeError("utf-8", b"", 0, 1, "NUL")
                text = data.decode("utf-8")
            except (ArtifactsError, UnicodeDecodeError):
                skipped += 1
                continue
            for no, line in enumerate(text.splitlines(), 1):
                if rx.search(line[:MATCH_LINE_CHARS]):
                    if len(matches) >= limit:
                        truncated = True
                        break
                    matches.append({"path": full, "line": no, "text": line[:cap],
                                    "cut": len(line) > cap})
            if truncated:
                break
        truncated = truncated or budget[0] <= 0
        return {"pattern": pattern, "path": ap.display, "matches": matches, "files_scanned": scanned,
                "files_skipped": skipped, "truncated": truncated}

    @staticmethod
    def _limit(limit, cap: int) -> int:
        if limit is None:
            return cap
        if not isinstance(limit, int) or not 1 <= limit <= cap:
            raise invalid(f"limit must be 1..{cap}")
        return limit
