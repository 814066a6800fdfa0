"""The Redis Functions library of the metadata engine: assembled, versioned, loaded.

The Lua sources live in ``lua/*.lua`` and are joined in name order into ONE library named
``artifacts`` (``00_common.lua`` first: its locals are visible to every later file). The version
stamped into the library is ``LIBRARY_VERSION`` plus a hash of the sources, so a changed source
is never mistaken for the loaded one.

A function library is global to a Redis deployment (DESIGN.md §10): the orchestrator loads it at
start/upgrade on every master of a Cluster; a client with full rights loads it itself when it is
missing or older. Session users may call functions but never ``FUNCTION LOAD``.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from importlib import resources

#: Bump when a function's contract changes incompatibly (clients refuse a newer library).
LIBRARY_VERSION = 1
LIBRARY_NAME = "artifacts"


@lru_cache(maxsize=1)
def sources() -> tuple[tuple[str, str], ...]:
    folder = resources.files("artifacts_core.meta") / "lua"
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".lua"))
    return tuple((name, (folder / name).read_text(encoding="utf-8")) for name in names)


@lru_cache(maxsize=1)
def version_string() -> str:
    digest = hashlib.sha256()
    for name, text in sources():
        digest.update(name.encode())
        digest.update(text.encode())
    return f"{LIBRARY_VERSION}:{digest.hexdigest()[:16]}"


@lru_cache(maxsize=1)
def library_code() -> str:
    parts = [f"#!lua name={LIBRARY_NAME}\n"]
    for name, text in sources():
        parts.append(f"\n-- ==== {name} ====\n")
        parts.append(text)
    return "".join(parts).replace("@LIB_VERSION@", version_string())


_VERSION_RE = re.compile(rb"local LIB_VERSION = '([0-9]+:[0-9a-f]+)'")


def loaded_version(client) -> tuple[int, str] | None:
    """The version of the library loaded on one Redis node (``FUNCTION LIST`` needs no key, so
    it works on every master of a Cluster), or None."""
    reply = client.execute_command("FUNCTION", "LIST", "LIBRARYNAME", LIBRARY_NAME, "WITHCODE")
    for lib in reply or []:
        if isinstance(lib, dict):
            fields = {(k.decode() if isinstance(k, bytes) else k): v for k, v in lib.items()}
        else:
            fields = {(k.decode() if isinstance(k, bytes) else k): v
                      for k, v in zip(lib[::2], lib[1::2], strict=False)}
        name = fields.get("library_name")
        if (name.decode() if isinstance(name, bytes) else name) != LIBRARY_NAME:
            continue
        code = fields.get("library_code") or b""
        m = _VERSION_RE.search(code if isinstance(code, bytes) else code.encode())
        return parse_version(m.group(1)) if m else (0, "")
    return None


def parse_version(text: str | bytes | None) -> tuple[int, str] | None:
    if text is None:
        return None
    if isinstance(text, bytes):
        text = text.decode()
    number, _, digest = text.partition(":")
    try:
        return int(number), digest
    except ValueError:
        return None
