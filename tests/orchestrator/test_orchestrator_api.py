"""The orchestrator end to end over real HTTP on loopback, a real Redis (AOF, ACL file) and a real
SeaweedFS with its IAM API: accounts and keys, the workspace state machine of seed 000 with a
real format and real mounts through ``open_volume``, sessions, the reaper, and every documented
error code.
"""

from __future__ import annotations

import asyncio
import time

import pytest
import redis
import redis.exceptions as rex
from orchestrator_stack import (  # noqa: F401 - _reset_clock is an autouse fixture
    ADMIN_TOKEN,
    BUCKET,
    _config,
    _handles,
    _reset_clock,
    admin_s3,
    create_and_format,
    objects_under,
    s3_env,
    wait_deleted,
)

from artifacts_core.volume import format_volume, open_volume
from artifacts_orchestrator import errors as E
from artifacts_orchestrator.client import Artifacts, AsyncArtifacts
from artifacts_orchestrator.local import start_redis
from artifacts_orchestrator.redis_acl import RedisAdmin
from artifacts_orchestrator.service import Service

pytestmark = [pytest.mark.redis, pytest.mark.s3]

# -- accounts and keys -----------------------------------------------------------------------------


def test_keys_are_shown_once_stored_hashed_and_revocable(stack, api):
    me = api.whoami()
    assert me.account.handle == api.handle and me.key.hint.startswith("tbo_")
    second = api.keys.create("ci")
    assert second.key.startswith("tbo_") and len(second.key) == 36
    listed = api.keys.list().keys
    assert {k.id for k in listed} >= {me.key.id, second.id}
    assert all(not hasattr(k, "key") for k in listed)
    db = stack["db"]
    on_disk = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))
    assert api._api_key.encode() not in on_disk and second.key.encode() not in on_disk
    assert (db.stat().st_mode & 0o777) == 0o600
    ci = Artifacts(second.key, base_url=api.base_url)
    assert ci.whoami().key.id == second.id
    api.keys.revoke(second.id)
    with pytest.raises(E.Unauthorized, match="api key has been revoked"):
        ci.whoami()
    for bad in ("", "tbo_" + "x" * 32, "Basic abc", second.key[:-1]):
        with pytest.raises(E.Unauthorized):
            Artifacts(bad, base_url=api.base_url).workspaces.list()
    with pytest.raises(E.Unauthorized):
        Artifacts("", base_url=api.base_url).create_account("evil", admin_token="wrong")
    with pytest.raises(E.AccountExists):
        Artifacts("", base_url=api.base_url).create_account(api.handle, admin_token=ADMIN_TOKEN)
    assert api.workspaces.list().workspaces == []


# -- the managed lifecycle -------------------------------------------------------------------------


