"""Storage URLs (DESIGN.md §9): parsing, credential and region resolution, redaction."""

from __future__ import annotations

import asyncio

import pytest
from testbed import TEST_BUCKET

from artifacts_core.errors import ConfigError, InvalidArgument
from artifacts_core.objects import (
    LocalObjectStore,
    MemoryObjectStore,
    PrefixedObjectStore,
    S3ObjectStore,
    redact_url,
    store_from_url,
)

ENV = ("ARTIFACTS_S3_ACCESS_KEY_ID", "ARTIFACTS_S3_SECRET_ACCESS_KEY", "ARTIFACTS_S3_SESSION_TOKEN",
       "ARTIFACTS_S3_REGION", "AWS_REGION", "AWS_DEFAULT_REGION")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def test_s3_url_with_prefix_endpoint_and_region():
    store = store_from_url("s3://my-bucket/volumes/ws1?endpoint=http://127.0.0.1:8333&region=eu-west-1",
                           access_key="AK", secret_key="SK")
    assert isinstance(store, PrefixedObjectStore) and store.prefix == "volumes/ws1/"
    inner = store.inner
    assert isinstance(inner, S3ObjectStore)
    assert (inner.bucket, inner.endpoint, inner.region) == ("my-bucket", "http://127.0.0.1:8333", "eu-west-1")
    assert store.describe() == "s3://my-bucket (endpoint http://127.0.0.1:8333) prefix volumes/ws1/"


def test_s3_url_without_prefix_is_the_bare_store():
    store = store_from_url("s3://my-bucket")
    assert isinstance(store, S3ObjectStore) and store.region == "us-east-1"
    assert isinstance(store_from_url("s3://my-bucket/"), S3ObjectStore)


def test_credentials_and_region_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("ARTIFACTS_S3_ACCESS_KEY_ID", "ENV-AK")
    monkeypatch.setenv("ARTIFACTS_S3_SECRET_ACCESS_KEY", "ENV-SECRET")
    monkeypatch.setenv("ARTIFACTS_S3_SESSION_TOKEN", "ENV-TOKEN")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-south-1")
    store = store_from_url("s3://bkt")
    assert (store._access_key, store._secret_key, store._session_token) == ("ENV-AK", "ENV-SECRET", "ENV-TOKEN")
    assert store.region == "ap-south-1"
    monkeypatch.setenv("AWS_REGION", "eu-north-1")
    assert store_from_url("s3://bkt").region == "eu-north-1"
    monkeypatch.setenv("ARTIFACTS_S3_REGION", "us-west-2")
    assert store_from_url("s3://bkt").region == "us-west-2"
    assert store_from_url("s3://bkt?region=sa-east-1").region == "sa-east-1"
    # Explicit arguments win over the environment.
    explicit = store_from_url("s3://bkt", access_key="ARG-AK", secret_key="ARG-SECRET")
    assert (explicit._access_key, explicit._secret_key) == ("ARG-AK", "ARG-SECRET")


def test_half_credentials_are_a_config_error(monkeypatch):
    with pytest.raises(ConfigError):
        store_from_url("s3://bkt", access_key="AK")
    monkeypatch.setenv("ARTIFACTS_S3_ACCESS_KEY_ID", "AK")
    with pytest.raises(ConfigError) as info:
        store_from_url("s3://bkt")
    assert "ARTIFACTS_S3_SECRET_ACCESS_KEY" in str(info.value)


@pytest.mark.parametrize("url", [
    "s3://AKIAEXAMPLE:SuperSecret42@bkt/p",
    "s3://bkt/p?secret_key=SuperSecret42",
    "s3://bkt?aws_secret_access_key=SuperSecret42&endpoint=http://h:1",
    "s3://bkt?session_token=SuperSecret42",
    "s3://bkt?X-Amz-Signature=SuperSecret42",
])
def test_secrets_in_urls_are_refused_and_never_echoed(url):
    with pytest.raises(ConfigError) as info:
        store_from_url(url)
    assert "SuperSecret42" not in str(info.value)
    assert "SuperSecret42" not in redact_url(url)


@pytest.mark.parametrize("url", [
    "", "bkt/prefix", "ftp://host/x", "s3://", "s3://b", "s3://bad_bucket!/x", "s3://bkt:99/x",
    "s3://bkt?endpoint=ftp://h", "s3://bkt?endpoint=127.0.0.1:9000", "s3://bkt?unknown=1",
    "s3://bkt?region=a&region=b", "s3://bkt/a//b", "s3://bkt/a/../b", "file://relative/path",
    "file:///tmp/x?endpoint=y", "memory://", "http://[::1/",
])
def test_bad_urls_are_invalid(url):
    with pytest.raises(InvalidArgument):
        store_from_url(url)


def test_file_and_memory_urls(tmp_path):
    local = store_from_url(f"file://{tmp_path}")
    assert isinstance(local, LocalObjectStore) and str(local.root) == str(tmp_path)
    assert isinstance(store_from_url(f"file://localhost{tmp_path}"), LocalObjectStore)
    one = store_from_url("memory://shared")
    assert isinstance(one, MemoryObjectStore) and store_from_url("memory://shared") is one
    prefixed = store_from_url("memory://shared/vol")
    assert isinstance(prefixed, PrefixedObjectStore) and prefixed.inner is one


def test_redact_url_keeps_what_helps_and_drops_what_hurts():
    assert redact_url("s3://ak:sk@bkt/p?endpoint=http://h:9&region=x") == \
        "s3://bkt/p?endpoint=http://h:9&region=x"
    assert "abc" not in redact_url("redis://user:abc@host:6379/0")
    assert "REDACTED" in redact_url("s3://bkt?token=abc")
    assert redact_url("http://[::1/") == "<unparsable URL>"
    nested = "s3://bkt?endpoint=http://user:pw-SECRET@h:9"
    assert "pw-SECRET" not in redact_url(nested)
    with pytest.raises(InvalidArgument) as info:
        store_from_url(nested)
    assert "pw-SECRET" not in str(info.value)


def test_s3_url_round_trip_on_the_real_server(s3_server, s3_prefix, monkeypatch):
    monkeypatch.setenv("ARTIFACTS_S3_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("ARTIFACTS_S3_SECRET_ACCESS_KEY", s3_server.secret_key)
    url = f"s3://{TEST_BUCKET}/{s3_prefix}vol?endpoint={s3_server.endpoint}&region={s3_server.region}"
    store = store_from_url(url)
    assert s3_server.secret_key not in store.describe()

    async def body():
        try:
            await store.put("chunks/0/0/1_0_5", b"hello")
            assert await store.get("chunks/0/0/1_0_5") == b"hello"
            assert [o.key for o in (await store.list()).objects] == ["chunks/0/0/1_0_5"]
        finally:
            await store.close()

    asyncio.run(body())
