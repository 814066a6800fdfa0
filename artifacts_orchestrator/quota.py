"""A workspace's capacity and inode limits: read and changed by the orchestrator (``quota``).

The limits live twice in the workspace's metadata: in the volume's ``setting`` (JSON, what
``.config`` shows and clients load) and in the ``limits`` hash the Lua functions check on every
create and write (``check_quota`` in ``00_common.lua``). Both change together in one function
call, ``af_set_limits`` (``05_format.lua``): Python encodes the new setting (Lua's cjson would
round integers past 14 digits), the function writes it only if the setting is still the one
read (else EAGAIN, and this reads again), and checks both values are non-negative integers.
Sessions may not write ``setting``, so an agent cannot raise its own workspace's limits: only
the owner's account, through the orchestrator, can.

A limit below what is used is accepted: nothing is removed; creates and growth are refused with
ENOSPC until usage falls below it. Usage is the volume's counters, ``usedspace`` (bytes, each
file rounded up to 4 KiB as ``statfs`` counts) plus ``hpinned`` (bytes only checkpoints keep, as
the quota check and statfs count them: docs/history.md "Capacity"), and ``totalinodes``.
"""

from __future__ import annotations

from typing import Any

import msgspec
import redis
import redis.exceptions as rex

from artifacts_core.meta.format import Setting
from artifacts_orchestrator.errors import InvalidRequest, MetadataAclProvisioningFailed, WorkspaceNotActive

#: Times a change is retried when the setting changed between the read and the write.
RETRIES = 5


def read(node: redis.Redis, prefix: str) -> dict[str, int]:
    capacity, inodes = node.hmget(prefix + "limits", ["capacity", "inodes"])
    used, total, pinned = node.mget([prefix + "usedspace", prefix + "totalinodes", prefix + "hpinned"])
    return {"capacity": _int(capacity), "inodes": _int(inodes), "used_bytes": _int(used) + _int(pinned),
            "used_inodes": _int(total)}


def _int(v: Any) -> int:
    return int(v) if v is not None else 0


def change(node: redis.Redis, prefix: str, *, capacity: int | None, inodes: int | None) -> dict[str, int]:
    """Set the given limits (None keeps one); the limits and usage after."""
    for value, what in ((capacity, "capacity"), (inodes, "inodes")):
        if value is not None and value < 0:
            raise InvalidRequest(f"{what} must be 0 (unlimited) or more, not {value}")
    for _ in range(RETRIES):
        raw = node.get(prefix + "setting")
        if raw is None:
            raise WorkspaceNotActive("the workspace has no formatted volume yet")
        setting = msgspec.json.decode(raw, type=Setting)
        new = msgspec.structs.replace(setting, capacity=setting.capacity if capacity is None else capacity,
                                      inodes=setting.inodes if inodes is None else inodes)
        try:
            node.execute_command("FCALL", "af_set_limits", 1, prefix + "setting", raw, msgspec.json.encode(new),
                                 str(new.capacity), str(new.inodes))
            return read(node, prefix)
        except rex.ResponseError as e:
            if str(e).startswith("EAGAIN"):
                continue
            raise MetadataAclProvisioningFailed(f"Redis refused to change the limits: {str(e)[:200]}") from e
        except (rex.ConnectionError, rex.TimeoutError) as e:
            raise MetadataAclProvisioningFailed("cannot reach Redis to change the limits; retry") from e
    raise MetadataAclProvisioningFailed("the volume setting kept changing; retry in a moment")
