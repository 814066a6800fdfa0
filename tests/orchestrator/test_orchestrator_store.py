"""The store contract, run on both implementations (SQLite, and PostgreSQL on a real server):
row locks, name reuse, sessions, ticket single use, job leases, migrations; and the bootstrap
command. PostgreSQL tests open two stores on one database: two orchestrator processes."""

from __future__ import annotations

import sqlite3
import threading

import psycopg
import pytest

from artifacts_orchestrator import errors as E
from artifacts_orchestrator import migrations
from artifacts_orchestrator import platform_models as pm
from artifacts_orchestrator.__main__ import main
from artifacts_orchestrator.db import open_database
from artifacts_orchestrator.models import API_KEY_RE, ApiKey, MountSession
from artifacts_orchestrator.platform_store import SQLPlatformStore
from artifacts_orchestrator.service import hash_key
from artifacts_orchestrator.store import SQLiteStore, open_store


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "o.db")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def stores(db_url):
    """Two stores on one database (two orchestrator processes); close at the end."""
    made = []

    def make():
        s = open_store(db_url)
        made.append(s)
        return s
    yield make
    for s in made:
        s.close()


@pytest.fixture
def store(stores):
    return stores()


def fill(wid: int) -> dict:
    return {"key_prefix": f"{{u_1_w_{wid}}}:", "backend": "managed", "volume_name": f"v{wid}"}


def race(n: int, fn) -> list:
    """``fn(i)`` in ``n`` threads released at once; their results."""
    results: list = [None] * n
    barrier = threading.Barrier(n)

    def run(i):
        barrier.wait()
        try:
            results[i] = fn(i)
        except Exception as e:  # the losers' errors are results too
            results[i] = e
    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_database_file_is_private(tmp_path):
    s = SQLiteStore(tmp_path / "o.db")
    assert (tmp_path / "o.db").stat().st_mode & 0o777 == 0o600
    s.close()


def test_reserve_returns_the_live_row_and_ids_are_never_reused(store):
    acct = store.create_account("alice", 1.0)
    with pytest.raises(E.AccountExists):
        store.create_account("alice", 2.0)
    ws, created = store.reserve_workspace(acct.id, "alice", "w", 1.0, fill)
    assert created and ws.status == "pending_format" and ws.key_prefix == f"{{u_1_w_{ws.id}}}:"
    again, created = store.reserve_workspace(acct.id, "alice", "w", 2.0, fill)
    assert not created and again.id == ws.id
    store.transition(ws.id, {"pending_format"}, "deleting", 3.0)
    store.transition(ws.id, {"deleting"}, "deleted", 4.0, deleted_at=4.0)
    fresh, created = store.reserve_workspace(acct.id, "alice", "w", 5.0, fill)
    assert created and fresh.id > ws.id and fresh.key_prefix != ws.key_prefix
    assert store.find_workspace(acct.id, "w").id == fresh.id  # live first
    assert [w.id for w in store.list_workspaces(acct.id, include_deleted=True)] == [ws.id, fresh.id]
    assert [w.id for w in store.list_workspaces(acct.id)] == [fresh.id]
    assert store.get_workspace(fresh.id).created_at == 5.0  # times keep their precision (not float4)
    assert store.get_account(acct.id).created_at == 1.0


def test_only_one_concurrent_transition_wins(stores):
    a, b = stores(), stores()
    acct = a.create_account("bob", 1.0)
    ws, _ = a.reserve_workspace(acct.id, "bob", "w", 1.0, fill)
    wins = race(8, lambda i: (a, b)[i % 2].transition(ws.id, {"pending_format"}, "deleting", 2.0)[1])
    assert sorted(wins) == [False] * 7 + [True]


def test_concurrent_creations_of_one_name_make_one_workspace(stores):
    a, b = stores(), stores()
    acct = a.create_account("erin", 1.0)
    made = race(8, lambda i: (a, b)[i % 2].reserve_workspace(acct.id, "erin", "w", 1.0, fill))
    assert sum(created for _, created in made) == 1 and len({ws.id for ws, _ in made}) == 1
    taken = race(6, lambda i: (a, b)[i % 2].create_account("frank", 1.0))
    assert sum(isinstance(r, E.AccountExists) for r in taken) == 5


