"""Past one machine: the migrate and move-database commands, and two orchestrator processes over
one PostgreSQL and one Redis Cluster serving one platform flow with requests alternating between
them (docs/scale.md)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import psycopg
import pytest
from testbed import TEST_BUCKET

from artifacts_core.errors import PermissionDenied
from artifacts_core.volume import format_volume, open_volume
from artifacts_orchestrator import agent_models as am
from artifacts_orchestrator import errors as E
from artifacts_orchestrator import migrations
from artifacts_orchestrator import platform_models as pm
from artifacts_orchestrator.__main__ import main
from artifacts_orchestrator.agent_store import SQLAgentStore
from artifacts_orchestrator.client import Artifacts
from artifacts_orchestrator.db import open_database
from artifacts_orchestrator.models import ApiKey, MountSession
from artifacts_orchestrator.platform_store import SQLPlatformStore
from artifacts_orchestrator.service import hash_key
from artifacts_orchestrator.store import open_store

ADMIN_TOKEN = "fleet-admin-token-0123456789abcdef"


def private(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


def config(path: Path, **fields) -> Path:
    return private(path, json.dumps({"redis_url": "redis://127.0.0.1:9/0", **fields}))


@pytest.mark.postgres
def test_migrate_checks_then_applies_on_postgres(tmp_path, pg_url, capsys):
    cfg = config(tmp_path / "o.json", database_url=pg_url, ticket_keys=str(tmp_path / "keys"))
    assert main(["migrate", "--config", str(cfg), "--check"]) == 1
    out = capsys.readouterr().out
    assert f"pending: {migrations.LATEST}" in out and "schema version 0" in out
    assert pg_url.split("@")[0].split(":")[-1] not in out  # never the password
    assert main(["migrate", "--config", str(cfg)]) == 0
    assert "applied: 1" in capsys.readouterr().out
    assert main(["migrate", "--config", str(cfg), "--check"]) == 0
    assert f"schema version {migrations.LATEST} of {migrations.LATEST}" in capsys.readouterr().out
    cfg.chmod(0o644)
    with pytest.raises(SystemExit, match="chmod 600"):
        main(["migrate", "--config", str(cfg)])


@pytest.mark.postgres
def test_create_account_refuses_a_database_url_on_the_command_line(pg_url):
    with pytest.raises(SystemExit, match="password"):
        main(["create-account", "x", "--db", pg_url])


def _rows(store):
    """An orchestrator's worth of rows: account, key, workspaces (one deleted), sessions, a
    tenant, a grant and a ticket."""
    acct = store.create_account("team", 1.0)
    store.add_api_key(ApiKey(id="k1", account_id=acct.id, name="ci", hint="tbo_ab…", created_at=1.0),
                      hash_key("tbo_" + "k" * 32))
    fill = lambda wid: {"key_prefix": f"{{u_{acct.id}_w_{wid}}}:", "backend": "byo", "volume_name": f"v{wid}"}  # noqa: E731
    old, _ = store.reserve_workspace(acct.id, "team", "gone", 1.0, fill)
    store.transition(old.id, {"pending_format"}, "deleted", 2.0, deleted_at=2.0)
    ws, _ = store.reserve_workspace(acct.id, "team", "w", 2.0, fill)
    store.transition(ws.id, {"pending_format"}, "active", 2.0)
    plat = SQLPlatformStore(store)
    tenant, _ = plat.create_tenant({"account_id": acct.id, "slug": "acme", "external_id": "x", "metadata": "{}",
                                    "created_at": 3.0}, exist_ok=False)
    grant = pm.AccessGrant(id="gr_1", account_id=acct.id, workspace_id=ws.id, tenant_id=tenant.id, runtime_id="r",
                           mode="rw", created_at=3.0, expires_at=9e9)
    plat.add_grant(grant)
    plat.add_ticket(pm.TicketRecord(jti="j1", account_id=acct.id, grant_id="gr_1", workspace_id=ws.id,
                                    tenant_id=tenant.id, runtime_id="r", mode="rw", issued_at=3.0, expires_at=9e9))
    store.add_session(MountSession(id="s1", workspace_id=ws.id, account_id=acct.id, mode="rw", redis_user="ms-s1",
                                   s3_user="", created_at=4.0, expires_at=9e9, key_id="k1", ttl=600.0,
                                   renew_hash=hash_key("tbr_x")))
    store.claim_job("reaper", "old-host", 5.0, 30, 600)
    agents = SQLAgentStore(store)
    agents.add_agent(am.Agent(id="ag_1", account_id=acct.id, name="bot", created_at=5.0, updated_at=5.0))
    agents.add_workspace(am.AgentWorkspace(workspace_id=ws.id, agent_id="ag_1", account_id=acct.id,
                                           storage="custom", bucket="b", sealed=b"\x00sealed\xff", created_at=5.0))
    agents.update_agent("ag_1", 5.0, workspace_enabled=True, workspace_id=ws.id)
    agents.add_token(am.AgentToken(id="t1", agent_id="ag_1", account_id=acct.id, name="rt", hint="tba_ab…",
                                   created_at=5.0), hash_key("tba_" + "t" * 32))
    return acct, ws, old


@pytest.mark.postgres
def test_move_database_copies_verifies_and_switches(tmp_path, pg_url, capsys):
    db = tmp_path / "state" / "orchestrator.db"
    cfg = config(tmp_path / "orchestrator.json", db=str(db), admin_token="t")
    store = open_store(db)
    acct, ws, _old = _rows(store)
    store.close()
    (tmp_path / "state" / "ticket-keys").mkdir(mode=0o700)
    url_file = tmp_path / "pg.url"
    url_file.write_text(pg_url + "\n")
    url_file.chmod(0o644)
    with pytest.raises(SystemExit, match="chmod 600"):  # the URL holds a password
        main(["move-database", "--config", str(cfg), "--to", str(url_file)])
    url_file.chmod(0o600)
    assert main(["move-database", "--config", str(cfg), "--to", str(url_file)]) == 0
    err = capsys.readouterr().err
    assert "workspaces: 2 rows" in err and "mount_sessions: 1 rows" in err and pg_url not in err
    switched = json.loads(cfg.read_text())
    assert switched["database_url"] == pg_url and switched["db"] == str(db)
    assert switched["ticket_keys"] == str((tmp_path / "state" / "ticket-keys").resolve())
    assert switched["secrets_key"] == str((tmp_path / "state" / "agent-secrets.key").resolve())
    assert cfg.stat().st_mode & 0o777 == 0o600 and json.loads(Path(f"{cfg}.sqlite").read_text()).get("database_url") is None
    pg = open_store(pg_url)
    try:
        assert pg.find_workspace(acct.id, "w").status == "active"
        assert pg.key_by_hash(hash_key("tbo_" + "k" * 32))[0].id == "k1"
        assert pg.session_by_renew_hash(hash_key("tbr_x")).id == "s1"
        assert SQLPlatformStore(pg).get_grant("gr_1").tenant_id == SQLPlatformStore(pg).get_tenant(acct.id, "acme").id
        moved = SQLAgentStore(pg)
        assert moved.get_agent(acct.id, "ag_1").workspace_enabled is True
        assert moved.agent_workspace(ws.id).sealed == b"\x00sealed\xff"
        assert moved.token_by_hash(hash_key("tba_" + "t" * 32))[0].id == "t1"
        fresh, _ = pg.reserve_workspace(acct.id, "team", "next", 6.0,
                                        lambda wid: {"key_prefix": f"{{u_{acct.id}_w_{wid}}}:", "backend": "byo"})
        assert fresh.id == ws.id + 1  # the identity continues after SQLite's ids
        assert pg.create_account("second", 6.0).id == acct.id + 1
    finally:
        pg.close()
    # The SQLite file is untouched, and a second move into the (now non-empty) database is refused.
    assert open_store(db).find_workspace(acct.id, "next") is None
    cfg2 = config(tmp_path / "again.json", db=str(db), ticket_keys=str(tmp_path / "k2"))
    assert main(["move-database", "--config", str(cfg2), "--to", str(url_file)]) == 1
    assert "already has accounts" in capsys.readouterr().err
    assert "database_url" not in json.loads(cfg2.read_text())


# -- two orchestrator processes ---------------------------------------------------------------------


@contextlib.contextmanager
def orchestrator(cfg: Path, log: Path):
    """``python -m artifacts_orchestrator serve`` as its own process; its URL."""
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "artifacts_orchestrator", "serve", "--config", str(cfg)],
                                stdout=subprocess.PIPE, stderr=out, text=True)
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("orchestrator listening on http://127.0.0.1:"), log.read_text()[-3000:]
        yield line.rsplit(" ", 1)[1]
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def _sign_in(url: str, code: str) -> tuple[int, str]:
    """POST /console/sign-in with a link's code: (status, error code or "")."""
    req = urllib.request.Request(url + "/console/sign-in", data=json.dumps({"code": code}).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, ""
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())["code"]


