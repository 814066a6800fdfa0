"""The VFS through the path API on the real Redis and SeaweedFS: files that behave like files."""

import errno
import hashlib
import json
import os
import threading
import time

import pytest

from artifacts_core.types import CHUNK_SIZE


def test_small_file_round_trip_costs_no_s3_request(vol):
    puts = vol.chunks.stats().get("uploads", 0)
    with vol.open("notes/../hello.txt", "w", encoding="utf-8") as f:
        f.write("hello\n")
    assert vol.open("hello.txt").read() == "hello\n"
    assert vol.stat("/hello.txt").st_size == 6
    assert vol.chunks.stats().get("uploads", 0) == puts  # inline slice: Redis only


def test_binary_modes_seek_tell_readline_iteration(vol):
    with vol.open("data.bin", "wb") as f:
        f.write(b"line1\nline2\nline3\n")
        assert f.tell() == 18
        f.seek(0)
        f.write(b"LINE1")
    with vol.open("data.bin", "rb") as f:
        assert f.readline() == b"LINE1\n"
        assert list(f) == [b"line2\n", b"line3\n"]
        f.seek(-6, os.SEEK_END)
        assert f.read() == b"line3\n"
        buf = bytearray(4)
        f.seek(0)
        assert f.readinto(buf) == 4 and bytes(buf) == b"LINE"
    with vol.open("data.bin", "r+b") as f:
        f.seek(2)
        f.write(b"xx")
        f.seek(0)
        assert f.read(6) == b"LIxx1\n"


def test_modes_and_errors_match_builtin_open(vol):
    with pytest.raises(FileNotFoundError):
        vol.open("missing.txt")
    with vol.open("x.txt", "x") as f:
        f.write("1")
    with pytest.raises(FileExistsError):
        vol.open("x.txt", "x")
    vol.mkdir("d")
    with pytest.raises(IsADirectoryError):
        vol.open("d", "w")
    with pytest.raises(NotADirectoryError):
        vol.open("x.txt/y", "w")
    with vol.open("x.txt", "a") as f:
        f.write("2")
    with vol.open("x.txt", "w") as f:
        f.write("3")
    assert vol.open("x.txt").read() == "3"


def test_large_file_across_chunks_streams_and_reads_back(vol):
    size = 2 * CHUNK_SIZE + 3 * (1 << 20) + 12345
    digest = hashlib.sha256()
    block = os.urandom(1 << 20)
    with vol.open("big.bin", "wb") as f:
        written = 0
        while written < size:
            piece = block[: min(len(block), size - written)]
            f.write(piece)
            digest.update(piece)
            written += len(piece)
    assert vol.stat("big.bin").st_size == size
    check = hashlib.sha256()
    with vol.open("big.bin", "rb") as f:
        while data := f.read(3 << 20):
            check.update(data)
    assert check.hexdigest() == digest.hexdigest()
    with vol.open("big.bin", "rb") as f:  # a read across the first chunk boundary
        f.seek(CHUNK_SIZE - 10)
        assert f.read(20) == (block * 65)[CHUNK_SIZE - 10: CHUNK_SIZE + 10]


def test_sparse_files_and_truncated_tails_read_as_zeros(vol):
    with vol.open("sparse", "wb") as f:
        f.seek(100_000)
        f.write(b"end")
    data = vol.read_bytes("sparse")
    assert len(data) == 100_003 and data[:100_000] == bytes(100_000) and data[-3:] == b"end"
    vol.truncate("sparse", 10)
    vol.truncate("sparse", 50)
    assert vol.read_bytes("sparse") == bytes(50)


def test_a_process_reads_its_own_unflushed_writes(vol):
    f = vol.open("live.txt", "wb", buffering=0)
    f.write(b"abc")
    assert vol.stat("live.txt").st_size == 3  # the length preview includes dirty data
    with vol.open("live.txt", "rb") as r:
        assert r.read() == b"abc"
    f.close()


