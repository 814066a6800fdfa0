"""A small Python client of the orchestrator's HTTP API: sync (``Artifacts``) and async (``AsyncArtifacts``).

::

    from artifacts_orchestrator.client import Artifacts
    api = Artifacts()                      # the CLI's login: env, then credentials.json (login.py)
    r = api.workspaces.create("notes")     # Phase 1: format credentials + storage
    ...format with r.format.url, r.format.key_prefix, r.storage...
    api.workspaces.format_completed("notes")
    grant = api.sessions.create("notes", mode="ro")
    api.checkpoints.create("notes", "before-agent", keep="7d")   # docs/history.md
    api.checkpoints.restore("notes", "before-agent")
    issued = api.platform.create_mount_ticket("acme", "task-1", workspace="notes", ttl_seconds=3600)
    api.platform.revoke_access_grants(tenant_slug="acme", runtime_id="task-1")
    api.workspaces.delete("notes")

``Artifacts()`` with no arguments speaks for whoever the ``artifacts`` command speaks for
(``login.resolve``): ``TONBO_API_KEY``, else the key ``artifacts login`` / ``artifacts up`` saved;
``ARTIFACTS_ORCHESTRATOR_URL``, else the saved orchestrator, else the local stack's address.

Results are the msgspec structs of ``models.py``; failures are the exceptions of ``errors.py``
(``WorkspaceExists`` carries ``existing``; an unreachable orchestrator is
``OrchestratorUnavailable``). Workspaces are addressed as ``name`` (your own handle),
``handle/name`` or ``artifacts://handle/name``. ``platform`` holds the tenant, grant and
mount-ticket calls of issue 8 (docs/platform.md).

Moving parts: each namespace method describes one call (method, path, body, result type) and
hands it to the client's ``_send``, which is blocking in ``Artifacts`` (stdlib ``urllib``) and a
coroutine in ``AsyncArtifacts`` (aiohttp), so both share every method. The API key travels only
in the ``Authorization`` header and appears in no ``repr`` or error.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import msgspec

from artifacts_orchestrator import models as m
from artifacts_orchestrator import platform_models as pm
from artifacts_orchestrator.errors import InvalidRequest, OrchestratorUnavailable, error_from_body
from artifacts_orchestrator.login import DEFAULT_URL, KEY_ENV, URL_ENV, resolve

if TYPE_CHECKING:  # aiohttp is imported when the async client first sends
    import aiohttp

__all__ = ["DEFAULT_URL", "KEY_ENV", "URL_ENV", "Artifacts", "AsyncArtifacts", "parse_ref", "wait_for_status"]
#: Seconds per HTTP call: every route answers in well under a second; Redis or S3 trouble
#: surfaces as an error body long before this.
DEFAULT_TIMEOUT = 30.0


def parse_ref(ref: str) -> tuple[str, str]:
    """``name`` | ``handle/name`` | ``artifacts://handle/name`` -> (handle or ``~``, name)."""
    text = ref.removeprefix("artifacts://")
    handle, sep, name = text.rpartition("/")
    if not sep:
        handle = "~"  # the caller's own handle, resolved by the server
    if not name or "/" in handle or not m.WORKSPACE_NAME_RE.match(name):
        raise InvalidRequest(f"invalid workspace reference {ref!r}: use name, handle/name or artifacts://handle/name")
    return handle or "~", name


def _ws_path(ref: str, suffix: str = "") -> str:
    handle, name = parse_ref(ref)
    return f"/workspaces/{quote(handle, safe='~')}/{quote(name, safe='')}{suffix}"


class _Call(msgspec.Struct, frozen=True):
    method: str
    path: str
    body: Any = None
    type: Any = None


