"""The agents' HTTP routes (docs/agents.md): agents, their workspace toggle and tokens (API key),
and the agent file API (an agent token of that agent, or the account's API key).

``setup(app, agents, files)`` adds them (``make_app`` does when given an ``AgentService``).
Account-side handlers follow app.py's shape (authenticate, decode a strict msgspec body, one
service method on the worker pool, encode). File-API handlers differ in three ways:

- one route per operation, ``POST /agents/{agent_id}/files/<tool>`` (readFile, writeFile, ...,
  editFile, glob, grep), generated from ``artifacts_agentfs.tools.TOOLS``: its body is the tool's
  arguments (the tool's JSON Schema in the OpenAPI description; names in snake_case or camelCase,
  casing.py's rule), its answer the tool's result; plus ``POST /agents/{agent_id}/files/call``
  (``{"tool", "arguments"}`` -> ``{"ok", "result" | "error"}``) for agent loops that pass tool
  calls through as they come;
- a failed operation answers the agent API's own error object ``{code, message, path, hint}``
  (schema ``AgentError``) with the HTTP status of ``STATUS`` below, exactly what ``AgentFS.call``
  returns in Python: the same sandbox rules and attack-string refusals, the same codes;
- the call runs on the agent's own thread pool (agent_files.py), never on the app's shared one, so
  a slow agent cannot starve another's requests nor the control plane's.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from artifacts_agentfs import tools
from artifacts_agentfs.tools import MAX_ARGUMENTS_BYTES
from artifacts_orchestrator import agent_models as am
from artifacts_orchestrator import models as m
from artifacts_orchestrator.agent_files import AgentFiles
from artifacts_orchestrator.agents import AgentService
from artifacts_orchestrator.casing import camel
from artifacts_orchestrator.handlers import (
    EXECUTOR,
    SERVICE,
    authenticated,
    background,
    decode_body,
    query_flag,
    read_body,
    respond,
    run,
)
from artifacts_orchestrator.routing import Query, Routes, register

AGENTS = web.AppKey("agents", AgentService)
FILES = web.AppKey("agent_files", AgentFiles)
ROUTES = Routes("agents")
FILE_ROUTES = Routes("agent files")
A = "/agents/{agent_id}"

#: HTTP status of each agent error code (the body is the agent API's error object either way).
STATUS = {"ENOENT": 404, "EACCES": 403, "EPERM": 403, "EROFS": 403, "EEXIST": 409, "ENOTEMPTY": 409,
          "EISDIR": 409, "ENOTDIR": 409, "ECONFLICT": 412, "EINVAL": 422, "ENAMETOOLONG": 422,
          "ELOOP": 422, "EAMBIGUOUS": 422, "ENOMATCH": 422, "EBINARY": 422, "EFBIG": 413,
          "ENOSPC": 507, "EIO": 503}


def _agent_id(request: web.Request) -> str:
    return request.match_info["agent_id"]


# -- agents (the account's API key) ------------------------------------------------------------------


@ROUTES.post("/agents", "Create an agent", body=am.CreateAgentRequest, returns=am.AgentView, status=201)
async def create_agent(request: web.Request) -> web.Response:
    account = await authenticated(request)
    req = await decode_body(request)
    return respond(await run(request, request.app[AGENTS].create_agent, account, req), 201)


@ROUTES.get("/agents", "List agents", returns=am.AgentList)
async def list_agents(request: web.Request) -> web.Response:
    account = await authenticated(request)
    return respond(await run(request, request.app[AGENTS].list_agents, account))


@ROUTES.get(A, "An agent, its workspace and the workspaces it had before", returns=am.AgentView)
async def get_agent(request: web.Request) -> web.Response:
    account = await authenticated(request)
    return respond(await run(request, request.app[AGENTS].get_agent, account, _agent_id(request)))


@ROUTES.patch(A, "Rename an agent", body=am.UpdateAgentRequest, returns=am.AgentView, idempotent=True)
async def rename_agent(request: web.Request) -> web.Response:
    account = await authenticated(request)
    req = await decode_body(request)
    return respond(await run(request, request.app[AGENTS].rename_agent, account, _agent_id(request), req))


@ROUTES.delete(A, "Delete an agent (its tokens die; its workspaces are kept unless delete_workspaces)",
               returns=am.AgentView,
               query=(Query("delete_workspaces", bool, "also delete every workspace of the agent and its files"),))
async def delete_agent(request: web.Request) -> web.Response:
    """Workspaces kept become ordinary workspaces of the account (``artifacts workspace list``)."""
    account = await authenticated(request)
    svc = request.app[AGENTS]
    view, started = await run(request, svc.delete_agent, account, _agent_id(request),
                              query_flag(request, "delete_workspaces"))
    for workspace_id in started:
        background(request.app, request.app[SERVICE].run_delete, workspace_id)
    return respond(view)


@ROUTES.put(A + "/workspace", "Toggle the agent's workspace on (managed or custom S3) or off (data kept)",
            body=am.WorkspaceRequest, returns=am.AgentView)
async def set_workspace(request: web.Request) -> web.Response:
    """On: managed storage at ``agents/<agent id>/``, or custom S3 after the four-permission check
    (422 ``storage_check_failed`` with ``check`` naming what is missing). Off: the file API refuses
    (409 ``workspace_off``); the workspace and its data stay until the workspace is deleted."""
    account = await authenticated(request)
    req = await decode_body(request)
    return respond(await run(request, request.app[AGENTS].set_workspace, account, _agent_id(request), req))


@ROUTES.post(A + "/storage-check", "Check a custom S3 location and key without saving anything",
             body=am.CustomS3Request, returns=am.StorageCheck, idempotent=True)
async def check_storage(request: web.Request) -> web.Response:
    account = await authenticated(request)
    req = await decode_body(request)
    return respond(await run(request, request.app[AGENTS].check_storage, account, _agent_id(request), req))


@ROUTES.get(A + "/usage", "The agent's workspace usage (bytes, inodes)", returns=am.AgentUsage)
async def usage(request: web.Request) -> web.Response:
    account = await authenticated(request)
    return respond(await run(request, request.app[AGENTS].usage, account, _agent_id(request)))


@ROUTES.post(A + "/tokens", "Mint an agent token for the file API (shown once)", body=am.CreateAgentTokenRequest,
             returns=am.NewAgentToken, status=201)
async def create_token(request: web.Request) -> web.Response:
    account = await authenticated(request)
    req = await decode_body(request)
    return respond(await run(request, request.app[AGENTS].create_token, account, _agent_id(request), req), 201)


@ROUTES.get(A + "/tokens", "List the agent's tokens (never the tokens themselves)", returns=am.AgentTokenList)
async def list_tokens(request: web.Request) -> web.Response:
    account = await authenticated(request)
    return respond(await run(request, request.app[AGENTS].list_tokens, account, _agent_id(request)))


@ROUTES.delete(A + "/tokens/{token_id}", "Revoke an agent token", returns=am.AgentTokenView)
async def revoke_token(request: web.Request) -> web.Response:
    account = await authenticated(request)
    return respond(await run(request, request.app[AGENTS].revoke_token, account, _agent_id(request),
                            request.match_info["token_id"]))


# -- the file API (an agent token, or the API key) ----------------------------------------------------


async def _caller(request: web.Request) -> tuple[m.Account, am.Agent]:
    return await run(request, request.app[AGENTS].authorize, request.headers.get("Authorization"),
                     _agent_id(request))


def _arguments(raw: bytes, tool: tools.Tool) -> Any:
    """The body as the tool's arguments, with camelCase names of its parameters made snake_case."""
    try:
        value = json.loads(raw or b"{}")
    except ValueError:
        return raw.decode("utf-8", "replace")  # not JSON: the dispatcher answers EINVAL
    if not isinstance(value, dict):
        return value
    aliases = {camel(p.name): p.name for p in tool.params if camel(p.name) != p.name}
    out: dict[str, Any] = {}
    for key, item in value.items():
        name = aliases.get(str(key), str(key))  # JSON object keys are strings
        if name in out:
            return {"__both__": name}  # refused below with the rule's message
        out[name] = item
    return out


