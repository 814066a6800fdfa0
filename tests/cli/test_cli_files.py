"""The commands that work on a workspace's files and metadata without a mount, end to end: a real
local stack (``artifacts up --port 0``: Redis, SeaweedFS, the orchestrator) under temporary XDG
directories, every step ``.venv/bin/artifacts`` as a subprocess.

Proves: ``fs ls|cat|stat|mkdir|rm|cp|put|get`` move trees both ways and between workspaces keeping
bytes (inline and multi-block), modes, mtimes and symlinks, with their documented exit codes and
JSON; ``sync`` copies only what differs, ``--dry-run`` changes nothing, ``--delete`` removes
what the source lacks; and no session of these commands outlives them.
"""

from __future__ import annotations

import json
import os
import select
import signal
import stat
from pathlib import Path

import pytest
from test_cli_local import cli_env, run

from artifacts_orchestrator.client import Artifacts

pytestmark = [pytest.mark.redis, pytest.mark.s3, pytest.mark.slow]

#: Bigger than one 4 MiB block, so a copy crosses a block boundary.
BIG = 5 * (1 << 20) + 123


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    base = tmp_path_factory.mktemp("files")
    env = cli_env(base)
    run(env, "--format", "json", "up", "--port", "0")
    creds = json.loads((base / "config" / "tonbo" / "artifacts" / "credentials.json").read_text())
    for name in ("one", "two"):
        run(env, "workspace", "create", name)
    state = base / "state" / "tonbo" / "artifacts" / "stack"
    yield {"env": env, "base": base, "api": Artifacts(creds["api_key"], base_url=creds["orchestrator_url"]),
           "s3": json.loads((state / "s3-admin.json").read_text()),
           "endpoint": json.loads((state / "stack.json").read_text())["s3"]["endpoint"]}
    run(env, "down", code=None)


def js(stack, *args: str, code: int = 0):
    p = run(stack["env"], "--format", "json", *args, code=code)
    return json.loads(p.stdout)


def make_tree(root) -> dict[str, bytes]:
    files = {"a.txt": b"hello\n", "sub/b.bin": os.urandom(BIG), "sub/deeper/c.md": b"# c\n", "empty": b""}
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    (root / "sub" / "run.sh").write_bytes(b"#!/bin/sh\necho hi\n")
    (root / "sub" / "run.sh").chmod(0o755)
    files["sub/run.sh"] = b"#!/bin/sh\necho hi\n"
    (root / "link").symlink_to("sub/deeper/c.md")
    os.utime(root / "a.txt", (1_600_000_000, 1_600_000_000))
    (root / "emptydir").mkdir()
    return files


def test_fs_put_ls_stat_cat_get_roundtrip(stack, tmp_path):
    src = tmp_path / "src"
    files = make_tree(src)
    done = js(stack, "fs", "put", str(src), "one:/")
    assert done["files"] == len(files) and done["symlinks"] == 1 and done["bytes"] == sum(map(len, files.values()))
    assert {s["path"] for s in done["steps"]} >= {"one:/src/a.txt", "one:/src/emptydir"}

    listing = js(stack, "fs", "ls", "-R", "one:src")
    by_name = {e["name"]: e for e in listing["entries"]}
    assert by_name["sub/b.bin"]["size"] == BIG and by_name["sub/b.bin"]["type"] == "file"
    assert by_name["link"]["type"] == "symlink" and by_name["emptydir"]["type"] == "dir"
    assert by_name["sub/run.sh"]["mode"] == "0o755"
    text = run(stack["env"], "fs", "ls", "one:src").stdout.split()
    assert text == ["a.txt", "empty", "emptydir/", "link", "sub/"]
    long = run(stack["env"], "fs", "ls", "-l", "one:src").stdout
    assert long.splitlines()[0].split() == ["TYPE", "MODE", "SIZE", "MODIFIED", "NAME"]
    assert "2020-09-13T12:26:40Z" in long  # a.txt's mtime was kept

    st = js(stack, "fs", "stat", "one:src/link")
    assert st["type"] == "symlink" and st["target"] == "sub/deeper/c.md"
    st = js(stack, "fs", "stat", "artifacts://root/one/src/a.txt")
    assert st["size"] == 6 and st["mtime"] == "2020-09-13T12:26:40Z" and st["permissions"].startswith("-rw")
    assert "size:" in run(stack["env"], "fs", "stat", "one:src/a.txt").stdout

    cat = run(stack["env"], "fs", "cat", "one:src/a.txt", "one:src/link")
    assert cat.stdout == "hello\n# c\n"

    back = tmp_path / "back"
    run(stack["env"], "fs", "get", "one:src", str(back) + "/")
    for rel, data in files.items():
        assert (back / "src" / rel).read_bytes() == data, rel
    assert os.readlink(back / "src" / "link") == "sub/deeper/c.md"
    assert stat.S_IMODE((back / "src" / "sub" / "run.sh").stat().st_mode) == 0o755
    assert (back / "src" / "a.txt").stat().st_mtime == 1_600_000_000
    assert (back / "src" / "emptydir").is_dir()


