"""Rows and wire types of agents (seed 004; docs/agents.md): msgspec, like models.py.

Rows: ``Agent`` (a row of an account: a name, whether its workspace is on, which workspace is
attached), ``AgentWorkspace`` (one workspace an agent has had: managed, or custom S3 with the
location and the sealed keys), ``AgentToken`` (a bearer credential scoped to one agent's files,
stored as its SHA-256 like API keys). Views never carry a secret: custom keys are shown masked
(``mask``: first 4 + ``***`` + last 4, the rule of ``artifacts storage show``), agent tokens only
once, in the answer that mints them.
"""

from __future__ import annotations

import re
from typing import Literal

import msgspec

#: Agent ids: ``ag_`` + 16 hex characters (64 random bits; also the storage prefix
#: ``agents/<id>/`` and part of the workspace name, so URL- and S3-safe).
AGENT_ID_RE = re.compile(r"^ag_[0-9a-f]{16}$")
#: Agent tokens: ``tba_`` + 32 characters (never confused with ``tbo_`` API keys).
AGENT_TOKEN_RE = re.compile(r"^tba_[A-Za-z0-9]{32}$")
#: Names people give agents: 1-100 characters, no control characters.
NAME_MAX = 100
#: Masking needs enough characters to hide some (the CLI's rule).
MIN_MASKABLE = 12

StorageKind = Literal["managed", "custom"]


def mask(value: str | None) -> str:
    """``AKIA***726M``: how ``artifacts storage show`` prints a credential (SPEC.md §8)."""
    if not value:
        return "(unset)"
    if len(value) < MIN_MASKABLE:
        return "***"
    return f"{value[:4]}***{value[-4:]}"


class Agent(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    account_id: int
    name: str
    created_at: float
    updated_at: float
    workspace_enabled: bool = False
    workspace_id: int | None = None  # the attached workspace (kept while toggled off)
    deleted_at: float | None = None


class AgentWorkspace(msgspec.Struct, frozen=True, kw_only=True):
    workspace_id: int
    agent_id: str
    account_id: int
    storage: StorageKind
    endpoint: str = ""
    region: str = ""
    bucket: str = ""
    access_key_hint: str = ""  # masked access key id, for views
    secret_hint: str = ""  # masked secret, for views
    sealed: bytes | None = None  # SecretBox blob of {"access_key_id", "secret_access_key"}
    created_at: float = 0.0


class AgentToken(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    agent_id: str
    account_id: int
    name: str
    hint: str
    created_at: float
    revoked_at: float | None = None


# -- requests --------------------------------------------------------------------------------------


class CreateAgentRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str


class UpdateAgentRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str


class CustomS3Request(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Seed 004's five fields. ``endpoint`` blank means AWS S3 in ``region``."""

    region: str
    bucket: str
    access_key_id: str
    secret_access_key: str
    endpoint: str = ""


class WorkspaceRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Toggle on (``storage`` managed, or custom with ``custom``) or off (data kept)."""

    enabled: bool
    storage: StorageKind = "managed"
    custom: CustomS3Request | None = None


class CreateAgentTokenRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str = ""


# -- views -----------------------------------------------------------------------------------------


class AgentWorkspaceView(msgspec.Struct, frozen=True, kw_only=True):
    workspace: str  # artifacts://handle/name: mountable with `artifacts mount`
    name: str
    status: str
    storage: StorageKind
    bucket: str
    endpoint: str
    region: str
    prefix: str
    attached: bool
    access_key_id: str = ""  # masked (custom only)
    secret_access_key: str = ""  # masked (custom only)


class AgentView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    created_at: float
    updated_at: float
    workspace_enabled: bool
    #: The attached workspace (also while toggled off: its data is kept), or null.
    workspace: AgentWorkspaceView | None
    #: Workspaces the agent had before switching storage: kept, with their data, until deleted.
    detached_workspaces: list[AgentWorkspaceView]
    deleted_at: float | None = None


class AgentList(msgspec.Struct, frozen=True, kw_only=True):
    agents: list[AgentView]


class StorageCheck(msgspec.Struct, frozen=True, kw_only=True):
    ok: bool
    problem: str | None
    message: str
    missing_permissions: list[str]
    unchecked_permissions: list[str]
    leftover_key: str | None


class AgentTokenView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    agent_id: str
    name: str
    hint: str
    created_at: float
    revoked_at: float | None = None


class NewAgentToken(msgspec.Struct, frozen=True, kw_only=True):
    """A freshly minted agent token: ``token`` is shown here once and never again."""

    id: str
    agent_id: str
    name: str
    token: str
    created_at: float


class AgentTokenList(msgspec.Struct, frozen=True, kw_only=True):
    tokens: list[AgentTokenView]


class AgentUsage(msgspec.Struct, frozen=True, kw_only=True):
    agent_id: str
    workspace: str | None
    used_bytes: int
    inodes: int
    #: The workspace journal's latest changes, newest first (``RECENT_ACTIVITY`` at most; paths
    #: resolved now; docs/console.md); null without a workspace.
    recent_activity: list[dict] | None = None
