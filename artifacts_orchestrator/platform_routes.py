"""The platform routes (docs/platform.md): tenants, grants, mount tickets and their exchange.

``setup(app, platform)`` adds them to the orchestrator's aiohttp app (``app.make_app`` calls it
when it is given the ``PlatformService``; ``python -m artifacts_orchestrator serve`` builds one
whose signing keys live in the configured ``ticket_keys`` directory).

Handlers follow app.py's shape, with the same helpers (``handlers.py``): authenticate, decode a
strict msgspec body, run one service method on the worker pool, encode. Two routes take no API
key: ``POST /mount-tickets/exchange`` (the ticket's signature is the credential; the runtime never
holds the platform's key) and ``GET /mount-tickets/keys`` (public keys, for anyone who wants to
check a ticket offline). The issuer URL written into a ticket is the address the platform reached
us at (or the service's ``public_url``), which is where its runtime will exchange it.
"""

from __future__ import annotations

from aiohttp import web

from artifacts_orchestrator import platform_models as pm
from artifacts_orchestrator.handlers import SERVICE, authenticated, decode_body, query_flag, respond, run
from artifacts_orchestrator.platform_service import PlatformService

PLATFORM = web.AppKey("platform", PlatformService)


async def create_tenant(request: web.Request) -> web.Response:
    account = await authenticated(request)
    req = await decode_body(request, pm.CreateTenantRequest)
    return respond(await run(request, request.app[PLATFORM].create_tenant, account, req), 201)


async def list_tenants(request: web.Request) -> web.Response:
    account = await authenticated(request)
    return respond(await run(request, request.app[PLATFORM].list_tenants, account))


async def get_tenant(request: web.Request) -> web.Response:
    account = await authenticated(request)
    return respond(await run(request, request.app[PLATFORM].get_tenant, account, request.match_info["slug"]))


async def create_grant(request: web.Request) -> web.Response:
    account = await authenticated(request)
    req = await decode_body(request, pm.CreateGrantRequest)
    return respond(await run(request, request.app[PLATFORM].create_grant, account, req), 201)


async def list_grants(request: web.Request) -> web.Response:
    account = await authenticated(request)
    q = request.query
    return respond(await run(request, request.app[PLATFORM].list_grants, account, tenant_slug=q.get("tenant"),
                            runtime_id=q.get("runtime_id"), workspace=q.get("workspace"),
                            include_revoked=query_flag(request, "include_revoked")))


async def get_grant(request: web.Request) -> web.Response:
    account = await authenticated(request)
    return respond(await run(request, request.app[PLATFORM].get_grant, account, request.match_info["grant_id"]))


async def delete_grant(request: web.Request) -> web.Response:
    account = await authenticated(request)
    req = pm.RevokeGrantsRequest(grant_id=request.match_info["grant_id"])
    return respond(await run(request, request.app[PLATFORM].revoke_grants, account, req))


async def revoke_grants(request: web.Request) -> web.Response:
    account = await authenticated(request)
    req = await decode_body(request, pm.RevokeGrantsRequest)
    return respond(await run(request, request.app[PLATFORM].revoke_grants, account, req))


async def create_ticket(request: web.Request) -> web.Response:
    account = await authenticated(request)
    req = await decode_body(request, pm.CreateTicketRequest)
    issuer = str(request.url.origin())
    return respond(await run(request, request.app[PLATFORM].create_ticket, account, req, issuer), 201)


async def exchange_ticket(request: web.Request) -> web.Response:
    req = await decode_body(request, pm.ExchangeRequest)
    return respond(await run(request, request.app[PLATFORM].exchange, req), 201)


async def public_keys(request: web.Request) -> web.Response:
    return respond(await run(request, request.app[PLATFORM].public_keys))


def setup(app: web.Application, platform: PlatformService) -> None:
    assert app[SERVICE] is platform.service, "the platform layer must sit over the app's own Service"
    app[PLATFORM] = platform
    r = app.router
    r.add_post("/tenants", create_tenant)
    r.add_get("/tenants", list_tenants)
    r.add_get("/tenants/{slug}", get_tenant)
    r.add_post("/grants", create_grant)
    r.add_get("/grants", list_grants)
    r.add_post("/grants/revoke", revoke_grants)
    r.add_get("/grants/{grant_id}", get_grant)
    r.add_delete("/grants/{grant_id}", delete_grant)
    r.add_post("/mount-tickets", create_ticket)
    r.add_post("/mount-tickets/exchange", exchange_ticket)
    r.add_get("/mount-tickets/keys", public_keys)
