"""The HTTP face of the orchestrator: aiohttp routes over ``Service`` (docs/orchestrator.md is the reference).

Moving parts:
- one error middleware: every failure leaves as ``{"code", "message"}`` with the status of
  ``errors.py`` (unknown routes and methods included); an unexpected exception is logged with its
  traceback and answered 500 ``internal`` without details;
- routes are declared once, beside their handlers (``ROUTES``, routing.py): method, path, body
  and result types, auth, idempotency; ``make_app`` registers this table, the history routes
  (``history_routes.py``), the platform's (``platform_routes.py``, when given a
  ``PlatformService``), the agents' and the console's (``agent_routes.py``, ``console.py``, when
  given an ``AgentService``; docs/agents.md) and openapi.py's, which serves the OpenAPI
  description generated from all of them at ``GET /openapi.json``;
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

import msgspec
from aiohttp import web

from artifacts_core.errors import ArtifactsError
from artifacts_core.meta.journal import Waker
from artifacts_orchestrator import agent_routes, console, history_routes, openapi, platform_routes
from artifacts_orchestrator import models as m
from artifacts_orchestrator.agent_files import AgentFiles
from artifacts_orchestrator.agents import AgentService
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
    CALLER_KEY,
    EXECUTOR,
    SERVICE,
    TASKS,
    authenticated,
    background,
    decode_body,
    query_flag,
    query_value,
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
#: Journal retention period: a workspace's journal exceeds its bounds by at most a minute's events.
JOURNAL_INTERVAL = 60.0
#: Largest request body accepted (requests are small JSON documents).
MAX_BODY = 64 << 10

ADMIN_TOKEN = web.AppKey("admin_token", str)


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


#: Events per page of ``GET .../events`` at most (and the default).
EVENTS_PAGE = 1000
#: Seconds between two SSE comments on an idle stream: proxies and load balancers close
#: connections silent for longer (commonly 60 s).
SSE_KEEPALIVE = 15.0
_EVENT_QUERY = (Query("since", str, "an event id (the cursor a page returned), a time (ISO 8601) or an "
                                   "age (10m, 2h); default: the oldest event kept"),
                Query("path", str, "only events under this path (current or original names)"),
                Query("actor", str, "only events whose actor has a field equal to this (key=value for one)"),
                Query("reads", str, "1: merge in the read audit's events (kind read), if the workspace keeps them"),
                Query("reads_since", int, "the read audit's cursor (default: from the time of `since`)"))


def _events_args(request: web.Request) -> dict[str, Any]:
    reads = query_value(request, "reads")
    if reads not in (None, "", "0", "1", "true", "false"):
        raise InvalidRequest("reads must be 1 or 0")
    reads_since = query_value(request, "reads_since")
    if reads_since is not None and not reads_since.isdigit():
        raise InvalidRequest("reads_since must be a read audit cursor (digits)")
    return {"since": query_value(request, "since"), "path": query_value(request, "path"),
            "actor": query_value(request, "actor"), "reads": reads in ("1", "true"), "reads_since": reads_since}


@ROUTES.get(WS + "/events", "The workspace's journal: events since a cursor", returns=dict[str, Any],
            tag="events", query=(*_EVENT_QUERY, Query("limit", int, f"records read at most (1..{EVENTS_PAGE})")))
async def workspace_events(request: web.Request) -> web.Response:
    account = await authenticated(request)
    raw = query_value(request, "limit")
    if raw is not None and not (raw.isdigit() and 1 <= int(raw) <= EVENTS_PAGE):
        raise InvalidRequest(f"limit must be 1..{EVENTS_PAGE}")
    return respond(await run(request, request.app[SERVICE].workspace_events, account, *_ref(request),
                             limit=int(raw) if raw else EVENTS_PAGE, **_events_args(request)))


@ROUTES.get(WS + "/events/stream", "The workspace's journal as server-sent events, live", tag="events",
            query=_EVENT_QUERY)
async def workspace_events_stream(request: web.Request) -> web.StreamResponse:
    """text/event-stream: one ``event: change`` per journal event (``id:`` the cursor after it,
    ``data:`` the event as JSON), from ``since`` (or the Last-Event-ID header) on, then each new
    one as it happens; a comment every 15 s keeps idle connections open. With ``reads=1``, also
    one ``event: read`` per open for reading, and ids ``<journal cursor>:<reads cursor>``."""
    account = await authenticated(request)
    svc = request.app[SERVICE]
    args = _events_args(request)
    since = args.pop("since")
    last = request.headers.get("Last-Event-ID")
    if not since and last:
        since, _, rs = last.partition(":")
        if args["reads"] and rs.isdigit():
            args["reads_since"] = rs
    since = since or "0"
    reads = args["reads"]
    journal, client = await run(request, svc.journal, account, *_ref(request))
    release_account_slot(request)  # a stream lasts: it must not hold one of the account's slots
    waker: Waker | None = None
    try:
        waker = await asyncio.to_thread(Waker, client)
        waker.arm()
        try:
            page = await asyncio.to_thread(journal.read, since, **args)
        except ArtifactsError as e:  # a `since` that is no cursor, time or age
            raise InvalidRequest(str(e)) from None
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        idle = 0.0
        jc, rc = page.first, page.reads_first
        while request.transport is not None and not request.transport.is_closing():
            for ev in page.events:
                if ev.kind == "read":
                    rc = ev.id + 1
                else:
                    jc = ev.id + 1
                cursor = f"{jc}:{rc}" if reads else str(jc)
                await response.write(b"id: %s\nevent: %s\ndata: %s\n\n" % (
                    cursor.encode(), b"read" if ev.kind == "read" else b"change", msgspec.json.encode(ev)))
            jc, rc = page.next, page.reads_next
            if not page.more:
                if await asyncio.to_thread(waker.wait, 1.0):
                    idle = 0.0
                else:
                    idle += 1.0
                    if idle >= SSE_KEEPALIVE:
                        await response.write(b": keepalive\n\n")
                        idle = 0.0
            waker.arm()
            args["reads_since"] = page.reads_next
            page = await asyncio.to_thread(journal.read, page.next, **args)
        return response
    except ConnectionResetError:  # the client went away: the stream's normal end
        return web.StreamResponse()
    finally:
        if waker is not None:
            await asyncio.to_thread(waker.close)
        client.close()


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
        background(request.app, svc.run_delete, view.id)
    return respond(view, 202)


@ROUTES.post(WS + "/sessions", "Open a mount session", body=m.CreateSessionRequest, returns=m.SessionGrant,
             status=201, tag="sessions")
async def create_session(request: web.Request) -> web.Response:
    account = await authenticated(request)
    req = await decode_body(request)
    return respond(await run(request, request.app[SERVICE].create_session, account, *_ref(request), req,
                            request[CALLER_KEY].id), 201)


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


@ROUTES.post("/sessions/renew", "Extend a session with its own renewal token (no API key)",
             body=m.RenewWithTokenRequest, returns=m.SessionRenewed, auth="none", idempotent=True,
             tag="sessions")
async def renew_with_token(request: web.Request) -> web.Response:
    """What a mount, agent-API or MCP process calls at about half its session's remaining life:
    it holds no API key, only the session's renewal token. Refused (403 ``renewal_refused``)
    once the session was revoked, the API key that opened it was revoked, or its grant was
    revoked or expired; the session then ends at its current expiry."""
    req = await decode_body(request)
    return respond(await run(request, request.app[SERVICE].renew_with_token, req))


# -- background work -----------------------------------------------------------------------------


async def _periodic(app: web.Application, what: str, fn, interval: float) -> None:
    """A pass at start, then one every ``interval`` seconds: the reaper (deletes a crash left in
    ``deleting``, users that expired while down, ...), the stale-session sweep and the journal's
    retention — each under
    the job's lease (``Service.run_job``), so across a fleet of processes sharing the database one
    of them runs each pass."""
    service = app[SERVICE]
    while True:
        try:
            done = await asyncio.get_running_loop().run_in_executor(app[EXECUTOR], service.run_job, what, fn,
                                                                    interval)
            if done and any(done.values()):
                log.info("%s: %s", what, done)
        except Exception:
            log.exception("%s pass failed", what)
        await asyncio.sleep(interval)


#: The route tables every app serves (the platform's are added when it has a PlatformService).
CORE_TABLES = (openapi.ROUTES, ROUTES, history_routes.ROUTES)


def served_routes(*, platform: bool = True, agents: bool = True) -> list[Route]:
    """The routes ``make_app`` serves, in its order: what ``GET /openapi.json`` describes, without
    building an app (``python -m artifacts_orchestrator openapi``)."""
    tables = CORE_TABLES + ((platform_routes.ROUTES,) if platform else ()) + (
        (agent_routes.ROUTES, agent_routes.FILE_ROUTES, console.ROUTES) if agents else ())
    return [r for t in tables for r in t]


def make_app(service: Service, *, platform: PlatformService | None = None, agents: AgentService | None = None,
             admin_token: str = "", reap_interval: float | None = REAP_INTERVAL,
             sweep_interval: float | None = SWEEP_INTERVAL, journal_interval: float | None = JOURNAL_INTERVAL,
             workers: int = WORKERS) -> web.Application:
    """The orchestrator's routes over ``service``; the platform's (tenants, grants, mount tickets)
    too when ``platform`` is given, and the agents' (agents, their file API, the web console) when
    ``agents`` is (``python -m artifacts_orchestrator serve`` always gives both)."""
    largest = max(r.max_body for r in served_routes(platform=platform is not None, agents=agents is not None))
    app = web.Application(middlewares=[errors_middleware], client_max_size=max(MAX_BODY, largest))
    app[SERVICE] = service
    app[EXECUTOR] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="orchestrator")
    app[ADMIN_TOKEN] = admin_token
    app[TASKS] = set()
    app[ACCOUNT_SLOTS] = {}
    register(app, *CORE_TABLES)
    if platform is not None:
        platform_routes.setup(app, platform)
    files = None
    if agents is not None:
        files = AgentFiles(agents)
        agent_routes.setup(app, agents, files)
        console.setup(app, agents.store)

    async def start_background(app: web.Application):
        loop = asyncio.get_running_loop()
        loops = [loop.create_task(_periodic(app, what, fn, every)) for what, fn, every in
                 (("reaper", service.reap, reap_interval), ("session sweep", service.sweep_sessions, sweep_interval),
                  ("journal retention", service.journal_retention, journal_interval))
                 if every]
        yield
        for task in loops:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if app[TASKS]:
            await asyncio.gather(*app[TASKS], return_exceptions=True)
        if files is not None:
            await asyncio.get_running_loop().run_in_executor(app[EXECUTOR], files.close)
        app[EXECUTOR].shutdown(wait=True)

    app.cleanup_ctx.append(start_background)
    return app


class OrchestratorServer:
    """The app on its own event-loop thread: ``start()``, ``url``, ``stop()``. ``platform``: the
    platform layer over ``service`` whose routes it serves too (none without it)."""

    def __init__(self, service: Service, *, platform: PlatformService | None = None,
                 agents: AgentService | None = None, host: str = "127.0.0.1", port: int = 0,
                 **app_options: Any) -> None:
        self.service = service
        self.platform = platform
        self.agents = agents
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
        self.app = make_app(self.service, platform=self.platform, agents=self.agents, **self._options)
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