def test_fs_cp_between_workspaces_and_single_files(stack, tmp_path):
    src = tmp_path / "t"
    files = make_tree(src)
    run(stack["env"], "fs", "mkdir", "-p", "one:x/y")
    run(stack["env"], "fs", "cp", "-r", str(src), "one:x/y")
    run(stack["env"], "fs", "cp", "-r", "one:x/y/t", "two:copied")  # a new name: the tree itself
    got = tmp_path / "got"
    run(stack["env"], "fs", "cp", "-r", "two:copied", str(got))
    for rel, data in files.items():
        assert (got / rel).read_bytes() == data, rel
    # a single file, onto a new name and into a directory; over an existing file
    run(stack["env"], "fs", "cp", "two:copied/a.txt", "two:renamed.txt")
    run(stack["env"], "fs", "cp", str(src / "sub" / "run.sh"), "two:copied")
    (tmp_path / "new.txt").write_text("replaced\n")
    run(stack["env"], "fs", "cp", str(tmp_path / "new.txt"), "two:renamed.txt")
    assert run(stack["env"], "fs", "cat", "two:renamed.txt").stdout == "replaced\n"
    assert "run.sh" in run(stack["env"], "fs", "ls", "two:copied").stdout.split()
    # two sources into a directory that a trailing / makes
    run(stack["env"], "fs", "cp", str(tmp_path / "new.txt"), str(src / "a.txt"), "two:made/")
    assert run(stack["env"], "fs", "ls", "two:made").stdout.split() == ["a.txt", "new.txt"]


def test_fs_mistakes_have_their_exit_codes_and_lose_nothing(stack, tmp_path):
    env = stack["env"]
    p = run(env, "fs", "cat", "one:nope.txt", code=4)
    assert p.stderr.startswith("Error: one:nope.txt: ") and "Traceback" not in p.stderr
    err = json.loads(run(env, "--format", "json", "fs", "stat", "one:nope", code=4).stdout)["error"]
    assert err["code"] == "ENOENT" and err["exit_code"] == 4
    run(env, "fs", "mkdir", "one:keep", code=0)
    run(env, "fs", "cp", str(tmp_path), "one:keep", code=2)  # a directory without -r
    p = run(env, "fs", "mkdir", "one:keep", code=5)
    assert "exist" in p.stderr.lower()
    run(env, "fs", "cp", "-r", str(tmp_path), "one:keep")
    p = run(env, "fs", "rm", "one:keep", code=2)
    assert "-r" in p.stderr
    run(env, "fs", "rm", "one:/", code=2)
    run(env, "fs", "rm", "-f", "one:not-there")
    run(env, "fs", "rm", "one:not-there", code=4)
    p = run(env, "fs", "ls", str(tmp_path), code=2)
    assert "WORKSPACE:PATH" in p.stderr
    p = run(env, "fs", "ls", "nosuch:x", code=4)
    assert "workspace_not_found" in p.stderr
    run(env, "fs", "put", "one:keep", "two:x", code=2)
    run(env, "fs", "get", "one:keep", "two:x", code=2)
    assert run(env, "fs", "ls", "one:keep").stdout.strip() == tmp_path.name + "/"
    run(env, "fs", "rm", "-r", "one:keep")
    run(env, "fs", "ls", "one:keep", code=4)


def tree_of(root) -> dict[str, object]:
    """Every entry under a local ``root``: bytes of files, ``->target`` of links, ``dir``."""
    found: dict[str, object] = {}
    for dirpath, dirs, files in os.walk(root):
        for d in dirs:
            p = os.path.join(dirpath, d)
            found[os.path.relpath(p, root)] = "->" + os.readlink(p) if os.path.islink(p) else "dir"
        for f in files:
            p = os.path.join(dirpath, f)
            found[os.path.relpath(p, root)] = ("->" + os.readlink(p) if os.path.islink(p)
                                               else Path(p).read_bytes())
    return found


