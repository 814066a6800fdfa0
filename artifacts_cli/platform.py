"""``artifacts platform tenant|grant|ticket …``: the platform calls of seed 003 from a shell.

::

    artifacts platform tenant create acme [--external-id cus_42] [--metadata '{"plan": "pro"}']
    artifacts platform tenant list | show acme
    artifacts platform grant create <workspace> --tenant acme [--runtime task-1] [--mode ro|rw] [--ttl 30d]
    artifacts platform grant list [--tenant acme] [--runtime task-1] [--workspace w] [--all]
    artifacts platform grant revoke <grant-id> | --tenant acme [--runtime task-1]
    artifacts platform ticket create --tenant acme --runtime task-1 --workspace w --ttl 1h [--mode ro] [--out FILE]

They run with the platform's own login (``TONBO_API_KEY`` or ``artifacts login``) on its backend,
never in a customer runtime. ``ticket create --out FILE`` writes the ticket 0600 (atomically; the
file the runtime's ``artifacts mount --ticket-file`` accepts); without ``--out`` the ticket's JSON
goes to stdout (``--format json``: the whole answer, with the grant and tenant). Durations are
seconds or a number with ``s``, ``m``, ``h`` or ``d`` (``90m``, ``24h``, ``30d``).

Error codes of the platform routes become the CLI's exit codes: not found 4, conflict 5, refused 3,
invalid 2 (main.py's table), with a hint where the fix is known.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import msgspec

from artifacts_cli import auth
from artifacts_cli.config import CliError, write_private
from artifacts_cli.output import iso_time
from artifacts_orchestrator.errors import ApiError

_DURATION_RE = re.compile(r"^(\d+)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
#: Platform error codes -> (exit code, hint), in main.py's numbering.
PLATFORM_ERRORS = {
    "tenant_not_found": (4, "list tenants with `artifacts platform tenant list`"),
    "grant_not_found": (4, "list grants with `artifacts platform grant list --all`"),
    "tenant_exists": (5, "tenant slugs are unique per account; `ticket create` and `grant create` reuse it"),
    "forbidden": (3, ""),
}


def duration(text: str) -> int:
    m = _DURATION_RE.match(text.strip())
    if not m:
        raise CliError(f"invalid duration {text!r}", "use seconds or a number with s, m, h or d (e.g. 1h, 30d)",
                       exit_code=2)
    return int(m.group(1)) * _UNITS[m.group(2)]


def _call(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except ApiError as e:
        if e.code in PLATFORM_ERRORS:
            code, hint = PLATFORM_ERRORS[e.code]
            raise CliError(f"{e.code}: {e.message}", hint, exit_code=code) from None
        raise


# -- tenants ---------------------------------------------------------------------------------------

def cmd_tenant_create(args) -> int:
    try:
        metadata = json.loads(args.metadata) if args.metadata else {}
    except ValueError:
        raise CliError("--metadata must be a JSON object", exit_code=2) from None
    if not isinstance(metadata, dict):
        raise CliError("--metadata must be a JSON object", exit_code=2)
    t = _call(auth.client().platform.create_tenant, args.slug, external_id=args.external_id, metadata=metadata)
    args.out.result(f"Created tenant {t.slug}.", data=t)
    return 0


def cmd_tenant_list(args) -> int:
    tenants = _call(auth.client().platform.list_tenants).tenants
    args.out.table(("SLUG", "EXTERNAL ID", "CREATED"),
                   [(t.slug, t.external_id or "-", iso_time(t.created_at)) for t in tenants], data={"tenants": tenants})
    return 0


def cmd_tenant_show(args) -> int:
    t = _call(auth.client().platform.get_tenant, args.slug)
    args.out.result(f"slug: {t.slug}\nexternal id: {t.external_id or '-'}\nmetadata: {json.dumps(t.metadata)}\n"
                    f"created: {iso_time(t.created_at)}", data=t)
    return 0


# -- grants ----------------------------------------------------------------------------------------

def cmd_grant_create(args) -> int:
    g = _call(auth.client().platform.create_access_grant, args.workspace, tenant_slug=args.tenant,
              runtime_id=args.runtime, mode=args.mode, ttl_seconds=duration(args.ttl) if args.ttl else None)
    scope = f"runtime {g.runtime_id}" if g.runtime_id else "every runtime"
    args.out.result(f"Granted {g.mode} on {g.workspace} to {scope} of tenant {g.tenant} ({g.id}"
                    f"{', expires ' + iso_time(g.expires_at) if g.expires_at else ''}).", data=g)
    return 0


def cmd_grant_list(args) -> int:
    grants = _call(auth.client().platform.list_access_grants, tenant_slug=args.tenant, runtime_id=args.runtime,
                   workspace=args.workspace, include_revoked=args.all).grants
    args.out.table(("ID", "WORKSPACE", "TENANT", "RUNTIME", "MODE", "EXPIRES", "STATUS"),
                   [(g.id, g.workspace, g.tenant, g.runtime_id or "*", g.mode, iso_time(g.expires_at), g.status)
                    for g in grants], data={"grants": grants})
    return 0


def cmd_grant_revoke(args) -> int:
    if bool(args.grant_id) == bool(args.tenant) or (args.runtime and not args.tenant):
        raise CliError("revoke one grant by id, or --tenant SLUG (the whole tenant) with an optional --runtime ID",
                       exit_code=2)
    done = _call(auth.client().platform.revoke_access_grants, grant_id=args.grant_id, tenant_slug=args.tenant,
                 runtime_id=args.runtime)
    args.out.result(f"Revoked {len(done.grants)} grant(s); {done.sessions_revoked} live mount session(s) ended, "
                    f"{done.tickets_voided} unused ticket(s) voided.", data=done)
    return 0


# -- tickets ---------------------------------------------------------------------------------------

def cmd_ticket_create(args) -> int:
    issued = _call(auth.client().platform.create_mount_ticket, args.tenant, args.runtime, workspace=args.workspace,
                   mode=args.mode, ttl_seconds=duration(args.ttl))
    ticket = msgspec.json.encode(issued.mount_ticket).decode()
    out = args.out
    if args.out_file:
        path = Path(args.out_file).expanduser().absolute()
        write_private(path, ticket + "\n")
        out.result(f"Wrote a mount ticket for runtime {args.runtime} of tenant {args.tenant} to {path} (0600); "
                   f"it mounts {issued.grant.workspace} ({args.mode}) once, until {iso_time(issued.expires_at)}.",
                   data={"path": str(path), "ticket_id": issued.ticket_id, "expires_at": issued.expires_at,
                         "grant": issued.grant, "tenant": issued.tenant})
        return 0
    if out.json:
        out.result(data=issued)
    else:
        print(ticket)
        out.info("Hint: --out FILE writes it with mode 0600; `artifacts mount --ticket-file` refuses a file "
                 "others can read.")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("platform", help="tenants, access grants and mount tickets (for platform backends)")
    p.set_defaults(parser=p)
    groups = p.add_subparsers(dest="platform_command", metavar="<tenant|grant|ticket>")

    tenant = groups.add_parser("tenant", help="your customers")
    tenant.set_defaults(parser=tenant)
    ts = tenant.add_subparsers(metavar="<create|list|show>")
    c = ts.add_parser("create", help="create a tenant (a slug that exists is a conflict)")
    c.add_argument("slug", help="1-63 of a-z, 0-9 and -")
    c.add_argument("--external-id", default="", help="your own customer id")
    c.add_argument("--metadata", help="a JSON object")
    c.set_defaults(func=cmd_tenant_create)
    ts.add_parser("list", help="your tenants").set_defaults(func=cmd_tenant_list)
    c = ts.add_parser("show", help="one tenant")
    c.add_argument("slug", help="the tenant's slug")
    c.set_defaults(func=cmd_tenant_show)

    grant = groups.add_parser("grant", help="who may mount which workspace")
    grant.set_defaults(parser=grant)
    gs = grant.add_subparsers(metavar="<create|list|revoke>")
    c = gs.add_parser("create", help="let a tenant (or one runtime) mount a workspace")
    c.add_argument("workspace", help="name, handle/name or artifacts://handle/name")
    c.add_argument("--tenant", required=True, help="the tenant's slug (created if missing)")
    c.add_argument("--runtime", help="only this runtime id (default: every runtime of the tenant)")
    c.add_argument("--mode", choices=("rw", "ro"), default="rw", help="what its mounts may do (default rw)")
    c.add_argument("--ttl", help="expire automatically after this long (e.g. 30d)")
    c.set_defaults(func=cmd_grant_create)
    c = gs.add_parser("list", help="live grants (--all: revoked and expired too)")
    c.add_argument("--tenant", help="only this tenant's grants")
    c.add_argument("--runtime", help="only this runtime's grants")
    c.add_argument("--workspace", help="only grants on this workspace")
    c.add_argument("--all", action="store_true", help="revoked and expired grants too")
    c.set_defaults(func=cmd_grant_list)
    c = gs.add_parser("revoke", help="revoke by id, a whole tenant, or one runtime; live mounts fail with EACCES")
    c.add_argument("grant_id", nargs="?", help="the grant to revoke (gr_…)")
    c.add_argument("--tenant", help="revoke every grant of this tenant")
    c.add_argument("--runtime", help="with --tenant: only this runtime's grants")
    c.set_defaults(func=cmd_grant_revoke)

    ticket = groups.add_parser("ticket", help="short-lived single-use mount tickets for runtimes")
    ticket.set_defaults(parser=ticket)
    ks = ticket.add_subparsers(metavar="<create>")
    c = ks.add_parser("create", help="a signed ticket (the tenant and runtime grant are made if missing)")
    c.add_argument("--tenant", required=True, help="the tenant's slug (created if missing)")
    c.add_argument("--runtime", required=True, help="the runtime id that will mount (a grant for it is "
                   "made if it has none)")
    c.add_argument("--workspace", required=True, help="name, handle/name or artifacts://handle/name")
    c.add_argument("--mode", choices=("rw", "ro"), default="rw", help="rw (default) or ro; at most the grant's")
    c.add_argument("--ttl", required=True, help="60s to 24h, e.g. 1h")
    c.add_argument("--out", dest="out_file", metavar="FILE", help="write the ticket here, mode 0600")
    c.set_defaults(func=cmd_ticket_create)
