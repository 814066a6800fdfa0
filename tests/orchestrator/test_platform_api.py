"""The platform layer over real HTTP on loopback, a real Redis (ACL file) and SeaweedFS IAM:
tenants, grants, signed single-use mount tickets and their exchange, revocation (sessions killed in
Redis and S3), grant expiry by the reaper, workspace deletion, key rotation, and the error codes.
Volumes are opened with what an exchange returns (``open_volume``); the FUSE mount in a separate
runtime process is tests/test_platform_mount.py.
"""


from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import threading
import time

import msgspec
import pytest
import redis
import redis.exceptions as rex
from orchestrator_stack import (  # the orchestrator's own fixtures: one real stack per module
    _config,
    _reset_clock,  # noqa: F401 - autouse fixture
    create_and_format,
    s3_env,
    wait_deleted,
)

from artifacts_core.volume import open_volume
from artifacts_orchestrator import errors as E
from artifacts_orchestrator.client import Artifacts, AsyncArtifacts
from artifacts_orchestrator.tickets import MAX_TICKET_TTL, ROTATION_GRACE

pytestmark = [pytest.mark.redis, pytest.mark.s3]


def ticket_dict(issued) -> dict:
    return msgspec.to_builtins(issued.mount_ticket)


def runtime(api: Artifacts) -> Artifacts:
    """What a runtime holds: the orchestrator's address and nothing else."""
    return Artifacts("", base_url=api.base_url)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(ticket: dict) -> dict:
    text = ticket["claims"]
    return json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))


# -- tenants and grants ----------------------------------------------------------------------------


def test_tenants_are_per_account_and_a_taken_slug_conflicts(stack, api):
    t = api.platform.create_tenant("acme", external_id="cus_42", metadata={"plan": "pro"})
    assert (t.slug, t.external_id, t.metadata) == ("acme", "cus_42", {"plan": "pro"})
    with pytest.raises(E.TenantExists):
        api.platform.create_tenant("acme")
    for bad in ("Acme", "-acme", "", "a" * 64, "acme_1", "ac me"):
        with pytest.raises(E.InvalidRequest):
            api.platform.create_tenant(bad)
    api.platform.create_tenant("beta")
    assert [x.slug for x in api.platform.list_tenants().tenants] == ["acme", "beta"]
    assert api.platform.get_tenant("acme").metadata == {"plan": "pro"}
    with pytest.raises(E.TenantNotFound):
        api.platform.get_tenant("nope")
    other = _other_account(stack)
    assert other.platform.list_tenants().tenants == []
    with pytest.raises(E.TenantNotFound):
        other.platform.get_tenant("acme")
    assert other.platform.create_tenant("acme").slug == "acme"  # slugs are per account
    with pytest.raises(E.Unauthorized):
        runtime(api).platform.list_tenants()


def _other_account(stack) -> Artifacts:
    from orchestrator_stack import ADMIN_TOKEN, _handles

    new = Artifacts("", base_url=stack["server"].url).create_account(f"acct{next(_handles)}",
                                                                     admin_token=ADMIN_TOKEN)
    return Artifacts(new.key.key, base_url=stack["server"].url)


def test_grants_tenant_wide_and_runtime_scoped_and_owned(stack, api, monkeypatch):
    create_and_format(api, "shared", monkeypatch)
    wide = api.platform.create_access_grant("shared", tenant_slug="acme", mode="ro")  # makes the tenant
    one = api.platform.create_access_grant(f"{api.handle}/shared", tenant_slug="acme", runtime_id="task-1",
                                           mode="rw", ttl_seconds=3600)
    assert wide.runtime_id is None and wide.mode == "ro" and wide.expires_at is None
    assert one.runtime_id == "task-1" and one.expires_at and one.status == "active"
    assert one.workspace == f"artifacts://{api.handle}/shared" and one.tenant == "acme"
    assert {g.id for g in api.platform.list_access_grants(tenant_slug="acme").grants} == {wide.id, one.id}
    assert [g.id for g in api.platform.list_access_grants(runtime_id="task-1").grants] == [one.id]
    assert api.platform.get_access_grant(one.id).id == one.id
    with pytest.raises(E.InvalidRequest):
        api.platform.create_access_grant("shared", tenant_slug="acme", ttl_seconds=5)
    with pytest.raises(E.InvalidRequest):
        api.platform.create_access_grant("shared", tenant_slug="acme", runtime_id="bad id")
    with pytest.raises(E.WorkspaceNotFound):
        api.platform.create_access_grant("missing", tenant_slug="acme")
    other = _other_account(stack)
    with pytest.raises(E.GrantNotFound):
        other.platform.get_access_grant(one.id)
    with pytest.raises(E.GrantNotFound):
        other.platform.revoke_access_grants(grant_id=one.id)
    with pytest.raises(E.Forbidden):  # another account's workspace
        other.platform.create_access_grant(f"{api.handle}/shared", tenant_slug="acme")
    with pytest.raises(E.Forbidden):
        other.platform.create_mount_ticket("acme", "t", workspace=f"{api.handle}/shared", ttl_seconds=60)
    done = api.platform.revoke_access_grants(grant_id=one.id)
    assert [g.status for g in done.grants] == ["revoked"]
    assert [g.id for g in api.platform.list_access_grants().grants] == [wide.id]
    assert len(api.platform.list_access_grants(include_revoked=True).grants) == 2


