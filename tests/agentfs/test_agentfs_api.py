"""The agent operations on the real Redis and SeaweedFS: what each returns, guarantees and refuses."""

import asyncio
import base64
import os
import subprocess
import sys
import threading

import pytest

from artifacts_agentfs.aio import AsyncAgentFS
from artifacts_agentfs.api import AgentFS
from artifacts_agentfs.errors import AmbiguousMatchError, BinaryContentError, ConflictError, NoMatchError
from artifacts_agentfs.limits import Limits


def _uploads(vol) -> int:
    return vol.chunks.stats()["uploads"]


def test_read_text_binary_ranges_lines_and_truncation(vol):
    fs = AgentFS(vol, limits=Limits(max_read_bytes=1000))
    fs.write_file("t.txt", "".join(f"line {i}\n" for i in range(1, 301)))
    r = fs.read_file("t.txt")
    assert r["truncated"] and r["length"] <= 1000 and r["content"].startswith("line 1\n")
    assert r["size"] == len("".join(f"line {i}\n" for i in range(1, 301)))
    r = fs.read_file("t.txt", offset=7, length=7)
    assert r["content"] == "line 2\n" and not r["truncated"]
    r = fs.read_file("t.txt", start_line=299)
    assert r["content"] == "line 299\nline 300\n" and r["total_lines"] == 300 and r["end_line"] == 300
    r = fs.read_file("t.txt", start_line=2, end_line=3)
    assert r["content"] == "line 2\nline 3\n" and not r["truncated"]
    fs.write_file("multi.txt", "é" * 600)  # 1200 bytes: the cap falls inside a character
    r = fs.read_file("multi.txt")
    assert r["truncated"] and r["content"] == "é" * 500
    blob = bytes(range(256)) * 3
    fs.write_file("b.bin", base64.b64encode(blob).decode(), encoding="base64")
    with pytest.raises(BinaryContentError) as e:
        fs.read_file("b.bin")
    assert e.value.code == "EBINARY"
    r = fs.read_file("b.bin", encoding="base64")
    assert base64.b64decode(r["content"]) == blob and r["encoding"] == "base64"
    with pytest.raises(IsADirectoryError):
        fs.read_file("/")
    with pytest.raises(OSError) as e:
        fs.read_file("t.txt", offset=1, start_line=1)
    assert e.value.errno == 22


def test_write_creates_parents_keeps_inode_is_inline_and_checks_versions(vol):
    fs = AgentFS(vol)
    uploads = _uploads(vol)
    w = fs.write_file("deep/er/file.txt", "x" * 4096)
    assert w["created"] and fs.stat("deep/er")["type"] == "directory"
    assert _uploads(vol) == uploads  # 4 KiB: inline, no S3 request
    created = fs.stat("deep/er/file.txt")["createdAt"]
    w2 = fs.write_file("deep/er/file.txt", "y")
    assert not w2["created"] and w2["version"].split("-")[0] == w["version"].split("-")[0]
    st = fs.stat("deep/er/file.txt")
    assert st["createdAt"] == created and st["modifiedAt"] >= created and st["size"] == 1
    with pytest.raises(ConflictError) as e:
        fs.write_file("deep/er/file.txt", "z", if_version=w["version"])
    assert e.value.code == "ECONFLICT"
    assert fs.write_file("deep/er/file.txt", "z", if_version=w2["version"])["size"] == 1
    with pytest.raises(FileExistsError):
        fs.write_file("deep/er/file.txt", "new", if_version="absent")
    assert fs.write_file("fresh.txt", "new", if_version="absent")["created"]
    with pytest.raises(IsADirectoryError):
        fs.write_file("deep", "x")
    with pytest.raises(NotADirectoryError):
        fs.write_file("fresh.txt/child", "x")
    small = AgentFS(vol, limits=Limits(max_write_bytes=100))
    with pytest.raises(OSError) as e:
        small.write_file("big.txt", "x" * 101)
    assert e.value.errno == 27  # EFBIG
    with pytest.raises(FileNotFoundError):
        fs.write_file("no/parents.txt", "x", create_parents=False)


