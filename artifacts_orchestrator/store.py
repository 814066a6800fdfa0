"""Where the orchestrator keeps its rows: the ``Store`` interface and its SQLite implementation.

``Store`` is a Protocol so a server database (Postgres, one schema, ``SELECT … FOR UPDATE``) can
replace SQLite when one orchestrator is not enough (DESIGN.md §6). Methods are synchronous; the
HTTP layer runs them on worker threads.

``SQLiteStore``: stdlib ``sqlite3`` in WAL mode (readers never block the writer), one connection
per thread, autocommit outside explicit transactions. Every state change that needs a row lock
runs inside ``BEGIN IMMEDIATE``, which takes SQLite's single write lock before reading, so the
read-check-write of a status transition cannot interleave with another writer (SQLite's
equivalent of the seed's ``FOR UPDATE``). The database file is created mode 0600; it holds hashes
of API keys, never keys, passwords or S3 secrets.

Invariants: at most one non-deleted workspace per (account, name) (a partial unique index);
workspace ids come from ``AUTOINCREMENT`` and are never reused, so a re-created name always gets
a fresh key prefix; status transitions happen only through :meth:`SQLiteStore.transition`.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import msgspec

from artifacts_orchestrator.errors import AccountExists
from artifacts_orchestrator.models import Account, ApiKey, MountSession, Workspace

#: SQLite waits this long for another writer's lock before failing (writes are milliseconds).
BUSY_TIMEOUT_MS = 10_000

SCHEMA_VERSION = 2  # 2: mount_sessions.cleaned_at

_SCHEMA = """
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
CREATE INDEX IF NOT EXISTS sessions_live ON mount_sessions(workspace_id) WHERE revoked_at IS NULL;
"""


class Store(Protocol):
    """The orchestrator's rows. Implementations must make ``transition`` atomic per row."""

    def create_account(self, handle: str, now: float) -> Account: ...
    def get_account(self, account_id: int) -> Account | None: ...
    def account_by_handle(self, handle: str) -> Account | None: ...
    def add_api_key(self, key: ApiKey, key_hash: str) -> ApiKey: ...
    def key_by_hash(self, key_hash: str) -> tuple[ApiKey, str] | None: ...
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
    def list_sessions(self, workspace_id: int, *, include_revoked: bool = False) -> list[MountSession]: ...
    def revoke_session(self, session_id: str, now: float, reason: str) -> MountSession | None: ...
    def renew_session(self, session_id: str, expires_at: float) -> MountSession | None: ...
    def expired_sessions(self, now: float) -> list[MountSession]: ...
    def mark_cleaned(self, session_id: str, now: float) -> None: ...
    def unfinished_revocations(self) -> list[MountSession]: ...
    def live_acl_users(self) -> set[str]: ...
    def workspaces_with_live_sessions(self) -> list[Workspace]: ...
    def close(self) -> None: ...


def _row(cls: type, row: sqlite3.Row | None) -> Any:
    return None if row is None else msgspec.convert(dict(row), cls)


