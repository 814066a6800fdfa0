"""The orchestrator's database connection: SQLite (the embedded default) or PostgreSQL, one SQL.

The stores (store.py, platform_store.py) write their SQL once, in the subset both engines speak:
``?`` placeholders, ``INSERT … RETURNING``, partial indexes, ``SELECT … FOR UPDATE`` where a
read-check-write needs the row lock. ``Database`` hands out ``Tx`` objects that run it:

- ``read()``: a connection for reads, outside any transaction (autocommit);
- ``write()``: one transaction that holds the lock its statements need until it commits (or
  rolls back on an exception). On SQLite that is ``BEGIN IMMEDIATE``: SQLite's one write lock,
  taken before the first read, so every read-check-write is serialised (``FOR UPDATE`` is
  removed: SQLite has no row locks and needs none under that lock). On PostgreSQL it is a READ
  COMMITTED transaction in which ``FOR UPDATE`` locks the rows a check reads, so two
  orchestrator processes deleting one workspace, exchanging one ticket or revoking one grant are
  serialised on that row (seed 000's "acquires a FOR UPDATE lock on the workspace row").

Dialect differences kept here and nowhere else: placeholders (``?`` → ``%s``), the DDL types of
``ddl()`` (SQLite's ``REAL`` is a double, PostgreSQL's a single float: ``DOUBLE PRECISION``;
``INTEGER PRIMARY KEY AUTOINCREMENT`` → an identity column; ``BLOB`` → ``BYTEA``), and rows:
both give ``Row``, a tuple whose fields are also reachable by column name (``dict(row)`` works).

``SQLiteDatabase``: one file, WAL (readers never block the writer), one connection per thread,
created 0600. ``PostgresDatabase``: a psycopg 3 connection pool (``psycopg_pool``), autocommit
connections with explicit transactions; the URL (``postgresql://user:password@host:port/db``)
comes from the config file and is never logged (``redacted``).
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import msgspec

#: SQLite waits this long for another writer's lock before failing (writes are milliseconds).
BUSY_TIMEOUT_MS = 10_000
#: PostgreSQL connections per orchestrator process: one per worker thread (app.WORKERS = 16) plus
#: the background loops, as the Redis admin pool (redis_acl.ADMIN_POOL). A server's default
#: max_connections (100) then admits four orchestrator processes with room for psql.
PG_POOL_MAX = 20
#: Connections kept open while idle: the reaper's and a request's.
PG_POOL_MIN = 2
#: Seconds a caller waits for a pooled connection before failing (requests are milliseconds).
PG_POOL_TIMEOUT = 30.0

_FOR_LOCK_RE = re.compile(r"\s+FOR\s+(UPDATE|SHARE)\b", re.IGNORECASE)


class DatabaseError(Exception):
    """The database refused or could not be reached (the message names which, never the URL)."""


class Row(tuple):
    """A result row: a tuple whose columns are also reachable by name (``row["id"]``,
    ``dict(row)``), as ``sqlite3.Row`` is."""

    _names: tuple[str, ...] = ()

    def __new__(cls, names: tuple[str, ...], values: Sequence[Any]) -> Row:
        row = super().__new__(cls, values)
        row._names = names
        return row

    def keys(self) -> tuple[str, ...]:
        return self._names

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._names.index(key))
        return tuple.__getitem__(self, key)


class Tx:
    """Statements on one connection (inside ``write()``'s transaction, or autocommit reads)."""

    def __init__(self, conn: Any, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Any:
        """Run ``sql`` (``?`` placeholders); a cursor with ``fetchone``/``fetchall``/``rowcount``."""
        return self.conn.execute(_translate(sql, self.dialect), tuple(args))

    def script(self, ddl: str) -> None:
        """Several DDL statements separated by ``;`` (no parameters), in ``ddl()``'s types."""
        for stmt in (s.strip() for s in ddl.split(";")):
            if stmt:
                self.conn.execute(ddl_for(stmt, self.dialect))

    def one(self, cls: type, sql: str, *args: Any) -> Any:
        return as_struct(cls, self.execute(sql, args).fetchone())

    def many(self, cls: type, sql: str, *args: Any) -> list[Any]:
        return [as_struct(cls, r) for r in self.execute(sql, args).fetchall()]

    def scalar(self, sql: str, *args: Any) -> Any:
        row = self.execute(sql, args).fetchone()
        return None if row is None else row[0]


def as_struct(cls: type, row: Any) -> Any:
    """A row as msgspec struct ``cls`` (lax: SQLite keeps booleans as 0/1), or None."""
    return None if row is None else msgspec.convert(dict(row), cls, strict=False)


@functools.lru_cache(maxsize=1024)
def _translate(sql: str, dialect: str) -> str:
    if dialect == "sqlite":
        return _FOR_LOCK_RE.sub("", sql)
    return sql.replace("%", "%%").replace("?", "%s")


def ddl_for(stmt: str, dialect: str) -> str:
    """DDL written with SQLite's type names, in ``dialect``'s."""
    if dialect == "sqlite":
        return stmt
    stmt = re.sub(r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b", "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
                  stmt)
    stmt = re.sub(r"\bINTEGER\b", "BIGINT", stmt)
    stmt = re.sub(r"\bREAL\b", "DOUBLE PRECISION", stmt)
    return re.sub(r"\bBLOB\b", "BYTEA", stmt)


def redacted(url: str) -> str:
    """``url`` without its password (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class Database:
    """What the stores need from a database; see the module note."""

    dialect = ""
    #: Where it is, without secrets (for messages).
    where = ""

    def read(self) -> contextlib.AbstractContextManager[Tx]:
        raise NotImplementedError

    def write(self) -> contextlib.AbstractContextManager[Tx]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class SQLiteDatabase(Database):
    dialect = "sqlite"

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.where = str(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            # Created 0600 before SQLite opens it (SQLite gives -wal/-shm the same mode).
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self.conn().execute("PRAGMA journal_mode=WAL")

    def conn(self) -> sqlite3.Connection:
        """This thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                   timeout=BUSY_TIMEOUT_MS / 1000)
            conn.row_factory = lambda cur, values: Row(tuple(c[0] for c in cur.description), values)
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoint, never corrupt
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextlib.contextmanager
    def read(self) -> Iterator[Tx]:
        yield Tx(self.conn(), self.dialect)

    @contextlib.contextmanager
    def write(self) -> Iterator[Tx]:
        conn = self.conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield Tx(conn, self.dialect)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                with contextlib.suppress(sqlite3.ProgrammingError):
                    conn.close()
            self._all.clear()
        self._local = threading.local()


def _pg_row_factory(cursor: Any) -> Any:
    names = tuple(c.name for c in cursor.description or ())
    return lambda values: Row(names, values)


class PostgresDatabase(Database):
    dialect = "postgresql"

    def __init__(self, url: str, *, min_size: int = PG_POOL_MIN, max_size: int = PG_POOL_MAX,
                 timeout: float = PG_POOL_TIMEOUT) -> None:
        import psycopg
        from psycopg_pool import ConnectionPool

        self.url = url
        self.where = redacted(url)
        self._errors = (psycopg.OperationalError, psycopg_pool_errors())
        self.pool = ConnectionPool(url, min_size=min_size, max_size=max_size, timeout=timeout, open=False,
                                   kwargs={"autocommit": True, "row_factory": _pg_row_factory},
                                   name="artifacts-orchestrator")
        try:
            self.pool.open(wait=True, timeout=timeout)
        except Exception as e:
            self.pool.close()
            raise DatabaseError(f"cannot connect to PostgreSQL at {self.where}: "
                                f"{_first_line(e)}") from None

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Any]:
        try:
            with self.pool.connection() as conn:
                yield conn
        except self._errors as e:
            raise DatabaseError(f"PostgreSQL at {self.where} is unreachable: {_first_line(e)}") from e

    @contextlib.contextmanager
    def read(self) -> Iterator[Tx]:
        with self._connection() as conn:
            yield Tx(conn, self.dialect)

    @contextlib.contextmanager
    def write(self) -> Iterator[Tx]:
        with self._connection() as conn, conn.transaction():
            yield Tx(conn, self.dialect)

    def close(self) -> None:
        self.pool.close()


def psycopg_pool_errors() -> type[Exception]:
    from psycopg_pool import PoolTimeout

    return PoolTimeout


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def is_postgres_url(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def open_database(url: str | os.PathLike) -> Database:
    """``postgresql://…`` (or ``postgres://``), ``sqlite:///path``, or a plain file path (SQLite)."""
    text = os.fspath(url)
    if is_postgres_url(text):
        return PostgresDatabase(text)
    if text.startswith("sqlite://"):
        text = text[len("sqlite://"):]
    return SQLiteDatabase(text)
