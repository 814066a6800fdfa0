"""``mount`` and ``unmount`` (SPEC.md §2.6, §5): a mount session from the orchestrator, then FUSE.

``mount <workspace> <mountpoint> [--foreground] [--read-only]``:

1. the mountpoint is checked first (``artifacts_fuse``'s guard: SPEC.md §5.4's message for a busy
   one), so a mistake costs no session;
2. BYO: the host's S3 credentials are resolved (env, then the cache, field by field) — a missing
   key fails here, before a session exists;
3. the orchestrator issues a session (``ro`` for ``--read-only``: Redis and S3 refuse its writes);
4. ``artifacts_fuse.mount`` gets a ``MountSettings`` carrying the session's Redis URL and the S3
   keys (managed: the session's own) through its settings pipe — never argv, never a file;
5. a record of the session (ids and names only, no secret) is kept under the state directory, so
   ``unmount`` revokes the session once the kernel mount is gone. A failed mount revokes at once.

A mount the bucket refuses (the host's BYO keys are wrong) exits 7, like every storage-credential
failure, with what to check.

Sessions are requested for ``SESSION_TTL`` and the mount process renews its session at about half
its remaining life with the session's renewal token (artifacts_orchestrator/renewal.py), for as
long as the API key that opened it is not revoked: a mount lives for months. A refused renewal
ends it at the session's expiry with EACCES, as a revocation does.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket

from artifacts_cli import auth
from artifacts_cli.config import (
    CliError,
    as_env,
    config_path,
    resolve_byo_credentials,
    scoped_env,
    state_path,
    write_private,
)
from artifacts_cli.refs import check_ref

#: Seconds a mount session lives between renewals: the orchestrator's upper bound (7 days). The
#: mount renews at half of it, so an orchestrator outage of up to 3.5 days costs no mount.
SESSION_TTL = 7 * 24 * 3600
#: The knob file of ``--cache-profile custom`` (docs/profiles.md lists the knobs).
CUSTOM_PROFILE = "profile.toml"


def custom_profile_file(profile: str) -> str | None:
    if profile != "custom":
        return None
    path = config_path(CUSTOM_PROFILE)
    if not path.exists():
        raise CliError(f"the custom cache profile reads its knobs from {path}, which does not exist",
                       "write the knobs there (TOML; see docs/profiles.md) or use interactive/benchmark",
                       exit_code=2)
    return str(path)


def check_mountpoint(mountpoint: str) -> str:
    from artifacts_fuse.mount import check_mountpoint as fuse_check

    return fuse_check(mountpoint)


# -- session records ---------------------------------------------------------------------------

def _record_path(mountpoint: str):
    key = hashlib.sha256(os.path.abspath(mountpoint).encode()).hexdigest()[:16]
    return state_path("sessions", f"{key}.json")


def _save_record(mountpoint: str, workspace: str, session_id: str, url: str) -> None:
    write_private(_record_path(mountpoint), json.dumps({"mountpoint": os.path.abspath(mountpoint),
                                                        "workspace": workspace, "session": session_id,
                                                        "orchestrator_url": url}))


def _load_record(mountpoint: str) -> dict | None:
    try:
        return json.loads(_record_path(mountpoint).read_text())
    except (OSError, ValueError):
        return None


def local_mounts_of(identifier: str) -> list[str]:
    from artifacts_fuse.mountinfo import is_mounted

    found = []
    for p in sorted(state_path("sessions").glob("*.json")):
        with contextlib.suppress(OSError, ValueError):
            rec = json.loads(p.read_text())
            if rec.get("workspace") == identifier and is_mounted(rec["mountpoint"]):
                found.append(rec["mountpoint"])
    return found


def _revoke(out, workspace: str, session_id: str) -> bool:
    try:
        auth.client().sessions.revoke(workspace, session_id)
        return True
    except Exception as e:  # the mount is already gone: say so, but do not fail the command
        out.warn(f"could not revoke mount session {session_id} of {workspace}: {e}")
        return False


# -- mount -------------------------------------------------------------------------------------

def session_settings(grant, workspace_name: str, *, custom: str | None, orchestrator_url: str = ""):
    """``MountSettings`` for a session grant (managed S3 keys in ``env``; BYO from the host; the
    renewal token, with the orchestrator's URL, for the mount to renew its session)."""
    from artifacts_core.config import profile_config
    from artifacts_fuse import MountSettings

    if grant.storage.credentials is not None:
        c = grant.storage.credentials
        env = {"ARTIFACTS_S3_ACCESS_KEY_ID": c.access_key_id, "ARTIFACTS_S3_SECRET_ACCESS_KEY": c.secret_access_key}
        if c.session_token:
            env["ARTIFACTS_S3_SESSION_TOKEN"] = c.session_token
    else:
        env = as_env(resolve_byo_credentials())
    profile = grant.cache_profile
    config = None
    if profile == "custom":
        custom = custom or custom_profile_file("custom")
        config = profile_config("custom", custom_file=custom)
    renewal = grant.renewal if orchestrator_url else None
    return MountSettings(meta_url=grant.meta.url, key_prefix=grant.meta.key_prefix, workspace=workspace_name,
                         storage_url=grant.storage.url, profile=profile if profile != "custom" else "interactive",
                         config=config, env=env, renewal_url=orchestrator_url if renewal else "",
                         renewal_token=renewal.token if renewal else "",
                         renewal_ttl=renewal.ttl_seconds if renewal else 0.0)


def mount_workspace(args, ref: str, mountpoint: str, *, foreground: bool, read_only: bool,
                    custom: str | None = None) -> None:
    import artifacts_fuse

    out = args.out
    check_ref(ref)
    mp = check_mountpoint(mountpoint)
    api = auth.client()
    ws = api.workspaces.get(ref)
    if ws.backend == "byo":
        resolve_byo_credentials()  # fail before a session exists
    grant = api.sessions.create(ws.identifier, mode="ro" if read_only else "rw", ttl_seconds=SESSION_TTL,
                                host=socket.gethostname(), mountpoint=mp)
    sid = grant.session.id
    try:
        settings = session_settings(grant, ws.name, custom=custom, orchestrator_url=api.base_url)
        out.info(f"Mounting {mp} ...")
        out.detail(f"session {sid} ({grant.session.mode}, Redis user {grant.meta.user}) for {ws.identifier}")
        _save_record(mp, ws.identifier, sid, api.base_url)
        artifacts_fuse.mount(settings, mp, foreground=foreground, read_only=read_only)
    except BaseException as e:
        refusal = _storage_refusal(e, grant, ws)  # asked while the session still stands
        _revoke(out, ws.identifier, sid)
        with contextlib.suppress(OSError):
            _record_path(mp).unlink()
        if refusal is not None:
            raise refusal from None
        raise
    if foreground:  # returns once unmounted
        _revoke(out, ws.identifier, sid)
        with contextlib.suppress(OSError):
            _record_path(mp).unlink()
        out.info(f"Unmounted {mp}.")
        return
    out.result(f"Mounted {ws.identifier} at {mp}{' (read-only)' if read_only else ''}.",
               data=None if args.command == "workspace" else {"workspace": ws.identifier, "mountpoint": mp,
                                                                "session": sid, "mode": grant.session.mode})


def _storage_refusal(e: BaseException, grant, ws) -> CliError | None:
    """For a mount that failed: a ``CliError`` (exit 7) when the bucket refuses the mount's S3
    keys — the FUSE process only reports text, so the CLI asks the bucket itself, once."""
    from artifacts_core.errors import ArtifactsError, PermissionDenied
    from artifacts_core.volume import check_storage
    from artifacts_fuse.mount import MountError

    if not isinstance(e, MountError):
        return None
    try:
        with scoped_env(session_settings(grant, ws.name, custom=None).env):
            check_storage(grant.storage.url, ws.volume_name)
    except PermissionDenied as refused:
        if ws.backend == "byo":
            hint = ("check this host's keys: ARTIFACTS_S3_ACCESS_KEY_ID / ARTIFACTS_S3_SECRET_ACCESS_KEY win over "
                    "the cache (`artifacts storage show`); save new ones with `artifacts storage set`")
        else:
            hint = "the managed storage refused the session's keys: retry in a few seconds"
        return CliError(f"the bucket refused the mount's S3 credentials: {refused.strerror}", hint,
                        exit_code=7, code="storage_refused")
    except (ArtifactsError, CliError):
        return None
    return None


def cmd_mount(args) -> int:
    if args.ticket_file:  # a platform runtime (issue 8): the ticket is the only credential
        from artifacts_cli.ticket import cmd_mount_ticket

        return cmd_mount_ticket(args)
    if not args.mountpoint:
        raise CliError("mount needs a workspace and a mountpoint", "artifacts mount <workspace> <mountpoint>",
                       exit_code=2)
    mount_workspace(args, args.workspace, args.mountpoint, foreground=args.foreground, read_only=args.read_only)
    return 0


def cmd_unmount(args) -> int:
    from artifacts_fuse.mount import unmount
    from artifacts_fuse.mountinfo import is_mounted

    mp = os.path.abspath(args.mountpoint)
    record = _load_record(mp)
    if is_mounted(mp) or record is None:
        # MountError "path … is not mounted" when there is nothing at all, "… is busy" (exit 8)
        # while processes use it and --force is not given.
        unmount(mp, force=getattr(args, "force", False))
    # A foreground mount revokes its own session once served (and removes the record first).
    if record is not None and _record_path(mp).exists():
        _revoke(args.out, record["workspace"], record["session"])
        with contextlib.suppress(OSError):
            _record_path(mp).unlink()
    args.out.result(f"Unmounted {mp}.", data={"mountpoint": mp, "session_revoked": record is not None})
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("mount", help="mount a workspace at a local path")
    p.add_argument("workspace", nargs="?", help="name, handle/name or artifacts://handle/name")
    p.add_argument("mountpoint", nargs="?", help="an empty directory to mount it on")
    p.add_argument("--ticket-file", metavar="FILE",
                   help="mount with a platform's mount ticket (mode 0600), e.g. /run/tonbo/artifacts/mount-ticket.json")
    p.add_argument("-f", "--foreground", action="store_true", help="serve in this process until unmounted")
    p.add_argument("--read-only", action="store_true", help="a read-only session (enforced by Redis and S3)")
    p.set_defaults(func=cmd_mount)
    p = sub.add_parser("unmount", help="unmount cleanly (and end the mount's session); refused while "
                                       "processes use the mount, as umount does")
    p.add_argument("mountpoint", help="where the workspace is mounted")
    p.add_argument("--force", action="store_true",
                   help="unmount even while processes use it: what their open files hold is committed, "
                        "then the mount is detached and their further calls fail (ENOTCONN)")
    p.set_defaults(func=cmd_unmount)