def test_close_to_open_between_two_hosts(volume_factory):
    a, b = volume_factory(), volume_factory()
    payload = os.urandom(5 << 20)  # S3 blocks
    with a.open("shared.bin", "wb") as f:
        f.write(payload)
    assert b.read_bytes("shared.bin") == payload
    with a.open("shared.bin", "r+b") as f:
        f.write(b"NEW")
    assert b.read_bytes("shared.bin")[:3] == b"NEW"
    a.rename("shared.bin", "moved.bin")
    assert not b.exists("shared.bin") and b.exists("moved.bin")


def test_appends_from_threads_and_hosts_all_land_whole(volume_factory):
    a, b = volume_factory(), volume_factory()
    records = 40

    def writer(vol, tag):
        for i in range(records):
            with vol.open("log.txt", "a") as f:
                f.write(f"{tag}-{i:03d}-" + "x" * 180 + "\n")

    threads = [threading.Thread(target=writer, args=(v, t)) for v, t in ((a, "A"), (a, "B"), (b, "C"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = a.open("log.txt").read().splitlines()
    assert len(lines) == 3 * records
    assert sorted(lines) == sorted(f"{t}-{i:03d}-" + "x" * 180 for t in "ABC" for i in range(records))


def test_unlinked_file_stays_readable_through_open_handles(volume_factory):
    a, b = volume_factory(), volume_factory()
    with a.open("doomed.bin", "wb") as f:
        f.write(os.urandom(300_000))
    expected = a.read_bytes("doomed.bin")
    reader = b.open("doomed.bin", "rb")
    a.remove("doomed.bin")
    assert not a.exists("doomed.bin")
    assert reader.read() == expected
    reader.close()


def test_rename_over_an_open_file_does_not_disturb_its_reader(vol):
    vol.write_bytes("old", b"old contents")
    vol.write_bytes("new", b"new contents")
    reader = vol.open("old", "rb")
    vol.replace("new", "old")
    assert reader.read() == b"old contents"
    reader.close()
    assert vol.read_bytes("old") == b"new contents"


def test_directory_api(vol):
    vol.makedirs("a/b/c")
    vol.makedirs("a/b/c", exist_ok=True)
    with pytest.raises(FileExistsError):
        vol.makedirs("a/b/c")
    vol.write_bytes("a/b/f.txt", b"1")
    assert sorted(vol.listdir("a/b")) == ["c", "f.txt"]
    assert {e.name: e.is_dir() for e in vol.scandir("a/b")} == {"c": True, "f.txt": False}
    walked = [(d, sorted(ds), sorted(fs)) for d, ds, fs in vol.walk("a")]
    assert walked[0] == ("/a", ["b"], [])
    with pytest.raises(OSError) as err:
        vol.rmdir("a/b")
    assert err.value.errno == errno.ENOTEMPTY
    vol.rmtree("a")
    assert not vol.exists("a")


def test_a_directory_opened_for_reading_raises_IsADirectoryError_as_open_does(vol):
    vol.makedirs("d/sub")
    for path in ("d", "d/sub", "/"):
        with pytest.raises(IsADirectoryError):
            vol.open(path, "rb")
        with pytest.raises(IsADirectoryError):
            vol.read_bytes(path)
    # the inode API follows read(2): opening a directory read-only works, reading it is EISDIR
    ino = vol.stat("d").st_ino
    fh = vol.vfs.open(ino, os.O_RDONLY)
    try:
        with pytest.raises(IsADirectoryError):
            vol.vfs.read(fh, 0, 10)
    finally:
        vol.vfs.release(fh)


def test_makedirs_through_a_file_is_NotADirectoryError_as_os_makedirs(vol):
    vol.makedirs("a")
    vol.write_bytes("a/b", b"a file")
    for exist_ok in (False, True):
        with pytest.raises(NotADirectoryError):
            vol.makedirs("a/b/c", exist_ok=exist_ok)
        with pytest.raises(NotADirectoryError):
            vol.makedirs("a/b/c/d", exist_ok=exist_ok)
        with pytest.raises(FileExistsError):  # the final name is a file: os.makedirs says EEXIST
            vol.makedirs("a/b", exist_ok=exist_ok)
    assert vol.read_bytes("a/b") == b"a file" and vol.listdir("a") == ["b"]


def test_rename_rmdir_remove_cost_one_round_trip_with_a_warm_entry_cache(volume_factory):
    vol = volume_factory(entry_ttl=60.0)
    vol.makedirs("d/e/f")
    vol.makedirs("d/g")
    vol.write_bytes("d/x", b"1")
    vol.write_bytes("d/z", b"2")
    vol.stat("d/x")  # "d" is in the entry cache now
    vol.vfs.flush_closes()
    time.sleep(0.5)  # past the background thread's first pass (its next Redis call is seconds away)
    for op in (lambda: vol.rename("d/x", "d/y"), lambda: vol.rmdir("d/g"), lambda: vol.remove("d/y"),
               lambda: vol.rename("d/e", "d/e2"), lambda: vol.rmdir("d/e2/f"), lambda: vol.remove("d/z")):
        before = vol.meta.client.round_trips
        op()
        assert vol.meta.client.round_trips - before == 1, op
    assert sorted(vol.listdir("d")) == ["e2"] and vol.listdir("d/e2") == []
    assert not vol.exists("d/e") and not vol.exists("d/x") and not vol.exists("d/y")


def test_symlinks_followed_only_inside_the_workspace(vol):
    vol.makedirs("dir")
    vol.write_bytes("dir/target", b"T")
    vol.symlink("target", "dir/rel")
    vol.makedirs("other")
    vol.symlink("../dir/target", "other/up")
    vol.symlink("/etc/passwd", "abs")
    vol.symlink("../../outside", "escape")
    assert vol.read_bytes("dir/rel") == b"T" and vol.read_bytes("other/up") == b"T"
    assert vol.readlink("abs") == "/etc/passwd"
    for path in ("abs", "escape"):
        with pytest.raises(PermissionError):
            vol.read_bytes(path)
    vol.symlink("loop2", "loop1")
    vol.symlink("loop1", "loop2")
    with pytest.raises(OSError) as err:
        vol.stat("loop1")
    assert err.value.errno == errno.ELOOP


def test_path_cache_follows_namespace_changes_made_through_the_inode_api(volume_factory):
    """One resolver serves every frontend: a rename or unlink made through the VFS inode API
    (FUSE's way) is seen by the path API at once, not after entry_ttl."""
    from artifacts_core.types import ROOT_INO

    vol = volume_factory(entry_ttl=60.0)  # names stay cached far longer than the test runs
    vfs = vol.vfs
    vol.write_bytes("a", b"A")
    vol.write_bytes("b", b"B")
    vol.makedirs("dir")
    vol.write_bytes("dir/f", b"F")
    assert vol.read_bytes("a") == b"A" and vol.read_bytes("b") == b"B" and vol.exists("dir/f")
    vfs.rename(ROOT_INO, "b", ROOT_INO, "a")  # replaces a
    assert vol.read_bytes("a") == b"B" and not vol.exists("b")
    vfs.rename(ROOT_INO, "dir", ROOT_INO, "moved")
    assert not vol.exists("dir/f") and vol.read_bytes("moved/f") == b"F"
    vfs.unlink(ROOT_INO, "a")
    assert not vol.exists("a")
    vfs.unlink(vfs.lookup(ROOT_INO, "moved")[0], "f")
    vfs.rmdir(ROOT_INO, "moved")
    assert not vol.exists("moved")


def test_internal_files_stats_and_config_without_secrets(vol, s3_server):
    vol.write_bytes("f", b"x" * 100)
    stats = vol.read_bytes(".stats").decode()
    assert "artifacts_ops_total" in stats and "artifacts_volume_inline_bytes" in stats
    config = json.loads(vol.read_bytes(".config"))
    assert config["volume"]["name"] == "testvol"
    text = json.dumps(config)
    assert s3_server.secret_key not in text and s3_server.access_key not in text
    assert ".stats" in vol.listdir("/") and ".trash" in vol.listdir("/")
    with pytest.raises(PermissionError):
        vol.open(".stats", "w")


def test_a_volume_on_redis_cluster(redis_cluster, storage_url, tmp_path):
    import random as _random

    from artifacts_core.config import profile_config
    from artifacts_core.volume import format_volume, open_volume

    prefix = f"{{u_{_random.randrange(10**12)}_w_1}}:"
    format_volume(redis_cluster.url, storage_url, "clustervol", key_prefix=prefix, require_aof=False,
                  trash_days=0)
    vol = open_volume(redis_cluster.url, key_prefix=prefix, require_aof=False,
                      config=profile_config(cache_dir=str(tmp_path / "c")))
    try:
        payload = os.urandom(5 << 20)
        vol.write_bytes("big", payload)
        with vol.open("log", "a") as f:
            f.write("line\n")
        assert vol.read_bytes("big") == payload and vol.open("log").read() == "line\n"
        assert sorted(n for n in vol.listdir("/") if not n.startswith(".")) == ["big", "log"]
    finally:
        vol.close()


def test_create_registers_the_open_in_the_same_round_trip(volume_factory):
    from artifacts_core.types import ROOT_INO

    a, b = volume_factory(), volume_factory()
    before = a.meta.client.round_trips
    fh, ino, _ = a.vfs.create(ROOT_INO, "new.bin", 0o444, os.O_RDWR | os.O_CREAT | os.O_EXCL)
    assert a.meta.client.round_trips - before == 1  # create + open: one function call
    a.vfs.write(fh, 0, b"data")  # the creator writes even though the mode is read-only (POSIX)
    a.vfs.flush(fh)
    b.remove("new.bin")  # unlinked on another host while open here: the open was registered,
    assert a.meta.getattr(ino).nlink == 0  # so the inode is kept (sustained), not freed
    assert a.vfs.read(fh, 0, 10) == b"data"
    a.vfs.release(fh)


def test_dirty_data_is_committed_by_the_idle_flush_without_a_close(volume_factory):
    import time

    a, b = volume_factory(flush_idle=0.2), volume_factory()
    f = a.open("idle.txt", "wb", buffering=0)
    f.write(b"written, not closed")
    deadline = time.monotonic() + 10  # the background tick commits it within about a second
    while b.stat("idle.txt").st_size == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert b.read_bytes("idle.txt") == b"written, not closed"
    f.close()


def test_new_files_and_directories_follow_the_process_umask(volume_factory):
    """The path API, fsspec and the agent API create what ``open``/``mkdir`` would: 0666 and 0777
    less the process umask (not rw-rw-rw-), like the kernel does on a mount."""
    from artifacts_agentfs import AgentFS
    from artifacts_core.fsspec_fs import ArtifactsFileSystem

    old = os.umask(0o027)
    try:
        vol = volume_factory()
    finally:
        os.umask(old)
    with vol.open("a.txt", "w") as f:
        f.write("x")
    vol.makedirs("d/e")
    fs = ArtifactsFileSystem(volume=vol)
    fs.pipe_file("/fs/p.bin", b"x")
    fs.mkdir("/fsdir")
    agent = AgentFS(vol)
    agent.write_file("agent/w.md", "x")
    agent.append_file("agent/a.md", "x")
    agent.mkdir("agent/m/n")
    files = ("a.txt", "fs/p.bin", "agent/w.md", "agent/a.md")
    dirs = ("d", "d/e", "fs", "fsdir", "agent", "agent/m/n")
    assert {p: oct(vol.stat(p).st_mode & 0o7777) for p in files} == dict.fromkeys(files, oct(0o640))
    assert {p: oct(vol.stat(p).st_mode & 0o7777) for p in dirs} == dict.fromkeys(dirs, oct(0o750))
    vol.mkdir("explicit", 0o700)  # an explicit mode is narrowed by the umask, never widened
    assert vol.stat("explicit").st_mode & 0o7777 == 0o700
