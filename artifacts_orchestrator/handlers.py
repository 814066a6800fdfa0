"""What every route handler of the orchestrator shares (app.py's and platform_routes.py's).

A handler is a few lines: ``authenticated`` (the caller's account from its bearer key),
``decode_body`` (the strict msgspec request type its route declares, routing.py; a bad body is
422 ``invalid_request``), one blocking service method through ``run`` on the app's worker pool
(SQLite, redis-py and botocore block), then ``respond`` (the result as JSON). Bodies and query
parameters follow casing.py's rule (snake_case or camelCase names). The app keys the handlers
read live here too, so the route modules import this one and never each other.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgspec
from aiohttp import web

from artifacts_orchestrator import casing
from artifacts_orchestrator import models as m
from artifacts_orchestrator.errors import InvalidRequest
from artifacts_orchestrator.routing import route_of
from artifacts_orchestrator.service import Service

SERVICE = web.AppKey("service", Service)
EXECUTOR = web.AppKey("executor", ThreadPoolExecutor)
#: Requests of one account in the workers at once (the rest wait on the event loop, costing no
#: thread): a quarter of app.WORKERS, so one account's parallel loops cannot starve the others'.
ACCOUNT_CONCURRENCY = 4
ACCOUNT_SLOTS = web.AppKey("account_slots", dict)
#: Where a request keeps the account slot it holds (released by app.py's error middleware).
_HELD = web.RequestKey("account_slot", asyncio.Semaphore)
#: The API key an authenticated request came with (a session records which key opened it).
CALLER_KEY = web.RequestKey("caller_key", m.ApiKey)
TASKS = web.AppKey("tasks", set)
log = logging.getLogger("artifacts.orchestrator.http")


def respond(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=msgspec.json.encode(obj), status=status, content_type="application/json")


def background(app: web.Application, fn: Callable[..., object], *args: Any) -> None:
    """Run ``fn(*args)`` on the app's worker pool after the answer (a delete's steps 2-5); the
    app waits for these at shutdown."""
    async def go() -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(app[EXECUTOR], fn, *args)
        except Exception:  # the reaper retries unfinished deletes
            log.exception("background %s failed", getattr(fn, "__name__", fn))
    task = asyncio.get_running_loop().create_task(go())
    app[TASKS].add(task)
    task.add_done_callback(app[TASKS].discard)


async def run(request: web.Request, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` on the app's worker pool (it blocks)."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(request.app[EXECUTOR], functools.partial(fn, *args, **kwargs))


async def authenticated(request: web.Request) -> m.Account:
    """The account whose API key the request carries (401 ``unauthorized`` otherwise). From here
    on the request holds one of its account's ``ACCOUNT_CONCURRENCY`` slots (waiting for one when
    all are taken) until ``release_account_slot``."""
    account, key = await run(request, request.app[SERVICE].authenticate, request.headers.get("Authorization"))
    request[CALLER_KEY] = key
    slots = request.app[ACCOUNT_SLOTS]
    slot = slots.get(account.id)
    if slot is None:
        slot = slots[account.id] = asyncio.Semaphore(ACCOUNT_CONCURRENCY)
    await slot.acquire()
    request[_HELD] = slot
    return account


def release_account_slot(request: web.Request) -> None:
    slot = request.pop(_HELD, None)
    if slot is not None:
        slot.release()


async def read_body(request: web.Request) -> bytes:
    """The raw body, refused (413) past the route's ``max_body`` (the app reads up to the largest
    of all routes', so a small route must not take a large body)."""
    limit = route_of(request).max_body
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    raw = await request.read()
    if len(raw) > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(raw))
    return raw


async def decode_body(request: web.Request, type_: Any = None) -> Any:
    """The request body as the type its route declares (or ``type_``); an empty body is ``{}``."""
    type_ = route_of(request).body if type_ is None else type_
    raw = await read_body(request)
    try:
        return casing.decode(raw or b"{}", type_)
    except msgspec.ValidationError as e:
        raise InvalidRequest(f"invalid request body: {e}") from None
    except msgspec.DecodeError:
        raise InvalidRequest("the request body is not JSON") from None
    except RecursionError:  # a 30,000-deep body used to answer 500
        raise InvalidRequest("the request body nests too deeply") from None


def query_value(request: web.Request, name: str) -> str | None:
    """Query parameter ``name``, also accepted in camelCase (casing.py); both spellings: 422."""
    alias = casing.camel(name)
    value, other = request.query.get(name), request.query.get(alias) if alias != name else None
    if value is not None and other is not None:
        raise InvalidRequest(f"query parameters {name!r} and {alias!r} are the same; send one of them")
    return value if value is not None else other


def query_flag(request: web.Request, name: str) -> bool:
    return (query_value(request, name) or "").lower() in ("1", "true", "yes")
