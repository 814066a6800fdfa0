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
import stat

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
    yield {"env": env, "base": base, "api": Artifacts(creds["api_key"], base_url=creds["orchestrator_url"])}
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


def test_file_commands_leave_no_session_behind(stack):
    api = stack["api"]
    run(stack["env"], "fs", "ls", "one:/")
    for name in ("one", "two"):
        ws = api.workspaces.get(name)
        assert api.sessions.list(ws.identifier).sessions == [], name
