"""docs/SEMANTICS.md "Permissions" and "Times", checked on a real mount as root and as
unprivileged users (``setpriv``): owner/group/other bits, supplementary groups, sticky and setgid
directories, setuid cleared on write and chown, EPERM versus EACCES, and which times change."""

from __future__ import annotations

import os
import stat
import tempfile
import uuid

import pytest
from fuse_helpers import as_user, mounted, new_workspace

pytestmark = [pytest.mark.redis, pytest.mark.s3]

USER, OTHER, GROUP = 1000, 1001, 2000


@pytest.fixture(scope="module")
def mnt(redis_url, s3_server, tmp_path_factory):
    ws = new_workspace(redis_url, s3_server, str(tmp_path_factory.mktemp("cache")))
    mp = tempfile.mkdtemp(prefix="artifacts-perms-")  # pytest's own tmp dirs are 0700 to others
    os.chmod(mp, 0o755)
    try:
        with mounted(ws, mp) as m:
            yield m
    finally:
        os.rmdir(mp)


@pytest.fixture
def d(mnt):
    path = os.path.join(mnt.mountpoint, uuid.uuid4().hex[:8])
    os.mkdir(path)
    os.chmod(path, 0o777)
    return path


def _mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_owner_group_other_bits_and_supplementary_groups(d):
    f = os.path.join(d, "secret")
    with open(f, "w") as fh:
        fh.write("s")
    os.chmod(f, 0o640)
    r = as_user(f"cat {f}")
    assert r.returncode != 0 and "Permission denied" in r.stderr  # other: no read
    os.chown(f, 0, GROUP)
    assert as_user(f"cat {f}", groups=str(GROUP)).stdout == "s"  # group via a supplementary group
    assert as_user(f"cat {f}", gid=GROUP).stdout == "s"  # group via the primary group
    assert "Permission denied" in as_user(f"echo x >> {f}", groups=str(GROUP)).stderr  # group: no write
    os.chown(f, USER, 0)
    assert as_user(f"cat {f}").stdout == "s"  # owner
    os.chmod(f, 0)
    with open(f) as fh:  # root reads whatever the bits say
        assert fh.read() == "s"


def test_new_files_belong_to_the_caller(d):
    r = as_user(f"touch {d}/mine && mkdir {d}/mydir")
    assert r.returncode == 0, r.stderr
    for p in ("mine", "mydir"):
        st = os.stat(os.path.join(d, p))
        assert (st.st_uid, st.st_gid) == (USER, USER)


def test_create_needs_write_and_search_permission_on_the_directory(d):
    os.chmod(d, 0o755)
    assert "Permission denied" in as_user(f"touch {d}/x").stderr
    os.mkdir(os.path.join(d, "closed"), 0o700)
    assert "Permission denied" in as_user(f"ls {d}/closed").stderr
    assert "Permission denied" in as_user(f"cat {d}/closed/anything").stderr


def test_sticky_directory_protects_other_users_files(d):
    os.chmod(d, 0o1777)
    assert as_user(f"touch {d}/owned").returncode == 0
    r = as_user(f"rm -f {d}/owned", uid=OTHER, gid=OTHER)
    assert r.returncode != 0 and "Operation not permitted" in r.stderr  # EPERM, not EACCES
    assert as_user(f"mv {d}/owned {d}/x", uid=OTHER, gid=OTHER).returncode != 0
    assert as_user(f"rm {d}/owned").returncode == 0  # the owner may


def test_setgid_directory_passes_its_group_on(d):
    sg = os.path.join(d, "shared")
    os.mkdir(sg)
    os.chown(sg, 0, GROUP)
    os.chmod(sg, 0o2777)
    assert as_user(f"touch {sg}/f && mkdir {sg}/sub").returncode == 0
    assert os.stat(f"{sg}/f").st_gid == GROUP
    sub = os.stat(f"{sg}/sub")
    assert sub.st_gid == GROUP and sub.st_mode & stat.S_ISGID


