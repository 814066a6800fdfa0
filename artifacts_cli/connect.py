"""A workspace without FUSE: ``open_workspace`` for Python code and ``artifacts mcp serve``.

::

    from artifacts_cli.connect import open_workspace
    from artifacts_agentfs import AgentFS

    with open_workspace("demo") as vol:          # name, handle/name or artifacts://handle/name
        fs = AgentFS(vol)
        fs.append_file("notes/log.md", "one more line\\n")

It issues a mount session exactly as ``artifacts mount`` does (``read_only=True`` asks for an
``ro`` one, which Redis and S3 enforce) and renews it in a background thread while the block runs
(artifacts_orchestrator/renewal.py: an agent or MCP process may run for months), opens the volume
with the session's Redis user and, for managed workspaces, the session's own S3 keys — set in this
process's ``ARTIFACTS_S3_*`` only while the volume's S3 client is made (``config.scoped_env``),
never written anywhere — and revokes the session when the block ends. BYO workspaces use the
host's credentials (env, then the cache), as a mount does.

The demo uses it; so can any agent harness on a machine where ``artifacts login`` (or
``artifacts up``) was run: the login is found as the CLI finds it (``artifacts_orchestrator.login``).
Without one, or with the orchestrator out of reach, it raises :class:`ConnectError`, whose text
says what went wrong and what to run (``artifacts login`` / ``artifacts up``).

``mcp serve <workspace> [--read-only]`` serves the agent API's MCP server (issue 6) on stdio
with such a session (``ro``: only the read-only tools are listed, and Redis refuses writes
anyway): ``artifacts_agentfs.mcp_server.serve`` opens the volume and serves until the client
closes stdin; the session is revoked after. stdout belongs to the protocol there, so every
message of that command goes to stderr. ``--bash`` adds the sandboxed ``bash`` tool (docs/exec.md).
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator

from artifacts_cli import auth
from artifacts_cli.config import CliError, as_env, resolve_byo_credentials, scoped_env

#: Seconds the session lives if the process dies before revoking it (then the reaper ends it):
#: long enough for an agent run, bounded so a crashed script does not leave access open for days.
SESSION_TTL = 24 * 3600


@contextlib.contextmanager
def workspace_session(ref: str, *, read_only: bool = False, label: str = "(python)") -> Iterator[tuple]:
    """``(grant, env)``: a live session and the ``ARTIFACTS_S3_*`` values its volume needs."""
    api = auth.client()
    ws = api.workspaces.get(ref)
    env = as_env(resolve_byo_credentials()) if ws.backend == "byo" else {}
    grant = api.sessions.create(ws.identifier, mode="ro" if read_only else "rw", ttl_seconds=SESSION_TTL,
                                host=socket.gethostname(), mountpoint=label)
    renewer = None
    if grant.renewal is not None:
        from artifacts_orchestrator.renewal import RenewalSettings, SessionRenewer

        renewer = SessionRenewer(RenewalSettings(url=api.base_url, token=grant.renewal.token,
                                                 ttl=grant.renewal.ttl_seconds)).start()
    try:
        c = grant.storage.credentials
        if c is not None:
            env = {"ARTIFACTS_S3_ACCESS_KEY_ID": c.access_key_id, "ARTIFACTS_S3_SECRET_ACCESS_KEY": c.secret_access_key}
            if c.session_token:
                env["ARTIFACTS_S3_SESSION_TOKEN"] = c.session_token
        yield grant, env
    finally:
        if renewer is not None:
            renewer.stop()
        with contextlib.suppress(Exception):  # the reaper ends it at its TTL otherwise
            api.sessions.revoke(ws.identifier, grant.session.id)


class ConnectError(ConnectionError):
    """No session for a workspace: not logged in, the orchestrator unreachable, no such workspace,
    no BYO credentials… ``str()`` is the message and what to do; ``code`` and ``exit_code`` are
    the CLI's (docs/cli.md)."""

    def __init__(self, message: str, hint: str, code: str, exit_code: int) -> None:
        super().__init__(f"{message} (hint: {hint})" if hint else message)
        self.message, self.hint, self.code, self.exit_code = message, hint, code, exit_code


@contextlib.contextmanager
def _explained(ref: str) -> Iterator[None]:
    """CLI and orchestrator errors as one ``ConnectError`` naming the workspace and the remedy."""
    from artifacts_cli.errors import describe
    from artifacts_orchestrator.errors import ApiError

    try:
        yield
    except (CliError, ApiError) as e:
        f = describe(e, None)
        raise ConnectError(f"cannot open workspace {ref}: {f.message}", f.hint, f.code, f.exit_code) from None


@contextlib.contextmanager
def open_workspace(ref: str, *, read_only: bool = False) -> Iterator:
    """The workspace ``ref`` (``name``, ``handle/name`` or ``artifacts://handle/name``) as an open
    volume for the block, with this machine's login; ``ConnectError`` says what is missing."""
    from artifacts_core.volume import open_volume

    with contextlib.ExitStack() as stack:
        with _explained(ref):
            grant, env = stack.enter_context(workspace_session(ref, read_only=read_only))
        profile = grant.cache_profile if grant.cache_profile != "custom" else "interactive"
        with scoped_env(env):
            vol = open_volume(grant.meta.url, grant.storage.url, key_prefix=grant.meta.key_prefix,
                              profile=profile, read_only=read_only)
        try:
            yield vol
        finally:
            vol.close()


def cmd_mcp_serve(args) -> int:
    from artifacts_agentfs import mcp_server
    from artifacts_cli.refs import check_ref

    check_ref(args.workspace)
    with workspace_session(args.workspace, read_only=args.read_only, label="(mcp)") as (grant, env):
        os.environ.update(env)
        args.out.info(f"Serving {grant.session.workspace} over MCP on stdio "
                      f"(session {grant.session.id}, {grant.session.mode})")
        profile = grant.cache_profile if grant.cache_profile != "custom" else "interactive"
        mcp_server.serve(mcp_server.Settings(meta_url=grant.meta.url, key_prefix=grant.meta.key_prefix,
                                             storage_url=grant.storage.url, read_only=args.read_only,
                                             profile=profile, bash=args.bash))
    return 0


def add_parser(sub) -> None:
    m = sub.add_parser("mcp", help="serve a workspace to agents over MCP")
    m.set_defaults(parser=m)
    msub = m.add_subparsers(dest="mcp_command", metavar="<subcommand>")
    p = msub.add_parser("serve", help="serve a workspace's files as MCP tools on stdin/stdout")
    p.add_argument("workspace", help="name, handle/name or artifacts://handle/name")
    p.add_argument("--read-only", action="store_true", help="read-only session; only read tools listed")
    p.add_argument("--bash", action="store_true",
                   help="add the bash tool: commands in a sandbox on the workspace (off by default)")
    p.set_defaults(func=cmd_mcp_serve)