def _answer(result: dict) -> web.Response:
    if result["ok"]:
        return respond(result["result"])
    return respond(result["error"], STATUS.get(result["error"]["code"], 500))


def _file_handler(tool: tools.Tool) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        account, agent = await _caller(request)
        args = _arguments(await read_body(request), tool)
        if isinstance(args, dict) and "__both__" in args:
            name = args["__both__"]
            return respond({"code": "EINVAL", "message": f"{name!r} and {camel(name)!r} are the same argument; "
                            "send one of them", "path": None, "hint": "Check the arguments against the tool's schema."},
                           422)
        return _answer(await request.app[FILES].call(account, agent, tool.name, args))
    handler.__name__ = tool.name
    handler.__doc__ = tool.description
    return handler


def _error_schema() -> dict:
    return {"$ref": "#/components/schemas/AgentError"}


for _tool in tools.TOOLS:
    FILE_ROUTES.post(f"{A}/files/{_tool.name}", f"{_tool.name}: {_tool.description.split('. ')[0].rstrip('.')}",
                     auth="agent", idempotent=_tool.idempotent, operation_id=f"agentFile{_tool.name[:1].upper()}"
                     f"{_tool.name[1:]}", body_schema=tools.input_schema(_tool),
                     returns_schema=tools.output_schema(_tool), errors="AgentError",
                     max_body=MAX_ARGUMENTS_BYTES)(_file_handler(_tool))

