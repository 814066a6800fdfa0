"""``python -m artifacts_orchestrator``: run the orchestrator on loopback, or bootstrap an account.

::

    python -m artifacts_orchestrator serve --config orchestrator.json
    python -m artifacts_orchestrator create-account alice --db orchestrator.db   # prints the key once
    python -m artifacts_orchestrator migrate --config orchestrator.json [--check]
    python -m artifacts_orchestrator move-database --config orchestrator.json --to pg-url.txt
    python -m artifacts_orchestrator openapi --out sdk/js/openapi.json          # the HTTP API's description

The config file is JSON (``OrchestratorConfig``). It holds secrets (the admin Redis URL, the S3
admin keys, the admin token, a PostgreSQL ``database_url`` with its password), so it must not be
readable by group or others: every command refuses a looser mode. Nothing secret is ever taken
from the command line, where ``ps`` would show it. ``build_service`` and ``build_platform`` wire
the same pieces in-process from a configuration.

The database is ``database_url`` (``postgresql://…``: several orchestrator processes may share
it, docs/scale.md) or else the SQLite file ``db``. ``serve`` applies pending schema migrations at
start; ``migrate`` applies them ahead of a deploy, ``migrate --check`` only reports (exit 1 while
any is pending). ``move-database`` copies an SQLite orchestrator's rows into an empty PostgreSQL
database, verifies them and switches the config file (move.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import stat
import sys
import threading
from pathlib import Path

import msgspec
from redis.exceptions import RedisError

from artifacts_core.errors import ArtifactsError
from artifacts_orchestrator import migrations, openapi
from artifacts_orchestrator.agents import AgentService
from artifacts_orchestrator.app import REAP_INTERVAL, SWEEP_INTERVAL, OrchestratorServer, served_routes
from artifacts_orchestrator.db import DatabaseError, is_postgres_url, open_database, redacted
from artifacts_orchestrator.errors import ApiError
from artifacts_orchestrator.migrations import SchemaTooNew
from artifacts_orchestrator.platform_service import PlatformService
from artifacts_orchestrator.redis_acl import RedisAdmin
from artifacts_orchestrator.sealing import SecretBox
from artifacts_orchestrator.service import FORMAT_TTL, SESSION_TTL, Service
from artifacts_orchestrator.storage import SeaweedIAMStorage
from artifacts_orchestrator.store import SQLStore, open_store
from artifacts_orchestrator.tickets import KeyRing

#: The local stack's orchestrator port (also the client's default URL).
DEFAULT_PORT = 8720


class ManagedS3Config(msgspec.Struct, frozen=True, kw_only=True):
    endpoint: str
    bucket: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"
    root: str = ""
    public_endpoint: str | None = None


class OrchestratorConfig(msgspec.Struct, frozen=True, kw_only=True):
    #: The SQLite file (the embedded default), used when ``database_url`` is empty.
    db: str = ""
    #: ``postgresql://user:password@host:port/dbname``: the store several processes share.
    database_url: str = ""
    redis_url: str  # admin credentials; clients get public_redis_url with their own user
    public_redis_url: str | None = None
    managed: ManagedS3Config | None = None
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    admin_token: str = ""
    format_ttl: float = FORMAT_TTL
    session_ttl: float = SESSION_TTL
    reap_interval: float = REAP_INTERVAL
    sweep_interval: float = SWEEP_INTERVAL
    #: For a Redis the orchestrator started itself: set noeviction and AOF instead of checking.
    configure_redis: bool = False
    require_aof: bool = True
    require_aclfile: bool = True
    #: Mount-ticket signing keys (a 0700 directory of 0600 PEM files); default beside ``db``.
    ticket_keys: str | None = None
    #: The URL written into mount tickets for runtimes to exchange them at (default: the address
    #: the platform's request came to).
    public_url: str | None = None
    #: The key file sealing agents' custom S3 keys (0600, made on first start; default beside
    #: ``db``). Losing it means entering those keys again (sealing.py).
    secrets_key: str | None = None


def quiet_third_party_loggers() -> None:
    """botocore logs whole response bodies at DEBUG — CreateAccessKey's includes the secret key —
    and redis-py/urllib3 log connection details: keep them at INFO and above even with -v."""
    for name in ("botocore", "aiobotocore", "urllib3", "redis"):
        logging.getLogger(name).setLevel(max(logging.INFO, logging.getLogger(name).level))


def _private_text(path: str | os.PathLike) -> bytes:
    p = Path(path)
    mode = p.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SystemExit(f"{p} is readable by others (mode {stat.S_IMODE(mode):o}); run: chmod 600 {p}")
    return p.read_bytes()


def load_config(path: str | os.PathLike) -> OrchestratorConfig:
    cfg = msgspec.json.decode(_private_text(path), type=OrchestratorConfig)
    if not (cfg.db or cfg.database_url):
        raise SystemExit(f"{path}: set database_url (postgresql://…) or db (an SQLite file)")
    return cfg


def store_url(cfg: OrchestratorConfig) -> str:
    """Where the rows live: ``database_url`` when set, else the SQLite file ``db``."""
    return cfg.database_url or cfg.db


def build_service(cfg: OrchestratorConfig) -> Service:
    """Store, Redis (checked, library loaded) and managed storage, wired into a ``Service``."""
    redis = RedisAdmin(cfg.redis_url, public_url=cfg.public_redis_url)
    redis.prepare(configure=cfg.configure_redis, require_aof=cfg.require_aof,
                  require_aclfile=cfg.require_aclfile)
    storage = None
    if cfg.managed is not None:
        s = cfg.managed
        storage = SeaweedIAMStorage(endpoint=s.endpoint, bucket=s.bucket, access_key=s.access_key,
                                    secret_key=s.secret_key, region=s.region, root=s.root,
                                    public_endpoint=s.public_endpoint)
        storage.ensure_bucket()
    return Service(open_store(store_url(cfg)), redis, storage, format_ttl=cfg.format_ttl,
                   session_ttl=cfg.session_ttl)


def build_platform(cfg: OrchestratorConfig, service: Service) -> PlatformService:
    """The platform layer (tenants, grants, mount tickets) over ``service``, with the configured
    ticket signing keys; it registers its delete and reaper hooks on ``service``."""
    return PlatformService(service, _keyring(cfg), public_url=cfg.public_url)


def ticket_keys_dir(cfg: OrchestratorConfig) -> Path:
    """The mount-ticket keys' directory: ``ticket_keys``, else ``ticket-keys/`` beside the SQLite
    file. With PostgreSQL it must be configured (every process of the fleet reads the same one)."""
    if cfg.ticket_keys:
        return Path(cfg.ticket_keys)
    if not cfg.db or is_postgres_url(cfg.db):
        raise SystemExit("set ticket_keys in the config: the mount-ticket signing keys' directory, shared by "
                         "every orchestrator process (docs/scale.md)")
    return Path(cfg.db).parent / "ticket-keys"


def build_agents(cfg: OrchestratorConfig, service: Service) -> AgentService:
    """Agents and their file API over ``service``, custom S3 keys sealed with the configured key file."""
    return AgentService(service, SecretBox(secrets_key_path(cfg)))


def secrets_key_path(cfg: OrchestratorConfig) -> Path:
    """The key file sealing custom S3 keys: ``secrets_key``, else ``agent-secrets.key`` beside the
    SQLite file. With PostgreSQL it must be configured (every process of the fleet opens what any
    of them sealed)."""
    if cfg.secrets_key:
        return Path(cfg.secrets_key)
    if not cfg.db or is_postgres_url(cfg.db):
        raise SystemExit("set secrets_key in the config: the key file sealing agents' S3 keys, shared by "
                         "every orchestrator process (docs/agents.md)")
    return Path(cfg.db).parent / "agent-secrets.key"


def _keyring(cfg: OrchestratorConfig) -> KeyRing:
    return KeyRing(ticket_keys_dir(cfg))


def _rotate_ticket_key(args: argparse.Namespace) -> int:
    """A new signing key (used from now on, by running orchestrators too); ``--prune`` first
    deletes keys every ticket of which has expired (docs/platform.md, key rotation)."""
    keys = _keyring(load_config(args.config))
    for kid in keys.prune() if args.prune else ():
        print(f"pruned {kid}", file=sys.stderr)
    print(keys.rotate())
    return 0


def _serve(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    try:
        service = build_service(cfg)
        platform = build_platform(cfg, service)
        agents = build_agents(cfg, service)
    except (ArtifactsError, ApiError, RedisError, DatabaseError, SchemaTooNew, OSError,
            ValueError) as e:  # a message, not a traceback
        print(f"error: cannot start the orchestrator: {e}", file=sys.stderr)
        return 1
    server = OrchestratorServer(service, platform=platform, agents=agents, host=cfg.host, port=cfg.port,
                                admin_token=cfg.admin_token, reap_interval=cfg.reap_interval,
                                sweep_interval=cfg.sweep_interval).start()
    # The first line is what scripts and tests parse for the address; the console's comes after it.
    print(f"orchestrator listening on {server.url}", flush=True)
    print(f"console: {server.url}/console/", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop()
    service.redis.close()
    service.store.close()
    return 0


def _open_store(args: argparse.Namespace) -> SQLStore:
    if getattr(args, "config", None):
        return open_store(store_url(load_config(args.config)))
    if is_postgres_url(args.db):
        raise SystemExit("a PostgreSQL URL holds a password: give it in a config file (--config), "
                         "not on the command line")
    return open_store(args.db)


def _migrate(args: argparse.Namespace) -> int:
    """Apply the pending schema migrations (or, with ``--check``, list them: exit 1 if any)."""
    url = store_url(load_config(args.config))
    try:
        db = open_database(url)
    except DatabaseError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    try:
        todo = migrations.pending(db)
        if args.check:
            for m in todo:
                print(f"pending: {m.version} {m.name}")
            print(f"schema version {migrations.version(db)} of {migrations.LATEST} at {db.where}")
            return 1 if todo else 0
        for m in migrations.migrate(db):
            print(f"applied: {m.version} {m.name}")
        print(f"schema version {migrations.LATEST} at {db.where}")
        return 0
    except SchemaTooNew as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        db.close()


def _move_database(args: argparse.Namespace) -> int:
    """SQLite -> PostgreSQL: copy, verify, switch the config (move.py)."""
    from artifacts_orchestrator import move

    cfg = load_config(args.config)
    if cfg.database_url:
        print(f"error: {args.config} already uses {redacted(cfg.database_url)}", file=sys.stderr)
        return 1
    url = (sys.stdin.readline() if args.to == "-" else _private_text(args.to).decode()).strip()
    if not is_postgres_url(url):
        print("error: the target must be a postgresql:// URL", file=sys.stderr)
        return 2
    try:
        counts = move.move(Path(args.config), cfg.db, url, {"ticket_keys": str(ticket_keys_dir(cfg).resolve()),
                                                            "secrets_key": str(secrets_key_path(cfg).resolve())})
    except (move.MoveError, DatabaseError, SchemaTooNew) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for table, n in counts.items():
        print(f"{table}: {n} rows", file=sys.stderr)
    print(f"moved to {redacted(url)}; {args.config} now uses it (the SQLite file is untouched; the previous "
          f"config is {args.config}.sqlite)")
    return 0


def _create_account(args: argparse.Namespace) -> int:
    store = _open_store(args)
    service = Service(store, redis=None, storage=None)  # type: ignore[arg-type]  # accounts need no Redis
    try:
        new = service.create_account(args.handle, args.key_name)
    except ApiError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return 1
    finally:
        store.close()
    print(f"Account {new.account.handle} created (id {new.account.id}).", file=sys.stderr)
    print("API key (shown once, save it now):", file=sys.stderr)
    print(new.key.key)
    return 0


def _openapi(args: argparse.Namespace) -> int:
    """The OpenAPI description of ``serve``'s routes, pretty-printed (sdk/js/openapi.json)."""
    text = json.dumps(openapi.document(served_routes(platform=True)), indent=2, ensure_ascii=False) + "\n"
    if args.out:
        Path(args.out).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m artifacts_orchestrator")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP API")
    serve.add_argument("--config", required=True, help="JSON config file (mode 0600)")
    acc = sub.add_parser("create-account", help="create an account and print its first API key once")
    acc.add_argument("handle")
    where = acc.add_mutually_exclusive_group(required=True)
    where.add_argument("--db", help="the orchestrator's SQLite database")
    where.add_argument("--config", help="the orchestrator's config file (its database)")
    acc.add_argument("--key-name", default="default")
    mig = sub.add_parser("migrate", help="apply pending schema migrations (serve applies them at start)")
    mig.add_argument("--config", required=True, help="JSON config file (mode 0600)")
    mig.add_argument("--check", action="store_true", help="only report; exit 1 while a migration is pending")
    mv = sub.add_parser("move-database", help="copy an SQLite orchestrator's rows to PostgreSQL, verify, "
                                              "switch the config")
    mv.add_argument("--config", required=True, help="JSON config file (mode 0600) of an SQLite orchestrator")
    mv.add_argument("--to", required=True, metavar="FILE",
                    help="a file (mode 0600) holding the postgresql:// URL, or - for stdin")
    rot = sub.add_parser("rotate-ticket-key", help="add a mount-ticket signing key (prints its kid)")
    rot.add_argument("--config", required=True, help="JSON config file (mode 0600)")
    rot.add_argument("--prune", action="store_true", help="first delete keys no unexpired ticket can need")
    spec = sub.add_parser("openapi", help="print the OpenAPI description of the HTTP API")
    spec.add_argument("--out", help="write it to this file instead of stdout")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_third_party_loggers()
    if args.command == "rotate-ticket-key":
        return _rotate_ticket_key(args)
    if args.command == "openapi":
        return _openapi(args)
    if args.command == "migrate":
        return _migrate(args)
    if args.command == "move-database":
        return _move_database(args)
    return _serve(args) if args.command == "serve" else _create_account(args)


if __name__ == "__main__":
    sys.exit(main())