def test_chmod_and_chown_by_others_are_eperm(d):
    f = os.path.join(d, "f")
    open(f, "w").close()
    assert "Operation not permitted" in as_user(f"chmod 777 {f}").stderr
    os.chown(f, USER, USER)
    assert "Operation not permitted" in as_user(f"chown {OTHER} {f}").stderr  # only root gives away
    assert "Operation not permitted" in as_user(f"chgrp {GROUP} {f}").stderr  # not in that group
    assert as_user(f"chgrp {GROUP} {f}", groups=str(GROUP)).returncode == 0  # in that group
    assert os.stat(f).st_gid == GROUP
    assert as_user(f"chmod 600 {f}").returncode == 0 and _mode(f) == 0o600


def test_setuid_and_setgid_are_cleared_on_write_and_chown(d):
    f = os.path.join(d, "suid")
    with open(f, "w") as fh:
        fh.write("#!/bin/sh\n")
    os.chmod(f, 0o6777)
    assert as_user(f"echo more >> {f}").returncode == 0
    assert _mode(f) & (stat.S_ISUID | stat.S_ISGID) == 0
    os.chmod(f, 0o4755)
    os.chown(f, USER, USER)
    assert _mode(f) & stat.S_ISUID == 0


def test_times_only_the_owner_sets_explicitly(d):
    f = os.path.join(d, "t")
    open(f, "w").close()
    os.chmod(f, 0o666)
    assert as_user(f"touch {f}").returncode == 0  # write permission allows "now"
    r = as_user(f"touch -d 2001-01-01 {f}")
    assert r.returncode != 0 and "Operation not permitted" in r.stderr
    os.chown(f, USER, USER)
    assert as_user(f"touch -d 2001-01-01 {f}").returncode == 0
    assert os.stat(f).st_mtime == 978307200


def test_times_change_where_posix_says(d):
    f = os.path.join(d, "f")
    with open(f, "w") as fh:
        fh.write("a")
    os.utime(f, ns=(10**9, 10**9))
    os.utime(d, ns=(10**9, 10**9))
    before = os.stat(f)
    with open(f) as fh:
        fh.read()
    os.chmod(f, 0o600)
    after = os.stat(f)
    assert after.st_mtime_ns == before.st_mtime_ns  # chmod and read leave mtime alone
    assert after.st_ctime_ns > before.st_ctime_ns  # chmod changes ctime
    with open(f, "a") as fh:
        fh.write("b")
    assert os.stat(f).st_mtime_ns > 10**9  # a write changes mtime
    open(os.path.join(d, "new"), "w").close()
    assert os.stat(d).st_mtime_ns > 10**9  # creating an entry changes the directory's mtime


def test_the_workspace_root_is_sticky_so_others_cannot_rename_your_files(mnt):
    """The root was 0777 without the sticky bit: under allow_other, another local user could
    rename or remove root's files at the top of the workspace. It is 1777 now (as /tmp): every
    uid still creates there, and only a file's owner (or the root's owner, or root) removes or
    renames it."""
    root = mnt.mountpoint
    assert _mode(root) == 0o1777
    name = f"roots-{uuid.uuid4().hex[:6]}"
    with open(os.path.join(root, name), "w") as f:
        f.write("mine")
    for cmd in (f"mv {root}/{name} {root}/{name}.stolen", f"rm -f {root}/{name}"):
        r = as_user(cmd)
        assert r.returncode != 0 and "Operation not permitted" in r.stderr, cmd
    with open(os.path.join(root, name)) as f:
        assert f.read() == "mine"
    assert as_user(f"touch {root}/{name}.user && mv {root}/{name}.user {root}/{name}.user2").returncode == 0
    os.unlink(os.path.join(root, f"{name}.user2"))
    os.unlink(os.path.join(root, name))
