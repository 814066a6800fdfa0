"""Opening a volume: the public surface of DESIGN.md §9.

``format_volume`` creates a workspace's volume (the ``setting`` and root in Redis, the
``artifacts_uuid`` object in the bucket); ``open_volume`` returns a ``Volume``: the VFS, its
path API (``vol.open``, ``vol.stat``, ``vol.listdir``, ...) and the machinery under it — one
metadata engine, one event-loop thread owning the object store, one chunk store with its caches,
one session, one background thread. ``close()`` is deterministic: commit dirty data, end the
session, stop the background thread and the loop thread.

Storage objects of a volume live under ``<volume name>/`` in the storage URL's bucket and prefix.
Secrets (S3 keys, Redis passwords) are never logged or shown: ``.config`` prints redacted URLs.

``vol.exec(argv, ...)`` runs a command in a sandbox with the workspace at ``/workspace``
(docs/exec.md). The sandbox is not part of the core: it is found through the ``artifacts.exec``
entry-point group (``artifacts_fuse.exec`` registers its ``Executor`` there, as fsspec finds its
filesystems), so the core names a contract — ``Executor(vol)`` with ``run()`` and ``close()`` —
and imports no frontend. ``vol.source`` tells such a plugin how this volume was opened.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import msgspec

from artifacts_core import __version__
from artifacts_core import gc as _gc
from artifacts_core.aio import LoopThread
from artifacts_core.chunk import cache_dirs
from artifacts_core.chunk.disk_cache import DiskCache
from artifacts_core.chunk.store import DEFAULT_BLOCK_FORMAT, DEFAULT_SEGMENT_SIZE, ChunkStore
from artifacts_core.config import VolumeConfig, profile_config
from artifacts_core.errors import ConfigError, Exists, NotFound, PermissionDenied
from artifacts_core.history import Checkpoints
from artifacts_core.meta.engine import RedisMetaEngine
from artifacts_core.meta.format import Setting, load_setting, new_uuid, set_journal_reads
from artifacts_core.meta.journal import EventStream, Journal
from artifacts_core.metrics import Metrics
from artifacts_core.objects.base import ObjectStore
from artifacts_core.objects.prefix import PrefixedObjectStore
from artifacts_core.objects.url import redact_url, store_from_url
from artifacts_core.trash import Trash
from artifacts_core.vfs import cachectl
from artifacts_core.vfs.background import Background, TickJob
from artifacts_core.vfs.core import VFS
from artifacts_core.vfs.maintenance import CHECKPOINT_INTERVAL, HISTORY_ACCOUNT_INTERVAL, Maintenance
from artifacts_core.vfs.pathapi import PathAPI

log = logging.getLogger("artifacts")

UUID_OBJECT = "artifacts_uuid"
#: The entry-point group a sandbox registers its executor in (``vol.exec``).
EXEC_ENTRY_POINTS = "artifacts.exec"
#: How long opening a volume waits for its first change subscription attempt (one round trip when
#: Redis is up): caches are used only while subscribed, so a volume that opens subscribed caches
#: from its first operation. A refusal (a Redis user without channel permission) ends the wait.
SUBSCRIBE_WAIT = 2.0
#: How often a full-rights volume's elected job applies the journal's retention (seconds).
JOURNAL_TRIM_INTERVAL = 60.0
#: How often the volume re-reads Redis memory use (inline data stops past 70 % of maxmemory).
MEMORY_CHECK = 5.0


#: S3 keys given by the caller instead of the host's environment: (access key id, secret key).
Credentials = tuple[str, str]


def _volume_store(storage_url: str, name: str, credentials: Credentials | None = None) -> ObjectStore:
    """The volume's objects under ``<name>/``. ``credentials`` (a process serving several
    workspaces, like the orchestrator's agent file API) win over the host's ARTIFACTS_S3_* ones."""
    keys = {} if credentials is None else {"access_key": credentials[0], "secret_key": credentials[1]}
    return PrefixedObjectStore(store_from_url(storage_url, **keys), f"{name}/")


async def _check_bucket(store: ObjectStore) -> None:
    """PUT, GET and DELETE a probe object, so a wrong endpoint or key fails at format time."""
    key = f"testing/{new_uuid()}"
    await store.put(key, b"artifacts")
    if await store.get(key) != b"artifacts":
        raise ConfigError("the storage returned different bytes than were written")
    await store.delete(key)


def _check_block_format(block_format: int, segment_size: int, block_size: int) -> None:
    if block_format not in (1, 2):
        raise ConfigError(f"unknown block format {block_format}", hint="use 2 (segmented) or 1")
    if block_format == 2 and (segment_size & (segment_size - 1) or not 4 << 10 <= segment_size <= block_size):
        raise ConfigError(f"segment size {segment_size} must be a power of two from 4 KiB to the block size")


def format_volume(meta_url: str, storage_url: str, name: str, *, key_prefix: str,
                  block_size: int = 4 << 20, compression: str = "lz4", block_format: int = DEFAULT_BLOCK_FORMAT,
                  segment_size: int = DEFAULT_SEGMENT_SIZE, inline_limit: int = 16 << 10,
                  inline_cap: int = 64 << 20, trash_days: int = 1, capacity: int = 0, inodes: int = 0,
                  journal_max_events: int = 100_000, journal_max_days: float = 30.0,
                  journal_reads: bool = False, require_aof: bool = True,
                  credentials: Credentials | None = None) -> Setting:
    """Format a volume, or finish formatting the same one (re-running is safe). Refuses a prefix
    holding another volume, in Redis or in the bucket. ``credentials``: S3 keys to use instead of
    the host's. New volumes write block format v2 (segmented blocks, docs/chunks.md);
    ``block_format=1`` keeps the old single-frame blocks."""
    _check_block_format(block_format, segment_size, block_size)
    meta = RedisMetaEngine(meta_url, key_prefix)
    loop = LoopThread("artifacts-format")
    store = _volume_store(storage_url, name, credentials)
    try:
        meta.client.ensure_library()
        try:
            existing = load_setting(meta.client)
        except ConfigError:
            existing = None
        if existing is not None and existing.name != name:
            raise Exists(f"workspace prefix {key_prefix} already holds volume {existing.name!r}")
        uuid = existing.uuid if existing is not None else new_uuid()

        async def bucket_side() -> None:
            await _check_bucket(store)
            try:
                other = (await store.get(UUID_OBJECT)).decode()
            except NotFound:
                return
            if other != uuid:
                raise Exists(f"the storage prefix {name}/ already holds another volume ({other})",
                             hint="use another storage prefix or volume name")

        loop.run(bucket_side())
        setting = Setting(name=name, uuid=uuid, block_size=block_size, compression=compression,
                          block_format=block_format, segment_size=segment_size,
                          trash_days=trash_days, capacity=capacity, inodes=inodes,
                          inline_limit=inline_limit, inline_cap=inline_cap, storage=redact_url(storage_url),
                          journal_max_events=journal_max_events, journal_max_days=journal_max_days,
                          journal_reads=journal_reads)
        if existing is None:
            meta.format(setting, require_aof=require_aof)
        elif existing.journal_reads != journal_reads:  # re-running with the audit changed
            set_journal_reads(meta.client, journal_reads)
        loop.run(store.put(UUID_OBJECT, uuid.encode()))
        return load_setting(meta.client)
    finally:
        with contextlib.suppress(Exception):
            loop.run(store.close())
        loop.close()
        meta.close()


@dataclass(frozen=True)
class VolumeSource:
    """How a volume was opened: what another process needs to open the same workspace (a mount
    made for ``vol.exec``). ``meta_url`` may hold a password: it is kept out of ``repr``."""

    meta_url: str = field(repr=False)
    key_prefix: str
    storage_url: str | None = field(repr=False)
    config: VolumeConfig = field(repr=False)
    require_aof: bool = True


def check_storage(storage_url: str, name: str) -> None:
    """Read volume ``name``'s identity object with the host's S3 credentials, as opening it would:
    returns when the storage serves it; raises the core's error otherwise (``PermissionDenied``
    when the bucket refuses the keys, ``NotFound``, ``StorageError``). For callers that must tell
    a refused bucket from other failures (the CLI's exit code 7)."""
    store = _volume_store(storage_url, name)
    loop = LoopThread("artifacts-check")
    try:
        loop.run(store.get(UUID_OBJECT))
    finally:
        with contextlib.suppress(Exception):
            loop.run(store.close())
        loop.close()


class Volume(PathAPI):
    """An open volume: ``vol.vfs`` (inode API) plus the path API."""

    def __init__(self, meta: RedisMetaEngine, store: ObjectStore, config: VolumeConfig, *,
                 read_only: bool = False, mountpoint: str = "", source: VolumeSource | None = None,
                 frontend: str = "") -> None:
        self.meta = meta
        self.source = source
        self._executor = None
        self._executor_lock = threading.Lock()
        if meta.setting is None:
            raise ConfigError("the metadata engine has not read the volume's setting",
                              hint="call meta.load() (or meta.format()) before opening the volume")
        self.setting: Setting = meta.setting
        self.config = config
        self.read_only = read_only
        self.metrics = Metrics()
        self._loop = LoopThread("artifacts-io")
        self._store = store
        # A failure below closes what was started, in reverse: an open that fails (wrong
        # credentials, a missing bucket, an unreachable endpoint) leaves no thread, connection or
        # session behind.
        with contextlib.ExitStack() as undo:
            undo.callback(self._loop.close)
            undo.callback(_quietly, lambda: self._loop.run(store.close()))
            disk = None
            if config.disk_cache:
                directory = cache_dirs.prepare(cache_dirs.cache_base(config.cache_dir), self.setting.name,
                                               self.setting.uuid, self.setting.storage)
                disk = DiskCache(directory, capacity=config.disk_cache_size,
                                 free_ratio=config.disk_free_ratio)
            self.chunks = ChunkStore(store, self._loop, block_size=self.setting.block_size,
                                     compression=self.setting.compression,
                                     block_format=self.setting.block_format,
                                     segment_size=self.setting.segment_size,
                                     upload_concurrency=config.upload_concurrency,
                                     download_concurrency=config.download_concurrency,
                                     buffer_budget=config.buffer_size, memory_cache_bytes=config.memory_cache,
                                     disk_cache=disk, on_reused_id=meta.drop_slice_ids)
            undo.callback(self.chunks.close)
            self.vfs = VFS(meta, self.chunks, config, read_only=read_only, metrics=self.metrics,
                           describe_config=self.describe)
            undo.callback(self.vfs.close)
            self.metrics.add_source("chunks", self.chunks.stats)
            self.metrics.add_source("redis", lambda: {"round_trips": meta.client.round_trips,
                                                      "errors": meta.client.errors,
                                                      "full": meta.client.full})
            self.metrics.add_source("volume", lambda: {"inline_bytes": meta.inline_bytes()})
            self.metrics.add_source("changes", self.vfs.changes.stats)
            self.metrics.add_source("checkpoints", meta.history_stats)
            PathAPI.__init__(self, self.vfs)
            self._closed = False
            self._check_storage()
            # frontend: who acts through this session, for the journal's actors
            meta.new_session({"host": socket.gethostname(), "pid": os.getpid(), "mountpoint": mountpoint,
                              "version": __version__, "read_only": read_only,
                              "frontend": frontend or ("mount" if mountpoint else "python")})
            undo.callback(_quietly, meta.close_session)
            self.vfs.changes.start(wait=SUBSCRIBE_WAIT)  # after the session: own changes are flagged
            undo.callback(self.vfs.changes.close)
            self.maintenance = Maintenance(meta, self.chunks, self.vfs, config)
            self.checkpoints = Checkpoints(meta, self.vfs, origin={
                "host": socket.gethostname(), "pid": os.getpid(), "session": meta.sid})
            self.trash = Trash(meta, self.vfs)
            jobs: list[TickJob] = [("flush", 0.2, self.vfs.flush_due), ("closes", 0.2, self.vfs.flush_closes),
                    ("heartbeat", config.heartbeat, meta.heartbeat),
                    ("memory", MEMORY_CHECK, self.maintenance.check_memory),
                    ("compact", 0.2, self.maintenance.compact_queued)]
            if config.background_jobs and not read_only:
                # Each of these is elected in Redis: with many clients, one runs it at a time.
                jobs += [("sessions", config.heartbeat, meta.cleanup_stale_sessions),
                         ("reclaim", 10.0, self.maintenance.reclaim),
                         ("inline", 30.0, self.maintenance.migrate_inline),
                         ("trash", 300.0, self.maintenance.expire_trash),
                         ("checkpoints", CHECKPOINT_INTERVAL, self.maintenance.expire_checkpoints),
                         ("history_space", HISTORY_ACCOUNT_INTERVAL, self.maintenance.account_history)]
                if not meta.session_assigned:  # a session user may not trim: the orchestrator does
                    jobs.append(("journal", JOURNAL_TRIM_INTERVAL, self.maintenance.trim_journal))
            self._background = Background(tick_jobs=jobs, metrics=self.metrics)
            self._background.start()
            undo.pop_all()  # opened: close() owns it all now

    def events(self, since: int | float | str | None = 0, *, follow: bool = False, path: str | None = None,
               actor: str | None = None, timeout: float | None = None, reads: bool = False) -> EventStream:
        """The workspace's journal (docs/journal.md): every change from ``since`` (an event id, a
        Unix time, an ISO time or an age like ``10m``; None: only new ones) and, with ``follow``,
        each new one as it happens (until ``timeout`` seconds pass without one). Iterate it, or
        ``async for`` it. ``path``: under this path (current or original names); ``actor``: a
        field of the actor (``host=build-1``, a session id, a tag); ``reads``: the read audit's
        open-for-reading events (kind ``read``) merged in, when the volume keeps them."""
        return EventStream(Journal(self.meta.client), since, follow=follow, path=path, actor=actor,
                           timeout=timeout, reads=reads)

    def call_tag(self, tag: str) -> contextlib.AbstractContextManager[None]:
        """``with vol.call_tag(id):`` the journal events of this thread's operations inside carry
        ``tag`` (the agent API's tool-call id), not those of concurrent calls on other threads."""
        return self.meta.client.call_tag(tag)

    def set_tag(self, tag: str) -> None:
        """Journal events of this volume's later operations carry ``tag`` ('' clears it): the
        agent API's tool-call id. One per volume (its session)."""
        self.meta.set_tag(tag)

    def _check_storage(self) -> None:
        try:
            stored = self._loop.run(self._store.get(UUID_OBJECT)).decode()
        except NotFound:
            raise ConfigError(f"the storage has no {UUID_OBJECT} for volume {self.setting.name!r}",
                              hint="check the storage URL (bucket and prefix) or format the workspace") from None
        if stored != self.setting.uuid:
            raise ConfigError(f"the storage holds volume {stored}, not {self.setting.uuid}",
                              hint="the storage URL points at another workspace's data")
        if not self.read_only:
            self._loop.run(self._probe_conditional_puts(stored.encode()))

    async def _probe_conditional_puts(self, uuid: bytes) -> None:
        """Block objects are written create-only, so none is ever overwritten (DESIGN.md §10). A
        server that ignores ``If-None-Match`` would silently replace: find out with the one
        object known to exist (rewriting it with the same bytes is harmless) and say so once."""
        try:
            await self._store.put(UUID_OBJECT, uuid, if_absent=True)
        except Exists:
            return  # refused: conditional writes work
        except PermissionDenied:
            return  # credentials that may not write it: nothing to learn here
        log.warning("the storage %s ignores conditional writes (If-None-Match): block objects are "
                    "kept apart by unique slice ids only", self._store.describe())

    def warmup(self, paths: Iterable[str], **options) -> cachectl.CacheReport:
        """Fetch the files under ``paths`` into the local disk cache (``artifacts warmup``);
        ``options``: ``concurrency``, ``on_plan``, ``progress`` (see ``vfs.cachectl.warmup``)."""
        return cachectl.warmup(self, paths, **options)

    def evict(self, paths: Iterable[str]) -> cachectl.CacheReport:
        """Drop the files under ``paths`` from this client's caches (``artifacts cache evict``)."""
        return cachectl.evict(self, paths)

    @property
    def cache_dir(self) -> str | None:
        """The volume's disk-cache directory, or None without a disk cache."""
        disk = self.chunks.disk_cache
        return str(disk.directory) if disk is not None else None

    def describe(self) -> str:
        """The running configuration as JSON, with every secret removed (``.config``)."""
        return msgspec.json.encode({
            "volume": msgspec.to_builtins(self.setting),
            "config": msgspec.to_builtins(self.config),
            "meta": self.meta.client.target.redacted(),
            "storage": self._store.describe(),
            "read_only": self.read_only,
            "session": self.meta.sid,
        }).decode()

    def gc(self, *, delete: bool = False, min_age: float = _gc.DEFAULT_MIN_AGE,
           references: Callable[[], _gc.References] | None = None) -> _gc.GcReport:
        """Find (and with ``delete``, remove) block objects no metadata refers to (``gc.py``).
        ``references``: where the referenced slices come from when this client may not SCAN."""
        return self._loop.run(_gc.collect(self.meta, self._store, delete=delete, min_age=min_age,
                                         references=references))

    def check_objects(self, slices: dict[int, int]) -> _gc.ObjectCheck:
        """fsck: are all blocks of ``slices`` (id -> length) in the object store? (``gc.py``)"""
        return self._loop.run(_gc.check_objects(self._store, slices, self.setting.block_size))

    def exec(self, argv, **options):
        """Run ``argv`` in a sandbox with this workspace at ``/workspace``; returns the
        executor's result (exit code, bounded output, changed files; docs/exec.md). Options:
        ``stdin``, ``timeout``, ``max_output``, ``isolated`` (a transaction), ``cwd``, ``env``,
        ``network``. The executor — and its warm mount — lives until ``close()``."""
        with self._executor_lock:
            if self._executor is None:
                self._executor = load_executor()(self)
        return self._executor.run(argv, **options)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._executor is not None:
            with contextlib.suppress(Exception):  # logged by the executor; the volume still closes
                self._executor.close()
        self._background.stop()
        self.vfs.changes.close()
        try:
            self.vfs.flush_all()
        finally:
            try:
                self.vfs.close()
                with contextlib.suppress(Exception):  # the session's end releases them anyway
                    self.vfs.flush_closes()
                self.meta.close_session()
            finally:
                self.chunks.close()
                with contextlib.suppress(Exception):
                    self._loop.run(self._store.close())
                self._loop.close()
                self.meta.close()

    def __enter__(self) -> Volume:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _quietly(fn, *args) -> None:
    """Run one step of undoing a half-opened volume; its error must not hide the open's."""
    try:
        fn(*args)
    except Exception as e:
        log.debug("cleaning up after a failed open: %s", e)


def load_executor():
    """The installed sandbox's executor class (the ``artifacts.exec`` entry point): how a frontend
    gets code execution without importing another frontend."""
    from importlib.metadata import entry_points

    found = sorted(entry_points(group=EXEC_ENTRY_POINTS), key=lambda ep: ep.name)
    if not found:
        raise ConfigError("no sandbox is installed for vol.exec",
                          hint="install the artifacts distribution with its artifacts_fuse.exec package")
    return found[0].load()


def open_volume(meta_url: str, storage_url: str | None = None, *, key_prefix: str,
                profile: str = "interactive", config: VolumeConfig | None = None,
                custom_profile: str | None = None, read_only: bool = False,
                require_aof: bool = True, mountpoint: str = "", frontend: str = "",
                credentials: Credentials | None = None) -> Volume:
    """Open a formatted volume. ``storage_url`` may be omitted: the secret-free one stored at
    format is used, with credentials from the host (or ``credentials``, S3 keys given here)."""
    config = config or profile_config(profile, custom_file=custom_profile)
    meta = RedisMetaEngine(meta_url, key_prefix)
    try:
        setting = meta.load(require_aof=require_aof)
        url = storage_url or setting.storage
        if not url:
            raise ConfigError("no storage URL given and none stored with the volume")
        store = _volume_store(url, setting.name, credentials)
        source = VolumeSource(meta_url=meta_url, key_prefix=key_prefix, storage_url=url, config=config,
                              require_aof=require_aof)
        return Volume(meta, store, config, read_only=read_only, mountpoint=mountpoint, source=source,
                      frontend=frontend)
    except BaseException:
        meta.close()
        raise