def test_managed_workspace_end_to_end(stack, api, monkeypatch, tmp_path):
    admin: RedisAdmin = stack["service"].redis
    r = api.workspaces.create("notes")
    ws = r.workspace
    assert ws.status == "pending_format" and ws.backend == "managed" and not r.resumed
    assert ws.metadata_key_prefix == f"{{u_{api.whoami().account.id}_w_{ws.id}}}:"
    assert r.storage.prefix == f"ws{ws.id}" and r.storage.credentials is not None
    assert r.format.user in admin.users()
    s3_env(monkeypatch, r.storage.credentials)
    format_volume(r.format.url, r.storage.url, ws.volume_name, key_prefix=r.format.key_prefix, trash_days=0)
    active = api.workspaces.format_completed("notes")
    assert active.status == "active"
    assert api.workspaces.format_completed(f"{api.handle}/notes").status == "active"  # 200 again
    assert r.format.user not in admin.users()  # the format user is revoked
    with pytest.raises((rex.AuthenticationError, rex.ResponseError)):
        redis.Redis.from_url(r.format.url).ping()
    shown = api.workspaces.get(f"artifacts://{api.handle}/notes")
    assert shown.volume_name == ws.volume_name and shown.storage.bucket == BUCKET
    assert [w.name for w in api.workspaces.list().workspaces] == ["notes"]

    rw = api.sessions.create("notes", mode="rw", host="h1", mountpoint="/mnt/a")
    assert rw.session.redis_user.startswith("ms-") and rw.storage.credentials is not None
    s3_env(monkeypatch, rw.storage.credentials)
    with open_volume(rw.meta.url, rw.storage.url, key_prefix=rw.meta.key_prefix,
                     config=_config(tmp_path / "c1")) as vol:
        with vol.open("hello.txt", "w") as f:
            f.write("hello " * 5000)  # past the inline limit: blocks reach S3
    assert objects_under(stack, rw.storage.prefix)
    ro = api.sessions.create("notes", mode="ro")
    s3_env(monkeypatch, ro.storage.credentials)
    with open_volume(ro.meta.url, ro.storage.url, key_prefix=ro.meta.key_prefix, read_only=True,
                     config=_config(tmp_path / "c2")) as vol:
        with vol.open("hello.txt") as f:
            assert f.read() == "hello " * 5000
    assert {s.id for s in api.sessions.list("notes").sessions} == {rw.session.id, ro.session.id}

    live = redis.Redis.from_url(rw.meta.url)
    assert live.ping()
    assert api.workspaces.delete("notes").status == "deleting"
    gone = wait_deleted(api, "notes")
    assert gone.status == "deleted" and gone.deleted_at
    assert admin.count_keys(ws.metadata_key_prefix) == 0
    assert not ({rw.session.redis_user, ro.session.redis_user} & admin.users())
    assert not ({rw.session.redis_user, ro.session.redis_user} & stack["service"].storage.users())
    assert objects_under(stack, rw.storage.prefix) == []
    with pytest.raises((rex.ConnectionError, rex.AuthenticationError, rex.ResponseError)):
        live.get(ws.metadata_key_prefix + "setting")
    assert all(s.revoked_at for s in api.sessions.list("notes", include_revoked=True).sessions)
    assert api.workspaces.list().workspaces == []
    assert api.workspaces.delete("notes").status == "deleted"  # idempotent

    again, active2 = create_and_format(api, "notes", monkeypatch)  # the name is reusable
    assert again.workspace.id != ws.id and again.workspace.metadata_key_prefix != ws.metadata_key_prefix
    assert active2.status == "active" and again.storage.prefix != rw.storage.prefix
    assert len(api.workspaces.list(include_deleted=True).workspaces) == 2


def test_byo_workspace_never_sees_credentials_and_keeps_bucket_data(stack, api, monkeypatch):
    s3 = stack["s3"]
    monkeypatch.setenv("ARTIFACTS_S3_ACCESS_KEY_ID", s3.access_key)  # the host's own keys
    monkeypatch.setenv("ARTIFACTS_S3_SECRET_ACCESS_KEY", s3.secret_key)
    prefix = f"byo-{api.handle}"
    r, active = create_and_format(api, "Mine_1", monkeypatch, backend="byo", bucket=BUCKET,
                                  endpoint=s3.endpoint, region=s3.region, prefix=prefix)
    assert r.storage.credentials is None and active.storage.prefix == prefix
    grant = api.sessions.create("Mine_1", mode="ro")
    assert grant.storage.credentials is None and grant.storage.url == r.storage.url
    api.workspaces.delete("Mine_1")
    assert wait_deleted(api, "Mine_1").status == "deleted"
    assert objects_under(stack, prefix)  # "that's your data": BYO objects are kept


# -- resume, expiry, revocation --------------------------------------------------------------------


