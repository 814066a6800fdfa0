"""A developer's session on a source tree, step by step, with real tools: the workload the
mount is judged by (``bench_fs --workloads dev``).

The tree is this machine's Python standard library as source (``sysconfig``'s ``stdlib``, without
``site-packages``, byte code, the static library, extension modules and bundled wheels): about
2,400 files in 170 directories, 38 MB on CPython 3.11, tarred once per run so every target
extracts the same bytes. No network at benchmark time.

| step | what it runs |
|---|---|
| extract | ``tar -xf`` of the tree |
| git add+commit | ``git init``, ``git add -A``, ``git commit`` |
| git status (cold) | the first ``git status`` after the commit |
| git status (warm) | median of the next four ``git status`` |
| grep -r | ``grep -r -l "import"`` over the tree |
| ls -lR | ``ls -lR`` (names and attributes of everything) |
| edit 50 + commit | append a line to 50 files, ``git commit -a`` |
| rm -rf | removes the tree |

Each step is one duration in seconds; ``total`` is their sum (git status counted five times).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig
import tarfile
import time

#: What the standard library holds that is not source: left out of the tree.
SKIP_DIRS = {"site-packages", "__pycache__", "lib-dynload"}
SKIP_PREFIXES = ("config-", "ensurepip/_bundled")
EDITS = 50
STATUS_RUNS = 5


def make_tarball(path: str) -> tuple[int, int]:
    """Tar the standard library's source into ``path``; (files, bytes) in it."""
    stdlib = sysconfig.get_paths()["stdlib"]
    files = size = 0
    with tarfile.open(path, "w") as tar:
        for dirpath, dirnames, filenames in os.walk(stdlib):
            rel = os.path.relpath(dirpath, stdlib)
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not any(
                os.path.join(rel, d).lstrip("./").startswith(p) for p in SKIP_PREFIXES))
            for name in sorted(filenames):
                full = os.path.join(dirpath, name)
                if os.path.islink(full) or not os.path.isfile(full):
                    continue
                tar.add(full, arcname=os.path.join("src", rel, name), recursive=False)
                files += 1
                size += os.path.getsize(full)
    return files, size


def _git_env(home: str) -> dict[str, str]:
    return dict(os.environ, HOME=home, GIT_CONFIG_NOSYSTEM="1", GIT_AUTHOR_NAME="bench",
                GIT_AUTHOR_EMAIL="bench@example.invalid", GIT_COMMITTER_NAME="bench",
                GIT_COMMITTER_EMAIL="bench@example.invalid")


def run(root: str, tarball: str, home: str) -> dict:
    """The steps on ``root`` (a directory of the target); results ``{step: (seconds, "s")}``."""
    env = _git_env(home)
    src = os.path.join(root, "src")
    out: dict = {}

    def step(label: str, *cmds: list[str], cwd: str = root) -> float:
        t = time.perf_counter()
        for cmd in cmds:
            subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)
        took = time.perf_counter() - t
        out[label] = (took, "s")
        return took

    git = ["git", "-c", "gc.auto=0", "-c", "core.fsmonitor=false"]
    step("dev extract", ["tar", "-xf", tarball])
    step("dev git add+commit", [*git, "init", "-q"], [*git, "add", "-A"], [*git, "commit", "-q", "-m", "import"],
         cwd=src)
    step("dev git status (cold)", [*git, "status", "--porcelain"], cwd=src)
    warm = []
    for _ in range(STATUS_RUNS - 1):
        t = time.perf_counter()
        subprocess.run([*git, "status", "--porcelain"], cwd=src, env=env, check=True, stdout=subprocess.DEVNULL)
        warm.append(time.perf_counter() - t)
    warm.sort()
    out["dev git status (warm)"] = (warm[len(warm) // 2], "s")
    # grep exits 0 when something matched: the tree has imports.
    step("dev grep -r", ["grep", "-r", "-l", "import", "."], cwd=src)
    step("dev ls -lR", ["ls", "-lR", "."], cwd=src)
    t = time.perf_counter()
    edited = 0
    for dirpath, _, filenames in sorted(os.walk(src)):
        if ".git" in dirpath.split(os.sep):
            continue
        for name in sorted(filenames):
            if name.endswith(".py") and edited < EDITS:
                with open(os.path.join(dirpath, name), "a") as f:
                    f.write("# edited\n")
                edited += 1
        if edited >= EDITS:
            break
    subprocess.run([*git, "commit", "-q", "-a", "-m", "edit"], cwd=src, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    out["dev edit 50 + commit"] = (time.perf_counter() - t, "s")
    step("dev rm -rf", ["rm", "-rf", src])
    total = sum(v for k, (v, _) in out.items() if k != "dev git status (warm)")
    total += out["dev git status (warm)"][0] * (STATUS_RUNS - 1)
    out["dev total"] = (total, "s")
    return out


def prepare(work: str) -> tuple[str, str]:
    """(tarball, git home) under ``work``."""
    tarball = os.path.join(work, "stdlib-src.tar")
    if not os.path.exists(tarball):
        make_tarball(tarball)
    home = os.path.join(work, "git-home")
    os.makedirs(home, exist_ok=True)
    return tarball, home


def cleanup(root: str) -> None:
    shutil.rmtree(os.path.join(root, "src"), ignore_errors=True)
