"""``artifacts import SOURCE WORKSPACE[:PATH] [--dry-run]``: bring an existing tree into a workspace.

SOURCE is a local directory or an S3 prefix, ``s3://bucket/prefix`` (``--endpoint`` for a
server other than AWS, ``--region``; the keys are the BYO chain's: ``ARTIFACTS_S3_*``, then the
cache of ``artifacts storage set``). The tree is copied as ``sync`` copies (``trees.py``): only
what the workspace lacks or holds differently, so an import that stopped is resumed by running it
again, and nothing in the workspace is deleted. An S3 prefix reads as a tree: ``/`` separates
directories, each object is a file (mode 0644, its ``LastModified`` as mtime), a key ending with
``/`` (a console's "folder") is a directory; objects are read, never written or deleted.

Objects are copied through the workspace's own format (blocks in its bucket), not adopted in
place: a workspace's data must be its immutable blocks, so the source stays as it was and can be
removed once the import is checked.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import Any

from artifacts_cli.config import CliError, resolve_byo_credentials
from artifacts_cli.errors import EXIT_STORAGE, EXIT_USAGE
from artifacts_cli.plans import plan_sync
from artifacts_cli.sync import show_plan
from artifacts_cli.trees import Location, Workspaces, split_location, workspace_location

#: The mode an object gets as a file, and a prefix as a directory: what `cp` makes with umask 022.
OBJECT_MODE, PREFIX_MODE = 0o644, 0o755
#: Keys asked for per listing page (S3's maximum).
PAGE = 1000


def _stat(mode: int, size: int, mtime_ns: int) -> os.stat_result:
    sec = mtime_ns // 10**9
    return os.stat_result((mode, 0, 0, 1, 0, 0, size, sec, sec, sec),
                          {"st_atime": mtime_ns / 1e9, "st_mtime": mtime_ns / 1e9, "st_ctime": mtime_ns / 1e9,
                           "st_atime_ns": mtime_ns, "st_mtime_ns": mtime_ns, "st_ctime_ns": mtime_ns})


class S3Tree:
    """A bucket read as a tree, with the path API's method names (reading ones only)."""

    label = "s3"

    def __init__(self, client: Any, bucket: str) -> None:
        self.client = client
        self.bucket = bucket
        self._seen: dict[str, os.stat_result] = {}  # filled by listdir: a walk costs no HEAD per object

    def _fail(self, e: Exception, key: str) -> OSError:
        code = getattr(e, "response", {}).get("Error", {}).get("Code", "")
        if code in ("NoSuchKey", "404", "NoSuchBucket"):
            return FileNotFoundError(errno.ENOENT, f"no such object or bucket ({code})", key)
        if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return PermissionError(errno.EACCES, f"the bucket refused these credentials ({code})", key)
        return OSError(errno.EIO, str(e), key)

    def stat(self, path: str, *, follow_symlinks: bool = True) -> os.stat_result:
        key = path.strip("/")
        if key in self._seen:
            return self._seen[key]
        if key:
            try:
                head = self.client.head_object(Bucket=self.bucket, Key=key)
                return _stat(stat.S_IFREG | OBJECT_MODE, head["ContentLength"],
                             int(head["LastModified"].timestamp() * 10**9))
            except Exception as e:
                err = self._fail(e, key)
                if not isinstance(err, FileNotFoundError):
                    raise err from None
        try:
            page = self.client.list_objects_v2(Bucket=self.bucket, Prefix=key + "/" if key else "", MaxKeys=1)
        except Exception as e:
            raise self._fail(e, key) from None
        if key and not page.get("KeyCount"):
            raise FileNotFoundError(errno.ENOENT, "no object and no prefix of that name", key)
        return _stat(stat.S_IFDIR | PREFIX_MODE, 0, 0)

    def listdir(self, path: str) -> list[str]:
        key = path.strip("/")
        prefix = key + "/" if key else ""
        names: list[str] = []
        token: dict[str, str] = {}
        while True:
            try:
                page = self.client.list_objects_v2(Bucket=self.bucket, Prefix=prefix, Delimiter="/",
                                                   MaxKeys=PAGE, **token)
            except Exception as e:
                raise self._fail(e, key) from None
            for p in page.get("CommonPrefixes", []):
                name = p["Prefix"][len(prefix):].rstrip("/")
                if name:
                    names.append(name)
                    self._seen[prefix + name] = _stat(stat.S_IFDIR | PREFIX_MODE, 0, 0)
            for o in page.get("Contents", []):
                name = o["Key"][len(prefix):]
                if name and "/" not in name:
                    names.append(name)
                    self._seen[prefix + name] = _stat(stat.S_IFREG | OBJECT_MODE, o["Size"],
                                                      int(o["LastModified"].timestamp() * 10**9))
            if not page.get("IsTruncated"):
                return names
            token = {"ContinuationToken": page["NextContinuationToken"]}

    def open(self, path: str, mode: str = "rb") -> Any:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=path.strip("/"))["Body"]
        except Exception as e:
            raise self._fail(e, path.strip("/")) from None

    def readlink(self, path: str) -> str:
        raise OSError(errno.EINVAL, "objects are not symlinks", path)