def test_an_interrupted_create_resumes_with_the_same_prefix(stack, api, monkeypatch):
    first = api.workspaces.create("half")
    with pytest.raises(E.WorkspaceExists) as e:
        api.workspaces.create("half")
    assert e.value.existing["status"] == "pending_format"
    assert e.value.existing["metadata_key_prefix"] == first.workspace.metadata_key_prefix
    resumed = api.workspaces.create("half", resume=True)
    assert resumed.resumed and resumed.workspace.id == first.workspace.id
    assert resumed.format.key_prefix == first.format.key_prefix and resumed.format.url != first.format.url
    with pytest.raises((rex.AuthenticationError, rex.ResponseError)):
        redis.Redis.from_url(first.format.url).ping()  # the old format credentials are dead
    s3_env(monkeypatch, resumed.storage.credentials)
    format_volume(resumed.format.url, resumed.storage.url, resumed.workspace.volume_name,
                  key_prefix=resumed.format.key_prefix, trash_days=0)
    assert api.workspaces.format_completed("half").status == "active"
    with pytest.raises(E.WorkspaceExists) as e:
        api.workspaces.create("half", resume=True)
    assert e.value.existing["status"] == "active"


def test_format_users_and_sessions_expire(stack, api, monkeypatch):
    svc: Service = stack["service"]
    r = api.workspaces.create("slow")
    stack["clock"].offset = 15 * 60 + 1  # the format user's 15 minutes are over
    assert svc.reap()["format_users"] >= 1
    assert r.format.user not in svc.redis.users() and r.format.user not in svc.storage.users()
    with pytest.raises((rex.AuthenticationError, rex.ResponseError)):
        redis.Redis.from_url(r.format.url).ping()
    stack["clock"].offset = 0.0
    create_and_format(api, "slow", monkeypatch, resume=True)
    grant = api.sessions.create("slow", mode="rw", ttl_seconds=120)
    renewed = api.sessions.renew("slow", grant.session.id, ttl_seconds=600)
    assert renewed.expires_at > grant.session.expires_at
    stack["clock"].offset = 300  # past the first TTL, not the renewed one
    svc.reap()
    assert grant.session.redis_user in svc.redis.users()
    stack["clock"].offset = 601
    svc.reap()
    assert grant.session.redis_user not in svc.redis.users()
    listed = api.sessions.list("slow", include_revoked=True).sessions
    assert [s.revoke_reason for s in listed] == ["expired"]


def test_revoking_a_session_cuts_redis_and_s3(stack, api, monkeypatch, tmp_path):
    import contextlib

    import botocore.session

    create_and_format(api, "cut", monkeypatch)
    grant = api.sessions.create("cut", mode="rw")
    s3_env(monkeypatch, grant.storage.credentials)
    vol = open_volume(grant.meta.url, grant.storage.url, key_prefix=grant.meta.key_prefix,
                      config=_config(tmp_path / "c"))
    vol.listdir("/")
    live = redis.Redis.from_url(grant.meta.url)
    assert live.get(grant.meta.key_prefix + "setting")
    c = grant.storage.credentials
    s3 = botocore.session.get_session().create_client(
        "s3", endpoint_url=grant.storage.endpoint, region_name="us-east-1", aws_access_key_id=c.access_key_id,
        aws_secret_access_key=c.secret_access_key)
    s3.put_object(Bucket=BUCKET, Key=f"{grant.storage.prefix}/probe", Body=b"x")
    assert api.sessions.revoke("cut", grant.session.id).revoked_at
    started = time.monotonic()
    with pytest.raises(PermissionError):  # the mount's next operation: EACCES
        vol.listdir("/")
    assert time.monotonic() - started < 5
    with contextlib.suppress(Exception):
        vol.close()
    with pytest.raises((rex.ConnectionError, rex.AuthenticationError, rex.ResponseError)):
        live.get(grant.meta.key_prefix + "setting")
    with pytest.raises(Exception, match=r"InvalidAccessKeyId|AccessDenied|Forbidden"):
        s3.get_object(Bucket=BUCKET, Key=f"{grant.storage.prefix}/probe")
    assert api.sessions.list("cut").sessions == []
    assert api.sessions.revoke("cut", grant.session.id).revoke_reason == "revoked"  # idempotent