def test_keys_sessions_and_live_users(store):
    acct = store.create_account("carol", 1.0)
    key = ApiKey(id="k1", account_id=acct.id, name="n", hint="tbo_ab…", created_at=1.0)
    store.add_api_key(key, hash_key("tbo_secret"))
    found, stored = store.key_by_hash(hash_key("tbo_secret"))
    assert found.id == "k1" and stored == hash_key("tbo_secret")
    assert store.get_api_key("k1").revoked_at is None
    assert store.revoke_api_key(acct.id, "k1", 5.0).revoked_at == 5.0
    assert store.revoke_api_key(acct.id, "k1", 9.0).revoked_at == 5.0  # first revocation kept
    ws, _ = store.reserve_workspace(acct.id, "carol", "w", 1.0, fill)
    store.set_format_user(ws.id, f"fmt-{ws.id}", 100.0, 1.0)
    store.add_session(MountSession(id="s1", workspace_id=ws.id, account_id=acct.id, mode="ro",
                                   redis_user="ms-s1", s3_user="ms-s1", created_at=1.0, expires_at=10.0,
                                   key_id="k1", ttl=9.0, renew_hash=hash_key("tbr_x")))
    assert store.session_by_renew_hash(hash_key("tbr_x")).id == "s1"
    assert store.session_by_renew_hash("") is None and store.session_by_renew_hash(hash_key("other")) is None
    assert store.live_acl_users() == {"ms-s1", f"fmt-{ws.id}"}
    assert [s.id for s in store.expired_sessions(10.0)] == ["s1"]
    assert store.renew_session("s1", 50.0).expires_at == 50.0
    assert store.expired_sessions(10.0) == []
    store.revoke_session("s1", 20.0, "revoked")
    assert store.renew_session("s1", 90.0).expires_at == 50.0  # a revoked session is not renewed
    assert store.live_acl_users() == {f"fmt-{ws.id}"}
    assert store.list_sessions(ws.id) == [] and len(store.list_sessions(ws.id, include_revoked=True)) == 1
    assert [s.id for s in store.unfinished_revocations()] == ["s1"]
    store.mark_cleaned("s1", 21.0)
    assert store.unfinished_revocations() == []


def _platform_rows(store):
    acct = store.create_account("gina", 1.0)
    ws, _ = store.reserve_workspace(acct.id, "gina", "w", 1.0, fill)
    store.transition(ws.id, {"pending_format"}, "active", 1.0)
    plat = SQLPlatformStore(store)
    tenant, created = plat.create_tenant({"account_id": acct.id, "slug": "acme", "external_id": "", "metadata": "{}",
                                          "created_at": 1.0}, exist_ok=True)
    assert created and plat.create_tenant({"account_id": acct.id, "slug": "acme", "external_id": "",
                                           "metadata": "{}", "created_at": 2.0}, exist_ok=True)[0].id == tenant.id
    return acct, ws, tenant


def test_a_ticket_is_consumed_once_across_processes(stores):
    a, b = stores(), stores()
    acct, ws, tenant = _platform_rows(a)
    pa, pb = SQLPlatformStore(a), SQLPlatformStore(b)
    grants = race(6, lambda i: (pa, pb)[i % 2].grant_for_ticket(
        pm.AccessGrant(id=f"gr_{i}", account_id=acct.id, workspace_id=ws.id, tenant_id=tenant.id, runtime_id="r1",
                       mode="rw", created_at=1.0), 1.0))
    assert sum(made for _, made in grants) == 1 and len({g.id for g, _ in grants}) == 1
    grant = grants[0][0]
    pa.add_ticket(pm.TicketRecord(jti="j1", account_id=acct.id, grant_id=grant.id, workspace_id=ws.id,
                                  tenant_id=tenant.id, runtime_id="r1", mode="rw", issued_at=1.0, expires_at=100.0))

    def exchange(i):
        return (pa, pb)[i % 2].consume_ticket("j1", 2.0, MountSession(
            id=f"s{i}", workspace_id=ws.id, account_id=acct.id, mode="rw", redis_user=f"ms-{i}", s3_user="",
            created_at=2.0, expires_at=50.0, grant_id=grant.id, ticket_id="j1"))
    results = race(8, exchange)
    assert sum(isinstance(r, pm.AccessGrant) for r in results) == 1
    assert sum(isinstance(r, E.TicketUsed) for r in results) == 7
    assert len(a.list_sessions(ws.id)) == 1
    pa.add_ticket(pm.TicketRecord(jti="j2", account_id=acct.id, grant_id=grant.id, workspace_id=ws.id,
                                  tenant_id=tenant.id, runtime_id="r1", mode="rw", issued_at=1.0, expires_at=100.0))
    assert [g.id for g in pb.revoke_grants(acct.id, 3.0, "revoked", tenant_id=tenant.id)] == [grant.id]
    with pytest.raises(E.GrantRevoked):
        pa.consume_ticket("j2", 4.0, MountSession(id="s9", workspace_id=ws.id, account_id=acct.id, mode="rw",
                                                  redis_user="ms-9", s3_user="", created_at=4.0, expires_at=9.0))
    assert [s.id for s in pa.sessions_of_revoked_grants()] == [s.id for s in a.list_sessions(ws.id)]


