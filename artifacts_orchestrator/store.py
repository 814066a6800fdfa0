"""Where the orchestrator keeps its rows: the ``Store`` interface and its one SQL implementation.

``Store`` is a Protocol; ``SQLStore`` implements it once over a ``db.Database``: SQLite (the
embedded default of the local stack, one file) or PostgreSQL (several orchestrator processes over
one server: docs/scale.md). ``open_store(url)`` picks by the URL (``postgresql://…`` or a file
path) and applies the schema migrations (migrations.py) first. Methods are synchronous; the HTTP
layer runs them on worker threads.

Row locks (seed 000: "acquires a FOR UPDATE lock on the workspace row"): every read-check-write
runs in one ``write()`` transaction whose check reads its row ``FOR UPDATE`` — on PostgreSQL a
row lock, so two processes moving one workspace, exchanging one ticket or changing one grant are
serialised on that row; on SQLite the transaction's ``BEGIN IMMEDIATE`` already holds the one
write lock. Creations that must stay unique per account (a workspace name, a tenant slug) lock
the account's row first. The database holds hashes of API keys and renewal tokens, never keys,
passwords or S3 secrets; an SQLite file is created mode 0600.

Invariants: at most one non-deleted workspace per (account, name) (a partial unique index);
workspace ids are never reused (``AUTOINCREMENT`` / an identity column), so a re-created name
always gets a fresh key prefix; status transitions happen only through :meth:`SQLStore.transition`;
a periodic job runs at most once per interval across every process sharing the database
(:meth:`SQLStore.claim_job`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from typing import Any, Protocol

import msgspec

from artifacts_orchestrator import migrations
from artifacts_orchestrator.db import Database, SQLiteDatabase, Tx, as_struct, open_database
from artifacts_orchestrator.errors import AccountExists
from artifacts_orchestrator.models import Account, ApiKey, MountSession, Workspace

#: Kept for the tests and tools that read it: the schema's version (migrations.py).
SCHEMA_VERSION = migrations.LATEST


class Store(Protocol):
    """The orchestrator's rows. Implementations must make ``transition`` atomic per row."""

    def create_account(self, handle: str, now: float) -> Account: ...
    def get_account(self, account_id: int) -> Account | None: ...
    def account_by_handle(self, handle: str) -> Account | None: ...
    def add_api_key(self, key: ApiKey, key_hash: str) -> ApiKey: ...
    def key_by_hash(self, key_hash: str) -> tuple[ApiKey, str] | None: ...
    def get_api_key(self, key_id: str) -> ApiKey | None: ...
    def list_api_keys(self, account_id: int) -> list[ApiKey]: ...
    def revoke_api_key(self, account_id: int, key_id: str, now: float) -> ApiKey | None: ...
    def reserve_workspace(self, account_id: int, handle: str, name: str, now: float,
                          fill: Callable[[int], dict[str, Any]]) -> tuple[Workspace, bool]: ...
    def get_workspace(self, workspace_id: int) -> Workspace | None: ...
    def find_workspace(self, account_id: int, name: str) -> Workspace | None: ...
    def list_workspaces(self, account_id: int, *, include_deleted: bool = False) -> list[Workspace]: ...
    def workspaces_in(self, statuses: Iterable[str]) -> list[Workspace]: ...
    def transition(self, workspace_id: int, allowed: Iterable[str], to: str, now: float,
                   **fields: Any) -> tuple[Workspace, bool]: ...
    def set_format_user(self, workspace_id: int, user: str, expires_at: float | None, now: float) -> None: ...
    def add_session(self, session: MountSession) -> None: ...
    def get_session(self, session_id: str) -> MountSession | None: ...
    def session_by_renew_hash(self, renew_hash: str) -> MountSession | None: ...
    def list_sessions(self, workspace_id: int, *, include_revoked: bool = False) -> list[MountSession]: ...
    def revoke_session(self, session_id: str, now: float, reason: str) -> MountSession | None: ...
    def renew_session(self, session_id: str, expires_at: float) -> MountSession | None: ...
    def expired_sessions(self, now: float) -> list[MountSession]: ...
    def mark_cleaned(self, session_id: str, now: float) -> None: ...
    def unfinished_revocations(self) -> list[MountSession]: ...
    def live_acl_users(self) -> set[str]: ...
    def workspaces_with_live_sessions(self) -> list[Workspace]: ...
    def claim_job(self, name: str, holder: str, now: float, every: float, lease: float) -> bool: ...
    def release_job(self, name: str, holder: str, now: float) -> None: ...
    def close(self) -> None: ...


