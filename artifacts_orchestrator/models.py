"""Rows and wire types of the orchestrator: one msgspec spelling for the store, the server and the client.

Rows (``Account``, ``ApiKey``, ``Workspace``, ``MountSession``) are what the store keeps; views
(``WorkspaceView``, ``SessionView``, ...) are what the HTTP API returns. Rows never hold a secret
in clear: API keys are stored as their SHA-256; ACL passwords and S3 secret keys are never stored
at all (Redis keeps its own hash in the ACL file; S3 secrets exist only in the response that
carries them to the caller).

Room for issue 8 (tenants, runtimes, grants, tickets): a mount session already records the
``tenant_id``, ``runtime_id``, ``grant_id`` and ``ticket_id`` it was issued under (empty for a
session an account opened for itself), so grant revocation can find the sessions to kill.

Validation of names lives here too, so the CLI can check a name before it calls.
"""

from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import urlencode

import msgspec

#: Workspace names (SPEC.md §1, NEW docs): 1-63 characters, letters either case, digits, - and _.
WORKSPACE_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_-]{0,62}$")
#: Account handles: the tenant-slug rule of SPEC.md §4.2 (lowercase, URL- and DNS-safe).
HANDLE_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
#: API keys: ``tbo_`` + 32 characters (SPEC.md §8).
API_KEY_RE = re.compile(r"^tbo_[A-Za-z0-9]{32}$")

Status = Literal["pending_format", "active", "deleting", "deleted"]
Backend = Literal["managed", "byo"]
Mode = Literal["rw", "ro"]

STATUSES: tuple[str, ...] = ("pending_format", "active", "deleting", "deleted")