def test_a_job_runs_once_per_interval_across_processes(stores):
    a, b = stores(), stores()
    won = race(8, lambda i: (a, b)[i % 2].claim_job("reaper", f"p{i % 2}", 100.0, every=30, lease=300))
    assert sum(won) == 1
    winner = f"p{won.index(True) % 2}"
    other = "p1" if winner == "p0" else "p0"
    assert not a.claim_job("reaper", other, 129.0, every=30, lease=300)  # within the interval
    assert not a.claim_job("reaper", other, 131.0, every=30, lease=300)  # the winner's lease still runs
    b.release_job("reaper", winner, 101.0)
    assert a.claim_job("reaper", other, 131.0, every=30, lease=300)  # finished: the next interval is anyone's
    assert not b.claim_job("reaper", winner, 131.5, every=30, lease=300)
    # A holder that died mid-run: its lease runs out, then another process takes the job.
    assert not b.claim_job("reaper", winner, 400.0, every=30, lease=300)
    assert b.claim_job("reaper", winner, 432.0, every=30, lease=300)
    assert a.claim_job("sweep", other, 432.0, every=10, lease=60)  # jobs are independent


def test_migrations_are_versioned_applied_once_and_refused_when_newer(db_url):
    dbs = [open_database(db_url), open_database(db_url)]
    assert [m.version for m in migrations.pending(dbs[0])] == [m.version for m in migrations.MIGRATIONS]
    applied = race(2, lambda i: migrations.migrate(dbs[i]))
    assert sorted(len(done) for done in applied) == [0, len(migrations.MIGRATIONS)]  # one process did it
    assert migrations.pending(dbs[1]) == [] and migrations.version(dbs[0]) == migrations.LATEST
    with dbs[0].write() as tx:
        tx.execute("INSERT INTO schema_migrations(version, name, applied_at) VALUES (?, 'from the future', 0)",
                   (migrations.LATEST + 1,))
    with pytest.raises(migrations.SchemaTooNew, match="upgrade artifacts"):
        open_store(db_url)
    for db in dbs:
        db.close()


