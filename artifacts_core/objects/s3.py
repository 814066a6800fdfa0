"""The S3 object store: the ``ObjectStore`` interface over aiobotocore.

Owns one aiobotocore client per store, created lazily inside the running event loop on first use
(the volume's event-loop thread, DESIGN.md §5) and closed by :meth:`S3ObjectStore.close`.

Moving parts:
- the client configuration: path-style addressing (SeaweedFS, MinIO and dotted bucket names need
  it), payload signing and botocore's own checksums off (every block carries our xxh3; hashing
  4 MiB with SHA-256 per PUT would cost more than the upload on loopback), botocore's retries off
  (we retry, once, in one place), connect/read timeouts from the :class:`RetryPolicy`;
- :meth:`S3ObjectStore._call`, the single choke point: every request passes it. It retries
  transient failures with capped, fully jittered backoff, translates the final failure into the
  core's error hierarchy with the cause kept, writes one log line (logger ``artifacts.s3``) and
  feeds :class:`ObjectStoreStats`;
- the five operations, each a small ``attempt`` coroutine handed to ``_call``. ``put`` with
  ``if_absent`` sends ``If-None-Match: *`` (412 becomes ``Exists``); a server answering 501 to it
  is used without conditional PUTs from then on, with one warning. GET's attempt goes through
  the lean SigV4 transport of ``s3_get`` when the credentials are static (a quarter of
  botocore's CPU per request), with the same errors, retries, log lines and stats.

Known SeaweedFS deviations from S3 (the contract suite marks them as strict expected failures):
ListObjectsV2 returns keys in directory-walk order, so ``d/x`` comes before ``d-x`` where S3 sorts
by bytes, and a StartAfter naming a "directory" skips its whole subtree. Paging by the last key
returned (what :func:`list_all` does) still yields every key exactly once; chunk keys
(``chunks/<n>/<n>/<id>_<i>_<len>``) never put a file name beside a directory it prefixes.

Invariants: the bucket never carries a prefix (that is ``PrefixedObjectStore``'s job); secrets
appear in no message, log line, ``repr`` or ``describe``; a request body is immutable ``bytes``,
so a retried PUT sends exactly what the first attempt sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ProxyConnectionError,
    ReadTimeoutError,
)

from artifacts_core.errors import (
    ArtifactsError,
    ConfigError,
    Exists,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    StorageError,
)
from artifacts_core.objects.base import LIST_PAGE, ListPage, ObjectInfo, check_range
from artifacts_core.objects.retry import Backoff, RetryPolicy, error_code, http_status, is_transient
from artifacts_core.objects.s3_get import LeanGetter
from artifacts_core.objects.stats import ObjectStoreStats

log = logging.getLogger("artifacts.s3")

T = TypeVar("T")

#: Codes meaning "these credentials may not do this": never retried, reported as EACCES.
ACCESS_CODES = frozenset({
    "AccessDenied", "403", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch",
    "ExpiredToken", "InvalidToken", "TokenRefreshRequired", "AllAccessDisabled",
})
NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
#: A conditional PUT (``If-None-Match: *``) found the key taken: the object was left as it was.
PRECONDITION_CODES = frozenset({"PreconditionFailed", "412"})
#: A server that does not implement conditional PUTs says so with one of these.
UNSUPPORTED_CODES = frozenset({"NotImplemented", "501"})


class S3ObjectStore:
    """Objects in one S3 bucket (any S3-compatible server) through aiobotocore."""

    def __init__(self, bucket: str, *, endpoint: str | None = None, region: str = "us-east-1",
                 access_key: str | None = None, secret_key: str | None = None,
                 session_token: str | None = None, max_pool_connections: int = 64,
                 retry: RetryPolicy | None = None, stats: ObjectStoreStats | None = None,
                 lean_get: bool = True) -> None:
        if not bucket or "/" in bucket or "\0" in bucket:
            raise InvalidArgument(f"invalid S3 bucket name {bucket!r}",
                                  hint="give the bare bucket; a key prefix goes in PrefixedObjectStore")
        if (access_key is None) != (secret_key is None):
            raise ConfigError("S3 credentials need both an access key id and a secret key")
        if max_pool_connections < 1:
            raise InvalidArgument("max_pool_connections must be at least 1")
        self.bucket = bucket
        self.endpoint = endpoint
        self.region = region
        self.retry = retry or RetryPolicy()
        self.stats = stats or ObjectStoreStats()
        self._access_key = access_key
        self._secret_key = secret_key
        self._session_token = session_token
        self._max_pool_connections = max_pool_connections
        self._client: Any = None
        self._exit_stack: contextlib.AsyncExitStack | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client_lock: asyncio.Lock | None = None
        self._closed = False
        #: Whether the server honours ``If-None-Match: *`` on PUT (False once it said it does not).
        self.conditional_puts = True
        # GETs skip botocore's request machinery when the credentials are ours to sign with.
        self._lean_get = lean_get and access_key is not None
        self._lean: LeanGetter | None = None

    def describe(self) -> str:
        where = f" (endpoint {self.endpoint})" if self.endpoint else ""
        return f"s3://{self.bucket}{where}"

    def __repr__(self) -> str:
        return f"S3ObjectStore(bucket={self.bucket!r}, endpoint={self.endpoint!r}, region={self.region!r})"

    # -- the client, lazily, on the running loop ----------------------------------------------

    async def _get_client(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._closed:
            raise RuntimeError(f"{self.describe()} is closed")
        if self._client is not None:
            if loop is not self._loop:
                raise RuntimeError(f"{self.describe()} was opened on another event loop; "
                                   "a store lives on its volume's one loop thread")
            return self._client
        if self._client_lock is None:
            self._client_lock = asyncio.Lock()
        async with self._client_lock:
            if self._client is None:
                self._client = await self._create_client()
                self._loop = loop
        return self._client

    async def _create_client(self) -> Any:
        config = AioConfig(
            s3={"addressing_style": "path", "payload_signing_enabled": False},
            signature_version="s3v4",
            # Checksums are ours (xxh3 in every block header); botocore's CRCs would only cost CPU.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"total_max_attempts": 1, "mode": "standard"},  # we retry, in _call
            connect_timeout=self.retry.connect_timeout,
            read_timeout=self.retry.read_timeout,
            max_pool_connections=self._max_pool_connections,
        )
        stack = contextlib.AsyncExitStack()
        try:
            client = await stack.enter_async_context(get_session().create_client(
                "s3", region_name=self.region, endpoint_url=self.endpoint,
                aws_access_key_id=self._access_key, aws_secret_access_key=self._secret_key,
                aws_session_token=self._session_token, config=config))
        except ValueError as e:  # botocore rejects a malformed endpoint URL or region here
            await stack.aclose()
            raise ConfigError(f"cannot create an S3 client for {self.describe()}: {type(e).__name__}",
                              hint="check the endpoint URL and region") from e
        self._exit_stack = stack
        return client

    def _getter(self) -> LeanGetter | None:
        """The lean GET transport (``s3_get``), made on first use on the store's loop."""
        if not self._lean_get:
            return None
        if self._lean is None:
            assert self._access_key is not None and self._secret_key is not None
            self._lean = LeanGetter(
                bucket=self.bucket, endpoint=self.endpoint, region=self.region, access_key=self._access_key,
                secret_key=self._secret_key, session_token=self._session_token,
                max_connections=self._max_pool_connections, connect_timeout=self.retry.connect_timeout,
                read_timeout=self.retry.read_timeout)
        return self._lean

    async def close(self) -> None:
        self._closed = True
        stack, self._exit_stack, self._client = self._exit_stack, None, None
        lean, self._lean = self._lean, None
        if lean is not None:
            await lean.close()
        if stack is not None:
            await stack.aclose()

    # -- the choke point ----------------------------------------------------------------------

    async def _call(self, op: str, key: str,
                    attempt: Callable[[Any], Awaitable[tuple[T, int, int]]], *, bytes_out: int = 0) -> T:
        """Run ``attempt(client) -> (value, bytes received, HTTP status)`` under the retry policy."""
        client = await self._get_client()
        backoff = Backoff(self.retry)
        try:
            while True:
                backoff.attempts += 1
                try:
                    # The total bound holds even inside an attempt: a stuck request is cut at it.
                    async with asyncio.timeout(backoff.remaining()):
                        value, bytes_in, status = await attempt(client)
                    break
                except Exception as e:
                    if not is_transient(e):
                        raise
                    delay = backoff.next_delay()
                    if delay is None:
                        raise
                    await asyncio.sleep(delay)
        except Exception as e:
            final = self._translate(op, key, e, backoff)
            missing = isinstance(final, NotFound)
            self._account(op, key, backoff, status=error_code(e), error=not missing, not_found=missing,
                          level=logging.WARNING if isinstance(final, StorageError) else logging.DEBUG)
            raise final from e
        self._account(op, key, backoff, status=str(status), bytes_in=bytes_in, bytes_out=bytes_out)
        return value

    def _account(self, op: str, key: str, backoff: Backoff, *, status: str, bytes_in: int = 0,
                 bytes_out: int = 0, error: bool = False, not_found: bool = False,
                 level: int = logging.DEBUG) -> None:
        seconds = backoff.elapsed()
        self.stats.record(op, attempts=backoff.attempts, seconds=seconds, bytes_in=bytes_in,
                          bytes_out=bytes_out, error=error, not_found=not_found)
        if log.isEnabledFor(level):
            log.log(level, "s3 %s %s/%s bytes=%d status=%s attempts=%d ms=%.1f", op, self.bucket, key,
                    bytes_in or bytes_out, status, backoff.attempts, seconds * 1000)

    def _translate(self, op: str, key: str, exc: Exception, backoff: Backoff) -> ArtifactsError:
        """The core error for the final failure of ``op``; the caller chains ``exc`` as its cause."""
        path = None if op == "list" else key
        code, status = error_code(exc), http_status(exc)
        where = f"S3 {op} on {self.describe()}"
        tries = f"after {backoff.attempts} attempt(s) in {backoff.elapsed():.1f} s"
        if code in NOT_FOUND_CODES:
            return NotFound("no such object", path=path)
        if code in PRECONDITION_CODES or status == 412:
            return Exists("an object already exists under this key", path=path)
        if code == "NoSuchBucket":
            return StorageError(f"{where} failed: bucket {self.bucket!r} does not exist", path=path,
                                hint="check the bucket in the storage URL, or create the bucket")
        if code in ACCESS_CODES or status == 403:
            return PermissionDenied(f"{where} was refused: {code}", path=path,
                                    hint="check the access key, secret key and session token; "
                                         "a revoked session is refused too")
        if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
            return ConfigError(f"{where}: no S3 credentials found",
                               hint="set ARTIFACTS_S3_ACCESS_KEY_ID and ARTIFACTS_S3_SECRET_ACCESS_KEY")
        if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError, ProxyConnectionError)):
            target = self.endpoint or f"the AWS S3 endpoint of region {self.region}"
            return StorageError(f"{where} failed {tries}: could not connect to {target}", path=path,
                                hint="check that the S3 server is running and that the endpoint URL, "
                                     "port, DNS and firewall let this host reach it")
        if isinstance(exc, (ReadTimeoutError, TimeoutError)):
            return StorageError(f"{where} timed out {tries}", path=path,
                                hint="the S3 server accepted the connection but did not answer in time")
        detail = f"{code} (HTTP {status})" if status is not None else code
        if is_transient(exc):
            return StorageError(f"{where} failed {tries}: {detail}", path=path,
                                hint="the S3 server is overloaded or failing; retries were exhausted")
        return StorageError(f"{where} failed: {detail}", path=path)

    # -- the operations ------------------------------------------------------------------------

    async def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        check_range(offset, length)
        if length == 0:
            await self.head(key)  # an empty range needs no body, but a missing key is still missing
            return b""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        ranged = offset > 0 or length is not None
        if ranged:
            last = "" if length is None else str(offset + length - 1)
            kwargs["Range"] = f"bytes={offset}-{last}"

        lean = self._getter()

        async def attempt(client: Any) -> tuple[bytes, int, int]:
            try:
                if lean is not None:
                    data, status = await lean.get(key, kwargs.get("Range"))
                else:
                    resp = await client.get_object(**kwargs)
                    async with resp["Body"] as body:
                        data = await body.read()
                    status = resp["ResponseMetadata"]["HTTPStatusCode"]
            except ClientError as e:
                # 416: the range starts at or past the end (or the object is empty): S3 semantics
                # say the object exists, so the clipped answer is no bytes.
                if error_code(e) == "InvalidRange" or http_status(e) == 416:
                    return b"", 0, 416
                raise
            if ranged and status == 200:  # a server that ignores Range sends it all: cut it here
                data = data[offset:None if length is None else offset + length]
            return data, len(data), status

        return await self._keyed("get", key, attempt)

    async def put(self, key: str, data: bytes | bytearray | memoryview, *, if_absent: bool = False) -> None:
        body = data if isinstance(data, bytes) else bytes(data)  # immutable: a retry resends it as is
        conditional = if_absent and self.conditional_puts

        async def attempt(client: Any) -> tuple[None, int, int]:
            extra = {"IfNoneMatch": "*"} if conditional else {}
            resp = await client.put_object(Bucket=self.bucket, Key=key, Body=body, **extra)
            return None, 0, resp["ResponseMetadata"]["HTTPStatusCode"]

        try:
            await self._keyed("put", key, attempt, bytes_out=len(body))
        except StorageError as e:
            if not (conditional and e.__cause__ is not None
                    and (error_code(e.__cause__) in UNSUPPORTED_CODES or http_status(e.__cause__) == 501)):
                raise
            # An S3 server without conditional writes: keep working, unprotected, and say so once.
            self.conditional_puts = False
            log.warning("%s does not support conditional PUTs (If-None-Match); block objects are "
                        "kept apart by unique slice ids only", self.describe())
            await self.put(key, body)

    async def delete(self, key: str) -> None:
        async def attempt(client: Any) -> tuple[None, int, int]:
            try:
                resp = await client.delete_object(Bucket=self.bucket, Key=key)
            except ClientError as e:
                if error_code(e) in NOT_FOUND_CODES:  # S3 answers 204; some servers say 404
                    return None, 0, 404
                raise
            return None, 0, resp["ResponseMetadata"]["HTTPStatusCode"]

        await self._keyed("delete", key, attempt)

    async def head(self, key: str) -> ObjectInfo:
        async def attempt(client: Any) -> tuple[ObjectInfo, int, int]:
            resp = await client.head_object(Bucket=self.bucket, Key=key)
            info = ObjectInfo(key, int(resp["ContentLength"]), resp["LastModified"].timestamp())
            return info, 0, resp["ResponseMetadata"]["HTTPStatusCode"]

        return await self._keyed("head", key, attempt)

    async def list(self, prefix: str = "", start_after: str = "", limit: int = LIST_PAGE) -> ListPage:
        if limit < 1:
            raise InvalidArgument(f"list limit must be at least 1, not {limit}")
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "MaxKeys": min(limit, LIST_PAGE)}
        if prefix:
            kwargs["Prefix"] = prefix
        # A start_after below the prefix excludes nothing under it; leaving it out also sidesteps
        # servers that answer such a marker with an empty page (SeaweedFS issue #11321).
        if start_after and start_after >= prefix:
            kwargs["StartAfter"] = start_after

        async def attempt(client: Any) -> tuple[ListPage, int, int]:
            resp = await client.list_objects_v2(**kwargs)
            objects = [ObjectInfo(o["Key"], int(o["Size"]), o["LastModified"].timestamp())
                       for o in resp.get("Contents", ())]
            page = ListPage(objects, bool(resp.get("IsTruncated")))
            return page, 0, resp["ResponseMetadata"]["HTTPStatusCode"]

        return await self._call("list", prefix, attempt)

    async def _keyed(self, op: str, key: str, attempt: Callable[[Any], Awaitable[tuple[T, int, int]]],
                     *, bytes_out: int = 0) -> T:
        if not key:
            raise InvalidArgument("an object key may not be empty")
        return await self._call(op, key, attempt, bytes_out=bytes_out)