def test_sync_copies_only_what_differs_and_deletes_on_request(stack, tmp_path):
    src = tmp_path / "src"
    files = make_tree(src)
    first = js(stack, "sync", str(src), "one:mirror")
    assert first["files"] == len(files) and first["unchanged"] == 0 and not first["dry_run"]
    again = js(stack, "sync", str(src), "one:mirror")
    assert again["files"] == 0 and again["steps"] == [] and again["unchanged"] == len(files) + 1  # + the link

    (src / "a.txt").write_bytes(b"changed, longer\n")
    (src / "added.txt").write_bytes(b"new\n")
    (src / "sub" / "deeper" / "c.md").unlink()
    (src / "empty").unlink()
    (src / "empty").mkdir()  # a file became a directory
    dry = js(stack, "sync", "--dry-run", "--delete", str(src), "one:mirror")
    assert dry["dry_run"] and {(s["action"], s["path"]) for s in dry["steps"]} == {
        ("copy", "one:mirror/a.txt"), ("copy", "one:mirror/added.txt"), ("mkdir", "one:mirror/empty"),
        ("delete", "one:mirror/sub/deeper/c.md")}
    text = run(stack["env"], "sync", "--dry-run", "--delete", str(src), "one:mirror").stdout
    assert "would delete one:mirror/sub/deeper/c.md" in text and text.rstrip().endswith("unchanged")
    assert run(stack["env"], "fs", "cat", "one:mirror/a.txt").stdout == "hello\n"  # the dry run changed nothing

    kept = js(stack, "sync", str(src), "one:mirror")  # without --delete: c.md stays
    assert kept["files"] == 2 and kept["deleted"] == 0
    run(stack["env"], "fs", "stat", "one:mirror/sub/deeper/c.md")
    gone = js(stack, "sync", "--delete", str(src), "one:mirror")
    assert gone["deleted"] == 1 and gone["files"] == 0
    run(stack["env"], "fs", "stat", "one:mirror/sub/deeper/c.md", code=4)

    # workspace -> workspace -> local: the same tree arrives
    js(stack, "sync", "one:mirror", "two:mirror")
    out = tmp_path / "out"
    js(stack, "sync", "artifacts://root/two/mirror", str(out))
    assert tree_of(out) == tree_of(src)
    assert js(stack, "sync", "two:mirror", str(out))["files"] == 0
    # a workspace root: its own entries (.stats, .config, .accesslog, .trash) are not files to copy
    whole = tmp_path / "whole"
    js(stack, "sync", "two:/", str(whole))
    run(stack["env"], "fs", "get", "two:/", str(tmp_path / "got"))
    for name in (".stats", ".config", ".accesslog", ".trash"):
        assert not (whole / name).exists() and not (tmp_path / "got" / name).exists(), name
    assert (whole / "mirror" / "a.txt").read_bytes() == b"changed, longer\n"


def test_import_an_s3_prefix_and_a_local_tree(stack, tmp_path):
    import botocore.session
    from botocore.config import Config

    s3 = stack["s3"]
    client = botocore.session.get_session().create_client(
        "s3", endpoint_url=stack["endpoint"], region_name="us-east-1", aws_access_key_id=s3["access_key"],
        aws_secret_access_key=s3["secret_key"], config=Config(s3={"addressing_style": "path"}))
    client.create_bucket(Bucket="legacy")
    big = os.urandom(BIG)
    for key, body in (("pre/a.txt", b"A"), ("pre/d/big.bin", big), ("pre/folder/", b""), ("elsewhere/x", b"x")):
        client.put_object(Bucket="legacy", Key=key, Body=body)
    env = {**stack["env"], "ARTIFACTS_S3_ACCESS_KEY_ID": s3["access_key"],
           "ARTIFACTS_S3_SECRET_ACCESS_KEY": s3["secret_key"]}
    p = run(env, "--format", "json", "import", "s3://legacy/pre", "two:imported", "--endpoint", stack["endpoint"])
    assert json.loads(p.stdout)["files"] == 2
    assert run(env, "fs", "ls", "-R", "two:imported").stdout.split() == ["a.txt", "d/", "d/big.bin", "folder/"]
    got = tmp_path / "got"
    run(env, "fs", "get", "two:imported/d/big.bin", str(got))
    assert got.read_bytes() == big
    again = json.loads(run(env, "--format", "json", "import", "s3://legacy/pre", "two:imported",
                           "--endpoint", stack["endpoint"]).stdout)
    assert again["files"] == 0 and again["unchanged"] == 2  # resumable: nothing copied twice
    assert client.list_objects_v2(Bucket="legacy")["KeyCount"] == 4  # the source is only read

    wrong = {**env, "ARTIFACTS_S3_SECRET_ACCESS_KEY": "not-the-secret"}
    p = run(wrong, "import", "s3://legacy/pre", "two:x", "--endpoint", stack["endpoint"], code=7)
    assert "refused" in p.stderr and "not-the-secret" not in p.stderr
    run(env, "import", "s3://no-such-bucket/pre", "two:x", "--endpoint", stack["endpoint"], code=4)

    src = tmp_path / "tree"
    files = make_tree(src)
    p = run(stack["env"], "--format", "json", "import", str(src), "two")  # the workspace root
    assert json.loads(p.stdout)["files"] == len(files)
    assert run(stack["env"], "fs", "cat", "two:sub/deeper/c.md").stdout == "# c\n"
    run(stack["env"], "import", "one:mirror", "two", code=2)