OLD_SCHEMA = """
CREATE TABLE accounts (id INTEGER PRIMARY KEY AUTOINCREMENT, handle TEXT NOT NULL UNIQUE, created_at REAL NOT NULL);
CREATE TABLE workspaces (id INTEGER PRIMARY KEY AUTOINCREMENT, account_id INTEGER NOT NULL, handle TEXT NOT NULL,
    name TEXT NOT NULL, status TEXT NOT NULL, backend TEXT NOT NULL, key_prefix TEXT NOT NULL,
    volume_name TEXT NOT NULL, bucket TEXT NOT NULL, endpoint TEXT NOT NULL, region TEXT NOT NULL,
    storage_prefix TEXT NOT NULL, cache_profile TEXT NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL,
    deleted_at REAL, format_user TEXT NOT NULL DEFAULT '', format_expires_at REAL);
CREATE TABLE mount_sessions (id TEXT PRIMARY KEY, workspace_id INTEGER NOT NULL, account_id INTEGER NOT NULL,
    mode TEXT NOT NULL, redis_user TEXT NOT NULL, s3_user TEXT NOT NULL, created_at REAL NOT NULL,
    expires_at REAL NOT NULL, revoked_at REAL, revoke_reason TEXT NOT NULL DEFAULT '', host TEXT NOT NULL DEFAULT '',
    mountpoint TEXT NOT NULL DEFAULT '', tenant_id INTEGER, runtime_id TEXT NOT NULL DEFAULT '',
    grant_id TEXT NOT NULL DEFAULT '', ticket_id TEXT NOT NULL DEFAULT '');
INSERT INTO accounts(handle, created_at) VALUES ('old', 1.0);
INSERT INTO workspaces(account_id, handle, name, status, backend, key_prefix, volume_name, bucket, endpoint, region,
    storage_prefix, cache_profile, created_at, updated_at) VALUES (1, 'old', 'w', 'active', 'byo', '{u_1_w_1}:',
    'v', 'b', 'e', '', '', 'interactive', 1.0, 1.0);
INSERT INTO mount_sessions(id, workspace_id, account_id, mode, redis_user, s3_user, created_at, expires_at,
    revoked_at) VALUES ('gone', 1, 1, 'rw', 'ms-gone', '', 1.0, 2.0, 1.5);
PRAGMA user_version=1;
"""


def test_a_database_from_before_migrations_is_upgraded_in_place(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(OLD_SCHEMA)
    conn.close()
    store = open_store(path)
    assert store.find_workspace(1, "w").status == "active"
    old = store.get_session("gone")
    assert old.cleaned_at == 1.5 and old.renew_hash == "" and old.ttl == 0  # revoked then cleaned, as before
    assert migrations.version(store.db) == migrations.LATEST
    store.close()


@pytest.mark.postgres
def test_the_postgres_server_takes_passwords_on_loopback_only(postgres_server, pg_url):
    wrong = pg_url.replace("://orch", "://nobody-here").split("@")[0] + "@" + pg_url.split("@")[1]
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong, connect_timeout=5)
    no_password = pg_url.split("://")[0] + "://" + pg_url.split("://")[1].split(":")[0] + "@" + pg_url.split("@")[1]
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(no_password, connect_timeout=5)
    with psycopg.connect(postgres_server.url) as conn:
        listen = conn.execute("SHOW listen_addresses").fetchone()[0]
        sockets = conn.execute("SHOW unix_socket_directories").fetchone()[0]
        rules = {r[0] for r in conn.execute("SELECT auth_method FROM pg_hba_file_rules")}
    assert listen == "127.0.0.1" and sockets == "" and rules == {"scram-sha-256"}
    assert postgres_server.password not in " ".join(postgres_server.proc.args)


def test_create_account_command_prints_the_key_once(tmp_path, capsys):
    db = tmp_path / "cli.db"
    assert main(["create-account", "dave", "--db", str(db)]) == 0
    out = capsys.readouterr()
    key = out.out.strip()
    assert API_KEY_RE.match(key) and key not in out.err
    assert key.encode() not in db.read_bytes()
    assert main(["create-account", "dave", "--db", str(db)]) == 1
    assert main(["create-account", "Not_A_Handle", "--db", str(db)]) == 1


def test_the_reaper_the_session_sweep_and_the_journal_retention_run_at_start_and_then_periodically():
    import time

    from artifacts_orchestrator.app import OrchestratorServer

    class Counting:
        calls = 0
        sweeps = 0

        def reap(self):
            Counting.calls += 1
            return {"sessions": 0}

        def sweep_sessions(self):
            Counting.sweeps += 1
            return {"stale_sessions": 0}

        def journal_retention(self):
            Counting.trims += 1
            return {"journal_events_dropped": 0}

        def run_job(self, name, fn, every):
            return fn()

    Counting.trims = 0
    with OrchestratorServer(Counting(), reap_interval=0.05, sweep_interval=0.05, journal_interval=0.05):
        deadline = time.monotonic() + 10
        while min(Counting.calls, Counting.sweeps, Counting.trims) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert Counting.calls >= 3 and Counting.sweeps >= 3 and Counting.trims >= 3
