"""The OpenAPI 3.1 description of the orchestrator, generated from the declared routes (routing.py).

``document(routes)`` turns route declarations into the description: one operation per route
(``operationId``, tag, summary, the handler's docstring), its security (the API key, the admin
token, or none), path and query parameters, the request body and the success and error
responses, with every msgspec type in ``components.schemas`` (``msgspec.json.schema_components``).
``GET /openapi.json`` serves it for the app's own routes; ``python -m artifacts_orchestrator
openapi`` writes it for a full orchestrator (what sdk/js/openapi.json holds and the Node SDK's
types are generated from: sdk/js/scripts/gen-types.mjs).

Decisions the schema alone cannot carry:
- a struct used only in responses lists every property as ``required``: msgspec encodes fields
  with defaults too (no struct here sets ``omit_defaults``), so clients may rely on each being
  present; request structs keep msgspec's list (fields with defaults may be left out);
- ``x-idempotent`` says whether repeating the operation is safe (SDKs retry only those);
- the error body is one schema (``Error``): ``code`` is an enum of every code the server sends and
  ``x-error-statuses`` ties each to its HTTP status (errors.py's table);
- the naming rule of casing.py (camelCase accepted in requests) is stated in ``info.description``:
  the schemas show the canonical snake_case names.
"""

from __future__ import annotations

import functools
import importlib.metadata
from typing import Any

import msgspec
from aiohttp import web

from artifacts_orchestrator.errors import ERRORS, OrchestratorUnavailable
from artifacts_orchestrator.routing import Route, Routes, routes_of

REF = "#/components/schemas/{name}"
TITLE = "Artifacts orchestrator"
DESCRIPTION = """\
The control plane of Artifacts: accounts and API keys, workspaces, mount sessions, and for
platforms tenants, access grants and signed mount tickets (docs/orchestrator.md, docs/platform.md).

- JSON in, JSON out; times are Unix seconds. Errors are `{"code", "message"}` (schema `Error`).
- Authentication: `Authorization: Bearer tbo_...` (an API key) unless an operation says otherwise.
- Workspaces are addressed as `/workspaces/{handle}/{name}`; `~` as the handle is your own.
- Naming: request bodies and query parameters accept every field name in snake_case (as described
  here) or in camelCase (`tenant_slug` or `tenantSlug`); free-form values (tenant `metadata`, the
  `mount_ticket` being exchanged) are kept verbatim; one field in both spellings is 422
  `invalid_request`. Responses are always snake_case.
- `x-idempotent: true` marks operations that are safe to repeat (clients retry only those).
"""

#: Descriptions of the path parameters the routes use.
PATH_PARAMS = {
    "handle": "the workspace's account handle; `~` is the caller's own",
    "name": "the workspace name",
    "sid": "a mount session id",
    "key_id": "an API key id",
    "slug": "a tenant slug",
    "grant_id": "an access grant id",
    "agent_id": "an agent id (ag_ + 16 hex characters)",
    "token_id": "an agent token id",
    "asset": "a file of the console (console.js, console.css)",
}
SECURITY: dict[str, list[dict[str, list[str]]]] = {
    "api_key": [{"apiKey": []}], "admin": [{"adminToken": []}], "none": [],
    "agent": [{"agentToken": []}, {"apiKey": []}]}
#: The agent file API's error object (artifacts_agentfs/errors.py), with the codes it sends.
AGENT_ERROR = {
    "title": "AgentError", "type": "object",
    "description": "A failed file operation: the agent API's structured error (docs/agentfs.md). Failures "
                   "before the operation (authentication, a workspace toggled off) carry the orchestrator's "
                   "codes (`Error`) and no `path`/`hint`.",
    "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                   "path": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                   "hint": {"type": "string"}},
    "required": ["code", "message"],
}


def _server_codes() -> dict[str, int]:
    return {code: cls.status for code, cls in ERRORS.items() if cls is not OrchestratorUnavailable}