def test_issued_sessions_are_confined_to_their_workspace_and_mode(stack, api, monkeypatch, tmp_path):
    """What the API hands out, used by a modified client: A's session cannot touch B's keys or
    objects; a read-only session cannot write through a volume opened read-write, nor raw."""
    import botocore.session

    a, _ = create_and_format(api, "iso-a", monkeypatch)
    b, _ = create_and_format(api, "iso-b", monkeypatch)
    pa, pb = a.format.key_prefix, b.format.key_prefix
    rw_a = api.sessions.create("iso-a", mode="rw")
    ra = redis.Redis.from_url(rw_a.meta.url)
    assert ra.get(pa + "setting")
    for cmd in (("GET", pb + "setting"), ("SET", pb + "setting", "x"), ("DEL", pb + "i1"),
                ("FCALL", "af_unlink", 1, pb + "setting", 1, "x", 0, "0"), ("EVAL", "return 1", 0),
                ("FUNCTION", "FLUSH")):
        with pytest.raises(rex.ResponseError, match=r"NOPERM|no permissions"):
            ra.execute_command(*cmd)
    c = rw_a.storage.credentials
    s3 = botocore.session.get_session().create_client(
        "s3", endpoint_url=rw_a.storage.endpoint, region_name="us-east-1", aws_access_key_id=c.access_key_id,
        aws_secret_access_key=c.secret_access_key)
    with pytest.raises(Exception, match=r"AccessDenied|Forbidden"):
        s3.list_objects_v2(Bucket=BUCKET, Prefix=b.storage.prefix + "/")
    ro = api.sessions.create("iso-a", mode="ro")
    with pytest.raises(rex.NoPermissionError):
        redis.Redis.from_url(ro.meta.url).set(pa + "setting", "x")
    s3_env(monkeypatch, ro.storage.credentials)
    vol = open_volume(ro.meta.url, ro.storage.url, key_prefix=ro.meta.key_prefix,
                      config=_config(tmp_path / "ro"))  # NOT read_only: the client does not help
    try:
        assert vol.listdir("/") is not None
        with pytest.raises(PermissionError):
            vol.mkdir("nope")
        with pytest.raises(PermissionError):
            with vol.open("nope.txt", "w") as f:
                f.write("x")
    finally:
        import contextlib

        with contextlib.suppress(Exception):
            vol.close()


def test_orphaned_users_are_reaped(stack):
    svc: Service = stack["service"]
    svc.redis.set_user("ms-orphan", "pw-orphan-0123456789", "{u_999_w_999}:", read_only=False)
    svc.storage.issue("ms-orphan", "ws999999", read_only=True, expires_at=0)
    assert svc.reap()["orphans"] >= 2
    assert "ms-orphan" not in svc.redis.users() and "ms-orphan" not in svc.storage.users()


# -- errors ----------------------------------------------------------------------------------------


