"""The block-cache directories of a host: how they are named, marked, listed and removed.

Owns the layout under the cache base (``$XDG_CACHE_HOME/tonbo/artifacts``, or a profile's
``cache_dir``): one directory per volume, named ``<volume name>-<volume uuid>`` so a person can
tell which workspace it belongs to (volume names are ``<handle>-<workspace>-<id>``) while the
uuid keeps two volumes of one name apart -- two volumes sharing a directory would serve each
other's v1 blocks, which carry no identity. Each holds a ``workspace.json`` marker (volume name,
uuid, secret-free storage URL) that ``artifacts cache show`` reads; a directory of the older
``<uuid>`` layout is renamed into place when its volume next opens.

Nothing here touches a directory's contents beyond sizing and removal: ``DiskCache`` owns them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from artifacts_core.chunk.keys import CHUNKS_PREFIX, parse_cache_key

MARKER = "workspace.json"
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def cache_base(configured: str = "") -> Path:
    """The configured base, else ``$XDG_CACHE_HOME/tonbo/artifacts`` (``~/.cache`` when unset)."""
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tonbo" / "artifacts"


def volume_cache_dir(base: str | os.PathLike[str], name: str, uuid: str) -> Path:
    """``<base>/<volume name>-<uuid>`` (characters unsafe in a file name become ``_``)."""
    label = _UNSAFE.sub("_", name)[:80]
    return Path(base) / (f"{label}-{uuid}" if label else uuid)


def prepare(base: str | os.PathLike[str], name: str, uuid: str, storage: str = "") -> Path:
    """The volume's cache directory, made (0700) and marked; an old ``<base>/<uuid>`` one moves
    there. Errors are left to ``DiskCache``, which disables itself on an unusable directory."""
    path = volume_cache_dir(base, name, uuid)
    old = Path(base) / uuid
    with contextlib.suppress(OSError):
        if old != path and old.is_dir() and not path.exists():
            os.rename(old, path)
    with contextlib.suppress(OSError):
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path, 0o700)  # cached blocks are user data (a moved directory keeps its mode)
        marker = path / MARKER
        if not marker.exists():
            _write_marker(marker, {"volume": name, "uuid": uuid, "storage": storage, "created": time.time()})
    return path


def _write_marker(path: Path, data: dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".marker-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@dataclass(frozen=True)
class CacheDir:
    """What one volume's cache directory holds (sizes on disk, in bytes)."""

    path: Path
    volume: str  # "" for a directory from before markers
    uuid: str
    storage: str
    blocks: int
    segments: int
    bytes: int
    last_used: float  # newest file access or change, seconds since the epoch; 0 when empty


def read_dir(path: Path) -> CacheDir | None:
    """Describe ``path`` if it is a volume cache directory (marked, or named by a bare uuid)."""
    marker: dict = {}
    with contextlib.suppress(OSError, ValueError):
        marker = json.loads((path / MARKER).read_text(encoding="utf-8"))
    if not marker and not _UUID.fullmatch(path.name):
        return None
    blocks = segments = size = 0
    last = 0.0
    for dirpath, _dirs, files in os.walk(path / CHUNKS_PREFIX):
        for name in files:
            full = os.path.join(dirpath, name)
            parsed = parse_cache_key(os.path.relpath(full, path).replace(os.sep, "/"))
            if parsed is None:
                continue
            with contextlib.suppress(OSError):
                st = os.stat(full)
                size += st.st_size
                last = max(last, st.st_atime, st.st_mtime)
                if parsed[1] is None:
                    blocks += 1
                else:
                    segments += 1
    return CacheDir(path, str(marker.get("volume", "")), str(marker.get("uuid", path.name)),
                    str(marker.get("storage", "")), blocks, segments, size, last)


def list_dirs(base: str | os.PathLike[str]) -> list[CacheDir]:
    """Every volume cache directory under ``base``, by path."""
    try:
        entries = sorted(p for p in Path(base).iterdir() if p.is_dir() and not p.is_symlink())
    except OSError:
        return []
    return [d for d in map(read_dir, entries) if d is not None]


def remove_dir(path: Path) -> None:
    """Delete a cache directory (a mount using it refills it from the object store)."""
    shutil.rmtree(path, ignore_errors=True)
