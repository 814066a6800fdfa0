"""Rows and wire types of the platform layer (issue 8): tenants, access grants, mount tickets.

The chain (SPEC.md §4.2, seed 003): an account (the platform's API key, the "root user") owns
tenants (its customers); a tenant scopes runtimes (opaque ids the platform picks: no row); an
access grant lets a tenant (tenant-wide, ``runtime_id == ""``) or one runtime mount one workspace
in ``ro`` or ``rw``, optionally until ``expires_at``; a mount ticket is a signed, short-lived,
single-use authorization under one grant (tickets.py), recorded here by its ``jti``.

Every row carries the ``account_id`` that made it: one account never sees another's tenants or
grants (404, as for workspaces). Rows hold no secret (the ticket itself is never stored, only its
id and what it authorizes).
"""

from __future__ import annotations

import re
from typing import Any, Literal

import msgspec

from artifacts_orchestrator.models import Mode, SessionGrant
from artifacts_orchestrator.tickets import MountTicket, PublicKey

#: Tenant slugs (SPEC.md §4.2): 1-63 of a-z, 0-9 and -, starting alphanumeric (URL- and DNS-safe).
TENANT_SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
#: Runtime ids are opaque to us, but printable and bounded: they appear in listings and logs.
RUNTIME_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}$")
#: An external id is the platform's own customer id (any printable text, bounded for listings).
EXTERNAL_ID_MAX = 256
#: Tenant metadata is free-form JSON, bounded so a listing stays small.
METADATA_MAX_BYTES = 4096
#: Grant lifetime bounds when a TTL is given: a minute (less is a typo) to a year.
MIN_GRANT_TTL, MAX_GRANT_TTL = 60, 366 * 24 * 3600

MODE_RANK = {"ro": 0, "rw": 1}


class Tenant(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    account_id: int
    slug: str
    external_id: str
    metadata: str  # JSON text
    created_at: float


class AccessGrant(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    account_id: int
    workspace_id: int
    tenant_id: int
    runtime_id: str  # "" = tenant-wide
    mode: Mode
    created_at: float
    expires_at: float | None = None
    revoked_at: float | None = None
    revoke_reason: str = ""


class TicketRecord(msgspec.Struct, frozen=True, kw_only=True):
    jti: str
    account_id: int
    grant_id: str
    workspace_id: int
    tenant_id: int
    runtime_id: str
    mode: Mode
    issued_at: float
    expires_at: float
    used_at: float | None = None
    session_id: str = ""
    revoked_at: float | None = None


# -- requests ----------------------------------------------------------------------------------


class CreateTenantRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    slug: str
    external_id: str = ""
    metadata: dict[str, Any] = {}


class CreateGrantRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    workspace: str  # name | handle/name | artifacts://handle/name
    tenant_slug: str
    runtime_id: str | None = None  # None: tenant-wide
    mode: Mode = "rw"
    ttl_seconds: int | None = None


class RevokeGrantsRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One of: ``grant_id``; ``tenant_slug`` (the whole tenant); ``tenant_slug`` + ``runtime_id``."""

    grant_id: str | None = None
    tenant_slug: str | None = None
    runtime_id: str | None = None


class CreateTicketRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    tenant_slug: str
    runtime_id: str
    workspace: str
    mode: Mode = "rw"
    ttl_seconds: int | None = None  # required; None is refused with a clear message


class ExchangeRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    mount_ticket: dict[str, Any]
    #: What the runtime means to mount (``handle/name``); refused when it is not the ticket's.
    workspace: str | None = None
    #: Narrow an ``rw`` ticket to a read-only session (never the other way).
    mode: Mode | None = None
    host: str = ""
    mountpoint: str = ""


# -- views -------------------------------------------------------------------------------------


class TenantView(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    slug: str
    external_id: str
    metadata: dict[str, Any]
    created_at: float


class GrantView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    workspace: str  # artifacts://handle/name
    tenant: str  # slug
    runtime_id: str | None  # None: tenant-wide
    mode: Mode
    created_at: float
    expires_at: float | None = None
    revoked_at: float | None = None
    revoke_reason: str = ""
    status: Literal["active", "revoked", "expired"] = "active"


class TenantList(msgspec.Struct, frozen=True, kw_only=True):
    tenants: list[TenantView]


class GrantList(msgspec.Struct, frozen=True, kw_only=True):
    grants: list[GrantView]


class RevokeResult(msgspec.Struct, frozen=True, kw_only=True):
    grants: list[GrantView]
    sessions_revoked: int
    tickets_voided: int


class TicketIssued(msgspec.Struct, frozen=True, kw_only=True):
    """``mount_ticket`` is what the runtime's ``mount-ticket.json`` holds (its JSON, verbatim)."""

    mount_ticket: MountTicket
    ticket_id: str
    expires_at: float
    grant: GrantView
    tenant: TenantView


class ExchangeResult(msgspec.Struct, frozen=True, kw_only=True):
    """What a ticket is exchanged for: a mount session (the same shape an account's own mount
    gets) plus what the ticket authorized."""

    mount: SessionGrant
    workspace: str  # handle/name
    tenant: str
    runtime_id: str
    grant_id: str


class PublicKeyList(msgspec.Struct, frozen=True, kw_only=True):
    keys: list[PublicKey]


def tenant_view(t: Tenant) -> TenantView:
    return TenantView(id=t.id, slug=t.slug, external_id=t.external_id,
                      metadata=msgspec.json.decode(t.metadata or "{}"), created_at=t.created_at)


def grant_view(g: AccessGrant, workspace: str, tenant: str, now: float) -> GrantView:
    status: Literal["active", "revoked", "expired"]
    if g.revoked_at is not None:
        status = "expired" if g.revoke_reason == "expired" else "revoked"
    elif g.expires_at is not None and g.expires_at <= now:
        status = "expired"  # the reaper has not passed yet; it is refused all the same
    else:
        status = "active"
    return GrantView(id=g.id, workspace=workspace, tenant=tenant, runtime_id=g.runtime_id or None, mode=g.mode,
                     created_at=g.created_at, expires_at=g.expires_at, revoked_at=g.revoked_at,
                     revoke_reason=g.revoke_reason, status=status)
