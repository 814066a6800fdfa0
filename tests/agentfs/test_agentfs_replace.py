"""writeFile's core: ``af_replace_content`` through ``vfs.replace_content`` on the real Redis and
SeaweedFS -- same inode, one round trip, inline without S3, old data released, atomic for readers."""

import threading

import pytest

from artifacts_agentfs.api import AgentFS
from artifacts_core.meta.replace import ABSENT, EntryIsSymlink, VersionMismatch
from artifacts_core.types import ROOT_INO


def test_replace_creates_then_overwrites_keeping_the_inode_in_one_round_trip(vol):
    before = vol.meta.client.round_trips
    ino, attr, created = vol.vfs.replace_content(ROOT_INO, "a.txt", b"first")
    assert created and attr.length == 5
    assert vol.meta.client.round_trips - before <= 2  # the call (+ at most one slice-id batch)
    before = vol.meta.client.round_trips
    ino2, attr2, created2 = vol.vfs.replace_content(ROOT_INO, "a.txt", b"second!")
    assert vol.meta.client.round_trips - before == 1
    assert (ino2, created2, attr2.length) == (ino, False, 7)
    assert attr2.btime_ns == attr.btime_ns and attr2.gen > attr.gen
    assert vol.read_bytes("a.txt") == b"second!"
    assert vol.stat("a.txt").st_ino == ino


def test_small_content_is_inline_large_goes_to_s3_and_old_inline_bytes_are_released(vol):
    uploads = vol.chunks.stats().get("uploads", 0)
    vol.vfs.replace_content(ROOT_INO, "s.txt", b"x" * 4096)
    assert vol.chunks.stats().get("uploads", 0) == uploads
    inline = vol.meta.inline_bytes()
    vol.vfs.replace_content(ROOT_INO, "s.txt", b"y" * 4096)
    assert vol.meta.inline_bytes() == inline  # the old 4 KiB went at once, the new 4 KiB came
    big = bytes(range(256)) * 1024  # 256 KiB: past the 16 KiB inline limit
    vol.vfs.replace_content(ROOT_INO, "s.txt", big)
    assert vol.chunks.stats().get("uploads", 0) > uploads
    assert vol.meta.inline_bytes() == inline - 4096
    assert vol.read_bytes("s.txt") == big
    vol.vfs.replace_content(ROOT_INO, "s.txt", b"")
    assert vol.read_bytes("s.txt") == b"" and vol.stat("s.txt").st_size == 0


def test_version_preconditions_are_checked_in_the_same_call(vol):
    ino, attr, _ = vol.vfs.replace_content(ROOT_INO, "v.txt", b"1", expect=ABSENT)
    with pytest.raises(FileExistsError):
        vol.vfs.replace_content(ROOT_INO, "v.txt", b"2", expect=ABSENT)
    _, attr2, _ = vol.vfs.replace_content(ROOT_INO, "v.txt", b"2", expect=(ino, attr.gen))
    with pytest.raises(VersionMismatch):
        vol.vfs.replace_content(ROOT_INO, "v.txt", b"3", expect=(ino, attr.gen))
    assert vol.read_bytes("v.txt") == b"2"
    with pytest.raises(VersionMismatch):
        vol.vfs.replace_content(ROOT_INO, "gone.txt", b"3", expect=(ino, attr2.gen))
    assert not vol.exists("gone.txt")


def test_refusals_directory_symlink_missing_without_create(vol):
    vol.mkdir("d")
    with pytest.raises(IsADirectoryError):
        vol.vfs.replace_content(ROOT_INO, "d", b"x")
    vol.symlink("d/t.txt", "link")
    with pytest.raises(EntryIsSymlink):
        vol.vfs.replace_content(ROOT_INO, "link", b"x")
    with pytest.raises(FileNotFoundError):
        vol.vfs.replace_content(ROOT_INO, "new.txt", b"x", create=False)


def test_a_failed_s3_swap_deletes_its_uploaded_blocks(vol):
    vol.vfs.replace_content(ROOT_INO, "f.txt", b"1")
    stats = vol.chunks.stats()
    with pytest.raises(FileExistsError):
        vol.vfs.replace_content(ROOT_INO, "f.txt", b"z" * (1 << 20), expect=ABSENT)
    after = vol.chunks.stats()
    assert after["uploads"] == stats["uploads"] + 1
    assert after["blocks_removed"] == stats["blocks_removed"] + 1
    assert vol.read_bytes("f.txt") == b"1"


@pytest.mark.parametrize("size_a,size_b", [(100, 3000), (40_000, 300_000)])
def test_readers_on_another_host_see_old_or_new_never_a_mix(volume_factory, size_a, size_b):
    writer_vol, reader_vol = volume_factory(), volume_factory()
    writer, reader = AgentFS(writer_vol), AgentFS(reader_vol)
    a, b = "a" * size_a, "b" * size_b
    writer.write_file("atomic.txt", a)
    stop = threading.Event()
    seen, bad = set(), []

    def read_loop():
        while not stop.is_set():
            got = reader.read_file("atomic.txt")["content"]
            if got not in (a, b):
                bad.append((len(got), got[:1], got[-1:]))
            seen.add(got[:1])

    threads = [threading.Thread(target=read_loop) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for i in range(60):
            writer.write_file("atomic.txt", b if i % 2 == 0 else a)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not bad
    assert writer_vol.stat("atomic.txt").st_ino == reader_vol.stat("atomic.txt").st_ino


def test_replacing_a_sparse_multi_chunk_file_drops_every_chunk_list(vol):
    from artifacts_core.types import CHUNK_SIZE

    with vol.open("sparse.bin", "wb") as f:
        f.seek(2 * CHUNK_SIZE + 5)
        f.write(b"far away")  # a list for chunk 2 only; chunks 0 and 1 are holes
    ino = vol.stat("sparse.bin").st_ino
    assert vol.meta.read_chunk(ino, 2)[0]
    vol.vfs.replace_content(ROOT_INO, "sparse.bin", b"small now")
    assert vol.meta.read_chunk(ino, 2)[0] == []
    assert not vol.meta.client.command("SMEMBERS", vol.meta.keys.chunk_indexes(ino))
    assert vol.read_bytes("sparse.bin") == b"small now"
