"""``.checkpoints/<name>/`` through the VFS and the path API on the real servers: hidden from the
root's listing but reachable by name, every checkpoint's tree as it was, every write EROFS
(docs/history.md "Browsing")."""

from __future__ import annotations

import errno
import os

import pytest

from artifacts_core.errors import ArtifactsError, Exists, NotFound, ReadOnly
from artifacts_core.vfs import checkpointfs


def _errno(fn) -> int:
    with pytest.raises(ArtifactsError) as e:
        fn()
    return e.value.errno


def test_checkpoints_are_browsable_by_path_as_they_were(vol):
    vol.makedirs("src/pkg")
    vol.write_bytes("src/pkg/a.py", b"print('a')\n")
    vol.write_bytes("big.bin", os.urandom(3 << 20))
    big = vol.read_bytes("big.bin")
    vol.symlink("pkg/a.py", "src/link")
    vol.checkpoints.create("one")
    vol.write_bytes("src/pkg/a.py", b"changed\n")
    vol.remove("big.bin")
    vol.rename("src", "moved")
    vol.checkpoints.create("two")

    assert ".checkpoints" not in vol.listdir("/")  # hidden: recursive tools do not walk history
    assert vol.isdir(".checkpoints")
    assert sorted(vol.listdir(".checkpoints")) == ["one", "two"]
    assert sorted(vol.listdir(".checkpoints/one")) == ["big.bin", "src"]
    assert vol.read_bytes(".checkpoints/one/src/pkg/a.py") == b"print('a')\n"
    assert vol.read_bytes(".checkpoints/one/big.bin") == big
    assert vol.read_bytes(".checkpoints/one/src/link") == b"print('a')\n"  # relative link inside
    assert vol.readlink(".checkpoints/one/src/link") == "pkg/a.py"
    assert vol.read_bytes(".checkpoints/two/moved/pkg/a.py") == b"changed\n"
    assert not vol.exists(".checkpoints/two/big.bin")
    with vol.open(".checkpoints/one/big.bin", "rb") as f:
        f.seek(1 << 20)
        assert f.read(100) == big[1 << 20:(1 << 20) + 100]
    st = vol.stat(".checkpoints/one/src/pkg/a.py")
    assert st.st_size == len(b"print('a')\n") and checkpointfs.is_virtual(st.st_ino)
    assert st.st_ino != vol.stat(".checkpoints/two/moved/pkg/a.py").st_ino  # one inode per checkpoint
    top = vol.stat(".checkpoints/one")
    assert top.st_mode & 0o7777 == 0o555
    assert abs(top.st_mtime - vol.checkpoints.get("one").created) < 1
    walked = {p: sorted(f) for p, _d, f in vol.walk(".checkpoints/one")}
    assert walked["/.checkpoints/one/src/pkg"] == ["a.py"]
    with pytest.raises(NotFound):
        vol.stat(".checkpoints/nope")


def test_every_write_in_checkpoints_is_erofs(vol):
    vol.makedirs("d")
    vol.write_bytes("d/f", b"data")
    vol.checkpoints.create("c")
    base = ".checkpoints/c"
    assert _errno(lambda: vol.write_bytes(f"{base}/d/f", b"x")) == errno.EROFS
    assert _errno(lambda: vol.open(f"{base}/d/f", "r+b")) == errno.EROFS
    assert _errno(lambda: vol.write_bytes(f"{base}/d/new", b"x")) == errno.EROFS
    assert _errno(lambda: vol.mkdir(f"{base}/d/sub")) == errno.EROFS
    assert _errno(lambda: vol.remove(f"{base}/d/f")) == errno.EROFS
    assert _errno(lambda: vol.rmdir(f"{base}/d")) == errno.EROFS
    assert _errno(lambda: vol.rename(f"{base}/d/f", "out")) == errno.EROFS
    assert _errno(lambda: vol.rename("d/f", f"{base}/d/g")) == errno.EROFS
    assert _errno(lambda: vol.chmod(f"{base}/d/f", 0o600)) == errno.EROFS
    assert _errno(lambda: vol.truncate(f"{base}/d/f", 0)) == errno.EROFS
    assert _errno(lambda: vol.symlink("x", f"{base}/l")) == errno.EROFS
    assert _errno(lambda: vol.link("d/f", f"{base}/d/h")) == errno.EROFS
    assert _errno(lambda: vol.rmdir(".checkpoints")) == errno.EROFS
    assert _errno(lambda: vol.rename(".checkpoints", "x")) == errno.EROFS
    assert _errno(lambda: vol.mkdir(".checkpoints/new")) == errno.EROFS
    assert _errno(lambda: vol.clone(f"{base}/d/f", "copy")) == errno.EXDEV
    vol.mkdir("other")
    assert _errno(lambda: vol.rename("other", ".checkpoints")) == errno.EROFS
    with pytest.raises(Exists):  # a reserved root name that exists
        vol.mkdir(".checkpoints")
    with pytest.raises(ReadOnly) as e:
        vol.write_bytes(f"{base}/d/f", b"x")
    assert "read-only" in str(e.value) and e.value.hint
    assert vol.read_bytes("d/f") == b"data"  # nothing changed


def test_a_deleted_checkpoint_disappears_and_a_new_one_appears(vol):
    vol.write_bytes("f", b"1")
    vol.checkpoints.create("a")
    assert vol.read_bytes(".checkpoints/a/f") == b"1"
    vol.checkpoints.delete("a")
    with pytest.raises(NotFound):
        vol.read_bytes(".checkpoints/a/f")
    vol.write_bytes("f", b"2")
    vol.checkpoints.create("b")
    assert vol.listdir(".checkpoints") == ["b"]
    assert vol.read_bytes(".checkpoints/b/f") == b"2"


def test_virtual_inode_numbers_are_stable_and_distinct():
    a = checkpointfs.virtual(3, 17)
    assert checkpointfs.split(a) == (3, 17) and checkpointfs.is_virtual(a)
    top = checkpointfs.virtual(checkpointfs.MAX_EPOCH, (1 << checkpointfs.EPOCH_SHIFT) - 1)
    assert checkpointfs.is_virtual(top) and top < checkpointfs.internal.INTERNAL_BASE
    assert not checkpointfs.is_virtual(17) and checkpointfs.is_virtual(checkpointfs.CHECKPOINTS_INO)
    with pytest.raises(ArtifactsError):
        checkpointfs.virtual(checkpointfs.MAX_EPOCH + 1, 1)
