"""Real programs on a real mount: git, tar, SQLite, venv + pip, cp/mv/rm of deep trees, dd across
chunk boundaries. Each result is compared with the same work done on local disk or checksummed."""

from __future__ import annotations

import base64
import hashlib
import os
import sqlite3
import subprocess
import sys
import zipfile

import pytest
from fuse_helpers import mounted, new_workspace, sh

pytestmark = [pytest.mark.redis, pytest.mark.s3, pytest.mark.slow]


@pytest.fixture(scope="module")
def mnt(redis_url, s3_server, tmp_path_factory):
    ws = new_workspace(redis_url, s3_server, str(tmp_path_factory.mktemp("cache")))
    mp = str(tmp_path_factory.mktemp("mnt"))
    with mounted(ws, mp) as m:
        yield m


def make_tree(root: str, depth: int = 6, width: int = 3) -> None:
    """A deep tree with files, a symlink and a hard link at every level."""
    path = root
    for level in range(depth):
        os.makedirs(path, exist_ok=True)
        for i in range(width):
            with open(os.path.join(path, f"f{i}.txt"), "wb") as f:
                f.write(os.urandom(100 + level * 1000 + i) + f"level {level}\n".encode())
        os.symlink("f0.txt", os.path.join(path, "link"))
        os.link(os.path.join(path, "f1.txt"), os.path.join(path, "hard"))
        path = os.path.join(path, f"d{level}")


def test_git_init_add_commit_status_log(d):
    repo = os.path.join(d, "repo")
    env = dict(os.environ, GIT_AUTHOR_NAME="a", GIT_AUTHOR_EMAIL="a@x", GIT_COMMITTER_NAME="a",
               GIT_COMMITTER_EMAIL="a@x", HOME=d)
    sh(f"git init -q {repo}", env=env)
    for i in range(20):
        with open(os.path.join(repo, f"file{i}.py"), "w") as f:
            f.write(f"x = {i}\n" * 50)
    sh(f"cd {repo} && git add -A && git commit -q -m first", env=env)
    with open(os.path.join(repo, "file3.py"), "a") as f:
        f.write("y = 1\n")
    status = sh(f"cd {repo} && git status --porcelain", env=env).stdout
    assert status.strip() == "M file3.py"
    sh(f"cd {repo} && git commit -q -am second && git gc -q", env=env)
    log = sh(f"cd {repo} && git log --format=%s", env=env).stdout.split()
    assert log == ["second", "first"]
    sh(f"cd {repo} && git fsck --strict", env=env)


def test_tar_extract_and_recreate_byte_identical(d, tmp_path):
    src = str(tmp_path / "src")
    make_tree(src)
    archive = str(tmp_path / "a.tar")
    sh(f"tar -C {src} -cf {archive} .")
    out = os.path.join(d, "x")
    os.mkdir(out)
    sh(f"tar -C {out} -xpf {archive}")
    sh(f"diff -r --no-dereference {src} {out}")
    again = str(tmp_path / "b.tar")
    sh(f"tar -C {out} -cf {again} .")
    listing = sh(f"tar -tvf {again}").stdout
    assert "link to" in listing and "-> f0.txt" in listing  # hard links and symlinks survived
    back = str(tmp_path / "back")
    os.mkdir(back)
    sh(f"tar -C {back} -xf {again} && diff -r --no-dereference {src} {back}")
    deepest = os.path.join(out, "d0", "d1", "d2")
    assert os.stat(os.path.join(deepest, "hard")).st_ino == os.stat(os.path.join(deepest, "f1.txt")).st_ino


def test_sqlite_written_by_two_processes(d):
    db = os.path.join(d, "t.db")
    con = sqlite3.connect(db)
    con.execute("create table t (id integer primary key, who text, v blob)")
    con.commit()
    code = ("import sqlite3, sys\n"
            "con = sqlite3.connect(sys.argv[1], timeout=30)\n"
            "for i in range(200):\n"
            "    con.execute('insert into t (who, v) values (?, randomblob(300))', (sys.argv[2],))\n"
            "    con.commit()\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, db, who]) for who in ("p1", "p2")]
    assert [p.wait(timeout=180) for p in procs] == [0, 0]
    assert con.execute("pragma integrity_check").fetchone() == ("ok",)
    assert dict(con.execute("select who, count(*) from t group by who").fetchall()) == {"p1": 200, "p2": 200}
    con.close()


def _tiny_wheel(where: str) -> str:
    """A pure-Python wheel written by hand: no network, no build backend."""
    name = os.path.join(where, "tinypkg-1.0-py3-none-any.whl")
    files = {"tinypkg/__init__.py": b"VALUE = 42\n",
             "tinypkg-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: tinypkg\nVersion: 1.0\n",
             "tinypkg-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = []
    with zipfile.ZipFile(name, "w") as z:
        for path, data in files.items():
            z.writestr(path, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{path},sha256={digest},{len(data)}")
        record.append("tinypkg-1.0.dist-info/RECORD,,")
        z.writestr("tinypkg-1.0.dist-info/RECORD", "\n".join(record) + "\n")
    return name


def test_venv_and_pip_install_of_a_local_wheel(d, tmp_path):
    venv = os.path.join(d, "venv")
    sh(f"{sys.executable} -m venv --without-pip {venv}")
    wheel = _tiny_wheel(str(tmp_path))
    sh(f"{sys.executable} -m pip --python {venv}/bin/python install -q --no-index --no-deps {wheel}")
    out = sh(f"{venv}/bin/python -c 'import tinypkg, sys; print(tinypkg.VALUE, sys.prefix)'").stdout.split()
    assert out == ["42", venv]


def test_cp_a_mv_rm_rf_of_deep_trees(d, tmp_path):
    src = str(tmp_path / "src")
    make_tree(src, depth=12, width=2)
    sh(f"cp -a {src} {d}/copy")
    sh(f"diff -r --no-dereference {src} {d}/copy")
    sh(f"cp -a {d}/copy {d}/copy2 && mv {d}/copy2 {d}/moved")
    sh(f"diff -r --no-dereference {src} {d}/moved")
    assert os.stat(f"{d}/moved/f0.txt").st_mtime_ns == os.stat(f"{src}/f0.txt").st_mtime_ns  # cp -a kept times
    sh(f"rm -rf {d}/copy {d}/moved")
    assert os.listdir(d) == []


def test_dd_across_chunk_boundaries_checksummed(d, tmp_path):
    local = str(tmp_path / "big")
    sh(f"dd if=/dev/urandom of={local} bs=1M count=70 status=none")  # crosses the 64 MiB chunk
    sh(f"dd if={local} of={d}/big bs=1M status=none conv=fsync")
    want = sh(f"sha256sum < {local}").stdout.split()[0]
    assert sh(f"sha256sum < {d}/big").stdout.split()[0] == want
    # Overwrite a range straddling the boundary in place, as fio/dd seek writes do.
    sh(f"dd if=/dev/zero of={local} bs=1M seek=63 count=2 conv=notrunc status=none")
    sh(f"dd if=/dev/zero of={d}/big bs=1M seek=63 count=2 conv=notrunc status=none")
    assert sh(f"sha256sum < {d}/big").stdout.split()[0] == sh(f"sha256sum < {local}").stdout.split()[0]
