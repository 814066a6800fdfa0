"""``AgentFS``: a workspace's files as the operations agents expect (readFile, writeFile, ...).

``AgentFS(vol)`` wraps an open ``Volume``. Each method is the snake_case twin of one tool
(``read_file`` = readFile) and returns the JSON-ready result the tool returns (``exists`` returns
a bool); failures raise the exceptions of ``artifacts_core.errors`` / ``errors.py``, which the
tool layer turns into ``{code, message, path, hint}``.

How each operation maps onto the core, and what it costs in Redis round trips (directories on
the way are resolved through the entry cache of the core's resolver, ``vfs.resolver``):

| operation | core | round trips |
|---|---|---|
| readFile | ``vfs.read_named``: name, attr, records and inline bytes in one call | 1 |
| writeFile | ``vfs.replace_content``: create-or-overwrite by name, same inode | 1 (+ S3 PUTs over the inline limit) |
| appendFile | ``vfs.append``: name, creation, version check and one append slice placed by Redis | 1 |
| stat / exists | lookup | 1 |
| deleteFile / moveFile / mkdir | one namespace call each (trash per the volume) | 1-2 |
| copyFile | ``vfs.clone`` (metadata only, blocks shared; + a rename with overwrite) | 1-2 |
| checkpoint / restore / diff | ``vol.checkpoints`` (docs/history.md) | 1 / 1 / a few |
| readdir | readdir-plus pages, sorted by name, paged by a name cursor | 1 per 1024 entries |
| changes | the journal from a cursor (``changes.py``), paths and actors resolved | 2-3 per 1000 events |

Overwrite rules: writeFile overwrites (unless ``if_version`` says otherwise); copyFile and
moveFile refuse an existing destination (EEXIST) unless ``overwrite=True``, checked atomically
by renameat2's RENAME_NOREPLACE; nothing ever replaces a directory. A symlink is followed only
while it stays inside the workspace; deleteFile and moveFile act on the link itself.

Preconditions: ``if_version`` (a token from readFile/stat/writeFile/...) is checked inside the
function that writes for writeFile, editFile and appendFile (atomic); for deleteFile and moveFile
it is checked by a lookup just before the operation (a window of one round trip, documented).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from artifacts_agentfs import changes, edit, namespace, search, shell
from artifacts_agentfs.errors import TooLargeError, invalid
from artifacts_agentfs.history import HistoryOps
from artifacts_agentfs.limits import (
    DEFAULT_LIMITS,
    Limits,
    check_encoding,
    decode_content,
    encode_content,
    iso,
    parse_version,
    type_name,
    version_of,
)
from artifacts_agentfs.paths import AgentPath, agent_path
from artifacts_core.errors import ABSENT, IsADirectory, NotADirectory, NotFound
from artifacts_core.types import ROOT_INO, Attr, Ino
from artifacts_core.vfs import internal
from artifacts_core.volume import Volume


class AgentFS(namespace.NamespaceOps, search.SearchOps, edit.EditOps, HistoryOps):
    """The agent file-operation API over one open volume (thread-safe, like the VFS). Its state
    and path resolution are ``base.AgentBase``'s, which every concern derives from."""

    def __init__(self, vol: Volume, *, limits: Limits = DEFAULT_LIMITS,
                 executor: shell.Executor | None = None) -> None:
        super().__init__(vol, limits=limits)
        #: Runs the ``bash`` tool (an ``artifacts_fuse.exec.Executor``); None: code execution is off.
        self.executor = executor

    def bash(self, command: str, *, stdin: str | None = None, timeout: int | None = None,
             max_output: int | None = None, mode: str | None = None) -> dict:
        """The ``bash`` tool (``shell.py``): EPERM unless the host gave an executor."""
        return shell.run_bash(self.executor, command, stdin=stdin, timeout=timeout, max_output=max_output,
                              mode=mode)

    def call(self, name: str, arguments=None, *, call_id: str | None = None) -> dict:
        """Run a tool call by its agent-facing name (``tools.call``): never raises. ``call_id``:
        the framework's tool-call id, which the journal events of the call carry as their tag."""
        from artifacts_agentfs import tools

        return tools.call(self, name, arguments, call_id=call_id)

    @contextlib.contextmanager
    def tagged(self, tag: str) -> Iterator[None]:
        """Journal events of the operations inside, on this thread, carry ``tag`` (a per-call tag:
        concurrent calls on other threads keep their own)."""
        with self.vol.call_tag(tag):
            yield

    def changes(self, *, cursor: str | None = None, path: str | None = None, wait: int | None = None,
                limit: int | None = None) -> dict:
        """The ``changes`` tool: the workspace's journal from a cursor (``changes.py``)."""
        return changes.changes(self.vol, cursor=cursor, path=path, wait=wait, limit=limit)

    # -- reading -------------------------------------------------------------------------------

    def read_file(self, path, *, offset: int | None = None, length: int | None = None,
                  start_line: int | None = None, end_line: int | None = None,
                  encoding: str = "utf-8") -> dict:
        """Contents (text by default), a byte range, or a line range (1-based, inclusive).
        ``encoding``: "utf-8", "base64", or "bytes" (Python callers: ``content`` is bytes)."""
        ap = agent_path(path)
        encoding = check_encoding(encoding)
        lines = start_line is not None or end_line is not None
        if lines and (offset is not None or length is not None):
            raise invalid("give a byte range or a line range, not both", ap.display)
        for name, v in (("offset", offset), ("length", length), ("start_line", start_line),
                        ("end_line", end_line)):
            if v is not None and (not isinstance(v, int) or v < (1 if "line" in name else 0)):
                raise invalid(f"{name} must be an integer >= {1 if 'line' in name else 0}", ap.display)
        cap = self.limits.max_read_bytes
        if lines:
            return self._read_lines(ap, start_line or 1, end_line, encoding)
        start = offset or 0
        ino, attr, data = self._read(ap, start, cap if length is None else min(length, cap))
        end = attr.length if length is None else min(attr.length, start + length)
        truncated = start + len(data) < end
        content: str | bytes
        if encoding == "utf-8":
            content = self._text(data, ap, cut=truncated)
            nbytes = len(content.encode())
        else:
            content, nbytes = encode_content(data, encoding), len(data)
        return {"path": ap.display, "content": content, "encoding": encoding, "size": attr.length,
                "offset": start, "length": nbytes, "truncated": truncated, "version": version_of(ino, attr)}

    def _read(self, ap: AgentPath, offset: int, size: int) -> tuple[Ino, Attr, bytes]:
        """(ino, attr, bytes) of a file: one call (name, attr, records and inline bytes at one
        instant) when the range is within one chunk; the bounds come from that attr."""
        if ap.is_root:
            raise IsADirectory("readFile needs a file; this is the workspace root", path="/")
        def op(parent: Ino, name: str, _may_create: bool) -> tuple[Ino, Attr, bytes]:
            return self.vfs.read_named(parent, name, offset, size)

        ino, attr, data = self._named(ap, op, create_parents=False, create=False)
        if ap.dir_only and not attr.is_dir:
            raise NotADirectory("not a directory (the path ends with '/')", path=ap.display)
        if attr.is_dir:
            raise IsADirectory("readFile needs a file; this is a directory", path=ap.display)
        if not attr.is_file:
            raise invalid("readFile needs a regular file", path=ap.display)
        return ino, attr, data

    def _read_lines(self, ap: AgentPath, first: int, last: int | None, encoding: str) -> dict:
        ino, attr, data = self._read(ap, 0, self.limits.max_scan_bytes)
        scanned_all = len(data) >= attr.length
        text = self._text(data, ap, cut=not scanned_all)
        rows = text.splitlines(keepends=True)
        if last is not None and last < first:
            raise invalid("end_line is before start_line", ap.display)
        chosen = rows[first - 1:last]
        out, size, truncated = [], 0, False
        for row in chosen:
            n = len(row.encode())
            if size + n > self.limits.max_read_bytes:
                truncated = True
                break
            out.append(row)
            size += n
        body = "".join(out).encode()
        return {"path": ap.display, "content": encode_content(body, encoding), "encoding": encoding,
                "size": attr.length, "start_line": first, "end_line": first + len(out) - 1,
                "total_lines": len(rows) if scanned_all else None, "length": len(body),
                "truncated": truncated or (not scanned_all and (last is None or last > len(rows))),
                "version": version_of(ino, attr)}

    def stat(self, path) -> dict:
        ap = agent_path(path)
        ino, attr = self._lookup(ap)
        return {"path": ap.display, "type": type_name(attr), "size": attr.length if attr.is_file else 0,
                "createdAt": iso(attr.btime_ns), "modifiedAt": iso(attr.mtime_ns),
                "version": version_of(ino, attr)}

    def exists(self, path) -> bool:
        """True or False; never an error for a missing path (an invalid path still raises)."""
        ap = agent_path(path)
        try:
            self._lookup(ap)
            return True
        except (NotFound, NotADirectory):
            return False

    def readdir(self, path="", *, cursor: str | None = None, limit: int | None = None) -> dict:
        """Entries sorted by name, ``limit`` per page; pass ``next_cursor`` back for the next."""
        ap = agent_path(path)
        limit = self.limits.max_entries if limit is None else limit
        if not isinstance(limit, int) or not 1 <= limit <= self.limits.max_entries:
            raise invalid(f"limit must be 1..{self.limits.max_entries}", ap.display)
        ino, attr = self._lookup(ap)
        if not attr.is_dir:
            raise NotADirectory("readdir needs a directory", path=ap.display)
        entries = self._entries(ino, ap)
        names = sorted(entries)
        if cursor:
            import bisect

            names = names[bisect.bisect_right(names, cursor):]
        page = names[:limit]
        out = []
        for name in page:
            a = entries[name]
            out.append({"name": name, "type": type_name(a), "size": a.length if a.is_file else 0,
                        "modifiedAt": iso(a.mtime_ns)})
        more = len(names) > limit
        return {"path": ap.display, "entries": out, "next_cursor": page[-1] if more else None,
                "truncated": more}

    def _entries(self, ino: Ino, ap: AgentPath) -> dict[str, Attr]:
        entries: dict[str, Attr] = {}
        pos = 0
        while True:
            page, pos = self.vfs.readdir(ino, pos, 1024, plus=True)
            for name, _, a in page:
                if ino == ROOT_INO and (name in internal.BY_NAME or name == internal.TRASH_NAME):
                    continue
                entries[name] = a
            if len(entries) > self.limits.max_dir_entries:
                raise TooLargeError(f"more than {self.limits.max_dir_entries} entries",
                                    path=ap.display, hint="use glob with a pattern to narrow the listing")
            if not pos:
                return entries

    # -- writing -------------------------------------------------------------------------------

    def write_file(self, path, content, *, encoding: str = "utf-8", if_version: str | None = None,
                   create_parents: bool = True) -> dict:
        """Create or overwrite atomically, keeping the inode. ``if_version``: a token (the file
        must be unchanged) or ``"absent"`` (the file must not exist)."""
        ap = agent_path(path)
        self._not_root(ap, "writeFile")
        data = decode_content(content, encoding)
        self._bound_write(data, ap.display)
        expect = ABSENT if if_version == "absent" else parse_version(if_version)
        return self._replace(ap, data, expect=expect, create_parents=create_parents)

    def append_file(self, path, content, *, encoding: str = "utf-8", if_version: str | None = None,
                    create: bool = True) -> dict:
        """Append to the end; the data lands whole even with concurrent appenders anywhere.
        A missing file is created (with its parents) unless ``create=False``. One call: name
        resolution, creation, the ``if_version`` check and the commit happen together."""
        ap = agent_path(path)
        self._not_root(ap, "appendFile")
        data = decode_content(content, encoding)
        self._bound_write(data, ap.display)
        expect = parse_version(if_version)
        if not data:  # nothing to append: report the file as it is
            ino, attr = self._file(ap, "appendFile")
            self._check_version(ap, if_version)
            return {"path": ap.display, "offset": attr.length, "size": attr.length,
                    "version": version_of(ino, attr)}

        def op(parent: Ino, name: str, may_create: bool) -> dict:
            ino, attr, offset, _ = self.vfs.append(parent, name, data, create=may_create, expect=expect,
                                                   perm=self._file_mode())
            return {"path": ap.display, "offset": offset, "size": attr.length,
                    "version": version_of(ino, attr)}

        return self._named(ap, op, create=create)
