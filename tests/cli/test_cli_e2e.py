"""The CLI end to end: ``artifacts up`` starts the real local stack (redis-server with AOF and an
ACL file, SeaweedFS with IAM, the orchestrator) under temporary XDG directories, and every step
runs ``.venv/bin/artifacts`` as a subprocess, mounting with real FUSE.

Proves: a managed and a BYO workspace survive create+mount -> write -> unmount -> mount at a second
mountpoint -> read back, and delete leaves no key under the prefix and no live session (nor its
Redis user); a read-only mount refuses writes; an interrupted create resumes; every documented
mistake gives its exit code and message without a traceback and loses nothing; ``--format json``
parses; login/logout/whoami; ``up``/``down`` are idempotent and the data outlives a restart.
"""

from __future__ import annotations

import errno
import json
import os
import re
import select
import signal
import stat

import pytest
import redis
from test_cli_local import ARTIFACTS, cli_env, run

from artifacts_orchestrator.client import Artifacts

pytestmark = [pytest.mark.redis, pytest.mark.s3, pytest.mark.slow]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli")
    env = cli_env(base)
    p = run(env, "--format", "json", "up", "--port", "0")
    info = json.loads(p.stdout)
    state = base / "state" / "tonbo" / "artifacts" / "stack"
    st = json.loads((state / "stack.json").read_text())
    admin = redis.Redis(host="127.0.0.1", port=st["redis"]["port"], username="artifacts-admin",
                        password=(state / "redis" / "admin.pw").read_text().strip())
    creds = json.loads((base / "config" / "tonbo" / "artifacts" / "credentials.json").read_text())
    yield {"env": env, "base": base, "info": info, "state": state, "admin": admin, "creds": creds,
           "api": Artifacts(creds["api_key"], base_url=creds["orchestrator_url"]),
           "s3": json.loads((state / "s3-admin.json").read_text()), "endpoint": st["s3"]["endpoint"]}
    for rec in (base / "state" / "tonbo" / "artifacts" / "sessions").glob("*.json"):
        run(env, "unmount", json.loads(rec.read_text())["mountpoint"], code=None)
    run(env, "down", code=None)
    admin.close()


def read(path: str, mode: str = "r"):
    with open(path, mode) as f:
        return f.read()


def mountpoint(stack, name: str) -> str:
    mp = stack["base"] / "mnt" / name
    mp.mkdir(parents=True, exist_ok=True)
    return str(mp)


def keys_under(stack, prefix: str) -> list[bytes]:
    return list(stack["admin"].scan_iter(match=prefix.replace("{", "\\{").replace("}", "\\}") + "*", count=1000))


def admin_s3(stack):
    import botocore.session
    from botocore.config import Config

    s3 = stack["s3"]
    return botocore.session.get_session().create_client(
        "s3", endpoint_url=stack["endpoint"], region_name="us-east-1", aws_access_key_id=s3["access_key"],
        aws_secret_access_key=s3["secret_key"], config=Config(s3={"addressing_style": "path"}))


def objects_under(stack, bucket: str, prefix: str) -> int:
    return admin_s3(stack).list_objects_v2(Bucket=bucket, Prefix=prefix.strip("/") + "/").get("KeyCount", 0)


def acl_users(stack) -> set[str]:
    return {u.decode() if isinstance(u, bytes) else u for u in stack["admin"].acl_users()}


