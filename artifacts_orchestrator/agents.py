"""Agents (seed 004): rows of an account, each with a workspace it toggles on and off, and tokens.

``AgentService`` sits beside ``Service`` and reuses it, as the platform layer does: an agent's
workspace is an ordinary workspace of the account (listed by ``artifacts workspace list``,
mountable with ``artifacts mount``), created and formatted here in-process — the person only
toggles it on, so no credentials are asked (seed 004) — and deleted by the ordinary delete flow.

Storage:

- managed: the platform's bucket at ``agents/<agent id>/`` (seed 004), workspace name
  ``agent-<agent id>``; one per agent, re-attached whenever the agent goes back to managed;
- custom S3: seed 004's five fields; the location is checked first (s3check.py: the four
  permissions, each named when missing); the keys are sealed (sealing.py) and never returned
  (masked like ``artifacts storage show``) nor logged. The workspace sits at
  ``<bucket>/agents/<agent id>/``, name ``agent-<agent id>-<6 hex of endpoint and bucket>``; going
  back to the same endpoint and bucket re-attaches it (with the keys just checked).

Toggle off detaches nothing: the workspace stays attached and keeps its data; the file API just
refuses (409 ``workspace_off``). Switching storage leaves the previous workspace *detached*: kept
with its data, listed in ``detached_workspaces``, until someone deletes it (the console's button,
or ``artifacts workspace delete``). Deleting an agent revokes its tokens and, unless asked to
delete its workspaces too, leaves them as ordinary workspaces of the account.

Agent tokens (``tba_`` + 32 characters) authorize the file API for one agent only; they are
stored as SHA-256 and compared in constant time, like API keys, and revoked by the account.
``on_detach`` callbacks (the file server, agent_files.py) close an agent's open volume whenever
what it serves changes.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import secrets
import uuid
from collections.abc import Callable
from urllib.parse import urlsplit

import msgspec

from artifacts_core.errors import ArtifactsError
from artifacts_core.volume import format_volume
from artifacts_orchestrator import agent_models as am
from artifacts_orchestrator import models as m
from artifacts_orchestrator.agent_store import SQLAgentStore
from artifacts_orchestrator.errors import (
    AgentNotFound,
    AgentTokenNotFound,
    Forbidden,
    InvalidRequest,
    StorageCheckFailed,
    StorageProvisioningFailed,
    Unauthorized,
    WorkspaceOff,
)
from artifacts_orchestrator.s3check import CheckResult, aws_endpoint, check_custom_s3
from artifacts_orchestrator.sealing import SealedSecretError, SecretBox
from artifacts_orchestrator.service import KEY_ALPHABET, OWN_HANDLE, Service, hash_key

#: Journal records the usage view reads for its recent activity: a glance, not a history
#: (``artifacts events`` and ``GET .../events`` page through the rest).
RECENT_ACTIVITY = 20

log = logging.getLogger("artifacts.orchestrator.agents")

#: Region strings: AWS's (``us-east-1``) and what S3-compatible services use (``auto``).
_REGION_OK = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")
#: Bounds of the custom fields (an S3 access key id is at most 128 characters; secrets are ~40).
FIELD_MAX = 256


def new_agent_token() -> str:
    return "tba_" + "".join(secrets.choice(KEY_ALPHABET) for _ in range(32))


class AgentService:
    def __init__(self, service: Service, box: SecretBox, store: SQLAgentStore | None = None, *,
                 check: Callable[..., CheckResult] = check_custom_s3) -> None:
        self.service = service
        self.box = box
        self.store = store or SQLAgentStore(service.store)  # type: ignore[arg-type]
        self.clock = service.clock
        self.check = check
        #: Called with an agent id when what its file API serves changes (toggle, switch, delete).
        self.on_detach: list[Callable[[str], None]] = []
        service.delete_hooks.append(self._workspace_deleted)

    # -- agents -------------------------------------------------------------------------------------

    def create_agent(self, account: m.Account, req: am.CreateAgentRequest) -> am.AgentView:
        now = self.clock()
        agent = am.Agent(id="ag_" + secrets.token_hex(8), account_id=account.id, name=_name(req.name),
                         created_at=now, updated_at=now)
        self.store.add_agent(agent)
        log.info("agent %s created for account %s", agent.id, account.handle)
        return self.view(agent)

    def list_agents(self, account: m.Account) -> am.AgentList:
        return am.AgentList(agents=[self.view(a) for a in self.store.list_agents(account.id)])

    def agent(self, account: m.Account, agent_id: str) -> am.Agent:
        found = self.store.get_agent(account.id, agent_id) if am.AGENT_ID_RE.match(agent_id) else None
        if found is None:
            raise AgentNotFound(f"no agent {agent_id!r} in this account")
        return found

    def get_agent(self, account: m.Account, agent_id: str) -> am.AgentView:
        return self.view(self.agent(account, agent_id))

    def rename_agent(self, account: m.Account, agent_id: str, req: am.UpdateAgentRequest) -> am.AgentView:
        agent = self.agent(account, agent_id)
        return self.view(self.store.update_agent(agent.id, self.clock(), name=_name(req.name)) or agent)

    def delete_agent(self, account: m.Account, agent_id: str, delete_workspaces: bool = False) -> tuple[am.AgentView, list[int]]:
        """Revoke its tokens and forget it; returns the view and the workspaces whose delete was
        started (the caller runs the rest in the background, as ``DELETE /workspaces`` does)."""
        agent = self.agent(account, agent_id)
        view = self.view(agent)
        self.store.delete_agent(agent.id, self.clock())
        self._detached(agent.id)
        started = []
        if delete_workspaces:
            for row in self.store.agent_workspaces(agent.id):
                ws = self.service.store.get_workspace(row.workspace_id)
                if ws is not None and ws.status != "deleted":
                    _, run = self.service.delete_workspace(account, OWN_HANDLE, ws.name)
                    if run:
                        started.append(ws.id)
        log.info("agent %s deleted (workspaces %s)", agent.id, "deleted" if delete_workspaces else "kept")
        return msgspec.structs.replace(view, deleted_at=self.clock(), workspace_enabled=False), started

    # -- the workspace toggle -------------------------------------------------------------------------

    def set_workspace(self, account: m.Account, agent_id: str, req: am.WorkspaceRequest) -> am.AgentView:
        agent = self.agent(account, agent_id)
        if not req.enabled:
            agent = self.store.update_agent(agent.id, self.clock(), workspace_enabled=False) or agent
            self._detached(agent.id)
            return self.view(agent)
        if req.storage == "managed":
            if req.custom is not None:
                raise InvalidRequest("custom is only for storage 'custom'")
            ws = self._managed_workspace(account, agent)
        else:
            if req.custom is None:
                raise InvalidRequest("storage 'custom' needs the custom S3 fields (region, bucket, access_key_id, "
                                     "secret_access_key; endpoint blank for AWS S3)")
            ws = self._custom_workspace(account, agent, req.custom)
        changed = agent.workspace_id != ws.id
        agent = self.store.update_agent(agent.id, self.clock(), workspace_enabled=True, workspace_id=ws.id) or agent
        if changed:
            self._detached(agent.id)
            log.info("agent %s: workspace %s attached", agent.id, ws.name)
        return self.view(agent)

    def check_storage(self, account: m.Account, agent_id: str, req: am.CustomS3Request) -> am.StorageCheck:
        """The custom S3 check alone (the console runs it before saving)."""
        agent = self.agent(account, agent_id)
        return msgspec.convert(dict(self._check(agent, req)), am.StorageCheck)

    def _check(self, agent: am.Agent, req: am.CustomS3Request) -> CheckResult:
        fields = _custom_fields(req)
        return self.check(prefix=self._prefix(agent, "custom"), **fields)

    def _prefix(self, agent: am.Agent, kind: str) -> str:
        root = getattr(self.service.storage, "root", "") if kind == "managed" else ""
        return f"{root}agents/{agent.id}"

    def _managed_workspace(self, account: m.Account, agent: am.Agent) -> m.Workspace:
        if self.service.storage is None:
            raise InvalidRequest("this orchestrator has no managed storage; choose custom S3")
        for row in self.store.agent_workspaces(agent.id):
            ws = self.service.store.get_workspace(row.workspace_id)
            if row.storage == "managed" and ws is not None and ws.status == "active":
                return ws
        name = f"agent-{agent.id}"
        req = m.CreateWorkspaceRequest(name=name, backend="managed", resume=True)
        resp, _ = self.service.create_workspace(account, req, managed_prefix=self._prefix(agent, "managed"))
        self.store.add_workspace(am.AgentWorkspace(workspace_id=resp.workspace.id, agent_id=agent.id,
                                                   account_id=account.id, storage="managed", created_at=self.clock()))
        creds = resp.storage.credentials
        assert creds is not None
        return self._format(account, resp, (creds.access_key_id, creds.secret_access_key))

    def _custom_workspace(self, account: m.Account, agent: am.Agent, req: am.CustomS3Request) -> m.Workspace:
        fields = _custom_fields(req)
        result = self.check(prefix=self._prefix(agent, "custom"), **fields)
        if not result["ok"]:
            raise StorageCheckFailed(result["message"], extra={"check": dict(result)})
        sealed_for = None
        for row in self.store.agent_workspaces(agent.id):
            ws = self.service.store.get_workspace(row.workspace_id)
            if (row.storage == "custom" and ws is not None and ws.status in ("active", "pending_format")
                    and (row.endpoint, row.bucket) == (fields["endpoint"], fields["bucket"])):
                sealed_for = ws
                break
        digest = hashlib.sha256(f"{fields['endpoint']}|{fields['bucket']}".encode()).hexdigest()[:6]
        name = sealed_for.name if sealed_for is not None else f"agent-{agent.id}-{digest}"
        keys = (fields["access_key_id"], fields["secret_access_key"])
        if sealed_for is not None and sealed_for.status == "active":
            self._remember_custom(account, agent, sealed_for.id, fields)
            return sealed_for
        storage = m.StorageRequest(bucket=fields["bucket"], endpoint=fields["endpoint"], region=fields["region"],
                                   prefix=self._prefix(agent, "custom"))
        resp, _ = self.service.create_workspace(account, m.CreateWorkspaceRequest(
            name=name, backend="byo", storage=storage, resume=True))
        self._remember_custom(account, agent, resp.workspace.id, fields)
        return self._format(account, resp, keys)

    def _remember_custom(self, account: m.Account, agent: am.Agent, workspace_id: int, fields: dict) -> None:
        secret = msgspec.json.encode({"access_key_id": fields["access_key_id"],
                                      "secret_access_key": fields["secret_access_key"]})
        self.store.add_workspace(am.AgentWorkspace(
            workspace_id=workspace_id, agent_id=agent.id, account_id=account.id, storage="custom",
            endpoint=fields["endpoint"], region=fields["region"], bucket=fields["bucket"],
            access_key_hint=am.mask(fields["access_key_id"]), secret_hint=am.mask(fields["secret_access_key"]),
            sealed=self.box.seal(secret, _context(agent.id, workspace_id)), created_at=self.clock()))

    def _format(self, account: m.Account, resp: m.CreateWorkspaceResponse, keys: tuple[str, str]) -> m.Workspace:
        """Phase 2 and 3 of create, here: the person asked for a workspace, not for a CLI step."""
        view = resp.workspace
        try:
            format_volume(resp.format.url, resp.storage.url, view.volume_name, key_prefix=resp.format.key_prefix,
                          credentials=keys)
        except ArtifactsError as e:
            log.warning("formatting %s failed: %s", view.name, type(e).__name__)
            raise StorageProvisioningFailed(f"could not format the agent's workspace {view.name}: "
                                            f"{getattr(e, 'strerror', None) or e}; toggle it on again to retry") from None
        self.service.format_completed(account, OWN_HANDLE, view.name)
        ws = self.service.store.get_workspace(view.id)
        assert ws is not None
        return ws

    # -- what the file server needs -------------------------------------------------------------------

    def serving(self, agent: am.Agent) -> tuple[m.Workspace, tuple[str, str] | None]:
        """The workspace the agent's file API serves and, for custom storage, its S3 keys
        (managed ones come with each mount session)."""
        if not agent.workspace_enabled or agent.workspace_id is None:
            raise WorkspaceOff(f"agent {agent.id}'s workspace is off: turn it on (its data, if any, is kept)")
        ws = self.service.store.get_workspace(agent.workspace_id)
        if ws is None or ws.status != "active":
            raise WorkspaceOff(f"agent {agent.id}'s workspace is {ws.status if ws else 'gone'}")
        row = self.store.agent_workspace(ws.id)
        if row is None or row.storage == "managed":
            return ws, None
        assert row.sealed is not None
        try:
            keys = msgspec.json.decode(self.box.open(row.sealed, _context(agent.id, ws.id)))
        except SealedSecretError as e:  # another key file: the person must enter the keys again
            raise StorageProvisioningFailed(str(e)) from None
        return ws, (keys["access_key_id"], keys["secret_access_key"])

    def usage(self, account: m.Account, agent_id: str) -> am.AgentUsage:
        agent = self.agent(account, agent_id)
        ws = self.service.store.get_workspace(agent.workspace_id) if agent.workspace_id is not None else None
        if ws is None or ws.status != "active":
            return am.AgentUsage(agent_id=agent.id, workspace=None, used_bytes=0, inodes=0)
        counters = self.service.redis.counters(ws.key_prefix)
        return am.AgentUsage(agent_id=agent.id, workspace=m.identifier(ws.handle, ws.name),
                             used_bytes=counters["usedspace"], inodes=counters["totalinodes"],
                             recent_activity=self._recent_activity(account, ws))

    def _recent_activity(self, account: m.Account, ws: m.Workspace) -> list[dict]:
        """The journal's last ``RECENT_ACTIVITY`` events, newest first, for the console's panel."""
        journal, client = self.service.journal(account, ws.handle, ws.name)
        try:
            end = journal.end()
            page = journal.read(max(0, end - RECENT_ACTIVITY), limit=RECENT_ACTIVITY)
        finally:
            client.close()
        return [msgspec.to_builtins(e) for e in reversed(page.events)]

    def authorize(self, header: str | None, agent_id: str) -> tuple[m.Account, am.Agent]:
        """The caller of an agent's file API: an agent token of that agent, or its account's API key."""
        scheme, _, token = (header or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("missing bearer token: send an agent token (tba_…) or the account's API key")
        if not token.startswith("tba_"):
            account, _ = self.service.authenticate(header)
            return account, self.agent(account, agent_id)
        found = self.store.token_by_hash(hash_key(token)) if am.AGENT_TOKEN_RE.match(token) else None
        if found is None or not hmac.compare_digest(found[1], hash_key(token)):
            raise Unauthorized("invalid agent token")
        row, _ = found
        if row.revoked_at is not None:
            raise Unauthorized("agent token has been revoked")
        if row.agent_id != agent_id:
            raise Forbidden("this agent token is for another agent")
        agent = self.store.agent_by_id(agent_id)
        owner = self.service.store.get_account(row.account_id)
        if agent is None or owner is None:
            raise Unauthorized("agent token has been revoked")
        return owner, agent

    # -- tokens ---------------------------------------------------------------------------------------

    def create_token(self, account: m.Account, agent_id: str, req: am.CreateAgentTokenRequest) -> am.NewAgentToken:
        agent = self.agent(account, agent_id)
        token = new_agent_token()
        row = am.AgentToken(id=str(uuid.uuid4()), agent_id=agent.id, account_id=account.id,
                            name=req.name[:am.NAME_MAX], hint=token[:8] + "…", created_at=self.clock())
        self.store.add_token(row, hash_key(token))
        return am.NewAgentToken(id=row.id, agent_id=agent.id, name=row.name, token=token, created_at=row.created_at)

    def list_tokens(self, account: m.Account, agent_id: str) -> am.AgentTokenList:
        agent = self.agent(account, agent_id)
        return am.AgentTokenList(tokens=[_token_view(t) for t in self.store.list_tokens(agent.id)])

    def revoke_token(self, account: m.Account, agent_id: str, token_id: str) -> am.AgentTokenView:
        agent = self.agent(account, agent_id)
        row = self.store.revoke_token(agent.id, token_id, self.clock())
        if row is None:
            raise AgentTokenNotFound(f"no token {token_id!r} for agent {agent.id}")
        return _token_view(row)

    # -- views and hooks ------------------------------------------------------------------------------

    def view(self, agent: am.Agent) -> am.AgentView:
        attached, detached = None, []
        for row in self.store.agent_workspaces(agent.id):
            ws = self.service.store.get_workspace(row.workspace_id)
            if ws is None or (ws.status == "deleted" and ws.id != agent.workspace_id):
                continue
            v = _workspace_view(ws, row, attached=ws.id == agent.workspace_id)
            if v.attached:
                attached = v
            else:
                detached.append(v)
        return am.AgentView(id=agent.id, name=agent.name, created_at=agent.created_at, updated_at=agent.updated_at,
                            workspace_enabled=agent.workspace_enabled and attached is not None,
                            workspace=attached, detached_workspaces=detached, deleted_at=agent.deleted_at)

    def _workspace_deleted(self, ws: m.Workspace) -> None:
        """A workspace's delete was accepted: an agent it was attached to has none any more."""
        agent = self.store.agent_of_workspace(ws.id)
        if agent is not None:
            self.store.update_agent(agent.id, self.clock(), workspace_enabled=False, workspace_id=None)
            self._detached(agent.id)

    def _detached(self, agent_id: str) -> None:
        for callback in self.on_detach:
            callback(agent_id)


