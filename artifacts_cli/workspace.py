"""``workspace create|list|show|delete`` (SPEC.md §2.4-2.5, seeds 000-001).

Create runs the three phases of seed 000, each behind a spinner with the seed's line:

1. reserve — ``POST /workspaces``; a 409 ``workspace_exists`` whose ``existing`` is
   ``pending_format`` is resumed (``resume: true``: same prefixes, fresh format credentials),
   which ``-v`` reports as ``Resuming pending_format workspace artifacts://h/n``;
2. format — in this process, with the format-scope Redis user and, for managed, the S3 keys of
   the Phase-1 answer (put into this process's ``ARTIFACTS_S3_*`` only for the call, never argv);
   BYO uses the host's credentials (env, then the cache, field by field);
3. confirm — ``format-completed``.

Everything that can be checked locally is checked before Phase 1 (the name, the BYO location and
credentials, a given mountpoint), so a mistake reserves nothing. A failure after Phase 1 leaves a
``pending_format`` workspace that re-running the same command resumes. After a BYO create the
credentials that came from the environment are cached (seed 002's message).

``delete --yes`` starts the orchestrator's delete flow (202) and waits until it reports
``deleted`` (keys swept, sessions revoked, managed objects removed).
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import TypedDict

from redis.exceptions import RedisError

from artifacts_cli import auth
from artifacts_cli import mount as mount_cmd
from artifacts_cli.config import (
    CliError,
    env_storage_fields,
    read_byo_cache,
    resolve_byo_credentials,
    write_byo_cache,
)
from artifacts_cli.refs import check_name, check_ref
from artifacts_orchestrator.client import wait_for_status
from artifacts_orchestrator.errors import WorkspaceExists

#: Seconds ``delete`` waits for the background flow: sweeping a large workspace's keys and
#: managed objects takes seconds, not minutes; past this the command says how to follow up.
DELETE_WAIT = 120.0


@contextlib.contextmanager
def s3_env(values: dict[str, str]):
    """``ARTIFACTS_S3_*`` set in this process for the body only (the format step reads them)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class ByoLocation(TypedDict, total=False):
    """Where a BYO workspace's objects live: ``workspaces.create``'s keyword arguments (none for a
    managed workspace)."""

    bucket: str
    endpoint: str
    region: str
    prefix: str


def _byo_location(args) -> ByoLocation:
    env = os.environ
    bucket = args.bucket or env.get("ARTIFACTS_S3_BUCKET", "")
    endpoint = args.endpoint or env.get("ARTIFACTS_S3_ENDPOINT", "")
    region = (args.region or env.get("ARTIFACTS_S3_REGION") or env.get("AWS_REGION")
              or env.get("AWS_DEFAULT_REGION") or read_byo_cache().get("REGION", ""))
    prefix = args.prefix if args.prefix is not None else env.get("ARTIFACTS_S3_PREFIX", "")
    missing = [f for f, v in (("--bucket", bucket), ("--endpoint", endpoint)) if not v]
    if missing:
        raise CliError(f"--backend byo needs {' and '.join(missing)}",
                       "pass them, or set ARTIFACTS_S3_BUCKET / ARTIFACTS_S3_ENDPOINT", exit_code=2)
    return {"bucket": bucket, "endpoint": endpoint, "region": region, "prefix": prefix}


def cmd_create(args) -> int:
    from artifacts_core.volume import format_volume

    out, name = args.out, args.name
    check_name(name)
    backend = args.backend or os.environ.get("ARTIFACTS_BACKEND") or "managed"
    location: ByoLocation = {}
    creds: dict[str, str] = {}
    if backend == "byo":
        location = _byo_location(args)
        creds = resolve_byo_credentials()
    custom = mount_cmd.custom_profile_file(args.cache_profile)  # fails early if missing
    if args.mountpoint:
        mount_cmd.check_mountpoint(args.mountpoint)
    api = auth.client()

    out.detail(f"Phase 1: reserving {name} on the orchestrator")
    with out.phase(f"Creating workspace {name} (provisioning storage credentials)…"):
        try:
            r = api.workspaces.create(name, backend=backend, cache_profile=args.cache_profile, **location)
        except WorkspaceExists as e:
            existing = e.existing or {}
            if existing.get("status") != "pending_format":
                raise
            if existing.get("backend", backend) != backend:
                raise CliError(f"{name} is a pending_format {existing['backend']} workspace",
                               f"re-run the create with --backend {existing['backend']} (and its location), "
                               f"or delete it: `artifacts workspace delete {name} --yes`", exit_code=5) from None
            out.detail(f"Resuming pending_format workspace {existing.get('identifier', name)}")
            r = api.workspaces.create(name, backend=backend, cache_profile=args.cache_profile, resume=True,
                                      **location)
        ws = r.workspace
    out.detail(f"Workspace {ws.identifier} reserved (status={ws.status}, key prefix={ws.metadata_key_prefix})")

    if r.storage.credentials is not None:
        format_env = {"ARTIFACTS_S3_ACCESS_KEY_ID": r.storage.credentials.access_key_id,
                      "ARTIFACTS_S3_SECRET_ACCESS_KEY": r.storage.credentials.secret_access_key}
        if r.storage.credentials.session_token:
            format_env["ARTIFACTS_S3_SESSION_TOKEN"] = r.storage.credentials.session_token
    else:
        from artifacts_cli.config import as_env

        format_env = as_env(creds)
    how = "managed credentials from Phase 1" if backend == "managed" else "local BYO credentials"
    out.detail(f"Phase 2: formatting {ws.volume_name} with {how}")
    with out.phase(f"Formatting workspace {name}…"):
        try:
            with s3_env(format_env):
                format_volume(r.format.url, r.storage.url, ws.volume_name, key_prefix=r.format.key_prefix)
        except (OSError, RedisError) as e:  # the bucket or the format user refused, or went away
            raise CliError(f"formatting {ws.identifier} failed: {getattr(e, 'strerror', None) or e}",
                           "fix the cause and re-run the same command: it resumes the pending workspace",
                           exit_code=7 if backend == "byo" else 1) from None
    out.detail("Phase 3: confirming format completion with the orchestrator")
    with out.phase(f"Activating workspace {name}…"):
        ws = api.workspaces.format_completed(ws.identifier)
    out.result(f"Workspace {name} is active.", data=None)
    if backend == "byo" and env_storage_fields():
        path = write_byo_cache({**read_byo_cache(), **env_storage_fields()})
        out.info(f"Cached BYO credentials at {path} (mode 0600);\nfuture mounts will use them automatically.")
    if args.mountpoint:
        mount_cmd.mount_workspace(args, ws.identifier, args.mountpoint, foreground=False, read_only=False,
                                  custom=custom)
    out.result(data=ws)
    return 0


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)) if ts else "-"


