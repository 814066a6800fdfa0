"""``artifacts mount --ticket-file FILE MOUNTPOINT``: what a platform's runtime runs (seed 003, step 8).

The runtime holds a mount ticket (``/run/tonbo/artifacts/mount-ticket.json``), never the
platform's API key. ``mount_with_ticket``:

1. refuses a ticket file that group or others may read (a leaked ticket mounts a workspace until it
   is used or expires), or that is not a ticket;
2. sends the ticket to the orchestrator named inside it (``iss``; ``ARTIFACTS_ORCHESTRATOR_URL``
   overrides it for a runtime that reaches the orchestrator by another address) at
   ``POST /mount-tickets/exchange`` — with no ``Authorization`` header at all — and refuses to send
   it in clear text (``http://``) to anything but a loopback address;
3. mounts with the session it gets back (``artifacts_fuse.mount``): the Redis URL with the
   session's password and the S3 keys travel to the mount processes through a pipe, never in
   argv, the environment or a file; ``ro`` tickets mount read-only (and Redis and S3 refuse writes
   whatever the kernel is told).

A ticket is single-use: a remount needs a new ticket (the orchestrator answers ``ticket_used``).
``artifacts mount --ticket-file`` (mount.py) calls ``cmd_mount_ticket``; the module also runs alone:
``python -m artifacts_cli.ticket --ticket-file FILE MOUNTPOINT [--workspace handle/name] [--foreground]``.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import socket
import stat
import sys
from urllib.parse import urlsplit

from artifacts_cli.config import CliError
from artifacts_orchestrator.client import URL_ENV, Artifacts
from artifacts_orchestrator.errors import ApiError, TicketInvalid
from artifacts_orchestrator.tickets import MAX_TICKET_BYTES, unverified_claims

#: Where seed 003 injects the ticket.
DEFAULT_TICKET_FILE = "/run/tonbo/artifacts/mount-ticket.json"
#: A ticket file is a few hundred bytes; a larger one is refused before it is parsed.
MAX_FILE_BYTES = 4 * MAX_TICKET_BYTES


#: The CLI's exit codes (main.py) for the ticket path: 2 usage, 3 authentication, 5 conflict.
EXIT_USAGE, EXIT_AUTH, EXIT_CONFLICT = 2, 3, 5
#: Refusals of an exchange -> (exit code, hint): the runtime cannot fix these, its platform can.
TICKET_ERRORS = {
    "ticket_invalid": (EXIT_AUTH, "the ticket was altered or its signing key retired: ask the platform for a new one"),
    "ticket_expired": (EXIT_AUTH, "ask the platform for a new ticket"),
    "ticket_used": (EXIT_CONFLICT, "a ticket mounts once; a remount needs a new ticket from the platform"),
    "grant_revoked": (EXIT_AUTH, "this runtime's access was revoked or has expired"),
    "forbidden": (EXIT_AUTH, "a ticket mounts only the workspace it was issued for"),
    "workspace_not_active": (EXIT_CONFLICT, "the workspace is being deleted (or not created yet)"),
}


class TicketFileError(Exception):
    """The ticket file cannot be used; the message says why and what to do."""


def read_ticket_file(path: str) -> dict:
    """The ticket in ``path`` (the bare ticket or the whole ``{"mount_ticket": …}`` response)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not hang the mount
    except OSError as e:
        raise TicketFileError(f"cannot read the mount ticket {path}: {e.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())  # of what was opened (a Kubernetes secret file is a symlink)
        if not stat.S_ISREG(st.st_mode):
            raise TicketFileError(f"the mount ticket {path} is not a regular file")
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise TicketFileError(f"the mount ticket {path} is accessible by group or others "
                                  f"(mode {stat.S_IMODE(st.st_mode):04o}); it is a credential: "
                                  f"run `chmod 600 {path}` (or defaultMode: 0400 for a secret volume)")
        raw = f.read(MAX_FILE_BYTES + 1)
    if len(raw) > MAX_FILE_BYTES:
        raise TicketFileError(f"{path} is too large to be a mount ticket")
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        raise TicketFileError(f"{path} is not JSON; it must hold the mount ticket the platform created") from None
    ticket = doc.get("mount_ticket", doc) if isinstance(doc, dict) else doc
    if not isinstance(ticket, dict):
        raise TicketFileError(f"{path} does not hold a mount ticket")
    return ticket


def _exchange_url(iss: str) -> str:
    url = (os.environ.get(URL_ENV) or iss).rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TicketFileError(f"the ticket names no usable orchestrator URL ({url!r}); set {URL_ENV}")
    if parts.scheme == "http":
        try:
            loopback = parts.hostname == "localhost" or ipaddress.ip_address(parts.hostname).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise TicketFileError(f"refusing to send a mount ticket over plain http to {parts.hostname}; "
                                  "the orchestrator must be reached over https (or loopback)")
    return url


def mount_from_ticket(out, path: str, mountpoint: str, *, foreground: bool = False,
                      workspace: str | None = None, read_only: bool = False) -> dict:
    """Exchange the ticket in ``path`` and mount its workspace at ``mountpoint``. Raises
    ``CliError`` / ``ApiError`` / ``MountError`` (the CLI turns them into a message and an exit
    code); returns what was mounted."""
    from artifacts_fuse import MountSettings, mount
    from artifacts_fuse.mount import check_mountpoint

    try:
        ticket = read_ticket_file(path)
        claims = unverified_claims(ticket)
        url = _exchange_url(claims.iss)
    except TicketFileError as e:
        raise CliError(str(e), exit_code=EXIT_USAGE) from None
    except TicketInvalid as e:
        raise CliError(f"{path}: {e.message}", "it must hold the mount_ticket the platform created",
                       exit_code=EXIT_USAGE) from None
    mp = check_mountpoint(mountpoint)  # a busy or missing mountpoint costs no ticket
    api = Artifacts("", base_url=url)  # never an API key in a runtime
    try:
        got = api.platform.exchange_mount_ticket(ticket, workspace=workspace, mode="ro" if read_only else None,
                                                 host=socket.gethostname(), mountpoint=mp)
    except ApiError as e:
        if e.code in TICKET_ERRORS:
            exit_code, hint = TICKET_ERRORS[e.code]
            raise CliError(f"{e.code}: {e.message}", hint, exit_code=exit_code) from None
        raise
    s = got.mount
    env = {}
    if s.storage.credentials is not None:
        env = {"ARTIFACTS_S3_ACCESS_KEY_ID": s.storage.credentials.access_key_id,
               "ARTIFACTS_S3_SECRET_ACCESS_KEY": s.storage.credentials.secret_access_key}
        if s.storage.credentials.session_token:
            env["ARTIFACTS_S3_SESSION_TOKEN"] = s.storage.credentials.session_token
    # A "custom" profile's knob file lives on the machine that made the workspace, not here.
    profile = s.cache_profile if s.cache_profile != "custom" else "interactive"
    renewal = s.renewal  # the runtime renews its session with it while the grant is live
    settings = MountSettings(meta_url=s.meta.url, key_prefix=s.meta.key_prefix, workspace=s.volume_name,
                             storage_url=s.storage.url, profile=profile, env=env,
                             renewal_url=url if renewal else "", renewal_token=renewal.token if renewal else "",
                             renewal_ttl=renewal.ttl_seconds if renewal else 0.0)
    read_only = s.session.mode == "ro"
    out.info(f"Mounting artifacts://{got.workspace} at {mp} ({s.session.mode}; runtime {got.runtime_id} "
             f"of tenant {got.tenant}) ...")
    mount(settings, mp, foreground=foreground, read_only=read_only)
    return {"workspace": f"artifacts://{got.workspace}", "mountpoint": mp, "mode": s.session.mode,
            "session": s.session.id, "tenant": got.tenant, "runtime_id": got.runtime_id, "grant_id": got.grant_id}


def cmd_mount_ticket(args) -> int:
    """``artifacts mount --ticket-file FILE [WORKSPACE] MOUNTPOINT [--read-only]`` (mount.py hands
    over here); ``--read-only`` asks for a read-only session even with an ``rw`` ticket."""
    given = [a for a in (args.workspace, args.mountpoint) if a]
    if not given:
        raise CliError("mount --ticket-file needs a mountpoint", "artifacts mount --ticket-file FILE /mnt/work",
                       exit_code=EXIT_USAGE)
    workspace = given[0] if len(given) == 2 else None
    done = mount_from_ticket(args.out, args.ticket_file, given[-1], foreground=args.foreground,
                             workspace=workspace, read_only=args.read_only)
    if not args.foreground:
        args.out.result(f"Mounted {done['workspace']} at {done['mountpoint']}"
                        f"{' (read-only)' if done['mode'] == 'ro' else ''}.", data=done)
    return 0


def mount_with_ticket(path: str, mountpoint: str, foreground: bool = False, *,
                      workspace: str | None = None) -> int:
    """The same as a function returning the CLI's exit code (messages on stderr)."""
    from artifacts_cli.main import handle_error
    from artifacts_cli.output import Output

    out = Output()
    try:
        done = mount_from_ticket(out, path, mountpoint, foreground=foreground, workspace=workspace)
    except (Exception, KeyboardInterrupt) as e:
        return handle_error(e, out)
    if not foreground:
        out.result(f"Mounted {done['workspace']} at {done['mountpoint']}.")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m artifacts_cli.ticket",
                                     description="mount a workspace with a platform's mount ticket")
    parser.add_argument("--ticket-file", default=DEFAULT_TICKET_FILE)
    parser.add_argument("--workspace", help="refuse unless the ticket is for this handle/name")
    parser.add_argument("--foreground", action="store_true")
    parser.add_argument("mountpoint")
    args = parser.parse_args(argv)
    return mount_with_ticket(args.ticket_file, args.mountpoint, args.foreground, workspace=args.workspace)


if __name__ == "__main__":
    sys.exit(main())
