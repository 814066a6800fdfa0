"""The orchestrator's real stack for tests: a real Redis (AOF, ACL file), a real SeaweedFS with its
IAM API, the orchestrator over HTTP on loopback with a movable clock, and the helpers its tests
share. A module that imports ``stack`` gets its own stack (the fixture is module-scoped).
"""

from __future__ import annotations

import time

import pytest

from artifacts_core.volume import format_volume
from artifacts_orchestrator.agents import AgentService
from artifacts_orchestrator.app import OrchestratorServer
from artifacts_orchestrator.client import Artifacts, wait_for_status
from artifacts_orchestrator.local import start_redis, start_s3
from artifacts_orchestrator.platform_service import PlatformService
from artifacts_orchestrator.redis_acl import RedisAdmin
from artifacts_orchestrator.sealing import SecretBox
from artifacts_orchestrator.service import Service
from artifacts_orchestrator.storage import SeaweedIAMStorage
from artifacts_orchestrator.store import SQLiteStore
from artifacts_orchestrator.tickets import KeyRing

BUCKET = "artifacts-managed"
ADMIN_TOKEN = "admin-token-for-tests-only-0123456789"


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def start_stack(base, clock) -> dict:
    """Redis, SeaweedFS and the orchestrator (with its platform layer) under ``base``, on ``clock``;
    ``stop_stack`` stops them. The ``stack`` fixture's, for modules that need another clock."""
    rserver, admin_url = start_redis(base / "redis")
    s3 = start_s3(base / "s3", bucket=BUCKET)
    redis_admin = RedisAdmin(admin_url)
    redis_admin.prepare()
    storage = SeaweedIAMStorage(endpoint=s3.endpoint, bucket=BUCKET, access_key=s3.access_key,
                                secret_key=s3.secret_key, region=s3.region)
    service = Service(SQLiteStore(base / "db" / "orchestrator.db"), redis_admin, storage, clock=clock)
    platform = PlatformService(service, KeyRing(base / "db" / "ticket-keys", clock=clock))
    agents = AgentService(service, SecretBox(base / "db" / "agent-secrets.key"))
    server = OrchestratorServer(service, platform=platform, agents=agents, admin_token=ADMIN_TOKEN,
                                reap_interval=None).start()
    return {"server": server, "service": service, "platform": platform, "agents": agents, "clock": clock, "s3": s3,
            "redis": rserver, "admin_url": admin_url, "db": base / "db" / "orchestrator.db"}


def stop_stack(state: dict) -> None:
    state["server"].stop()
    state["service"].redis.close()
    state["service"].store.close()
    state["s3"].stop()
    state["redis"].stop()  # a test may have restarted it


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    state = start_stack(tmp_path_factory.mktemp("orchestrator"), Clock())
    yield state
    stop_stack(state)


_handles = iter(range(1, 10_000))


@pytest.fixture
def api(stack) -> Artifacts:
    """A fresh account (and its first key) on the shared stack."""
    anon = Artifacts("", base_url=stack["server"].url)
    new = anon.create_account(f"acct{next(_handles)}", admin_token=ADMIN_TOKEN)
    client = Artifacts(new.key.key, base_url=stack["server"].url)
    client.handle = new.account.handle
    return client


@pytest.fixture(autouse=True)
def _reset_clock(stack):
    stack["clock"].offset = 0.0


def s3_env(monkeypatch, creds) -> None:
    monkeypatch.setenv("ARTIFACTS_S3_ACCESS_KEY_ID", creds.access_key_id)
    monkeypatch.setenv("ARTIFACTS_S3_SECRET_ACCESS_KEY", creds.secret_access_key)


def create_and_format(api: Artifacts, name: str, monkeypatch, **create):
    r = api.workspaces.create(name, **create)
    if r.storage.credentials is not None:
        s3_env(monkeypatch, r.storage.credentials)
    format_volume(r.format.url, r.storage.url, r.workspace.volume_name, key_prefix=r.format.key_prefix,
                  trash_days=0)
    return r, api.workspaces.format_completed(name)


def wait_deleted(api: Artifacts, name: str, timeout: float = 30.0):
    return wait_for_status(api, name, "deleted", timeout=timeout, interval=0.05)


def admin_s3(stack):
    import botocore.session
    from botocore.config import Config

    s3 = stack["s3"]
    return botocore.session.get_session().create_client(
        "s3", endpoint_url=s3.endpoint, region_name=s3.region, aws_access_key_id=s3.access_key,
        aws_secret_access_key=s3.secret_key, config=Config(s3={"addressing_style": "path"}))


def objects_under(stack, prefix: str) -> list[str]:
    page = admin_s3(stack).list_objects_v2(Bucket=BUCKET, Prefix=prefix.rstrip("/") + "/")
    return [o["Key"] for o in page.get("Contents", [])]


def _config(cache_dir):
    from artifacts_core.config import profile_config

    return profile_config("interactive", cache_dir=str(cache_dir), entry_ttl=0.0, attr_ttl=0.0)


#: A bucket standing for a customer's own (seed 004's custom S3) on the stack's SeaweedFS.
CUSTOM_BUCKET = "customer-bucket"


def s3_identity(stack, user: str, actions: list[str], bucket: str = CUSTOM_BUCKET) -> tuple[str, str]:
    """A SeaweedFS IAM user allowed exactly ``actions`` on ``bucket`` (made as the admin): the
    key a customer would paste into the custom S3 form. Returns (access key id, secret)."""
    import json

    import botocore.session
    from botocore.config import Config

    s3 = stack["s3"]
    iam = botocore.session.get_session().create_client(
        "iam", endpoint_url=s3.endpoint, region_name=s3.region, aws_access_key_id=s3.access_key,
        aws_secret_access_key=s3.secret_key, config=Config(retries={"max_attempts": 1}))
    iam.create_user(UserName=user)
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": [
        f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]}]}
    iam.put_user_policy(UserName=user, PolicyName="customer", PolicyDocument=json.dumps(policy))
    k = iam.create_access_key(UserName=user)["AccessKey"]
    return k["AccessKeyId"], k["SecretAccessKey"]
