"""Managed storage: one bucket, one prefix per workspace, short-lived scoped S3 credentials per user.

``ManagedStorage`` is the interface the service uses; ``SeaweedIAMStorage`` implements it with
the IAM API SeaweedFS serves on its S3 port (``weed server -s3 -s3.iam.readOnly=false``). An AWS
implementation would mint the same credentials with STS ``AssumeRole`` and an inline session
policy (expiry enforced by AWS) and delete nothing on revoke but the role session's reach.

Layout: workspace ``<id>`` owns ``<bucket>/<root>ws<id>/`` — the trailing slash is part of every
policy resource and list condition, so ``ws1``'s credentials never reach ``ws10/``.

Each credential is its own IAM user (named like the Redis ACL user it goes with: ``fmt-<id>``,
``ms-<id>``) with one access key and one inline policy of *Allow* statements only (SeaweedFS
rejects ``Deny`` with MalformedPolicyDocument):

- objects: ``s3:GetObject`` (+ ``s3:PutObject``, ``s3:DeleteObject`` and the multipart actions for
  read-write) on ``arn:aws:s3:::<bucket>/<prefix>/*``;
- listing: ``s3:ListBucket`` on ``arn:aws:s3:::<bucket>`` with ``StringLike s3:prefix <prefix>/*``.

Found by experiment on SeaweedFS 4.x (docs/orchestrator.md lists them): access keys have no
expiry, so ``expires_at`` is enforced by the orchestrator's reaper; a user may mint MORE access
keys for itself through the IAM API without any policy, so revocation deletes the whole user (all
its keys), not just the key we issued; ``DeleteUser`` succeeds with keys and policies attached and
``DeleteAccessKey`` of an unknown key succeeds (we still delete keys and policy first, as AWS
requires); revocation takes effect within tens of milliseconds; ``ListBuckets`` is allowed to
every identity (bucket names are visible, contents are not).
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, Protocol

import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from artifacts_orchestrator.errors import StorageProvisioningFailed
from artifacts_orchestrator.models import StorageCredentials, storage_url

log = logging.getLogger("artifacts.orchestrator.storage")

#: Object actions by mode (multipart uploads are PutObject in S3's policy language; SeaweedFS
#: refuses ``s3:ListMultipartUploadParts`` and ``s3:ListBucketMultipartUploads`` as unknown).
READ_ACTIONS = ("s3:GetObject",)
WRITE_ACTIONS = ("s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload")
USER_PREFIXES = ("fmt-", "ms-")
#: DeleteObjects takes at most 1000 keys per request (the S3 limit).
DELETE_BATCH = 1000
POLICY_NAME = "artifacts-scope"


class ManagedStorage(Protocol):
    bucket: str
    endpoint: str
    region: str

    def prefix_for(self, workspace_id: int) -> str: ...
    def ensure_bucket(self) -> None: ...
    def issue(self, user: str, prefix: str, *, read_only: bool, expires_at: float) -> StorageCredentials: ...
    def revoke(self, user: str) -> None: ...
    def users(self) -> set[str]: ...
    def delete_prefix(self, prefix: str) -> int: ...


def scope_policy(bucket: str, prefix: str, *, read_only: bool) -> dict[str, Any]:
    """Allow-only policy confined to ``bucket/prefix/`` (``prefix`` without its trailing slash)."""
    prefix = prefix.rstrip("/")
    actions = list(READ_ACTIONS) + ([] if read_only else list(WRITE_ACTIONS))
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": actions, "Resource": [f"arn:aws:s3:::{bucket}/{prefix}/*"]},
        {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [f"arn:aws:s3:::{bucket}"],
         "Condition": {"StringLike": {"s3:prefix": [f"{prefix}/*"]}}},
    ]}


class SeaweedIAMStorage:
    """``ManagedStorage`` over SeaweedFS's S3 + IAM API, as its admin identity."""

    def __init__(self, *, endpoint: str, bucket: str, access_key: str, secret_key: str,
                 region: str = "us-east-1", root: str = "", public_endpoint: str | None = None) -> None:
        self.bucket = bucket
        self.admin_endpoint = endpoint
        self.endpoint = public_endpoint or endpoint
        self.region = region
        self.root = (root.strip("/") + "/") if root.strip("/") else ""
        session = botocore.session.get_session()
        config = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3, "mode": "standard"},
                        connect_timeout=5, read_timeout=30)
        kw = dict(endpoint_url=endpoint, region_name=region, aws_access_key_id=access_key,
                  aws_secret_access_key=secret_key, config=config)
        self._iam = session.create_client("iam", **kw)
        self._s3 = session.create_client("s3", **kw)
        self._lock = threading.Lock()  # IAM changes are read-modify-write of one config in SeaweedFS

    def prefix_for(self, workspace_id: int) -> str:
        return f"{self.root}ws{workspace_id}"

    def _call(self, what: str, op, *, missing_ok: bool = False) -> Any:
        """The one choke point: logs the operation (never a secret) and maps failures."""
        try:
            return op()
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            if missing_ok and code in ("NoSuchEntity", "NoSuchKey", "404"):
                return None
            log.warning("storage %s failed: %s", what, code or e.response.get("Error"))
            raise StorageProvisioningFailed(f"the managed storage refused to {what} ({code})") from e
        except BotoCoreError as e:
            log.warning("storage %s failed: %s", what, type(e).__name__)
            raise StorageProvisioningFailed(f"cannot reach the managed storage to {what}") from e

    def ensure_bucket(self) -> None:
        try:
            self._s3.head_bucket(Bucket=self.bucket)
        except ClientError:
            self._call("create the managed bucket", lambda: self._s3.create_bucket(Bucket=self.bucket))

    def issue(self, user: str, prefix: str, *, read_only: bool, expires_at: float) -> StorageCredentials:
        """A fresh IAM user with one key and the scope policy (replacing any previous ``user``)."""
        policy = json.dumps(scope_policy(self.bucket, prefix, read_only=read_only))
        with self._lock:
            self._revoke_locked(user)
            self._call("create a storage user", lambda: self._iam.create_user(UserName=user))
            try:
                self._call("attach the scope policy", lambda: self._iam.put_user_policy(
                    UserName=user, PolicyName=POLICY_NAME, PolicyDocument=policy))
                key = self._call("create an access key",
                                 lambda: self._iam.create_access_key(UserName=user))["AccessKey"]
            except BaseException:
                self._revoke_locked(user)
                raise
        log.info("issued storage credentials %s (%s) for %s/%s", user, "ro" if read_only else "rw",
                 self.bucket, prefix)
        return StorageCredentials(access_key_id=key["AccessKeyId"], secret_access_key=key["SecretAccessKey"],
                                  expires_at=expires_at)

    def revoke(self, user: str) -> None:
        """Delete every access key (including ones the user minted itself), the policy, the user."""
        with self._lock:
            self._revoke_locked(user)

    def _revoke_locked(self, user: str) -> None:
        keys = self._call("list access keys", lambda: self._iam.list_access_keys(UserName=user),
                          missing_ok=True)
        if keys is None:
            return
        for k in keys.get("AccessKeyMetadata", []):
            self._call("delete an access key", lambda k=k: self._iam.delete_access_key(
                UserName=user, AccessKeyId=k["AccessKeyId"]), missing_ok=True)
        self._call("delete the scope policy", lambda: self._iam.delete_user_policy(
            UserName=user, PolicyName=POLICY_NAME), missing_ok=True)
        self._call("delete a storage user", lambda: self._iam.delete_user(UserName=user), missing_ok=True)
        log.info("revoked storage credentials %s", user)

    def users(self) -> set[str]:
        found: set[str] = set()
        marker = None
        while True:
            kw: dict[str, str] = {"Marker": marker} if marker else {}
            page = self._call("list storage users", lambda kw=kw: self._iam.list_users(**kw))
            found |= {u["UserName"] for u in page.get("Users", []) if u["UserName"].startswith(USER_PREFIXES)}
            marker = page.get("Marker")
            if not page.get("IsTruncated") or not marker:
                return found

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix/`` (best effort per object, as the seed says)."""
        prefix = prefix.rstrip("/") + "/"
        deleted = 0
        token = None
        while True:
            kw: dict[str, str] = {"ContinuationToken": token} if token else {}
            page = self._call("list the workspace's objects", lambda kw=kw: self._s3.list_objects_v2(
                Bucket=self.bucket, Prefix=prefix, MaxKeys=DELETE_BATCH, **kw))
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                reply = self._call("delete the workspace's objects", lambda keys=keys: self._s3.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True}))
                errors = reply.get("Errors", [])
                for err in errors[:3]:  # a sample: a whole page of failures would flood the log
                    log.warning("could not delete %s: %s", err.get("Key"), err.get("Code"))
                deleted += len(keys) - len(errors)
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return deleted

    def storage_url(self, prefix: str) -> str:
        """The secret-free ``s3://`` URL of a workspace prefix, as clients are told it."""
        return storage_url(self.bucket, prefix, self.endpoint, self.region)
