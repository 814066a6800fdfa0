"""Where tenants, access grants and mount-ticket records live: three tables beside the core ones.

``PlatformStore`` is the interface; ``SQLPlatformStore`` keeps its tables in the orchestrator's
database (SQLite or PostgreSQL; migration 2 of migrations.py makes them) through the core store's
transactions (``SQLStore._write``), so the row-lock discipline is the same: every read-check-write
below reads its rows ``FOR UPDATE`` inside one transaction (a row lock on PostgreSQL, SQLite's
single write lock there).

The two operations whose atomicity matters:

- ``grant_for_ticket``: find the runtime's live grant on the workspace, else the tenant's live
  tenant-wide grant, else create a runtime-scoped one — in one transaction holding the tenant's
  row lock, so two concurrent one-shot calls for the same runtime make one grant, not two, even
  on two orchestrator processes;
- ``consume_ticket``: lock the ticket's record and its grant, check that the record exists, is
  neither used nor voided, that its grant is live, then mark it used and insert the mount-session
  row — in one transaction, so a ticket is exchanged at most once however many requests race on
  however many processes (DESIGN.md §10), and a revocation that committed first is always seen
  (``revoke_grants`` locks the same grant rows).

A tenant's slug is unique per account (another account may have its own ``acme``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

import msgspec

from artifacts_orchestrator import platform_models as pm
from artifacts_orchestrator.errors import GrantRevoked, TenantExists, TicketInvalid, TicketUsed
from artifacts_orchestrator.models import MountSession
from artifacts_orchestrator.store import SQLStore, _insert

_LIVE = "revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?)"


class PlatformStore(Protocol):
    def create_tenant(self, tenant: dict[str, Any], *, exist_ok: bool) -> tuple[pm.Tenant, bool]: ...
    def get_tenant(self, account_id: int, slug: str) -> pm.Tenant | None: ...
    def tenant_by_id(self, tenant_id: int) -> pm.Tenant | None: ...
    def list_tenants(self, account_id: int) -> list[pm.Tenant]: ...
    def add_grant(self, grant: pm.AccessGrant) -> None: ...
    def get_grant(self, grant_id: str) -> pm.AccessGrant | None: ...
    def grant_for_ticket(self, new: pm.AccessGrant, now: float) -> tuple[pm.AccessGrant, bool]: ...
    def list_grants(self, account_id: int, **where: Any) -> list[pm.AccessGrant]: ...
    def revoke_grants(self, account_id: int, now: float, reason: str, **where: Any) -> list[pm.AccessGrant]: ...
    def expired_grants(self, now: float) -> list[pm.AccessGrant]: ...
    def void_tickets(self, account_id: int, now: float, **where: Any) -> int: ...
    def add_ticket(self, record: pm.TicketRecord) -> None: ...
    def consume_ticket(self, jti: str, now: float, session: MountSession) -> pm.AccessGrant: ...
    def release_ticket(self, jti: str) -> None: ...
    def live_sessions(self, account_id: int, **where: Any) -> list[MountSession]: ...
    def sessions_of_revoked_grants(self) -> list[MountSession]: ...


def _where(where: dict[str, Any], allowed: Iterable[str]) -> tuple[str, list[Any]]:
    """``AND col = ?`` clauses for the given non-None filters (column names from a fixed list)."""
    sql, args = "", []
    for col in allowed:
        value = where.get(col)
        if value is not None:
            if isinstance(value, (list, tuple, set)):
                values = list(value) or [None]
                sql += f" AND {col} IN ({','.join('?' * len(values))})"
                args += values
            else:
                sql += f" AND {col} = ?"
                args.append(value)
    return sql, args


_GRANT_FILTERS = ("id", "tenant_id", "runtime_id", "workspace_id")


class SQLPlatformStore:
    def __init__(self, store: SQLStore) -> None:
        self.base = store  # its migrations made this module's tables

    def _one(self, cls: type, sql: str, *args: Any) -> Any:
        return self.base._one(cls, sql, *args)

    # -- tenants ----------------------------------------------------------------------------------

    def create_tenant(self, tenant: dict[str, Any], *, exist_ok: bool) -> tuple[pm.Tenant, bool]:
        with self.base._write() as tx:
            tx.execute("SELECT id FROM accounts WHERE id = ? FOR UPDATE", (tenant["account_id"],))
            found = tx.one(pm.Tenant, "SELECT * FROM tenants WHERE account_id = ? AND slug = ?",
                           tenant["account_id"], tenant["slug"])
            if found is not None:
                if not exist_ok:
                    raise TenantExists(f"tenant {tenant['slug']!r} already exists")
                return found, False
            tid = tx.scalar("INSERT INTO tenants(account_id, slug, external_id, metadata, created_at) "
                            "VALUES (?, ?, ?, ?, ?) RETURNING id", tenant["account_id"], tenant["slug"],
                            tenant["external_id"], tenant["metadata"], tenant["created_at"])
            return pm.Tenant(id=int(tid), **tenant), True

    def get_tenant(self, account_id: int, slug: str) -> pm.Tenant | None:
        return self._one(pm.Tenant, "SELECT * FROM tenants WHERE account_id = ? AND slug = ?", account_id, slug)

    def tenant_by_id(self, tenant_id: int) -> pm.Tenant | None:
        return self._one(pm.Tenant, "SELECT * FROM tenants WHERE id = ?", tenant_id)

    def list_tenants(self, account_id: int) -> list[pm.Tenant]:
        return self.base._many(pm.Tenant, "SELECT * FROM tenants WHERE account_id = ? ORDER BY slug", account_id)

    # -- grants -----------------------------------------------------------------------------------

    def add_grant(self, grant: pm.AccessGrant) -> None:
        with self.base._write() as tx:
            tx.execute(*_insert("access_grants", msgspec.structs.asdict(grant)))

    def get_grant(self, grant_id: str) -> pm.AccessGrant | None:
        return self._one(pm.AccessGrant, "SELECT * FROM access_grants WHERE id = ?", grant_id)

    def grant_for_ticket(self, new: pm.AccessGrant, now: float) -> tuple[pm.AccessGrant, bool]:
        """The runtime's live grant on the workspace, else the tenant's live tenant-wide one,
        else ``new`` inserted (True)."""
        with self.base._write() as tx:
            tx.execute("SELECT id FROM tenants WHERE id = ? FOR UPDATE", (new.tenant_id,))
            for runtime in (new.runtime_id, ""):
                found = tx.one(pm.AccessGrant, f"SELECT * FROM access_grants WHERE workspace_id = ? "
                               f"AND tenant_id = ? AND runtime_id = ? AND {_LIVE} ORDER BY created_at DESC LIMIT 1",
                               new.workspace_id, new.tenant_id, runtime, now)
                if found is not None:
                    return found, False
            tx.execute(*_insert("access_grants", msgspec.structs.asdict(new)))
            return new, True

    def list_grants(self, account_id: int, *, include_revoked: bool = False, now: float = 0.0,
                    **where: Any) -> list[pm.AccessGrant]:
        sql, args = _where(where, _GRANT_FILTERS)
        live = "" if include_revoked else f" AND {_LIVE}"
        return self.base._many(pm.AccessGrant, f"SELECT * FROM access_grants WHERE account_id = ?{sql}{live} "
                                               "ORDER BY created_at", account_id, *args,
                               *(() if include_revoked else (now,)))

    def revoke_grants(self, account_id: int, now: float, reason: str, **where: Any) -> list[pm.AccessGrant]:
        """Mark the matching unrevoked grants revoked (under their row locks); returns them as
        they are now."""
        sql, args = _where(where, _GRANT_FILTERS)
        with self.base._write() as tx:
            ids = [r[0] for r in tx.execute(f"SELECT id FROM access_grants WHERE account_id = ?{sql} "
                                            "AND revoked_at IS NULL ORDER BY id FOR UPDATE", (account_id, *args))]
            if ids:
                marks = ",".join("?" * len(ids))
                tx.execute(f"UPDATE access_grants SET revoked_at = ?, revoke_reason = ? WHERE id IN ({marks})",
                           (now, reason, *ids))
            return [tx.one(pm.AccessGrant, "SELECT * FROM access_grants WHERE id = ?", i) for i in ids]

    def expired_grants(self, now: float) -> list[pm.AccessGrant]:
        return self.base._many(pm.AccessGrant, "SELECT * FROM access_grants WHERE revoked_at IS NULL "
                                               "AND expires_at IS NOT NULL AND expires_at <= ?", now)

    # -- tickets ----------------------------------------------------------------------------------

    def add_ticket(self, record: pm.TicketRecord) -> None:
        with self.base._write() as tx:
            tx.execute(*_insert("mount_tickets", msgspec.structs.asdict(record)))

    def void_tickets(self, account_id: int, now: float, **where: Any) -> int:
        """Unexchanged tickets matching ``grant_id`` / ``tenant_id`` / ``runtime_id`` can no longer
        be exchanged. Returns how many."""
        sql, args = _where(where, ("grant_id", "tenant_id", "runtime_id", "workspace_id"))
        with self.base._write() as tx:
            cur = tx.execute(f"UPDATE mount_tickets SET revoked_at = ? WHERE account_id = ?{sql} "
                             "AND used_at IS NULL AND revoked_at IS NULL AND expires_at > ?",
                             (now, account_id, *args, now))
            return cur.rowcount

    def consume_ticket(self, jti: str, now: float, session: MountSession) -> pm.AccessGrant:
        """Mark the ticket used and insert its session row, atomically; the ticket's grant."""
        with self.base._write() as tx:
            rec = tx.one(pm.TicketRecord, "SELECT * FROM mount_tickets WHERE jti = ? FOR UPDATE", jti)
            if rec is None:
                raise TicketInvalid("this orchestrator never issued that ticket")
            if rec.used_at is not None:
                raise TicketUsed("this mount ticket was already used; a ticket mounts once — ask the platform "
                                 "for a new one")
            grant = tx.one(pm.AccessGrant, "SELECT * FROM access_grants WHERE id = ? FOR UPDATE", rec.grant_id)
            if rec.revoked_at is not None or grant is None or grant.revoked_at is not None:
                raise GrantRevoked("access for this ticket was revoked")
            if grant.expires_at is not None and grant.expires_at <= now:
                raise GrantRevoked("the access grant of this ticket has expired")
            tx.execute("UPDATE mount_tickets SET used_at = ?, session_id = ? WHERE jti = ?", (now, session.id, jti))
            tx.execute(*_insert("mount_sessions", msgspec.structs.asdict(session)))
            return grant

    def release_ticket(self, jti: str) -> None:
        """A ticket whose session could not be provisioned (Redis or S3 down) may be retried."""
        with self.base._write() as tx:
            tx.execute("UPDATE mount_tickets SET used_at = NULL, session_id = '' WHERE jti = ?", (jti,))

    # -- sessions ---------------------------------------------------------------------------------

    def sessions_of_revoked_grants(self) -> list[MountSession]:
        """Live sessions whose grant is revoked: a revocation cut short (Redis or S3 down) left them."""
        return self.base._many(MountSession, "SELECT s.* FROM mount_sessions s JOIN access_grants g "
                                             "ON s.grant_id = g.id WHERE s.revoked_at IS NULL "
                                             "AND g.revoked_at IS NOT NULL")

    def live_sessions(self, account_id: int, **where: Any) -> list[MountSession]:
        sql, args = _where(where, ("grant_id", "tenant_id", "runtime_id", "workspace_id"))
        return self.base._many(MountSession, f"SELECT * FROM mount_sessions WHERE account_id = ?{sql} "
                                             "AND revoked_at IS NULL", account_id, *args)


#: The name it had when SQLite was the only database.
SQLitePlatformStore = SQLPlatformStore