def test_file_commands_leave_no_session_behind(stack):
    api = stack["api"]
    run(stack["env"], "fs", "ls", "one:/")
    for name in ("one", "two"):
        ws = api.workspaces.get(name)
        assert api.sessions.list(ws.identifier).sessions == [], name


def _wait_gone(pid: int) -> None:
    fd = os.pidfd_open(pid)
    try:
        select.select([fd], [], [], 15)
    finally:
        os.close(fd)


def test_status_reports_mounts_sessions_and_a_workspace_probe(stack):
    env, api = stack["env"], stack["api"]
    mp = stack["base"] / "mnt" / "status"
    mp.mkdir(parents=True)
    run(env, "mount", "one", str(mp))
    try:
        (mp / "written.txt").write_bytes(b"x" * 1000)
        report = js(stack, "status")
        assert report["healthy"] and report["orchestrator"]["reachable"] and report["orchestrator"]["handle"] == "root"
        assert {n: p["running"] for n, p in report["local_stack"].items()} == {
            "redis": True, "s3": True, "orchestrator": True}
        (m,) = [m for m in report["mounts"] if m["mountpoint"] == str(mp)]
        assert m["state"] == "live" and m["mode"] == "rw" and m["session_state"] == "live"
        assert m["workspace"] == "artifacts://root/one" and m["session_expires_at"].endswith("Z")
        for key in ("uploads_in_flight", "buffered_bytes", "memory_cache_bytes", "disk_cache_bytes", "upload_errors"):
            assert isinstance(m[key], int), key
        text = run(env, "status", str(mp)).stdout
        assert "live (rw)" in text and "pending:" in text and "cache:" in text
        ws = js(stack, "status", "one")
        assert ws["workspace"]["status"] == "active" and ws["probe"]["ok"] and ws["probe"]["open_ms"] > 0
        assert m["session"] in {s["id"] for s in ws["workspace"]["sessions"]}
        assert [x["mountpoint"] for x in ws["mounts"]] == [str(mp)]
        assert "from here: opened (Redis + S3)" in run(env, "status", "one").stdout

        api.sessions.revoke("artifacts://root/one", m["session"])  # what a delete or an admin does
        p = run(env, "status", str(mp), code=8)
        assert "revoked or expired" in p.stdout and f"artifacts unmount {mp}" in p.stdout
    finally:
        run(env, "unmount", str(mp), code=None)

    run(env, "mount", "one", str(mp))
    mounts = stack["base"] / "state" / "tonbo" / "artifacts" / "mounts"
    (sup,) = [json.loads(p.read_text())["supervisor"] for p in mounts.glob("*.json")
              if json.loads(p.read_text())["mountpoint"] == str(mp)]
    os.kill(sup, signal.SIGKILL)  # the FUSE process dies with its supervisor: a stale mount
    _wait_gone(sup)
    report = json.loads(run(env, "--format", "json", "status", code=8).stdout)
    (m,) = [m for m in report["mounts"] if m["mountpoint"] == str(mp)]
    assert m["state"] == "stale" and not m["healthy"] and not report["healthy"]
    run(env, "unmount", str(mp))
    run(env, "status", "/nowhere/mounted", code=8)
    run(env, "status", "no-such-ws", code=4)


