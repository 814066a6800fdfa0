"""``open_workspace``: an open ``Volume`` for Python code, with the CLI's login (no FUSE).

::

    from artifacts_cli.connect import open_workspace
    from artifacts_agentfs import AgentFS

    with open_workspace("demo") as vol:          # name, handle/name or artifacts://handle/name
        fs = AgentFS(vol)
        fs.append_file("notes/log.md", "one more line\\n")

It issues a mount session exactly as ``artifacts mount`` does (``read_only=True`` asks for an
``ro`` one, which Redis and S3 enforce), opens the volume with the session's Redis user and, for
managed workspaces, the session's own S3 keys — set in this process's ``ARTIFACTS_S3_*`` for the
volume's S3 client, never written anywhere — and revokes the session when the block ends.
BYO workspaces use the host's credentials (env, then the cache), as a mount does.

``artifacts mcp serve`` and the demo use it; so can any agent harness on a machine where
``artifacts login`` (or ``artifacts up``) was run.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator

from artifacts_cli import auth
from artifacts_cli.config import as_env, resolve_byo_credentials

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
    try:
        c = grant.storage.credentials
        if c is not None:
            env = {"ARTIFACTS_S3_ACCESS_KEY_ID": c.access_key_id, "ARTIFACTS_S3_SECRET_ACCESS_KEY": c.secret_access_key}
            if c.session_token:
                env["ARTIFACTS_S3_SESSION_TOKEN"] = c.session_token
        yield grant, env
    finally:
        with contextlib.suppress(Exception):  # the reaper ends it at its TTL otherwise
            api.sessions.revoke(ws.identifier, grant.session.id)


@contextlib.contextmanager
def open_workspace(ref: str, *, read_only: bool = False) -> Iterator:
    from artifacts_core.volume import open_volume

    with workspace_session(ref, read_only=read_only) as (grant, env):
        os.environ.update(env)
        profile = grant.cache_profile if grant.cache_profile != "custom" else "interactive"
        vol = open_volume(grant.meta.url, grant.storage.url, key_prefix=grant.meta.key_prefix,
                          profile=profile, read_only=read_only)
        try:
            yield vol
        finally:
            vol.close()
