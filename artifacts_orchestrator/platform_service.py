"""The platform layer's business logic: tenants, access grants, mount tickets, exchange, revocation.

``PlatformService`` sits beside ``Service`` (service.py) and reuses it: workspace resolution and
ownership (``resolve``: another account's workspace is 403/404), session provisioning
(``provision_session``: Redis ACL user + scoped S3 user, undone on failure) and session revocation
(``_revoke_session_row``: ``ACL DELUSER`` everywhere, the S3 user deleted with all its keys). It
registers two hooks there: a workspace whose delete is accepted loses every grant and unexchanged
ticket on it (its sessions are killed by the delete flow itself), and each reaper pass expires
grants past their TTL (killing their sessions).

Invariants:

- a ticket is exchanged at most once (``PlatformStore.consume_ticket`` marks it used and inserts
  the session row in one transaction); a ticket whose session could not be provisioned because
  Redis or S3 failed is released so the runtime can retry, any other refusal is final;
- a session issued from a ticket is never wider than its grant: the ticket's mode is checked
  against the grant's at issue, the session gets the ticket's mode (``ro`` is enforced by Redis
  ACL key selectors and a read-only S3 policy), and it expires no later than the grant;
- revocation marks the rows first (grants revoked, unexchanged tickets voided, so nothing new can
  start), then kills the live sessions; an exchange that raced with it re-checks its grant and its
  own session row after provisioning and tears itself down (``still_valid``);
- the runtime never needs the account's API key: the exchange route is authenticated by the
  ticket's signature alone, and the session it gets renews itself with its own renewal token
  (service.py) for as long as its grant is live, never past the grant's expiry
  (``_renew_check``): a mount of a runtime lives as long as its grant, not one session lifetime.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

import msgspec

from artifacts_orchestrator import models as m
from artifacts_orchestrator import platform_models as pm
from artifacts_orchestrator.client import parse_ref
from artifacts_orchestrator.errors import (
    Forbidden,
    GrantNotFound,
    GrantRevoked,
    InvalidRequest,
    MetadataAclProvisioningFailed,
    RenewalRefused,
    StorageProvisioningFailed,
    TenantNotFound,
    WorkspaceNotActive,
)
from artifacts_orchestrator.platform_store import PlatformStore, SQLitePlatformStore
from artifacts_orchestrator.redis_acl import SESSION_USER_PREFIX
from artifacts_orchestrator.service import (
    HOST_MAX,
    MAX_SESSION_TTL,
    MOUNTPOINT_MAX,
    Service,
    new_renewal_token,
)
from artifacts_orchestrator.tickets import (
    MAX_TICKET_TTL,
    MIN_TICKET_TTL,
    KeyRing,
    TicketClaims,
    TicketWorkspace,
)

log = logging.getLogger("artifacts.orchestrator.platform")

#: A ticket's session lives a week between renewals (the longest session), never past its grant's
#: expiry; the runtime renews it at half its life, so an orchestrator outage of 3.5 days costs no
#: mount. Revocation ends it sooner.
TICKET_SESSION_TTL = MAX_SESSION_TTL



class PlatformService:
    def __init__(self, service: Service, keys: KeyRing, store: PlatformStore | None = None, *,
                 public_url: str | None = None) -> None:
        self.service = service
        self.keys = keys
        self.store: PlatformStore = store or SQLitePlatformStore(service.store)  # type: ignore[arg-type]
        self.public_url = public_url
        self.clock = service.clock
        #: Lifetime of a ticket's session between renewals (tests of renewal use seconds).
        self.session_ttl: float = TICKET_SESSION_TTL
        service.delete_hooks.append(self._workspace_deleted)
        service.reap_hooks.append(self.reap)
        service.renew_checks.append(self._renew_check)

    # -- views ------------------------------------------------------------------------------------

    def _grant_view(self, g: pm.AccessGrant) -> pm.GrantView:
        ws = self.service.store.get_workspace(g.workspace_id)
        tenant = self.store.tenant_by_id(g.tenant_id)
        return pm.grant_view(g, m.identifier(ws.handle, ws.name) if ws else "", tenant.slug if tenant else "",
                             self.clock())

    # -- tenants ----------------------------------------------------------------------------------

    def _tenant(self, account: m.Account, slug: str, *, create: bool = False) -> pm.Tenant:
        if not pm.TENANT_SLUG_RE.match(slug or ""):
            raise InvalidRequest(f"invalid tenant slug {slug!r}: it must match ^[a-z0-9][a-z0-9-]{{0,62}}$")
        if create:
            return self.store.create_tenant(self._tenant_fields(account, slug, "", {}), exist_ok=True)[0]
        tenant = self.store.get_tenant(account.id, slug)
        if tenant is None:
            raise TenantNotFound(f"no tenant {slug!r}")
        return tenant

    def _tenant_fields(self, account: m.Account, slug: str, external_id: str, metadata: dict) -> dict[str, Any]:
        if len(external_id) > pm.EXTERNAL_ID_MAX:
            raise InvalidRequest(f"external_id is longer than {pm.EXTERNAL_ID_MAX} characters")
        text = msgspec.json.encode(metadata).decode()
        if len(text) > pm.METADATA_MAX_BYTES:
            raise InvalidRequest(f"metadata is larger than {pm.METADATA_MAX_BYTES} bytes of JSON")
        return {"account_id": account.id, "slug": slug, "external_id": external_id, "metadata": text,
                "created_at": self.clock()}

    def create_tenant(self, account: m.Account, req: pm.CreateTenantRequest) -> pm.TenantView:
        if not pm.TENANT_SLUG_RE.match(req.slug):
            raise InvalidRequest(f"invalid tenant slug {req.slug!r}: it must match ^[a-z0-9][a-z0-9-]{{0,62}}$")
        tenant, _ = self.store.create_tenant(self._tenant_fields(account, req.slug, req.external_id, req.metadata),
                                             exist_ok=False)
        return pm.tenant_view(tenant)

    def list_tenants(self, account: m.Account) -> pm.TenantList:
        return pm.TenantList(tenants=[pm.tenant_view(t) for t in self.store.list_tenants(account.id)])

    def get_tenant(self, account: m.Account, slug: str) -> pm.TenantView:
        return pm.tenant_view(self._tenant(account, slug))

    # -- grants -----------------------------------------------------------------------------------

    def _workspace(self, account: m.Account, ref: str, *, active: bool) -> m.Workspace:
        ws = self.service.resolve(account, *parse_ref(ref))
        if ws.status in ("deleting", "deleted") or (active and ws.status != "active"):
            raise WorkspaceNotActive(f"{ws.handle}/{ws.name} is {ws.status}")
        return ws

    @staticmethod
    def _runtime(runtime_id: str) -> str:
        if not pm.RUNTIME_ID_RE.match(runtime_id or ""):
            raise InvalidRequest(f"invalid runtime id {runtime_id!r}: 1-128 printable characters "
                                 "(letters, digits, . _ : @ / -), starting with a letter or digit")
        return runtime_id

    def create_grant(self, account: m.Account, req: pm.CreateGrantRequest) -> pm.GrantView:
        runtime = "" if req.runtime_id is None else self._runtime(req.runtime_id)
        if req.ttl_seconds is not None and not pm.MIN_GRANT_TTL <= req.ttl_seconds <= pm.MAX_GRANT_TTL:
            raise InvalidRequest(f"ttl_seconds must be between {pm.MIN_GRANT_TTL} and {pm.MAX_GRANT_TTL}")
        ws = self._workspace(account, req.workspace, active=False)
        tenant = self._tenant(account, req.tenant_slug, create=True)
        now = self.clock()
        grant = pm.AccessGrant(id="gr_" + secrets.token_hex(8), account_id=account.id, workspace_id=ws.id,
                               tenant_id=tenant.id, runtime_id=runtime, mode=req.mode, created_at=now,
                               expires_at=None if req.ttl_seconds is None else now + req.ttl_seconds)
        self.store.add_grant(grant)
        log.info("grant %s: %s/%s -> tenant %s runtime %s (%s)", grant.id, ws.handle, ws.name, tenant.slug,
                 runtime or "*", req.mode)
        return self._grant_view(grant)

    def list_grants(self, account: m.Account, *, tenant_slug: str | None = None, runtime_id: str | None = None,
                    workspace: str | None = None, include_revoked: bool = False) -> pm.GrantList:
        where: dict[str, Any] = {}
        if tenant_slug is not None:
            where["tenant_id"] = self._tenant(account, tenant_slug).id
        if runtime_id is not None:
            where["runtime_id"] = runtime_id
        if workspace is not None:
            where["workspace_id"] = self.service.resolve(account, *parse_ref(workspace)).id
        rows = self.store.list_grants(account.id, include_revoked=include_revoked, now=self.clock(), **where)
        return pm.GrantList(grants=[self._grant_view(g) for g in rows])

    def get_grant(self, account: m.Account, grant_id: str) -> pm.GrantView:
        return self._grant_view(self._own_grant(account, grant_id))

    def _own_grant(self, account: m.Account, grant_id: str) -> pm.AccessGrant:
        grant = self.store.get_grant(grant_id)
        if grant is None or grant.account_id != account.id:
            raise GrantNotFound(f"no grant {grant_id!r}")
        return grant

    def revoke_grants(self, account: m.Account, req: pm.RevokeGrantsRequest) -> pm.RevokeResult:
        """By ``grant_id``; by ``tenant_slug`` (the whole tenant); by ``tenant_slug`` +
        ``runtime_id`` (the runtime's grants, and its live sessions and unexchanged tickets
        under tenant-wide grants too)."""
        if req.grant_id is not None:
            if req.tenant_slug is not None or req.runtime_id is not None:
                raise InvalidRequest("give grant_id alone, or tenant_slug (and optionally runtime_id)")
            where: dict[str, Any] = {"id": self._own_grant(account, req.grant_id).id}
            sessions: dict[str, Any] = {"grant_id": where["id"]}
            tickets: dict[str, Any] = {"grant_id": where["id"]}
        elif req.tenant_slug is not None:
            tenant = self._tenant(account, req.tenant_slug)
            where = {"tenant_id": tenant.id}
            if req.runtime_id is not None:
                where["runtime_id"] = self._runtime(req.runtime_id)
            sessions = tickets = dict(where)
        else:
            raise InvalidRequest("revoke needs grant_id, or tenant_slug (and optionally runtime_id)")
        return self._revoke(account.id, where, sessions, tickets, "revoked")

    def _revoke(self, account_id: int, where: dict, sessions: dict, tickets: dict, reason: str) -> pm.RevokeResult:
        now = self.clock()
        grants = self.store.revoke_grants(account_id, now, reason, **where)
        # Rows first, then sessions: if Redis or S3 fails midway the call fails (500), a repeat
        # finds the sessions still live, and the reaper kills those of revoked grants meanwhile.
        voided = self.store.void_tickets(account_id, now, **tickets)
        killed = 0
        for row in self.store.live_sessions(account_id, **sessions):
            self.service._revoke_session_row(row, f"grant {reason}")
            killed += 1
        if grants or killed or voided:
            log.info("revoked %d grants, %d sessions, %d tickets (%s)", len(grants), killed, voided, reason)
        return pm.RevokeResult(grants=[self._grant_view(g) for g in grants], sessions_revoked=killed,
                               tickets_voided=voided)

    def _workspace_deleted(self, ws: m.Workspace) -> None:
        self.store.revoke_grants(ws.account_id, self.clock(), "workspace deleted", workspace_id=ws.id)
        self.store.void_tickets(ws.account_id, self.clock(), workspace_id=ws.id)

    def _renew_check(self, row: m.MountSession, now: float) -> float | None:
        """A ticket's session renews while its grant is live, and never past the grant's expiry."""
        if not row.grant_id:
            return None
        grant = self.store.get_grant(row.grant_id)
        if grant is None or grant.revoked_at is not None:
            raise RenewalRefused(f"the access grant of session {row.id} was revoked")
        if grant.expires_at is not None and grant.expires_at <= now:
            raise RenewalRefused(f"the access grant of session {row.id} has expired")
        return grant.expires_at

    def reap(self, now: float) -> dict[str, int]:
        """Grants past their TTL, and live sessions of revoked grants (a revocation cut short)."""
        expired = self.store.expired_grants(now)
        for g in expired:
            self._revoke(g.account_id, {"id": g.id}, {"grant_id": g.id}, {"grant_id": g.id}, "expired")
        leftover = self.store.sessions_of_revoked_grants()
        for row in leftover:
            self.service._revoke_session_row(row, "grant revoked")
        return {"grants_expired": len(expired), "grant_sessions": len(leftover)}

    # -- tickets ----------------------------------------------------------------------------------

    def create_ticket(self, account: m.Account, req: pm.CreateTicketRequest, issuer: str) -> pm.TicketIssued:
        """The one-shot path: tenant and runtime-scoped grant made if missing, then a signed ticket."""
        runtime = self._runtime(req.runtime_id)
        if req.ttl_seconds is None:
            raise InvalidRequest("ttl_seconds is required for a mount ticket "
                                 f"({MIN_TICKET_TTL}..{MAX_TICKET_TTL} seconds)")
        if not MIN_TICKET_TTL <= req.ttl_seconds <= MAX_TICKET_TTL:
            raise InvalidRequest(f"ttl_seconds must be between {MIN_TICKET_TTL} and {MAX_TICKET_TTL}")
        ws = self._workspace(account, req.workspace, active=True)
        tenant = self._tenant(account, req.tenant_slug, create=True)
        now = self.clock()
        new = pm.AccessGrant(id="gr_" + secrets.token_hex(8), account_id=account.id, workspace_id=ws.id,
                             tenant_id=tenant.id, runtime_id=runtime, mode=req.mode, created_at=now)
        grant, _ = self.store.grant_for_ticket(new, now)
        if pm.MODE_RANK[req.mode] > pm.MODE_RANK[grant.mode]:
            raise Forbidden(f"mode {req.mode} exceeds the grant's mode {grant.mode} (grant {grant.id}); "
                            "revoke it and issue again to widen access")
        exp = now + req.ttl_seconds
        if grant.expires_at is not None:
            exp = min(exp, grant.expires_at)  # a ticket never outlives its grant
        jti = secrets.token_hex(16)
        self.store.add_ticket(pm.TicketRecord(jti=jti, account_id=account.id, grant_id=grant.id, workspace_id=ws.id,
                                              tenant_id=tenant.id, runtime_id=runtime, mode=req.mode,
                                              issued_at=now, expires_at=exp))
        claims = TicketClaims(v=1, jti=jti, iss=(self.public_url or issuer).rstrip("/"), iat=now, exp=exp,
                              account_id=account.id, workspace=TicketWorkspace(id=ws.id, ref=f"{ws.handle}/{ws.name}"),
                              mode=req.mode, tenant=tenant.slug, tenant_id=tenant.id, runtime_id=runtime,
                              grant_id=grant.id)
        log.info("ticket %s… for %s/%s runtime %s of tenant %s (%s, until %.0f)", jti[:8], ws.handle, ws.name,
                 runtime, tenant.slug, req.mode, exp)
        return pm.TicketIssued(mount_ticket=self.keys.sign(claims), ticket_id=jti, expires_at=exp,
                               grant=self._grant_view(grant), tenant=pm.tenant_view(tenant))

    def exchange(self, req: pm.ExchangeRequest) -> pm.ExchangeResult:
        """A genuine, unexpired, unused ticket of a live grant -> a mount session (once)."""
        claims = self.keys.verify(req.mount_ticket)
        mode = req.mode or claims.mode
        if pm.MODE_RANK[mode] > pm.MODE_RANK[claims.mode]:
            raise Forbidden(f"this mount ticket allows {claims.mode} only")
        if req.workspace is not None:
            handle, name = parse_ref(req.workspace)
            if f"{handle}/{name}" != claims.workspace.ref and not (handle == "~" and
                                                                    claims.workspace.ref.endswith("/" + name)):
                raise Forbidden(f"this mount ticket is for {claims.workspace.ref}, not {req.workspace}")
        ws = self.service.store.get_workspace(claims.workspace.id)
        if ws is None or ws.account_id != claims.account_id:
            raise Forbidden("the ticket's workspace does not exist")
        if ws.status != "active":
            raise WorkspaceNotActive(f"{claims.workspace.ref} is {ws.status}")
        grant = self.store.get_grant(claims.grant_id)
        if grant is None:
            raise GrantRevoked("access for this ticket was revoked")
        now = self.clock()
        sid = secrets.token_hex(8)
        user = f"{SESSION_USER_PREFIX}{sid}"
        ttl = self.session_ttl
        expires = now + ttl
        if grant.expires_at is not None:
            expires = min(expires, grant.expires_at)
        token, token_hash = new_renewal_token()
        row = m.MountSession(id=sid, workspace_id=ws.id, account_id=ws.account_id, mode=mode,
                             redis_user=user, s3_user=user if ws.backend == "managed" else "", created_at=now,
                             expires_at=expires, host=req.host[:HOST_MAX], mountpoint=req.mountpoint[:MOUNTPOINT_MAX],
                             tenant_id=claims.tenant_id, runtime_id=claims.runtime_id, grant_id=claims.grant_id,
                             ticket_id=claims.jti, ttl=ttl, renew_hash=token_hash)
        self.store.consume_ticket(claims.jti, now, row)

        def still_valid() -> None:
            g = self.store.get_grant(claims.grant_id)
            s = self.service.store.get_session(sid)
            if g is None or g.revoked_at is not None or s is None or s.revoked_at is not None:
                raise GrantRevoked("access for this ticket was revoked while the mount was being set up")

        try:
            mount = self.service.provision_session(ws, row, still_valid, renewal_token=token)
        except (MetadataAclProvisioningFailed, StorageProvisioningFailed):
            self.store.release_ticket(claims.jti)  # nothing was handed out: the runtime may retry
            raise
        log.info("ticket %s… exchanged: session %s for runtime %s of tenant %s", claims.jti[:8], sid,
                 claims.runtime_id, claims.tenant)
        return pm.ExchangeResult(mount=mount, workspace=claims.workspace.ref, tenant=claims.tenant,
                                 runtime_id=claims.runtime_id, grant_id=claims.grant_id)

    def public_keys(self) -> pm.PublicKeyList:
        return pm.PublicKeyList(keys=self.keys.public_keys())