def lifecycle(stack, name: str, env: dict, *create_args: str, delete_while_mounted: bool = False) -> None:
    mp1, mp2 = mountpoint(stack, f"{name}-1"), mountpoint(stack, f"{name}-2")
    p = run(env, "workspace", "create", name, mp1, *create_args)
    assert f"Workspace {name} is active." in p.stdout and f"Mounting {mp1} ..." in p.stderr
    with open(os.path.join(mp1, "report.md"), "w") as f:
        f.write("hello from the first mount\n")
    os.makedirs(os.path.join(mp1, "data"))
    with open(os.path.join(mp1, "data", "big.bin"), "wb") as f:
        f.write(os.urandom(5 << 20))  # past the inline limit and one block: real S3 objects
    big = read(os.path.join(mp1, "data", "big.bin"), "rb")
    run(env, "unmount", mp1)
    assert not os.path.ismount(mp1)
    ref = f"artifacts://{stack['creds']['handle']}/{name}"
    run(env, "mount", ref, mp2)
    assert read(os.path.join(mp2, "report.md")) == "hello from the first mount\n"
    assert read(os.path.join(mp2, "data", "big.bin"), "rb") == big
    show = json.loads(run(env, "--format", "json", "workspace", "show", f"{stack['creds']['handle']}/{name}").stdout)
    prefix, storage = show["metadata_key_prefix"], show["storage"]
    assert objects_under(stack, storage["bucket"], storage["prefix"]) > 0
    live = stack["api"].sessions.list(name).sessions
    assert len(live) == 1 and live[0].mountpoint == mp2
    users = {s.redis_user for s in live}
    assert users <= acl_users(stack)
    assert keys_under(stack, prefix)
    run(env, "unmount", mp2)
    assert stack["api"].sessions.list(name).sessions == []  # unmount revoked its session
    assert not users & acl_users(stack)
    run(env, "mount", name, mp1)
    sid = stack["api"].sessions.list(name).sessions[0]
    if not delete_while_mounted:
        run(env, "unmount", mp1)
    p = run(env, "workspace", "delete", name, "--yes")
    assert f"Workspace {ref} deleted." in p.stdout
    assert keys_under(stack, prefix) == []
    if show["backend"] == "managed":  # the managed prefix is emptied; a BYO bucket is never touched
        assert objects_under(stack, storage["bucket"], storage["prefix"]) == 0
    else:
        assert objects_under(stack, storage["bucket"], storage["prefix"]) > 0
    revoked = stack["api"].sessions.list(name, include_revoked=True).sessions
    assert sid.id in [s.id for s in revoked if s.revoked_at] and sid.redis_user not in acl_users(stack)
    if delete_while_mounted:
        # The live mount loses access at once (EACCES), and delete names it.
        assert f"{mp1} still mounts" in p.stderr
        with pytest.raises(OSError) as e:
            os.listdir(mp1)
        assert e.value.errno == errno.EACCES
        run(env, "unmount", mp1)
    assert json.loads(run(env, "--format", "json", "workspace", "show", name).stdout)["status"] == "deleted"


def test_up_again_is_a_no_op_and_logs_in(stack):
    assert stack["info"]["started"] == ["redis", "s3", "orchestrator"]
    again = json.loads(run(stack["env"], "--format", "json", "up").stdout)
    assert again["started"] == [] and again["orchestrator_url"] == stack["info"]["orchestrator_url"]
    cred = stack["base"] / "config" / "tonbo" / "artifacts" / "credentials.json"
    assert stat.S_IMODE(cred.stat().st_mode) == 0o600
    for f in ("orchestrator.json", "account.json", "s3-admin.json"):
        assert stat.S_IMODE((stack["state"] / f).stat().st_mode) == 0o600
    me = json.loads(run(stack["env"], "--format", "json", "whoami").stdout)
    assert me["account"]["handle"] == stack["creds"]["handle"]
    assert stack["creds"]["api_key"] not in run(stack["env"], "whoami").stdout
    # A fresh account lists nothing, as JSON even without --format json (SPEC.md §2.3).
    assert json.loads(run(stack["env"], "workspace", "list").stdout) == {"workspaces": []}


def test_managed_workspace_lifecycle(stack):
    lifecycle(stack, "managed-ws", stack["env"], delete_while_mounted=True)


