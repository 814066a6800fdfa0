"""The platform routes (docs/platform.md): tenants, grants, mount tickets and their exchange.

``setup(app, service)`` adds them to the orchestrator's aiohttp app (app.py calls it), building a
``PlatformService`` whose signing keys live in ``<database dir>/ticket-keys`` unless the service
already carries one (``service.platform``, e.g. set by ``build_service`` from the config).

Handlers follow app.py's shape: authenticate, decode a strict msgspec body, run one service
method on the worker pool, encode. Two routes take no API key: ``POST /mount-tickets/exchange``
(the ticket's signature is the credential; the runtime never holds the platform's key) and
``GET /mount-tickets/keys`` (public keys, for anyone who wants to check a ticket offline). The
issuer URL written into a ticket is the address the platform reached us at (or the service's
``public_url``), which is where its runtime will exchange it.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from artifacts_orchestrator import platform_models as pm
from artifacts_orchestrator.app import SERVICE, _account, _body, _flag, _json, _run
from artifacts_orchestrator.platform_service import PlatformService
from artifacts_orchestrator.service import Service
from artifacts_orchestrator.tickets import KeyRing

PLATFORM = web.AppKey("platform", PlatformService)


def platform_for(service: Service) -> PlatformService:
    """The service's platform layer, made on first use with keys beside the database."""
    platform = getattr(service, "platform", None)
    if platform is None:
        db = Path(getattr(service.store, "path", "orchestrator.db"))
        platform = PlatformService(service, KeyRing(db.parent / "ticket-keys", clock=service.clock))
        service.platform = platform  # type: ignore[attr-defined]
    return platform


async def create_tenant(request: web.Request) -> web.Response:
    account = await _account(request)
    req = await _body(request, pm.CreateTenantRequest)
    return _json(await _run(request, request.app[PLATFORM].create_tenant, account, req), 201)


async def list_tenants(request: web.Request) -> web.Response:
    account = await _account(request)
    return _json(await _run(request, request.app[PLATFORM].list_tenants, account))


async def get_tenant(request: web.Request) -> web.Response:
    account = await _account(request)
    return _json(await _run(request, request.app[PLATFORM].get_tenant, account, request.match_info["slug"]))


async def create_grant(request: web.Request) -> web.Response:
    account = await _account(request)
    req = await _body(request, pm.CreateGrantRequest)
    return _json(await _run(request, request.app[PLATFORM].create_grant, account, req), 201)


async def list_grants(request: web.Request) -> web.Response:
    account = await _account(request)
    q = request.query
    return _json(await _run(request, request.app[PLATFORM].list_grants, account, tenant_slug=q.get("tenant"),
                            runtime_id=q.get("runtime_id"), workspace=q.get("workspace"),
                            include_revoked=_flag(request, "include_revoked")))


async def get_grant(request: web.Request) -> web.Response:
    account = await _account(request)
    return _json(await _run(request, request.app[PLATFORM].get_grant, account, request.match_info["grant_id"]))


async def delete_grant(request: web.Request) -> web.Response:
    account = await _account(request)
    req = pm.RevokeGrantsRequest(grant_id=request.match_info["grant_id"])
    return _json(await _run(request, request.app[PLATFORM].revoke_grants, account, req))


async def revoke_grants(request: web.Request) -> web.Response:
    account = await _account(request)
    req = await _body(request, pm.RevokeGrantsRequest)
    return _json(await _run(request, request.app[PLATFORM].revoke_grants, account, req))


async def create_ticket(request: web.Request) -> web.Response:
    account = await _account(request)
    req = await _body(request, pm.CreateTicketRequest)
    issuer = str(request.url.origin())
    return _json(await _run(request, request.app[PLATFORM].create_ticket, account, req, issuer), 201)


async def exchange_ticket(request: web.Request) -> web.Response:
    req = await _body(request, pm.ExchangeRequest)
    return _json(await _run(request, request.app[PLATFORM].exchange, req), 201)


async def public_keys(request: web.Request) -> web.Response:
    return _json(await _run(request, request.app[PLATFORM].public_keys))


def setup(app: web.Application, service: Service) -> None:
    if not hasattr(service, "delete_hooks"):
        return  # a stand-in for Service (tests of the HTTP shell alone): no platform layer
    app[PLATFORM] = platform_for(service)
    assert app[SERVICE] is service
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
