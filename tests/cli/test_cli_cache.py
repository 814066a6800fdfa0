"""``artifacts warmup`` and ``artifacts cache show|evict|clear`` end to end on the real local stack
(``artifacts up`` under temporary XDG directories, real FUSE mounts, the CLI as a subprocess):
warmup fills the cache directory a mount reads from, so the mount's reads come from local disk;
show names the workspace and its hit rates; evict and clear empty it; mistakes give the
documented exit codes.
"""

from __future__ import annotations

import json
import os

import pytest
from test_cli_e2e import mountpoint, stack  # noqa: F401 - the module-scoped local stack
from test_cli_local import run

pytestmark = [pytest.mark.redis, pytest.mark.s3, pytest.mark.slow]

MiB = 1 << 20


def chunk_stats(mp: str) -> dict[str, float]:
    with open(os.path.join(mp, ".stats"), encoding="utf-8") as f:
        lines = f.read().splitlines()
    out = {}
    for line in lines:
        if line.startswith("artifacts_chunks_") and "{" not in line:
            name, value = line.split()
            out[name.removeprefix("artifacts_chunks_")] = float(value)
    return out


def test_warmup_fills_the_cache_a_mount_then_reads_from(stack):  # noqa: F811
    env = stack["env"]
    mp = mountpoint(stack, "cache-1")
    run(env, "workspace", "create", "cachews", mp)
    files = {f"data/f{i}.bin": os.urandom(5 * MiB + i) for i in range(3)}
    os.makedirs(os.path.join(mp, "data", "sub"))
    for rel, data in files.items():
        with open(os.path.join(mp, rel), "wb") as f:
            f.write(data)
    with open(os.path.join(mp, "data", "sub", "note.txt"), "w") as f:
        f.write("inline\n")  # small: kept in Redis, nothing to cache
    run(env, "unmount", mp)

    shown = json.loads(run(env, "--format", "json", "cache", "show").stdout)
    [mine] = [c for c in shown["caches"] if "cachews" in c["volume"]]
    assert os.path.basename(mine["path"]) == f"{mine['volume']}-{mine['uuid']}"  # a person can tell whose
    cleared = json.loads(run(env, "--format", "json", "cache", "clear", "cachews").stdout)
    assert cleared["removed"] == [mine["path"]]

    run(env, "mount", "cachews", mp)
    p = run(env, "--format", "json", "warmup", os.path.join(mp, "data"))
    [report] = json.loads(p.stdout)["workspaces"]
    assert report["files"] == 4 and report["inline_files"] == 1
    assert report["bytes"] == sum(map(len, files.values())) + len("inline\n")
    assert report["fetched"] == report["blocks"] == 3 * 2 and report["already_cached"] == 0
    assert report["errors"] == [] and report["cache_dir"] == mine["path"]
    again = json.loads(run(env, "--format", "json", "warmup", os.path.join(mp, "data")).stdout)["workspaces"][0]
    assert again["fetched"] == 0 and again["already_cached"] == 6

    before = chunk_stats(mp)
    for rel, data in files.items():  # the mount reads what the warmup (another process) cached
        with open(os.path.join(mp, rel), "rb") as f:
            assert f.read() == data
    after = chunk_stats(mp)
    assert after["downloads"] == before["downloads"] and after["segment_downloads"] == before["segment_downloads"]
    assert after["disk_hits"] >= before["disk_hits"] + 6

    shown = json.loads(run(env, "--format", "json", "cache", "show").stdout)
    [mine] = [c for c in shown["caches"] if "cachews" in c["volume"]]
    assert mine["blocks"] == 6 and mine["bytes"] >= 15 * MiB
    [mount] = [m for m in shown["mounts"] if m["mountpoint"] == mp]
    assert mount["disk_hit_rate"] > 0 and mount["disk_cache_capacity"] > 0
    text = run(env, "cache", "show").stdout
    assert mine["path"] in text and mp in text

    evicted = json.loads(run(env, "--format", "json", "cache", "evict", os.path.join(mp, "data", "f0.bin")).stdout)
    assert evicted["workspaces"][0]["removed_files"] == 2
    [mine] = [c for c in json.loads(run(env, "--format", "json", "cache", "show").stdout)["caches"]
              if "cachews" in c["volume"]]
    assert mine["blocks"] == 4

    # workspace paths, no mount needed; a text summary on stdout, the progress bar on stderr
    p = run(env, "warmup", "--workspace", "cachews", "/data/f0.bin")
    assert "Warmed 1 file(s)" in p.stdout and "2 block(s) fetched" in p.stdout
    run(env, "unmount", mp)


def test_mistakes_give_their_exit_codes(stack, tmp_path):  # noqa: F811
    env = stack["env"]
    p = run(env, "warmup", code=2)
    assert "no path given" in p.stderr
    p = run(env, "warmup", str(tmp_path), code=2)
    assert "is not inside a mounted workspace" in p.stderr and "--workspace" in p.stderr
    p = run(env, "cache", "evict", str(tmp_path), code=2)
    p = run(env, "cache", "clear", "no-such-workspace", code=4)
    assert "no cache directory for no-such-workspace" in p.stderr
    p = run(env, "warmup", "--workspace", "no-such-workspace", "/x", code=4)
    assert "workspace_not_found" in p.stderr
    p = run(env, "warmup", "--workspace", "bad name!", "/x", code=2)
