"""The check a custom S3 location passes before an agent's workspace is put on it.

Seed 004 lists the four permissions an agent's key needs: ``s3:GetObject``, ``s3:PutObject``,
``s3:DeleteObject``, ``s3:ListBucket``. ``check_custom_s3`` proves each one with a real request
under the agent's prefix, in an order where every step can tell its own failure apart:

1. ``ListObjectsV2`` of ``<prefix>/`` (one key): no answer at all is ``unreachable`` (wrong
   endpoint, DNS, TLS, a closed port); ``NoSuchBucket`` is ``bucket``; a region complaint
   (``AuthorizationHeaderMalformed``, ``PermanentRedirect``, ``IllegalLocationConstraintException``,
   or an ``x-amz-bucket-region`` header naming another region) is ``region``, naming the bucket's
   region when the server says it; ``InvalidAccessKeyId`` / ``SignatureDoesNotMatch`` is
   ``credentials``; ``AccessDenied`` means ``s3:ListBucket`` is missing;
2. ``PutObject`` of a uniquely named probe object ``<prefix>/.artifacts-check-<uuid>``;
3. ``GetObject`` of it (its bytes must come back);
4. ``DeleteObject`` of it.

Every ``AccessDenied`` names its permission; the check goes on after one (so a key lacking two
permissions hears of both), except that without PutObject there is no probe object to get or
delete: those two are then reported as unchecked. The probe object is always deleted when the
key can; when it cannot (no DeleteObject), the result names the leftover key so the person can
remove it (with the admin's keys, or after fixing the policy).

Facts found on SeaweedFS 4.x's IAM (the local stack's S3 gateway): its policies distinguish the
four actions exactly as AWS does (a key without ``s3:DeleteObject`` can put and get but gets
``AccessDenied`` on delete); a key scoped to one bucket gets ``AccessDenied``, not
``NoSuchBucket``, for a bucket that does not exist (so step 1's message for ``AccessDenied``
mentions both causes); SeaweedFS ignores the signing region, so the ``region`` branch is written
to AWS's documented answers and is not exercised by the local stack.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

log = logging.getLogger("artifacts.orchestrator.s3check")

PERMISSIONS = ("s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket")
#: A check should answer while the person waits on the form: 5 s to connect, 15 s per request,
#: one attempt (a retry would double the wait for an endpoint that is simply wrong).
CONNECT_TIMEOUT, READ_TIMEOUT = 5, 15
_REGION_CODES = {"AuthorizationHeaderMalformed", "PermanentRedirect", "IllegalLocationConstraintException",
                 "InvalidRegion"}
_KEY_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"}


class CheckResult(dict):
    """``{"ok", "problem", "message", "missing_permissions", "unchecked_permissions",
    "leftover_key"}``: JSON-ready, no secret in it."""


def aws_endpoint(region: str) -> str:
    """The endpoint used when a custom location leaves it blank (seed 004: blank = AWS S3)."""
    return f"https://s3.{region}.amazonaws.com"


def _code(e: ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code", ""))


def _bucket_region(e: ClientError) -> str:
    headers = e.response.get("ResponseMetadata", {}).get("HTTPHeaders", {}) or {}
    return headers.get("x-amz-bucket-region") or str(e.response.get("Error", {}).get("Region", "") or "")


def _fail(problem: str, message: str, **extra: Any) -> CheckResult:
    return CheckResult(ok=False, problem=problem, message=message, missing_permissions=extra.get("missing", []),
                       unchecked_permissions=extra.get("unchecked", []), leftover_key=extra.get("leftover"))


def check_custom_s3(*, endpoint: str, region: str, bucket: str, access_key_id: str, secret_access_key: str,
                    prefix: str) -> CheckResult:
    """Probe ``bucket`` at ``endpoint`` with the key: a ``CheckResult`` (never raises for what
    the storage answers; a bug is still an exception)."""
    config = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1, "mode": "standard"},
                    connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT)
    s3 = botocore.session.get_session().create_client(
        "s3", endpoint_url=endpoint, region_name=region, aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key, config=config)
    where = f"{endpoint} (bucket {bucket!r}, region {region!r})"
    prefix = prefix.strip("/") + "/"
    missing: list[str] = []
    try:
        try:
            s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
        except ClientError as e:
            code = _code(e)
            if code == "NoSuchBucket":
                return _fail("bucket", f"the bucket {bucket!r} does not exist at {endpoint}: create it first, "
                             "or check its name")
            if code in _REGION_CODES or (_bucket_region(e) and _bucket_region(e) != region):
                actual = _bucket_region(e)
                return _fail("region", f"the bucket {bucket!r} is not in region {region!r}"
                             + (f": it is in {actual!r}" if actual else "; check the region"))
            if code in _KEY_CODES:
                return _fail("credentials", f"{endpoint} does not accept this access key id and secret "
                             f"({code}): check both")
            if code not in ("AccessDenied", "403"):
                return _fail("storage", f"{where} answered {code or 'an error'} to a listing")
            missing.append("s3:ListBucket")
        probe = f"{prefix}.artifacts-check-{uuid.uuid4().hex}"
        body = b"artifacts permission check"
        try:
            s3.put_object(Bucket=bucket, Key=probe, Body=body)
        except ClientError as e:
            if _code(e) not in ("AccessDenied", "403"):
                return _fail("storage", f"{where} answered {_code(e) or 'an error'} to a write")
            missing.append("s3:PutObject")
            return _result(missing, unchecked=["s3:GetObject", "s3:DeleteObject"], bucket=bucket)
        try:
            if s3.get_object(Bucket=bucket, Key=probe)["Body"].read() != body:
                return _fail("storage", f"{where} returned other bytes than were written")
        except ClientError as e:
            if _code(e) not in ("AccessDenied", "403"):
                return _fail("storage", f"{where} answered {_code(e) or 'an error'} to a read")
            missing.append("s3:GetObject")
        leftover = None
        try:
            s3.delete_object(Bucket=bucket, Key=probe)
        except ClientError as e:
            if _code(e) not in ("AccessDenied", "403"):
                return _fail("storage", f"{where} answered {_code(e) or 'an error'} to a delete",
                             leftover=probe)
            missing.append("s3:DeleteObject")
            leftover = probe
        return _result(missing, bucket=bucket, leftover=leftover)
    except (EndpointConnectionError, BotoCoreError) as e:
        log.info("custom S3 check: %s unreachable (%s)", endpoint, type(e).__name__)
        return _fail("unreachable", f"cannot reach {endpoint} ({type(e).__name__}): check the endpoint URL, "
                     "or leave it blank for AWS S3")
    finally:
        s3.close()


def _result(missing: list[str], *, bucket: str, unchecked: list[str] | None = None,
            leftover: str | None = None) -> CheckResult:
    if not missing:
        return CheckResult(ok=True, problem=None, message="the key has all four permissions",
                           missing_permissions=[], unchecked_permissions=[], leftover_key=None)
    names = ", ".join(missing)
    text = f"the access key lacks {names} on bucket {bucket!r}"
    if "s3:ListBucket" in missing:
        text += " (or the bucket does not exist and the key may not see it)"
    if unchecked:
        text += f"; {', '.join(unchecked)} could not be checked without a probe object"
    if leftover:
        text += f"; the probe object {leftover!r} could not be deleted: remove it with a key that can"
    text += ". Grant the four actions of the policy shown on the form, then try again."
    return _fail("permissions", text, missing=missing, unchecked=unchecked or [], leftover=leftover)
