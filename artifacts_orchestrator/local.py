"""Provisioning the orchestrator's own servers on one machine (the local stack and the tests).

``start_redis`` runs ``redis-server`` the way the orchestrator needs it (DESIGN.md §10): AOF
everysec, ``noeviction``, an ACL file (created 0600 in a 0700 directory) holding an admin user
and the default user switched off. The admin password lives in ``admin.pw`` (0600) beside it,
so a restart on the same directory finds both again.

``start_s3`` runs the SeaweedFS S3 gateway with its IAM API writable and one explicit admin
identity (SeaweedFS without identities is open to anonymous requests), and the managed bucket.

Both return what ``OrchestratorConfig`` needs; ``artifacts up`` stores these under the XDG state
directory, the tests under their temporary directory.

``PostgresServer`` runs a throw-away PostgreSQL (Debian's ``postgresql`` package) on loopback for
the tests and the benchmarks of the PostgreSQL store (docs/scale.md): a fresh cluster directory,
SCRAM password authentication on TCP only, run as Debian's ``postgres`` system account when we
are root (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from artifacts_core.servers import LOOPBACK, RedisServer, SeaweedS3, _wait_for, free_port, stop_process
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


# -- PostgreSQL ------------------------------------------------------------------------------------

#: The system account the server runs as when we are root: PostgreSQL refuses to run as root, and
#: Debian's ``postgresql`` package (installed by scripts/bootstrap) makes this account.
PG_SYSTEM_USER = "postgres"
#: The server's superuser role (a database role, unrelated to the system account).
PG_SUPERUSER = "postgres"
#: Seconds a fast shutdown (SIGINT) may take before the server is killed.
PG_STOP_GRACE = 10.0


def postgres_binary(name: str) -> str:
    """``initdb``/``postgres`` of the newest PostgreSQL Debian installed (under
    /usr/lib/postgresql/<version>/bin, not on PATH), else from PATH."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                      key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    for directory in reversed(versions):
        if (directory / name).exists():
            return str(directory / name)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name!r} is not installed; run scripts/bootstrap (it installs Debian's postgresql)")
    return found


@dataclass
class PostgresServer:
    """A throw-away PostgreSQL server on loopback: its own cluster directory, password (SCRAM)
    authentication on TCP, no Unix socket, run as an unprivileged account when we are root.

    ``start()`` runs ``initdb`` then ``postgres`` itself (not ``pg_ctl``, which would detach it),
    so the server is our child and ``stop()`` ends it by its own process id (SIGINT: a fast
    shutdown, SIGKILL after ``PG_STOP_GRACE``) and removes the directory. ``durable=False`` (the
    tests, the benchmarks' throw-away servers) turns fsync off: nothing there outlives the run."""

    port: int
    workdir: Path
    proc: subprocess.Popen
    password: str
    log: Path

    @property
    def url(self) -> str:
        return self.database_url(PG_SUPERUSER)

    def database_url(self, database: str, *, user: str = PG_SUPERUSER, password: str | None = None) -> str:
        pw = self.password if password is None else password
        return f"postgresql://{quote(user, safe='')}:{quote(pw, safe='')}@{LOOPBACK}:{self.port}/{database}"

    @classmethod
    def start(cls, *, port: int | None = None, durable: bool = True, run_as: str | None = None,
              parent: str | os.PathLike | None = None) -> PostgresServer:
        """A new cluster in a fresh directory under ``parent`` (default: the system temp dir, which
        the server's account can reach; a pytest directory is private to root)."""
        workdir = Path(tempfile.mkdtemp(prefix="artifacts-pg-", dir=parent))
        ids: dict = {}
        if os.geteuid() == 0:
            import pwd

            try:
                account = pwd.getpwnam(run_as or PG_SYSTEM_USER)
            except KeyError:
                raise RuntimeError(f"no system account {run_as or PG_SYSTEM_USER!r} to run PostgreSQL as "
                                   "(it refuses root); run scripts/bootstrap") from None
            ids = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
            os.chown(workdir, account.pw_uid, account.pw_gid)
        workdir.chmod(0o700)
        password = secrets.token_urlsafe(SECRET_BYTES)
        data, log, pwfile = workdir / "data", workdir / "postgres.log", workdir / "pw"
        proc = None
        try:
            fd = os.open(pwfile, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(password)
            if ids:
                os.chown(pwfile, ids["user"], ids["group"])
            subprocess.run([postgres_binary("initdb"), "-D", str(data), "-U", PG_SUPERUSER, f"--pwfile={pwfile}",
                            "--auth-host=scram-sha-256", "--auth-local=scram-sha-256", "-E", "UTF8",
                            "--locale=C", *(() if durable else ("--no-sync",))],
                           check=True, capture_output=True, cwd=workdir, timeout=120, **ids)
            pwfile.unlink()
            port = port or free_port()
            settings = {"listen_addresses": LOOPBACK, "port": str(port), "unix_socket_directories": "",
                        "password_encryption": "scram-sha-256", "max_connections": "200",
                        "shared_buffers": "32MB"}
            if not durable:
                settings.update(fsync="off", synchronous_commit="off", full_page_writes="off")
            args = [postgres_binary("postgres"), "-D", str(data)]
            for k, v in settings.items():
                args += ["-c", f"{k}={v}"]
            logf = os.open(log, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                    cwd=workdir, start_new_session=True, **ids)
            os.close(logf)
            server = cls(port=port, workdir=workdir, proc=proc, password=password, log=log)
            _wait_for(server._ready, timeout=60, what="postgres", proc=proc, log=log)
        except subprocess.CalledProcessError as e:
            shutil.rmtree(workdir, ignore_errors=True)
            raise RuntimeError(f"initdb failed: {e.stderr.decode(errors='replace')[-1000:]}") from None
        except BaseException:
            if proc is not None:
                _stop_pid(proc)
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        return server

    def _ready(self) -> bool:
        import psycopg

        with psycopg.connect(self.url, connect_timeout=2):
            return True

    def create_database(self, name: str, *, owner: str | None = None, password: str | None = None) -> str:
        """A new database (and, with ``owner``, a login role owning it, with ``password``);
        returns its URL (the owner's credentials, else the superuser's)."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url, autocommit=True) as conn:
            if owner:
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(owner),
                                                                                 sql.Literal(password)))
                conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(owner)))
                return self.database_url(name, user=owner, password=password)
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.database_url(name)

    def stop(self) -> None:
        _stop_pid(self.proc)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _stop_pid(proc: subprocess.Popen) -> None:
    """SIGINT to the postmaster alone is PostgreSQL's fast shutdown (open sessions are rolled back,
    no wait for clients)."""
    stop_process(proc, grace=PG_STOP_GRACE, signum=signal.SIGINT, group=False)
