"""``workspace create|list|show|delete`` (SPEC.md §2.4-2.5, seeds 000-001).

Create runs the three phases of seed 000, each behind a spinner with the seed's line:

1. reserve — ``POST /workspaces``; a 409 ``workspace_exists`` whose ``existing`` is
   ``pending_format`` is resumed (``resume: true``: same prefixes, fresh format credentials),
   which ``-v`` reports as ``Resuming pending_format workspace artifacts://h/n``;
2. format — in this process, with the format-scope Redis user and, for managed, the S3 keys of
   the Phase-1 answer (put into this process's ``ARTIFACTS_S3_*`` only for the call, never argv);
   BYO uses the host's credentials (env, then the cache, field by field);
3. confirm — ``format-completed``.

Everything that can be checked locally is checked before Phase 1 (the name, the backend, the BYO
location and credentials, a given mountpoint), so a mistake reserves nothing. A location flag
(``--bucket``, ``--endpoint``, ``--region``, ``--prefix``) means BYO — seed 001's command has no
``--backend`` — and is refused with ``--backend managed``; it is never ignored. A failure or a
Ctrl-C after Phase 1 leaves a ``pending_format`` workspace that re-running the same command
resumes, and the message says so. After a BYO create the credentials that came from the
environment are cached (seed 002's message).

A volume's objects live under ``<bucket>/<prefix>/<volume name>/``; ``show`` prints that place and
``delete`` of a BYO workspace, which leaves the objects in the user's bucket, says where they are.
``delete --yes`` starts the orchestrator's delete flow (202) and waits until it reports
``deleted`` (keys swept, sessions revoked, managed objects removed).
"""

from __future__ import annotations

import os
from typing import TypedDict

from redis.exceptions import RedisError

from artifacts_cli import auth
from artifacts_cli import mount as mount_cmd
from artifacts_cli.config import (
    CliError,
    as_env,
    env_storage_fields,
    read_byo_cache,
    resolve_byo_credentials,
    scoped_env,
    write_byo_cache,
)
from artifacts_cli.errors import Interrupted
from artifacts_cli.output import iso_time, to_plain
from artifacts_cli.refs import check_name, check_ref
from artifacts_orchestrator.client import wait_for_status
from artifacts_orchestrator.errors import WorkspaceExists

#: Seconds ``delete`` waits for the background flow: sweeping a large workspace's keys and
#: managed objects takes seconds, not minutes; past this the command says how to follow up.
DELETE_WAIT = 120.0
BACKENDS = ("managed", "byo")
#: The flags that name a BYO location: any of them means --backend byo.
LOCATION_FLAGS = ("bucket", "endpoint", "region", "prefix")


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


def _backend(args) -> str:
    """``--backend`` (or ``ARTIFACTS_BACKEND``); a location flag implies BYO, and is refused with
    ``managed`` rather than ignored."""
    chosen = args.backend or os.environ.get("ARTIFACTS_BACKEND") or None
    if chosen is not None and chosen not in BACKENDS:
        raise CliError(f"unknown backend {chosen!r} (from ARTIFACTS_BACKEND)", "use managed or byo", exit_code=2)
    given = [f"--{f}" for f in LOCATION_FLAGS if getattr(args, f) is not None]
    if not given:
        return chosen or "managed"
    if chosen == "managed":
        raise CliError(f"{' and '.join(given)} name a bucket of your own, which needs --backend byo; "
                       "a managed workspace lives in the managed bucket",
                       f"drop {' and '.join(given)} for a managed workspace, or pass --backend byo", exit_code=2)
    if chosen is None:
        args.out.info(f"{given[0]} given: creating a BYO workspace in your bucket (--backend byo).")
    return "byo"


def objects_location(w) -> str:
    """Where a workspace's objects are: ``s3://bucket/prefix/volume/`` (the volume's own prefix)."""
    prefix = w.storage.prefix.strip("/")
    return f"s3://{w.storage.bucket}/{prefix + '/' if prefix else ''}{w.volume_name}/"


