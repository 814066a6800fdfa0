"""S3ObjectStore failure handling on the REAL SeaweedFS gateway: no mocks of S3.

Faults are injected by :class:`FaultProxy`, a real HTTP reverse proxy on loopback that stands in
front of SeaweedFS: it answers the first N requests with an S3 error (or sits on them past the
client's read timeout) and forwards the rest byte for byte. Retry policies here use millisecond
delays so the suite stays fast; the bounds being tested are the same code paths as production's.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from testbed import TEST_BUCKET

from artifacts_core.errors import NotFound, PermissionDenied, StorageError
from artifacts_core.objects import ObjectStoreStats, PrefixedObjectStore, RetryPolicy, S3ObjectStore
from artifacts_core.objects.retry import is_transient
from artifacts_core.servers import LOOPBACK, free_port

pytestmark = pytest.mark.s3

#: Millisecond backoff: retries are exercised for real without slowing the suite. The read timeout
#: stays long because SeaweedFS's first write after it starts allocates volumes and takes seconds.
FAST = RetryPolicy(max_attempts=4, base_delay=0.001, max_delay=0.01, total_timeout=30.0,
                   connect_timeout=2.0, read_timeout=20.0)

from s3faults import FaultProxy  # noqa: E402


def make_store(s3_server, *, endpoint=None, secret=None, retry=FAST, bucket=TEST_BUCKET,
               stats=None) -> S3ObjectStore:
    return S3ObjectStore(bucket, endpoint=endpoint or s3_server.endpoint, region=s3_server.region,
                         access_key=s3_server.access_key, secret_key=secret or s3_server.secret_key,
                         retry=retry, stats=stats or ObjectStoreStats())


def run(store, body):
    async def main():
        try:
            return await body(store)
        finally:
            await store.close()

    return asyncio.run(main())


def assert_no_secret(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text


def test_describe_and_repr_show_no_secrets():
    store = S3ObjectStore("bkt", endpoint="http://127.0.0.1:9", access_key="AKIDEXAMPLE",
                          secret_key="wJalrXUtnFEMI-SECRET", session_token="TOKEN-SECRET-123")
    assert store.describe() == "s3://bkt (endpoint http://127.0.0.1:9)"
    for text in (store.describe(), repr(store), str(store)):
        assert_no_secret(text, "wJalrXUtnFEMI-SECRET", "TOKEN-SECRET-123", "AKIDEXAMPLE")
    assert S3ObjectStore("bkt").describe() == "s3://bkt"


def test_wrong_secret_is_permission_denied_at_once(s3_server, caplog, s3_prefix):
    caplog.set_level(logging.DEBUG, logger="artifacts")
    wrong = "not-the-secret-" + s3_server.secret_key[::-1]
    store = make_store(s3_server, secret=wrong)

    async def body(s):
        with pytest.raises(PermissionDenied) as info:
            await s.put(s3_prefix + "k", b"data")
        return info.value

    err = run(store, body)
    assert isinstance(err.__cause__, ClientError)
    assert store.stats.total("requests") == 1 and store.stats.total("retries") == 0
    assert store.stats.snapshot()["put"]["errors"] == 1
    for text in (str(err), repr(err), str(err.__cause__), caplog.text):
        assert_no_secret(text, wrong, s3_server.secret_key)


def test_nothing_listening_fails_after_bounded_retries(s3_server, caplog):
    caplog.set_level(logging.DEBUG, logger="artifacts")
    endpoint = f"http://{LOOPBACK}:{free_port()}"  # a port nobody listens on
    store = make_store(s3_server, endpoint=endpoint, retry=RetryPolicy(
        max_attempts=3, base_delay=0.001, max_delay=0.01, connect_timeout=1.0))

    async def body(s):
        with pytest.raises(StorageError) as info:
            await s.get("some/key")
        return info.value

    err = run(store, body)
    assert endpoint in str(err) and "could not connect" in str(err) and "check" in str(err)
    assert "3 attempt" in str(err)
    assert isinstance(err.__cause__, EndpointConnectionError)
    assert err.path == "some/key"
    get = store.stats.snapshot()["get"]
    assert (get["requests"], get["retries"], get["errors"]) == (3, 2, 1)
    assert_no_secret(str(err) + caplog.text, s3_server.secret_key)
    assert any(r.levelno == logging.WARNING and "attempts=3" in r.getMessage() for r in caplog.records)


OPS = {
    "put": lambda s: s.put("obj", b"payload"),
    "get": lambda s: s.get("seed"),
    "range-get": lambda s: s.get("seed", 1, 2),
    "head": lambda s: s.head("seed"),
    "list": lambda s: s.list(),
    "delete": lambda s: s.delete("seed"),
}
EXPECTED = {"put": None, "get": b"seed-bytes", "range-get": b"ee", "list": None, "delete": None}


@pytest.mark.parametrize("status,code", [(503, "SlowDown"), (500, "InternalError"),
                                         (429, "TooManyRequests"), (502, "BadGateway")])
@pytest.mark.parametrize("op", list(OPS))
def test_transient_errors_are_retried_until_success(s3_server, s3_prefix, op, status, code):
    direct = PrefixedObjectStore(make_store(s3_server), s3_prefix)
    run(direct, lambda s: s.put("seed", b"seed-bytes"))
    with FaultProxy(s3_server.s3_port, fail_first=2, status=status, code=code) as proxy:
        inner = make_store(s3_server, endpoint=proxy.endpoint)
        result = run(PrefixedObjectStore(inner, s3_prefix), OPS[op])
    if op in EXPECTED and EXPECTED[op] is not None:
        assert result == EXPECTED[op]
    if op == "head":
        assert result.size == len(b"seed-bytes")
    if op == "list":
        assert [o.key for o in result.objects] == ["seed"]
    assert proxy.faults == 2 and proxy.requests == 3
    counters = inner.stats.snapshot()["list" if op == "list" else op.removeprefix("range-")]
    assert (counters["requests"], counters["retries"], counters["errors"]) == (3, 2, 0)


def test_requests_are_path_style_unsigned_payload_without_sdk_checksums(s3_server, s3_prefix):
    """DESIGN.md §10: botocore would SHA-256 the body over plain HTTP unless told not to."""
    with FaultProxy(s3_server.s3_port) as proxy:
        run(make_store(s3_server, endpoint=proxy.endpoint), lambda s: s.put(s3_prefix + "k", b"x" * 4096))
    [(method, path, headers)] = proxy.seen
    assert method == "PUT" and path.startswith(f"/{TEST_BUCKET}/{s3_prefix}")
    assert headers["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
    assert not [h for h in headers if h.startswith("x-amz-checksum") or h == "content-md5"]
    assert headers.get("content-length") == "4096"  # not aws-chunked


def test_persistent_throttling_gives_up_after_max_attempts(s3_server):
    with FaultProxy(s3_server.s3_port, fail_first=10_000) as proxy:
        store = make_store(s3_server, endpoint=proxy.endpoint)

        async def body(s):
            with pytest.raises(StorageError) as info:
                await s.put("k", b"v")
            return info.value

        err = run(store, body)
    assert proxy.requests == FAST.max_attempts
    assert "SlowDown" in str(err) and "503" in str(err) and f"{FAST.max_attempts} attempt" in str(err)
    assert isinstance(err.__cause__, ClientError)
    assert store.stats.total("retries") == FAST.max_attempts - 1


def test_total_time_bounds_retries_before_attempts_run_out(s3_server):
    policy = RetryPolicy(max_attempts=10_000, base_delay=0.02, max_delay=0.05, total_timeout=0.5)
    with FaultProxy(s3_server.s3_port, fail_first=1_000_000) as proxy:
        store = make_store(s3_server, endpoint=proxy.endpoint, retry=policy)

        async def body(s):
            started = time.monotonic()
            with pytest.raises(StorageError):
                await s.get("k")
            return time.monotonic() - started

        elapsed = run(store, body)
    # Loose bound (DESIGN.md §10): the policy's 0.5 s plus generous slack for a loaded CI host.
    assert elapsed < 5.0
    assert 1 < proxy.requests < policy.max_attempts


def test_slow_server_times_out_retries_then_fails(s3_server):
    policy = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.01, read_timeout=0.5)
    # The proxy sits on every request for 5 s, ten times the client's read timeout.
    with FaultProxy(s3_server.s3_port, delay_first=10_000, delay=5.0) as proxy:
        store = make_store(s3_server, endpoint=proxy.endpoint, retry=policy)

        async def body(s):
            with pytest.raises(StorageError) as info:
                await s.get("k")
            return info.value

        err = run(store, body)
    assert "timed out" in str(err) and "3 attempt" in str(err)
    assert isinstance(err.__cause__, ReadTimeoutError)
    assert proxy.requests == 3
    assert store.stats.snapshot()["get"]["retries"] == 2


def test_one_slow_answer_is_retried_and_succeeds(s3_server, s3_prefix):
    run(make_store(s3_server), lambda s: s.put(s3_prefix + "k", b"value"))
    policy = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.01, read_timeout=0.5)
    with FaultProxy(s3_server.s3_port, delay_first=1, delay=5.0) as proxy:
        store = make_store(s3_server, endpoint=proxy.endpoint, retry=policy)
        assert run(store, lambda s: s.get(s3_prefix + "k")) == b"value"
    assert store.stats.snapshot()["get"]["retries"] == 1


def test_not_found_is_not_retried(s3_server, s3_prefix):
    store = make_store(s3_server)

    async def body(s):
        for call in (s.get(s3_prefix + "missing"), s.head(s3_prefix + "missing")):
            with pytest.raises(NotFound):
                await call

    run(store, body)
    snap = store.stats.snapshot()
    assert snap["total"]["requests"] == 2 and snap["total"]["retries"] == 0
    assert snap["total"]["not_found"] == 2 and snap["total"]["errors"] == 0


def test_missing_bucket_names_the_bucket(s3_server):
    store = make_store(s3_server, bucket="no-such-bucket-here")

    async def body(s):
        with pytest.raises(StorageError) as info:
            await s.get("k")
        return info.value

    err = run(store, body)
    assert "no-such-bucket-here" in str(err) and "does not exist" in str(err)


def test_one_debug_line_per_request_without_body_or_secret(s3_server, s3_prefix, caplog):
    caplog.set_level(logging.DEBUG, logger="artifacts.s3")
    store = make_store(s3_server)
    body_marker = "BODY-MARKER-7f3a" * 8

    async def body(s):
        await s.put(s3_prefix + "logged", body_marker.encode())
        await s.get(s3_prefix + "logged")

    run(store, body)
    lines = [r.getMessage() for r in caplog.records if r.name == "artifacts.s3"]
    assert len(lines) == 2
    put_line, get_line = lines
    assert put_line.startswith("s3 put ") and f"{s3_prefix}logged" in put_line
    assert f"bytes={len(body_marker)}" in put_line and "attempts=1" in put_line and "ms=" in put_line
    assert get_line.startswith("s3 get ") and "status=200" in get_line
    for line in lines:
        assert_no_secret(line, body_marker, s3_server.secret_key)
    assert all(r.levelno == logging.DEBUG for r in caplog.records if r.name == "artifacts.s3")


def test_stats_count_bytes_and_latency(s3_server, s3_prefix):
    store = make_store(s3_server)

    async def body(s):
        await s.put(s3_prefix + "a", b"x" * 1000)
        await s.get(s3_prefix + "a", 0, 10)
        await s.head(s3_prefix + "a")

    run(store, body)
    snap = store.stats.snapshot()
    assert snap["put"]["bytes_out"] == 1000 and snap["get"]["bytes_in"] == 10
    assert snap["head"]["operations"] == 1 and snap["list"]["operations"] == 0
    assert snap["total"]["latency_count"] == 3 and snap["total"]["latency_sum"] > 0


def test_client_is_lazy_bound_to_its_loop_and_closed(s3_server, s3_prefix):
    store = make_store(s3_server)  # no loop yet: nothing is created here
    assert store._client is None

    async def body(s):
        await s.put(s3_prefix + "k", b"v")
        # Another loop (another thread) may not borrow this loop's client.
        with pytest.raises(RuntimeError, match="another event loop"):
            await asyncio.to_thread(asyncio.run, s.head(s3_prefix + "k"))

    run(store, body)
    with pytest.raises(RuntimeError, match="closed"):
        asyncio.run(store.get(s3_prefix + "k"))


# -- the pieces below the choke point, without a server ----------------------------------------


def test_retry_policy_validates_and_jitters_within_the_cap():
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(read_timeout=-1)
    policy = RetryPolicy(base_delay=0.1, max_delay=1.0)
    rng = random.Random(7)
    for retry, ceiling in [(1, 0.1), (2, 0.2), (4, 0.8), (5, 1.0), (60, 1.0), (10_000, 1.0)]:
        samples = [policy.delay(retry, rng) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in samples)
        assert max(samples) > ceiling / 2  # full jitter spreads over the whole interval


def _client_error(status: int, code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")


@pytest.mark.parametrize("exc,transient", [
    (_client_error(503, "SlowDown"), True),
    (_client_error(500, "InternalError"), True),
    (_client_error(429, "TooManyRequests"), True),
    (_client_error(400, "RequestTimeout"), True),
    (_client_error(503, "503"), True),  # HEAD: no body, the code is the status
    (_client_error(400, "RequestLimitExceeded"), True),
    (_client_error(404, "NoSuchKey"), False),
    (_client_error(403, "AccessDenied"), False),
    (_client_error(403, "SignatureDoesNotMatch"), False),
    (_client_error(400, "InvalidArgument"), False),
    (EndpointConnectionError(endpoint_url="http://h:1"), True),
    (ReadTimeoutError(endpoint_url="http://h:1"), True),
    (TimeoutError(), True),
    (ValueError("bug"), False),
])
def test_transient_classification(exc, transient):
    assert is_transient(exc) is transient


def test_stats_are_thread_safe_and_snapshot_is_a_copy():
    stats = ObjectStoreStats()

    def hammer():
        for _ in range(2000):
            stats.record("get", attempts=2, seconds=0.001, bytes_in=10)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snap = stats.snapshot()
    assert snap["get"]["operations"] == 16_000 and snap["get"]["requests"] == 32_000
    assert snap["get"]["retries"] == 16_000 and snap["get"]["bytes_in"] == 160_000
    assert snap["total"]["operations"] == 16_000 and snap["put"]["operations"] == 0
    snap["get"]["operations"] = -1
    assert stats.snapshot()["get"]["operations"] == 16_000