def test_concurrent_appends_from_threads_processes_and_hosts_all_land_whole(volume_factory, redis_url,
                                                                            storage_url, key_prefix):
    host_a, host_b = volume_factory(), volume_factory()
    fs_a, fs_b = AgentFS(host_a), AgentFS(host_b)
    fs_a.write_file("log.txt", "")
    fs_a.append_file("log.txt", "first\n")  # (reserves this client's batch of slice ids)
    fs_a.append_file("warm.txt", "x")
    before = host_a.meta.client.round_trips
    for _ in range(10):
        fs_a.append_file("warm.txt", "x")
        fs_a.read_file("warm.txt")
    # one call per append and per read (one more for a background heartbeat at most)
    assert host_a.meta.client.round_trips - before <= 2 * 10 + 1
    records = []

    def worker(fs, tag, n):
        for i in range(n):
            line = f"{tag}-{i:04d}-" + "z" * 150 + "\n"  # ~170 bytes: an inline append slice
            fs.append_file("log.txt", line)

    threads = [threading.Thread(target=worker, args=(fs, f"{host}{t}", 40))
               for host, fs in (("a", fs_a), ("b", fs_b)) for t in range(4)]
    records += [f"{h}{t}-{i:04d}-" + "z" * 150 for h in "ab" for t in range(4) for i in range(40)]
    script = (
        "import os, sys\n"
        "from artifacts_core.config import profile_config\n"
        "from artifacts_core.volume import open_volume\n"
        "from artifacts_agentfs.api import AgentFS\n"
        "vol = open_volume(os.environ['T_META'], os.environ['T_STORE'], key_prefix=os.environ['T_PREFIX'],"
        " require_aof=False, config=profile_config('interactive', entry_ttl=0.0, attr_ttl=0.0,"
        " cache_dir=os.environ['T_CACHE']))\n"
        "fs = AgentFS(vol)\n"
        "tag = os.environ['T_TAG']\n"
        "for i in range(40):\n"
        "    fs.append_file('log.txt', f'{tag}-{i:04d}-' + 'z' * 150 + '\\n')\n"
        "vol.close()\n")
    procs = []
    for p in range(3):
        env = {**os.environ, "T_META": redis_url, "T_STORE": storage_url, "T_PREFIX": key_prefix,
               "T_TAG": f"p{p}", "T_CACHE": f"/tmp/agentfs-test-cache-{os.getpid()}-{p}"}
        procs.append(subprocess.Popen([sys.executable, "-c", script], env=env))
        records += [f"p{p}-{i:04d}-" + "z" * 150 for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(p.wait(timeout=120) == 0 for p in procs)
    lines = fs_b.read_file("log.txt")["content"].splitlines()
    assert lines[0] == "first"
    assert sorted(lines[1:]) == sorted(records)  # every append whole, none lost or doubled
    for tag in ("a0", "b3", "p1"):  # each writer's own appends keep their order
        mine = [ln for ln in lines if ln.startswith(tag + "-")]
        assert mine == sorted(mine)


def test_append_creates_missing_file_and_reports_offsets(vol):
    fs = AgentFS(vol)
    r = fs.append_file("new/log.txt", "abc")
    assert r["offset"] == 0 and r["size"] == 3
    r = fs.append_file("new/log.txt", "de")
    assert r["offset"] == 3 and r["size"] == 5
    with pytest.raises(FileNotFoundError):
        fs.append_file("missing.txt", "x", create=False)
    with pytest.raises(ConflictError):
        fs.append_file("new/log.txt", "x", if_version="1-1")
    big = os.urandom(100_000)
    fs.append_file("new/log.txt", big)  # past the inline limit: an S3 append slice
    assert vol.read_bytes("new/log.txt") == b"abcde" + big


def test_delete_is_immediate_everywhere_refuses_directories_and_uses_the_trash(volume_factory):
    host_a = volume_factory(format_options={"trash_days": 1})
    host_b = volume_factory()
    fs_a, fs_b = AgentFS(host_a), AgentFS(host_b)
    fs_a.write_file("d/f.txt", "bye")
    assert fs_b.exists("d/f.txt")
    r = fs_a.delete_file("d/f.txt")
    assert r == {"path": "d/f.txt", "deleted": True, "trash": True}
    assert not fs_b.exists("d/f.txt") and not fs_a.exists("d/f.txt")
    trashed = [n for _, _, files in host_a.walk("/.trash") for n in files]
    assert any(n.endswith("-f.txt") for n in trashed)
    with pytest.raises(IsADirectoryError) as e:
        fs_a.delete_file("d")
    assert "rmdir" in e.value.hint
    with pytest.raises(FileNotFoundError):
        fs_a.delete_file("d/f.txt")


def test_copy_shares_data_and_follows_overwrite_rules(vol):
    fs = AgentFS(vol)
    data = os.urandom(300_000)
    fs.write_file("src.bin", data)
    uploads = _uploads(vol)
    r = fs.copy_file("src.bin", "copies/dst.bin")
    assert _uploads(vol) == uploads  # shared slices: no byte uploaded again
    assert r["version"] == fs.stat("copies/dst.bin")["version"]  # usable as a precondition
    assert vol.read_bytes("copies/dst.bin") == data and r["size"] == len(data)
    with pytest.raises(FileExistsError):
        fs.copy_file("src.bin", "copies/dst.bin")
    fs.write_file("other.txt", "other")
    fs.copy_file("other.txt", "copies/dst.bin", overwrite=True)
    assert fs.read_file("copies/dst.bin")["content"] == "other"
    with pytest.raises(IsADirectoryError):
        fs.copy_file("copies", "c2")
    assert [e["name"] for e in fs.readdir("copies")["entries"]] == ["dst.bin"]  # no temp left
    fs.write_file("src.bin", "changed")  # the copy is independent of later writes
    assert fs.read_file("other.txt")["content"] == "other"
    assert vol.read_bytes("copies/dst.bin") == b"other"


def test_move_is_atomic_with_overwrite_rules(vol):
    fs = AgentFS(vol)
    w = fs.write_file("a.txt", "A")
    fs.write_file("b.txt", "B")
    created = fs.stat("a.txt")["createdAt"]
    with pytest.raises(FileExistsError):
        fs.move_file("a.txt", "b.txt")
    assert fs.read_file("b.txt")["content"] == "B"
    fs.move_file("a.txt", "b.txt", overwrite=True)
    assert fs.read_file("b.txt")["content"] == "A" and not fs.exists("a.txt")
    st = fs.stat("b.txt")
    assert st["createdAt"] == created and st["version"].split("-")[0] == w["version"].split("-")[0]
    fs.mkdir("dir/sub")
    fs.write_file("dir/sub/x.txt", "x")
    fs.move_file("dir", "moved/dir2")
    assert fs.read_file("moved/dir2/sub/x.txt")["content"] == "x"
    fs.mkdir("target")
    with pytest.raises(IsADirectoryError):
        fs.move_file("b.txt", "target", overwrite=True)
    with pytest.raises(OSError):
        fs.move_file("moved", "moved/dir2/inside")  # a directory into itself
    with pytest.raises(ConflictError):
        fs.move_file("b.txt", "c.txt", if_version="1-1")


def test_mkdir_rmdir_readdir_exists_stat(vol):
    fs = AgentFS(vol)
    assert fs.mkdir("a/b/c") == {"path": "a/b/c", "created": True}
    assert fs.mkdir("a/b/c")["created"] is False
    fs.write_file("a/file.txt", "12345")
    with pytest.raises(FileExistsError):
        fs.mkdir("a/file.txt")
    names = [f"n{i:04d}" for i in range(2500)]
    for n in names[:2500:1]:
        vol.write_bytes(f"a/b/{n}", b"")
    pages, cursor = [], None
    while True:
        page = fs.readdir("a/b", cursor=cursor)
        pages.append(page)
        cursor = page["next_cursor"]
        if not cursor:
            break
    listed = [e["name"] for p in pages for e in p["entries"]]
    assert len(pages) == 3 and listed == sorted([*names, "c"])
    assert pages[0]["truncated"] and not pages[-1]["truncated"]
    top = fs.readdir("a", limit=1)
    assert top["entries"][0] == {"name": "b", "type": "directory", "size": 0,
                                 "modifiedAt": top["entries"][0]["modifiedAt"]}
    assert fs.readdir("a")["entries"][1]["size"] == 5
    assert fs.exists("a/file.txt") and not fs.exists("a/file.txt/x") and not fs.exists("zz/y")
    st = fs.stat("a/file.txt")
    assert st["type"] == "file" and st["size"] == 5 and st["createdAt"].endswith("Z")
    assert fs.stat("a")["type"] == "directory"
    with pytest.raises(NotADirectoryError):
        fs.rmdir("a/file.txt")
    with pytest.raises(NotADirectoryError):
        fs.readdir("a/file.txt")
    assert fs.rmdir("a")["removed"] == 2500 + 4  # the files, file.txt, c, b and a itself
    assert not fs.exists("a") and fs.readdir("")["entries"] == []


def test_edit_unique_all_dry_run_crlf_and_conflicts(vol):
    fs = AgentFS(vol)
    fs.write_file("code.py", "def f():\n    return 1\n\ndef g():\n    return 1\n")
    with pytest.raises(AmbiguousMatchError) as e:
        fs.edit_file("code.py", "return 1", "return 2")
    assert e.value.code == "EAMBIGUOUS" and "lines 2, 5" in str(e.value)
    with pytest.raises(NoMatchError) as e:
        fs.edit_file("code.py", "def  h():", "x")
    assert e.value.code == "ENOMATCH"
    dry = fs.edit_file("code.py", "def g():\n    return 1", "def g():\n    return 2", dry_run=True)
    assert not dry["applied"] and "-    return 1" in dry["diff"] and "+    return 2" in dry["diff"]
    assert fs.read_file("code.py")["content"].count("return 1") == 2
    done = fs.edit_file("code.py", "return 1", "return 3", replace_all=True)
    assert done["applied"] and done["replacements"] == 2
    assert fs.read_file("code.py")["content"].count("return 3") == 2
    with pytest.raises(ConflictError):
        fs.edit_file("code.py", "return 3", "x", replace_all=True, if_version=dry["version"])
    fs.write_file("win.txt", "a\r\nb\r\nc\r\n")
    fs.edit_file("win.txt", "a\nb", "A\nB")
    assert vol.read_bytes("win.txt") == b"A\r\nB\r\nc\r\n"
    fs.edit_file("win.txt", "c", "$1 literal")
    assert vol.read_bytes("win.txt") == b"A\r\nB\r\n$1 literal\r\n"


def test_glob_and_grep_bounds(vol):
    fs = AgentFS(vol)
    for i in range(30):
        fs.write_file(f"src/m{i:02d}.py", f"import os\nVALUE = {i}\n")
    fs.write_file("src/pkg/deep/z.py", "VALUE = 99\n")
    fs.write_file("README.md", "VALUE in docs\n")
    fs.write_file("bin.dat", b"\x00\x01VALUE")
    g = fs.glob("src/*.py")
    assert len(g["matches"]) == 30 and not g["truncated"]
    assert fs.glob("**/z.py")["matches"] == ["src/pkg/deep/z.py"]
    assert fs.glob("*.py", path="src", limit=5)["truncated"]
    r = fs.grep(r"VALUE = \d+", path="src", limit=10)
    assert len(r["matches"]) == 10 and r["truncated"]
    r = fs.grep("value", ignore_case=True, glob="*.md")
    assert [m["path"] for m in r["matches"]] == ["README.md"]
    r = fs.grep("VALUE", fixed=True)
    assert r["files_skipped"] == 1 and all(m["path"] != "bin.dat" for m in r["matches"])
    assert fs.grep("99", path="src/pkg/deep/z.py")["matches"][0]["line"] == 1


def test_async_api_runs_off_the_loop(vol):
    async def main():
        async with AsyncAgentFS(vol) as afs:
            await afs.write_file("a/log.txt", "")
            await asyncio.gather(*(afs.append_file("a/log.txt", f"{i}\n") for i in range(50)))
            text = (await afs.read_file("a/log.txt"))["content"]
            call = await afs.call("stat", {"path": "a/log.txt"})
            return text, call, await afs.exists("a/nope")

    text, call, missing = asyncio.run(main())
    assert sorted(text.split()) == sorted(str(i) for i in range(50))
    assert call["ok"] and call["result"]["size"] == len(text) and missing is False


def test_a_log_appended_to_many_times_stays_a_short_slice_list(volume_factory):
    host_a, host_b = volume_factory(), volume_factory()
    fs = AgentFS(host_a)
    lines = [f"{i:05d} " + "r" * 93 + "\n" for i in range(350)]  # 100 B each, 35 KB: past inline
    for line in lines:
        fs.append_file("app.log", line)
    for _ in range(5):  # what the volume's maintenance thread does every 0.2 s, run here
        host_a.maintenance.compact_queued()
    assert host_a.metrics.get("compactions") >= 1
    ino = host_a.stat("app.log").st_ino
    records, _ = host_a.meta.read_chunk(ino, 0)
    assert len(records) < 110  # compacted at 100 records (slices.COMPACT_RECORDS), not 350
    assert AgentFS(host_b).read_file("app.log")["content"] == "".join(lines)


def test_append_creates_once_under_racing_appenders_and_checks_versions_atomically(volume_factory):
    hosts = [AgentFS(volume_factory()) for _ in range(2)]
    created, barrier = [], threading.Barrier(8)

    def first_append(fs, k):
        barrier.wait()
        created.append(fs.append_file("race/new.log", f"{k}\n")["offset"])

    threads = [threading.Thread(target=first_append, args=(hosts[k % 2], k)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(created) == [2 * k for k in range(8)]  # one creator at 0, seven appends after it
    assert sorted(hosts[1].read_file("race/new.log")["content"].split()) == [str(k) for k in range(8)]
    v = hosts[0].stat("race/new.log")["version"]
    hosts[1].append_file("race/new.log", "other host\n")
    with pytest.raises(ConflictError):
        hosts[0].append_file("race/new.log", "stale\n", if_version=v)
    assert "stale" not in hosts[0].read_file("race/new.log")["content"]
    v2 = hosts[0].stat("race/new.log")["version"]
    assert hosts[0].append_file("race/new.log", "fresh\n", if_version=v2)["version"] != v2


def test_append_and_read_follow_inside_symlinks(vol):
    fs = AgentFS(vol)
    fs.write_file("real/log.txt", "a")
    vol.symlink("real/log.txt", "alias")
    fs.append_file("alias", "b")
    assert fs.read_file("alias")["content"] == "ab"
    assert fs.read_file("real/log.txt")["content"] == "ab"
    assert vol.readlink("alias") == "real/log.txt"


def test_bytes_for_python_callers_and_a_full_workspace_is_enospc_with_a_hint(volume_factory):
    vol = volume_factory(format_options={"capacity": 256 << 10})
    fs = AgentFS(vol)
    blob = bytes(range(256)) * 40
    fs.write_file("b.bin", blob)
    r = fs.read_file("b.bin", encoding="bytes")
    assert r["content"] == blob and r["length"] == len(blob)
    assert fs.call("readFile", {"path": "b.bin", "encoding": "bytes"})["error"]["code"] == "EINVAL"
    with pytest.raises(OSError) as e:
        for i in range(100):
            fs.write_file(f"fill/{i}.bin", b"x" * (16 << 10))
    assert e.value.errno == 28  # ENOSPC
    err = fs.call("appendFile", {"path": "fill/0.bin", "content": "y" * 300_000})["error"]
    assert err["code"] == "ENOSPC" and "delete" in err["hint"]


def test_regression_a_failed_move_creates_no_destination_parents(vol):
    """Shrunk by the model test: moveFile of a missing source made the destination's parent."""
    from artifacts_agentfs import AgentFS

    fs = AgentFS(vol)
    fs.append_file("a", "\x00")
    with pytest.raises(FileNotFoundError):
        fs.move_file("b", "d/x")
    assert [e["name"] for e in fs.readdir("/")["entries"]] == ["a"]
