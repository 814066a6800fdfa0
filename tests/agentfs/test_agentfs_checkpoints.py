"""An agent browses its checkpoints at ``.checkpoints/<name>/`` with the ordinary tools (readFile,
readdir, stat, glob, grep) on the real servers; writes there are EROFS with a message; the root
listing and recursive searches of the workspace do not descend into history."""

from __future__ import annotations

from artifacts_agentfs.api import AgentFS


def test_agent_reads_lists_and_searches_a_checkpoint(vol):
    fs = AgentFS(vol)
    fs.write_file("src/app.py", "def main():\n    return 1\n")
    fs.write_file("notes.md", "todo\n")
    assert fs.call("checkpoint", {"name": "before"})["ok"]
    fs.write_file("src/app.py", "def main():\n    return 2\n")
    fs.delete_file("notes.md")

    assert fs.read_file(".checkpoints/before/src/app.py")["content"] == "def main():\n    return 1\n"
    assert fs.call("readFile", {"path": ".checkpoints/before/notes.md"})["result"]["content"] == "todo\n"
    names = [e["name"] for e in fs.readdir(".checkpoints")["entries"]]
    assert names == ["before"]
    assert {e["name"] for e in fs.readdir(".checkpoints/before")["entries"]} == {"src", "notes.md"}
    assert fs.stat(".checkpoints/before/src/app.py")["size"] == len("def main():\n    return 1\n")
    assert fs.exists(".checkpoints/before/notes.md") and not fs.exists("notes.md")
    # history is reachable by name, never walked by a search of the whole workspace
    assert ".checkpoints" not in {e["name"] for e in fs.readdir("")["entries"]}
    hits = fs.grep("return", path="")["matches"]
    assert {m["path"] for m in hits} == {"src/app.py"}
    hits = fs.grep("return 1", path=".checkpoints/before")["matches"]
    assert [m["path"] for m in hits] == [".checkpoints/before/src/app.py"]
    assert ".checkpoints/before/src/app.py" in fs.glob("**/*.py", path=".checkpoints/before")["matches"]


def test_agent_writes_in_a_checkpoint_are_erofs(vol):
    fs = AgentFS(vol)
    fs.write_file("a.txt", "one\n")
    fs.call("checkpoint", {"name": "c"})
    for tool, args in [
        ("writeFile", {"path": ".checkpoints/c/a.txt", "content": "x"}),
        ("appendFile", {"path": ".checkpoints/c/a.txt", "content": "x"}),
        ("editFile", {"path": ".checkpoints/c/a.txt", "old_text": "one", "new_text": "two"}),
        ("deleteFile", {"path": ".checkpoints/c/a.txt"}),
        ("moveFile", {"src": ".checkpoints/c/a.txt", "dest": "b.txt"}),
        ("mkdir", {"path": ".checkpoints/c/new"}),
        ("rmdir", {"path": ".checkpoints/c"}),
    ]:
        r = fs.call(tool, args)
        assert not r["ok"] and r["error"]["code"] == "EROFS", (tool, r)
        assert "read-only" in r["error"]["message"], r
    r = fs.call("copyFile", {"src": ".checkpoints/c/a.txt", "dest": "b.txt"})
    assert not r["ok"] and r["error"]["code"] == "EXDEV" and "read" in r["error"]["message"] + str(r["error"].get("hint"))
    assert fs.read_file("a.txt")["content"] == "one\n"