# -- tickets ---------------------------------------------------------------------------------------


def test_one_shot_ticket_exchange_is_single_use_and_records_the_chain(stack, api, monkeypatch, tmp_path):
    create_and_format(api, "task-4711", monkeypatch)
    issued = api.platform.create_mount_ticket("acme", "task-4711", workspace=f"{api.handle}/task-4711",
                                              mode="rw", ttl_seconds=3600)
    t = ticket_dict(issued)
    assert set(t) == {"format", "kid", "claims", "signature"}
    claims = _claims(t)
    assert claims["workspace"]["ref"] == f"{api.handle}/task-4711" and claims["mode"] == "rw"
    assert claims["tenant"] == "acme" and claims["runtime_id"] == "task-4711" and claims["iss"] == api.base_url
    assert 3599 < claims["exp"] - claims["iat"] <= 3600 and claims["jti"] == issued.ticket_id
    assert api._api_key not in json.dumps(t)  # nothing of the platform's key inside
    assert issued.grant.runtime_id == "task-4711" and issued.tenant.slug == "acme"  # both auto-created
    again = api.platform.create_mount_ticket("acme", "task-4711", workspace="task-4711", ttl_seconds=60)
    assert again.grant.id == issued.grant.id  # the grant is reused, not duplicated

    got = runtime(api).platform.exchange_mount_ticket(t, workspace=f"{api.handle}/task-4711", host="vm1")
    assert got.mount.session.mode == "rw" and got.grant_id == issued.grant.id and got.tenant == "acme"
    row = stack["service"].store.get_session(got.mount.session.id)
    assert (row.runtime_id, row.grant_id, row.ticket_id) == ("task-4711", issued.grant.id, issued.ticket_id)
    assert row.tenant_id == issued.tenant.id and row.host == "vm1"
    s3_env(monkeypatch, got.mount.storage.credentials)
    with open_volume(got.mount.meta.url, got.mount.storage.url, key_prefix=got.mount.meta.key_prefix,
                     config=_config(tmp_path / "c")) as vol:
        with vol.open("out.txt", "w") as f:
            f.write("hello")
    with pytest.raises(E.TicketUsed):
        runtime(api).platform.exchange_mount_ticket(t)


def test_ticket_ttl_is_required_and_bounded_and_mode_cannot_exceed_the_grant(stack, api, monkeypatch):
    create_and_format(api, "bounds", monkeypatch)
    for ttl in (None, 0, 59, MAX_TICKET_TTL + 1):
        with pytest.raises(E.InvalidRequest, match="ttl_seconds"):
            api._send(_ticket_call("acme", "r1", "bounds", "rw", ttl))
    api.platform.create_access_grant("bounds", tenant_slug="acme", runtime_id="r1", mode="ro")
    with pytest.raises(E.Forbidden, match="exceeds"):
        api.platform.create_mount_ticket("acme", "r1", workspace="bounds", mode="rw", ttl_seconds=60)
    ro = api.platform.create_mount_ticket("acme", "r1", workspace="bounds", mode="ro", ttl_seconds=60)
    assert ro.grant.mode == "ro"
    with pytest.raises(E.InvalidRequest):
        api.platform.create_mount_ticket("Bad_Slug", "r1", workspace="bounds", ttl_seconds=60)


def _ticket_call(tenant, rt, ws, mode, ttl):
    from artifacts_orchestrator import platform_models as pm
    from artifacts_orchestrator.client import _Call

    return _Call("POST", "/mount-tickets", {"tenant_slug": tenant, "runtime_id": rt, "workspace": ws,
                                            "mode": mode, "ttl_seconds": ttl}, pm.TicketIssued)