CALL_BODY = {"type": "object", "required": ["tool"], "additionalProperties": False, "properties": {
    "tool": {"type": "string", "enum": [t.name for t in tools.TOOLS]},
    "arguments": {"type": "object", "description": "The tool's arguments (its schema: the per-operation route)."}}}
CALL_RESULT = {"type": "object", "required": ["ok"], "properties": {
    "ok": {"type": "boolean"}, "result": {"type": "object"}, "error": _error_schema()}}


@FILE_ROUTES.post(A + "/files/call", "Run one file operation by name: {ok, result} or {ok: false, error}",
                  auth="agent", body_schema=CALL_BODY, returns_schema=CALL_RESULT, errors="AgentError",
                  max_body=MAX_ARGUMENTS_BYTES, operation_id="agentFileCall")
async def call(request: web.Request) -> web.Response:
    """Always 200 once authorized: the operation's outcome is in ``ok`` (what ``AgentFS.call``
    returns in Python), for agent loops that hand tool calls through unchanged."""
    account, agent = await _caller(request)
    raw = await read_body(request)
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("tool"), str) or set(body) - {"tool", "arguments"}:
        return respond({"ok": False, "error": {"code": "EINVAL", "message": "the body is {\"tool\": name, "
                        "\"arguments\": {...}}", "path": None, "hint": f"tools: {', '.join(tools.BY_NAME)}"}})
    name = body["tool"]
    if name not in tools.BY_NAME:  # never the host-only bash tool
        return respond({"ok": False, "error": {"code": "EINVAL", "message": f"unknown tool {name!r}", "path": None,
                                               "hint": f"tools: {', '.join(tools.BY_NAME)}"}})
    args = _arguments(json.dumps(body.get("arguments") or {}).encode(), tools.BY_NAME[name])
    return respond(await request.app[FILES].call(account, agent, name, args))


def setup(app: web.Application, agents: AgentService, files: AgentFiles) -> None:
    assert app[SERVICE] is agents.service, "the agents layer must sit over the app's own Service"
    assert EXECUTOR in app
    app[AGENTS] = agents
    app[FILES] = files
    register(app, ROUTES, FILE_ROUTES)
