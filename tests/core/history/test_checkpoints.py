"""Checkpoints on the real servers: create/list/restore/delete/diff/browse through the volume,
copy-on-write of every key kind, and what keeps blocks alive (docs/history.md)."""

from __future__ import annotations

import pytest

from artifacts_core.errors import Exists, NotFound, ReadOnly


def test_restore_brings_back_content_names_and_removes_later_files(vol):
    vol.makedirs("src/pkg")
    vol.write_bytes("src/pkg/a.py", b"print('a')\n")
    vol.write_bytes("notes.md", b"v1\n")
    vol.symlink("notes.md", "link")
    c = vol.checkpoints.create("before")
    assert c.name == "before" and c.epoch >= 1
    vol.write_bytes("notes.md", b"v2 changed\n")
    with vol.open("src/pkg/a.py", "a") as f:
        f.write("more\n")
    vol.rename("src/pkg", "src/lib")
    vol.write_bytes("new.txt", b"later")
    vol.mkdir("newdir")
    vol.write_bytes("newdir/x", b"x" * 100_000)
    vol.remove("link")
    out = vol.checkpoints.restore("before")
    assert out["safety"].startswith("before-restore-")
    assert vol.read_bytes("notes.md") == b"v1\n"
    assert vol.read_bytes("src/pkg/a.py") == b"print('a')\n"
    assert sorted(vol.listdir("src")) == ["pkg"]
    assert not vol.exists("new.txt") and not vol.exists("newdir")
    assert vol.readlink("link") == "notes.md"
    # the safety checkpoint holds what the restore replaced
    safe = vol.checkpoints.view(out["safety"])
    assert safe.read_bytes("notes.md") == b"v2 changed\n"
    assert safe.read_bytes("newdir/x") == b"x" * 100_000
    assert safe.listdir("src") == ["lib"]
    # and restoring it brings the later state back
    vol.checkpoints.restore(out["safety"])
    assert vol.read_bytes("newdir/x") == b"x" * 100_000
    assert vol.read_bytes("src/lib/a.py") == b"print('a')\nmore\n"
    assert vol.read_bytes("new.txt") == b"later"


def test_a_checkpoint_is_browsable_while_the_workspace_moves_on(vol):
    vol.write_bytes("a.txt", b"one")
    vol.checkpoints.create("c1")
    vol.write_bytes("a.txt", b"two")
    vol.checkpoints.create("c2")
    vol.remove("a.txt")
    assert vol.checkpoints.view("c1").read_bytes("a.txt") == b"one"
    assert vol.checkpoints.view("c2").read_bytes("a.txt") == b"two"
    assert not vol.exists("a.txt")
    with pytest.raises(NotFound):
        vol.checkpoints.view("c2").read_bytes("nope")
    with pytest.raises(ReadOnly):
        vol.checkpoints.view("c1").open("a.txt", "w")


def test_names_are_checked_and_unique(vol):
    vol.checkpoints.create("x")
    with pytest.raises(Exists):
        vol.checkpoints.create("x")
    with pytest.raises(OSError):
        vol.checkpoints.create("../bad")
    with pytest.raises(NotFound):
        vol.checkpoints.restore("missing")


def test_delete_keeps_what_older_checkpoints_need(vol):
    vol.write_bytes("f", b"A")
    vol.checkpoints.create("c1")
    vol.write_bytes("g", b"g")
    vol.checkpoints.create("c2")
    vol.write_bytes("f", b"B")  # preserved at c2: the value c1 saw too
    vol.checkpoints.delete("c2")
    assert [c.name for c in vol.checkpoints.list()] == ["c1"]
    assert vol.checkpoints.view("c1").read_bytes("f") == b"A"
    assert not vol.checkpoints.view("c1").exists("g")
    vol.checkpoints.delete("c1")
    assert vol.checkpoints.list() == []
    keys = vol.meta.client.command("KEYS", vol.meta.keys.pattern[:-1] + "h[kx]*")
    assert keys == []