class SQLiteStore:
    """The embedded default: one SQLite file, WAL, a connection per thread."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            # Created 0600 before SQLite opens it (SQLite gives -wal/-shm the same mode).
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        conn = self._conn()
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(_SCHEMA)
        columns = {r[1] for r in conn.execute("PRAGMA table_info(mount_sessions)")}
        if "cleaned_at" not in columns:  # version 1: revocations then cleaned up before marking the row
            with self._write() as w:
                w.execute("ALTER TABLE mount_sessions ADD COLUMN cleaned_at REAL")
                w.execute("UPDATE mount_sessions SET cleaned_at = revoked_at WHERE revoked_at IS NOT NULL")
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    # -- connections and transactions -----------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                   timeout=BUSY_TIMEOUT_MS / 1000)
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoint, never corrupt
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A transaction holding SQLite's write lock from its first statement (the row lock)."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _one(self, cls: type, sql: str, *args: Any) -> Any:
        return _row(cls, self._conn().execute(sql, args).fetchone())

    def _many(self, cls: type, sql: str, *args: Any) -> list[Any]:
        return [_row(cls, r) for r in self._conn().execute(sql, args).fetchall()]

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                with contextlib.suppress(sqlite3.ProgrammingError):
                    conn.close()
            self._all.clear()
        self._local = threading.local()

    # -- accounts and keys ----------------------------------------------------------------------

    def create_account(self, handle: str, now: float) -> Account:
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM accounts WHERE handle = ?", (handle,)).fetchone():
                raise AccountExists(f"the handle {handle!r} is taken")
            cur = conn.execute("INSERT INTO accounts(handle, created_at) VALUES (?, ?)", (handle, now))
            return Account(id=int(cur.lastrowid or 0), handle=handle, created_at=now)

    def get_account(self, account_id: int) -> Account | None:
        return self._one(Account, "SELECT * FROM accounts WHERE id = ?", account_id)

    def account_by_handle(self, handle: str) -> Account | None:
        return self._one(Account, "SELECT * FROM accounts WHERE handle = ?", handle)

    def add_api_key(self, key: ApiKey, key_hash: str) -> ApiKey:
        with self._write() as conn:
            conn.execute("INSERT INTO api_keys(id, account_id, name, key_hash, hint, created_at) "
                         "VALUES (?, ?, ?, ?, ?, ?)",
                         (key.id, key.account_id, key.name, key_hash, key.hint, key.created_at))
        return key

    def key_by_hash(self, key_hash: str) -> tuple[ApiKey, str] | None:
        row = self._conn().execute("SELECT * FROM api_keys WHERE key_hash = ?", (key_hash,)).fetchone()
        if row is None:
            return None
        fields = dict(row)
        stored = fields.pop("key_hash")
        return msgspec.convert(fields, ApiKey), stored

    def list_api_keys(self, account_id: int) -> list[ApiKey]:
        rows = self._conn().execute(
            "SELECT id, account_id, name, hint, created_at, revoked_at FROM api_keys "
            "WHERE account_id = ? ORDER BY created_at", (account_id,)).fetchall()
        return [_row(ApiKey, r) for r in rows]

    def revoke_api_key(self, account_id: int, key_id: str, now: float) -> ApiKey | None:
        with self._write() as conn:
            conn.execute("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) "
                         "WHERE id = ? AND account_id = ?", (now, key_id, account_id))
        return self._one(ApiKey, "SELECT id, account_id, name, hint, created_at, revoked_at FROM api_keys "
                                 "WHERE id = ? AND account_id = ?", key_id, account_id)

    # -- workspaces -----------------------------------------------------------------------------

    def reserve_workspace(self, account_id: int, handle: str, name: str, now: float,
                          fill: Callable[[int], dict[str, Any]]) -> tuple[Workspace, bool]:
        """The live workspace of that name (False), or a new ``pending_format`` row whose
        id-derived fields (key prefix, volume name, storage) ``fill(id)`` supplies (True)."""
        with self._write() as conn:
            row = conn.execute("SELECT * FROM workspaces WHERE account_id = ? AND name = ? "
                               "AND status != 'deleted'", (account_id, name)).fetchone()
            if row is not None:
                return _row(Workspace, row), False
            cur = conn.execute(
                "INSERT INTO workspaces(account_id, handle, name, status, backend, key_prefix, volume_name, "
                "bucket, endpoint, region, storage_prefix, cache_profile, created_at, updated_at) "
                "VALUES (?, ?, ?, 'pending_format', '', '', '', '', '', '', '', '', ?, ?)",
                (account_id, handle, name, now, now))
            ws_id = int(cur.lastrowid or 0)
            fields = fill(ws_id)
            sets = ", ".join(f"{k} = ?" for k in fields)
            conn.execute(f"UPDATE workspaces SET {sets} WHERE id = ?", (*fields.values(), ws_id))
            return _row(Workspace, conn.execute("SELECT * FROM workspaces WHERE id = ?", (ws_id,)).fetchone()), True

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
        with self._write() as conn:
            row = _row(Workspace, conn.execute("SELECT * FROM workspaces WHERE id = ?",
                                               (workspace_id,)).fetchone())
            if row is None:
                raise KeyError(workspace_id)
            if row.status not in allowed:
                return row, False
            updates = {"status": to, "updated_at": now, **fields}
            sets = ", ".join(f"{k} = ?" for k in updates)
            conn.execute(f"UPDATE workspaces SET {sets} WHERE id = ?", (*updates.values(), workspace_id))
            return _row(Workspace, conn.execute("SELECT * FROM workspaces WHERE id = ?",
                                                (workspace_id,)).fetchone()), True

    def set_format_user(self, workspace_id: int, user: str, expires_at: float | None, now: float) -> None:
        with self._write() as conn:
            conn.execute("UPDATE workspaces SET format_user = ?, format_expires_at = ?, updated_at = ? "
                         "WHERE id = ?", (user, expires_at, now, workspace_id))

    # -- mount sessions -------------------------------------------------------------------------

    def add_session(self, session: MountSession) -> None:
        fields = msgspec.structs.asdict(session)
        cols = ", ".join(fields)
        with self._write() as conn:
            conn.execute(f"INSERT INTO mount_sessions({cols}) VALUES ({','.join('?' * len(fields))})",
                         tuple(fields.values()))

    def get_session(self, session_id: str) -> MountSession | None:
        return self._one(MountSession, "SELECT * FROM mount_sessions WHERE id = ?", session_id)

    def list_sessions(self, workspace_id: int, *, include_revoked: bool = False) -> list[MountSession]:
        cond = "" if include_revoked else " AND revoked_at IS NULL"
        return self._many(MountSession, f"SELECT * FROM mount_sessions WHERE workspace_id = ?{cond} "
                                        "ORDER BY created_at", workspace_id)

    def revoke_session(self, session_id: str, now: float, reason: str) -> MountSession | None:
        with self._write() as conn:
            conn.execute("UPDATE mount_sessions SET revoked_at = ?, revoke_reason = ? "
                         "WHERE id = ? AND revoked_at IS NULL", (now, reason, session_id))
        return self.get_session(session_id)

    def renew_session(self, session_id: str, expires_at: float) -> MountSession | None:
        with self._write() as conn:
            conn.execute("UPDATE mount_sessions SET expires_at = ? WHERE id = ? AND revoked_at IS NULL",
                         (expires_at, session_id))
        return self.get_session(session_id)

    def expired_sessions(self, now: float) -> list[MountSession]:
        return self._many(MountSession, "SELECT * FROM mount_sessions WHERE revoked_at IS NULL "
                                        "AND expires_at <= ?", now)

    def mark_cleaned(self, session_id: str, now: float) -> None:
        with self._write() as conn:
            conn.execute("UPDATE mount_sessions SET cleaned_at = ? WHERE id = ? AND cleaned_at IS NULL",
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
        conn = self._conn()
        users = {r[0] for r in conn.execute("SELECT redis_user FROM mount_sessions WHERE revoked_at IS NULL")}
        users |= {r[0] for r in conn.execute("SELECT format_user FROM workspaces WHERE format_user != ''")}
        return users
