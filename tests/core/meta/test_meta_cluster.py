"""Two workspaces on a 3-master Redis Cluster whose hash tags land on DIFFERENT masters: each
runs a namespace workload through its own master, one function call per operation, and its
keys live only there."""

from __future__ import annotations

import os
import secrets

import pytest
import redis
from redis.crc import key_slot

from artifacts_core.meta.namespace import RENAME_EXCHANGE
from artifacts_core.types import ROOT_INO

pytestmark = pytest.mark.cluster


def two_prefixes_on_different_masters(url: str) -> tuple[str, str]:
    host, port = url.removeprefix("redis+cluster://").split(",")[0].split(":")
    cluster = redis.RedisCluster(host=host, port=int(port))
    try:
        base = secrets.randbelow(10**15) + 10**15  # clear of the small ids other tests count from
        first = f"{{u_{os.getpid()}_w_{base}}}:"
        owner = cluster.get_node_from_key(first + "setting").name
        for n in range(base + 1, base + 1000):
            other = f"{{u_{os.getpid()}_w_{n}}}:"
            if cluster.get_node_from_key(other + "setting").name != owner:
                return first, other
    finally:
        cluster.close()
    raise AssertionError("no workspace id maps to another master")


def workload(m, tag: str) -> None:
    d, _ = m.mkdir(ROOT_INO, f"dir-{tag}")
    files = [m.create(d, f"f{i}")[0] for i in range(20)]
    m.link(files[0], ROOT_INO, "hard")
    m.rename(d, "f1", ROOT_INO, "moved")
    m.rename(ROOT_INO, "moved", d, "f2", RENAME_EXCHANGE)
    m.unlink(d, "f3")
    m.symlink(d, "s", tag)
    m.setxattr(d, "user.tag", tag.encode())
    names = {e.name for e in m.listdir(d)}
    assert names == {f"f{i}".encode() for i in range(20) if i not in (1, 3)} | {b"s"}
    assert m.readlink(m.lookup(d, "s")[0]) == tag.encode()
    assert m.getxattr(d, "user.tag") == tag.encode()
    assert {e.name for e in m.listdir(ROOT_INO)} == {f"dir-{tag}".encode(), b"hard", b"moved"}
    assert m.statfs().used_inodes == 2 + 1 + 20 - 1 + 1


def test_two_workspaces_on_different_masters(meta_factory, redis_cluster):
    pa, pb = two_prefixes_on_different_masters(redis_cluster.url)
    assert key_slot((pa + "setting").encode()) != key_slot((pb + "setting").encode())
    a = meta_factory(pa, url=redis_cluster.url)
    b = meta_factory(pb, url=redis_cluster.url)
    node_a, node_b = a.client.node(), b.client.node()
    ports = (node_a.connection_pool.connection_kwargs["port"], node_b.connection_pool.connection_kwargs["port"])
    assert ports[0] != ports[1] and set(ports) <= set(redis_cluster.ports)
    before = a.client.round_trips
    workload(a, "alpha")
    workload(b, "beta")
    assert a.client.round_trips - before == 33  # one per operation: no redirects, no retries
    # each workspace's keys live on its own master only
    for m, mine, theirs in ((a, node_a, node_b), (b, node_b, node_a)):
        assert list(mine.scan_iter(match=m.keys.pattern, count=1000))
        assert not list(theirs.scan_iter(match=m.keys.pattern, count=1000))