class _Workspaces:
    def __init__(self, client) -> None:
        self._c = client

    def create(self, name: str, *, backend: str = "managed", bucket: str | None = None,
               endpoint: str | None = None, region: str = "", prefix: str = "",
               cache_profile: str = "interactive", resume: bool = False) -> m.CreateWorkspaceResponse:
        storage = None
        if backend == "byo":
            storage = {"bucket": bucket or "", "endpoint": endpoint or "", "region": region, "prefix": prefix}
        body = {"name": name, "backend": backend, "storage": storage, "cache_profile": cache_profile,
                "resume": resume}
        return self._c._send(_Call("POST", "/workspaces", body, m.CreateWorkspaceResponse))

    def format_completed(self, ref: str) -> m.WorkspaceView:
        return self._c._send(_Call("POST", _ws_path(ref, "/format-completed"), {}, m.WorkspaceView))

    def list(self, *, include_deleted: bool = False) -> m.WorkspaceList:
        path = "/workspaces" + ("?include_deleted=true" if include_deleted else "")
        return self._c._send(_Call("GET", path, None, m.WorkspaceList))

    def get(self, ref: str) -> m.WorkspaceView:
        return self._c._send(_Call("GET", _ws_path(ref), None, m.WorkspaceView))

    def inspect(self, ref: str) -> dict:
        """A summary of the workspace's metadata keyspace (key kinds, counters, sessions)."""
        return self._c._send(_Call("GET", _ws_path(ref, "/inspect"), None, dict))

    def events(self, ref: str, *, since: str | int | None = None, path: str | None = None,
               actor: str | None = None, limit: int | None = None, reads: bool = False,
               reads_since: int | str | None = None) -> dict:
        """One page of the workspace's journal: ``{events, cursor, missed, more}``; pass ``cursor``
        as ``since`` for the next page (docs/journal.md). ``reads``: the read audit's events merged
        in, and ``reads_cursor`` to pass as ``reads_since``."""
        query = {k: str(v) for k, v in (("since", since), ("path", path), ("actor", actor), ("limit", limit),
                                        ("reads", 1 if reads else None), ("reads_since", reads_since))
                 if v is not None}
        suffix = "/events" + ("?" + urlencode(query) if query else "")
        return self._c._send(_Call("GET", _ws_path(ref, suffix), None, dict))

    def references(self, ref: str) -> dict:
        """Every S3 slice the workspace's metadata refers to, its pending deletes and the live
        sessions' reserved slice ids (what ``artifacts gc`` and ``fsck`` compare objects with)."""
        return self._c._send(_Call("GET", _ws_path(ref, "/references"), None, dict))

    def quota(self, ref: str) -> m.Quota:
        """The workspace's capacity and inode limits (0: unlimited) and what it uses."""
        return self._c._send(_Call("GET", _ws_path(ref, "/quota"), None, m.Quota))

    def set_quota(self, ref: str, *, capacity: int | None = None, inodes: int | None = None) -> m.Quota:
        """Change the limits given (0 removes one; one left out keeps its value)."""
        body = {k: v for k, v in (("capacity", capacity), ("inodes", inodes)) if v is not None}
        return self._c._send(_Call("PUT", _ws_path(ref, "/quota"), body, m.Quota))

    def delete(self, ref: str) -> m.WorkspaceView:
        """Starts the delete flow (202); poll ``get`` until ``status == "deleted"``."""
        return self._c._send(_Call("DELETE", _ws_path(ref), None, m.WorkspaceView))


