"""The platform routes (docs/platform.md): tenants, grants, mount tickets and their exchange.

``setup(app, platform)`` adds them to the orchestrator's aiohttp app (``app.make_app`` calls it
when it is given the ``PlatformService``; ``python -m artifacts_orchestrator serve`` builds one
whose signing keys live in the configured ``ticket_keys`` directory).

Routes are declared once in ``ROUTES`` (routing.py: types, auth, idempotency, the SDK-facing
operation id), which the OpenAPI description is generated from. Handlers follow app.py's shape,
with the same helpers (``handlers.py``): authenticate, decode a strict msgspec body, run one
service method on the worker pool, encode. Two routes take no API
key: ``POST /mount-tickets/exchange`` (the ticket's signature is the credential; the runtime never
holds the platform's key) and ``GET /mount-tickets/keys`` (public keys, for anyone who wants to
check a ticket offline). The issuer URL written into a ticket is the address the platform reached
us at (or the service's ``public_url``), which is where its runtime will exchange it.
"""

from __future__ import annotations

from aiohttp import web

from artifacts_orchestrator import platform_models as pm
from artifacts_orchestrator.handlers import (
    SERVICE,
    authenticated,
    decode_body,
    query_flag,
    query_value,
    respond,
    run,
)
from artifacts_orchestrator.platform_service import PlatformService
from artifacts_orchestrator.routing import Query, Routes, register

PLATFORM = web.AppKey("platform", PlatformService)
ROUTES = Routes("platform")


@ROUTES.post("/tenants", "Create a tenant", body=pm.CreateTenantRequest, returns=pm.TenantView, status=201)
async def create_tenant(request: web.Request) -> web.Response:
    account = await authenticated(request)
    req = await decode_body(request)
    return respond(await run(request, request.app[PLATFORM].create_tenant, account, req), 201)


@ROUTES.get("/tenants", "List tenants", returns=pm.TenantList)
async def list_tenants(request: web.Request) -> web.Response:
    account = await authenticated(request)
    return respond(await run(request, request.app[PLATFORM].list_tenants, account))


@ROUTES.get("/tenants/{slug}", "A tenant", returns=pm.TenantView)
async def get_tenant(request: web.Request) -> web.Response:
    account = await authenticated(request)
    return respond(await run(request, request.app[PLATFORM].get_tenant, account, request.match_info["slug"]))


@ROUTES.post("/grants", "Grant a tenant (or one of its runtimes) access to a workspace",
             body=pm.CreateGrantRequest, returns=pm.GrantView, status=201, operation_id="createAccessGrant")
async def create_grant(request: web.Request) -> web.Response:
    account = await authenticated(request)
    req = await decode_body(request)
    return respond(await run(request, request.app[PLATFORM].create_grant, account, req), 201)


@ROUTES.get("/grants", "List access grants", returns=pm.GrantList, operation_id="listAccessGrants",
            query=(Query("tenant", str, "a tenant's slug"), Query("runtime_id", str, "one runtime's grants"),
                   Query("workspace", str, "name, handle/name or artifacts://handle/name"),
                   Query("include_revoked", bool, "also list revoked and expired grants")))
async def list_grants(request: web.Request) -> web.Response:
    account = await authenticated(request)
    return respond(await run(request, request.app[PLATFORM].list_grants, account,
                            tenant_slug=query_value(request, "tenant"),
                            runtime_id=query_value(request, "runtime_id"),
                            workspace=query_value(request, "workspace"),
                            include_revoked=query_flag(request, "include_revoked")))


@ROUTES.get("/grants/{grant_id}", "An access grant", returns=pm.GrantView, operation_id="getAccessGrant")
async def get_grant(request: web.Request) -> web.Response:
    account = await authenticated(request)
    return respond(await run(request, request.app[PLATFORM].get_grant, account, request.match_info["grant_id"]))


@ROUTES.delete("/grants/{grant_id}", "Revoke one access grant", returns=pm.RevokeResult,
               operation_id="revokeAccessGrant")
async def delete_grant(request: web.Request) -> web.Response:
    account = await authenticated(request)
    req = pm.RevokeGrantsRequest(grant_id=request.match_info["grant_id"])
    return respond(await run(request, request.app[PLATFORM].revoke_grants, account, req))


@ROUTES.post("/grants/revoke", "Revoke grants by grant id, tenant, or tenant and runtime",
             body=pm.RevokeGrantsRequest, returns=pm.RevokeResult, operation_id="revokeAccessGrants",
             idempotent=True)
async def revoke_grants(request: web.Request) -> web.Response:
    account = await authenticated(request)
    req = await decode_body(request)
    return respond(await run(request, request.app[PLATFORM].revoke_grants, account, req))


@ROUTES.post("/mount-tickets", "Sign a mount ticket (creating the tenant and runtime grant if missing)",
             body=pm.CreateTicketRequest, returns=pm.TicketIssued, status=201, operation_id="createMountTicket")
async def create_ticket(request: web.Request) -> web.Response:
    account = await authenticated(request)
    req = await decode_body(request)
    issuer = str(request.url.origin())
    return respond(await run(request, request.app[PLATFORM].create_ticket, account, req, issuer), 201)


@ROUTES.post("/mount-tickets/exchange", "Exchange a mount ticket for a mount session (no API key)",
             body=pm.ExchangeRequest, returns=pm.ExchangeResult, status=201, auth="none",
             operation_id="exchangeMountTicket")
async def exchange_ticket(request: web.Request) -> web.Response:
    req = await decode_body(request)
    return respond(await run(request, request.app[PLATFORM].exchange, req), 201)


@ROUTES.get("/mount-tickets/keys", "The public keys mount tickets are checked with", returns=pm.PublicKeyList,
            auth="none", operation_id="listTicketKeys")
async def public_keys(request: web.Request) -> web.Response:
    return respond(await run(request, request.app[PLATFORM].public_keys))


def setup(app: web.Application, platform: PlatformService) -> None:
    assert app[SERVICE] is platform.service, "the platform layer must sit over the app's own Service"
    app[PLATFORM] = platform
    register(app, ROUTES)