def test_tampered_forged_expired_and_misdirected_tickets_are_refused(stack, api, monkeypatch):
    create_and_format(api, "mine", monkeypatch)
    create_and_format(api, "theirs", monkeypatch)
    rt = runtime(api)
    good = ticket_dict(api.platform.create_mount_ticket("acme", "r1", workspace="mine", ttl_seconds=600))

    claims = _claims(good)
    other_ws = api.workspaces.get("theirs")
    claims["workspace"] = {"id": other_ws.id, "ref": f"{api.handle}/theirs"}  # point it elsewhere
    tampered = dict(good, claims=_b64(json.dumps(claims).encode()))
    upgraded = dict(good, claims=_b64(json.dumps(dict(_claims(good), mode="rw", exp=time.time() + 9e6)).encode()))
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    msg = f"{good['format']}.{good['kid']}.{tampered['claims']}".encode()
    forged = dict(tampered, signature=_b64(Ed25519PrivateKey.generate().sign(msg)))
    for bad in (tampered, upgraded, forged, dict(good, kid="20200101T000000Z-00000000"), dict(good, format="x"),
                {"claims": good["claims"]}, dict(good, signature="!!")):
        with pytest.raises(E.TicketInvalid):
            rt.platform.exchange_mount_ticket(bad)
    with pytest.raises(E.Forbidden, match="is for"):  # the runtime asks for another workspace
        rt.platform.exchange_mount_ticket(good, workspace=f"{api.handle}/theirs")
    assert rt.platform.exchange_mount_ticket(good, workspace="mine").workspace == f"{api.handle}/mine"

    short = ticket_dict(api.platform.create_mount_ticket("acme", "r2", workspace="mine", ttl_seconds=60))
    stack["clock"].offset = 61
    with pytest.raises(E.TicketExpired):
        rt.platform.exchange_mount_ticket(short)