def test_bad_input_gives_the_documented_codes(stack, api, monkeypatch):
    for bad in ("", "-x", "a b", "x" * 64, "ünï", "a/b"):
        with pytest.raises(E.InvalidRequest):
            api.workspaces.create(bad)
    with pytest.raises(E.InvalidRequest):
        api.workspaces.create("byo1", backend="byo")  # no bucket, no endpoint
    with pytest.raises(E.InvalidRequest):
        api.workspaces.create("byo2", backend="byo", bucket="b", endpoint="ftp://x")
    with pytest.raises(E.WorkspaceNotFound):
        api.workspaces.get("nope")
    with pytest.raises(E.WorkspaceNotFound):
        api.workspaces.delete("nope")
    with pytest.raises(E.WorkspaceNotFound):
        api.workspaces.get("no-such-handle/nope")
    other = Artifacts("", base_url=api.base_url).create_account(f"other{next(_handles)}", admin_token=ADMIN_TOKEN)
    with pytest.raises(E.Forbidden):
        api.workspaces.get(f"{other.account.handle}/x")
    api.workspaces.create("pending")
    with pytest.raises(E.SettingKeyMissing):
        api.workspaces.format_completed("pending")
    with pytest.raises(E.WorkspaceNotActive):
        api.sessions.create("pending")
    api.workspaces.delete("pending")
    wait_deleted(api, "pending")
    with pytest.raises(E.WorkspaceNotCompletable):
        api.workspaces.format_completed("pending")
    create_and_format(api, "ok", monkeypatch)
    with pytest.raises(E.InvalidRequest):
        api.sessions.create("ok", ttl_seconds=1)
    with pytest.raises(E.InvalidRequest):
        api.sessions.create("ok", mode="rx")
    with pytest.raises(E.SessionNotFound):
        api.sessions.revoke("ok", "nope")
    import json
    import urllib.request

    req = urllib.request.Request(api.base_url + "/workspaces", data=b"{not json", method="POST",
                                 headers={"Authorization": f"Bearer {api._api_key}"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req)
    assert e.value.code == 422 and b'"invalid_request"' in e.value.read()
    byo_with_keys = {"name": "leaky", "backend": "byo", "storage": {
        "bucket": "b", "endpoint": "http://127.0.0.1:1", "secret_access_key": "never-sent"}}
    req = urllib.request.Request(api.base_url + "/workspaces", data=json.dumps(byo_with_keys).encode(),
                                 method="POST", headers={"Authorization": f"Bearer {api._api_key}"})
    with pytest.raises(urllib.error.HTTPError) as e:  # BYO credentials are refused, not stored
        urllib.request.urlopen(req)
    body = e.value.read()
    assert e.value.code == 422 and b"never-sent" not in body
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(api.base_url + "/nowhere")
    assert e.value.code == 404 and b'"not_found"' in e.value.read()
    with pytest.raises(E.OrchestratorUnavailable):
        Artifacts(api._api_key, base_url="http://127.0.0.1:9").whoami()


def test_async_client(stack, api):
    async def main():
        async with AsyncArtifacts(api._api_key, base_url=api.base_url) as client:
            me = await client.whoami()
            listed = await client.workspaces.list()
            with pytest.raises(E.WorkspaceNotFound):
                await client.workspaces.get("missing")
            return me, listed
    me, listed = asyncio.run(main())
    assert me.account.handle == api.handle and listed.workspaces == []


def test_serve_command_runs_on_loopback_and_refuses_a_loose_config(stack, tmp_path):
    import json
    import os
    import subprocess
    import sys

    from artifacts_core.servers import free_port

    s3, port = stack["s3"], free_port()
    # Its own Redis: a separate process computes the library version from the Lua sources as
    # they are NOW and would replace the library the rest of this module loaded.
    own_redis, admin_url = start_redis(tmp_path / "redis")
    config = tmp_path / "orchestrator.json"
    config.write_text(json.dumps({
        "db": str(tmp_path / "serve.db"), "redis_url": admin_url, "port": port,
        "admin_token": ADMIN_TOKEN, "reap_interval": 5,
        "managed": {"endpoint": s3.endpoint, "bucket": BUCKET, "access_key": s3.access_key,
                    "secret_key": s3.secret_key}}))
    config.chmod(0o644)
    cmd = [sys.executable, "-m", "artifacts_orchestrator", "-v", "serve", "--config", str(config)]
    loose = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert loose.returncode != 0 and "chmod 600" in loose.stderr
    config.chmod(0o600)
    dead = tmp_path / "dead.json"
    dead.write_text(json.dumps({"db": str(tmp_path / "dead.db"), "redis_url": "redis://127.0.0.1:9/0"}))
    dead.chmod(0o600)
    down = subprocess.run([*cmd[:-1], str(dead)], capture_output=True, text=True, timeout=60)
    assert down.returncode == 1 and "error: cannot start the orchestrator" in down.stderr
    assert "Traceback" not in down.stderr
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == f"orchestrator listening on http://127.0.0.1:{port}"
        anon = Artifacts("", base_url=f"http://127.0.0.1:{port}")
        assert anon.health() == {"status": "ok"}
        new = anon.create_account("served", admin_token=ADMIN_TOKEN)
        api = Artifacts(new.key.key, base_url=anon.base_url)
        r = api.workspaces.create("w")
        secrets_shown = [new.key.key, r.format.url.split(":")[2].split("@")[0],
                         r.storage.credentials.secret_access_key]
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=60)
        own_redis.stop()
    assert proc.returncode == 0
    assert "POST /workspaces" in err  # the access log is on (and -v was given) ...
    for secret in secrets_shown:  # ... yet no secret reached the log
        assert secret not in err
    assert os.stat(tmp_path / "serve.db").st_mode & 0o777 == 0o600


