"""The SQLite store on its own (no servers): the row lock, name reuse, the bootstrap command."""

from __future__ import annotations

import threading

import pytest

from artifacts_orchestrator import errors as E
from artifacts_orchestrator.__main__ import main
from artifacts_orchestrator.models import API_KEY_RE, ApiKey, MountSession
from artifacts_orchestrator.service import hash_key
from artifacts_orchestrator.store import SQLiteStore


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore(tmp_path / "o.db")
    yield s
    s.close()


def fill(wid: int) -> dict:
    return {"key_prefix": f"{{u_1_w_{wid}}}:", "backend": "managed", "volume_name": f"v{wid}"}


def test_database_file_is_private(store, tmp_path):
    assert (tmp_path / "o.db").stat().st_mode & 0o777 == 0o600


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


def test_only_one_concurrent_transition_wins(store):
    acct = store.create_account("bob", 1.0)
    ws, _ = store.reserve_workspace(acct.id, "bob", "w", 1.0, fill)
    wins = []
    barrier = threading.Barrier(8)

    def flip():
        barrier.wait()
        _, moved = store.transition(ws.id, {"pending_format"}, "active", 2.0)
        wins.append(moved)
    threads = [threading.Thread(target=flip) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == [False] * 7 + [True]


def test_keys_sessions_and_live_users(store):
    acct = store.create_account("carol", 1.0)
    key = ApiKey(id="k1", account_id=acct.id, name="n", hint="tbo_ab…", created_at=1.0)
    store.add_api_key(key, hash_key("tbo_secret"))
    found, stored = store.key_by_hash(hash_key("tbo_secret"))
    assert found.id == "k1" and stored == hash_key("tbo_secret")
    assert store.revoke_api_key(acct.id, "k1", 5.0).revoked_at == 5.0
    assert store.revoke_api_key(acct.id, "k1", 9.0).revoked_at == 5.0  # first revocation kept
    ws, _ = store.reserve_workspace(acct.id, "carol", "w", 1.0, fill)
    store.set_format_user(ws.id, f"fmt-{ws.id}", 100.0, 1.0)
    store.add_session(MountSession(id="s1", workspace_id=ws.id, account_id=acct.id, mode="ro",
                                   redis_user="ms-s1", s3_user="ms-s1", created_at=1.0, expires_at=10.0))
    assert store.live_acl_users() == {"ms-s1", f"fmt-{ws.id}"}
    assert [s.id for s in store.expired_sessions(10.0)] == ["s1"]
    assert store.renew_session("s1", 50.0).expires_at == 50.0
    assert store.expired_sessions(10.0) == []
    store.revoke_session("s1", 20.0, "revoked")
    assert store.live_acl_users() == {f"fmt-{ws.id}"}
    assert store.list_sessions(ws.id) == [] and len(store.list_sessions(ws.id, include_revoked=True)) == 1


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

    Counting.trims = 0
    with OrchestratorServer(Counting(), reap_interval=0.05, sweep_interval=0.05, journal_interval=0.05):
        deadline = time.monotonic() + 10
        while min(Counting.calls, Counting.sweeps, Counting.trims) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert Counting.calls >= 3 and Counting.sweeps >= 3 and Counting.trims >= 3
