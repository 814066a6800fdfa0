"""The volume's ``setting``, formatting, and the Redis configuration checks done at format and open.

``Setting`` is the authoritative description of a volume (msgspec JSON under the ``setting`` key;
secrets are never stored in it). The fields the Lua functions need (capacity, inode limit, inline
limits, trash days) are mirrored into the ``limits`` hash by the same ``af_format`` call.

Redis configuration is part of correctness (DESIGN.md §10): an evicting Redis silently loses
metadata, so format and open refuse it; AOF persistence is required unless the caller says the
deployment is deliberately volatile (tests, throwaway workspaces).
"""

from __future__ import annotations

import logging
import time
import uuid as _uuid

import msgspec

from artifacts_core.errors import ConfigError, MetaUnavailable, PermissionDenied
from artifacts_core.meta import library
from artifacts_core.meta.client import MetaClient

log = logging.getLogger("artifacts.meta")

#: Bumped when the layout of keys or records changes incompatibly.
FORMAT_VERSION = 1


class Setting(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    uuid: str
    block_size: int = 4 << 20
    compression: str = "lz4"
    # Block format written (docs/chunks.md): absent in settings from before format v2, hence 1 here;
    # format_volume writes 2. Readers read both; a v1 volume keeps writing v1.
    block_format: int = 1
    segment_size: int = 64 << 10  # format v2: the unit of ranged reads and their checksums (docs/chunks.md)
    trash_days: int = 1
    capacity: int = 0  # bytes, 0 = unlimited
    inodes: int = 0  # 0 = unlimited
    inline_limit: int = 16 << 10  # a slice up to this size lives in Redis (DESIGN.md §3)
    inline_cap: int = 64 << 20  # total inline bytes per volume before small writes go to S3
    storage: str = ""  # secret-free storage URL, so open_volume may omit it
    # The journal's retention (docs/journal.md): the orchestrator (or a full-rights client's
    # elected job) drops the oldest events past either bound; 0 = no bound. ~70 bytes of Redis
    # per event (benchmarks/bench_journal.py): the defaults keep at most ~7 MB per workspace.
    journal_max_events: int = 100_000
    journal_max_days: float = 30.0
    # The read audit (docs/journal.md, "Reads"): opens for reading recorded too. Off by default
    # (it multiplies the records by the read rate); set_journal_reads() turns it on or off.
    journal_reads: bool = False
    format_version: int = FORMAT_VERSION
    library_version: int = library.LIBRARY_VERSION
    created: float = 0.0


def check_redis_config(client: MetaClient, *, require_aof: bool = True) -> None:
    """Refuse an evicting Redis (and, with ``require_aof``, one without AOF), naming the setting."""
    try:
        info = client.node().info("persistence")
        info.update(client.node().info("memory"))
    except PermissionError:
        return
    except Exception as e:  # an ACL user without INFO: the orchestrator checked this Redis
        if "NOPERM" in str(e) or "no permissions" in str(e).lower():
            log.debug("cannot read Redis INFO with these credentials; configuration check skipped")
            return
        if isinstance(e, (ConnectionError, OSError)):
            raise MetaUnavailable(f"cannot reach Redis to check its configuration: {e}") from e
        raise
    policy = info.get("maxmemory_policy", "noeviction")
    if isinstance(policy, bytes):
        policy = policy.decode()
    if policy != "noeviction":
        raise ConfigError(
            f"Redis maxmemory-policy is {policy!r}: it may evict metadata",
            hint="set `maxmemory-policy noeviction` in redis.conf (or CONFIG SET maxmemory-policy noeviction)")
    if require_aof and not int(info.get("aof_enabled", 0)):
        raise ConfigError(
            "Redis has AOF persistence off: metadata and inline data would not survive a restart",
            hint="set `appendonly yes` (appendfsync everysec or always) in redis.conf")


def format_meta(client: MetaClient, setting: Setting, *, require_aof: bool = True) -> bool:
    """Format the namespace: setting, limits, root and trash. Returns False when this same volume
    (same UUID) was already formatted; raises EEXIST for another volume."""
    check_redis_config(client, require_aof=require_aof)
    client.ensure_library()
    if not setting.created:
        setting = msgspec.structs.replace(setting, created=time.time())
    done = client.call("af_format", msgspec.json.encode(setting), setting.uuid, setting.capacity,
                       setting.inodes, setting.inline_limit, setting.inline_cap, setting.trash_days,
                       "1" if setting.journal_reads else "0")
    return bool(done)


def set_journal_reads(client: MetaClient, on: bool) -> Setting:
    """Turn the volume's read audit on or off (full rights: the orchestrator's or a format
    user). Takes effect at the next open of every session (af_open reads it). Returns the new
    setting."""
    setting = msgspec.structs.replace(load_setting(client), journal_reads=bool(on))
    client.call("af_journal_reads", "1" if on else "0", msgspec.json.encode(setting), setting.uuid,
                key=client.keys.setting)
    return setting


def load_setting(client: MetaClient) -> Setting:
    """Read and check the volume's setting (refusing an unformatted or newer-format volume)."""
    try:
        raw = client.command("GET", client.keys.setting)
    except PermissionDenied:
        raise
    if raw is None:
        raise ConfigError(f"no volume is formatted under {client.keys.prefix}",
                          hint="format the workspace first (artifacts workspace create)")
    try:
        setting = msgspec.json.decode(raw, type=Setting)
    except msgspec.DecodeError as e:
        raise ConfigError(f"the volume setting under {client.keys.prefix} is unreadable: {e}") from e
    if setting.format_version > FORMAT_VERSION:
        raise ConfigError(f"volume format v{setting.format_version} is newer than this client's "
                          f"v{FORMAT_VERSION}", hint="upgrade artifacts on this host")
    return setting


def new_uuid() -> str:
    return str(_uuid.uuid4())