def _volume(url: str, prefix: str, tmp_path: Path, n: int):
    from artifacts_core.config import profile_config

    return open_volume(url, key_prefix=prefix, require_aof=False,
                       config=profile_config("interactive", cache_dir=str(tmp_path / f"c{n}"), entry_ttl=0.0,
                                             attr_ttl=0.0))


@pytest.mark.cluster
@pytest.mark.postgres
@pytest.mark.slow
def test_two_orchestrators_over_one_postgres_and_one_redis_cluster(tmp_path, pg_url, redis_cluster, s3_server,
                                                                   monkeypatch):
    monkeypatch.setenv("ARTIFACTS_S3_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("ARTIFACTS_S3_SECRET_ACCESS_KEY", s3_server.secret_key)
    common = {"database_url": pg_url, "redis_url": redis_cluster.url, "ticket_keys": str(tmp_path / "keys"),
              "secrets_key": str(tmp_path / "secrets" / "agent-secrets.key"),
              "admin_token": ADMIN_TOKEN, "port": 0, "require_aof": False, "require_aclfile": False,
              "reap_interval": 0.3, "sweep_interval": 0.3}
    cfg_a = private(tmp_path / "a.json", json.dumps(common))
    cfg_b = private(tmp_path / "b.json", json.dumps(common))
    with orchestrator(cfg_a, tmp_path / "a.log") as url_a, orchestrator(cfg_b, tmp_path / "b.log") as url_b:
        assert url_a != url_b
        new = Artifacts("", base_url=url_a).create_account("fleet", admin_token=ADMIN_TOKEN)
        a, b = (Artifacts(new.key.key, base_url=u) for u in (url_a, url_b))
        # The console's one-time sign-in link: made through one process, taken through the other, once.
        code = a.console_link()["url"].split("code=", 1)[1]
        assert _sign_in(url_b, code)[0] == 201
        assert _sign_in(url_a, code) == (401, "unauthorized")
        prefix = f"fleet-{uuid.uuid4().hex[:8]}"
        r = b.workspaces.create("w", backend="byo", bucket=TEST_BUCKET, endpoint=s3_server.endpoint,
                                region=s3_server.region, prefix=prefix)
        format_volume(r.format.url, r.storage.url, r.workspace.volume_name, key_prefix=r.format.key_prefix,
                      trash_days=0, require_aof=False)
        assert a.workspaces.format_completed("w").status == "active"
        assert b.workspaces.get("w").status == "active"

        # A mount through one orchestrator, renewed through the other.
        grant = a.sessions.create("w", mode="rw", ttl_seconds=600)
        vol = _volume(grant.meta.url, grant.meta.key_prefix, tmp_path, 1)
        with vol.open("from-a.txt", "w") as f:
            f.write("written through a session of orchestrator A")
        renewed = Artifacts("", base_url=url_b).sessions.renew_with_token(grant.renewal.token)
        assert renewed.session.id == grant.session.id and renewed.session.expires_at >= grant.session.expires_at

        # A ticket signed by one is exchanged on the other, once.
        issued = b.platform.create_mount_ticket("acme", "task-1", workspace="w", ttl_seconds=600)
        mount = Artifacts("", base_url=url_a).platform.exchange_mount_ticket(issued.mount_ticket, host="vm-1")
        with pytest.raises(E.TicketUsed):
            Artifacts("", base_url=url_b).platform.exchange_mount_ticket(issued.mount_ticket)
        runtime = _volume(mount.mount.meta.url, mount.mount.meta.key_prefix, tmp_path, 2)
        with runtime.open("from-a.txt") as f:
            assert f.read().startswith("written through")

        # Revoked on B, the mount provisioned by A loses access at once.
        assert b.platform.revoke_access_grants(tenant_slug="acme", runtime_id="task-1").sessions_revoked == 1
        with pytest.raises(PermissionDenied):
            runtime.stat("from-a.txt")
        with pytest.raises(E.RenewalRefused):
            Artifacts("", base_url=url_a).sessions.renew_with_token(mount.mount.renewal.token)

        # Deleted through A, finished (whichever process runs it), seen deleted through B.
        a.workspaces.delete("w")
        deadline = time.monotonic() + 60
        while b.workspaces.get("w").status != "deleted" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert b.workspaces.get("w").status == "deleted"
        with pytest.raises(PermissionDenied):
            vol.stat("from-a.txt")
        with contextlib.suppress(Exception):
            vol.close()
        with contextlib.suppress(Exception):
            runtime.close()

        # The reaper and the sweep ran as one fleet: a lease per job, held by one of the two.
        time.sleep(1.0)
        with psycopg.connect(pg_url) as conn:
            holders = dict(conn.execute("SELECT name, holder FROM job_leases WHERE name IN ('reaper', "
                                        "'session sweep')").fetchall())
        assert set(holders) == {"reaper", "session sweep"}
    logs = (tmp_path / "a.log").read_text() + (tmp_path / "b.log").read_text()
    assert "Traceback" not in logs and new.key.key not in logs and pg_url not in logs
    db = open_database(pg_url)
    assert migrations.version(db) == migrations.LATEST
    db.close()
    assert os.path.exists(tmp_path / "keys")