def _insert(table: str, fields: dict[str, Any]) -> tuple[str, tuple]:
    return (f"INSERT INTO {table}({', '.join(fields)}) VALUES ({','.join('?' * len(fields))})",
            tuple(fields.values()))


class SQLStore:
    """The rows in SQL, on SQLite or PostgreSQL (``self.db``); see the module note."""

    def __init__(self, db: Database, *, migrate: bool = True) -> None:
        self.db = db
        if migrate:
            migrations.migrate(db)

    @property
    def dialect(self) -> str:
        return self.db.dialect

    # -- transactions (also used by platform_store.py) ------------------------------------------

    def _read(self) -> AbstractContextManager[Tx]:
        return self.db.read()

    def _write(self) -> AbstractContextManager[Tx]:
        """A transaction; its ``… FOR UPDATE`` reads lock their rows until it ends."""
        return self.db.write()

    def _one(self, cls: type, sql: str, *args: Any) -> Any:
        with self.db.read() as tx:
            return tx.one(cls, sql, *args)

    def _many(self, cls: type, sql: str, *args: Any) -> list[Any]:
        with self.db.read() as tx:
            return tx.many(cls, sql, *args)

    def close(self) -> None:
        self.db.close()

    # -- accounts and keys ----------------------------------------------------------------------

    def create_account(self, handle: str, now: float) -> Account:
        with self._write() as tx:
            row = tx.execute("INSERT INTO accounts(handle, created_at) VALUES (?, ?) "
                             "ON CONFLICT (handle) DO NOTHING RETURNING id", (handle, now)).fetchone()
        if row is None:
            raise AccountExists(f"the handle {handle!r} is taken")
        return Account(id=int(row[0]), handle=handle, created_at=now)

    def get_account(self, account_id: int) -> Account | None:
        return self._one(Account, "SELECT * FROM accounts WHERE id = ?", account_id)

    def account_by_handle(self, handle: str) -> Account | None:
        return self._one(Account, "SELECT * FROM accounts WHERE handle = ?", handle)

    def add_api_key(self, key: ApiKey, key_hash: str) -> ApiKey:
        with self._write() as tx:
            tx.execute("INSERT INTO api_keys(id, account_id, name, key_hash, hint, created_at) "
                       "VALUES (?, ?, ?, ?, ?, ?)",
                       (key.id, key.account_id, key.name, key_hash, key.hint, key.created_at))
        return key

    def key_by_hash(self, key_hash: str) -> tuple[ApiKey, str] | None:
        with self._read() as tx:
            row = tx.execute("SELECT * FROM api_keys WHERE key_hash = ?", (key_hash,)).fetchone()
        if row is None:
            return None
        fields = dict(row)
        stored = fields.pop("key_hash")
        return msgspec.convert(fields, ApiKey), stored

    _KEY_COLS = "id, account_id, name, hint, created_at, revoked_at"

    def get_api_key(self, key_id: str) -> ApiKey | None:
        return self._one(ApiKey, f"SELECT {self._KEY_COLS} FROM api_keys WHERE id = ?", key_id)

    def list_api_keys(self, account_id: int) -> list[ApiKey]:
        return self._many(ApiKey, f"SELECT {self._KEY_COLS} FROM api_keys WHERE account_id = ? "
                                  "ORDER BY created_at", account_id)

    def revoke_api_key(self, account_id: int, key_id: str, now: float) -> ApiKey | None:
        with self._write() as tx:
            tx.execute("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) "
                       "WHERE id = ? AND account_id = ?", (now, key_id, account_id))
        return self._one(ApiKey, f"SELECT {self._KEY_COLS} FROM api_keys WHERE id = ? AND account_id = ?",
                         key_id, account_id)

    # -- workspaces -----------------------------------------------------------------------------

    def reserve_workspace(self, account_id: int, handle: str, name: str, now: float,
                          fill: Callable[[int], dict[str, Any]]) -> tuple[Workspace, bool]:
        """The live workspace of that name (False), or a new ``pending_format`` row whose
        id-derived fields (key prefix, volume name, storage) ``fill(id)`` supplies (True)."""
        with self._write() as tx:
            # The account's row lock serialises creations of one account's names across processes.
            tx.execute("SELECT id FROM accounts WHERE id = ? FOR UPDATE", (account_id,))
            live = tx.one(Workspace, "SELECT * FROM workspaces WHERE account_id = ? AND name = ? "
                                     "AND status != 'deleted'", account_id, name)
            if live is not None:
                return live, False
            ws_id = int(tx.scalar(
                "INSERT INTO workspaces(account_id, handle, name, status, backend, key_prefix, volume_name, "
                "bucket, endpoint, region, storage_prefix, cache_profile, created_at, updated_at) "
                "VALUES (?, ?, ?, 'pending_format', '', '', '', '', '', '', '', '', ?, ?) RETURNING id",
                account_id, handle, name, now, now))
            fields = fill(ws_id)
            sets = ", ".join(f"{k} = ?" for k in fields)
            tx.execute(f"UPDATE workspaces SET {sets} WHERE id = ?", (*fields.values(), ws_id))
            return tx.one(Workspace, "SELECT * FROM workspaces WHERE id = ?", ws_id), True

    def get_workspace(self, workspace_id: int) -> Workspace | None:
        return self._one(Workspace, "SELECT * FROM workspaces WHERE id = ?", workspace_id)

    def find_workspace(self, account_id: int, name: str) -> Workspace | None:
        """The live workspace of that name, else the most recently deleted one."""
        return self._one(Workspace, "SELECT * FROM workspaces WHERE account_id = ? AND name = ? "
                                    "ORDER BY (status = 'deleted'), id DESC LIMIT 1", account_id, name)

    def list_workspaces(self, account_id: int, *, include_deleted: bool = False) -> list[Workspace]:
        cond = "" if include_deleted else " AND status != 'deleted'"
        return self._many(Workspace, f"SELECT * FROM workspaces WHERE account_id = ?{cond} ORDER BY id",
                          account_id)

    def workspaces_in(self, statuses: Iterable[str]) -> list[Workspace]:
        statuses = list(statuses)
        marks = ",".join("?" * len(statuses))
        return self._many(Workspace, f"SELECT * FROM workspaces WHERE status IN ({marks}) ORDER BY id",
                          *statuses)

    def transition(self, workspace_id: int, allowed: Iterable[str], to: str, now: float,
                   **fields: Any) -> tuple[Workspace, bool]:
        """Under the row lock: move to ``to`` when the status is in ``allowed`` (True), else
        leave the row alone (False). Returns the row as it is afterwards."""
        allowed = set(allowed)
        with self._write() as tx:
            row = tx.one(Workspace, "SELECT * FROM workspaces WHERE id = ? FOR UPDATE", workspace_id)
            if row is None:
                raise KeyError(workspace_id)
            if row.status not in allowed:
                return row, False
            updates = {"status": to, "updated_at": now, **fields}
            sets = ", ".join(f"{k} = ?" for k in updates)
            tx.execute(f"UPDATE workspaces SET {sets} WHERE id = ?", (*updates.values(), workspace_id))
            return tx.one(Workspace, "SELECT * FROM workspaces WHERE id = ?", workspace_id), True

    def set_format_user(self, workspace_id: int, user: str, expires_at: float | None, now: float) -> None:
        with self._write() as tx:
            tx.execute("UPDATE workspaces SET format_user = ?, format_expires_at = ?, updated_at = ? "
                       "WHERE id = ?", (user, expires_at, now, workspace_id))

    # -- mount sessions -------------------------------------------------------------------------

    def add_session(self, session: MountSession) -> None:
        with self._write() as tx:
            tx.execute(*_insert("mount_sessions", msgspec.structs.asdict(session)))

    def get_session(self, session_id: str) -> MountSession | None:
        return self._one(MountSession, "SELECT * FROM mount_sessions WHERE id = ?", session_id)

    def session_by_renew_hash(self, renew_hash: str) -> MountSession | None:
        if not renew_hash:
            return None
        return self._one(MountSession, "SELECT * FROM mount_sessions WHERE renew_hash = ?", renew_hash)

    def list_sessions(self, workspace_id: int, *, include_revoked: bool = False) -> list[MountSession]:
        cond = "" if include_revoked else " AND revoked_at IS NULL"
        return self._many(MountSession, f"SELECT * FROM mount_sessions WHERE workspace_id = ?{cond} "
                                        "ORDER BY created_at", workspace_id)

    def revoke_session(self, session_id: str, now: float, reason: str) -> MountSession | None:
        with self._write() as tx:
            tx.execute("UPDATE mount_sessions SET revoked_at = ?, revoke_reason = ? "
                       "WHERE id = ? AND revoked_at IS NULL", (now, reason, session_id))
        return self.get_session(session_id)

    def renew_session(self, session_id: str, expires_at: float) -> MountSession | None:
        with self._write() as tx:
            tx.execute("UPDATE mount_sessions SET expires_at = ? WHERE id = ? AND revoked_at IS NULL",
                       (expires_at, session_id))
        return self.get_session(session_id)

    def expired_sessions(self, now: float) -> list[MountSession]:
        return self._many(MountSession, "SELECT * FROM mount_sessions WHERE revoked_at IS NULL "
                                        "AND expires_at <= ?", now)

    def mark_cleaned(self, session_id: str, now: float) -> None:
        with self._write() as tx:
            tx.execute("UPDATE mount_sessions SET cleaned_at = ? WHERE id = ? AND cleaned_at IS NULL",
                       (now, session_id))

    def unfinished_revocations(self) -> list[MountSession]:
        """Revoked sessions whose ACL user, metadata session or S3 user may still exist."""
        return self._many(MountSession, "SELECT * FROM mount_sessions WHERE revoked_at IS NOT NULL "
                                        "AND cleaned_at IS NULL ORDER BY revoked_at")

    def workspaces_with_live_sessions(self) -> list[Workspace]:
        """Active workspaces with at least one session not revoked (the stale-session sweep)."""
        return self._many(Workspace, "SELECT * FROM workspaces w WHERE status = 'active' AND EXISTS "
                                     "(SELECT 1 FROM mount_sessions s WHERE s.workspace_id = w.id "
                                     "AND s.revoked_at IS NULL) ORDER BY id")

    def live_acl_users(self) -> set[str]:
        """Every ACL user the rows say should exist (format users and live sessions)."""
        with self._read() as tx:
            users = {r[0] for r in tx.execute("SELECT redis_user FROM mount_sessions WHERE revoked_at IS NULL")}
            users |= {r[0] for r in tx.execute("SELECT format_user FROM workspaces WHERE format_user != ''")}
        return users

    # -- periodic jobs: once per interval across every process ----------------------------------

    def claim_job(self, name: str, holder: str, now: float, every: float, lease: float) -> bool:
        """Whether ``holder`` runs job ``name`` now: True (and the lease is its until
        ``now + lease`` or ``release_job``) when nobody started it within ``every`` seconds and
        no other holder's lease is running; False otherwise. A holder that died mid-run loses
        the lease when it runs out."""
        with self._write() as tx:
            tx.execute("INSERT INTO job_leases(name) VALUES (?) ON CONFLICT (name) DO NOTHING", (name,))
            row = tx.execute("SELECT holder, started_at, lease_until FROM job_leases WHERE name = ? FOR UPDATE",
                             (name,)).fetchone()
            other, started, until = row[0], row[1], row[2]
            if started is not None and now - started < every:
                return False
            if until is not None and until > now and other != holder:
                return False
            tx.execute("UPDATE job_leases SET holder = ?, started_at = ?, lease_until = ? WHERE name = ?",
                       (holder, now, now + lease, name))
            return True

    def release_job(self, name: str, holder: str, now: float) -> None:
        with self._write() as tx:
            tx.execute("UPDATE job_leases SET lease_until = ? WHERE name = ? AND holder = ?", (now, name, holder))


class SQLiteStore(SQLStore):
    """The embedded default: one SQLite file (WAL, a connection per thread, mode 0600)."""

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__(SQLiteDatabase(path))
        self.path = self.db.path  # type: ignore[attr-defined]


def open_store(url: str | os.PathLike, *, migrate: bool = True) -> SQLStore:
    """The store at ``url``: ``postgresql://user:password@host:port/db`` or an SQLite file path
    (``sqlite:///path`` too); its schema migrated unless ``migrate`` is False."""
    return SQLStore(open_database(url), migrate=migrate)


def iter_rows(tx: Tx, sql: str, *args: Any) -> Iterator[dict[str, Any]]:
    for row in tx.execute(sql, args).fetchall():
        yield dict(row)


def _row(cls: type, row: Any) -> Any:
    """A row as struct ``cls`` (kept for the stores beside this one)."""
    return as_struct(cls, row)