def cmd_list(args) -> int:
    result = auth.client().workspaces.list(include_deleted=args.all)
    rows = [(w.identifier, w.status, w.backend, w.storage.bucket, _when(w.created_at)) for w in result.workspaces]
    if args.out.json or not rows:
        # An empty list prints as JSON even without --format json (SPEC.md §2.3).
        args.out.json = True
        args.out.result(data=result)
        return 0
    args.out.table(("IDENTIFIER", "STATUS", "BACKEND", "BUCKET", "CREATED"), rows)
    return 0


def cmd_show(args) -> int:
    check_ref(args.workspace)
    w = auth.client().workspaces.get(args.workspace)
    s = w.storage
    lines = [f"Workspace:           {w.identifier}",
             f"Status:              {w.status}",
             f"Backend:             {w.backend}",
             f"Volume name:         {w.volume_name}",
             f"Metadata key prefix: {w.metadata_key_prefix}",
             f"Cache profile:       {w.cache_profile}",
             f"Created:             {_when(w.created_at)}",
             "Storage:",
             f"  bucket:   {s.bucket}",
             f"  endpoint: {s.endpoint}",
             f"  region:   {s.region or '-'}",
             f"  prefix:   {s.prefix or '(bucket root)'}"]
    if w.deleted_at:
        lines.append(f"Deleted:             {_when(w.deleted_at)}")
    args.out.result("\n".join(lines), data=w)
    return 0


def cmd_delete(args) -> int:
    check_ref(args.workspace)
    if not args.yes:
        raise CliError(f"deleting {args.workspace} removes all its files; nothing asks twice",
                       f"re-run with --yes: `artifacts workspace delete {args.workspace} --yes`", exit_code=2)
    api = auth.client()
    with args.out.phase(f"Deleting workspace {args.workspace}…"):
        ws = api.workspaces.delete(args.workspace)
        try:
            ws = wait_for_status(api, ws.identifier, "deleted", timeout=DELETE_WAIT, interval=0.1)
        except TimeoutError:
            raise CliError(f"{ws.identifier} is still being deleted",
                           f"check later with `artifacts workspace show {args.workspace}`", exit_code=1) from None
    for mp in mount_cmd.local_mounts_of(ws.identifier):
        args.out.warn(f"{mp} still mounts the deleted workspace (every operation now fails); "
                      f"run `artifacts unmount {mp}`")
    args.out.result(f"Workspace {ws.identifier} deleted.", data=ws)
    return 0


def add_parser(sub) -> None:
    ws = sub.add_parser("workspace", help="create, list, show and delete workspaces")
    ws.set_defaults(parser=ws)
    wsub = ws.add_subparsers(dest="workspace_command", metavar="<subcommand>")
    p = wsub.add_parser("create", help="create a workspace (and mount it if a mountpoint is given)")
    p.add_argument("name")
    p.add_argument("mountpoint", nargs="?")
    p.add_argument("--backend", choices=("managed", "byo"), help="default managed")
    p.add_argument("--bucket", help="BYO bucket (ARTIFACTS_S3_BUCKET)")
    p.add_argument("--endpoint", help="BYO S3 endpoint URL (ARTIFACTS_S3_ENDPOINT)")
    p.add_argument("--region", help="BYO region (ARTIFACTS_S3_REGION, AWS_REGION, AWS_DEFAULT_REGION)")
    p.add_argument("--prefix", help="BYO key prefix in the bucket (ARTIFACTS_S3_PREFIX; default the root)")
    p.add_argument("--cache-profile", choices=("interactive", "benchmark", "custom"), default="interactive")
    p.set_defaults(func=cmd_create)
    p = wsub.add_parser("list", help="list your workspaces")
    p.add_argument("--all", action="store_true", help="include deleted workspaces")
    p.set_defaults(func=cmd_list)
    p = wsub.add_parser("show", help="one workspace's details")
    p.add_argument("workspace", help="name, handle/name or artifacts://handle/name")
    p.set_defaults(func=cmd_show)
    p = wsub.add_parser("delete", help="delete a workspace and all its files")
    p.add_argument("workspace")
    p.add_argument("--yes", action="store_true", help="confirm")
    p.set_defaults(func=cmd_delete)
