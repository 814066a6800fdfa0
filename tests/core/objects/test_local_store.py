"""LocalObjectStore beyond the shared contract: confinement, crash safety, true key order."""

from __future__ import annotations

import asyncio
import errno
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

from artifacts_core.errors import InvalidArgument, NameTooLong, NoSpace, NotFound
from artifacts_core.objects import LocalObjectStore, MemoryObjectStore, list_all, store_from_url
from artifacts_core.objects.local import TEMP_PREFIX


def run(coro):
    return asyncio.run(coro)


HOSTILE_KEYS = ["", "/etc/passwd", "../outside", "a/../../outside", "a/..", "..", ".", "./a", "a/./b",
                "a//b", "a/", "/", "nul\0byte", "a/\0", f"{TEMP_PREFIX}1234", f"dir/{TEMP_PREFIX}x"]


@pytest.mark.parametrize("key", HOSTILE_KEYS)
def test_hostile_keys_are_refused_by_every_operation(tmp_path, key):
    root = tmp_path / "root"
    store = LocalObjectStore(root)
    for call in (store.put(key, b"x"), store.get(key), store.head(key), store.delete(key)):
        with pytest.raises(InvalidArgument):
            run(call)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root"] or not root.exists()
    assert not (tmp_path / "outside").exists()


def test_overlong_component_is_name_too_long(tmp_path):
    store = LocalObjectStore(tmp_path)
    with pytest.raises(NameTooLong):
        run(store.put("d/" + "é" * 128, b"x"))  # 256 bytes in UTF-8, one past NAME_MAX
    run(store.put("d/" + "e" * 255, b"x"))


def test_key_and_directory_conflicts_are_clear_errors(tmp_path):
    store = LocalObjectStore(tmp_path)

    async def body():
        await store.put("a", b"file")
        with pytest.raises(InvalidArgument, match="not a directory"):
            await store.put("a/b", b"x")
        await store.put("d/x", b"x")
        with pytest.raises(InvalidArgument, match="directory"):
            await store.put("d", b"x")
        for call in (store.get("d"), store.head("d"), store.get("a/b")):
            with pytest.raises(NotFound):
                await call
        await store.delete("d")  # names no object: nothing to delete
        assert await store.get("d/x") == b"x"

    run(body())


def test_delete_removes_emptied_directories_but_keeps_the_root(tmp_path):
    root = tmp_path / "root"
    store = LocalObjectStore(root)

    async def body():
        await store.put("a/b/c/one", b"1")
        await store.put("a/two", b"2")
        await store.delete("a/b/c/one")
        assert not (root / "a" / "b").exists()
        assert (root / "a" / "two").exists()
        await store.delete("a/two")
        assert root.is_dir() and list(root.iterdir()) == []

    run(body())


def test_a_put_killed_before_rename_leaves_the_old_object_and_no_listed_temp(tmp_path):
    """A real crash: the child process is SIGKILLed after writing its temp file, before the rename."""
    root = tmp_path / "root"
    run(LocalObjectStore(root).put("dir/obj", b"old contents"))
    child = textwrap.dedent(f"""
        import asyncio, os, signal
        from artifacts_core.objects import LocalObjectStore
        def crash(src, dst):
            os.kill(os.getpid(), signal.SIGKILL)
        os.replace = crash
        asyncio.run(LocalObjectStore({str(root)!r}).put("dir/obj", b"new contents, never visible"))
    """)
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    leftovers = [p.name for p in (root / "dir").iterdir() if p.name.startswith(TEMP_PREFIX)]
    assert len(leftovers) == 1  # the crash really left a half-finished put behind

    store = LocalObjectStore(root)

    async def body():
        assert await store.get("dir/obj") == b"old contents"
        assert [o.key async for o in list_all(store)] == ["dir/obj"]
        assert [o.key for o in (await store.list("dir/")).objects] == ["dir/obj"]
        await store.put("dir/obj", b"after the crash")
        assert await store.get("dir/obj") == b"after the crash"

    run(body())


def test_a_failed_put_keeps_the_old_object_and_cleans_its_temp(tmp_path, monkeypatch):
    store = LocalObjectStore(tmp_path)
    run(store.put("k", b"old"))

    def full_disk(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(NoSpace) as info:
        run(store.put("k", b"new"))
    assert info.value.path == "k" and isinstance(info.value.__cause__, OSError)
    monkeypatch.undo()
    assert run(store.get("k")) == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k"]


def test_file_io_runs_off_the_event_loop_thread(tmp_path, monkeypatch):
    seen: list[bool] = []
    real_fsync = os.fsync

    def spy(fd):
        seen.append(threading.current_thread() is threading.main_thread())
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    run(LocalObjectStore(tmp_path).put("a/b", b"x"))
    assert seen and not any(seen)


def test_list_matches_a_reference_model_on_random_trees(tmp_path):
    """Random keys over an alphabet chosen to break walk order ('-', '.', '/', '0', non-ASCII),
    compared page by page with the in-memory store as the model."""
    rng = random.Random(20261121)
    alphabet = ["a", "b", "-", ".", "0", "ü", "z"]
    local, model = LocalObjectStore(tmp_path / "root"), MemoryObjectStore()

    def random_key() -> str:
        parts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 3)))
                 for _ in range(rng.randint(1, 4))]
        return "/".join(p if p not in (".", "..") else p + "x" for p in parts)

    async def body():
        stored: set[str] = set()
        for _ in range(300):
            key = random_key()
            # Skip keys that would be both an object and a directory (a file system cannot).
            if any(k.startswith(key + "/") or key.startswith(k + "/") for k in stored):
                continue
            stored.add(key)
            await local.put(key, key.encode())
            await model.put(key, key.encode())
        probes = ["", *rng.sample(sorted(stored), 20), *[random_key() for _ in range(20)]]
        for prefix in ["", "a", "a/", "-", "ü", "0/", *[k[:rng.randint(1, len(k))] for k in probes if k][:20]]:
            for start_after in rng.sample(probes, 8):
                for limit in (1, 3, 1000):
                    got, want = (await local.list(prefix, start_after, limit),
                                 await model.list(prefix, start_after, limit))
                    assert [o.key for o in got.objects] == [o.key for o in want.objects], (prefix, start_after)
                    assert got.truncated == want.truncated
        assert [o.key async for o in list_all(local)] == sorted(stored)

    run(body())


def test_file_url_opens_a_local_store(tmp_path):
    store = store_from_url(f"file://{tmp_path}/vol")
    assert isinstance(store, LocalObjectStore)
    assert store.describe() == f"file://{tmp_path}/vol"
    run(store.put("k", b"v"))
    assert (tmp_path / "vol" / "k").read_bytes() == b"v"