def _create_phases(out, api, name: str, backend: str, location: ByoLocation, creds: dict[str, str],
                   cache_profile: str, journal_reads: bool = False):
    """Phases 1-3 of seed 000; the active workspace. ``journal_reads``: keep the read audit."""
    from artifacts_core.volume import format_volume

    what = "provisioning storage credentials" if backend == "managed" else "reserving its metadata namespace"
    out.detail(f"Phase 1: reserving {name} on the orchestrator")
    with out.phase(f"Creating workspace {name} ({what})…"):
        try:
            r = api.workspaces.create(name, backend=backend, cache_profile=cache_profile, **location)
        except WorkspaceExists as e:
            existing = e.existing or {}
            if existing.get("status") != "pending_format":
                raise
            if existing.get("backend", backend) != backend:
                raise CliError(f"{name} is a pending_format {existing['backend']} workspace",
                               f"re-run the create with --backend {existing['backend']} (and its location), "
                               f"or delete it: `artifacts workspace delete {name} --yes`", exit_code=5) from None
            out.detail(f"Resuming pending_format workspace {existing.get('identifier', name)}")
            r = api.workspaces.create(name, backend=backend, cache_profile=cache_profile, resume=True,
                                      **location)
        ws = r.workspace
    out.detail(f"Workspace {ws.identifier} reserved (status={ws.status}, key prefix={ws.metadata_key_prefix})")

    if r.storage.credentials is not None:
        format_env = {"ARTIFACTS_S3_ACCESS_KEY_ID": r.storage.credentials.access_key_id,
                      "ARTIFACTS_S3_SECRET_ACCESS_KEY": r.storage.credentials.secret_access_key}
        if r.storage.credentials.session_token:
            format_env["ARTIFACTS_S3_SESSION_TOKEN"] = r.storage.credentials.session_token
    else:
        format_env = as_env(creds)
    how = "managed credentials from Phase 1" if backend == "managed" else "local BYO credentials"
    out.detail(f"Phase 2: formatting {ws.volume_name} with {how}")
    with out.phase(f"Formatting workspace {name}…"):
        try:
            with scoped_env(format_env):
                format_volume(r.format.url, r.storage.url, ws.volume_name, key_prefix=r.format.key_prefix,
                              journal_reads=journal_reads)
        except (OSError, RedisError) as e:  # the bucket or the format user refused, or went away
            raise CliError(f"formatting {ws.identifier} failed: {getattr(e, 'strerror', None) or e}",
                           "fix the cause and re-run the same command: it resumes the pending workspace",
                           exit_code=7 if backend == "byo" else 1) from None
    out.detail("Phase 3: confirming format completion with the orchestrator")
    with out.phase(f"Activating workspace {name}…"):
        ws = api.workspaces.format_completed(ws.identifier)
    return ws


def cmd_create(args) -> int:
    out, name = args.out, args.name
    check_name(name)
    backend = _backend(args)
    location: ByoLocation = {}
    creds: dict[str, str] = {}
    if backend == "byo":
        location = _byo_location(args)
        creds = resolve_byo_credentials()
    custom = mount_cmd.custom_profile_file(args.cache_profile)  # fails early if missing
    if args.mountpoint:
        mount_cmd.check_mountpoint(args.mountpoint)
    api = auth.client()
    try:
        ws = _create_phases(out, api, name, backend, location, creds, args.cache_profile, args.journal_reads)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted while creating {name}",
                          "re-run the same command: it resumes where this one stopped "
                          f"(or start over: `artifacts workspace delete {name} --yes`)") from None
    out.result(f"Workspace {name} is active.", data=None)
    if backend == "byo" and env_storage_fields():
        path = write_byo_cache({**read_byo_cache(), **env_storage_fields()})
        out.info(f"Cached BYO credentials at {path} (mode 0600);\nfuture mounts will use them automatically.")
    if args.mountpoint:
        mount_cmd.mount_workspace(args, ws.identifier, args.mountpoint, foreground=False, read_only=False,
                                  custom=custom)
    out.result(data=ws)
    return 0


