"""The history routes (docs/history.md, docs/orchestrator.md): a workspace's checkpoints.

Declared once in ``ROUTES`` (routing.py), served by every app (``app.CORE_TABLES``) and described
in the OpenAPI document under the ``history`` tag. Handlers follow app.py's shape: authenticate,
decode a strict msgspec body, run one ``Service.checkpoints`` call on the worker pool, encode.
The orchestrator calls the workspace's Redis functions with its admin rights and never touches
file data (``history.py``).
"""

from __future__ import annotations

from aiohttp import web

from artifacts_orchestrator import models as m
from artifacts_orchestrator.handlers import SERVICE, authenticated, decode_body, query_value, respond, run
from artifacts_orchestrator.routing import Query, Routes

ROUTES = Routes("history")
CKPTS = "/workspaces/{handle}/{name}/checkpoints"
ONE = CKPTS + "/{checkpoint}"


def _ref(request: web.Request) -> tuple[str, str]:
    return request.match_info["handle"], request.match_info["name"]


async def _call(request: web.Request, op: str, *args) -> object:
    account = await authenticated(request)
    return await run(request, request.app[SERVICE].checkpoints, account, *_ref(request), op, *args)


@ROUTES.get(CKPTS, "List a workspace's checkpoints, oldest first", returns=m.CheckpointList)
async def list_checkpoints(request: web.Request) -> web.Response:
    return respond(await _call(request, "list"))


@ROUTES.post(CKPTS, "Take a checkpoint of the whole workspace (constant time)", body=m.CreateCheckpointRequest,
             returns=m.CheckpointView, status=201)
async def create_checkpoint(request: web.Request) -> web.Response:
    """What clients have committed (closed or fsynced) is in it; a running mount's unflushed
    writes are not. A taken name is 409 ``checkpoint_exists``."""
    account = await authenticated(request)
    req = await decode_body(request)
    return respond(await run(request, request.app[SERVICE].checkpoints, account, *_ref(request), "create", req), 201)


@ROUTES.get(ONE, "A checkpoint, what changed since, and the bytes only it keeps", returns=m.CheckpointDetail)
async def get_checkpoint(request: web.Request) -> web.Response:
    return respond(await _call(request, "show", request.match_info["checkpoint"]))


@ROUTES.get(ONE + "/diff", "Paths added, removed, modified, renamed since a checkpoint (or between two)",
            returns=m.ChangeList, query=(Query("to", str, "a later checkpoint (default: now)"),))
async def diff_checkpoint(request: web.Request) -> web.Response:
    return respond(await _call(request, "diff", request.match_info["checkpoint"], query_value(request, "to")))


@ROUTES.post(ONE + "/restore", "Make the workspace what a checkpoint was (atomic; a safety checkpoint first)",
             body=m.RestoreCheckpointRequest, returns=m.RestoreResult)
async def restore_checkpoint(request: web.Request) -> web.Response:
    """Mounts see the restored content on their next open (close-to-open); restore the returned
    ``safety`` checkpoint to undo."""
    account = await authenticated(request)
    req = await decode_body(request)
    return respond(await run(request, request.app[SERVICE].checkpoints, account, *_ref(request), "restore",
                             request.match_info["checkpoint"], req))


@ROUTES.delete(ONE, "Delete a checkpoint (what only it pinned is freed through the normal reclaim)",
               returns=m.DeletedCheckpoint)
async def delete_checkpoint(request: web.Request) -> web.Response:
    return respond(await _call(request, "delete", request.match_info["checkpoint"]))