def wait_for_status(api: Artifacts, ref: str, status: str = "deleted", *, timeout: float = 60.0,
                    interval: float = 0.1) -> m.WorkspaceView:
    """Poll ``api.workspaces.get(ref)`` until it reports ``status`` (e.g. after ``delete``).
    Raises ``TimeoutError`` with the last status seen."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        ws = api.workspaces.get(ref)
        if ws.status == status:
            return ws
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{ref} is still {ws.status} after {timeout:.0f} s (waiting for {status})")
        time.sleep(interval)


class _Sessions:
    def __init__(self, client) -> None:
        self._c = client

    def create(self, ref: str, *, mode: str = "rw", ttl_seconds: int | None = None, host: str = "",
               mountpoint: str = "") -> m.SessionGrant:
        body = {"mode": mode, "ttl_seconds": ttl_seconds, "host": host, "mountpoint": mountpoint}
        return self._c._send(_Call("POST", _ws_path(ref, "/sessions"), body, m.SessionGrant))

    def list(self, ref: str, *, include_revoked: bool = False) -> m.SessionList:
        suffix = "/sessions" + ("?include_revoked=true" if include_revoked else "")
        return self._c._send(_Call("GET", _ws_path(ref, suffix), None, m.SessionList))

    def revoke(self, ref: str, session_id: str) -> m.SessionView:
        return self._c._send(_Call("DELETE", _ws_path(ref, f"/sessions/{quote(session_id, safe='')}"),
                                   None, m.SessionView))

    def renew(self, ref: str, session_id: str, *, ttl_seconds: int | None = None) -> m.SessionView:
        return self._c._send(_Call("POST", _ws_path(ref, f"/sessions/{quote(session_id, safe='')}/renew"),
                                   {"ttl_seconds": ttl_seconds}, m.SessionView))

    def renew_with_token(self, renewal_token: str) -> m.SessionRenewed:
        """Extend a session with its own renewal token (``SessionGrant.renewal.token``): needs no
        API key, so a client made with ``Artifacts("")`` may call it."""
        return self._c._send(_Call("POST", "/sessions/renew", {"renewal_token": renewal_token}, m.SessionRenewed),
                             token="")


class _Checkpoints:
    """A workspace's checkpoints (docs/history.md): the orchestrator runs them on the workspace's
    metadata with its admin rights, never on the data path. ``keep``: ``3600``, ``90m``, ``7d``."""

    def __init__(self, client) -> None:
        self._c = client

    def list(self, ref: str) -> m.CheckpointList:
        return self._c._send(_Call("GET", _ws_path(ref, "/checkpoints"), None, m.CheckpointList))

    def create(self, ref: str, name: str | None = None, *, keep: str | None = None) -> m.CheckpointView:
        return self._c._send(_Call("POST", _ws_path(ref, "/checkpoints"), {"name": name, "keep": keep},
                                   m.CheckpointView))

    def get(self, ref: str, name: str) -> m.CheckpointDetail:
        return self._c._send(_Call("GET", _ws_path(ref, f"/checkpoints/{quote(name, safe='')}"), None,
                                   m.CheckpointDetail))

    def diff(self, ref: str, name: str, *, to: str | None = None) -> m.ChangeList:
        query = "?" + urlencode({"to": to}) if to else ""
        return self._c._send(_Call("GET", _ws_path(ref, f"/checkpoints/{quote(name, safe='')}/diff{query}"), None,
                                   m.ChangeList))

    def restore(self, ref: str, name: str, *, safety: str | None = None) -> m.RestoreResult:
        return self._c._send(_Call("POST", _ws_path(ref, f"/checkpoints/{quote(name, safe='')}/restore"),
                                   {"safety": safety}, m.RestoreResult))

    def delete(self, ref: str, name: str) -> m.DeletedCheckpoint:
        return self._c._send(_Call("DELETE", _ws_path(ref, f"/checkpoints/{quote(name, safe='')}"), None,
                                   m.DeletedCheckpoint))


class _Keys:
    def __init__(self, client) -> None:
        self._c = client

    def create(self, name: str = "") -> m.NewKey:
        return self._c._send(_Call("POST", "/keys", {"name": name}, m.NewKey))

    def list(self) -> m.KeyList:
        return self._c._send(_Call("GET", "/keys", None, m.KeyList))

    def revoke(self, key_id: str) -> m.KeyView:
        return self._c._send(_Call("DELETE", f"/keys/{quote(key_id, safe='')}", None, m.KeyView))


class _Platform:
    """Tenants, access grants and mount tickets (issue 8; docs/platform.md). Seed 003's
    ``createMountTicket`` is ``create_mount_ticket``; its ``mount_ticket`` is the JSON a runtime's
    ``mount-ticket.json`` holds (``msgspec.json.encode(issued.mount_ticket)``)."""

    def __init__(self, client) -> None:
        self._c = client

    def create_tenant(self, slug: str, *, external_id: str = "", metadata: dict | None = None) -> pm.TenantView:
        body = {"slug": slug, "external_id": external_id, "metadata": metadata or {}}
        return self._c._send(_Call("POST", "/tenants", body, pm.TenantView))

    def list_tenants(self) -> pm.TenantList:
        return self._c._send(_Call("GET", "/tenants", None, pm.TenantList))

    def get_tenant(self, slug: str) -> pm.TenantView:
        return self._c._send(_Call("GET", f"/tenants/{quote(slug, safe='')}", None, pm.TenantView))

    def create_access_grant(self, workspace: str, *, tenant_slug: str, runtime_id: str | None = None,
                            mode: str = "rw", ttl_seconds: int | None = None) -> pm.GrantView:
        """``runtime_id=None`` makes the grant tenant-wide; ``ttl_seconds`` makes it expire."""
        body = {"workspace": workspace, "tenant_slug": tenant_slug, "runtime_id": runtime_id, "mode": mode,
                "ttl_seconds": ttl_seconds}
        return self._c._send(_Call("POST", "/grants", body, pm.GrantView))

    def list_access_grants(self, *, tenant_slug: str | None = None, runtime_id: str | None = None,
                           workspace: str | None = None, include_revoked: bool = False) -> pm.GrantList:
        query = {k: v for k, v in (("tenant", tenant_slug), ("runtime_id", runtime_id), ("workspace", workspace),
                                   ("include_revoked", "true" if include_revoked else None)) if v is not None}
        return self._c._send(_Call("GET", "/grants" + (f"?{urlencode(query)}" if query else ""), None,
                                   pm.GrantList))

    def get_access_grant(self, grant_id: str) -> pm.GrantView:
        return self._c._send(_Call("GET", f"/grants/{quote(grant_id, safe='')}", None, pm.GrantView))

    def revoke_access_grants(self, selector: dict | None = None, *, grant_id: str | None = None,
                             tenant_slug: str | None = None, runtime_id: str | None = None) -> pm.RevokeResult:
        """By ``grant_id``; the whole tenant (``tenant_slug``); one runtime (``tenant_slug`` +
        ``runtime_id``). Live mounts of what is revoked fail with EACCES within about a second.
        ``selector`` also takes seed 003's ``{"tenantSlug": …, "runtimeId": …}``."""
        sel = selector or {}
        body = {"grant_id": grant_id or sel.get("grantId") or sel.get("grant_id"),
                "tenant_slug": tenant_slug or sel.get("tenantSlug") or sel.get("tenant_slug"),
                "runtime_id": runtime_id or sel.get("runtimeId") or sel.get("runtime_id")}
        return self._c._send(_Call("POST", "/grants/revoke", body, pm.RevokeResult))

    def create_mount_ticket(self, tenant_slug: str, runtime_id: str, *, workspace: str, ttl_seconds: int,
                            mode: str = "rw") -> pm.TicketIssued:
        """Creates the tenant and the runtime-scoped grant if missing; returns a signed ticket."""
        body = {"tenant_slug": tenant_slug, "runtime_id": runtime_id, "workspace": workspace, "mode": mode,
                "ttl_seconds": ttl_seconds}
        return self._c._send(_Call("POST", "/mount-tickets", body, pm.TicketIssued))

    def exchange_mount_ticket(self, mount_ticket: Any, *, workspace: str | None = None, mode: str | None = None,
                              host: str = "", mountpoint: str = "") -> pm.ExchangeResult:
        """What a runtime does (the CLI's ``mount --ticket-file``): no API key is sent, ever.
        ``mode="ro"`` narrows an ``rw`` ticket to a read-only session."""
        body = {"mount_ticket": msgspec.to_builtins(mount_ticket), "workspace": workspace, "mode": mode,
                "host": host, "mountpoint": mountpoint}
        return self._c._send(_Call("POST", "/mount-tickets/exchange", body, pm.ExchangeResult), token="")

    def public_keys(self) -> pm.PublicKeyList:
        return self._c._send(_Call("GET", "/mount-tickets/keys", None, pm.PublicKeyList), token="")