def _admin_s3(stack):
    import botocore.session
    from botocore.config import Config

    s3 = stack["s3"]
    return botocore.session.get_session().create_client(
        "s3", endpoint_url=stack["endpoint"], region_name="us-east-1", aws_access_key_id=s3["access_key"],
        aws_secret_access_key=s3["secret_key"], config=Config(s3={"addressing_style": "path"}))


def test_gc_and_fsck_find_leaks_and_missing_blocks_and_repair_what_is_safe(stack, tmp_path):
    env = stack["env"]
    run(env, "workspace", "create", "checked")
    (tmp_path / "big.bin").write_bytes(os.urandom(BIG))
    (tmp_path / "small.txt").write_bytes(b"small and inline\n")
    run(env, "fs", "put", str(tmp_path / "big.bin"), str(tmp_path / "small.txt"), "checked:data/")
    clean = js(stack, "fsck", "checked")
    assert clean["clean"] and clean["objects"]["missing_blocks"] == 0 and clean["objects"]["blocks"] >= 2
    assert clean["namespace"]["files"] == 2 and clean["namespace"]["dangling"] == []
    assert run(env, "fsck", "checked").stdout.rstrip().endswith("Clean.")

    w = js(stack, "workspace", "show", "checked")
    s = w["storage"]
    base = "/".join(p for p in (s["prefix"].strip("/"), w["volume_name"]) if p) + "/"
    s3 = _admin_s3(stack)
    # a leaked object: a block of a slice no chunk list names and no live session reserved
    leaked = base + "chunks/1000/1000000/1000000000_0_10"
    s3.put_object(Bucket=s["bucket"], Key=leaked, Body=b"0123456789")
    gc = js(stack, "gc", "checked", "--dry-run")  # the default min age (1 h) protects it
    assert gc["leaked"] == 0 and gc["young"] == 1 and gc["deleted"] == 0
    gc = js(stack, "gc", "checked", "--dry-run", "--min-age", "0")
    assert gc["leaked_keys"] == ["chunks/1000/1000000/1000000000_0_10"] and gc["deleted"] == 0
    assert s3.head_object(Bucket=s["bucket"], Key=leaked)
    found = js(stack, "fsck", "checked")
    assert found["clean"] and found["objects"]["unreferenced"] == 1  # waste, not damage
    gc = js(stack, "gc", "checked", "--min-age", "0")
    assert gc["deleted"] == 1 and gc["referenced"] == clean["objects"]["blocks"]
    assert "1000000000_0_10" not in str(s3.list_objects_v2(Bucket=s["bucket"], Prefix=base).get("Contents"))
    assert run(env, "fs", "cat", "checked:data/small.txt").stdout == "small and inline\n"  # nothing else went

    s3.put_object(Bucket=s["bucket"], Key=leaked, Body=b"0123456789")
    repaired = js(stack, "fsck", "checked", "--repair", "--min-age", "0")
    assert repaired["repaired"]["deleted_objects"] == 1 and repaired["clean"]

    # a lost block: fsck names the file and exits 1; --repair cannot bring data back
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=s["bucket"], Prefix=base + "chunks/")["Contents"]]
    s3.delete_object(Bucket=s["bucket"], Key=keys[0])
    p = run(env, "--format", "json", "fsck", "checked", code=1)
    damaged = json.loads(p.stdout)
    assert not damaged["clean"] and damaged["objects"]["missing_blocks"] == 1
    assert damaged["objects"]["missing"][0]["files"] == ["/data/big.bin"]
    text = run(env, "fsck", "checked", "--repair", code=1).stdout
    assert "in /data/big.bin" in text and "restore those files from a copy" in text
    run(env, "gc", "checked", "--min-age", "-1", code=2)
    run(env, "fsck", "nope", code=4)