def test_byo_workspace_lifecycle_and_credential_cache(stack):
    env, s3 = stack["env"], stack["s3"]
    # The BYO bucket: the same SeaweedFS, its own bucket, the admin identity's keys as "the user's".
    admin_s3(stack).create_bucket(Bucket="byo-bucket")
    with_keys = {**env, "ARTIFACTS_S3_ACCESS_KEY_ID": s3["access_key"], "ARTIFACTS_S3_SECRET_ACCESS_KEY": s3["secret_key"]}
    location = ("--backend", "byo", "--bucket", "byo-bucket", "--endpoint", stack["endpoint"])
    # Keys the bucket refuses: Phase 2 fails (exit 7), the workspace stays pending_format, the
    # secret is in no message, and the same command with good keys resumes it.
    wrong = {**with_keys, "ARTIFACTS_S3_SECRET_ACCESS_KEY": "wrong-secret-" + "x" * 20}
    p = run(wrong, "workspace", "create", "byo-retry", *location, code=7)
    assert "re-run the same command" in p.stderr and "wrong-secret" not in p.stderr
    assert stack["api"].workspaces.get("byo-retry").status == "pending_format"
    assert "--backend byo" in run(env, "workspace", "create", "byo-retry", code=5).stderr  # not as managed
    p = run(with_keys, "-v", "workspace", "create", "byo-retry", *location)
    assert "Resuming pending_format workspace" in p.stderr and "Workspace byo-retry is active." in p.stdout
    run(env, "workspace", "delete", "byo-retry", "--yes")
    mp = mountpoint(stack, "byo-0")
    p = run(with_keys, "workspace", "create", "byo-ws", mp, "--backend", "byo", "--bucket", "byo-bucket",
            "--endpoint", stack["endpoint"], "--region", "us-east-1", "--prefix", "team")
    cache = stack["base"] / "config" / "tonbo" / "artifacts" / "byo-credentials"
    assert f"Cached BYO credentials at {cache} (mode 0600);\nfuture mounts will use them automatically." in p.stderr
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert s3["secret_key"] not in p.stdout + p.stderr
    run(env, "unmount", mp)
    run(env, "workspace", "delete", "byo-ws", "--yes")
    # From here on no key in the environment: the cache is used (SPEC.md §6.3).
    lifecycle(stack, "byo-ws2", env, "--backend", "byo", "--bucket", "byo-bucket", "--endpoint", stack["endpoint"],
              "--prefix", "team")
    run(env, "storage", "clear")
    p = run(env, "mount", "byo-ws2", mountpoint(stack, "byo-3"), code=None)
    assert p.returncode in (5, 7)  # deleted (not active) comes first; never a traceback


def test_read_only_mount_refuses_writes(stack):
    env = stack["env"]
    mp, ro = mountpoint(stack, "rw"), mountpoint(stack, "ro")
    run(env, "-q", "workspace", "create", "ro-ws", mp)
    with open(os.path.join(mp, "kept.txt"), "w") as f:
        f.write("kept\n")
    run(env, "mount", "ro-ws", ro, "--read-only")
    assert read(os.path.join(ro, "kept.txt")) == "kept\n"
    for attempt in (lambda: open(os.path.join(ro, "new.txt"), "w").close(), lambda: os.unlink(os.path.join(ro, "kept.txt"))):
        with pytest.raises(OSError) as e:
            attempt()
        assert e.value.errno in (errno.EROFS, errno.EACCES)
    assert [s.mode for s in stack["api"].sessions.list("ro-ws").sessions if s.mountpoint == ro] == ["ro"]
    # stats: the live counters of the mount, as a table and as JSON.
    assert "ops_total" in run(env, "stats", mp).stdout
    metrics = json.loads(run(env, "--format", "json", "stats", mp).stdout)["metrics"]
    assert any(m["name"] == "artifacts_ops_total" and m["labels"].get("op") == "write" for m in metrics)
    # inspect: the keyspace summary, read by the orchestrator (sessions may not SCAN).
    summary = json.loads(run(env, "--format", "json", "inspect", "ro-ws").stdout)
    assert summary["counters"]["totalinodes"] >= 2 and summary["kinds"]["i"] >= 2
    assert {s["mountpoint"] for s in summary["mount_sessions"]} == {mp, ro}
    assert len(stack["api"].sessions.list("ro-ws").sessions) == 2  # inspect opened no session
    run(env, "unmount", ro)
    run(env, "unmount", mp)


def test_interrupted_create_resumes(stack):
    env = stack["env"]
    stack["api"].workspaces.create("resumed")  # Phase 1 only: left pending_format
    p = run(env, "-v", "workspace", "create", "resumed")
    assert f"Resuming pending_format workspace artifacts://{stack['creds']['handle']}/resumed" in p.stderr
    assert "Phase 2:" in p.stderr and "Workspace resumed is active." in p.stdout
    assert stack["api"].workspaces.get("resumed").status == "active"


