"""``RedisMetaEngine``: the metadata engine of one workspace, composed by concern.

| module | concern |
|---|---|
| ``client.py`` | connections, the call choke point, error mapping, the function library |
| ``format.py`` | the volume ``setting``, format, Redis configuration checks |
| ``namespace.py`` | lookup, getattr/setattr, access, mknod/mkdir/symlink/link, unlink, rmdir, rename, readdir, xattrs, statfs, quotas |
| ``data.py`` | slice ids, chunk slice lists, commit (incl. inline and append slices), truncate, fallocate, copy_file_range |
| ``sessions.py`` | session registration, heartbeat, open-file registration, stale-session cleanup |
| ``locks.py`` | BSD flock and POSIX record locks |
| ``reclaim.py`` | deleting released data, trash expiry, compaction of chunks |
| ``history.py`` | checkpoints (create, list, restore, delete, changed keys), reads at a checkpoint |

The shared state (``client``, ``keys``, ``setting``, ``sid``) is ``state.EngineState``'s. Each
concern derives from it or from the concern it builds on (``LockOps`` from ``SessionOps``;
``NamespaceOps``, ``ReclaimOps`` and ``ReplaceOps`` from ``DataOps``), so what it uses is declared
by a class it names; a concern with state of its own declares it in its own ``__init__``
(``DataOps``). Every mutating method is one ``self.client.call(...)``: one round trip.
"""

from __future__ import annotations

from artifacts_core.meta.client import MetaClient
from artifacts_core.meta.data import DataOps
from artifacts_core.meta.format import Setting, check_redis_config, format_meta, load_setting
from artifacts_core.meta.history import HistoryOps
from artifacts_core.meta.keys import Keys
from artifacts_core.meta.locks import LockOps
from artifacts_core.meta.namespace import NamespaceOps
from artifacts_core.meta.reclaim import ReclaimOps
from artifacts_core.meta.replace import ReplaceOps
from artifacts_core.meta.sessions import SessionOps


class RedisMetaEngine(NamespaceOps, ReclaimOps, ReplaceOps, DataOps, LockOps, SessionOps, HistoryOps):
    """The metadata engine for the workspace whose keys start with ``prefix``."""

    def __init__(self, url: str, prefix: str, *, may_load_library: bool = True, **client_options) -> None:
        keys = Keys(prefix)
        super().__init__(keys, MetaClient(url, keys, may_load_library=may_load_library, **client_options))

    def format(self, setting: Setting, *, require_aof: bool = True) -> bool:
        """Format this workspace's namespace (see ``format.format_meta``)."""
        formatted = format_meta(self.client, setting, require_aof=require_aof)
        self.setting = load_setting(self.client)
        return formatted

    def load(self, *, require_aof: bool = True) -> Setting:
        """Open an existing volume: check Redis, the function library and the setting."""
        check_redis_config(self.client, require_aof=require_aof)
        self.client.ensure_library()
        self.setting = load_setting(self.client)
        return self.setting

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> RedisMetaEngine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
