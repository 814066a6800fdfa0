"""``.checkpoints/<name>/`` on a real mount (docs/history.md "Browsing"): hidden from ``ls -a`` of
the root but reachable, each checkpoint's files as they were (cat, cp -r, diff -r, symlinks),
every write EROFS, the file's permissions enforced by the kernel as on the live tree."""

from __future__ import annotations

import errno
import os
import subprocess
import tempfile

import pytest
from fuse_helpers import as_user, mounted, new_workspace

from artifacts_core.volume import open_volume

pytestmark = [pytest.mark.redis, pytest.mark.s3]


@pytest.fixture(scope="module")
def env(redis_url, s3_server, tmp_path_factory):
    ws = new_workspace(redis_url, s3_server, str(tmp_path_factory.mktemp("cache")))
    mp = tempfile.mkdtemp(prefix="artifacts-ckpt-")  # pytest's own tmp dirs are 0700 to others
    os.chmod(mp, 0o755)
    saved = {k: os.environ.get(k) for k in ws.env}
    os.environ.update(ws.env)
    vol = open_volume(ws.meta_url, ws.storage_url, key_prefix=ws.key_prefix, require_aof=False)
    try:
        with mounted(ws, mp):
            yield mp, vol
    finally:
        vol.close()
        os.rmdir(mp)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _run(*cmd: str, cwd: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=cwd)


def test_checkpoints_browse_on_the_mount(env):
    mp, vol = env
    proj = os.path.join(mp, "proj")
    os.makedirs(os.path.join(proj, "src"))
    with open(os.path.join(proj, "src", "main.py"), "w") as f:
        f.write("print('v1')\n")
    big = os.urandom(2 << 20)
    with open(os.path.join(proj, "data.bin"), "wb") as f:
        f.write(big)
    os.symlink("src/main.py", os.path.join(proj, "main"))
    vol.checkpoints.create("m1")  # the files above were closed: committed (close-to-open)
    with open(os.path.join(proj, "src", "main.py"), "w") as f:
        f.write("print('v2')\n")
    os.remove(os.path.join(proj, "data.bin"))

    assert ".checkpoints" not in os.listdir(mp)
    assert ".checkpoints" not in _run("ls", "-a", mp).stdout.split()
    assert "m1" in os.listdir(os.path.join(mp, ".checkpoints"))
    old = os.path.join(mp, ".checkpoints", "m1", "proj")
    assert sorted(os.listdir(old)) == ["data.bin", "main", "src"]
    assert _run("cat", os.path.join(old, "src", "main.py")).stdout == "print('v1')\n"
    assert _run("cat", os.path.join(old, "main")).stdout == "print('v1')\n"  # the link, followed
    with open(os.path.join(old, "data.bin"), "rb") as f:
        assert f.read() == big
    assert os.stat(os.path.join(old, "src", "main.py")).st_ino != os.stat(os.path.join(proj, "src", "main.py")).st_ino
    # the live tree moved on
    assert not os.path.exists(os.path.join(proj, "data.bin"))
    # copy a tree out of the checkpoint with ordinary tools
    out = os.path.join(mp, "recovered")
    r = _run("cp", "-a", old, out)
    assert r.returncode == 0, r.stderr
    assert _run("diff", "-r", old, out).returncode == 0
    with open(os.path.join(out, "data.bin"), "rb") as f:
        assert f.read() == big
    # cd into it and use relative paths
    assert _run("cat", "src/main.py", cwd=old).stdout == "print('v1')\n"


def test_writes_in_checkpoints_are_erofs_on_the_mount(env):
    mp, vol = env
    d = os.path.join(mp, "w")
    os.mkdir(d)
    with open(os.path.join(d, "f"), "w") as f:
        f.write("keep")
    vol.checkpoints.create("w1")
    c = os.path.join(mp, ".checkpoints", "w1", "w")
    attempts = [
        lambda: os.open(os.path.join(c, "f"), os.O_WRONLY),
        lambda: os.open(os.path.join(c, "f"), os.O_WRONLY | os.O_APPEND),
        lambda: os.open(os.path.join(c, "new"), os.O_WRONLY | os.O_CREAT),
        lambda: os.mkdir(os.path.join(c, "sub")),
        lambda: os.remove(os.path.join(c, "f")),
        lambda: os.rename(os.path.join(c, "f"), os.path.join(c, "g")),
        lambda: os.chmod(os.path.join(c, "f"), 0o600),
        lambda: os.truncate(os.path.join(c, "f"), 0),
        lambda: os.symlink("x", os.path.join(c, "l")),
        lambda: os.rmdir(os.path.join(mp, ".checkpoints", "w1")),
        lambda: os.mkdir(os.path.join(mp, ".checkpoints", "new")),
    ]
    for attempt in attempts:
        with pytest.raises(OSError) as e:
            attempt()
        assert e.value.errno in (errno.EROFS, errno.EACCES), attempt  # the kernel checks 0555 first as a user
    r = _run("touch", os.path.join(c, "f"))
    assert r.returncode != 0 and "Read-only file system" in r.stderr
    with open(os.path.join(d, "f")) as f:
        assert f.read() == "keep"


def test_permissions_inside_a_checkpoint_are_the_files_own(env):
    mp, vol = env
    d = os.path.join(mp, "perm")
    os.mkdir(d)
    os.chmod(d, 0o755)
    secret = os.path.join(d, "secret")
    with open(secret, "w") as f:
        f.write("s")
    os.chmod(secret, 0o600)
    with open(os.path.join(d, "public"), "w") as f:
        f.write("p")
    os.chmod(os.path.join(d, "public"), 0o644)
    vol.checkpoints.create("p1")
    c = os.path.join(mp, ".checkpoints", "p1", "perm")
    assert as_user(f"cat {c}/public").stdout == "p"
    r = as_user(f"cat {c}/secret")
    assert r.returncode != 0 and "Permission denied" in r.stderr
    r = as_user(f"echo x > {c}/public")
    assert r.returncode != 0