def _refs(node: Any, out: set[str]) -> set[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            out.add(ref.rsplit("/", 1)[-1])
        for v in node.values():
            _refs(v, out)
    elif isinstance(node, list):
        for v in node:
            _refs(v, out)
    return out


def _closure(names: set[str], schemas: dict[str, Any]) -> set[str]:
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name not in seen and name in schemas:
            seen.add(name)
            todo.extend(_refs(schemas[name], set()))
    return seen


def document(routes: list[Route]) -> dict[str, Any]:
    """The OpenAPI description of ``routes`` (as a JSON-ready dict)."""
    types = [t for r in routes for t in (r.body, r.returns) if t is not None]
    if any(r.auth == "agent" for r in routes):  # the console shows it; no route returns it alone
        from artifacts_orchestrator.agent_models import StorageCheck

        types.append(StorageCheck)
    schema_list, schemas = msgspec.json.schema_components(types, ref_template=REF)
    of = dict(zip(map(id, types), schema_list, strict=True))
    schemas = dict(schemas)

    request_side = _closure({n for r in routes if r.body is not None for n in _refs(of[id(r.body)], set())}, schemas)
    response_side = _closure({n for r in routes if r.returns is not None
                              for n in _refs(of[id(r.returns)], set())}, schemas)
    for name in response_side - request_side:
        s = schemas[name]
        if s.get("type") == "object" and "properties" in s:
            s["required"] = list(s["properties"])
    codes = _server_codes()
    schemas["Error"] = {
        "title": "Error", "type": "object",
        "description": "Every failure's body. `existing` accompanies `workspace_exists` (the live workspace); "
                       "`check` accompanies `storage_check_failed` (what the custom S3 check found).",
        "properties": {"code": {"enum": sorted(codes)}, "message": {"type": "string"},
                       "existing": {"$ref": REF.format(name="WorkspaceView")},
                       **({"check": {"$ref": REF.format(name="StorageCheck")}} if "StorageCheck" in schemas else {})},
        "required": ["code", "message"],
        "x-error-statuses": dict(sorted(codes.items())),
    }

    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        op: dict[str, Any] = {"operationId": r.operation_id, "summary": r.summary, "tags": [r.tag]}
        if r.description:
            op["description"] = r.description
        op["security"] = SECURITY[r.auth]
        params = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"},
                   "description": PATH_PARAMS.get(p, p)} for p in r.path_params]
        params += [{"name": q.name, "in": "query", "required": False, "schema": msgspec.json.schema(q.type),
                    **({"description": q.description} if q.description else {})} for q in r.query]
        if params:
            op["parameters"] = params
        if r.body_schema is not None:
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": r.body_schema}}}
        elif r.body is not None:
            body_schema = of[id(r.body)]
            target = schemas.get(body_schema.get("$ref", "").rsplit("/", 1)[-1], body_schema)
            op["requestBody"] = {"required": bool(target.get("required")),
                                 "content": {"application/json": {"schema": body_schema}}}
        ok: dict[str, Any] = {"description": r.summary}
        if r.returns_schema is not None:
            ok["content"] = {"application/json": {"schema": r.returns_schema}}
        elif r.returns is not None:
            ok["content"] = {"application/json": {"schema": of[id(r.returns)]}}
        op["responses"] = {str(s): ok for s in (r.status, *r.also)}
        op["responses"]["default"] = {"description": f"an error (see `{r.errors}`)",
                                      "content": {"application/json": {"schema": {"$ref": REF.format(name=r.errors)}}}}
        if r.errors == "AgentError":
            schemas["AgentError"] = AGENT_ERROR
        op["x-idempotent"] = r.idempotent
        paths.setdefault(r.path, {})[r.method.lower()] = op

    tags = list(dict.fromkeys(r.tag for r in routes))
    return {
        "openapi": "3.1.0",
        "info": {"title": TITLE, "version": _version(), "description": DESCRIPTION},
        "tags": [{"name": t} for t in tags],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer", "bearerFormat": "tbo_ + 32 characters",
                           "description": "An account's API key (TONBO_API_KEY)."},
                "adminToken": {"type": "http", "scheme": "bearer",
                               "description": "The orchestrator's admin token (bootstrap only)."},
                **({"agentToken": {"type": "http", "scheme": "bearer", "bearerFormat": "tba_ + 32 characters",
                                   "description": "An agent token: one agent's file API only (docs/agents.md)."}}
                   if any(r.auth == "agent" for r in routes) else {}),
            },
        },
    }


def _version() -> str:
    try:
        return importlib.metadata.version("artifacts")
    except importlib.metadata.PackageNotFoundError:  # a source tree that was never installed
        return "0.0.0"


@functools.lru_cache(maxsize=8)
def _encoded(routes: tuple[Route, ...]) -> bytes:
    return msgspec.json.encode(document(list(routes)))


ROUTES = Routes("meta")


@ROUTES.get("/openapi.json", "This OpenAPI description", returns=dict[str, Any], auth="none",
            operation_id="getOpenApi")
async def openapi_json(request: web.Request) -> web.Response:
    """Generated from the routes this orchestrator serves (with the platform's when it has them)."""
    return web.Response(body=_encoded(tuple(routes_of(request.app))), content_type="application/json")

