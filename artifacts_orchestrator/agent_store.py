"""Where agents, their workspaces and their tokens live: three tables beside the core ones.

``SQLiteAgentStore`` keeps them in the orchestrator's SQLite file, with that store's
connection-per-thread and ``BEGIN IMMEDIATE`` write transactions (``SQLiteStore._write``), as
platform_store.py does. Agent token hashes live in their own column and never leave this module
except for the constant-time comparison in ``token_by_hash``. Sealed S3 keys are opaque blobs
here (sealing.py opens them).

Invariant: an agent has at most one attached workspace (``agents.workspace_id``); every
workspace it ever had has an ``agent_workspaces`` row, so a detached one can be found again
(re-attached when the agent goes back to the same storage) until the workspace is deleted.
"""

from __future__ import annotations

from typing import Any

import msgspec

from artifacts_orchestrator import agent_models as am
from artifacts_orchestrator.store import SQLiteStore


def _agent(row: Any) -> am.Agent | None:
    # lax: SQLite keeps the boolean as 0/1
    return None if row is None else msgspec.convert(dict(row), am.Agent, strict=False)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS agents (
    id TEXT PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts(id),
    name TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    workspace_enabled INTEGER NOT NULL DEFAULT 0,
    workspace_id INTEGER,
    deleted_at REAL
);
CREATE INDEX IF NOT EXISTS agents_account ON agents(account_id) WHERE deleted_at IS NULL;
CREATE TABLE IF NOT EXISTS agent_workspaces (
    workspace_id INTEGER PRIMARY KEY REFERENCES workspaces(id),
    agent_id TEXT NOT NULL REFERENCES agents(id),
    account_id INTEGER NOT NULL,
    storage TEXT NOT NULL,
    endpoint TEXT NOT NULL DEFAULT '',
    region TEXT NOT NULL DEFAULT '',
    bucket TEXT NOT NULL DEFAULT '',
    access_key_hint TEXT NOT NULL DEFAULT '',
    secret_hint TEXT NOT NULL DEFAULT '',
    sealed BLOB,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS agent_workspaces_agent ON agent_workspaces(agent_id);
CREATE TABLE IF NOT EXISTS agent_tokens (
    id TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL REFERENCES agents(id),
    account_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    hint TEXT NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL
);
"""

_TOKEN_COLS = "id, agent_id, account_id, name, hint, created_at, revoked_at"


class SQLiteAgentStore:
    def __init__(self, store: SQLiteStore) -> None:
        self.base = store
        store._conn().executescript(_SCHEMA)

    # -- agents -------------------------------------------------------------------------------------

    def add_agent(self, agent: am.Agent) -> None:
        with self.base._write() as conn:
            conn.execute("INSERT INTO agents(id, account_id, name, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
                         (agent.id, agent.account_id, agent.name, agent.created_at, agent.updated_at))

    def get_agent(self, account_id: int, agent_id: str) -> am.Agent | None:
        return _agent(self.base._conn().execute("SELECT * FROM agents WHERE id = ? AND account_id = ? "
                                                "AND deleted_at IS NULL", (agent_id, account_id)).fetchone())

    def agent_by_id(self, agent_id: str) -> am.Agent | None:
        return _agent(self.base._conn().execute("SELECT * FROM agents WHERE id = ? AND deleted_at IS NULL",
                                                (agent_id,)).fetchone())

    def list_agents(self, account_id: int) -> list[am.Agent]:
        rows = self.base._conn().execute("SELECT * FROM agents WHERE account_id = ? AND deleted_at IS NULL "
                                         "ORDER BY created_at, id", (account_id,)).fetchall()
        return [a for a in map(_agent, rows) if a is not None]

    def agent_of_workspace(self, workspace_id: int) -> am.Agent | None:
        return _agent(self.base._conn().execute("SELECT * FROM agents WHERE workspace_id = ? AND deleted_at IS NULL",
                                                (workspace_id,)).fetchone())

    def update_agent(self, agent_id: str, now: float, **fields: Any) -> am.Agent | None:
        updates = {"updated_at": now, **fields}
        sets = ", ".join(f"{k} = ?" for k in updates)  # column names come from this package only
        with self.base._write() as conn:
            conn.execute(f"UPDATE agents SET {sets} WHERE id = ? AND deleted_at IS NULL",
                         (*updates.values(), agent_id))
        return self.agent_by_id(agent_id)

    def delete_agent(self, agent_id: str, now: float) -> None:
        with self.base._write() as conn:
            conn.execute("UPDATE agents SET deleted_at = ?, workspace_enabled = 0, updated_at = ? WHERE id = ?",
                         (now, now, agent_id))
            conn.execute("UPDATE agent_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE agent_id = ?",
                         (now, agent_id))

    # -- the workspaces an agent had ------------------------------------------------------------------

    def add_workspace(self, row: am.AgentWorkspace) -> None:
        with self.base._write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO agent_workspaces(workspace_id, agent_id, account_id, storage, endpoint, "
                "region, bucket, access_key_hint, secret_hint, sealed, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (row.workspace_id, row.agent_id, row.account_id, row.storage, row.endpoint, row.region, row.bucket,
                 row.access_key_hint, row.secret_hint, row.sealed, row.created_at))

    def agent_workspace(self, workspace_id: int) -> am.AgentWorkspace | None:
        return self.base._one(am.AgentWorkspace, "SELECT * FROM agent_workspaces WHERE workspace_id = ?",
                              workspace_id)

    def agent_workspaces(self, agent_id: str) -> list[am.AgentWorkspace]:
        return self.base._many(am.AgentWorkspace, "SELECT * FROM agent_workspaces WHERE agent_id = ? "
                               "ORDER BY workspace_id", agent_id)

    # -- tokens ---------------------------------------------------------------------------------------

    def add_token(self, token: am.AgentToken, token_hash: str) -> None:
        with self.base._write() as conn:
            conn.execute("INSERT INTO agent_tokens(id, agent_id, account_id, name, token_hash, hint, created_at) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?)", (token.id, token.agent_id, token.account_id, token.name,
                                                         token_hash, token.hint, token.created_at))

    def token_by_hash(self, token_hash: str) -> tuple[am.AgentToken, str] | None:
        row = self.base._conn().execute("SELECT * FROM agent_tokens WHERE token_hash = ?", (token_hash,)).fetchone()
        if row is None:
            return None
        fields = dict(row)
        stored = fields.pop("token_hash")
        return msgspec.convert(fields, am.AgentToken), stored

    def list_tokens(self, agent_id: str) -> list[am.AgentToken]:
        return self.base._many(am.AgentToken, f"SELECT {_TOKEN_COLS} FROM agent_tokens WHERE agent_id = ? "
                               "ORDER BY created_at", agent_id)

    def revoke_token(self, agent_id: str, token_id: str, now: float) -> am.AgentToken | None:
        with self.base._write() as conn:
            conn.execute("UPDATE agent_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ? AND agent_id = ?",
                         (now, token_id, agent_id))
        return self.base._one(am.AgentToken, f"SELECT {_TOKEN_COLS} FROM agent_tokens WHERE id = ? AND agent_id = ?",
                              token_id, agent_id)
