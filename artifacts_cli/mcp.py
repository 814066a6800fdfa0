"""``mcp serve <workspace>``: a workspace's files as MCP tools over stdio (issue 6's server).

The CLI issues a mount session (``connect.workspace_session``; ``ro`` with ``--read-only``: only
the read-only tools are listed and Redis refuses writes anyway), puts the managed S3 keys (or the
host's BYO keys) into this process's ``ARTIFACTS_S3_*`` — never argv — and calls
``artifacts_agentfs.mcp_server.serve``, which opens the volume and serves until the client closes
stdin. The session is revoked after.

stdout belongs to the MCP protocol here: every message of this command goes to stderr.
"""

from __future__ import annotations

import os

from artifacts_cli.connect import workspace_session
from artifacts_cli.workspace import check_ref


def cmd_serve(args) -> int:
    from artifacts_agentfs import mcp_server

    check_ref(args.workspace)
    with workspace_session(args.workspace, read_only=args.read_only, label="(mcp)") as (grant, env):
        os.environ.update(env)
        args.out.info(f"Serving {grant.session.workspace} over MCP on stdio "
                      f"(session {grant.session.id}, {grant.session.mode})")
        profile = grant.cache_profile if grant.cache_profile != "custom" else "interactive"
        mcp_server.serve(mcp_server.Settings(meta_url=grant.meta.url, key_prefix=grant.meta.key_prefix,
                                             storage_url=grant.storage.url, read_only=args.read_only,
                                             profile=profile))
    return 0


def add_parser(sub) -> None:
    m = sub.add_parser("mcp", help="serve a workspace to agents over MCP")
    m.set_defaults(parser=m)
    msub = m.add_subparsers(dest="mcp_command", metavar="<subcommand>")
    p = msub.add_parser("serve", help="serve a workspace's files as MCP tools on stdin/stdout")
    p.add_argument("workspace", help="name, handle/name or artifacts://handle/name")
    p.add_argument("--read-only", action="store_true", help="read-only session; only read tools listed")
    p.set_defaults(func=cmd_serve)
