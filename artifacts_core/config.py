"""Client configuration: the knobs of one open volume, and the three cache profiles.

``VolumeConfig`` is a msgspec Struct parsed once when a volume opens; every knob has a default
and a reason (also in ``docs/profiles.md``). A profile is a named set of overrides:

- ``interactive`` (default): agents' metadata-heavy work — recursive find/grep, many small file
  opens, write-edit-reread loops. Short kernel TTLs (about 1 s) keep hosts close to each other,
  a disk cache serves repeat reads, readahead stays modest so small random reads stay cheap.
- ``benchmark``: throughput — large readahead, more parallel uploads and downloads, a larger
  buffer budget and memory cache.
- ``custom``: every knob from a TOML or JSON file; knobs it omits take the interactive values,
  unknown knobs are refused by name.

Nothing here is a secret; ``VolumeConfig`` is shown as-is in ``.config``.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from artifacts_core.errors import ConfigError

MiB = 1 << 20
GiB = 1 << 30

PROFILES = ("interactive", "benchmark", "custom")


class VolumeConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    profile: str = "interactive"
    # -- kernel and VFS metadata caches (seconds) --
    # How long a mount's kernel (and the path API) may trust a cached attribute or name. Another
    # host's change invalidates it within milliseconds through the change feed, so this only bounds
    # the damage of a missed record; while the feed is unsubscribed a mount uses at most 1 s.
    attr_ttl: float = 60.0
    entry_ttl: float = 60.0  # name -> inode cache; same reasoning as attr_ttl
    negative_ttl: float = 0.0  # "no such file" is never cached: a file created on another host must appear at once
    # -- data caches --
    memory_cache: int = 256 * MiB  # verified decoded blocks: 64 blocks of 4 MiB, enough for an agent's working set
    disk_cache: bool = True  # repeat reads after a restart come from local disk, not S3
    disk_cache_size: int = 10 * GiB  # bounded well below node-pressure thresholds (JuiceFS's 100 GiB caused evictions)
    disk_free_ratio: float = 0.1  # never fill the cache disk past 90 %
    cache_dir: str = ""  # empty: $XDG_CACHE_HOME/tonbo/artifacts
    # -- readahead (bytes) --
    readahead_min: int = 4 * MiB  # first window once reads look sequential: one block (as JuiceFS)
    readahead_max: int = 16 * MiB  # 4 blocks: fills the pipe for one reader without wasting GETs on random reads
    prefetch_whole_file: int = 4 * MiB  # while opens read files whole, an open fetches a file up to this size at once
    # -- writes --
    buffer_size: int = 300 * MiB  # write + readahead buffer budget; writers block past it (back-pressure)
    upload_concurrency: int = 20  # parallel PUTs; 20 x 4 MiB in flight saturates a 1 GbE link at typical S3 latency
    download_concurrency: int = 32  # parallel GETs for readahead and concurrent readers
    flush_interval: float = 5.0  # a dirty handle commits at least this often (bounds what a crash loses)
    flush_idle: float = 1.0  # ... and after this long without writes
    # -- sessions and background work (seconds) --
    heartbeat: float = 12.0  # session refresh; expiry is 5 heartbeats, so a dead host's locks free within a minute
    session_timeout: float = 60.0
    background_jobs: bool = True  # reclaim, compaction, trash expiry, inline migration run in this client
    inline_quiet: float = 300.0  # inline data untouched this long migrates to S3 blocks
    compact_min_slices: int = 5  # a chunk read with this many merged segments is compacted in the background


_PROFILE_OVERRIDES: dict[str, dict[str, object]] = {
    "interactive": {},
    "benchmark": {
        "memory_cache": 1 * GiB,
        "readahead_max": 128 * MiB,  # a 32-block window keeps 32 GETs in flight for one sequential reader
        "buffer_size": 1 * GiB,
        "upload_concurrency": 64,
        "download_concurrency": 64,
        "attr_ttl": 300.0,
        "entry_ttl": 300.0,
    },
}


def profile_config(profile: str = "interactive", *, custom_file: str | os.PathLike | None = None,
                   **overrides: object) -> VolumeConfig:
    """The configuration for a profile name; ``custom`` reads ``custom_file`` (TOML or JSON)."""
    if profile not in PROFILES:
        raise ConfigError(f"unknown cache profile {profile!r}", hint="use interactive, benchmark or custom")
    fields: dict[str, object] = {}
    if profile == "custom":
        if custom_file is None:
            raise ConfigError("the custom profile needs a file of knobs",
                              hint="pass custom_file= (TOML or JSON; see docs/profiles.md)")
        fields.update(_read_knobs(Path(custom_file)))
    else:
        fields.update(_PROFILE_OVERRIDES[profile])
    fields.update(overrides)
    fields["profile"] = profile
    try:
        return msgspec.convert(fields, VolumeConfig)
    except msgspec.ValidationError as e:
        raise ConfigError(f"invalid configuration: {e}") from e


def _read_knobs(path: Path) -> dict[str, object]:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read the custom profile file {path}: {e.strerror}") from e
    try:
        data = msgspec.json.decode(raw) if path.suffix == ".json" else msgspec.toml.decode(raw)
    except msgspec.DecodeError as e:
        raise ConfigError(f"the custom profile file {path} is not valid {path.suffix[1:] or 'TOML'}: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"the custom profile file {path} must hold a table of knobs")
    known = set(VolumeConfig.__struct_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown knob(s) in {path}: {', '.join(unknown)}",
                          hint="see docs/profiles.md for the list of knobs")
    return data


def xdg_dir(kind: str) -> Path:
    """``config``, ``cache`` or ``state`` directory of Artifacts, honouring the XDG variables."""
    env, default = {
        "config": ("XDG_CONFIG_HOME", ".config"),
        "cache": ("XDG_CACHE_HOME", ".cache"),
        "state": ("XDG_STATE_HOME", ".local/state"),
    }[kind]
    base = os.environ.get(env) or str(Path.home() / default)
    return Path(base) / "tonbo" / "artifacts"
