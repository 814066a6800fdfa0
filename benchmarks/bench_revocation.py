"""Revocation reaching a live mount: from ``revoke_access_grants`` returning to the first EACCES.

    .venv/bin/python -m benchmarks.bench_revocation [--runs 10]

Starts its own stack the way the orchestrator runs it (Redis with AOF and an ACL file, SeaweedFS
with IAM, the orchestrator on loopback), creates an account and a workspace, then per run: issues a
ticket for a fresh runtime id, mounts it with ``artifacts mount --ticket-file`` in a separate
process (as a customer runtime would), starts two stat loops on the mount, revokes the runtime
(``revoke_access_grants(tenant_slug, runtime_id)``), and records when each loop first sees EACCES:

- **fresh names**: ``stat`` of a new name each time (negative lookups are never cached, so every
  call reaches the FUSE process and Redis) — the time for revocation itself to bite;
- **one file**: ``stat`` of the same existing file — the kernel answers from its attribute cache
  until ``attr_ttl`` (1 s in the interactive profile) runs out, so this is what an agent looping on
  one path sees.

Times are measured from the moment the revoke call returned (the call itself — ``ACL DELUSER`` on
every node, ``ACL SAVE``, the S3 user deleted — is reported separately); a negative value means the
loop saw EACCES before the HTTP answer arrived. Target (DESIGN.md §10, seed 003): about a second.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import msgspec

from artifacts_core.volume import format_volume
from artifacts_fuse import is_mounted, unmount
from artifacts_orchestrator.app import OrchestratorServer
from artifacts_orchestrator.client import Artifacts
from artifacts_orchestrator.local import start_redis, start_s3
from artifacts_orchestrator.platform_service import PlatformService
from artifacts_orchestrator.redis_acl import RedisAdmin
from artifacts_orchestrator.service import Service
from artifacts_orchestrator.storage import SeaweedIAMStorage
from artifacts_orchestrator.store import SQLiteStore
from artifacts_orchestrator.tickets import KeyRing

BUCKET = "artifacts-managed"
ADMIN_TOKEN = "bench-admin-token-0123456789abcdef"
#: A loop that has not seen EACCES this long after the revoke has failed the run outright.
GIVE_UP = 30.0
ARTIFACTS = str(Path(sys.executable).parent / "artifacts")


class Loop(threading.Thread):
    """``stat`` in a tight loop until EACCES; ``seen`` is the monotonic time of the first one."""

    def __init__(self, path_for) -> None:
        super().__init__(daemon=True)
        self.path_for = path_for
        self.count = 0
        self.seen: float | None = None
        self.other: BaseException | None = None

    def run(self) -> None:
        deadline = time.monotonic() + GIVE_UP * 2
        while time.monotonic() < deadline:
            self.count += 1
            try:
                os.stat(self.path_for(self.count))
            except FileNotFoundError:
                continue
            except PermissionError:
                self.seen = time.monotonic()
                return
            except OSError as e:  # anything else is reported, not counted as revocation
                self.other = e
                return


def start_stack(base: Path):
    rserver, admin_url = start_redis(base / "redis")
    s3 = start_s3(base / "s3", bucket=BUCKET)
    redis_admin = RedisAdmin(admin_url)
    redis_admin.prepare()
    storage = SeaweedIAMStorage(endpoint=s3.endpoint, bucket=BUCKET, access_key=s3.access_key,
                                secret_key=s3.secret_key, region=s3.region)
    service = Service(SQLiteStore(base / "db" / "orchestrator.db"), redis_admin, storage)
    platform = PlatformService(service, KeyRing(base / "db" / "ticket-keys"))
    server = OrchestratorServer(service, platform=platform, admin_token=ADMIN_TOKEN, reap_interval=None).start()
    return rserver, s3, redis_admin, service, server


def one_run(api: Artifacts, base: Path, ws: str, i: int) -> tuple[float, float, float]:
    runtime = base / f"runtime{i}"
    env = {"PATH": os.environ["PATH"], "HOME": str(runtime), "XDG_CONFIG_HOME": str(runtime / "config"),
           "XDG_CACHE_HOME": str(runtime / "cache"), "XDG_STATE_HOME": str(runtime / "state")}
    ticket_file = runtime / "mount-ticket.json"
    mp = runtime / "mnt"
    mp.mkdir(parents=True)
    issued = api.platform.create_mount_ticket("bench", f"run-{i}", workspace=ws, ttl_seconds=600)
    fd = os.open(ticket_file, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)
    os.write(fd, msgspec.json.encode(issued.mount_ticket))
    os.close(fd)
    res = subprocess.run([ARTIFACTS, "mount", "--ticket-file", str(ticket_file), str(mp)], env=env,
                         capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        raise SystemExit(f"mount failed: {res.stderr}")
    try:
        (mp / "file.txt").write_text("x")
        loops = [Loop(lambda n: mp / f"probe-{n}"), Loop(lambda n: mp / "file.txt")]
        for loop in loops:
            loop.start()
        while min(loop.count for loop in loops) < 100:  # both loops are running at full speed
            time.sleep(0.01)
        t0 = time.monotonic()
        api.platform.revoke_access_grants(tenant_slug="bench", runtime_id=f"run-{i}")
        returned = time.monotonic()
        for loop in loops:
            loop.join(GIVE_UP)
            if loop.seen is None:
                raise SystemExit(f"run {i}: no EACCES within {GIVE_UP} s ({loop.other or 'still succeeding'})")
        return returned - t0, loops[0].seen - returned, loops[1].seen - returned
    finally:
        with contextlib.suppress(Exception):
            unmount(str(mp), timeout=60)
        if is_mounted(str(mp)):
            subprocess.run(["fusermount3", "-uz", str(mp)], capture_output=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-revocation-") as tmp:
        base = Path(tmp)
        rserver, s3, redis_admin, service, server = start_stack(base)
        try:
            new = Artifacts("", base_url=server.url).create_account("bench", admin_token=ADMIN_TOKEN)
            api = Artifacts(new.key.key, base_url=server.url)
            r = api.workspaces.create("revocation")
            c = r.storage.credentials
            os.environ.update({"ARTIFACTS_S3_ACCESS_KEY_ID": c.access_key_id,
                               "ARTIFACTS_S3_SECRET_ACCESS_KEY": c.secret_access_key})
            format_volume(r.format.url, r.storage.url, r.workspace.volume_name, key_prefix=r.format.key_prefix)
            api.workspaces.format_completed("revocation")
            for k in ("ARTIFACTS_S3_ACCESS_KEY_ID", "ARTIFACTS_S3_SECRET_ACCESS_KEY"):
                os.environ.pop(k)
            rows = [one_run(api, base, "revocation", i) for i in range(args.runs)]
        finally:
            server.stop()
            redis_admin.close()
            service.store.close()
            s3.stop()
            rserver.stop()
    print(f"revocation over {args.runs} runs (ms; stat loops timed from the revoke call's return)")
    print(f"{'':34}{'p50':>9}{'max':>9}{'min':>9}")
    for name, col in (("revoke call (DELUSER + S3 user)", 0), ("first EACCES, fresh names", 1),
                      ("first EACCES, one cached file", 2)):
        values = [row[col] * 1000 for row in rows]
        print(f"{name:34}{statistics.median(values):9.1f}{max(values):9.1f}{min(values):9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