def test_quota_show_set_and_enforced_at_once(stack, tmp_path):
    env = stack["env"]
    run(env, "workspace", "create", "limited")
    q = js(stack, "quota", "show", "limited")
    assert q["capacity"] == 0 and q["inodes"] == 0 and q["used_inodes"] >= 1
    assert "no limit" in run(env, "quota", "show", "limited").stdout
    q = js(stack, "quota", "set", "limited", "--capacity", "6MiB")
    assert q["capacity"] == 6 << 20 and q["inodes"] == 0
    assert "(" in run(env, "quota", "show", "limited").stdout  # "x of y (n%)"
    (tmp_path / "big.bin").write_bytes(os.urandom(BIG))  # 5 MiB fits in 6 MiB
    run(env, "fs", "put", str(tmp_path / "big.bin"), "limited:/")
    p = run(env, "--format", "json", "fs", "put", str(tmp_path / "big.bin"), "limited:/again.bin", code=1)
    assert json.loads(p.stdout)["error"]["code"] == "ENOSPC"
    run(env, "fs", "rm", "-f", "limited:/again.bin")
    used = js(stack, "quota", "show", "limited")["used_inodes"]  # a removed file waits in the trash
    q = js(stack, "quota", "set", "limited", "--inodes", str(used + 2))
    assert q["capacity"] == 6 << 20 and q["inodes"] == used + 2  # the capacity is kept
    for i in range(2):  # the inode limit: two more fit, the third is refused
        run(env, "fs", "mkdir", f"limited:/d{i}")
    assert json.loads(run(env, "--format", "json", "fs", "mkdir", "limited:/d9", code=1).stdout)["error"]["code"] \
        == "ENOSPC"
    p = run(env, "quota", "set", "limited", "--capacity", "1M")  # below usage: accepted, with a warning
    assert "already uses more" in p.stderr
    q = js(stack, "quota", "set", "limited", "--capacity", "unlimited", "--inodes", "0")
    assert q["capacity"] == 0 and q["inodes"] == 0
    run(env, "fs", "put", str(tmp_path / "big.bin"), "limited:/again.bin")  # room again
    q = js(stack, "quota", "set", "limited", "--inodes", "1000")  # the other limit is kept
    assert q["inodes"] == 1000 and q["capacity"] == 0
    run(env, "quota", "set", "limited", code=2)
    run(env, "quota", "set", "limited", "--capacity", "12X", code=2)
    run(env, "quota", "set", "limited", "--inodes", "-1", code=2)
    run(env, "quota", "show", "nope", code=4)


def test_dump_and_load_a_tree_into_a_fresh_workspace_verified(stack, tmp_path):
    env = stack["env"]
    run(env, "workspace", "create", "orig")
    src = tmp_path / "src"
    files = make_tree(src)
    run(env, "fs", "put", str(src), "orig:/")
    mp = stack["base"] / "mnt" / "dump"
    mp.mkdir(parents=True)
    run(env, "mount", "orig", str(mp))
    try:
        os.link(mp / "src" / "a.txt", mp / "src" / "hard.txt")  # a hard link, which only a mount makes
        os.chmod(mp / "src" / "sub", 0o750)
    finally:
        run(env, "unmount", str(mp))

    full = tmp_path / "full.json"
    d = js(stack, "dump", "orig", str(full), "--data")
    assert d["files"] == len(files) and d["hard_links"] == 1 and d["symlinks"] == 1 and d["with_data"]
    run(env, "dump", "orig", str(full), code=5)  # never overwritten silently
    dump = json.loads(full.read_text())
    assert dump["format"] == "artifacts-dump" and dump["version"] == 1
    by_path = {e["path"]: e for e in dump["entries"]}
    assert by_path["/src/hard.txt"]["link_of"] == "/src/a.txt" and by_path["/src/link"]["target"] == "sub/deeper/c.md"
    assert not any(p.startswith(("/.stats", "/.trash", "/.config", "/.accesslog")) for p in by_path)

    run(env, "workspace", "create", "restored")
    loaded = js(stack, "load", str(full), "restored")
    assert loaded["verified"] == len(files) and loaded["mismatched"] == []
    got = tmp_path / "got"
    run(env, "fs", "get", "restored:/src", str(got))
    for rel, data in files.items():
        assert (got / rel).read_bytes() == data, rel
    st = js(stack, "fs", "stat", "restored:/src/hard.txt")
    assert st["links"] == 2 and st["inode"] == js(stack, "fs", "stat", "restored:/src/a.txt")["inode"]
    assert js(stack, "fs", "stat", "restored:/src/sub")["mode"] == "0o750"
    assert js(stack, "fs", "stat", "restored:/src/a.txt")["mtime"] == "2020-09-13T12:26:40Z"
    run(env, "load", str(full), "restored", code=5)  # not empty: nothing mixed in

    # metadata and checksums only: the data comes from the source workspace
    meta = tmp_path / "meta.json"
    js(stack, "dump", "artifacts://root/orig/src", str(meta))
    assert not any("data" in e for e in json.loads(meta.read_text())["entries"])
    run(env, "workspace", "create", "migrated")
    run(env, "load", str(meta), "migrated", code=2)  # no data and no --from
    assert js(stack, "load", str(meta), "migrated:/moved", "--from", "orig:/src")["verified"] == len(files)
    # a source that differs from the dump is caught by the verification
    (src / "a.txt").write_bytes(b"not what was dumped\n")
    run(env, "workspace", "create", "tampered")
    p = run(env, "--format", "json", "load", str(meta), "tampered", "--from", str(src), code=1)
    assert json.loads(p.stdout)["mismatched"] == ["/a.txt"]
    (tmp_path / "bad.json").write_text("{}")
    run(env, "load", str(tmp_path / "bad.json"), "tampered", code=2)