def _context(agent_id: str, workspace_id: int) -> str:
    return f"agent {agent_id} workspace {workspace_id}"


def _name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= am.NAME_MAX or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise InvalidRequest(f"an agent name is 1-{am.NAME_MAX} characters without control characters")
    return name


def _custom_fields(req: am.CustomS3Request) -> dict[str, str]:
    """Seed 004's fields, checked; a blank endpoint becomes AWS S3's in that region."""
    region, bucket = req.region.strip(), req.bucket.strip()
    if not region or not set(region) <= _REGION_OK or len(region) > 64:
        raise InvalidRequest("region is required: an AWS region string such as us-east-1 or eu-west-2 "
                             "(or what your S3-compatible service names, e.g. auto)")
    if not bucket:
        raise InvalidRequest("bucket is required: the name of a bucket that already exists")
    for label, value in (("access_key_id", req.access_key_id), ("secret_access_key", req.secret_access_key)):
        if not value.strip() or len(value) > FIELD_MAX:
            raise InvalidRequest(f"{label} is required")
    endpoint = req.endpoint.strip().rstrip("/") or aws_endpoint(region)
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        raise InvalidRequest("endpoint must be http(s)://host[:port] without credentials, or blank for AWS S3")
    try:  # link-local addresses are cloud metadata services, never an S3 endpoint
        if ipaddress.ip_address(parts.hostname).is_link_local:
            raise InvalidRequest("endpoint must not be a link-local address")
    except ValueError:
        pass  # a host name
    try:  # the core's own URL rules (bucket name, endpoint), with dummy keys: nothing is sent
        from artifacts_core.objects.url import store_from_url

        store_from_url(m.storage_url(bucket, "", endpoint, region), access_key="x", secret_key="x")
    except (ArtifactsError, ValueError) as e:
        raise InvalidRequest(f"invalid custom S3 location: {getattr(e, 'strerror', None) or e}") from None
    return {"endpoint": endpoint, "region": region, "bucket": bucket,
            "access_key_id": req.access_key_id.strip(), "secret_access_key": req.secret_access_key.strip()}


def _workspace_view(ws: m.Workspace, row: am.AgentWorkspace, *, attached: bool) -> am.AgentWorkspaceView:
    return am.AgentWorkspaceView(workspace=m.identifier(ws.handle, ws.name), name=ws.name, status=ws.status,
                                 storage=row.storage, bucket=ws.bucket, endpoint=ws.endpoint, region=ws.region,
                                 prefix=ws.storage_prefix, attached=attached, access_key_id=row.access_key_hint,
                                 secret_access_key=row.secret_hint)


def _token_view(t: am.AgentToken) -> am.AgentTokenView:
    return am.AgentTokenView(id=t.id, agent_id=t.agent_id, name=t.name, hint=t.hint, created_at=t.created_at,
                             revoked_at=t.revoked_at)
