"""Provisioning the orchestrator's own servers on one machine (the local stack and the tests).

``start_redis`` runs ``redis-server`` the way the orchestrator needs it (DESIGN.md §10): AOF
everysec, ``noeviction``, an ACL file (created 0600 in a 0700 directory) holding an admin user
and the default user switched off. The admin password lives in ``admin.pw`` (0600) beside it,
so a restart on the same directory finds both again.

``start_s3`` runs the SeaweedFS S3 gateway with its IAM API writable and one explicit admin
identity (SeaweedFS without identities is open to anonymous requests), and the managed bucket.

Both return what ``OrchestratorConfig`` needs; ``artifacts up`` stores these under the XDG state
directory, the tests under their temporary directory.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from artifacts_core.servers import LOOPBACK, RedisServer, SeaweedS3
from artifacts_orchestrator.redis_acl import initial_aclfile_text

ADMIN_USER = "artifacts-admin"
#: Bytes of randomness in generated admin secrets (256 bits).
SECRET_BYTES = 32


def _private_file(path: Path, text: str) -> None:
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def start_redis(workdir: str | os.PathLike, *, port: int | None = None) -> tuple[RedisServer, str]:
    """Start (or restart, on the same directory) the orchestrator's Redis. Returns the server
    and its admin URL (which holds the admin password: keep it out of logs)."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o700)
    aclfile, pwfile = workdir / "users.acl", workdir / "admin.pw"
    if not pwfile.exists():
        _private_file(pwfile, secrets.token_urlsafe(SECRET_BYTES))
    password = pwfile.read_text().strip()
    if not aclfile.exists():
        _private_file(aclfile, initial_aclfile_text(ADMIN_USER, password))
    server = RedisServer.start(workdir, port=port, appendonly=True, extra=["--aclfile", str(aclfile)])
    return server, f"redis://{ADMIN_USER}:{password}@{LOOPBACK}:{server.port}/0"


def start_s3(workdir: str | os.PathLike, *, bucket: str) -> SeaweedS3:
    """The SeaweedFS S3 gateway with IAM writes enabled, an explicit admin identity and ``bucket``."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o700)
    return SeaweedS3.start(workdir, iam_writable=True, buckets=(bucket,))
