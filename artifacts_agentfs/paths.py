"""The agent API's path rules: the shared canonicaliser plus stricter rules on top (DESIGN.md §10).

An agent names files relative to the workspace root: ``notes/a.md`` and ``/notes/a.md`` are the
same file (a leading ``/`` is the workspace root, never the host's). ``agent_path`` checks a path
once, in this order, and returns its canonical parts:

1. type and size: a ``str`` (or ``os.PathLike``; ``bytes`` must be UTF-8) of at most
   ``MAX_PATH_BYTES`` (1024) bytes -- checked before anything else, so a megabyte of path costs
   nothing; no lone surrogates (invalid UTF-8 smuggled through ``surrogateescape``);
2. characters refused with EINVAL: NUL, every C0/C1 control character and DEL (a newline or an
   escape sequence in a name spoofs logs and terminals);
3. forms refused with EACCES (sandbox): backslashes (never translated), Windows drive prefixes
   (``C:``), percent-encoded dots, slashes and backslashes and double encodings (``%2e``, ``%2f``,
   ``%5c``, ``%25xx``, overlong ``%c0%ae``; the VFS never decodes, so these would be odd literal
   names that other tools decode), Unicode look-alikes of ``.``, ``/`` and ``\\`` (any character
   whose NFKC form contains one, plus the division and fraction slashes), bidi controls and
   zero-width characters;
4. normalisation to NFC, so ``café`` typed either way is one name;
5. the shared canonicaliser in strict mode: ``.`` dropped, ``..`` resolved lexically and refused
   (EACCES) when it would climb above the root; names <= 255 bytes; depth <= ``MAX_DEPTH``;
6. the workspace's internal names at the root (``.stats``, ``.config``, ``.accesslog``,
   ``.trash``) are refused (EACCES): they are the operator's, not the agent's.

Names an operation *creates* pass the portability rules too (``check_new_name``): no ``:`` (NTFS
streams, drive letters), no Windows device names (``CON``, ``nul.txt``, ``COM1.log``), no trailing
space, no trailing dot unless the name is all dots (``...`` is a fine name). Existing names are
never refused by these rules, so files made through other frontends stay readable.

Symlinks are resolved by the core's resolver (``artifacts_core.vfs.resolve``) under
``AGENT_LINKS``: a link is followed only while its target stays inside the workspace (an absolute
target, or one climbing above the root: EACCES), and never into the reserved root names of rule 6
(EACCES), so a link cannot reach what the path itself may not name. Every resolution walks inode
by inode from the root, so a directory swapped for a link between two calls cannot lead outside:
there is no outside to reach.
"""

from __future__ import annotations

import os
import re
import unicodedata
from typing import NamedTuple

from artifacts_agentfs.errors import SandboxError
from artifacts_core.errors import InvalidArgument, NameTooLong
from artifacts_core.paths import canonicalize, join
from artifacts_core.vfs.resolve import SymlinkPolicy

