"""The web console (docs/console.md): plain HTML, one small script and one stylesheet, served as is.

No build step and nothing fetched from the internet: ``console_static/`` holds the three files
(written by hand, no framework) that the orchestrator serves at ``/console/``; ``/`` redirects
there. The page talks to the same HTTP API as the SDKs, with the API key the person signs in with
kept in the tab's ``sessionStorage`` (gone when the tab closes; never in a cookie, so no request
is made with it unless the page's own script sends it: no cross-site request forgery).

Local login: ``artifacts console`` (a signed-in CLI) asks ``POST /console/sign-in-links`` for a
one-time link; opening it, the page trades the code (``POST /console/sign-in``, no key) for a fresh
API key named ``console`` that "Sign out" revokes. Codes live in the orchestrator's database
(their SHA-256, not the code; agent_store.py), for ``LINK_TTL`` seconds, and work once: the
statement that takes one deletes it, so with several orchestrator processes behind one address a
link made through one is taken through any other, once.

Every answer carries a strict Content-Security-Policy (scripts and styles from this origin only,
no inline script, no framing, connections to this origin only), ``nosniff`` and
``Referrer-Policy: no-referrer``; the files are read once at import (they are package data).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from importlib import resources

import msgspec
from aiohttp import web

from artifacts_orchestrator import models as m
from artifacts_orchestrator.agent_store import SQLAgentStore
from artifacts_orchestrator.errors import RouteNotFound, Unauthorized
from artifacts_orchestrator.handlers import SERVICE, authenticated, decode_body, respond, run
from artifacts_orchestrator.routing import Routes, register

ROUTES = Routes("console")
_FILES = {"index.html": "text/html", "console.js": "text/javascript", "console.css": "text/css"}
_BODIES = {name: (resources.files("artifacts_orchestrator") / "console_static" / name).read_bytes()
           for name in _FILES}
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}


def _file(name: str) -> web.Response:
    if name not in _FILES:
        raise RouteNotFound(f"no console file {name!r}")
    return web.Response(body=_BODIES[name], content_type=_FILES[name], charset="utf-8", headers=HEADERS)


@ROUTES.get("/", "Redirect to the web console", auth="none", operation_id="consoleRoot")
async def root(request: web.Request) -> web.Response:
    raise web.HTTPFound("/console/")


@ROUTES.get("/console/", "The web console (HTML)", auth="none", operation_id="consolePage")
async def page(request: web.Request) -> web.Response:
    """Sign in with an API key; agents, their Workspace tab, files and tokens (docs/console.md)."""
    return _file("index.html")


@ROUTES.get("/console/{asset}", "The console's script and stylesheet", auth="none", operation_id="consoleAsset")
async def asset(request: web.Request) -> web.Response:
    return _file(request.match_info["asset"])


# -- local login: one-time sign-in links ----------------------------------------------------------

#: A link is for opening right away: two minutes, once.
LINK_TTL = 120.0


class SignInLink(msgspec.Struct, frozen=True, kw_only=True):
    url: str
    expires_at: float


class SignInRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    code: str


class SignInCodes:
    """One-time codes kept as their SHA-256 in the database (see the module note)."""

    def __init__(self, store: SQLAgentStore, clock: Callable[[], float]) -> None:
        self.store = store
        self.clock = clock

    def issue(self, account_id: int) -> tuple[str, float]:
        code = secrets.token_urlsafe(24)
        now = self.clock()
        self.store.add_console_code(_digest(code), account_id, now + LINK_TTL, now)
        return code, now + LINK_TTL

    def take(self, code: str) -> int:
        account_id = self.store.take_console_code(_digest(code), self.clock())
        if account_id is None:
            raise Unauthorized("this sign-in link was used or has expired: run `artifacts console` again")
        return account_id


def _digest(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


CODES = web.AppKey("console_codes", SignInCodes)


@ROUTES.post("/console/sign-in-links", "A one-time link that signs the console in as this account",
             returns=SignInLink, status=201, operation_id="createConsoleSignInLink")
async def create_link(request: web.Request) -> web.Response:
    """What ``artifacts console`` prints: open it within two minutes, once."""
    account = await authenticated(request)
    code, expires = await run(request, request.app[CODES].issue, account.id)
    return respond(SignInLink(url=f"{request.url.origin()}/console/?code={code}", expires_at=expires), 201)


@ROUTES.post("/console/sign-in", "Trade a sign-in link's code for a new API key named console",
             body=SignInRequest, returns=m.NewKey, status=201, auth="none", operation_id="consoleSignIn")
async def sign_in(request: web.Request) -> web.Response:
    req = await decode_body(request)
    account_id = await run(request, request.app[CODES].take, req.code)
    svc = request.app[SERVICE]
    account = await run(request, svc.store.get_account, account_id)
    if account is None:
        raise Unauthorized("this sign-in link's account no longer exists")
    return respond(await run(request, svc.create_key, account, "console"), 201)


def setup(app: web.Application, store: SQLAgentStore) -> None:
    app[CODES] = SignInCodes(store, app[SERVICE].clock)
    register(app, ROUTES)
