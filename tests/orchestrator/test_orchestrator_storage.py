"""Managed-storage isolation on the real SeaweedFS with its IAM API (explicit admin identity).

Proves what the scoped credentials actually enforce there: a workspace's keys reach only
``<bucket>/<prefix>/`` — ``ws1`` never ``ws10/`` nor a ``ws1x`` sibling, and vice versa; read-only
keys read and list but never write or delete (also through the core's object-store layer);
revocation kills every key of the user, including one it minted for itself.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import botocore.session
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from artifacts_core.errors import PermissionDenied
from artifacts_core.objects.url import store_from_url
from artifacts_orchestrator.local import start_s3
from artifacts_orchestrator.storage import SeaweedIAMStorage, scope_policy

pytestmark = pytest.mark.s3

BUCKET = "artifacts-managed"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    server = start_s3(tmp_path_factory.mktemp("iso-s3"), bucket=BUCKET)
    yield server
    server.stop()


@pytest.fixture
def storage(s3) -> SeaweedIAMStorage:
    return SeaweedIAMStorage(endpoint=s3.endpoint, bucket=BUCKET, access_key=s3.access_key,
                             secret_key=s3.secret_key, region=s3.region, root=f"iso{uuid.uuid4().hex[:6]}")


def client(s3, service: str, ak: str, sk: str):
    return botocore.session.get_session().create_client(
        service, endpoint_url=s3.endpoint, region_name=s3.region, aws_access_key_id=ak,
        aws_secret_access_key=sk, config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))


def allowed(op) -> bool:
    try:
        reply = op()
    except ClientError as e:
        assert e.response["Error"]["Code"] in ("AccessDenied", "403", "Forbidden", "InvalidAccessKeyId"), e
        return False
    return not (isinstance(reply, dict) and reply.get("Errors"))  # DeleteObjects reports per key


def test_policies_are_allow_only_with_the_trailing_slash():
    policy = scope_policy("b", "ws1", read_only=False)
    assert {s["Effect"] for s in policy["Statement"]} == {"Allow"}
    assert policy["Statement"][0]["Resource"] == ["arn:aws:s3:::b/ws1/*"]
    assert policy["Statement"][1]["Condition"] == {"StringLike": {"s3:prefix": ["ws1/*"]}}
    assert "s3:PutObject" not in json.dumps(scope_policy("b", "ws1", read_only=True))


def test_ws1_and_ws10_cannot_reach_each_other(s3, storage):
    p1, p10 = storage.prefix_for(1), storage.prefix_for(10)
    sibling = p1 + "x/obj"  # "<root>ws1x/obj": shares the first characters, not the prefix
    admin = client(s3, "s3", s3.access_key, s3.secret_key)
    for key in (f"{p1}/a", f"{p10}/a", sibling):
        admin.put_object(Bucket=BUCKET, Key=key, Body=key.encode())
    k1 = storage.issue("ms-iso1", p1, read_only=False, expires_at=0)
    k10 = storage.issue("ms-iso10", p10, read_only=False, expires_at=0)
    try:
        for mine, other, k in ((p1, p10, k1), (p10, p1, k10)):
            c = client(s3, "s3", k.access_key_id, k.secret_access_key)
            assert allowed(lambda c=c, mine=mine: c.get_object(Bucket=BUCKET, Key=f"{mine}/a"))
            assert allowed(lambda c=c, mine=mine: c.put_object(Bucket=BUCKET, Key=f"{mine}/b", Body=b"b"))
            assert allowed(lambda c=c, mine=mine: c.list_objects_v2(Bucket=BUCKET, Prefix=f"{mine}/"))
            assert allowed(lambda c=c, mine=mine: c.delete_object(Bucket=BUCKET, Key=f"{mine}/b"))
            assert not allowed(lambda c=c, other=other: c.get_object(Bucket=BUCKET, Key=f"{other}/a"))
            assert not allowed(lambda c=c, other=other: c.head_object(Bucket=BUCKET, Key=f"{other}/a"))
            assert not allowed(lambda c=c, other=other: c.put_object(Bucket=BUCKET, Key=f"{other}/z", Body=b"z"))
            assert not allowed(lambda c=c, other=other: c.delete_object(Bucket=BUCKET, Key=f"{other}/a"))
            assert not allowed(lambda c=c, other=other: c.delete_objects(
                Bucket=BUCKET, Delete={"Objects": [{"Key": f"{other}/a"}]}))
            assert not allowed(lambda c=c, other=other: c.list_objects_v2(Bucket=BUCKET, Prefix=f"{other}/"))
            assert not allowed(lambda c=c: c.list_objects_v2(Bucket=BUCKET, Prefix=p1))  # would show ws10
            assert not allowed(lambda c=c: c.list_objects_v2(Bucket=BUCKET))
            assert not allowed(lambda c=c: c.get_object(Bucket=BUCKET, Key=sibling))
            assert not allowed(lambda c=c: c.create_bucket(Bucket=f"evil{uuid.uuid4().hex[:6]}"))
        import urllib.error
        import urllib.request

        with pytest.raises(urllib.error.HTTPError) as anon:  # identities configured: no anonymous access
            urllib.request.urlopen(f"{s3.endpoint}/{BUCKET}/{p1}/a")
        assert anon.value.code == 403
        for key in (f"{p1}/a", f"{p10}/a", sibling):  # nothing of the other side was touched
            assert admin.get_object(Bucket=BUCKET, Key=key)["Body"].read() == key.encode()
    finally:
        storage.revoke("ms-iso1")
        storage.revoke("ms-iso10")


def test_read_only_credentials_read_and_list_only(s3, storage, monkeypatch):
    p = storage.prefix_for(2)
    admin = client(s3, "s3", s3.access_key, s3.secret_key)
    admin.put_object(Bucket=BUCKET, Key=f"{p}/vol/a", Body=b"data")
    ro = storage.issue("ms-isoro", p, read_only=True, expires_at=0)
    try:
        c = client(s3, "s3", ro.access_key_id, ro.secret_access_key)
        assert allowed(lambda: c.get_object(Bucket=BUCKET, Key=f"{p}/vol/a"))
        assert allowed(lambda: c.list_objects_v2(Bucket=BUCKET, Prefix=f"{p}/vol/"))
        assert not allowed(lambda: c.put_object(Bucket=BUCKET, Key=f"{p}/vol/b", Body=b"b"))
        assert not allowed(lambda: c.delete_object(Bucket=BUCKET, Key=f"{p}/vol/a"))
        assert not allowed(lambda: c.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": f"{p}/vol/a"}]}))
        assert not allowed(lambda: c.create_multipart_upload(Bucket=BUCKET, Key=f"{p}/vol/m"))

        async def through_the_core():  # what a mount's object store sees
            url = storage.storage_url(p) + ""
            store = store_from_url(url.replace(f"/{p}", f"/{p}/vol"), access_key=ro.access_key_id,
                                   secret_key=ro.secret_access_key)
            try:
                assert await store.get("a") == b"data"
                with pytest.raises(PermissionDenied):
                    await store.put("b", b"x")
            finally:
                await store.close()
        asyncio.run(through_the_core())
    finally:
        storage.revoke("ms-isoro")


def test_revocation_kills_every_key_including_self_minted_ones(s3, storage):
    p = storage.prefix_for(3)
    k = storage.issue("ms-isorev", p, read_only=False, expires_at=0)
    # Found by experiment: SeaweedFS lets any identity mint more keys for itself through IAM.
    extra = client(s3, "iam", k.access_key_id, k.secret_access_key).create_access_key(
        UserName="ms-isorev")["AccessKey"]
    for ak, sk in ((k.access_key_id, k.secret_access_key), (extra["AccessKeyId"], extra["SecretAccessKey"])):
        c = client(s3, "s3", ak, sk)
        assert allowed(lambda c=c: c.put_object(Bucket=BUCKET, Key=f"{p}/x", Body=b"x"))
    assert "ms-isorev" in storage.users()
    storage.revoke("ms-isorev")
    storage.revoke("ms-isorev")  # idempotent
    assert "ms-isorev" not in storage.users()
    for ak, sk in ((k.access_key_id, k.secret_access_key), (extra["AccessKeyId"], extra["SecretAccessKey"])):
        c = client(s3, "s3", ak, sk)
        assert not allowed(lambda c=c: c.get_object(Bucket=BUCKET, Key=f"{p}/x"))


def test_reissue_replaces_the_old_key_and_delete_prefix_empties_it(s3, storage):
    p = storage.prefix_for(4)
    old = storage.issue("fmt-iso4", p, read_only=False, expires_at=0)
    new = storage.issue("fmt-iso4", p, read_only=False, expires_at=0)
    c_old = client(s3, "s3", old.access_key_id, old.secret_access_key)
    c_new = client(s3, "s3", new.access_key_id, new.secret_access_key)
    assert not allowed(lambda: c_old.get_object(Bucket=BUCKET, Key=f"{p}/x"))
    for i in range(5):
        c_new.put_object(Bucket=BUCKET, Key=f"{p}/vol/chunks/{i}", Body=b"x")
    assert storage.delete_prefix(p) == 5
    admin = client(s3, "s3", s3.access_key, s3.secret_key)
    assert admin.list_objects_v2(Bucket=BUCKET, Prefix=f"{p}/").get("KeyCount", 0) == 0
    storage.revoke("fmt-iso4")