def cmd_list(args) -> int:
    result = auth.client().workspaces.list(include_deleted=args.all)
    rows = [(w.identifier, w.status, w.backend, w.storage.bucket, iso_time(w.created_at)) for w in result.workspaces]
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
             f"Created:             {iso_time(w.created_at)}",
             "Storage:",
             f"  bucket:   {s.bucket}",
             f"  endpoint: {s.endpoint}",
             f"  region:   {s.region or '-'}",
             f"  prefix:   {s.prefix or '(bucket root)'}",
             f"  objects:  {objects_location(w)}"]
    if w.deleted_at:
        lines.append(f"Deleted:             {iso_time(w.deleted_at)}")
    args.out.result("\n".join(lines), data={**to_plain(w), "objects": objects_location(w)})
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
    data = to_plain(ws)
    text = f"Workspace {ws.identifier} deleted."
    if ws.backend == "byo":  # SPEC.md §2.5: a BYO bucket is never touched; say what stays where
        left = objects_location(ws)
        data["objects_left"] = left
        text += (f"\nIts objects stay in your bucket, under {left} (endpoint {ws.storage.endpoint}); "
                 f"delete them when you no longer need them, e.g. "
                 f"`aws s3 rm --recursive {left} --endpoint-url {ws.storage.endpoint}`.")
    args.out.result(text, data=data)
    return 0


def add_parser(sub) -> None:
    ws = sub.add_parser("workspace", help="create, list, show and delete workspaces")
    ws.set_defaults(parser=ws)
    wsub = ws.add_subparsers(dest="workspace_command", metavar="<subcommand>")
    p = wsub.add_parser("create", help="create a workspace (and mount it if a mountpoint is given)")
    p.add_argument("name", help="the new workspace's name: 1-63 letters, digits, '-' or '_'")
    p.add_argument("mountpoint", nargs="?", help="mount it here once it is active (an empty directory)")
    p.add_argument("--backend", choices=BACKENDS, help="managed (the default) or byo: your own bucket, "
                   "implied by --bucket, --endpoint, --region or --prefix")
    p.add_argument("--bucket", help="BYO bucket (ARTIFACTS_S3_BUCKET)")
    p.add_argument("--endpoint", help="BYO S3 endpoint URL (ARTIFACTS_S3_ENDPOINT)")
    p.add_argument("--region", help="BYO region (ARTIFACTS_S3_REGION, AWS_REGION, AWS_DEFAULT_REGION)")
    p.add_argument("--prefix", help="BYO key prefix in the bucket (ARTIFACTS_S3_PREFIX; default the root)")
    p.add_argument("--journal-reads", action="store_true",
                   help="keep the read audit: every open for reading in the journal (docs/journal.md)")
    p.add_argument("--cache-profile", choices=("interactive", "benchmark", "custom"), default="interactive",
                   help="client cache settings of its mounts (docs/profiles.md); custom reads profile.toml")
    p.set_defaults(func=cmd_create)
    p = wsub.add_parser("list", help="list your workspaces")
    p.add_argument("--all", action="store_true", help="include deleted workspaces")
    p.set_defaults(func=cmd_list)
    p = wsub.add_parser("show", help="one workspace's details")
    p.add_argument("workspace", help="name, handle/name or artifacts://handle/name")
    p.set_defaults(func=cmd_show)
    p = wsub.add_parser("delete", help="delete a workspace and all its files")
    p.add_argument("workspace", help="name, handle/name or artifacts://handle/name")
    p.add_argument("--yes", action="store_true", help="confirm: delete it and all its files")
    p.set_defaults(func=cmd_delete)