def test_mistakes_give_documented_errors_and_lose_nothing(stack):
    env = stack["env"]
    mp = mountpoint(stack, "busy")
    run(env, "-q", "workspace", "create", "precious", mp)
    with open(os.path.join(mp, "keep.txt"), "w") as f:
        f.write("precious\n")
    p = run(env, "workspace", "create", "precious", code=5)
    assert "workspace_exists" in p.stderr and "Hint: pick another name, or mount it: `artifacts mount precious " \
                                              "<mountpoint>`" in p.stderr
    p = run(env, "mount", "precious", mp, code=8)
    assert f"Error: path {mp} is already a mount point;\n       run `artifacts unmount {mp}` first" in p.stderr
    run(env, "workspace", "create", "other", mp, code=8)  # checked before anything is reserved
    assert not [w for w in stack["api"].workspaces.list().workspaces if w.name == "other"]
    for args in (("workspace", "show", "nope"), ("mount", "nope", mountpoint(stack, "nope")),
                 ("workspace", "delete", "nope", "--yes"), ("inspect", "nope")):
        assert "workspace_not_found" in run(env, *args, code=4).stderr
    run(env, "workspace", "show", "bad name!", code=2)
    run({**env, "TONBO_API_KEY": "tbo_" + "Z" * 32}, "workspace", "list", code=3)
    p = run(env, "mount", "precious", mountpoint(stack, "nonempty-parent") + "/missing", code=8)
    assert "does not exist" in p.stderr
    assert stack["api"].sessions.list("precious").sessions and len(stack["api"].sessions.list("precious").sessions) == 1
    assert read(os.path.join(mp, "keep.txt")) == "precious\n"
    run(env, "unmount", mp)


def test_login_logout_whoami(stack):
    env = stack["env"]
    cred = stack["base"] / "config" / "tonbo" / "artifacts" / "credentials.json"
    assert "Removed" in run(env, "logout").stdout and not cred.exists()
    run(env, "whoami", code=3)
    new_key = stack["api"].keys.create("cli-test").key
    run({**env, "TONBO_API_KEY": new_key, "ARTIFACTS_ORCHESTRATOR_URL": stack["creds"]["orchestrator_url"]}, "whoami")
    p = run({**env, "ARTIFACTS_ORCHESTRATOR_URL": stack["creds"]["orchestrator_url"]},
            "login", "--api-key", "-", input=new_key + "\n")
    assert "Logged in as" in p.stdout and new_key not in p.stdout + p.stderr
    assert stat.S_IMODE(cred.stat().st_mode) == 0o600
    assert json.loads(run(env, "--format", "json", "whoami").stdout)["key"]["name"] == "cli-test"
    run(env, "login", "--api-key", "-", input="tbo_" + "Q" * 32 + "\n", code=3)  # unknown key: not saved
    assert json.loads(cred.read_text())["api_key"] == new_key
    run(env, "up")  # puts the local account's key back


def test_down_and_up_are_idempotent_and_keep_data(stack):
    env = stack["env"]
    mp = mountpoint(stack, "restart")
    run(env, "-q", "workspace", "create", "durable", mp)
    with open(os.path.join(mp, "note.txt"), "w") as f:
        f.write("survives a restart\n")
    # The orchestrator alone goes away: the mount keeps working (it is not on the data path),
    # new control-plane calls fail with exit 6, and `up` restarts only what is missing.
    orch = json.loads((stack["state"] / "stack.json").read_text())["orchestrator"]["pid"]
    os.kill(orch, signal.SIGTERM)
    fd = os.pidfd_open(orch)
    try:
        assert select.select([fd], [], [], 15)[0], "the orchestrator did not exit on SIGTERM"
    finally:
        os.close(fd)
    run(env, "workspace", "list", code=6)
    with open(os.path.join(mp, "during.txt"), "w") as f:
        f.write("written while the orchestrator was down\n")
    assert read(os.path.join(mp, "note.txt")) == "survives a restart\n"
    assert json.loads(run(env, "--format", "json", "up").stdout)["started"] == ["orchestrator"]
    p = run(env, "down")  # unmounts what this CLI mounted, then stops the stack
    assert not os.path.ismount(mp) and "stopped" in p.stdout
    assert "not running" in run(env, "down").stdout
    run(env, "workspace", "list", code=6)
    again = json.loads(run(env, "--format", "json", "up").stdout)
    assert sorted(again["started"]) == ["orchestrator", "redis", "s3"]
    run(env, "mount", "durable", mp)
    assert read(os.path.join(mp, "note.txt")) == "survives a restart\n"
    assert read(os.path.join(mp, "during.txt")) == "written while the orchestrator was down\n"
    run(env, "unmount", mp)


