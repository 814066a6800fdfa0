"""The agents' store contract, on both databases (SQLite, and PostgreSQL on a real server): agents,
the workspaces each had (sealed keys as bytes), tokens by hash, and the console's one-time codes,
taken once even when two orchestrator processes race on one code."""

from __future__ import annotations

import test_orchestrator_store as contract

from artifacts_orchestrator import agent_models as am
from artifacts_orchestrator.agent_store import SQLAgentStore
from artifacts_orchestrator.service import hash_key

# The store contract's fixtures: each test runs on SQLite and on PostgreSQL, ``stores()`` opening
# another store on the same database (another orchestrator process).
db_url, stores, race = contract.db_url, contract.stores, contract.race


def _workspace(store, acct_id: int, name: str):
    ws, _ = store.reserve_workspace(acct_id, "a", name, 1.0, lambda wid: {
        "key_prefix": f"{{u_{acct_id}_w_{wid}}}:", "backend": "managed", "volume_name": f"v{wid}"})
    return ws


def test_agents_their_workspaces_and_tokens(stores):
    base = stores()
    acct = base.create_account("a", 1.0)
    agents = SQLAgentStore(base)
    agents.add_agent(am.Agent(id="ag_1", account_id=acct.id, name="Support bot", created_at=1.0, updated_at=1.0))
    ws = _workspace(base, acct.id, "agent-ag_1")
    on = agents.update_agent("ag_1", 2.0, workspace_enabled=True, workspace_id=ws.id)
    assert on is not None and on.workspace_enabled is True and on.workspace_id == ws.id
    assert agents.agent_of_workspace(ws.id).id == "ag_1"
    assert agents.update_agent("ag_1", 3.0, workspace_enabled=False).workspace_enabled is False

    sealed = bytes(range(256))  # every byte value survives (BYTEA on PostgreSQL)
    row = am.AgentWorkspace(workspace_id=ws.id, agent_id="ag_1", account_id=acct.id, storage="custom",
                            bucket="b1", sealed=sealed, created_at=2.0)
    agents.add_workspace(row)
    agents.add_workspace(am.AgentWorkspace(workspace_id=ws.id, agent_id="ag_1", account_id=acct.id,
                                           storage="custom", bucket="b1", sealed=sealed[::-1], created_at=4.0))
    again = agents.agent_workspace(ws.id)  # the second replaced the first (re-attached with new keys)
    assert again is not None and again.sealed == sealed[::-1] and again.created_at == 4.0
    assert [w.workspace_id for w in agents.agent_workspaces("ag_1")] == [ws.id]

    token = am.AgentToken(id="t1", agent_id="ag_1", account_id=acct.id, name="runtime", hint="tba_abcd…",
                          created_at=5.0)
    agents.add_token(token, hash_key("tba_" + "t" * 32))
    found = agents.token_by_hash(hash_key("tba_" + "t" * 32))
    assert found == (token, hash_key("tba_" + "t" * 32))
    assert agents.revoke_token("ag_1", "t1", 6.0).revoked_at == 6.0
    assert agents.revoke_token("ag_1", "t1", 7.0).revoked_at == 6.0  # the first revocation stands

    other = SQLAgentStore(stores())  # another process sees the same rows
    assert [a.name for a in other.list_agents(acct.id)] == ["Support bot"]
    agents.delete_agent("ag_1", 8.0)
    assert other.get_agent(acct.id, "ag_1") is None and other.list_agents(acct.id) == []


def test_a_console_code_is_taken_once_across_processes(stores):
    a, b = stores(), stores()
    acct = a.create_account("c", 1.0)
    pa, pb = SQLAgentStore(a), SQLAgentStore(b)
    pa.add_console_code("h1", acct.id, 100.0, 1.0)
    taken = race(8, lambda i: (pa, pb)[i % 2].take_console_code("h1", 50.0))
    assert taken.count(acct.id) == 1 and taken.count(None) == 7, taken
    pb.add_console_code("h2", acct.id, 100.0, 2.0)
    assert pa.take_console_code("h2", 100.0) is None  # expired (and gone)
    assert pa.take_console_code("h2", 10.0) is None
    pa.add_console_code("h3", acct.id, 300.0, 200.0)  # adding sweeps the expired ones
    pb.add_console_code("h4", acct.id, 500.0, 301.0)
    assert pb.take_console_code("h3", 250.0) is None
    assert pa.take_console_code("h4", 400.0) == acct.id


def test_processes_starting_together_share_one_sealing_key(tmp_path):
    """Several orchestrators starting at once on a fresh shared key file: one creates it, every
    other reads that key, never a half-written file (a key each would seal rows the others cannot
    open)."""
    from artifacts_orchestrator.sealing import SecretBox

    for round_ in range(40):
        path = tmp_path / f"r{round_}" / "agent-secrets.key"
        boxes = race(4, lambda i, path=path: SecretBox(path))
        assert not [b for b in boxes if isinstance(b, Exception)], boxes
        blob = boxes[0].seal(b"secret", "ctx")
        assert all(b.open(blob, "ctx") == b"secret" for b in boxes)
