"""The HTTP face of the orchestrator: aiohttp routes over ``Service`` (docs/orchestrator.md is the reference).

Moving parts:
- one error middleware: every failure leaves as ``{"code", "message"}`` with the status of
  ``errors.py`` (unknown routes and methods included); an unexpected exception is logged with its
  traceback and answered 500 ``internal`` without details;
- routes are declared once, beside their handlers (``ROUTES``, routing.py): method, path, body
  and result types, auth, idempotency; ``make_app`` registers this table, the platform's
  (``platform_routes.py``, when given a ``PlatformService``) and openapi.py's, which serves the
  OpenAPI description generated from all of them at ``GET /openapi.json``;
- handlers are a few lines: authenticate, decode the body into the declared msgspec request type
  (a bad body is 422 ``invalid_request``), call one ``Service`` method on the worker pool (SQLite,
  redis-py and botocore block), encode the result -- with the helpers of ``handlers.py``;
- fairness: an authenticated request holds one of its account's ``ACCOUNT_CONCURRENCY`` (4) slots
  until it is answered (``handlers.authenticated``; the error middleware releases it), so one
  account keeps at most a quarter of the 16 workers busy and the others' calls still find free
  workers (and admin Redis connections: ``redis_acl.ADMIN_POOL``);
- background work on the same pool: the rest of a delete flow after its 202, and the reaper
  every ``reap_interval`` seconds (expired format users and sessions, orphans, unfinished deletes);
- ``OrchestratorServer``: runs the app on its own event-loop thread, bound to loopback by
  default, for ``python -m artifacts_orchestrator``, the local stack and the tests.

Access log lines carry method, path and status only: never an ``Authorization`` header.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web

from artifacts_orchestrator import models as m
from artifacts_orchestrator import openapi, platform_routes
from artifacts_orchestrator.errors import (
    ApiError,
    InternalError,
    InvalidRequest,
    MethodNotAllowed,
    RouteNotFound,
    Unauthorized,
)
from artifacts_orchestrator.handlers import (
    ACCOUNT_CONCURRENCY,
    ACCOUNT_SLOTS,
    EXECUTOR,
    SERVICE,
    authenticated,
    decode_body,
    query_flag,
    release_account_slot,
    respond,
    run,
)
from artifacts_orchestrator.platform_service import PlatformService
from artifacts_orchestrator.routing import Query, Route, Routes, register
from artifacts_orchestrator.service import Service

log = logging.getLogger("artifacts.orchestrator.http")

#: Worker threads for blocking calls: requests are short; a few deletes may run at once. One
#: account holds at most a quarter of them (``handlers.ACCOUNT_CONCURRENCY``).
WORKERS = 4 * ACCOUNT_CONCURRENCY
#: Reaper period: format users expire after 15 minutes, so half a minute late is fine.
REAP_INTERVAL = 30.0
#: Stale-session sweep period: a crashed host's locks are released at most this long after its
#: session expired (60 s after its last heartbeat), as a full-rights client's own sweep does
#: (meta/sessions.py: 0.9 of the 12 s heartbeat).
SWEEP_INTERVAL = 10.0
#: Largest request body accepted (requests are small JSON documents).
MAX_BODY = 64 << 10

ADMIN_TOKEN = web.AppKey("admin_token", str)
TASKS = web.AppKey("tasks", set)


@web.middleware
async def errors_middleware(request: web.Request, handler):
    try:
        return await _handle(request, handler)
    finally:
        release_account_slot(request)


async def _handle(request: web.Request, handler):
    try:
        return await handler(request)
    except ApiError as e:
        return respond(e.body(), e.status)
    except web.HTTPMethodNotAllowed:
        err: ApiError = MethodNotAllowed(f"{request.method} is not allowed on {request.path}")
        return respond(err.body(), err.status)
    except web.HTTPNotFound:
        err = RouteNotFound(f"no route {request.method} {request.path}")
        return respond(err.body(), err.status)
    except web.HTTPRequestEntityTooLarge:
        return respond(InvalidRequest("the request body is too large").body(), 413)
    except web.HTTPException:
        raise
    except Exception:
        log.exception("unexpected error in %s %s", request.method, request.path)
        return respond(InternalError("internal error; see the orchestrator's log").body(), 500)


# -- handlers ------------------------------------------------------------------------------------

ROUTES = Routes("workspaces")
WS = "/workspaces/{handle}/{name}"


@ROUTES.get("/healthz", "Liveness check", returns=dict[str, str], auth="none", tag="meta")
async def healthz(request: web.Request) -> web.Response:
    return respond({"status": "ok"})


@ROUTES.get("/whoami", "The account and key of the caller", returns=m.WhoAmI, tag="keys")
async def whoami(request: web.Request) -> web.Response:
    svc = request.app[SERVICE]
    account, key = await run(request, svc.authenticate, request.headers.get("Authorization"))
    return respond(m.WhoAmI(account=m.AccountView(id=account.id, handle=account.handle, created_at=account.created_at),
                          key=m.KeyView(id=key.id, name=key.name, hint=key.hint, created_at=key.created_at)))


@ROUTES.post("/admin/accounts", "Bootstrap an account and its first API key (admin token)",
             body=m.CreateAccountRequest, returns=m.NewAccount, status=201, auth="admin", tag="admin")
async def create_account(request: web.Request) -> web.Response:
    expected = request.app[ADMIN_TOKEN]
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if not expected or scheme.lower() != "bearer" or not hmac.compare_digest(token.strip(), expected):
        raise Unauthorized("this route needs the orchestrator's admin token")
    req = await decode_body(request)
    return respond(await run(request, request.app[SERVICE].create_account, req.handle, req.key_name), 201)


@ROUTES.post("/keys", "Create an API key (shown once)", body=m.CreateKeyRequest, returns=m.NewKey,
             status=201, tag="keys")
async def create_key(request: web.Request) -> web.Response:
    account = await authenticated(request)
    req = await decode_body(request)
    return respond(await run(request, request.app[SERVICE].create_key, account, req.name), 201)


@ROUTES.get("/keys", "List API keys (never the keys themselves)", returns=m.KeyList, tag="keys")
async def list_keys(request: web.Request) -> web.Response:
    account = await authenticated(request)
    return respond(await run(request, request.app[SERVICE].list_keys, account))


@ROUTES.delete("/keys/{key_id}", "Revoke an API key", returns=m.KeyView, tag="keys")
async def revoke_key(request: web.Request) -> web.Response:
    account = await authenticated(request)
    return respond(await run(request, request.app[SERVICE].revoke_key, account, request.match_info["key_id"]))


@ROUTES.post("/workspaces", "Reserve a workspace (phase 1 of create; the CLI formats it)",
             body=m.CreateWorkspaceRequest, returns=m.CreateWorkspaceResponse, status=201, also=(200,))
async def create_workspace(request: web.Request) -> web.Response:
    account = await authenticated(request)
    req = await decode_body(request)
    resp, created = await run(request, request.app[SERVICE].create_workspace, account, req)
    return respond(resp, 201 if created else 200)


@ROUTES.get("/workspaces", "List workspaces", returns=m.WorkspaceList,
            query=(Query("include_deleted", bool, "also list deleted workspaces"),))
async def list_workspaces(request: web.Request) -> web.Response:
    account = await authenticated(request)
    return respond(await run(request, request.app[SERVICE].list_workspaces, account, query_flag(request, "include_deleted")))


def _ref(request: web.Request) -> tuple[str, str]:
    return request.match_info["handle"], request.match_info["name"]


@ROUTES.get(WS, "A workspace (the live one, else the most recently deleted)", returns=m.WorkspaceView)
async def get_workspace(request: web.Request) -> web.Response:
    account = await authenticated(request)
    return respond(await run(request, request.app[SERVICE].get_workspace, account, *_ref(request)))


@ROUTES.get(WS + "/inspect", "A summary of the workspace's metadata keyspace", returns=dict[str, Any])
async def inspect_workspace(request: web.Request) -> web.Response:
    account = await authenticated(request)
    return respond(await run(request, request.app[SERVICE].inspect_workspace, account, *_ref(request)))


@ROUTES.get(WS + "/references", "Every S3 slice the workspace's metadata refers to (gc, fsck)",
            returns=dict[str, Any])
async def workspace_references(request: web.Request) -> web.Response:
    account = await authenticated(request)
    return respond(await run(request, request.app[SERVICE].workspace_references, account, *_ref(request)))


@ROUTES.get(WS + "/quota", "The workspace's capacity and inode limits and its usage", returns=m.Quota)
async def get_quota(request: web.Request) -> web.Response:
    account = await authenticated(request)
    return respond(await run(request, request.app[SERVICE].get_quota, account, *_ref(request)))


@ROUTES.put(WS + "/quota", "Change the workspace's capacity and inode limits (0: unlimited)",
            body=m.SetQuotaRequest, returns=m.Quota)
async def set_quota(request: web.Request) -> web.Response:
    account = await authenticated(request)
    req = await decode_body(request)
    return respond(await run(request, request.app[SERVICE].set_quota, account, *_ref(request), req))


@ROUTES.post(WS + "/format-completed", "Activate a formatted workspace (phase 3 of create)",
             returns=m.WorkspaceView, idempotent=True)
async def format_completed(request: web.Request) -> web.Response:
    account = await authenticated(request)
    return respond(await run(request, request.app[SERVICE].format_completed, account, *_ref(request)))


@ROUTES.delete(WS, "Delete a workspace (202; poll until status is deleted)", returns=m.WorkspaceView,
               status=202)
async def delete_workspace(request: web.Request) -> web.Response:
    account = await authenticated(request)
    svc = request.app[SERVICE]
    view, started = await run(request, svc.delete_workspace, account, *_ref(request))
    if started:
        _background(request.app, svc.run_delete, view.id)
    return respond(view, 202)


@ROUTES.post(WS + "/sessions", "Open a mount session", body=m.CreateSessionRequest, returns=m.SessionGrant,
             status=201, tag="sessions")
async def create_session(request: web.Request) -> web.Response:
    account = await authenticated(request)
    req = await decode_body(request)
    return respond(await run(request, request.app[SERVICE].create_session, account, *_ref(request), req), 201)


@ROUTES.get(WS + "/sessions", "List mount sessions", returns=m.SessionList, tag="sessions",
            query=(Query("include_revoked", bool, "also list revoked and expired sessions"),))
async def list_sessions(request: web.Request) -> web.Response:
    account = await authenticated(request)
    return respond(await run(request, request.app[SERVICE].list_sessions, account, *_ref(request),
                            query_flag(request, "include_revoked")))


@ROUTES.delete(WS + "/sessions/{sid}", "Revoke a mount session", returns=m.SessionView, tag="sessions")
async def revoke_session(request: web.Request) -> web.Response:
    account = await authenticated(request)
    return respond(await run(request, request.app[SERVICE].revoke_session, account, *_ref(request),
                            request.match_info["sid"]))


@ROUTES.post(WS + "/sessions/{sid}/renew", "Extend a mount session", body=m.RenewSessionRequest,
             returns=m.SessionView, idempotent=True, tag="sessions")
async def renew_session(request: web.Request) -> web.Response:
    account = await authenticated(request)
    req = await decode_body(request)
    return respond(await run(request, request.app[SERVICE].renew_session, account, *_ref(request),
                            request.match_info["sid"], req))


# -- background work -----------------------------------------------------------------------------


def _background(app: web.Application, fn, *args) -> None:
    async def run() -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(app[EXECUTOR], fn, *args)
        except Exception:  # the reaper retries unfinished deletes
            log.exception("background %s failed", getattr(fn, "__name__", fn))
    task = asyncio.get_running_loop().create_task(run())
    app[TASKS].add(task)
    task.add_done_callback(app[TASKS].discard)


async def _periodic(app: web.Application, what: str, fn, interval: float) -> None:
    """A pass at start, then one every ``interval`` seconds: the reaper (deletes a crash left in
    ``deleting``, users that expired while down, ...) and the stale-session sweep."""
    while True:
        try:
            done = await asyncio.get_running_loop().run_in_executor(app[EXECUTOR], fn)
            if any(done.values()):
                log.info("%s: %s", what, done)
        except Exception:
            log.exception("%s pass failed", what)
        await asyncio.sleep(interval)


#: The route tables every app serves (the platform's are added when it has a PlatformService).
CORE_TABLES = (openapi.ROUTES, ROUTES)


def served_routes(*, platform: bool = True) -> list[Route]:
    """The routes ``make_app`` serves, in its order: what ``GET /openapi.json`` describes, without
    building an app (``python -m artifacts_orchestrator openapi``)."""
    tables = CORE_TABLES + ((platform_routes.ROUTES,) if platform else ())
    return [r for t in tables for r in t]


def make_app(service: Service, *, platform: PlatformService | None = None, admin_token: str = "",
             reap_interval: float | None = REAP_INTERVAL, sweep_interval: float | None = SWEEP_INTERVAL,
             workers: int = WORKERS) -> web.Application:
    """The orchestrator's routes over ``service``; the platform's (tenants, grants, mount tickets)
    too when ``platform`` is given (``python -m artifacts_orchestrator serve`` always gives one)."""
    app = web.Application(middlewares=[errors_middleware], client_max_size=MAX_BODY)
    app[SERVICE] = service
    app[EXECUTOR] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="orchestrator")
    app[ADMIN_TOKEN] = admin_token
    app[TASKS] = set()
    app[ACCOUNT_SLOTS] = {}
    register(app, *CORE_TABLES)
    if platform is not None:
        platform_routes.setup(app, platform)

    async def start_background(app: web.Application):
        loop = asyncio.get_running_loop()
        loops = [loop.create_task(_periodic(app, what, fn, every)) for what, fn, every in
                 (("reaper", service.reap, reap_interval), ("session sweep", service.sweep_sessions, sweep_interval))
                 if every]
        yield
        for task in loops:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if app[TASKS]:
            await asyncio.gather(*app[TASKS], return_exceptions=True)
        app[EXECUTOR].shutdown(wait=True)

    app.cleanup_ctx.append(start_background)
    return app


class OrchestratorServer:
    """The app on its own event-loop thread: ``start()``, ``url``, ``stop()``. ``platform``: the
    platform layer over ``service`` whose routes it serves too (none without it)."""

    def __init__(self, service: Service, *, platform: PlatformService | None = None, host: str = "127.0.0.1",
                 port: int = 0, **app_options: Any) -> None:
        self.service = service
        self.platform = platform
        self.host = host
        self.port = port
        self._options = app_options
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="orchestrator-http", daemon=True)
        self._runner: web.AppRunner | None = None
        self.app: web.Application | None = None  # once started

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> OrchestratorServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)
        return self

    async def _start(self) -> None:
        self.app = make_app(self.service, platform=self.platform, **self._options)
        self._runner = web.AppRunner(self.app, access_log=log)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=60)
            self._runner = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> OrchestratorServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