def test_a_ticket_is_exchanged_once_however_many_runtimes_race(stack, api, monkeypatch):
    create_and_format(api, "race", monkeypatch)
    t = ticket_dict(api.platform.create_mount_ticket("acme", "r1", workspace="race", ttl_seconds=600))
    results: list[object] = []
    barrier = threading.Barrier(8)

    def go():
        barrier.wait()
        try:
            results.append(runtime(api).platform.exchange_mount_ticket(t))
        except E.ApiError as e:
            results.append(e)

    threads = [threading.Thread(target=go) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sum(not isinstance(r, E.ApiError) for r in results) == 1
    assert sorted({type(r).__name__ for r in results if isinstance(r, E.ApiError)}) == ["TicketUsed"]
    assert len(api.sessions.list("race").sessions) == 1


# -- revocation ------------------------------------------------------------------------------------


def _exchange_and_open(api, tenant, rt_id, ws, mode, monkeypatch, cache):
    t = ticket_dict(api.platform.create_mount_ticket(tenant, rt_id, workspace=ws, mode=mode, ttl_seconds=600))
    got = runtime(api).platform.exchange_mount_ticket(t)
    s3_env(monkeypatch, got.mount.storage.credentials)
    vol = open_volume(got.mount.meta.url, got.mount.storage.url, key_prefix=got.mount.meta.key_prefix,
                      config=_config(cache), read_only=mode == "ro")
    vol.listdir("/")
    return got, vol


def _close(vol):
    with contextlib.suppress(Exception):
        vol.close()


def test_revoking_a_runtime_kills_its_sessions_in_redis_and_s3_and_its_tickets(stack, api, monkeypatch, tmp_path):
    import botocore.session

    create_and_format(api, "rev", monkeypatch)
    got, vol = _exchange_and_open(api, "acme", "r1", "rev", "rw", monkeypatch, tmp_path / "a")
    _, bystander = _exchange_and_open(api, "acme", "r2", "rev", "rw", monkeypatch, tmp_path / "b")
    pending = ticket_dict(api.platform.create_mount_ticket("acme", "r1", workspace="rev", ttl_seconds=600))
    c = got.mount.storage.credentials
    s3 = botocore.session.get_session().create_client(
        "s3", endpoint_url=got.mount.storage.endpoint, region_name="us-east-1", aws_access_key_id=c.access_key_id,
        aws_secret_access_key=c.secret_access_key)
    s3.put_object(Bucket="artifacts-managed", Key=f"{got.mount.storage.prefix}/probe", Body=b"x")

    done = api.platform.revoke_access_grants({"tenantSlug": "acme", "runtimeId": "r1"})
    revoked_at = time.monotonic()
    assert done.sessions_revoked == 1 and done.tickets_voided == 1 and len(done.grants) == 1
    with pytest.raises(PermissionError):
        vol.listdir("/")
    assert time.monotonic() - revoked_at < 3  # three times the target of about a second
    with pytest.raises(Exception, match=r"InvalidAccessKeyId|AccessDenied|Forbidden"):
        s3.get_object(Bucket="artifacts-managed", Key=f"{got.mount.storage.prefix}/probe")
    with pytest.raises(E.GrantRevoked):
        runtime(api).platform.exchange_mount_ticket(pending)
    assert bystander.listdir("/") is not None  # the other runtime is untouched
    assert stack["service"].store.get_session(got.mount.session.id).revoke_reason == "grant revoked"

    api.platform.revoke_access_grants(tenant_slug="acme")  # the whole tenant
    with pytest.raises(PermissionError):
        bystander.listdir("/")
    assert api.sessions.list("rev").sessions == []
    assert api.platform.list_access_grants(tenant_slug="acme").grants == []
    _close(vol)
    _close(bystander)


def test_ro_ticket_sessions_cannot_write_even_through_a_read_write_client(stack, api, monkeypatch, tmp_path):
    create_and_format(api, "ro", monkeypatch)
    t = ticket_dict(api.platform.create_mount_ticket("acme", "reader", workspace="ro", mode="ro", ttl_seconds=600))
    got = runtime(api).platform.exchange_mount_ticket(t)
    assert got.mount.session.mode == "ro"
    with pytest.raises(rex.NoPermissionError):
        redis.Redis.from_url(got.mount.meta.url).set(got.mount.meta.key_prefix + "setting", "x")
    s3_env(monkeypatch, got.mount.storage.credentials)
    vol = open_volume(got.mount.meta.url, got.mount.storage.url, key_prefix=got.mount.meta.key_prefix,
                      config=_config(tmp_path / "c"))  # NOT read_only: Redis refuses anyway
    try:
        with pytest.raises(PermissionError):
            vol.mkdir("nope")
    finally:
        _close(vol)
    ro_only = ticket_dict(api.platform.create_mount_ticket("acme", "reader", workspace="ro", mode="ro",
                                                           ttl_seconds=600))
    with pytest.raises(E.Forbidden, match="allows ro only"):
        runtime(api).platform.exchange_mount_ticket(ro_only, mode="rw")
    rw = ticket_dict(api.platform.create_mount_ticket("acme", "writer", workspace="ro", ttl_seconds=600))
    narrowed = runtime(api).platform.exchange_mount_ticket(rw, mode="ro")  # a runtime may ask for less
    assert narrowed.mount.session.mode == "ro"
    with pytest.raises(rex.NoPermissionError):
        redis.Redis.from_url(narrowed.mount.meta.url).set(narrowed.mount.meta.key_prefix + "setting", "x")


def test_grant_ttl_expiry_by_the_reaper_and_workspace_delete_revoke_everything(stack, api, monkeypatch, tmp_path):
    create_and_format(api, "ttl", monkeypatch)
    grant = api.platform.create_access_grant("ttl", tenant_slug="acme", mode="rw", ttl_seconds=120)
    issued = api.platform.create_mount_ticket("acme", "r1", workspace="ttl", ttl_seconds=3600)
    assert issued.grant.id == grant.id and issued.expires_at <= grant.expires_at  # never outlives its grant
    got, vol = _exchange_and_open(api, "acme", "r2", "ttl", "rw", monkeypatch, tmp_path / "a")
    assert got.mount.session.expires_at <= grant.expires_at
    stack["clock"].offset = 121
    done = stack["service"].reap()
    assert done["grants_expired"] == 1
    with pytest.raises(PermissionError):
        vol.listdir("/")
    _close(vol)
    assert api.platform.get_access_grant(grant.id).status == "expired"
    stack["clock"].offset = 0

    create_and_format(api, "gone", monkeypatch)
    got, vol = _exchange_and_open(api, "acme", "r3", "gone", "rw", monkeypatch, tmp_path / "b")
    pending = ticket_dict(api.platform.create_mount_ticket("acme", "r4", workspace="gone", ttl_seconds=600))
    api.workspaces.delete("gone")
    wait_deleted(api, "gone")
    with pytest.raises(PermissionError):
        vol.listdir("/")
    _close(vol)
    with pytest.raises((E.GrantRevoked, E.WorkspaceNotActive)):
        runtime(api).platform.exchange_mount_ticket(pending)
    assert all(g.status == "revoked" for g in api.platform.list_access_grants(include_revoked=True).grants
               if g.workspace.endswith("/gone"))


def test_the_reaper_finishes_a_revocation_cut_short(stack, api, monkeypatch, tmp_path):
    create_and_format(api, "short", monkeypatch)
    got, vol = _exchange_and_open(api, "acme", "r1", "short", "rw", monkeypatch, tmp_path / "a")
    platform = stack["platform"]
    account_id = api.whoami().account.id
    # The rows were marked, then Redis failed before the sessions were killed:
    platform.store.revoke_grants(account_id, time.time(), "revoked", id=got.grant_id)
    assert vol.listdir("/") is not None  # still alive
    assert stack["service"].reap()["grant_sessions"] == 1
    with pytest.raises(PermissionError):
        vol.listdir("/")
    _close(vol)
    assert stack["service"].reap()["grant_sessions"] == 0


# -- keys ------------------------------------------------------------------------------------------


def test_signing_keys_rotate_and_old_tickets_verify_until_retired(stack, api, monkeypatch):
    create_and_format(api, "rot", monkeypatch)
    keys = stack["platform"].keys
    old = ticket_dict(api.platform.create_mount_ticket("acme", "r1", workspace="rot", ttl_seconds=600))
    late = ticket_dict(api.platform.create_mount_ticket("acme", "r2", workspace="rot", ttl_seconds=600))
    new_kid = keys.rotate()
    fresh = ticket_dict(api.platform.create_mount_ticket("acme", "r3", workspace="rot", ttl_seconds=600))
    assert fresh["kid"] == new_kid != old["kid"]
    published = {k.kid: k for k in runtime(api).platform.public_keys().keys}
    assert set(published) >= {old["kid"], new_kid} and published[new_kid].retires_at is None
    assert published[old["kid"]].retires_at is not None
    runtime(api).platform.exchange_mount_ticket(old)  # still verifies after the rotation
    runtime(api).platform.exchange_mount_ticket(fresh)
    stack["clock"].offset = MAX_TICKET_TTL + ROTATION_GRACE + 5
    assert old["kid"] in keys.prune() and old["kid"] not in {k.kid for k in keys.public_keys()}
    with pytest.raises(E.TicketInvalid, match="unknown or retired"):
        runtime(api).platform.exchange_mount_ticket(late)


def test_async_platform_client(stack, api, monkeypatch):
    create_and_format(api, "asy", monkeypatch)

    async def main():
        async with AsyncArtifacts(api._api_key, base_url=api.base_url) as a:
            t = await a.platform.create_tenant("async-co", metadata={"k": 1})
            issued = await a.platform.create_mount_ticket("async-co", "r1", workspace="asy", ttl_seconds=60)
            got = await a.platform.exchange_mount_ticket(issued.mount_ticket)
            listed = await a.platform.list_access_grants(tenant_slug="async-co")
            done = await a.platform.revoke_access_grants(tenant_slug="async-co", runtime_id="r1")
            with pytest.raises(E.TicketUsed):
                await a.platform.exchange_mount_ticket(issued.mount_ticket)
            return t, got, listed, done

    t, got, listed, done = asyncio.run(main())
    assert t.metadata == {"k": 1} and got.runtime_id == "r1" and len(listed.grants) == 1
    assert done.sessions_revoked == 1


def test_rotate_ticket_key_command(tmp_path, capsys):
    from artifacts_orchestrator.__main__ import main
    from artifacts_orchestrator.tickets import KeyRing

    cfg = tmp_path / "orchestrator.json"
    cfg.write_text(json.dumps({"db": str(tmp_path / "db" / "orchestrator.db"), "redis_url": "redis://unused"}))
    cfg.chmod(0o600)
    assert main(["rotate-ticket-key", "--config", str(cfg)]) == 0
    first = capsys.readouterr().out.strip()
    assert main(["rotate-ticket-key", "--config", str(cfg), "--prune"]) == 0
    second = capsys.readouterr().out.strip()
    keys = tmp_path / "db" / "ticket-keys"
    assert second > first and sorted(p.stem for p in keys.glob("*.pem")) == [first, second]
    assert (keys.stat().st_mode & 0o777) == 0o700
    assert all((p.stat().st_mode & 0o777) == 0o600 for p in keys.glob("*.pem"))
    assert [k.kid for k in KeyRing(keys).public_keys()] == [first, second]