def test_redis_restart_keeps_sessions_and_the_orchestrator_recovers(stack, api, monkeypatch, tmp_path):
    """Runs last in this module: restarts the stack's Redis on the same port, directory and ACL
    file. Users and data come back (ACL file, AOF); the orchestrator reconnects by itself."""
    create_and_format(api, "durable", monkeypatch)
    grant = api.sessions.create("durable", mode="rw")
    s3_env(monkeypatch, grant.storage.credentials)
    with open_volume(grant.meta.url, grant.storage.url, key_prefix=grant.meta.key_prefix,
                     config=_config(tmp_path / "c1")) as vol:
        _write(vol, "kept.txt")
    rserver = stack["redis"]
    port, workdir = rserver.port, rserver.workdir
    rserver.stop()
    with pytest.raises(E.MetadataAclProvisioningFailed):  # Redis down: a clear 500, nothing half-made
        api.sessions.create("durable", mode="rw")
    assert [s.id for s in api.sessions.list("durable").sessions] == [grant.session.id]
    stack["redis"], _ = start_redis(workdir, port=port)
    with open_volume(grant.meta.url, grant.storage.url, key_prefix=grant.meta.key_prefix,
                     config=_config(tmp_path / "c2")) as vol:
        with vol.open("kept.txt") as f:
            assert f.read() == "survives"
    second = api.sessions.create("durable", mode="ro")  # the orchestrator reconnected
    assert second.session.redis_user in stack["service"].redis.users()


def _write(vol, path: str) -> None:
    with vol.open(path, "w") as f:
        f.write("survives")


@pytest.mark.parametrize("route", ["/workspaces", "/tenants", "/grants", "/mount-tickets", "/mount-tickets/exchange",
                                   "/admin/accounts", "/keys"])
def test_a_deeply_nested_body_is_a_client_error(stack, api, route):
    """A 30,000-deep JSON body used to answer 500 (RecursionError in the decoder); every route
    answers ``invalid_request`` (422, as every malformed body) and keeps serving."""
    import urllib.request

    depth = 30_000  # 60 kB of brackets: under the 64 KiB body limit
    deep = b"[" * depth + b"]" * depth
    for body in (deep, b'{"slug": "x", "name": "x", "metadata": {"a": ' + deep + b"}}",
                 b'{"mount_ticket": {"format": ' + deep + b"}}", b'{"name": "x", "storage": {"bucket": ' + deep + b"}}"):
        req = urllib.request.Request(api.base_url + route, data=body, method="POST",
                                     headers={"Authorization": f"Bearer {api._api_key}"})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req)
        assert e.value.code in (401, 413, 422), (route, e.value.code)
        if e.value.code == 422:
            assert b'"invalid_request"' in e.value.read()
    assert api.whoami().account.handle == api.handle