class Account(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    handle: str
    created_at: float


class ApiKey(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    account_id: int
    name: str
    hint: str  # "tbo_ab…" — enough to tell keys apart, useless to an attacker
    created_at: float
    revoked_at: float | None = None


class Workspace(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    account_id: int
    handle: str
    name: str
    status: Status
    backend: Backend
    key_prefix: str
    volume_name: str
    bucket: str
    endpoint: str
    region: str
    storage_prefix: str
    cache_profile: str
    created_at: float
    updated_at: float
    deleted_at: float | None = None
    format_user: str = ""  # the live format-scope ACL user ("" once revoked)
    format_expires_at: float | None = None


class MountSession(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    workspace_id: int
    account_id: int
    mode: Mode
    redis_user: str
    s3_user: str  # "" for BYO
    created_at: float
    expires_at: float
    revoked_at: float | None = None
    revoke_reason: str = ""
    host: str = ""
    mountpoint: str = ""
    tenant_id: int | None = None
    runtime_id: str = ""
    grant_id: str = ""
    ticket_id: str = ""
    #: When revocation finished (ACL user, metadata session and S3 user gone); None while a
    #: revoked session's cleanup is still owed (the reaper retries it until done).
    cleaned_at: float | None = None
    #: The API key that opened it ("" for a ticket session): renewal needs it unrevoked.
    key_id: str = ""
    #: The lifetime it was issued for; each renewal extends it by this much (0: not renewable).
    ttl: float = 0.0
    #: SHA-256 of its renewal token ("" when it has none): what the mount process renews with.
    renew_hash: str = ""


# -- requests ----------------------------------------------------------------------------------


class StorageRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """BYO storage location. Never credentials: those stay on the hosts that mount."""

    bucket: str
    endpoint: str
    region: str = ""
    prefix: str = ""


class CreateWorkspaceRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str
    backend: Backend = "managed"
    storage: StorageRequest | None = None
    cache_profile: Literal["interactive", "benchmark", "custom"] = "interactive"
    #: Resume a ``pending_format`` workspace of this name (re-issue format credentials, same
    #: prefix) instead of answering 409 ``workspace_exists``.
    resume: bool = False


class CreateSessionRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    mode: Mode = "rw"
    ttl_seconds: int | None = None
    host: str = ""
    mountpoint: str = ""


class RenewSessionRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    ttl_seconds: int | None = None


class RenewWithTokenRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /sessions/renew``: what a mount process holds (no API key, no ticket)."""

    renewal_token: str


class CreateKeyRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str = ""


class CreateAccountRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    handle: str
    key_name: str = "default"


# -- views (responses) -------------------------------------------------------------------------


class StorageCredentials(msgspec.Struct, frozen=True, kw_only=True):
    access_key_id: str
    secret_access_key: str
    expires_at: float
    session_token: str = ""


class StorageView(msgspec.Struct, frozen=True, kw_only=True):
    backend: Backend
    bucket: str
    endpoint: str
    region: str
    prefix: str
    url: str  # s3://bucket/prefix?endpoint=…&region=… (no secret, ever)
    credentials: StorageCredentials | None = None  # managed only, in create/session responses


class WorkspaceView(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    handle: str
    name: str
    identifier: str  # artifacts://handle/name
    status: Status
    backend: Backend
    volume_name: str
    metadata_key_prefix: str
    storage: StorageView
    cache_profile: str
    created_at: float
    updated_at: float
    deleted_at: float | None = None


class MetaAccess(msgspec.Struct, frozen=True, kw_only=True):
    """What a client needs to reach the workspace's metadata: a URL with an ACL user in it."""

    url: str  # redis://user:password@host:port/0 or redis+cluster://user:password@h:p,h:p
    user: str
    key_prefix: str
    expires_at: float


class CreateWorkspaceResponse(msgspec.Struct, frozen=True, kw_only=True):
    workspace: WorkspaceView
    format: MetaAccess
    storage: StorageView
    resumed: bool = False


class SessionView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    workspace: str  # artifacts://handle/name
    mode: Mode
    redis_user: str
    created_at: float
    expires_at: float
    revoked_at: float | None = None
    revoke_reason: str = ""
    host: str = ""
    mountpoint: str = ""
    #: For a session a mount ticket was exchanged for (issue 8; "" otherwise): which runtime
    #: holds it, under which grant, from which ticket.
    runtime_id: str = ""
    grant_id: str = ""
    ticket_id: str = ""


class Renewal(msgspec.Struct, frozen=True, kw_only=True):
    """How the process that holds a session keeps it alive: ``POST /sessions/renew`` with
    ``token`` (``tbr_…``, shown once) before ``expires_at``; each renewal adds ``ttl_seconds``
    for as long as what issued it allows (its API key unrevoked, its grant live)."""

    token: str
    ttl_seconds: float


class SessionGrant(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a mount needs, returned once when a session is issued."""

    session: SessionView
    meta: MetaAccess
    storage: StorageView
    volume_name: str
    cache_profile: str
    renewal: Renewal | None = None


class SessionRenewed(msgspec.Struct, frozen=True, kw_only=True):
    """A renewal's answer: the session, and how long it now has (seconds, measured by the
    orchestrator, so a host with a skewed clock schedules its next renewal right)."""

    session: SessionView
    expires_in: float


class KeyView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    hint: str
    created_at: float
    revoked_at: float | None = None


class NewKey(msgspec.Struct, frozen=True, kw_only=True):
    """A freshly minted API key: ``key`` is shown here once and never again."""

    id: str
    name: str
    key: str
    created_at: float


class AccountView(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    handle: str
    created_at: float


class WhoAmI(msgspec.Struct, frozen=True, kw_only=True):
    account: AccountView
    key: KeyView | None = None


class NewAccount(msgspec.Struct, frozen=True, kw_only=True):
    account: AccountView
    key: NewKey


class WorkspaceList(msgspec.Struct, frozen=True, kw_only=True):
    workspaces: list[WorkspaceView]


class Quota(msgspec.Struct, frozen=True, kw_only=True):
    """A workspace's limits and what it uses (``artifacts quota show``); 0 means unlimited."""

    workspace: str  # artifacts://handle/name
    capacity: int  # bytes
    inodes: int
    used_bytes: int
    used_inodes: int


class SetQuotaRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """New limits; a field left out keeps its value, 0 removes the limit."""

    capacity: int | None = None
    inodes: int | None = None


class SessionList(msgspec.Struct, frozen=True, kw_only=True):
    sessions: list[SessionView]


class KeyList(msgspec.Struct, frozen=True, kw_only=True):
    keys: list[KeyView]


# -- history (docs/history.md) --------------------------------------------------------------------


class CreateCheckpointRequest(msgspec.Struct, frozen=True, kw_only=True):
    """``name``: 1-63 letters, digits, ``_ . -`` (default ``ckpt-<UTC time>``); ``keep``: retention,
    e.g. ``3600``, ``90m``, ``12h``, ``7d`` (default: until deleted)."""

    name: str | None = None
    keep: str | None = None


class RestoreCheckpointRequest(msgspec.Struct, frozen=True, kw_only=True):
    """``safety``: the name of the checkpoint taken first (default ``before-restore-<time>``)."""

    safety: str | None = None


class CheckpointView(msgspec.Struct, frozen=True, kw_only=True):
    """A checkpoint: ``created`` on the metadata server's clock; ``keep`` seconds of retention
    (0: until deleted); ``kind`` ``user`` or ``safety``; ``changed_keys``: metadata keys
    preserved for it so far (what changed since, as keys)."""

    name: str
    epoch: int
    created: float
    keep: float
    kind: str
    origin: dict[str, Any]
    changed_keys: int


class CheckpointList(msgspec.Struct, frozen=True, kw_only=True):
    checkpoints: list[CheckpointView]


class CheckpointDetail(msgspec.Struct, frozen=True, kw_only=True):
    """``pinned_bytes``: data only this checkpoint's preserved lists still name (what deleting it
    could free); ``changes_since``: paths changed since it was taken."""

    checkpoint: CheckpointView
    changes_since: int
    changed_keys: int
    pinned_bytes: int


class ChangeView(msgspec.Struct, frozen=True, kw_only=True):
    """One path that differs: ``kind`` added, removed, modified or renamed (``old_path`` set)."""

    kind: str
    path: str
    old_path: str | None = None
    type: str = "file"
    diff: str | None = None


class ChangeList(msgspec.Struct, frozen=True, kw_only=True):
    changes: list[ChangeView]


class RestoreResult(msgspec.Struct, frozen=True, kw_only=True):
    """``safety``: the checkpoint taken first (restore it to undo); ``keys``: metadata keys
    brought back; ``removed_inodes``: files created since the checkpoint that were removed."""

    restored: str
    safety: str
    keys: int
    removed_inodes: int


class DeletedCheckpoint(msgspec.Struct, frozen=True, kw_only=True):
    deleted: str


def identifier(handle: str, name: str) -> str:
    return f"artifacts://{handle}/{name}"


def storage_url(bucket: str, prefix: str, endpoint: str, region: str) -> str:
    """The secret-free ``s3://`` URL a client opens (DESIGN.md §9)."""
    path = "/" + prefix.strip("/") if prefix.strip("/") else ""
    query = {k: v for k, v in (("endpoint", endpoint), ("region", region)) if v}
    return f"s3://{bucket}{path}" + (f"?{urlencode(query, safe='/:')}" if query else "")


# -- rows to views -----------------------------------------------------------------------------


def workspace_view(ws: Workspace) -> WorkspaceView:
    storage = StorageView(backend=ws.backend, bucket=ws.bucket, endpoint=ws.endpoint, region=ws.region,
                          prefix=ws.storage_prefix,
                          url=storage_url(ws.bucket, ws.storage_prefix, ws.endpoint, ws.region))
    return WorkspaceView(id=ws.id, handle=ws.handle, name=ws.name, identifier=identifier(ws.handle, ws.name),
                         status=ws.status, backend=ws.backend, volume_name=ws.volume_name,
                         metadata_key_prefix=ws.key_prefix, storage=storage, cache_profile=ws.cache_profile,
                         created_at=ws.created_at, updated_at=ws.updated_at, deleted_at=ws.deleted_at)


def session_view(ws: Workspace, s: MountSession) -> SessionView:
    return SessionView(id=s.id, workspace=identifier(ws.handle, ws.name), mode=s.mode, redis_user=s.redis_user,
                       created_at=s.created_at, expires_at=s.expires_at, revoked_at=s.revoked_at,
                       revoke_reason=s.revoke_reason, host=s.host, mountpoint=s.mountpoint,
                       runtime_id=s.runtime_id, grant_id=s.grant_id, ticket_id=s.ticket_id)


def account_view(a: Account) -> AccountView:
    return AccountView(id=a.id, handle=a.handle, created_at=a.created_at)


def key_view(k: ApiKey) -> KeyView:
    return KeyView(id=k.id, name=k.name, hint=k.hint, created_at=k.created_at, revoked_at=k.revoked_at)
