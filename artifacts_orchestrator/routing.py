"""Route declarations: each HTTP route is declared once, with its msgspec types, next to its handler.

::

    ROUTES = Routes("tenants")

    @ROUTES.post("/tenants", "Create a tenant", body=pm.CreateTenantRequest, returns=pm.TenantView,
                 status=201)
    async def create_tenant(request): ...   # ``await decode_body(request)`` decodes a CreateTenantRequest

Moving parts:
- ``Route``: method, path (aiohttp's ``{param}`` template, which is also OpenAPI's), the request
  body type, the success body type and status(es), who may call it (an API key, the admin token,
  anyone), its query parameters, whether repeating it is safe (``idempotent``: SDKs retry only
  those), and the operation id (the SDK-facing name, camelCase);
- ``Routes``: an ordered table a module fills with decorators (the handler itself is returned
  unchanged); ``register(app, *tables)`` adds every route to the aiohttp router and records it in
  the app (``ROUTE_TABLE``), which is what ``handlers.decode_body`` reads the body type from and
  what ``openapi.document`` describes. A module that adds routes (the platform's, later the agents'
  and the console's) declares its own table and is registered by ``make_app``: nothing else to
  touch for the OpenAPI description and the SDK types to follow.

Invariant: the router and ``ROUTE_TABLE`` hold exactly the same (method, path) pairs, so the
OpenAPI description cannot miss a route nor describe one that does not exist
(tests/orchestrator/test_orchestrator_openapi.py checks it on the real app).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from artifacts_orchestrator.casing import camel

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Auth = Literal["api_key", "admin", "none", "agent"]
#: Largest request body of a route unless it says otherwise (requests are small JSON documents).
MAX_BODY = 64 << 10

#: Methods whose repetition is safe by HTTP's definition; a POST says so explicitly.
_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE"})
_PARAM_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Query:
    """A query parameter (``name`` in snake_case; its camelCase spelling is accepted too)."""

    name: str
    type: type = str
    description: str = ""


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    operation_id: str
    body: Any = None
    returns: Any = None
    status: int = 200
    #: Other success statuses answered with the same body (e.g. 200 for a resumed create).
    also: tuple[int, ...] = ()
    auth: Auth = "api_key"
    query: tuple[Query, ...] = ()
    idempotent: bool = False
    description: str = ""
    #: JSON Schemas given as such (the agent file API's, generated from its tool descriptions)
    #: where there is no msgspec type; the error schema's name in ``components.schemas``.
    body_schema: dict | None = field(default=None, compare=False)  # dicts: not part of the hash
    returns_schema: dict | None = field(default=None, compare=False)
    errors: str = "Error"
    #: Largest body accepted (413 past it); the app's reading limit is the largest of these.
    max_body: int = MAX_BODY

    @property
    def path_params(self) -> list[str]:
        return _PARAM_RE.findall(self.path)


@dataclass
class Routes:
    """An ordered table of route declarations under one OpenAPI tag."""

    tag: str
    routes: list[Route] = field(default_factory=list)

    def route(self, method: str, path: str, summary: str, *, body: Any = None, returns: Any = None,
              status: int = 200, also: tuple[int, ...] = (), auth: Auth = "api_key",
              query: tuple[Query, ...] = (), idempotent: bool | None = None, operation_id: str = "",
              tag: str = "", **extra: Any) -> Callable[[Handler], Handler]:
        method = method.upper()

        def declare(handler: Handler) -> Handler:
            doc = (handler.__doc__ or "").strip()
            self.routes.append(Route(
                method=method, path=path, handler=handler, summary=summary, tag=tag or self.tag,
                operation_id=operation_id or camel(handler.__name__), body=body, returns=returns,
                status=status, also=also, auth=auth, query=query,
                idempotent=method in _IDEMPOTENT_METHODS if idempotent is None else idempotent,
                description=doc, **extra))
            return handler
        return declare

    def get(self, path: str, summary: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("GET", path, summary, **kw)

    def post(self, path: str, summary: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("POST", path, summary, **kw)

    def put(self, path: str, summary: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("PUT", path, summary, **kw)

    def delete(self, path: str, summary: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("DELETE", path, summary, **kw)

    def patch(self, path: str, summary: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("PATCH", path, summary, **kw)

    def __iter__(self) -> Iterator[Route]:
        return iter(self.routes)


#: Every route the app serves, by (method, path template), in registration order.
ROUTE_TABLE = web.AppKey("route_table", dict)


def register(app: web.Application, *tables: Routes) -> None:
    """Add each declared route to ``app``'s router (no implicit HEAD: only what is described)."""
    if ROUTE_TABLE not in app:
        app[ROUTE_TABLE] = {}
    table: dict[tuple[str, str], Route] = app[ROUTE_TABLE]
    for routes in tables:
        for r in routes:
            key = (r.method, r.path)
            if key in table:
                raise ValueError(f"route {r.method} {r.path} is declared twice")
            if any(o.operation_id == r.operation_id for o in table.values()):
                raise ValueError(f"operation id {r.operation_id} is used twice")
            table[key] = r
            app.router.add_route(r.method, r.path, r.handler)


def routes_of(app: web.Application) -> list[Route]:
    return list(app[ROUTE_TABLE].values())


def route_of(request: web.Request) -> Route:
    """The declaration of the route ``request`` matched."""
    resource = request.match_info.route.resource
    assert resource is not None, "no route matched this request"
    return request.app[ROUTE_TABLE][(request.method, resource.canonical)]
