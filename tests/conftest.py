"""Shared fixtures: the REAL servers, started once per test session on free loopback ports.

- ``redis_server``: redis-server without persistence;
- ``s3_server``: the SeaweedFS S3 gateway (``weed server -s3``) with an admin access key;
- ``redis_cluster``: a 3-master Redis Cluster, started only by tests that ask for it.

Every test is isolated by its own workspace key prefix (``key_prefix``) and its own bucket
prefix (``s3_prefix``); the servers are stopped by their own process ids at the end.
"""

from __future__ import annotations

import itertools
import os
import uuid

import pytest

from artifacts_core.servers import RedisCluster, RedisServer, SeaweedS3

TEST_BUCKET = "artifacts-test"

_workspace_ids = itertools.count(1)


@pytest.fixture(scope="session")
def servers_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("servers")


@pytest.fixture(scope="session")
def redis_server(servers_dir):
    server = RedisServer.start(servers_dir / "redis")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server) -> str:
    return redis_server.url


@pytest.fixture(scope="session")
def redis_cluster(servers_dir):
    cluster = RedisCluster.start(servers_dir / "cluster")
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def s3_server(servers_dir):
    server = SeaweedS3.start(servers_dir / "weed", buckets=(TEST_BUCKET,))
    yield server
    server.stop()


@pytest.fixture
def s3_prefix() -> str:
    """A bucket prefix no other test uses."""
    return f"t-{uuid.uuid4().hex[:12]}/"


@pytest.fixture
def key_prefix() -> str:
    """A workspace key prefix ``{u_X_w_Y}:`` no other test in this run uses (numeric ids only)."""
    return f"{{u_{os.getpid()}_w_{next(_workspace_ids)}}}:"


@pytest.fixture
def meta_factory(redis_url):
    """Makes formatted metadata engines: ``meta_factory(prefix, **setting_fields)``. A second call
    with the same prefix opens another client (another "host") on the same workspace."""
    from artifacts_core.meta.engine import RedisMetaEngine
    from artifacts_core.meta.format import Setting, new_uuid

    engines = []
    formatted: dict[str, str] = {}

    def make(prefix: str, *, url: str | None = None, **fields):
        engine = RedisMetaEngine(url or redis_url, prefix)
        if prefix not in formatted:
            fields.setdefault("trash_days", 0)
            setting = Setting(name="test", uuid=new_uuid(), **fields)
            engine.format(setting, require_aof=False)
            formatted[prefix] = setting.uuid
        else:
            engine.load(require_aof=False)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.close()


@pytest.fixture
def meta(meta_factory, key_prefix):
    """A metadata engine on a freshly formatted workspace (trash off)."""
    return meta_factory(key_prefix)
