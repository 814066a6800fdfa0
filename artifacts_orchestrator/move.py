"""Moving an orchestrator's rows from its SQLite file to PostgreSQL: copy, verify, switch.

For a local stack that became a team's (docs/scale.md): ``python -m artifacts_orchestrator
move-database --config orchestrator.json --to FILE`` (FILE holds the ``postgresql://`` URL, mode
0600, or ``-`` for stdin: the URL carries a password, so never on the command line).

1. Both schemas are migrated to the latest version first, so the tables have the same columns.
2. The target must be empty (no account): a move never merges into a database in use.
3. Copy: every table in dependency order (``TABLES``; a table this list does not know is refused,
   so a new migration cannot be forgotten here), inside one SQLite read transaction (a consistent
   snapshot; the orchestrator must be stopped: its writes would not be copied) and ONE PostgreSQL
   transaction (all or nothing). Ids are copied as they are, and each identity sequence is moved
   past the highest id SQLite ever handed out (``sqlite_sequence``: ids of deleted rows are never
   reused, so a re-created workspace never gets an old key prefix).
4. Verify: row counts and the set of primary keys of every table match.
5. Switch: the config file is rewritten (atomically, 0600) with ``database_url`` set, and the mount
   ticket keys' directory and the agents' sealing key file pinned where they were (they defaulted
   to beside the SQLite file). The SQLite
   file is left untouched: switching back is restoring the previous config (kept as
   ``<config>.sqlite``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from artifacts_orchestrator import migrations
from artifacts_orchestrator.db import Database, PostgresDatabase, SQLiteDatabase

#: Every table, parents before children, with its primary key (for the verification).
TABLES: tuple[tuple[str, str], ...] = (
    ("accounts", "id"), ("api_keys", "id"), ("workspaces", "id"), ("tenants", "id"), ("access_grants", "id"),
    ("mount_sessions", "id"), ("mount_tickets", "jti"), ("job_leases", "name"), ("agents", "id"),
    ("agent_workspaces", "workspace_id"), ("agent_tokens", "id"), ("console_codes", "code_hash"))
#: Tables whose ids come from a sequence (SQLite AUTOINCREMENT, PostgreSQL identity).
IDENTITY = ("accounts", "workspaces", "tenants")
#: Rows per INSERT batch.
BATCH = 500


class MoveError(Exception):
    """The move was refused or did not verify; nothing was switched."""


def _tables(db: SQLiteDatabase) -> set[str]:
    with db.read() as tx:
        names = {r[0] for r in tx.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    return names - {"sqlite_sequence", "schema_migrations"}


def copy(source: SQLiteDatabase, target: Database) -> dict[str, int]:
    """Copy every row (steps 1-4 of the module note); returns rows per table."""
    migrations.migrate(source)
    migrations.migrate(target)
    unknown = _tables(source) - {t for t, _ in TABLES}
    if unknown:
        raise MoveError(f"tables this version cannot move: {', '.join(sorted(unknown))} (upgrade artifacts)")
    with target.read() as tx:
        if tx.scalar("SELECT count(*) FROM accounts"):
            raise MoveError(f"the target database {target.where} already has accounts: a move needs an empty one")
    counts: dict[str, int] = {}
    with source.write() as src, target.write() as dst:  # the SQLite write lock: nothing changes meanwhile
        for table, _ in TABLES:
            rows = src.execute(f"SELECT * FROM {table}").fetchall()
            counts[table] = len(rows)
            if table == "job_leases":
                dst.execute("DELETE FROM job_leases")  # the target's own (a fresh database has none)
            for i in range(0, len(rows), BATCH):
                batch = rows[i:i + BATCH]
                cols = list(batch[0].keys())
                sql = f"INSERT INTO {table}({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
                for row in batch:
                    dst.execute(sql, tuple(row))
        seqs = {r[0]: int(r[1]) for r in src.execute("SELECT name, seq FROM sqlite_sequence").fetchall()}
        for table in IDENTITY:
            top = max(seqs.get(table, 0), int(src.scalar(f"SELECT COALESCE(MAX(id), 0) FROM {table}")))
            if top:
                dst.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), ?)", (top,))
        _verify(src, dst)
    return counts


def _verify(src: Any, dst: Any) -> None:
    for table, key in TABLES:
        a = sorted(str(r[0]) for r in src.execute(f"SELECT {key} FROM {table}").fetchall())
        b = sorted(str(r[0]) for r in dst.execute(f"SELECT {key} FROM {table}").fetchall())
        if a != b:
            raise MoveError(f"table {table}: {len(a)} rows in SQLite, {len(b)} copied; nothing was switched")


def switch_config(config_path: Path, database_url: str, pinned: dict[str, str]) -> Path:
    """Point the config at PostgreSQL, setting each of ``pinned`` (``ticket_keys``,
    ``secrets_key``: paths that defaulted to beside the SQLite file) the config leaves unset; the
    old one is kept as ``<config>.sqlite``. Returns it."""
    text = config_path.read_text()
    backup = config_path.with_name(config_path.name + ".sqlite")
    _write_private(backup, text)
    cfg = json.loads(text)
    cfg["database_url"] = database_url
    for name, path in pinned.items():
        if not cfg.get(name):
            cfg[name] = path
    _write_private(config_path, json.dumps(cfg, indent=2))
    return backup


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def move(config_path: Path, sqlite_path: str, database_url: str, pinned: dict[str, str]) -> dict[str, int]:
    source = SQLiteDatabase(sqlite_path)
    try:
        target = PostgresDatabase(database_url)
    except Exception:
        source.close()
        raise
    try:
        counts = copy(source, target)
    finally:
        source.close()
        target.close()
    switch_config(config_path, database_url, pinned)
    return counts
