"""Two mounts of one workspace in two processes (the two-host case, SPEC.md §5.6): close-to-open
data, renames, concurrent writers to different files, and locks that block across mounts."""

from __future__ import annotations

import fcntl
import hashlib
import os
import signal
import subprocess
import sys
import threading
import uuid

import pytest
from fuse_helpers import mounted, new_workspace, wait_for

pytestmark = [pytest.mark.redis, pytest.mark.s3]

#: The kernel may serve a name or attributes from its cache for the profile's entry/attr TTL (1 s);
#: a change from the other mount must show within a few of those.
VISIBLE = 5.0


@pytest.fixture(scope="module")
def hosts(redis_url, s3_server, tmp_path_factory):
    ws = new_workspace(redis_url, s3_server, str(tmp_path_factory.mktemp("cache-a")))
    a, b = str(tmp_path_factory.mktemp("a")), str(tmp_path_factory.mktemp("b"))
    import msgspec

    ws_b = msgspec.structs.replace(ws, config=msgspec.structs.replace(
        ws.config, cache_dir=str(tmp_path_factory.mktemp("cache-b"))))
    with mounted(ws, a), mounted(ws_b, b):
        yield a, b


@pytest.fixture
def pair(hosts):
    name = uuid.uuid4().hex[:8]
    a, b = (os.path.join(h, name) for h in hosts)
    os.mkdir(a)
    wait_for(lambda: os.path.isdir(b), VISIBLE, "the directory on the other mount")
    return a, b


def test_a_file_closed_on_one_mount_is_read_whole_on_the_other(pair):
    a, b = pair
    data = os.urandom(5 << 20) + b"tail"
    with open(os.path.join(a, "f"), "wb") as f:
        f.write(data)
    wait_for(lambda: os.path.exists(os.path.join(b, "f")), VISIBLE, "the file on B")
    for _ in range(2):  # the second open keeps B's page cache: nothing changed in between
        with open(os.path.join(b, "f"), "rb") as f:
            assert hashlib.sha256(f.read()).digest() == hashlib.sha256(data).digest()
    # Rewritten on A (same size): B's next open sees the new bytes (close-to-open), not its
    # page cache, even within the attribute TTL.
    with open(os.path.join(a, "f"), "r+b") as f:
        f.write(b"NEW!")
    with open(os.path.join(b, "f"), "rb") as f:
        assert f.read(4) == b"NEW!"


def test_a_rename_on_one_mount_is_seen_by_the_other(pair):
    a, b = pair
    with open(os.path.join(a, "old"), "wb") as f:
        f.write(b"x")
    wait_for(lambda: os.path.exists(os.path.join(b, "old")), VISIBLE, "old on B")
    os.rename(os.path.join(a, "old"), os.path.join(a, "new"))
    wait_for(lambda: sorted(os.listdir(b)) == ["new"], VISIBLE, "the rename on B")
    wait_for(lambda: not os.path.exists(os.path.join(b, "old")), VISIBLE, "old gone on B")
    with open(os.path.join(b, "new"), "rb") as f:
        assert f.read() == b"x"


