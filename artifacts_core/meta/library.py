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
from typing import Any

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


def _fields(entry: Any) -> dict[str, Any]:
    """One map of a ``FUNCTION LIST`` reply (a dict in RESP3, a flat list in RESP2), str keys."""
    if isinstance(entry, dict):
        pairs = list(entry.items())
    else:
        pairs = list(zip(entry[::2], entry[1::2], strict=False))
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in pairs}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def functions(client: Any) -> dict[str, bool]:
    """Every function of the library as loaded on one Redis node, name -> whether it is
    read-only (its ``no-writes`` flag), as Redis itself reports them: the contract tests
    enumerate these, so a new function cannot be missed however it is registered."""
    out: dict[str, bool] = {}
    for lib in client.execute_command("FUNCTION", "LIST", "LIBRARYNAME", LIBRARY_NAME) or []:
        fields = _fields(lib)
        if _text(fields.get("library_name")) != LIBRARY_NAME:
            continue
        for fn in fields.get("functions") or []:
            f = _fields(fn)
            out[_text(f["name"])] = "no-writes" in {_text(flag) for flag in f.get("flags") or []}
    return out


def loaded_version(client) -> tuple[int, str] | None:
    """The version of the library loaded on one Redis node (``FUNCTION LIST`` needs no key, so
    it works on every master of a Cluster), or None."""
    reply = client.execute_command("FUNCTION", "LIST", "LIBRARYNAME", LIBRARY_NAME, "WITHCODE")
    for lib in reply or []:
        fields = _fields(lib)
        if _text(fields.get("library_name")) != LIBRARY_NAME:
            continue
        code: bytes | str = fields.get("library_code") or b""
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