def test_debug_archive_holds_status_mounts_config_and_logs_and_no_secret(stack, tmp_path):
    import tarfile

    env, base = stack["env"], stack["base"]
    mp = base / "mnt" / "debug"
    mp.mkdir(parents=True)
    run(env, "mount", "one", str(mp))
    try:
        out = tmp_path / "dbg.tar.gz"
        p = run(env, "--format", "json", "debug", "-o", str(out))
        assert json.loads(p.stdout)["file"] == str(out)
        assert stat.S_IMODE(out.stat().st_mode) == 0o600
        with tarfile.open(out) as tar:
            members = {m.name.removeprefix("artifacts-debug/"): tar.extractfile(m).read() for m in tar.getmembers()}
        assert {"version.json", "status.json", "config/credentials.json", "config/stack.json"} <= set(members)
        assert any(n.startswith("logs/") for n in members)
        (i,) = [n.split("/")[1] for n, data in members.items()
                if n.endswith("mountpoint.txt") and data.decode() == str(mp)]
        assert b"artifacts_ops_total" in members[f"mounts/{i}/stats.txt"]
        assert json.loads(members[f"mounts/{i}/config.json"])["volume"]["block_size"] == 4 << 20
        creds = json.loads(members["config/credentials.json"])
        assert "***" in creds["api_key"]
        state = base / "state" / "tonbo" / "artifacts" / "stack"
        secrets = [json.loads((base / "config" / "tonbo" / "artifacts" / "credentials.json").read_text())["api_key"],
                   stack["s3"]["secret_key"], (state / "redis" / "admin.pw").read_text().strip(),
                   json.loads((state / "orchestrator.json").read_text())["admin_token"]]
        for name, data in members.items():
            for secret in secrets:
                assert secret.encode() not in data, name
        run(env, "debug", "-o", str(out), code=5)  # never replaced silently

        # the last guard: a secret that reached a log stops the archive, nothing written
        planted = base / "cache" / "tonbo" / "artifacts" / "logs" / "planted.log"
        planted.write_text(f"oops {secrets[0]}\n")
        p = run(env, "debug", "-o", str(tmp_path / "never.tar.gz"), code=1)
        assert "logs/planted.log" in p.stderr and secrets[0] not in p.stderr
        assert not (tmp_path / "never.tar.gz").exists()
        planted.unlink()
    finally:
        run(env, "unmount", str(mp))


def test_gc_and_fsck_keep_what_a_checkpoint_pins(stack, tmp_path):
    env = stack["env"]
    run(env, "workspace", "create", "pinned")
    old = os.urandom(BIG)
    (tmp_path / "f.bin").write_bytes(old)
    run(env, "fs", "put", str(tmp_path / "f.bin"), "pinned:/")
    run(env, "checkpoint", "create", "pinned", "before")
    (tmp_path / "f.bin").write_bytes(os.urandom(BIG))
    run(env, "fs", "cp", str(tmp_path / "f.bin"), "pinned:/f.bin")  # the old blocks: only the checkpoint has them
    refs = stack["api"].workspaces.references("pinned")
    assert any(s["checkpoints"] for s in refs["slices"]), refs
    gc = js(stack, "gc", "pinned", "--min-age", "0")
    assert gc["deleted"] == 0 and gc["leaked"] == 0, gc
    assert js(stack, "fsck", "pinned")["clean"]
    run(env, "checkpoint", "restore", "pinned", "before")
    got = tmp_path / "got.bin"
    run(env, "fs", "get", "pinned:/f.bin", str(got))
    assert got.read_bytes() == old
