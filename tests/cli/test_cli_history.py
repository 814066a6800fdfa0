"""The history commands end to end on the local stack (``artifacts up``): checkpoint create, list,
show, diff, restore, delete; clone; trash list, restore, purge; ``--format json`` of each; a
mount seeing what the CLI did (another host); mistakes give one ``Error:`` line and exit code.
Every step runs ``.venv/bin/artifacts`` as a subprocess, mounting with real FUSE."""

from __future__ import annotations

import json
import os

import pytest
from fuse_helpers import wait_for
from test_cli_local import cli_env, run

pytestmark = [pytest.mark.redis, pytest.mark.s3, pytest.mark.slow]

#: A change made by the CLI (another host) reaches the mount through the change feed in
#: milliseconds; the bound is loose for a loaded machine.
VISIBLE = 5.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    base = tmp_path_factory.mktemp("clihist")
    env = cli_env(base)
    run(env, "--format", "json", "up", "--port", "0")
    mp = base / "mnt"
    mp.mkdir()
    run(env, "-q", "workspace", "create", "hist", str(mp))
    yield env, str(mp)
    run(env, "unmount", str(mp), code=None)
    run(env, "down", code=None)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _json(env, *args: str, code: int = 0):
    return json.loads(run(env, "--format", "json", *args, code=code).stdout)


def test_checkpoint_commands_end_to_end(stack):
    env, mp = stack
    os.makedirs(os.path.join(mp, "src"))
    _write(os.path.join(mp, "src", "app.py"), "v = 1\n")
    _write(os.path.join(mp, "notes.md"), "notes\n")
    p = run(env, "checkpoint", "create", "hist", "before", "--keep", "7d")
    assert "Checkpoint before taken" in p.stdout
    made = _json(env, "checkpoint", "create", "hist", "second")
    assert made["name"] == "second" and made["epoch"] > 0 and made["keep"] == 0
    _write(os.path.join(mp, "src", "app.py"), "v = 2\n")
    os.remove(os.path.join(mp, "notes.md"))
    _write(os.path.join(mp, "added.txt"), "new\n")

    listed = run(env, "checkpoint", "list", "hist").stdout
    assert "before" in listed and "second" in listed and "604800s" in listed
    rows = _json(env, "checkpoint", "list", "hist")
    assert [r["name"] for r in rows] == ["before", "second"] and rows[0]["keep"] == 604800
    shown = _json(env, "checkpoint", "show", "hist", "before")
    assert shown["name"] == "before" and shown["changes_since"] == 3 and "pinned_bytes" in shown
    assert "changes_since: 3" in run(env, "checkpoint", "show", "hist", "before").stdout

    text = run(env, "checkpoint", "diff", "hist", "before").stdout.splitlines()
    assert "M /src/app.py" in text and "D /notes.md" in text and "A /added.txt" in text
    full = run(env, "checkpoint", "diff", "hist", "before", "--text").stdout
    assert "-v = 1" in full and "+v = 2" in full
    changes = _json(env, "checkpoint", "diff", "hist", "before", "second")
    assert changes == []
    changes = {(c["kind"], c["path"]) for c in _json(env, "checkpoint", "diff", "hist", "second")}
    assert changes == {("modified", "/src/app.py"), ("removed", "/notes.md"), ("added", "/added.txt")}

    # stats: the mount's counters show the workspace's checkpoints
    stats = run(env, "stats", mp).stdout
    assert "checkpoints_count" in stats and "checkpoints_pinned_bytes" in stats
    # the mount browses what the CLI took
    assert _read(os.path.join(mp, ".checkpoints", "before", "src", "app.py")) == "v = 1\n"

    r = _json(env, "checkpoint", "restore", "hist", "before", "--safety", "pre-restore")
    assert r["restored"] == "before" and r["safety"] == "pre-restore"
    wait_for(lambda: os.path.exists(os.path.join(mp, "notes.md")), VISIBLE, "the restored file on the mount")
    assert _read(os.path.join(mp, "src", "app.py")) == "v = 1\n"
    assert not os.path.exists(os.path.join(mp, "added.txt"))
    assert "pre-restore" in [c["name"] for c in _json(env, "checkpoint", "list", "hist")]

    assert "deleted" in run(env, "checkpoint", "delete", "hist", "second").stdout
    assert _json(env, "checkpoint", "delete", "hist", "pre-restore") == {"deleted": "pre-restore"}
    assert [c["name"] for c in _json(env, "checkpoint", "list", "hist")] == ["before"]

    # mistakes: one error line, the documented exit code, nothing lost
    p = run(env, "checkpoint", "restore", "hist", "nope", code=1)
    assert p.stderr.startswith("Error:") and "nope" in p.stderr and "checkpoint list" in p.stderr
    p = run(env, "checkpoint", "create", "hist", "before", code=1)
    assert "exists" in p.stderr
    p = run(env, "checkpoint", "create", "hist", "bad name!", code=1)
    assert "letters, digits" in p.stderr
    p = run(env, "checkpoint", "create", "hist", "x", "--keep", "forever", code=1)
    assert "duration" in p.stderr
    err = _json(env, "checkpoint", "show", "hist", "nope", code=1)
    assert err["error"]["code"] == "ENOENT"
    assert _read(os.path.join(mp, "src", "app.py")) == "v = 1\n"


