"""Format, library loading and the Redis configuration checks."""

import pytest

from artifacts_core.errors import ConfigError, Exists
from artifacts_core.meta import library
from artifacts_core.meta.attrs import TYPE_DIR, unpack_attr
from artifacts_core.meta.client import MetaClient
from artifacts_core.meta.format import Setting, format_meta, load_setting, new_uuid
from artifacts_core.meta.keys import Keys
from artifacts_core.servers import RedisServer


def test_format_writes_root_and_is_idempotent_for_the_same_volume(redis_url, key_prefix):
    client = MetaClient(redis_url, Keys(key_prefix))
    setting = Setting(name="vol", uuid=new_uuid(), trash_days=0)
    assert format_meta(client, setting, require_aof=False) is True
    assert format_meta(client, setting, require_aof=False) is False
    root = unpack_attr(client.command("GET", key_prefix + "i1"))
    assert root.type == TYPE_DIR and root.nlink == 2 and root.perm == 0o1777  # sticky: as /tmp
    assert load_setting(client).uuid == setting.uuid
    with pytest.raises(Exists):
        format_meta(client, Setting(name="other", uuid=new_uuid()), require_aof=False)
    client.close()


def test_refuses_redis_without_aof_and_evicting_redis(tmp_path, key_prefix):
    with RedisServer.start(tmp_path / "r") as server:
        client = MetaClient(server.url, Keys(key_prefix))
        with pytest.raises(ConfigError, match="appendonly yes"):
            format_meta(client, Setting(name="v", uuid=new_uuid()))
        client.command("CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
        with pytest.raises(ConfigError, match="maxmemory-policy"):
            format_meta(client, Setting(name="v", uuid=new_uuid()), require_aof=False)
        assert client.command("EXISTS", client.keys.setting) == 0  # refused before writing
        client.close()


def test_unformatted_prefix_is_refused_with_a_remedy(redis_url):
    client = MetaClient(redis_url, Keys("{u_999999_w_1}:"))
    client.ensure_library()
    with pytest.raises(ConfigError, match="format the workspace first"):
        load_setting(client)
    client.close()


def test_invalid_prefixes_are_refused():
    for bad in ("{u_a_w_1}:", "u_1_w_2:", "{u_1_w_2}", "{u_1_w_2}:x", "{u_1_w_2}}:"):
        with pytest.raises(ConfigError):
            Keys(bad)


def test_library_is_loaded_on_every_cluster_master(redis_cluster):
    client = MetaClient(redis_cluster.url, Keys("{u_1_w_1}:"))
    client.ensure_library()
    for node in client.master_clients():
        assert library.loaded_version(node) == library.parse_version(library.version_string())
        node.close()
    client.close()
