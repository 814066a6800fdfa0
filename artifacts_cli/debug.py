"""``artifacts debug [-o FILE]``: one archive to attach to a bug report, with no secret in it.

``artifacts-debug-<UTC time>.tar.gz`` (mode 0600) holds:

- ``version.json``: the CLI's version, Python, the OS, and the versions of ``redis-server`` and
  ``weed`` found on this host;
- ``status.json``: what ``artifacts status --all`` reports (orchestrator, local stack, every
  Artifacts mount with its counters and session);
- ``mounts/<n>/stats.txt`` and ``config.json``: each mount's ``.stats`` and ``.config`` (the
  VFS's own description, which carries no secret: Redis passwords are masked there);
- ``config/``: ``credentials.json`` and ``byo-credentials`` with every value that could open
  something masked (first 4 and last 4 characters), ``profile.toml``, the local stack's
  ``stack.json`` (pids and ports);
- ``logs/``: the last ``LOG_TAIL`` bytes of each log under ``~/.cache/tonbo/artifacts/logs``.

Never included: ``account.json``, ``s3-admin.json``, ``orchestrator.json``, Redis's ACL and
password files, ticket keys, the orchestrator's database — they are secrets or hold them. As a
last guard, every member is checked for the secrets this host knows (the API key, the BYO and
admin S3 keys, the Redis passwords of the local stack) before the archive is written; a hit
aborts with nothing written.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

from artifacts_cli.config import CliError, mask, read_byo_cache, state_path
from artifacts_cli.errors import EXIT_CONFLICT, EXIT_ERROR

#: Bytes kept from the end of each log: the recent story, bounded so an archive stays mailable.
LOG_TAIL = 1 << 20
#: Seconds a version probe may take (``weed version`` starts quickly; a hung binary must not hang us).
PROBE_TIMEOUT = 10.0
#: Field names whose values are masked wherever they appear in a copied config file.
SECRET_FIELDS = ("api_key", "ACCESS_KEY_ID", "SECRET_ACCESS_KEY", "SESSION_TOKEN", "password", "secret", "token")


def _version_of(program: str, *args: str) -> str:
    path = shutil.which(program)
    if path is None:
        return "not installed"
    try:
        p = subprocess.run([path, *args], capture_output=True, text=True, timeout=PROBE_TIMEOUT)
        return (p.stdout or p.stderr).strip().splitlines()[0] if (p.stdout or p.stderr).strip() else "?"
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unknown ({e})"


def _masked(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: mask(str(v)) if any(f.lower() in k.lower() for f in SECRET_FIELDS) and v else _masked(v)
                for k, v in data.items()}
    if isinstance(data, list):
        return [_masked(v) for v in data]
    return data


def _known_secrets() -> list[str]:
    """Every secret this host holds that could leak into an archive, to check the members for."""
    found: list[str] = []
    with contextlib.suppress(Exception):
        from artifacts_orchestrator.login import resolve

        key = resolve().api_key
        if key:
            found.append(key)
    with contextlib.suppress(Exception):
        found += [v for k, v in read_byo_cache().items() if k != "REGION" and v]
    found += [os.environ[k] for k in ("TONBO_API_KEY", "ARTIFACTS_S3_SECRET_ACCESS_KEY", "ARTIFACTS_S3_SESSION_TOKEN")
              if os.environ.get(k)]
    stack = state_path("stack")
    for name in ("s3-admin.json", "account.json", "orchestrator.json"):
        with contextlib.suppress(Exception):
            found += _secret_values(json.loads((stack / name).read_text()))
    for pw in stack.glob("redis/*.pw"):
        with contextlib.suppress(OSError):
            found.append(pw.read_text().strip())
    return [s for s in set(found) if len(s) >= 8]  # short values (ports, flags) are no secret


def _secret_values(data: Any) -> list[str]:
    """The values of secret-named fields (``secret_key``, ``api_key``, ``admin_token``…) and the
    passwords inside URLs, anywhere in a JSON document."""
    from urllib.parse import urlsplit

    found: list[str] = []
    if isinstance(data, dict):
        for k, v in data.items():
            if isinstance(v, str) and any(w in k.lower() for w in ("secret", "token", "api_key", "password")):
                found.append(v)
            elif isinstance(v, str) and "://" in v:
                with contextlib.suppress(ValueError):
                    if urlsplit(v).password:
                        found.append(str(urlsplit(v).password))
            else:
                found += _secret_values(v)
    elif isinstance(data, list):
        found = [s for v in data for s in _secret_values(v)]
    return found


def _read_bounded(path: Path, limit: int) -> bytes:
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - limit))
        return f.read()


def collect(out) -> dict[str, bytes]:
    """The archive's members (name -> bytes)."""
    from artifacts_cli.status import build_report, read_internal
    from artifacts_core import __version__
    from artifacts_core.config import xdg_dir

    members: dict[str, bytes] = {}
    versions = {"artifacts": __version__, "python": sys.version.split()[0], "platform": platform.platform(),
                "redis-server": _version_of("redis-server", "--version"), "weed": _version_of("weed", "version"),
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    members["version.json"] = json.dumps(versions, indent=2).encode()
    report, _ = build_report(None, everything=True)
    members["status.json"] = json.dumps(report, indent=2, default=str).encode()
    for i, m in enumerate(report["mounts"]):
        if m.get("state") != "live":
            continue
        for inner, name in ((".stats", "stats.txt"), (".config", "config.json")):
            text, _ = read_internal(m["mountpoint"], inner)
            if text is not None:
                members[f"mounts/{i}/{name}"] = text.encode()
        members[f"mounts/{i}/mountpoint.txt"] = m["mountpoint"].encode()
    config = xdg_dir("config")
    for name in ("credentials.json", "byo-credentials"):
        with contextlib.suppress(OSError, ValueError):
            members[f"config/{name}"] = json.dumps(_masked(json.loads((config / name).read_text())), indent=2).encode()
    with contextlib.suppress(OSError):
        members["config/profile.toml"] = (config / "profile.toml").read_bytes()
    with contextlib.suppress(OSError):
        members["config/stack.json"] = (state_path("stack") / "stack.json").read_bytes()
    logs = xdg_dir("cache") / "logs"
    for log in sorted(logs.glob("*.log")):
        with contextlib.suppress(OSError):
            members[f"logs/{log.name}"] = _read_bounded(log, LOG_TAIL)
    out.detail(f"{len(members)} files collected")
    return members


def cmd_debug(args) -> int:
    out = args.out
    name = args.output or f"artifacts-debug-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.tar.gz"
    if os.path.exists(name) and not args.force:
        raise CliError(f"{name} exists", "pass --force to replace it, or -o another file", exit_code=EXIT_CONFLICT,
                       code="EEXIST")
    with out.phase("Collecting status, mounts, configuration and logs…"):
        members = collect(out)
    secrets = _known_secrets()
    leaked = sorted(n for n, data in members.items() for s in secrets if s.encode() in data)
    if leaked:
        raise CliError(f"a secret appears in {', '.join(leaked)}; nothing was written",
                       "report this as a bug (a secret must never reach these files)", exit_code=EXIT_ERROR)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for member, data in sorted(members.items()):
            info = tarfile.TarInfo(f"artifacts-debug/{member}")
            info.size, info.mtime, info.mode = len(data), int(time.time()), 0o600
            tar.addfile(info, io.BytesIO(data))
    fd = os.open(name + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(buf.getvalue())
    os.replace(name + ".tmp", name)
    out.result(f"Wrote {name} ({len(members)} files, {buf.tell()} bytes, mode 0600); it holds no secret",
               data={"file": os.path.abspath(name), "files": sorted(members), "bytes": buf.tell()})
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("debug", help="collect status, mount stats, configuration (no secrets) and logs in one archive")
    p.add_argument("-o", "--output", metavar="FILE", help="the archive to write (default artifacts-debug-<time>.tar.gz)")
    p.add_argument("--force", action="store_true", help="replace FILE if it exists")
    p.set_defaults(func=cmd_debug)
