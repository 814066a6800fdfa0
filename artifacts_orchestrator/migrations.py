"""Versioned schema migrations of the orchestrator's database, the same list for SQLite and PostgreSQL.

Each ``Migration`` has a version (1, 2, …, never reused or reordered), a name and DDL written
with SQLite's type names (db.py's ``ddl_for`` gives PostgreSQL's), plus an optional Python step
for what DDL cannot say. ``schema_migrations`` records what was applied (version, name, when).

``migrate(db)`` applies the pending ones in ONE transaction (DDL is transactional on both
engines: a failed migration leaves the schema as it was). On PostgreSQL that transaction first
takes an advisory lock (``pg_advisory_xact_lock``), so N orchestrator processes starting at once
over one database migrate it once: the others wait, then find nothing pending. On SQLite the
transaction's ``BEGIN IMMEDIATE`` serialises them the same way. Every store migrates when it
opens (``store.open_store``); ``python -m artifacts_orchestrator migrate [--check]`` runs or
verifies them ahead of a deploy. A database migrated by a NEWER orchestrator (a version this
code does not know) is refused: an older process would write rows the schema no longer means.

Databases made before migrations existed (``PRAGMA user_version`` 1 or 2, no
``schema_migrations``) are recognised: versions 1 and 2 use ``IF NOT EXISTS`` and add what an
old file lacks (``mount_sessions.cleaned_at`` of user_version 1), so they apply cleanly on top.

To add a table or column: append a Migration with the next version; never edit an applied one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from artifacts_orchestrator.db import Database, Tx

#: Arbitrary 64-bit key of the advisory lock that serialises migrations on PostgreSQL ("artmigr").
MIGRATION_LOCK_KEY = 0x617274_6D69_6772


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    ddl: str = ""
    step: Callable[[Tx], None] | None = None


def _columns(tx: Tx, table: str) -> set[str]:
    if tx.dialect == "sqlite":
        return {r[1] for r in tx.execute(f"PRAGMA table_info({table})").fetchall()}
    return {r[0] for r in tx.execute("SELECT column_name FROM information_schema.columns "
                                     "WHERE table_schema = current_schema() AND table_name = ?", (table,))}


def _cleaned_at(tx: Tx) -> None:
    """An SQLite file of user_version 1 has no ``cleaned_at``: revocations then cleaned up
    before marking the row, so every revoked row was clean."""
    if "cleaned_at" not in _columns(tx, "mount_sessions"):
        tx.execute("ALTER TABLE mount_sessions ADD COLUMN cleaned_at REAL")
        tx.execute("UPDATE mount_sessions SET cleaned_at = revoked_at WHERE revoked_at IS NOT NULL")


CORE = """
CREATE TABLE IF NOT EXISTS accounts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    handle TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts(id),
    name TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    hint TEXT NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL
);
CREATE TABLE IF NOT EXISTS workspaces (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER NOT NULL REFERENCES accounts(id),
    handle TEXT NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    backend TEXT NOT NULL,
    key_prefix TEXT NOT NULL,
    volume_name TEXT NOT NULL,
    bucket TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    region TEXT NOT NULL,
    storage_prefix TEXT NOT NULL,
    cache_profile TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    deleted_at REAL,
    format_user TEXT NOT NULL DEFAULT '',
    format_expires_at REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS workspaces_live_name
    ON workspaces(account_id, name) WHERE status != 'deleted';
CREATE TABLE IF NOT EXISTS mount_sessions (
    id TEXT PRIMARY KEY,
    workspace_id INTEGER NOT NULL REFERENCES workspaces(id),
    account_id INTEGER NOT NULL,
    mode TEXT NOT NULL,
    redis_user TEXT NOT NULL,
    s3_user TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    revoked_at REAL,
    revoke_reason TEXT NOT NULL DEFAULT '',
    host TEXT NOT NULL DEFAULT '',
    mountpoint TEXT NOT NULL DEFAULT '',
    tenant_id INTEGER,
    runtime_id TEXT NOT NULL DEFAULT '',
    grant_id TEXT NOT NULL DEFAULT '',
    ticket_id TEXT NOT NULL DEFAULT '',
    cleaned_at REAL
);
CREATE INDEX IF NOT EXISTS sessions_live ON mount_sessions(workspace_id) WHERE revoked_at IS NULL
"""

PLATFORM = """
CREATE TABLE IF NOT EXISTS tenants (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER NOT NULL REFERENCES accounts(id),
    slug TEXT NOT NULL,
    external_id TEXT NOT NULL DEFAULT '',
    metadata TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    UNIQUE(account_id, slug)
);
CREATE TABLE IF NOT EXISTS access_grants (
    id TEXT PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts(id),
    workspace_id INTEGER NOT NULL REFERENCES workspaces(id),
    tenant_id INTEGER NOT NULL REFERENCES tenants(id),
    runtime_id TEXT NOT NULL DEFAULT '',
    mode TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL,
    revoked_at REAL,
    revoke_reason TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS grants_live ON access_grants(tenant_id, runtime_id) WHERE revoked_at IS NULL;
CREATE INDEX IF NOT EXISTS grants_workspace ON access_grants(workspace_id);
CREATE TABLE IF NOT EXISTS mount_tickets (
    jti TEXT PRIMARY KEY,
    account_id INTEGER NOT NULL,
    grant_id TEXT NOT NULL REFERENCES access_grants(id),
    workspace_id INTEGER NOT NULL,
    tenant_id INTEGER NOT NULL,
    runtime_id TEXT NOT NULL,
    mode TEXT NOT NULL,
    issued_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    used_at REAL,
    session_id TEXT NOT NULL DEFAULT '',
    revoked_at REAL
);
CREATE INDEX IF NOT EXISTS tickets_grant ON mount_tickets(grant_id);
CREATE INDEX IF NOT EXISTS sessions_grant ON mount_sessions(grant_id) WHERE revoked_at IS NULL
"""

#: Fleet-wide state: the leases under which periodic jobs run once per interval across every
#: orchestrator process, and what a session's renewal checks (the key that opened it, its TTL,
#: the hash of its renewal token).
FLEET = """
CREATE TABLE job_leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL DEFAULT '',
    started_at REAL,
    lease_until REAL
);
ALTER TABLE mount_sessions ADD COLUMN key_id TEXT NOT NULL DEFAULT '';
ALTER TABLE mount_sessions ADD COLUMN ttl REAL NOT NULL DEFAULT 0;
ALTER TABLE mount_sessions ADD COLUMN renew_hash TEXT NOT NULL DEFAULT '';
CREATE INDEX sessions_renew ON mount_sessions(renew_hash) WHERE renew_hash != ''
"""

#: Agents (docs/agents.md): their rows, every workspace each ever had (a detached one is found
#: again), their tokens (SHA-256 only), and the console's one-time sign-in codes (SHA-256, two
#: minutes, taken once by whichever process the browser reaches).
AGENTS = """
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
CREATE TABLE IF NOT EXISTS console_codes (
    code_hash TEXT PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts(id),
    expires_at REAL NOT NULL
)
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "accounts, api keys, workspaces, mount sessions", CORE, _cleaned_at),
    Migration(2, "tenants, access grants, mount tickets", PLATFORM),
    Migration(3, "job leases; session renewal", FLEET),
    Migration(4, "agents, their workspaces and tokens; console sign-in codes", AGENTS),
)
LATEST = MIGRATIONS[-1].version