def test_clone_and_trash_commands_end_to_end(stack):
    env, mp = stack
    os.makedirs(os.path.join(mp, "tree", "sub"))
    _write(os.path.join(mp, "tree", "sub", "f.txt"), "cloned\n")
    p = run(env, "clone", "hist", "/tree", "/tree-copy")
    assert "Cloned /tree to /tree-copy" in p.stdout
    assert _json(env, "clone", "hist", "tree/sub/f.txt", "one.txt")["inodes"] == 1
    wait_for(lambda: os.path.exists(os.path.join(mp, "tree-copy", "sub", "f.txt")), VISIBLE, "the clone on the mount")
    assert _read(os.path.join(mp, "tree-copy", "sub", "f.txt")) == "cloned\n"
    p = run(env, "clone", "hist", "tree", "tree-copy", code=1)
    assert p.stderr.startswith("Error:")

    _write(os.path.join(mp, "doomed.txt"), "keep me\n")
    os.remove(os.path.join(mp, "doomed.txt"))
    os.remove(os.path.join(mp, "one.txt"))
    items = _json(env, "trash", "list", "hist")
    by_path = {t["path"]: t for t in items}
    assert {"/doomed.txt", "/one.txt"} <= set(by_path)
    assert by_path["/doomed.txt"]["size"] == len("keep me\n") and by_path["/doomed.txt"]["deleted"] > 0
    assert "/doomed.txt" in run(env, "trash", "list", "hist").stdout
    got = _json(env, "trash", "restore", "hist", by_path["/doomed.txt"]["id"])
    assert got["path"] == "/doomed.txt"
    wait_for(lambda: os.path.exists(os.path.join(mp, "doomed.txt")), VISIBLE, "the restored file on the mount")
    assert _read(os.path.join(mp, "doomed.txt")) == "keep me\n"
    p = run(env, "trash", "restore", "hist", by_path["/one.txt"]["id"], "--to", "/tree/back.txt")
    assert "/tree/back.txt" in p.stdout
    os.remove(os.path.join(mp, "tree-copy", "sub", "f.txt"))
    assert _json(env, "trash", "purge", "hist", "--older-than", "1d") == {"purged": 0}
    assert _json(env, "trash", "purge", "hist")["purged"] >= 1
    assert _json(env, "trash", "list", "hist") == []
    p = run(env, "trash", "restore", "hist", "999999", code=1)
    assert p.stderr.startswith("Error:")