class _Base:
    def __init__(self, api_key: str | None = None, *, base_url: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        login = resolve(api_key, base_url)  # the CLI's chain: argument > env > credentials.json
        self._api_key = login.api_key
        self.base_url = login.url
        self.timeout = timeout
        self.workspaces = _Workspaces(self)
        self.sessions = _Sessions(self)
        self.checkpoints = _Checkpoints(self)
        self.keys = _Keys(self)
        self.platform = _Platform(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    def _headers(self, token: str | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json", "Content-Type": "application/json"}
        token = self._api_key if token is None else token
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    @staticmethod
    def _decode(call: _Call, status: int, raw: bytes) -> Any:
        if status >= 400:
            try:
                body = json.loads(raw or b"null")
            except ValueError:
                body = None
            raise error_from_body(status, body)
        return msgspec.json.decode(raw, type=call.type) if call.type is not None else json.loads(raw or b"null")

    def whoami(self) -> m.WhoAmI:
        return self._send(_Call("GET", "/whoami", None, m.WhoAmI))

    def health(self) -> dict:
        return self._send(_Call("GET", "/healthz", None, None))

    def create_account(self, handle: str, *, admin_token: str, key_name: str = "default") -> m.NewAccount:
        """Bootstrap route (the orchestrator's admin token, not an API key)."""
        return self._send(_Call("POST", "/admin/accounts", {"handle": handle, "key_name": key_name},
                                m.NewAccount), token=admin_token)

    def console_link(self) -> dict:
        """A one-time link signing the web console in as this account (``artifacts console``)."""
        return self._send(_Call("POST", "/console/sign-in-links", {}, None))

    def _send(self, call: _Call, *, token: str | None = None) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


class Artifacts(_Base):
    """Blocking client."""

    def _send(self, call: _Call, *, token: str | None = None) -> Any:
        data = None if call.body is None else json.dumps(call.body).encode()
        req = urllib.request.Request(self.base_url + call.path, data=data, method=call.method,
                                     headers=self._headers(token))
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return self._decode(call, resp.status, resp.read())
        except urllib.error.HTTPError as e:
            return self._decode(call, e.code, e.read())
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise OrchestratorUnavailable(f"cannot reach the orchestrator at {self.base_url}: {reason}") from None

    def stream_events(self, ref: str, *, since: str | int | None = None, path: str | None = None,
                      actor: str | None = None, reads: bool = False) -> Iterator[dict]:
        """The workspace's journal live (the server-sent events endpoint): every event from
        ``since`` on, then each new one, until the caller stops iterating. ``reads``: the read
        audit's events too (kind ``read``)."""
        query = {k: str(v) for k, v in (("since", since), ("path", path), ("actor", actor),
                                        ("reads", 1 if reads else None)) if v is not None}
        url = self.base_url + _ws_path(ref, "/events/stream" + ("?" + urlencode(query) if query else ""))
        req = urllib.request.Request(url, headers=self._headers(None))
        try:
            resp = urllib.request.urlopen(req, timeout=max(self.timeout, 60.0))  # keepalives come every 15 s
        except urllib.error.HTTPError as e:
            self._decode(_Call("GET", url, None, dict), e.code, e.read())  # raises the API error
            raise
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise OrchestratorUnavailable(f"cannot reach the orchestrator at {self.base_url}: {reason}") from None
        with resp:
            data: list[bytes] = []
            for line in resp:
                line = line.rstrip(b"\r\n")
                if line.startswith(b"data:"):
                    data.append(line[5:].lstrip())
                elif not line and data:
                    yield json.loads(b"\n".join(data))
                    data = []

    def close(self) -> None:
        pass

    def __enter__(self) -> Artifacts:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AsyncArtifacts(_Base):
    """Asyncio client (aiohttp); every method returns a coroutine. ``await client.close()``."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._session: aiohttp.ClientSession | None = None

    async def _send(self, call: _Call, *, token: str | None = None) -> Any:
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        data = None if call.body is None else json.dumps(call.body).encode()
        try:
            async with self._session.request(call.method, self.base_url + call.path, data=data,
                                             headers=self._headers(token)) as resp:
                return self._decode(call, resp.status, await resp.read())
        except aiohttp.ClientConnectionError as e:
            raise OrchestratorUnavailable(f"cannot reach the orchestrator at {self.base_url}: {e}") from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> AsyncArtifacts:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()
