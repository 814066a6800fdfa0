"""The orchestrator's business logic: accounts, the workspace state machine, mount sessions, the reaper.

``Service`` is synchronous and HTTP-free (the aiohttp layer runs it on worker threads); it talks
to three things: the ``Store`` (rows), ``RedisAdmin`` (ACL users, keys, the function library)
and, for the managed backend, ``ManagedStorage`` (scoped S3 credentials, prefix deletion).

The workspace state machine (SPEC.md §3.3, seed 000): ``pending_format → active → deleting →
deleted``. Every step is idempotent and ordered so that a crash between two steps leaves a state
the next call (or the reaper) finishes:

- create: the row first (``pending_format``, ids → prefix), then the format user in Redis (and,
  managed, its S3 user). A retry finds the row: 409 ``workspace_exists`` with ``existing``, or,
  with ``resume``, the same prefix and freshly minted format credentials;
- format-completed: verify ``setting``, revoke the format user, then flip to ``active`` (200 when
  already active);
- delete: flip to ``deleting`` under the row lock (202), then revoke every session and the format
  user, sweep the keys, (managed) delete the prefix's objects, flip to ``deleted``. A workspace
  left in ``deleting`` is finished by the reaper.

Sessions: the row is written before its ACL user exists, so "users in Redis minus live rows" is
always a safe set of orphans to reap. A revocation marks the row first, then removes the ACL user,
the metadata session and the S3 user, and only then marks the row cleaned: a revocation cut short
by an outage is never left half-done, the reaper finishes every revoked row not yet cleaned.

Renewal (long-lived mounts): a session is issued with a lifetime (``ttl``) and a renewal token
(``tbr_…``, returned once, stored as its SHA-256). The process holding the session (a mount, an
MCP server: they hold no API key) calls ``renew_with_token`` at about half its remaining life;
each call moves ``expires_at`` to now + ttl for as long as what issued the session allows: the
API key that opened it is not revoked, or — for a ticket's session — its grant is live (capped at
the grant's expiry; ``renew_checks`` hooks, registered by the platform layer). The same ACL user
and S3 user stay: nothing is swapped under running I/O. A refused renewal changes nothing; the
session ends at its expiry, revoked by the reaper like any expired session (EACCES on the mount).

Fleet: several processes may share one database (docs/scale.md). Periodic jobs (the reaper, the
stale-session sweep) run under a database lease (``run_job``), once per interval across every
process; a background delete runs under a per-workspace lease, so two processes never sweep one
workspace at once. Nothing another process needs lives in this object's memory.

Secrets (API keys, ACL passwords, S3 secrets, renewal tokens) appear only in return values bound
for the caller.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import socket
import string
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import msgspec

from artifacts_core.errors import ArtifactsError
from artifacts_core.meta.client import MetaClient
from artifacts_core.meta.journal import Journal
from artifacts_core.meta.keys import Keys, workspace_prefix
from artifacts_core.objects.url import store_from_url
from artifacts_orchestrator import models as m
from artifacts_orchestrator.errors import (
    ApiError,
    Forbidden,
    InvalidRequest,
    KeyNotFound,
    RenewalRefused,
    SessionNotFound,
    SettingKeyMissing,
    Unauthorized,
    WorkspaceExists,
    WorkspaceNotActive,
    WorkspaceNotCompletable,
    WorkspaceNotFound,
)
from artifacts_orchestrator.history import WorkspaceHistory
from artifacts_orchestrator.redis_acl import FORMAT_USER_PREFIX, SESSION_USER_PREFIX, RedisAdmin
from artifacts_orchestrator.storage import ManagedStorage
from artifacts_orchestrator.store import Store

log = logging.getLogger("artifacts.orchestrator")

#: The format-scope user lives 15 minutes (SPEC.md §8).
FORMAT_TTL = 15 * 60
#: Default mount-session lifetime: a working day, renewable (POST …/sessions/<id>/renew).
SESSION_TTL = 24 * 3600
#: Bounds on a requested session TTL: a minute (less cannot even finish a mount), a week.
MIN_SESSION_TTL, MAX_SESSION_TTL = 60, 7 * 24 * 3600
#: API keys: tbo_ + 32 characters from 62 (about 190 bits); session renewal tokens the same with tbr_.
KEY_ALPHABET = string.ascii_letters + string.digits
RENEWAL_PREFIX = "tbr_"
#: How long a periodic job's lease holds if its holder dies mid-pass (then another process takes
#: the job): far longer than a pass takes (milliseconds to seconds), short enough that a crashed
#: process does not stop the reaper for long.
JOB_LEASE = 600.0
#: Labels are kept bounded: a key name (for listings), a host name (HOST_NAME_MAX), a mountpoint
#: (PATH_MAX).
KEY_NAME_MAX, HOST_MAX, MOUNTPOINT_MAX = 100, 255, 4096
#: ``~`` in a route's handle position means the caller's own handle (never a valid handle).
OWN_HANDLE = "~"
#: Random bytes in an ACL password (256 bits).
PASSWORD_BYTES = 32
#: A revocation retries its cleanup this many times in the request, backing off from 0.2 s (a
#: Redis failover or a dropped connection: seconds), before answering 500 and leaving the rest to
#: the reaper, which retries every pass until done.
REVOKE_ATTEMPTS, REVOKE_BACKOFF = 3, 0.2
#: Redis memory a session's own keys (record, opens, locks) may take. Measured (MEMORY USAGE,
#: Redis 7.0): 100,000 open files 5.6 MiB, a flock and a POSIX range on each 10.9 MiB more. A
#: session past this wrote its keys by hand and is revoked.
SESSION_MEMORY_MAX = 32 << 20


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_api_key(prefix: str = "tbo_") -> str:
    return prefix + "".join(secrets.choice(KEY_ALPHABET) for _ in range(32))


def new_renewal_token() -> tuple[str, str]:
    """A session renewal token and the hash the row keeps."""
    token = new_api_key(RENEWAL_PREFIX)
    return token, hash_key(token)


class Service:
    def __init__(self, store: Store, redis: RedisAdmin, storage: ManagedStorage | None = None, *,
                 clock: Callable[[], float] = time.time, format_ttl: float = FORMAT_TTL,
                 session_ttl: float = SESSION_TTL, min_session_ttl: float = MIN_SESSION_TTL) -> None:
        self.store = store
        self.redis = redis
        self.storage = storage
        self.clock = clock
        self.format_ttl = format_ttl
        self.session_ttl = session_ttl
        #: Shortest lifetime a session may be asked for (tests of renewal use seconds).
        self.min_session_ttl = min_session_ttl
        #: This process among the fleet's (job leases name it; never a secret).
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._deleting: set[int] = set()
        self._lock = threading.Lock()
        self._history: WorkspaceHistory | None = None
        #: Extensions (the platform layer, platform_service.py): called with a workspace whose
        #: delete was accepted, and with ``now`` on every reaper pass (returning counts).
        self.delete_hooks: list[Callable[[m.Workspace], None]] = []
        self.reap_hooks: list[Callable[[float], dict[str, int]]] = []
        #: Renewal checks: ``check(row, now)`` raises RenewalRefused, or returns the latest expiry
        #: it allows (None: no cap). The platform layer's checks a ticket session's grant.
        self.renew_checks: list[Callable[[m.MountSession, float], float | None]] = []

    # -- accounts and keys ----------------------------------------------------------------------

    def create_account(self, handle: str, key_name: str = "default") -> m.NewAccount:
        if not m.HANDLE_RE.match(handle):
            raise InvalidRequest(f"invalid handle {handle!r}: use 1-63 of a-z, 0-9 and -, starting alphanumeric")
        account = self.store.create_account(handle, self.clock())
        return m.NewAccount(account=_account_view(account), key=self.create_key(account, key_name))

    def create_key(self, account: m.Account, name: str = "") -> m.NewKey:
        key = new_api_key()
        row = m.ApiKey(id=str(uuid.uuid4()), account_id=account.id, name=name[:KEY_NAME_MAX], hint=key[:8] + "…",
                       created_at=self.clock())
        self.store.add_api_key(row, hash_key(key))
        return m.NewKey(id=row.id, name=row.name, key=key, created_at=row.created_at)

    def authenticate(self, header: str | None) -> tuple[m.Account, m.ApiKey]:
        scheme, _, token = (header or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("missing bearer token")
        found = self.store.key_by_hash(hash_key(token)) if m.API_KEY_RE.match(token) else None
        if found is None or not hmac.compare_digest(found[1], hash_key(token)):
            raise Unauthorized("invalid api key")
        key, _ = found
        if key.revoked_at is not None:
            raise Unauthorized("api key has been revoked")
        account = self.store.get_account(key.account_id)
        if account is None:
            raise Unauthorized("invalid api key")
        return account, key

    def list_keys(self, account: m.Account) -> m.KeyList:
        return m.KeyList(keys=[_key_view(k) for k in self.store.list_api_keys(account.id)])

    def revoke_key(self, account: m.Account, key_id: str) -> m.KeyView:
        key = self.store.revoke_api_key(account.id, key_id, self.clock())
        if key is None:
            raise KeyNotFound(f"no api key {key_id!r}")
        return _key_view(key)

    # -- workspaces -----------------------------------------------------------------------------

    def resolve(self, account: m.Account, handle: str, name: str) -> m.Workspace:
        if not m.WORKSPACE_NAME_RE.match(name):
            raise InvalidRequest(f"invalid workspace name {name!r}: it must match ^[a-zA-Z0-9][a-zA-Z0-9_-]{{0,62}}$")
        if handle == OWN_HANDLE:
            handle = account.handle
        if handle != account.handle:
            if self.store.account_by_handle(handle) is not None:
                raise Forbidden(f"{handle}/{name} belongs to another account")
            raise WorkspaceNotFound(f"no workspace {handle}/{name}")
        ws = self.store.find_workspace(account.id, name)
        if ws is None:
            raise WorkspaceNotFound(f"no workspace {handle}/{name}")
        return ws

    def create_workspace(self, account: m.Account, req: m.CreateWorkspaceRequest, *,
                         managed_prefix: str | None = None) -> tuple[m.CreateWorkspaceResponse, bool]:
        """Reserve (Phase 1). Returns the response and whether a new row was made (201 vs 200).
        ``managed_prefix``: the managed bucket's prefix to use instead of ``ws<id>`` (an agent's
        workspace lives at ``agents/<agent id>``, agents.py); never taken from a request."""
        self._check_create(req)
        now = self.clock()
        ws, created = self.store.reserve_workspace(account.id, account.handle, req.name, now,
                                                   lambda wid: self._fill(account, req, wid, managed_prefix))
        if not created:
            if not (req.resume and ws.status == "pending_format" and ws.backend == req.backend):
                raise WorkspaceExists(f"{account.handle}/{req.name} exists (status={ws.status})",
                                      extra={"existing": msgspec.to_builtins(self.view(ws))})
            log.info("resuming pending_format workspace %s/%s", ws.handle, ws.name)
        user = f"{FORMAT_USER_PREFIX}{ws.id}"
        password = secrets.token_urlsafe(PASSWORD_BYTES)
        expires = now + self.format_ttl
        self.store.set_format_user(ws.id, user, expires, now)
        self.redis.delete_user(user)  # a resumed create kills the previous attempt's connections
        self.redis.set_user(user, password, ws.key_prefix, read_only=False)
        creds = None
        if ws.backend == "managed":
            assert self.storage is not None
            creds = self.storage.issue(user, ws.storage_prefix, read_only=False, expires_at=expires)
        ws = self.store.get_workspace(ws.id) or ws
        meta = m.MetaAccess(url=self.redis.client_url(user, password), user=user, key_prefix=ws.key_prefix,
                            expires_at=expires)
        storage = msgspec.structs.replace(self.view(ws).storage, credentials=creds)
        return m.CreateWorkspaceResponse(workspace=self.view(ws), format=meta, storage=storage,
                                         resumed=not created), created

    def _check_create(self, req: m.CreateWorkspaceRequest) -> None:
        if not m.WORKSPACE_NAME_RE.match(req.name):
            raise InvalidRequest(f"invalid workspace name {req.name!r}: it must match ^[a-zA-Z0-9][a-zA-Z0-9_-]{{0,62}}$")
        if req.backend == "managed":
            if self.storage is None:
                raise InvalidRequest("this orchestrator has no managed storage; use backend byo")
            return
        s = req.storage
        if s is None or not s.bucket or not s.endpoint:
            raise InvalidRequest("backend byo needs storage.bucket and storage.endpoint")
        try:  # the core's own URL rules; dummy keys so nothing is read from this host's environment
            store_from_url(m.storage_url(s.bucket, s.prefix, s.endpoint, s.region), access_key="x", secret_key="x")
        except (ArtifactsError, ValueError) as e:
            raise InvalidRequest(f"invalid BYO storage location: {getattr(e, 'strerror', None) or e}") from None

    def _fill(self, account: m.Account, req: m.CreateWorkspaceRequest, wid: int,
              managed_prefix: str | None = None) -> dict:
        common = dict(backend=req.backend, key_prefix=workspace_prefix(account.id, wid),
                      volume_name=f"{account.handle}-{req.name}-{wid}", cache_profile=req.cache_profile)
        if req.backend == "managed":
            assert self.storage is not None
            return dict(common, bucket=self.storage.bucket, endpoint=self.storage.endpoint,
                        region=self.storage.region,
                        storage_prefix=managed_prefix or self.storage.prefix_for(wid))
        s = req.storage
        assert s is not None
        return dict(common, bucket=s.bucket, endpoint=s.endpoint, region=s.region,
                    storage_prefix=s.prefix.strip("/"))

    def format_completed(self, account: m.Account, handle: str, name: str) -> m.WorkspaceView:
        ws = self.resolve(account, handle, name)
        if ws.status == "active":
            return self.view(ws)  # the active short-circuit (SPEC.md §3.2)
        if ws.status != "pending_format":
            raise WorkspaceNotCompletable(f"{handle}/{name} is {ws.status}, not pending_format")
        if not self.redis.setting_present(ws.key_prefix):
            raise SettingKeyMissing(f"no setting key under {ws.key_prefix}: the format step has not run")
        self._revoke_format_user(ws)
        ws, _ = self.store.transition(ws.id, {"pending_format", "active"}, "active", self.clock())
        log.info("workspace %s/%s is active", ws.handle, ws.name)
        return self.view(ws)

    def list_workspaces(self, account: m.Account, include_deleted: bool = False) -> m.WorkspaceList:
        rows = self.store.list_workspaces(account.id, include_deleted=include_deleted)
        return m.WorkspaceList(workspaces=[self.view(w) for w in rows])

    def get_workspace(self, account: m.Account, handle: str, name: str) -> m.WorkspaceView:
        return self.view(self.resolve(account, handle, name))

    def inspect_workspace(self, account: m.Account, handle: str, name: str) -> dict:
        """The workspace's metadata keyspace summarised (``artifacts inspect``)."""
        ws = self.resolve(account, handle, name)
        return {"workspace": msgspec.to_builtins(self.view(ws)), **self.redis.summarize(ws.key_prefix)}

    def journal(self, account: m.Account, handle: str, name: str) -> tuple[Journal, MetaClient]:
        """A reader of the workspace's journal (close the client after use). Actors are enriched
        with what the orchestrator knows of the session user: its mount session, account, tenant,
        runtime and grant."""
        ws = self.resolve(account, handle, name)
        rows = {r.redis_user: r for r in self.store.list_sessions(ws.id, include_revoked=True)}

        def enrich(actor: dict[str, Any]) -> dict[str, Any]:
            row = rows.get(actor.get("user", ""))
            if row is not None:
                actor.update({"mount_session": row.id, "account": row.account_id, "mode": row.mode})
                for key, value in (("tenant", row.tenant_id), ("runtime", row.runtime_id), ("grant", row.grant_id),
                                   ("ticket", row.ticket_id)):
                    if value not in (None, ""):
                        actor[key] = value
            return actor

        client = MetaClient(self.redis.admin_url, Keys(ws.key_prefix), pool_size=2, may_load_library=False)
        return Journal(client, enrich=enrich), client

    def workspace_events(self, account: m.Account, handle: str, name: str, *, since: str | None,
                         limit: int, path: str | None, actor: str | None, reads: bool = False,
                         reads_since: str | None = None) -> dict[str, Any]:
        """One page of the workspace's journal (``GET .../events``); with ``reads``, the read
        audit's events merged in, and its own cursor (``reads_cursor``)."""
        journal, client = self.journal(account, handle, name)
        try:
            page = journal.read("0" if since is None else since, limit=limit, path=path, actor=actor,
                                reads=reads, reads_since=reads_since)
        except ArtifactsError as e:
            raise InvalidRequest(str(e)) from None
        finally:
            client.close()
        out = {"events": msgspec.to_builtins(page.events), "cursor": page.next, "missed": page.missed,
               "more": page.more}
        if reads:
            out.update(reads_cursor=page.reads_next, reads_missed=page.reads_missed)
        return out

    def workspace_references(self, account: m.Account, handle: str, name: str) -> dict:
        """Every S3 slice the workspace's metadata refers to (``artifacts gc`` / ``fsck``)."""
        ws = self.resolve(account, handle, name)
        return {"workspace": self.view(ws).identifier, **self.redis.references(ws.key_prefix)}

    def get_quota(self, account: m.Account, handle: str, name: str) -> m.Quota:
        """The workspace's capacity and inode limits and what it uses (``artifacts quota show``)."""
        ws = self.resolve(account, handle, name)
        return m.Quota(workspace=self.view(ws).identifier, **self.redis.quota(ws.key_prefix))

    def set_quota(self, account: m.Account, handle: str, name: str, req: m.SetQuotaRequest) -> m.Quota:
        """Change the limits given (``artifacts quota set``); the workspace must be active."""
        ws = self.resolve(account, handle, name)
        if ws.status != "active":
            raise WorkspaceNotActive(f"{handle}/{name} is {ws.status}; limits are set on an active workspace")
        return m.Quota(workspace=self.view(ws).identifier,
                       **self.redis.quota(ws.key_prefix, capacity=req.capacity, inodes=req.inodes, change=True))

    @property
    def history(self) -> WorkspaceHistory:
        """Checkpoint calls on a workspace's metadata, never its data (history.py); made on first
        use (the ``create-account`` command builds a service without Redis)."""
        if self._history is None:
            self._history = WorkspaceHistory(self.redis.admin_url)
        return self._history

    def checkpoints(self, account: m.Account, handle: str, name: str, op: str, *args: Any) -> Any:
        """A history call (``history.WorkspaceHistory``: list, create, show, diff, restore, delete)
        on an active workspace, with the orchestrator's admin rights on its metadata only."""
        ws = self.resolve(account, handle, name)
        if ws.status != "active":
            raise WorkspaceNotActive(f"{handle}/{name} is {ws.status}; only an active workspace has checkpoints")
        return getattr(self.history, op)(ws.key_prefix, account.handle, *args)

    def delete_workspace(self, account: m.Account, handle: str, name: str) -> tuple[m.WorkspaceView, bool]:
        """Step 1 (row lock, ``deleting``). Returns the view and whether the rest must run."""
        ws = self.resolve(account, handle, name)
        if ws.status == "deleted":
            return self.view(ws), False
        ws, _ = self.store.transition(ws.id, {"pending_format", "active", "deleting"}, "deleting", self.clock())
        for hook in self.delete_hooks:
            hook(ws)
        return self.view(ws), True

    def run_delete(self, workspace_id: int) -> None:
        """Steps 2-5 of seed 000's delete flow; each is idempotent, so a rerun finishes the job."""
        with self._lock:
            if workspace_id in self._deleting:
                return
            self._deleting.add(workspace_id)
        job = f"delete:{workspace_id}"
        if not self.store.claim_job(job, self.holder, self.clock(), 0.0, JOB_LEASE):
            with self._lock:  # another process is deleting it now
                self._deleting.discard(workspace_id)
            return
        try:
            ws = self.store.get_workspace(workspace_id)
            if ws is None or ws.status != "deleting":
                return
            for _ in range(2):  # twice: a session issued while step 2 ran is caught by the second pass
                for s in self.store.list_sessions(ws.id):
                    self._revoke_session_row(s, "workspace deleted")
                self._revoke_format_user(ws)
                swept = self.redis.delete_keys(ws.key_prefix)
            objects = 0
            if ws.backend == "managed" and self.storage is not None:
                objects = self.storage.delete_prefix(ws.storage_prefix)
            now = self.clock()
            self.store.transition(ws.id, {"deleting"}, "deleted", now, deleted_at=now)
            log.info("workspace %s/%s deleted (%d keys swept, %d objects)", ws.handle, ws.name, swept, objects)
        finally:
            self.store.release_job(job, self.holder, self.clock())
            with self._lock:
                self._deleting.discard(workspace_id)

    def _revoke_format_user(self, ws: m.Workspace) -> None:
        user = f"{FORMAT_USER_PREFIX}{ws.id}"
        self.redis.delete_user(user)
        if ws.backend == "managed" and self.storage is not None:
            self.storage.revoke(user)
        self.store.set_format_user(ws.id, "", None, self.clock())

    # -- mount sessions -------------------------------------------------------------------------

    def _ttl(self, requested: float | None) -> float:
        ttl = self.session_ttl if requested is None else requested
        if not self.min_session_ttl <= ttl <= MAX_SESSION_TTL:
            raise InvalidRequest(f"ttl_seconds must be between {self.min_session_ttl:g} and {MAX_SESSION_TTL}")
        return ttl

    def create_session(self, account: m.Account, handle: str, name: str,
                       req: m.CreateSessionRequest, key_id: str = "") -> m.SessionGrant:
        """A session opened with API key ``key_id`` (renewable while that key is not revoked)."""
        ws = self.resolve(account, handle, name)
        if ws.status != "active":
            raise WorkspaceNotActive(f"{handle}/{name} is {ws.status}; only active workspaces can be mounted")
        ttl = self._ttl(req.ttl_seconds)
        now = self.clock()
        sid = secrets.token_hex(8)
        user = f"{SESSION_USER_PREFIX}{sid}"
        token, token_hash = new_renewal_token()
        row = m.MountSession(id=sid, workspace_id=ws.id, account_id=account.id, mode=req.mode, redis_user=user,
                             s3_user=user if ws.backend == "managed" else "", created_at=now,
                             expires_at=now + ttl, host=req.host[:HOST_MAX], mountpoint=req.mountpoint[:MOUNTPOINT_MAX],
                             key_id=key_id, ttl=ttl, renew_hash=token_hash)
        self.store.add_session(row)
        return self.provision_session(ws, row, renewal_token=token)

    def provision_session(self, ws: m.Workspace, row: m.MountSession,
                          still_valid: Callable[[], None] | None = None,
                          renewal_token: str | None = None) -> m.SessionGrant:
        """Mint the ACL user (and managed S3 user) of a session whose row is stored, then check
        that the workspace is still active and ``still_valid()`` does not raise (a grant revoked
        meanwhile); on any failure undo both and mark the row revoked."""
        user = row.redis_user
        try:
            password = secrets.token_urlsafe(PASSWORD_BYTES)
            # The metadata session ids first: the ACL rules name the session's own keys by them.
            sids = self.redis.assign_session(ws.key_prefix, user)
            self.redis.set_user(user, password, ws.key_prefix, read_only=row.mode == "ro", sids=sids)
            creds = None
            if row.s3_user and self.storage is not None:
                creds = self.storage.issue(user, ws.storage_prefix, read_only=row.mode == "ro",
                                           expires_at=row.expires_at)
            current = self.store.get_workspace(ws.id)
            if current is None or current.status != "active":  # deleted while we provisioned
                raise WorkspaceNotActive(f"{ws.handle}/{ws.name} is being deleted")
            if still_valid is not None:
                still_valid()
        except BaseException:
            self.store.revoke_session(row.id, self.clock(), "provisioning failed")
            with contextlib.suppress(ApiError):  # else the reaper finishes the revocation
                self._finish_revocation(row, attempts=1)
            raise
        log.info("session %s (%s) issued on %s/%s", row.id, row.mode, ws.handle, ws.name)
        meta = m.MetaAccess(url=self.redis.client_url(user, password), user=user, key_prefix=ws.key_prefix,
                            expires_at=row.expires_at)
        renewal = None if renewal_token is None else m.Renewal(token=renewal_token, ttl_seconds=row.ttl)
        return m.SessionGrant(session=self._session_view(ws, row), meta=meta,
                              storage=msgspec.structs.replace(self.view(ws).storage, credentials=creds),
                              volume_name=ws.volume_name, cache_profile=ws.cache_profile, renewal=renewal)

    def list_sessions(self, account: m.Account, handle: str, name: str, include_revoked: bool = False) -> m.SessionList:
        ws = self.resolve(account, handle, name)
        rows = self.store.list_sessions(ws.id, include_revoked=include_revoked)
        return m.SessionList(sessions=[self._session_view(ws, s) for s in rows])

    def _own_session(self, account: m.Account, handle: str, name: str, sid: str) -> tuple[m.Workspace, m.MountSession]:
        ws = self.resolve(account, handle, name)
        row = self.store.get_session(sid)
        if row is None or row.workspace_id != ws.id:
            raise SessionNotFound(f"no session {sid!r} on {handle}/{name}")
        return ws, row

    def revoke_session(self, account: m.Account, handle: str, name: str, sid: str) -> m.SessionView:
        ws, row = self._own_session(account, handle, name, sid)
        return self._session_view(ws, self._revoke_session_row(row, "revoked"))

    def renew_session(self, account: m.Account, handle: str, name: str, sid: str,
                      req: m.RenewSessionRequest) -> m.SessionView:
        """Renewal by the account's API key (the caller's key is live by definition)."""
        ws, row = self._own_session(account, handle, name, sid)
        if row.revoked_at is not None:
            raise SessionNotFound(f"session {sid!r} was revoked ({row.revoke_reason})")
        return self._session_view(ws, self._extend(ws, row, self._ttl(req.ttl_seconds), check_key=False))

    def renew_with_token(self, req: m.RenewWithTokenRequest) -> m.SessionRenewed:
        """Renewal by the session's own renewal token (what a mount process holds)."""
        token = req.renewal_token.strip()
        row = self.store.session_by_renew_hash(hash_key(token)) if token.startswith(RENEWAL_PREFIX) else None
        if row is None or not hmac.compare_digest(row.renew_hash, hash_key(token)):
            raise Unauthorized("invalid renewal token")
        if row.revoked_at is not None:
            raise RenewalRefused(f"session {row.id} was revoked ({row.revoke_reason})")
        ws = self.store.get_workspace(row.workspace_id)
        if ws is None or ws.status != "active":
            raise RenewalRefused(f"the workspace of session {row.id} is no longer active")
        renewed = self._extend(ws, row, row.ttl or self.session_ttl, check_key=True)
        return m.SessionRenewed(session=self._session_view(ws, renewed),
                                expires_in=max(0.0, renewed.expires_at - self.clock()))

    def _extend(self, ws: m.Workspace, row: m.MountSession, ttl: float, *, check_key: bool) -> m.MountSession:
        """``expires_at`` = now + ttl, capped by what issued the session; never shortened."""
        now = self.clock()
        if check_key and row.key_id:
            key = self.store.get_api_key(row.key_id)
            if key is None or key.revoked_at is not None:
                raise RenewalRefused(f"the API key that opened session {row.id} was revoked; the session ends at "
                                     "its expiry")
        until = now + ttl
        for check in self.renew_checks:
            cap = check(row, now)
            if cap is not None:
                until = min(until, cap)
        if until <= now:
            raise RenewalRefused(f"session {row.id} cannot be extended past {until:.0f}")
        renewed = self.store.renew_session(row.id, max(until, row.expires_at))
        if renewed is None or renewed.revoked_at is not None:
            raise RenewalRefused(f"session {row.id} was revoked")
        return renewed

    def _revoke_session_row(self, row: m.MountSession, reason: str) -> m.MountSession:
        """Revoke: the row first (from then on it is revoked for every caller, and owed a cleanup
        the reaper retries until done), then the cleanup here, retried a few times: ACL DELUSER
        (closes live connections), the metadata session ended (its locks and opens released at
        once), the S3 user deleted with all its keys. If Redis or S3 still refuses, the call fails
        (500) with the row revoked, and the reaper finishes within one pass after they answer."""
        revoked = self.store.revoke_session(row.id, self.clock(), reason) or row
        if row.revoked_at is None:
            log.info("session %s revoked (%s)", row.id, reason)
        if revoked.cleaned_at is None:
            self._finish_revocation(revoked)
        return self.store.get_session(row.id) or revoked

    def _finish_revocation(self, row: m.MountSession, *, attempts: int = REVOKE_ATTEMPTS) -> None:
        """Remove everything a revoked session held (idempotent), then mark the row cleaned."""
        for attempt in range(attempts):
            try:
                self.redis.delete_user(row.redis_user)
                ws = self.store.get_workspace(row.workspace_id)
                if ws is not None and ws.status != "deleted":
                    self.redis.end_session(ws.key_prefix, row.redis_user)
                if row.s3_user and self.storage is not None:
                    self.storage.revoke(row.s3_user)
                break
            except ApiError:
                if attempt + 1 >= attempts:
                    raise
                time.sleep(REVOKE_BACKOFF * 2 ** attempt)
        self.store.mark_cleaned(row.id, self.clock())

    # -- the stale-session sweep ----------------------------------------------------------------

    def sweep_sessions(self) -> dict[str, int]:
        """For every workspace with live sessions: end the metadata sessions whose expiry passed
        (a crashed host's locks and opens; session users may not sweep each other), and revoke a
        session whose own keys take more than ``SESSION_MEMORY_MAX`` of Redis (the functions
        bound what they write; raw writes to a session's own keys are bounded only here)."""
        done = {"stale_sessions": 0, "memory_revoked": 0}
        for ws in self.store.workspaces_with_live_sessions():
            done["stale_sessions"] += self.redis.sweep_sessions(ws.key_prefix)
            over = {u for u, size in self.redis.session_memory(ws.key_prefix).items() if size > SESSION_MEMORY_MAX}
            for row in self.store.list_sessions(ws.id):
                if row.redis_user in over:
                    log.warning("session %s takes over %d bytes of Redis: revoked", row.id, SESSION_MEMORY_MAX)
                    self._revoke_session_row(row, "memory")
                    done["memory_revoked"] += 1
        return done

    # -- the journal's retention ------------------------------------------------------------------

    def journal_retention(self) -> dict[str, int]:
        """Apply every active workspace's journal retention (sessions may not trim: only this)."""
        dropped = 0
        for ws in self.store.workspaces_in(("active",)):
            try:
                dropped += self.redis.trim_journal(ws.key_prefix)
            except ApiError as e:  # one workspace's failure must not stop the others
                log.warning("journal retention of workspace %s failed: %s", ws.id, e)
        return {"journal_events_dropped": dropped}

    # -- periodic jobs, once per interval across the fleet ----------------------------------------

    def run_job(self, name: str, fn: Callable[[], dict[str, int]], every: float) -> dict[str, int] | None:
        """``fn()`` if this process wins job ``name``'s lease for this interval (every process
        sharing the database tries; one runs it), else None."""
        if not self.store.claim_job(name, self.holder, self.clock(), every, JOB_LEASE):
            return None
        try:
            return fn()
        finally:
            self.store.release_job(name, self.holder, self.clock())

    # -- the reaper -----------------------------------------------------------------------------

    def reap(self, now: float | None = None) -> dict[str, int]:
        """Expired format users and sessions, orphaned ACL/S3 users, unfinished deletes."""
        now = self.clock() if now is None else now
        done = {"format_users": 0, "sessions": 0, "orphans": 0, "deletes": 0}
        for ws in self.store.workspaces_in(["pending_format"]):
            if ws.format_user and ws.format_expires_at is not None and ws.format_expires_at <= now:
                self._revoke_format_user(ws)
                done["format_users"] += 1
        for row in self.store.expired_sessions(now):
            self._revoke_session_row(row, "expired")
            done["sessions"] += 1
        for row in self.store.unfinished_revocations():  # revocations cut short by an outage
            try:
                self._finish_revocation(row, attempts=1)
                done["revocations_finished"] = done.get("revocations_finished", 0) + 1
            except ApiError as e:
                log.warning("revocation of session %s still unfinished: %s", row.id, e)
        in_redis = self.redis.users()  # listed BEFORE the rows: a user made meanwhile is not an orphan
        in_s3 = self.storage.users() if self.storage is not None else set()
        live = self.store.live_acl_users()
        if in_redis - live:
            self.redis.delete_users(in_redis - live)
        for user in in_s3 - live:
            assert self.storage is not None
            self.storage.revoke(user)
        done["orphans"] = len(in_redis - live) + len(in_s3 - live)
        for ws in self.store.workspaces_in(["deleting"]):
            self.run_delete(ws.id)
            done["deletes"] += 1
        for hook in self.reap_hooks:
            done.update(hook(now))
        return done

    def view(self, ws: m.Workspace) -> m.WorkspaceView:
        return m.workspace_view(ws)

    _session_view = staticmethod(m.session_view)


_account_view, _key_view = m.account_view, m.key_view