_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at REAL NOT NULL
)
"""


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer orchestrator than this one."""


def _applied(tx: Tx) -> set[int]:
    return {int(r[0]) for r in tx.execute("SELECT version FROM schema_migrations").fetchall()}


def _ledger_exists(tx: Tx) -> bool:
    if tx.dialect == "sqlite":
        return tx.scalar("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'") is not None
    return tx.scalar("SELECT to_regclass('schema_migrations')") is not None


def _check_known(applied: set[int], where: str) -> None:
    unknown = sorted(v for v in applied if v > LATEST)
    if unknown:
        raise SchemaTooNew(f"the database {where} has schema version {max(unknown)}, newer than this "
                           f"orchestrator knows ({LATEST}): upgrade artifacts on this host")


def pending(db: Database) -> list[Migration]:
    """Migrations not yet applied (without applying anything)."""
    with db.read() as tx:
        applied = _applied(tx) if _ledger_exists(tx) else set()
    _check_known(applied, db.where)
    return [m for m in MIGRATIONS if m.version not in applied]


def migrate(db: Database, *, now: Callable[[], float] = time.time) -> list[Migration]:
    """Apply every pending migration (one transaction, serialised across processes); returns them."""
    with db.write() as tx:
        if tx.dialect == "postgresql":
            tx.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK_KEY,))
        tx.script(_LEDGER)
        applied = _applied(tx)
        _check_known(applied, db.where)
        done = []
        for m in MIGRATIONS:
            if m.version in applied:
                continue
            tx.script(m.ddl)
            if m.step is not None:
                m.step(tx)
            tx.execute("INSERT INTO schema_migrations(version, name, applied_at) VALUES (?, ?, ?)",
                       (m.version, m.name, now()))
            done.append(m)
    return done


def version(db: Database) -> int:
    with db.read() as tx:
        if not _ledger_exists(tx):
            return 0
        return max(_applied(tx), default=0)
