"""The counters and access log behind .stats and .accesslog."""

import threading

import pytest

from artifacts_core.errors import NotFound
from artifacts_core.metrics import Metrics


def test_operation_counts_errors_and_latency_in_prometheus_text():
    m = Metrics()
    with m.operation("getattr", 1):
        pass
    with pytest.raises(NotFound), m.operation("lookup", 1, "x"):
        raise NotFound("gone")
    m.add_source("redis", lambda: {"round_trips": 7})
    text = m.render()
    assert 'artifacts_ops_total{op="getattr"} 1' in text
    assert 'artifacts_op_errors_total{errno="ENOENT",op="lookup"} 1' in text
    assert 'artifacts_op_seconds_count{op="lookup"} 1' in text
    assert "artifacts_redis_round_trips 7" in text


def test_accesslog_lines_only_while_read():
    m = Metrics()
    with m.operation("mkdir", 1, "a"):
        pass
    reader = m.accesslog.subscribe()
    with m.operation("unlink", 1, "b"):
        pass
    data = reader.read(1 << 16, timeout=0).decode()
    assert "unlink (1, 'b'): OK" in data and "mkdir" not in data
    reader.close()
    assert not m.accesslog.active


def test_accesslog_reader_waits_for_lines():
    m = Metrics()
    reader = m.accesslog.subscribe()
    got = []
    t = threading.Thread(target=lambda: got.append(reader.read(4096, timeout=5)))
    t.start()
    with m.operation("create", 1, "f"):
        pass
    t.join(5)
    assert got and b"create" in got[0]