def test_secrets_stay_out_of_argv_logs_and_loose_files(stack):
    env = stack["env"]
    mp = mountpoint(stack, "secrets")
    run(env, "-v", "workspace", "create", "secret-ws", mp)
    redis_pw = (stack["state"] / "redis" / "admin.pw").read_text().strip()
    secrets = [stack["creds"]["api_key"], stack["s3"]["secret_key"], redis_pw]
    checked = 0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmdline = f.read().decode(errors="replace")
            except OSError:
                continue
            assert not any(sec in cmdline for sec in secrets), cmdline
            if str(stack["base"]) in cmdline:  # this stack's: mount supervisor and child, servers, orchestrator
                assert "redis://" not in cmdline and "ARTIFACTS_S3_SECRET" not in cmdline, cmdline
                checked += "mount" in cmdline or "artifacts_fuse" in cmdline
    assert checked >= 2  # the mount's supervisor and its FUSE child were among them
    # The mount's grant (session Redis password, S3 keys) is in no file either.
    for path in stack["base"].rglob("*"):
        if path.is_file() and "mnt" not in path.parts and path.stat().st_size < (8 << 20):
            text = path.read_bytes().decode(errors="replace")
            assert "redis://ms-" not in text and "redis://fmt-" not in text, path  # session/format URLs
            if path.name not in ("credentials.json", "account.json", "admin.pw", "users.acl", "orchestrator.json",
                                 "s3-admin.json", "s3.json") and "data" not in path.parts:
                assert not any(sec in text for sec in secrets), path
    run(env, "unmount", mp)


def test_mcp_serve_with_a_session_that_ends_with_it(stack):
    import asyncio

    from mcp import ClientSession, StdioServerParameters, stdio_client

    env = stack["env"]
    run(env, "-q", "workspace", "create", "mcp-ws")

    async def session(*extra):
        params = StdioServerParameters(command=ARTIFACTS, args=["mcp", "serve", "mcp-ws", *extra], env=env)
        with open(os.devnull, "w") as errlog:
            async with stdio_client(params, errlog=errlog) as (r, w), ClientSession(r, w) as s:
                await s.initialize()
                names = {t.name for t in (await s.list_tools()).tools}
                during = stack["api"].sessions.list("mcp-ws").sessions
                if "writeFile" in names:
                    assert not (await s.call_tool("writeFile", {"path": "a.md", "content": "hi\n"})).is_error
                got = await s.call_tool("readFile", {"path": "a.md"})
                return names, got.structured_content, during

    names, got, during = asyncio.run(session())
    assert "writeFile" in names and got["content"] == "hi\n"
    assert [x.mode for x in during] == ["rw"]
    names, got, during = asyncio.run(session("--read-only"))
    assert "writeFile" not in names and got["content"] == "hi\n" and [x.mode for x in during] == ["ro"]
    assert stack["api"].sessions.list("mcp-ws").sessions == []  # both revoked when the server ended


