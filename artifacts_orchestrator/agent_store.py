"""Where agents, their workspaces and their tokens live: three tables beside the core ones.

``SQLAgentStore`` keeps them in the orchestrator's database (SQLite or PostgreSQL; migration 4 of
migrations.py makes the tables) through the core store's transactions (``SQLStore._write``), as
platform_store.py does. The console's one-time sign-in codes live here too, so a link issued by
one orchestrator process is taken by whichever process the browser reaches, once. Agent token hashes live in their own column and never leave this module
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
from artifacts_orchestrator.store import SQLStore


def _agent(row: Any) -> am.Agent | None:
    # lax: the boolean is kept as 0/1 (an INTEGER column on both databases)
    return None if row is None else msgspec.convert(dict(row), am.Agent, strict=False)


def _sql_value(value: Any) -> Any:
    """Booleans as the 0/1 their INTEGER columns hold (PostgreSQL refuses a boolean there)."""
    return int(value) if isinstance(value, bool) else value

_TOKEN_COLS = "id, agent_id, account_id, name, hint, created_at, revoked_at"


class SQLAgentStore:
    def __init__(self, store: SQLStore) -> None:
        self.base = store

    # -- agents -------------------------------------------------------------------------------------

    def add_agent(self, agent: am.Agent) -> None:
        with self.base._write() as tx:
            tx.execute("INSERT INTO agents(id, account_id, name, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
                         (agent.id, agent.account_id, agent.name, agent.created_at, agent.updated_at))

    def get_agent(self, account_id: int, agent_id: str) -> am.Agent | None:
        with self.base._read() as tx:
            return _agent(tx.execute("SELECT * FROM agents WHERE id = ? AND account_id = ? AND deleted_at IS NULL",
                                     (agent_id, account_id)).fetchone())

    def agent_by_id(self, agent_id: str) -> am.Agent | None:
        with self.base._read() as tx:
            return _agent(tx.execute("SELECT * FROM agents WHERE id = ? AND deleted_at IS NULL",
                                     (agent_id,)).fetchone())

    def list_agents(self, account_id: int) -> list[am.Agent]:
        with self.base._read() as tx:
            rows = tx.execute("SELECT * FROM agents WHERE account_id = ? AND deleted_at IS NULL "
                              "ORDER BY created_at, id", (account_id,)).fetchall()
        return [a for a in map(_agent, rows) if a is not None]

    def agent_of_workspace(self, workspace_id: int) -> am.Agent | None:
        with self.base._read() as tx:
            return _agent(tx.execute("SELECT * FROM agents WHERE workspace_id = ? AND deleted_at IS NULL",
                                     (workspace_id,)).fetchone())

    def update_agent(self, agent_id: str, now: float, **fields: Any) -> am.Agent | None:
        updates = {"updated_at": now, **fields}
        sets = ", ".join(f"{k} = ?" for k in updates)  # column names come from this package only
        with self.base._write() as tx:
            tx.execute(f"UPDATE agents SET {sets} WHERE id = ? AND deleted_at IS NULL",
                       (*map(_sql_value, updates.values()), agent_id))
        return self.agent_by_id(agent_id)

    def delete_agent(self, agent_id: str, now: float) -> None:
        with self.base._write() as tx:
            tx.execute("UPDATE agents SET deleted_at = ?, workspace_enabled = 0, updated_at = ? WHERE id = ?",
                         (now, now, agent_id))
            tx.execute("UPDATE agent_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE agent_id = ?",
                         (now, agent_id))

    # -- the workspaces an agent had ------------------------------------------------------------------

    def add_workspace(self, row: am.AgentWorkspace) -> None:
        with self.base._write() as tx:
            tx.execute(
                "INSERT INTO agent_workspaces(workspace_id, agent_id, account_id, storage, endpoint, "
                "region, bucket, access_key_hint, secret_hint, sealed, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (workspace_id) DO UPDATE SET "
                "agent_id = excluded.agent_id, account_id = excluded.account_id, storage = excluded.storage, "
                "endpoint = excluded.endpoint, region = excluded.region, bucket = excluded.bucket, "
                "access_key_hint = excluded.access_key_hint, secret_hint = excluded.secret_hint, "
                "sealed = excluded.sealed, created_at = excluded.created_at",
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
        with self.base._write() as tx:
            tx.execute("INSERT INTO agent_tokens(id, agent_id, account_id, name, token_hash, hint, created_at) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?)", (token.id, token.agent_id, token.account_id, token.name,
                                                         token_hash, token.hint, token.created_at))

    def token_by_hash(self, token_hash: str) -> tuple[am.AgentToken, str] | None:
        with self.base._read() as tx:
            row = tx.execute("SELECT * FROM agent_tokens WHERE token_hash = ?", (token_hash,)).fetchone()
        if row is None:
            return None
        fields = dict(row)
        stored = fields.pop("token_hash")
        return msgspec.convert(fields, am.AgentToken), stored

    def list_tokens(self, agent_id: str) -> list[am.AgentToken]:
        return self.base._many(am.AgentToken, f"SELECT {_TOKEN_COLS} FROM agent_tokens WHERE agent_id = ? "
                               "ORDER BY created_at", agent_id)

    def revoke_token(self, agent_id: str, token_id: str, now: float) -> am.AgentToken | None:
        with self.base._write() as tx:
            tx.execute("UPDATE agent_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ? AND agent_id = ?",
                         (now, token_id, agent_id))
        return self.base._one(am.AgentToken, f"SELECT {_TOKEN_COLS} FROM agent_tokens WHERE id = ? AND agent_id = ?",
                              token_id, agent_id)

    # -- the console's one-time sign-in codes ---------------------------------------------------------

    def add_console_code(self, code_hash: str, account_id: int, expires_at: float, now: float) -> None:
        """Record a code (its SHA-256); codes past their expiry go at the same time."""
        with self.base._write() as tx:
            tx.execute("DELETE FROM console_codes WHERE expires_at <= ?", (now,))
            tx.execute("INSERT INTO console_codes(code_hash, account_id, expires_at) VALUES (?, ?, ?)",
                       (code_hash, account_id, expires_at))

    def take_console_code(self, code_hash: str, now: float) -> int | None:
        """The account a live code signs in, the code deleted in the same statement (so two
        requests racing on one code, on one process or two, get it once); None if unknown,
        used or expired."""
        with self.base._write() as tx:
            row = tx.execute("DELETE FROM console_codes WHERE code_hash = ? RETURNING account_id, expires_at",
                             (code_hash,)).fetchone()
        return None if row is None or row[1] <= now else int(row[0])
