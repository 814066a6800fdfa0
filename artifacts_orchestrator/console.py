"""The web console (docs/console.md): plain HTML, one small script and one stylesheet, served as is.

No build step and nothing fetched from the internet: ``console_static/`` holds the three files
(written by hand, no framework) that the orchestrator serves at ``/console/``; ``/`` redirects
there. The page talks to the same HTTP API as the SDKs, with the API key the person signs in with
kept in the tab's ``sessionStorage`` (gone when the tab closes; never in a cookie, so no request
is made with it unless the page's own script sends it: no cross-site request forgery).

Every answer carries a strict Content-Security-Policy (scripts and styles from this origin only,
no inline script, no framing, connections to this origin only), ``nosniff`` and
``Referrer-Policy: no-referrer``; the files are read once at import (they are package data).
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from artifacts_orchestrator.errors import RouteNotFound
from artifacts_orchestrator.routing import Routes

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