def test_the_readme_demo_runs_twice(tmp_path):
    """scripts/demo, the README's first command, on its own stack (fresh XDG directories)."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = cli_env(tmp_path, ARTIFACTS_DEMO_MNT=str(tmp_path / "mnt"), ARTIFACTS_DEMO_PORT="0")
    try:
        outputs = []
        for _ in range(2):
            p = subprocess.run([str(root / "scripts" / "demo")], env=env, capture_output=True, text=True, timeout=300)
            assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
            assert "Traceback" not in p.stdout + p.stderr
            outputs.append(p.stdout + p.stderr)
        first, second = outputs
        assert "artifacts workspace create demo" in first and "Workspace demo is active." in first
        assert "artifacts mount demo" in second and "already running" in second
        for out in outputs:  # the mount, the agent API and .stats all did their part
            assert "written with echo >>" in out and "appendFile notes/agent.md" in out
            assert "ops_total" in out and f"Unmounted {tmp_path / 'mnt'}." in out
        assert second.count("- appended at") >= 2  # the agent's file grew on the second run
        assert not os.path.ismount(tmp_path / "mnt")
    finally:
        run(env, "down", code=None)


def test_foreground_mount_serves_until_unmounted(stack):
    import subprocess
    import time

    env = stack["env"]
    run(env, "-q", "workspace", "create", "fg-ws")
    mp = mountpoint(stack, "fg")
    proc = subprocess.Popen([ARTIFACTS, "mount", "fg-ws", mp, "--foreground"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not os.path.ismount(mp):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        with open(os.path.join(mp, "fg.txt"), "w") as f:
            f.write("foreground\n")
        assert [s.mountpoint for s in stack["api"].sessions.list("fg-ws").sessions] == [mp]
        run(env, "unmount", mp)
        # unmount returns once the foreground process has committed, closed and revoked: a
        # revocation while it still closes would make it fail ("Redis refused …", exit 8).
        assert proc.poll() is not None, "unmount returned while the foreground mount was still closing"
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "Traceback" not in err, err
    assert f"Mounting {mp} ..." in err and f"Unmounted {mp}." in err
    assert stack["api"].sessions.list("fg-ws").sessions == []
    assert read_via_api(stack, "fg-ws", "fg.txt") == "foreground\n"
    assert stack["api"].sessions.list("fg-ws").sessions == []  # the API's ro session ended too


def read_via_api(stack, name: str, path: str) -> str:
    """A file's text through the Python API (``open_workspace``, no mount), with the CLI's login."""
    import subprocess

    code = ("import sys\nfrom artifacts_cli.connect import open_workspace\n"
            "with open_workspace(sys.argv[1], read_only=True) as vol, vol.open(sys.argv[2]) as f:\n"
            "    sys.stdout.write(f.read())\n")
    p = subprocess.run([os.path.join(os.path.dirname(ARTIFACTS), "python"), "-c", code, name, path],
                       env=stack["env"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_exec_runs_commands_in_a_sandbox_on_the_workspace(stack):
    """``artifacts exec``: on the CLI's own mount when there is one, else a mount for the run;
    the command's status and output; JSON results; a transaction; the timeout's status."""
    env = stack["env"]
    mp = mountpoint(stack, "exec")
    run(env, "-q", "workspace", "create", "exec-ws")
    # No mount here yet: the run mounts the workspace for itself and unmounts after.
    p = run(env, "exec", "exec-ws", "--", "sh", "-c", "echo one > a.txt; cat a.txt; id -u; exit 3", code=3)
    assert p.stdout == "one\n1000\n"
    run(env, "mount", "exec-ws", mp)
    assert read(os.path.join(mp, "a.txt")) == "one\n"
    # With the CLI's mount: used as is; --format json gives the whole result.
    p = run(env, "--format", "json", "exec", "exec-ws", "--", "sh", "-c", "sort > b.txt; cat b.txt")
    assert json.loads(p.stdout)["exit_code"] == 0
    p = run(env, "--format", "json", "exec", "exec-ws", "--stdin", "--", "sh", "-c", "sort > b.txt; cat b.txt",
            input="pear\napple\n")
    result = json.loads(p.stdout)
    assert result["stdout"] == "apple\npear\n" and result["changed"] == ["b.txt"]
    assert read(os.path.join(mp, "b.txt")) == "apple\npear\n"
    p = run(env, "--format", "json", "exec", "exec-ws", "--isolated", "--", "sh", "-c", "echo txn > c.txt")
    assert json.loads(p.stdout)["committed"] is True and read(os.path.join(mp, "c.txt")) == "txn\n"
    run(env, "exec", "exec-ws", "--isolated", "--", "sh", "-c", "echo no > d.txt; exit 1", code=1)
    assert not os.path.exists(os.path.join(mp, "d.txt"))
    p = run(env, "exec", "exec-ws", "--timeout", "1", "--", "sleep", "30", code=124)
    assert "timeout" in p.stderr
    # The session's secrets never reach the command.
    p = run(env, "exec", "exec-ws", "--", "sh", "-c", "env; cat /proc/*/environ 2>/dev/null")
    assert "ARTIFACTS" not in p.stdout and "redis://" not in p.stdout and "TONBO" not in p.stdout
    run(env, "exec", "exec-ws", code=2)  # no command
    run(env, "unmount", mp)


def test_local_stack_seaweedfs_answers_no_other_local_user(stack):
    """DESIGN.md §10 on the stack `artifacts up` starts: with a mounted managed workspace (its
    blocks in S3, its session's IAM identity in the filer), uid nobody reaches nothing of
    SeaweedFS but the S3 port, where it gets 403 (docs/orchestrator.md, local-stack ports)."""
    if os.geteuid() != 0:
        pytest.skip("probing as another user needs root (setpriv)")
    from seaweed_probe import curl_as_nobody, probe_internal_ports, weed_sockets

    env = stack["env"]
    mp = mountpoint(stack, "ports")
    run(env, "-q", "workspace", "create", "ports-ws", mp)
    with open(os.path.join(mp, "big.bin"), "wb") as f:
        f.write(os.urandom(1 << 20))  # past the inline limit: a real block object
    run(env, "unmount", mp)
    run(env, "mount", "ports-ws", mp)  # a live session: its IAM identity is in the filer
    show = json.loads(run(env, "--format", "json", "workspace", "show", "ports-ws").stdout)["storage"]
    listing = admin_s3(stack).list_objects_v2(Bucket=show["bucket"], Prefix=show["prefix"] + "/")
    key = next(o["Key"] for o in listing["Contents"] if o["Size"] > 4096)
    st = json.loads((stack["state"] / "stack.json").read_text())
    ports = st["s3"]["ports"]
    assert probe_internal_ports(ports, weed_sockets(stack["state"] / "s3", ports), show["bucket"], key) == []
    assert curl_as_nobody(f"{stack['endpoint']}/{show['bucket']}/{key}")[0] == "403"
    with open(os.path.join(mp, "big.bin"), "rb") as f:
        assert len(f.read()) == 1 << 20  # the mount itself reads through the S3 gateway as before
    run(env, "unmount", mp)
    run(env, "workspace", "delete", "ports-ws", "--yes")


def test_mount_processes_do_not_inherit_the_callers_api_key(stack):
    """A ``TONBO_API_KEY`` in the caller's environment used to be inherited by the long-lived
    mount processes (/proc/<pid>/environ of the supervisor and the FUSE process); they never
    call the orchestrator, so it is dropped. The CLI itself still uses it (unmount revokes)."""
    env = {**stack["env"], "TONBO_API_KEY": stack["creds"]["api_key"]}
    mp = mountpoint(stack, "nokey")
    run(env, "-q", "workspace", "create", "nokey-ws", mp)
    found = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{pid}/environ", "rb") as f:
                environ = f.read()
        except OSError:
            continue
        if os.fsencode(mp) in cmdline:  # the supervisor and its FUSE process
            found += 1
            assert b"TONBO_API_KEY" not in environ and stack["creds"]["api_key"].encode() not in environ, cmdline
    assert found >= 2
    run(env, "unmount", mp)
    assert stack["api"].sessions.list("nokey-ws").sessions == []
    run(env, "workspace", "delete", "nokey-ws", "--yes")


def test_seed_001_create_is_byo_and_show_and_delete_say_where_the_objects_are(stack):
    env, s3 = stack["env"], stack["s3"]
    admin_s3(stack).create_bucket(Bucket="panta-cases")
    with_keys = {**env, "ARTIFACTS_S3_ACCESS_KEY_ID": s3["access_key"], "ARTIFACTS_S3_SECRET_ACCESS_KEY": s3["secret_key"],
                 "ARTIFACTS_S3_REGION": "auto"}
    # Seed 001, as written: --bucket and --endpoint, no --backend.
    p = run(with_keys, "workspace", "create", "cases", "--bucket", "panta-cases", "--endpoint", stack["endpoint"])
    assert "--bucket given: creating a BYO workspace" in p.stderr
    assert "Creating workspace cases (reserving its metadata namespace)…" in p.stderr
    assert "provisioning storage credentials" not in p.stderr
    show = json.loads(run(env, "--format", "json", "workspace", "show", "cases").stdout)
    assert show["backend"] == "byo" and show["storage"]["bucket"] == "panta-cases"
    where = f"s3://panta-cases/{show['volume_name']}/"
    assert show["objects"] == where and objects_under(stack, "panta-cases", show["volume_name"]) > 0
    assert f"objects:  {where}" in run(env, "workspace", "show", "cases").stdout
    # The bucket refuses the host's keys: exit 7 (storage credentials), not 8; no session stays.
    wrong = {**env, "ARTIFACTS_S3_SECRET_ACCESS_KEY": "wrong-secret-" + "x" * 20}
    p = run(wrong, "mount", "cases", mountpoint(stack, "cases"), code=7)
    assert "refused" in p.stderr and "artifacts storage" in p.stderr and "wrong-secret" not in p.stderr
    assert stack["api"].sessions.list("cases").sessions == []
    p = run(env, "workspace", "delete", "cases", "--yes")
    assert f"Its objects stay in your bucket, under {where} (endpoint {stack['endpoint']})" in p.stdout
    assert objects_under(stack, "panta-cases", show["volume_name"]) > 0  # left, as said
    run(env, "storage", "clear")


def test_interrupted_create_says_rerunning_resumes(stack):
    import socket
    import subprocess
    import time

    env = {**stack["env"], "ARTIFACTS_S3_ACCESS_KEY_ID": "AK" + "1" * 18, "ARTIFACTS_S3_SECRET_ACCESS_KEY": "s" * 30}
    with socket.socket() as silent:  # an S3 endpoint that accepts connections and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        proc = subprocess.Popen([ARTIFACTS, "workspace", "create", "stopped", "--bucket", "b-stopped", "--endpoint",
                                 endpoint], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 30
            while not [w for w in stack["api"].workspaces.list().workspaces if w.name == "stopped"]:
                assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
                time.sleep(0.05)
            time.sleep(0.3)  # Phase 2 is under way, waiting on the silent endpoint
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert "Error: interrupted while creating stopped" in err
    assert "Hint: re-run the same command: it resumes where this one stopped" in err
    assert stack["api"].workspaces.get("stopped").status == "pending_format"
    run(stack["env"], "workspace", "delete", "stopped", "--yes")


def test_stale_mount_hint_is_artifacts_unmount_which_clears_it(stack):
    env = stack["env"]
    mp = mountpoint(stack, "stale")
    run(env, "-q", "workspace", "create", "stale-ws", mp)
    mounts = stack["base"] / "state" / "tonbo" / "artifacts" / "mounts"
    (state,) = [json.loads(p.read_text()) for p in mounts.glob("*.json") if json.loads(p.read_text())["mountpoint"] == mp]
    os.kill(state["supervisor"], signal.SIGKILL)  # SPEC.md §5.3's "never kill -9": a stale mount
    fd = os.pidfd_open(state["supervisor"])
    try:
        select.select([fd], [], [], 15)
    finally:
        os.close(fd)
    p = run(env, "mount", "stale-ws", mp, code=8)
    assert f"run `artifacts unmount {mp}` first" in p.stderr and "stale" in p.stderr
    run(env, "unmount", mp)  # the hint works
    assert not os.path.ismount(mp)
    run(env, "mount", "stale-ws", mp)
    run(env, "unmount", mp)


def test_json_times_are_iso_8601_like_the_text(stack):
    env = stack["env"]
    run(env, "-q", "workspace", "create", "timed")
    listed = json.loads(run(env, "--format", "json", "workspace", "list").stdout)["workspaces"]
    (timed,) = [w for w in listed if w["name"] == "timed"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", timed["created_at"]), timed
    table = run(env, "workspace", "list").stdout
    assert any(line.split()[0].endswith("/timed") and line.split()[-1] == timed["created_at"]
               for line in table.splitlines()[1:])
    shown = json.loads(run(env, "--format", "json", "workspace", "show", "timed").stdout)
    assert shown["created_at"] == timed["created_at"] and shown["deleted_at"] is None
    p = run(env, "--format", "json", "workspace", "show", "nope", code=4)
    assert json.loads(p.stdout)["error"]["code"] == "workspace_not_found"