def s3_location(url: str, *, endpoint: str | None, region: str | None) -> Location:
    import botocore.session
    from botocore.config import Config

    bucket, _, prefix = url[len("s3://"):].partition("/")
    if not bucket:
        raise CliError(f"{url!r} names no bucket", "write s3://bucket/prefix", exit_code=EXIT_USAGE)
    creds = resolve_byo_credentials()
    client = botocore.session.get_session().create_client(
        "s3", endpoint_url=endpoint or os.environ.get("ARTIFACTS_S3_ENDPOINT") or None,
        region_name=region or creds.get("REGION") or "us-east-1",
        aws_access_key_id=creds["ACCESS_KEY_ID"], aws_secret_access_key=creds["SECRET_ACCESS_KEY"],
        aws_session_token=creds.get("SESSION_TOKEN") or None,
        config=Config(s3={"addressing_style": "path"} if endpoint else {}, retries={"max_attempts": 5}))
    return Location(S3Tree(client, bucket), "/" + prefix.strip("/"), url.rstrip("/"))


def cmd_import(args) -> int:
    if split_location(args.workspace)[0] is None and (args.workspace.startswith(("/", ".", "~"))
                                                      or ":" in args.workspace):
        raise CliError(f"{args.workspace!r} is not a workspace", "write WORKSPACE or WORKSPACE:PATH",
                       exit_code=EXIT_USAGE)
    with Workspaces(read_only=args.dry_run) as ws:
        if args.source.startswith("s3://"):
            src = s3_location(args.source, endpoint=args.endpoint, region=args.region)
        elif split_location(args.source)[0] is not None:
            raise CliError(f"{args.source} is a workspace path", "copy between workspaces with `artifacts sync`",
                           exit_code=EXIT_USAGE)
        else:
            src = ws.locate(args.source)
        dst = ws.locate(workspace_location(args.workspace))
        try:
            plan = plan_sync(src, dst, delete=False)
            show_plan(args.out, plan, dry_run=args.dry_run, verb="Imported")
        except CliError as e:
            if e.code == "EACCES" and isinstance(src.tree, S3Tree):
                e.exit_code = EXIT_STORAGE
                e.hint = "check ARTIFACTS_S3_ACCESS_KEY_ID/SECRET_ACCESS_KEY (or `artifacts storage show`) and --endpoint"
            raise
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("import", help="copy a local tree or an S3 prefix into a workspace (resumable)")
    p.add_argument("source", help="a local directory, or s3://bucket/prefix (keys: ARTIFACTS_S3_* or the BYO cache)")
    p.add_argument("workspace", help="WORKSPACE or WORKSPACE:PATH to import into (made when missing)")
    p.add_argument("--endpoint", help="the S3 endpoint URL of the source (default: ARTIFACTS_S3_ENDPOINT, else AWS)")
    p.add_argument("--region", help="the source bucket's region (default: the BYO chain's, else us-east-1)")
    p.add_argument("--dry-run", action="store_true", help="print what would be copied; copy nothing")
    p.set_defaults(func=cmd_import)

