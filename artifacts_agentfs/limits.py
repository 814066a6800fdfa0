"""Bounds of the agent API and the small value helpers every operation shares.

Every size an agent can make the API handle is bounded, so one tool call can neither exhaust
memory nor flood a model's context. ``Limits`` holds the defaults (docs/agentfs.md lists them);
an ``AgentFS`` takes its own instance. Results carry ``truncated: true`` where a bound cut them.

Version tokens: ``"<ino>-<gen>"`` -- the inode and its change counter (``Attr.gen``, bumped by
every change of data or attributes, by any frontend on any host). Cheap (no hashing of content)
and exact: equal tokens mean no change since, different tokens mean some change.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
from dataclasses import dataclass

from artifacts_agentfs.errors import invalid
from artifacts_core.types import CHUNK_SIZE, TYPE_DIR, TYPE_FILE, TYPE_SYMLINK, Attr


@dataclass(frozen=True)
class Limits:
    #: Bytes one readFile returns at most: 1 MiB is ~250k tokens of text, already more than a
    #: model's context; larger files are read in ranges (offset/length or lines).
    max_read_bytes: int = 1 << 20
    #: Bytes one writeFile/appendFile/editFile takes at most. 32 MiB: far above what an agent
    #: writes in one call, and under one 64 MiB chunk (the unit writeFile replaces atomically).
    max_write_bytes: int = 32 << 20
    #: Bytes a line-range read or an edit scans: the same bound as a write (an edit rewrites it).
    max_scan_bytes: int = 32 << 20
    #: Entries one readdir page returns at most (the default page size too).
    max_entries: int = 1000
    #: Entries a directory may have for readdir to sort it; past it the listing is refused with
    #: a hint to use glob (sorting needs every name in memory).
    max_dir_entries: int = 100_000
    #: glob results at most, and entries visited at most while walking.
    max_glob_results: int = 1000
    max_walk_entries: int = 100_000
    #: grep: matching lines returned, files scanned, bytes per file scanned, characters per
    #: returned line (longer lines are cut and flagged).
    max_grep_matches: int = 200
    max_grep_files: int = 10_000
    max_grep_file_bytes: int = 4 << 20
    max_line_chars: int = 500

    def __post_init__(self) -> None:
        if not 0 < self.max_write_bytes <= CHUNK_SIZE:
            raise ValueError("max_write_bytes must be within one chunk (64 MiB)")


DEFAULT_LIMITS = Limits()

TYPE_NAMES = {TYPE_FILE: "file", TYPE_DIR: "directory", TYPE_SYMLINK: "symlink"}


def type_name(attr_or_type: Attr | int) -> str:
    t = attr_or_type.type if isinstance(attr_or_type, Attr) else attr_or_type
    return TYPE_NAMES.get(t, "other")


def iso(ns: int) -> str:
    """UTC ISO 8601 with milliseconds: ``2026-11-21T06:07:12.345Z``."""
    t = _dt.datetime.fromtimestamp(ns / 1e9, tz=_dt.UTC)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def version_of(ino: int, attr: Attr) -> str:
    return f"{int(ino)}-{attr.gen}"


def parse_version(token: str | None) -> tuple[int, int] | None:
    if token is None:
        return None
    try:
        ino, gen = str(token).split("-")
        return int(ino), int(gen)
    except ValueError:
        raise invalid("malformed version token", hint="pass the 'version' string returned by "
                      "readFile or stat unchanged") from None


def encode_content(data: bytes, encoding: str) -> str | bytes:
    if encoding == "bytes":  # Python callers only: no JSON in the way
        return data
    if encoding == "base64":
        return base64.b64encode(data).decode("ascii")
    return data.decode("utf-8")


def decode_content(content, encoding: str) -> bytes:
    """The bytes an agent sends: text as UTF-8, or base64; Python callers may pass bytes."""
    if isinstance(content, (bytes, bytearray, memoryview)):
        return bytes(content)
    if not isinstance(content, str):
        raise invalid("content must be a string")
    if check_encoding(encoding) == "utf-8":
        try:
            return content.encode("utf-8")
        except UnicodeEncodeError:
            raise invalid("content is not valid Unicode text (lone surrogate)") from None
    else:
        try:
            return base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError):
            raise invalid("content is not valid base64") from None


def check_encoding(encoding: str) -> str:
    """``utf-8`` (text), ``base64`` (binary in JSON), or ``bytes`` (binary for Python callers)."""
    if encoding in ("utf-8", "utf8", "text"):
        return "utf-8"
    if encoding in ("base64", "bytes"):
        return encoding
    raise invalid(f"unknown encoding {encoding!r}", hint="use encoding 'utf-8' or 'base64'")