#: Bytes per path. The survey's rule: well under PATH_MAX (4096) so a path stays usable as an S3
#: key or in any tool's buffer; longer paths are a bug or an attack in an agent's call.
MAX_PATH_BYTES = 1024
#: Components per path: deeper than any real project tree; bounds the resolver's lookups.
MAX_DEPTH = 256
#: Root names that belong to the VFS (internal files and the trash).
RESERVED = frozenset({".stats", ".config", ".accesslog", ".trash"})
#: The agent API's symlink policy: inside the workspace only, never into the reserved names.
AGENT_LINKS = SymlinkPolicy(reserved=RESERVED)

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_ENCODED = re.compile(r"%(2e|2f|5c|25[0-9a-f]{2}|c0|c1|e0%80)", re.I)
_DRIVE = re.compile(r"^[A-Za-z]:")
#: Characters that look like path syntax or hide text: division slash, fraction slash, set
#: minus, big solidus, bidi embeddings/overrides/isolates and marks, zero-width characters, BOM.
_INVISIBLE = set("\u2215\u2044\u2216\u29f8\u29f9\u200b\u200c\u200d\u200e\u200f\u2060\ufeff"
                 "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_DEVICES = re.compile(r"^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$", re.I)


class AgentPath(NamedTuple):
    parts: tuple[str, ...]
    dir_only: bool  # written with a trailing slash: must name a directory

    @property
    def display(self) -> str:
        return "/".join(self.parts) if self.parts else "/"

    @property
    def is_root(self) -> bool:
        return not self.parts

    def child(self, name: str) -> AgentPath:
        return AgentPath((*self.parts, name), False)


def _sandbox(message: str, path: str) -> SandboxError:
    return SandboxError(message, path=path[:200])


def _check_chars(path: str) -> None:
    if _CONTROL.search(path):
        raise InvalidArgument("path contains a NUL or control character",
                              path=path[:200].encode("unicode_escape").decode(),
                              hint="remove control characters (newlines, tabs, escapes) from the path")
    if "\\" in path:
        raise _sandbox("backslashes are not path separators here", path)
    if _ENCODED.search(path):
        raise _sandbox("percent-encoded path syntax is refused (paths are never URL-decoded)", path)
    for ch in path:
        if ch < "\x80":
            continue
        if ch in _INVISIBLE or unicodedata.category(ch) == "Cf":
            raise _sandbox(f"invisible or direction-changing character U+{ord(ch):04X} in path", path)
        folded = unicodedata.normalize("NFKC", ch)
        if folded != ch and any(c in folded for c in "./\\"):
            raise _sandbox(f"look-alike of path syntax U+{ord(ch):04X} in path", path)


def agent_path(path, *, what: str = "path") -> AgentPath:
    """The canonical parts of an agent's path (see the module note), or the error."""
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    if isinstance(path, bytes):
        try:
            path = path.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidArgument(f"{what} is not valid UTF-8") from None
    if not isinstance(path, str):
        raise InvalidArgument(f"{what} must be a string, not {type(path).__name__}")
    if len(path) > MAX_PATH_BYTES or len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise NameTooLong(f"{what} longer than {MAX_PATH_BYTES} bytes", path=path[:64] + "...")
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument(f"{what} is not valid UTF-8 (lone surrogate)") from None
    _check_chars(path)
    if _DRIVE.match(path):
        raise _sandbox("a drive letter is not a workspace path", path)
    path = unicodedata.normalize("NFC", path)
    dir_only = path.endswith("/") and path.strip("/") != ""
    parts = canonicalize(path, strict=True)
    if len(parts) > MAX_DEPTH:
        raise NameTooLong(f"{what} deeper than {MAX_DEPTH} components", path=path[:64] + "...")
    if parts and parts[0] in RESERVED:
        raise _sandbox(f"{parts[0]} is reserved by the workspace", join(parts))
    return AgentPath(parts, dir_only)


def check_new_name(name: str, path: str) -> None:
    """Portability rules for a name an operation creates (module note)."""
    if ":" in name:
        raise InvalidArgument("':' is not allowed in new names", path=path,
                              hint="use '-' or '_' instead of ':' in file names")
    if _DEVICES.match(name):
        raise InvalidArgument("reserved device name", path=path,
                              hint="CON, PRN, AUX, NUL, COM1-9 and LPT1-9 are not portable names")
    if name.endswith(" ") or (name.endswith(".") and name.strip(".") != ""):
        raise InvalidArgument("a new name may not end with a space or a dot", path=path,
                              hint="remove the trailing space or dot")


_GLOB_UP = re.compile(r"(^|[/{,])\.\.($|[/},])")


def check_pattern(pattern: str) -> str:
    """A glob pattern: relative, no ``..`` segment (also inside braces), same characters as paths.
    Returns it without a leading ``./``."""
    if not isinstance(pattern, str) or not pattern:
        raise InvalidArgument("pattern must be a non-empty string")
    if len(pattern.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise NameTooLong(f"pattern longer than {MAX_PATH_BYTES} bytes")
    if pattern.startswith("/"):
        raise _sandbox("glob patterns are relative to the search directory", pattern)
    if _GLOB_UP.search(pattern):
        raise _sandbox("'..' is not allowed in glob patterns", pattern)
    _check_chars(pattern)
    while pattern.startswith("./"):
        pattern = pattern[2:]
    return unicodedata.normalize("NFC", pattern)
