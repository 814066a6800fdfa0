"""The lean GET transport (``objects/s3_get.py``) on the REAL SeaweedFS gateway: it signs what
botocore would accept, returns the same bytes as the aiobotocore client for any key and range,
and fails the same way through the store's one choke point.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from botocore.exceptions import ClientError
from s3faults import FaultProxy
from testbed import TEST_BUCKET

from artifacts_core.errors import NotFound, PermissionDenied
from artifacts_core.objects import ObjectStoreStats, RetryPolicy, S3ObjectStore

pytestmark = pytest.mark.s3

FAST = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.01, total_timeout=30.0,
                   connect_timeout=2.0, read_timeout=20.0)
#: Keys exercising SigV4's canonical URI: spaces, reserved and non-ASCII characters, "~", "+".
ODD_KEYS = ["plain", "with space", "ünïcødé/ß", "a+b=c&d", "percent%41", "tilde~and.dots..",
            "semi;colon,comma", "brackets[1]{2}", "chunks/0/0/1_0_4194304"]


def make(s3_server, *, lean: bool = True, endpoint=None, secret=None, token=None) -> S3ObjectStore:
    return S3ObjectStore(TEST_BUCKET, endpoint=endpoint or s3_server.endpoint, region=s3_server.region,
                         access_key=s3_server.access_key, secret_key=secret or s3_server.secret_key,
                         session_token=token, retry=FAST, stats=ObjectStoreStats(), lean_get=lean)


def run(*stores, body):
    async def main():
        try:
            return await body(*stores)
        finally:
            for s in stores:
                await s.close()

    return asyncio.run(main())


def test_lean_and_botocore_gets_agree_on_every_key_and_range(s3_server, s3_prefix):
    data = bytes(range(256)) * 40

    async def body(lean, boto):
        assert lean._getter() is not None and boto._getter() is None
        for key in ODD_KEYS:
            await boto.put(s3_prefix + key, data)
            for offset, length in [(0, None), (0, 1), (100, 999), (len(data) - 5, 100), (len(data), 10), (7, 0)]:
                want = await boto.get(s3_prefix + key, offset, length)
                assert await lean.get(s3_prefix + key, offset, length) == want, (key, offset, length)
        with pytest.raises(NotFound):
            await lean.get(s3_prefix + "missing key")

    run(make(s3_server), make(s3_server, lean=False), body=body)


def test_a_wrong_secret_is_permission_denied_at_once_without_leaking_it(s3_server, s3_prefix, caplog):
    caplog.set_level(logging.DEBUG, logger="artifacts")
    wrong = "not-the-secret-" + s3_server.secret_key[::-1]

    async def body(good, bad):
        await good.put(s3_prefix + "k", b"data")
        with pytest.raises(PermissionDenied) as info:
            await bad.get(s3_prefix + "k")
        return info.value

    bad = make(s3_server, secret=wrong)
    err = run(make(s3_server), bad, body=body)
    assert isinstance(err.__cause__, ClientError)
    assert bad.stats.snapshot()["get"]["requests"] == 1  # not retried
    for text in (str(err), repr(err), str(err.__cause__), caplog.text, repr(bad._lean)):
        assert wrong not in text and s3_server.secret_key not in text


def test_requests_are_signed_path_style_with_the_session_token(s3_server, s3_prefix):
    with FaultProxy(s3_server.s3_port) as proxy:
        async def body(store):
            with pytest.raises((PermissionDenied, NotFound)):  # SeaweedFS refuses unknown tokens
                await store.get(s3_prefix + "k", 5, 10)

        run(make(s3_server, endpoint=proxy.endpoint, token="SESSION-TOKEN-VALUE"), body=body)
    method, path, headers = proxy.seen[0]
    assert method == "GET" and path == f"/{TEST_BUCKET}/{s3_prefix}k"
    assert headers["range"] == "bytes=5-14"
    assert headers["x-amz-security-token"] == "SESSION-TOKEN-VALUE"
    auth = headers["authorization"]
    assert auth.startswith(f"AWS4-HMAC-SHA256 Credential={s3_server.access_key}/")
    assert "SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token," in auth
    assert headers["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
    assert s3_server.secret_key not in str(headers)


def test_transient_errors_on_the_lean_path_are_retried(s3_server, s3_prefix):
    async def seed(store):
        await store.put(s3_prefix + "seed", b"seed-bytes")

    run(make(s3_server), body=seed)
    with FaultProxy(s3_server.s3_port, fail_first=2, status=503, code="SlowDown") as proxy:
        store = make(s3_server, endpoint=proxy.endpoint)
        assert run(store, body=lambda s: s.get(s3_prefix + "seed", 1, 3)) == b"eed"
    assert proxy.faults == 2 and proxy.requests == 3
    get = store.stats.snapshot()["get"]
    assert (get["requests"], get["retries"], get["errors"]) == (3, 2, 0)


def test_without_static_credentials_gets_stay_on_botocore():
    assert S3ObjectStore("bkt", endpoint="http://127.0.0.1:9")._getter() is None