def test_concurrent_writers_on_both_mounts_lose_nothing(pair):
    a, b = pair
    blobs = {f"w{i}": os.urandom(200_000 + i * 7919) for i in range(8)}

    def write(root: str, name: str) -> None:
        with open(os.path.join(root, name), "wb") as f:
            data = blobs[name]
            for off in range(0, len(data), 65536):
                f.write(data[off:off + 65536])

    threads = [threading.Thread(target=write, args=(a if i % 2 else b, name))
               for i, name in enumerate(blobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for root in (a, b):
        wait_for(lambda r=root: len(os.listdir(r)) == len(blobs), VISIBLE, "every file on both mounts")
        for name, data in blobs.items():
            with open(os.path.join(root, name), "rb") as f:
                assert f.read() == data, f"{name} differs on {root}"


def test_flock_held_on_one_mount_blocks_the_other(pair):
    a, b = pair
    open(os.path.join(a, "lock"), "w").close()
    wait_for(lambda: os.path.exists(os.path.join(b, "lock")), VISIBLE, "the lock file on B")
    holder = subprocess.Popen(["flock", os.path.join(a, "lock"), "-c", "echo held; read x"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        # Non-blocking on B fails while A holds it (flock(1) exits 1 on EWOULDBLOCK).
        assert subprocess.run(["flock", "-n", os.path.join(b, "lock"), "true"]).returncode == 1
        waiter = subprocess.Popen(["flock", os.path.join(b, "lock"), "-c", "echo got"], stdout=subprocess.PIPE,
                                  text=True)
        with pytest.raises(subprocess.TimeoutExpired):
            waiter.wait(timeout=0.5)  # still blocked: A holds the lock
        holder.stdin.write("\n")
        holder.stdin.close()
        assert holder.wait(timeout=30) == 0
        assert waiter.wait(timeout=30) == 0 and waiter.stdout.read().strip() == "got"
    finally:
        for p in (holder,):
            if p.poll() is None:
                p.kill()


def test_posix_record_locks_conflict_across_mounts(pair):
    a, b = pair
    with open(os.path.join(a, "rec"), "wb") as f:
        f.write(b"\0" * 100)
    wait_for(lambda: os.path.exists(os.path.join(b, "rec")), VISIBLE, "rec on B")
    with open(os.path.join(a, "rec"), "r+b") as fa, open(os.path.join(b, "rec"), "r+b") as fb:
        fcntl.lockf(fa, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 0)
        with pytest.raises(BlockingIOError):
            fcntl.lockf(fb, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 5)
        fcntl.lockf(fb, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 50)  # a disjoint range is free
        fa.close()  # closing releases the owner's POSIX locks
        fcntl.lockf(fb, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 5)


def test_blocked_lock_waits_do_not_starve_the_mount(pair):
    """More blocked waiters than libfuse's default 10 worker threads: the mount still answers."""
    a, b = pair
    open(os.path.join(a, "busy"), "w").close()
    wait_for(lambda: os.path.exists(os.path.join(b, "busy")), VISIBLE, "busy on B")
    holder = subprocess.Popen(["flock", os.path.join(a, "busy"), "-c", "echo held; read x"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    waiters = []
    try:
        assert holder.stdout.readline().strip() == "held"
        waiters = [subprocess.Popen(["flock", os.path.join(b, "busy"), "true"]) for _ in range(16)]
        answered = threading.Event()

        def probe() -> None:
            os.listdir(b)
            with open(os.path.join(b, "probe"), "w") as f:
                f.write("ok")
            answered.set()

        threading.Thread(target=probe, daemon=True).start()
        assert answered.wait(10), "the mount stopped answering while lock waiters were blocked"
        holder.stdin.write("\n")
        holder.stdin.close()
        assert holder.wait(timeout=30) == 0
        assert [w.wait(timeout=60) for w in waiters] == [0] * len(waiters)
    finally:
        for p in (holder, *waiters):
            if p.poll() is None:
                p.kill()


def test_closing_any_descriptor_drops_the_process_posix_locks(pair):
    a, b = pair
    with open(os.path.join(a, "two-fds"), "wb") as f:
        f.write(b"\0" * 10)
    wait_for(lambda: os.path.exists(os.path.join(b, "two-fds")), VISIBLE, "two-fds on B")
    with open(os.path.join(a, "two-fds"), "r+b") as fa1, open(os.path.join(b, "two-fds"), "r+b") as fb:
        fcntl.lockf(fa1, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(BlockingIOError):
            fcntl.lockf(fb, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with open(os.path.join(a, "two-fds"), "rb"):
            pass  # POSIX: closing this second descriptor releases the lock taken through the first
        fcntl.lockf(fb, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_a_signal_interrupts_a_blocked_lock_wait(pair):
    a, b = pair
    open(os.path.join(a, "intr"), "w").close()
    wait_for(lambda: os.path.exists(os.path.join(b, "intr")), VISIBLE, "intr on B")
    code = ("import fcntl, signal, sys\n"
            "def stop(*_): raise SystemExit(7)\n"
            "signal.signal(signal.SIGUSR1, stop)\n"
            "f = open(sys.argv[1], 'rb')\n"
            "print('waiting', flush=True)\n"
            "fcntl.flock(f, fcntl.LOCK_EX)\n"
            "print('granted', flush=True)\n")
    with open(os.path.join(a, "intr"), "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        waiter = subprocess.Popen([sys.executable, "-c", code, os.path.join(b, "intr")], stdout=subprocess.PIPE,
                                  text=True)
        try:
            assert waiter.stdout.readline().strip() == "waiting"
            with pytest.raises(subprocess.TimeoutExpired):
                waiter.wait(timeout=0.5)  # blocked behind A's lock
            waiter.send_signal(signal.SIGUSR1)
            assert waiter.wait(timeout=10) == 7  # the wait ended with EINTR; the handler ran
        finally:
            if waiter.poll() is None:
                waiter.kill()
    # A closed its descriptor: the lock is free, and the interrupted waiter does not hold it.
    assert subprocess.run(["flock", "-n", os.path.join(b, "intr"), "true"]).returncode == 0
