"""Shared fixtures: the REAL servers, started once per test session on free loopback ports.

- ``redis_server``: redis-server without persistence;
- ``s3_server``: the SeaweedFS S3 gateway (``weed server -s3``) with an admin access key;
- ``redis_cluster``: a 3-master Redis Cluster, started only by tests that ask for it;
- ``postgres_server``: a PostgreSQL server (Debian's package, run as its unprivileged ``postgres``
  account, SCRAM passwords on loopback TCP), started only by tests that ask for it; each test
  that needs a database gets a fresh one from ``pg_url`` (its own login role and password).

Every test is isolated by its own workspace key prefix (``key_prefix``) and its own bucket
prefix (``s3_prefix``); the servers are stopped by their own process ids at the end.
"""

from __future__ import annotations

import itertools
import os
import uuid

import pytest
from testbed import TEST_BUCKET

from artifacts_core.servers import RedisCluster, RedisServer, SeaweedS3

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
def postgres_server():
    from artifacts_orchestrator.local import PostgresServer

    server = PostgresServer.start(durable=False)  # a throw-away cluster: fsync off
    yield server
    server.stop()


_databases = itertools.count(1)


@pytest.fixture
def pg_url(postgres_server) -> str:
    """A fresh, empty PostgreSQL database owned by its own login role: its URL (with password)."""
    n = next(_databases)
    return postgres_server.create_database(f"t{n}", owner=f"orch{n}", password=uuid.uuid4().hex)


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


@pytest.fixture
def storage_url(s3_server, s3_prefix, monkeypatch) -> str:
    """An s3:// storage URL on the real SeaweedFS under this test's own prefix; the credentials
    come from the host environment, as they do for users."""
    monkeypatch.setenv("ARTIFACTS_S3_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("ARTIFACTS_S3_SECRET_ACCESS_KEY", s3_server.secret_key)
    return f"s3://{TEST_BUCKET}/{s3_prefix.rstrip('/')}?endpoint={s3_server.endpoint}&region={s3_server.region}"


@pytest.fixture
def volume_factory(redis_url, storage_url, key_prefix, tmp_path):
    """Opens volumes on one freshly formatted workspace: each call is another client ("host").
    Kernel-like TTL caches are off so tests see other hosts' changes at once."""
    from artifacts_core.config import profile_config
    from artifacts_core.volume import format_volume, open_volume

    volumes = []
    state = {"formatted": False}

    def make(*, format_options: dict | None = None, **config):
        if not state["formatted"]:
            options = {"trash_days": 0, **(format_options or {})}
            format_volume(redis_url, storage_url, "testvol", key_prefix=key_prefix, require_aof=False,
                          **options)
            state["formatted"] = True
        config.setdefault("entry_ttl", 0.0)
        config.setdefault("attr_ttl", 0.0)
        config.setdefault("cache_dir", str(tmp_path / f"cache{len(volumes)}"))
        vol = open_volume(redis_url, key_prefix=key_prefix, require_aof=False,
                          config=profile_config("interactive", **config))
        volumes.append(vol)
        return vol

    yield make
    for vol in volumes:
        vol.close()


@pytest.fixture
def vol(volume_factory):
    """An open volume on a fresh workspace (real Redis and SeaweedFS)."""
    return volume_factory()