def test_diff_names_added_removed_modified_renamed(vol):
    vol.makedirs("d")
    vol.write_bytes("d/keep", b"same")
    vol.write_bytes("d/mod", b"line1\n")
    vol.write_bytes("d/old", b"x")
    vol.write_bytes("gone", b"y")
    vol.checkpoints.create("base")
    vol.write_bytes("d/mod", b"line1\nline2\n")
    vol.rename("d/old", "d/new")
    vol.remove("gone")
    vol.makedirs("e/f")
    vol.write_bytes("e/f/added", b"z")
    changes = {(c.kind, c.path, c.old_path) for c in vol.checkpoints.diff("base")}
    assert ("modified", "/d/mod", None) in changes
    assert ("renamed", "/d/new", "/d/old") in changes
    assert ("removed", "/gone", None) in changes
    assert ("added", "/e/f/added", None) in changes
    assert not any(p == "/d/keep" for _k, p, _o in changes)
    text = next(c for c in vol.checkpoints.diff("base", text=True) if c.path == "/d/mod").diff
    assert "+line2" in text
    vol.checkpoints.create("after")
    assert {(c.kind, c.path) for c in vol.checkpoints.diff("base", "after")} >= {("modified", "/d/mod")}
    assert vol.checkpoints.diff("after") == []


def test_clone_copies_a_tree_sharing_blocks_and_is_independent(vol):
    vol.makedirs("proj/src")
    vol.write_bytes("proj/src/big.bin", b"B" * 300_000)
    vol.write_bytes("proj/readme", b"hello")
    vol.symlink("readme", "proj/link")
    refs_before = vol.meta.client.command("HLEN", vol.meta.keys.sliceref)
    assert vol.clone("proj", "copy") == 5
    assert vol.read_bytes("copy/src/big.bin") == b"B" * 300_000
    assert vol.readlink("copy/link") == "readme"
    assert vol.meta.client.command("HLEN", vol.meta.keys.sliceref) > refs_before  # shared, counted
    vol.write_bytes("copy/readme", b"changed")
    vol.remove("proj/src/big.bin")
    assert vol.read_bytes("proj/readme") == b"hello"
    assert vol.read_bytes("copy/src/big.bin") == b"B" * 300_000
    assert vol.stat("copy").st_nlink == 3
    with pytest.raises(Exists):
        vol.clone("proj", "copy")
    with pytest.raises(OSError):
        vol.clone("proj", "proj/src/inside")


def test_agent_tools_checkpoint_diff_restore_and_copy_by_clone(vol):
    from artifacts_agentfs import AgentFS

    fs = AgentFS(vol)
    fs.write_file("work/a.txt", "one\n")
    saved = fs.call("checkpoint", {"name": "before-agent"})["result"]
    assert saved["name"] == "before-agent"
    fs.call("writeFile", {"path": "work/a.txt", "content": "two\n"})
    fs.call("copyFile", {"src": "work/a.txt", "dest": "work/b.txt"})
    d = fs.call("diff", {"name": "before-agent", "text": True})["result"]
    kinds = {(c["kind"], c["path"]) for c in d["changes"]}
    assert ("modified", "/work/a.txt") in kinds and ("added", "/work/b.txt") in kinds
    r = fs.call("restore", {"name": "before-agent"})["result"]
    assert r["safety_checkpoint"].startswith("before-restore-")
    assert fs.read_file("work/a.txt")["content"] == "one\n"
    assert not fs.exists("work/b.txt")
    assert fs.call("restore", {"name": "nope"})["error"]["code"] == "ENOENT"


def test_a_restore_tells_every_host_to_drop_its_caches(volume_factory):
    import time

    from artifacts_core.meta.changes import Subscription

    a, b = volume_factory(), volume_factory()
    a.write_bytes("f", b"1")
    a.checkpoints.create("c")
    got = []
    sub = Subscription(b.meta.client, deliver=got.append, session=lambda: b.meta.sid)
    sub.start()
    try:
        assert sub.wait_subscribed(10)
        got.clear()
        a.checkpoints.restore("c")
        deadline = time.monotonic() + 10
        while not any(c.kind == "all" and c.op == "restore" for c in got) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert any(c.kind == "all" and c.op == "restore" for c in got), got
    finally:
        sub.stop()
