"""The Node.js SDK (sdk/js, docs/sdk-js.md) run by Node's own test runner against the real stack.

The fixture starts what the orchestrator's tests start (orchestrator_stack.py) — Redis with an ACL file and AOF, SeaweedFS
with IAM, the orchestrator over loopback HTTP — and builds the package (``npm ci`` when
node_modules is missing or older than package-lock.json, then the TypeScript build). One test then
runs ``node --test sdk/js/test/``: seed 003 end to end in Node (a workspace made with the CLI, a
mount ticket, the ticket file written 0600, ``artifacts mount --ticket-file`` in a separate
process, ``fs.writeFile`` through the mount, revocation, EACCES within the bound, delete), the
error codes, retries through a fault-injecting proxy in front of the real orchestrator, and the
package's ESM and CommonJS entry points, and the journal streamed live (``streamEvents``). Node's output
is shown when it fails.

The orchestrator's clock is injectable, as in the Python tests: the Node tests move it (an expired
ticket) by writing an offset in seconds to the file named by ``ARTIFACTS_TEST_CLOCK_FILE``.

Also here: seed 003's code type-checks as written against the built declarations (and misuse does
not), the generated types match openapi.json, and ``npm pack`` makes a package that installs
offline into a fresh project and loads from both ESM and CommonJS.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from orchestrator_stack import ADMIN_TOKEN, start_stack, stop_stack

from artifacts_fuse import is_mounted, unmount
from artifacts_orchestrator.client import Artifacts

pytestmark = [pytest.mark.redis, pytest.mark.s3]

SDK = Path(__file__).resolve().parents[2] / "sdk" / "js"
ARTIFACTS = str(Path(sys.executable).parent / "artifacts")
NODE = shutil.which("node")
NPM = shutil.which("npm")


class FileClock:
    """``time.time()`` plus the offset (seconds) written in ``path``, re-read when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[tuple[int, int], float] = ((-1, -1), 0.0)

    def __call__(self) -> float:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return time.time()
        version = (st.st_ino, st.st_mtime_ns)  # the writer renames a new file over it
        if version != self._seen[0]:
            text = self.path.read_text().strip()
            self._seen = (version, float(text) if text else 0.0)
        return time.time() + self._seen[1]


def _npm(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    p = subprocess.run([NPM, *args], cwd=SDK, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"npm {' '.join(args)} failed:\n{p.stdout}\n{p.stderr}"
    return p


@pytest.fixture(scope="module")
def sdk_built():
    """The package, built from src/ (node_modules installed from package-lock.json if stale)."""
    if NODE is None or NPM is None:
        pytest.fail("node and npm are needed (scripts/bootstrap installs them)")
    stamp = SDK / "node_modules" / ".package-lock.json"
    if not stamp.exists() or stamp.stat().st_mtime < (SDK / "package-lock.json").stat().st_mtime:
        _npm("ci", "--no-audit", "--no-fund", "--prefer-offline")
    p = subprocess.run([NODE, "scripts/build.mjs"], cwd=SDK, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, f"the TypeScript build failed:\n{p.stdout}\n{p.stderr}"
    return SDK


@pytest.fixture(scope="module")
def js_stack(tmp_path_factory):
    base = tmp_path_factory.mktemp("sdkjs")
    state = start_stack(base, FileClock(base / "clock-offset"))
    yield {**state, "clock_file": base / "clock-offset"}
    stop_stack(state)


def _unmount_under(root: Path) -> None:
    """Whatever a failed Node test left mounted under ``root``."""
    with open("/proc/self/mounts") as f:
        points = [line.split()[1] for line in f]
    for mp in points:
        mp = mp.replace("\\040", " ")
        if mp.startswith(str(root) + os.sep) and is_mounted(mp):
            with contextlib.suppress(Exception):
                unmount(mp, timeout=30)
            if is_mounted(mp):
                subprocess.run(["fusermount3", "-uz", mp], capture_output=True)


@pytest.mark.slow
def test_node_sdk_against_the_real_stack(sdk_built, js_stack, tmp_path):
    url = js_stack["server"].url
    new = Artifacts("", base_url=url).create_account("seed003", admin_token=ADMIN_TOKEN)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARTIFACTS_", "TONBO_", "XDG_", "AWS_"))}
    env.update(TONBO_API_KEY=new.key.key, ARTIFACTS_ORCHESTRATOR_URL=url, ARTIFACTS_TEST_HANDLE=new.account.handle,
               ARTIFACTS_TEST_ADMIN_TOKEN=ADMIN_TOKEN, ARTIFACTS_TEST_BIN=ARTIFACTS,
               ARTIFACTS_TEST_TMP=str(tmp_path), ARTIFACTS_TEST_CLOCK_FILE=str(js_stack["clock_file"]),
               NODE_OPTIONS="")
    try:
        p = subprocess.run([NODE, "--test", "--test-reporter=spec", "--test-timeout=240000", "test/"],
                           cwd=SDK, env=env, capture_output=True, text=True, timeout=900)
    finally:
        _unmount_under(tmp_path)
    out = p.stdout + p.stderr
    assert p.returncode == 0, f"node --test failed:\n{out[-20000:]}"
    passed = re.search(r"^\S+ pass (\d+)$", out, re.M)  # the spec reporter's summary
    assert passed and int(passed.group(1)) >= 20 and re.search(r"^\S+ fail 0$", out, re.M), out[-5000:]


def test_seed_003_code_type_checks_as_written(sdk_built):
    """test/types/seed003.ts is the seed's code verbatim; misuse is marked ``@ts-expect-error``
    there, so a type that accepts it fails this check too."""
    p = subprocess.run([NODE, "node_modules/typescript/bin/tsc", "-p", "test/tsconfig.json"], cwd=SDK,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr


def test_generated_types_are_what_openapi_json_generates(sdk_built):
    p = subprocess.run([NODE, "scripts/gen-types.mjs", "--check"], cwd=SDK, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr


@pytest.mark.slow
def test_npm_pack_makes_an_installable_package(sdk_built, tmp_path):
    packed = json.loads(_npm("pack", "--json", "--pack-destination", str(tmp_path)).stdout)[0]
    files = {f["path"] for f in packed["files"]}
    assert {"package.json", "README.md", "dist/esm/index.js", "dist/esm/index.d.ts", "dist/cjs/index.js",
            "dist/cjs/index.d.ts", "dist/cjs/package.json"} <= files
    assert not any(f.startswith(("src/", "test/", "node_modules/", "scripts/")) for f in files), files
    app = tmp_path / "app"
    app.mkdir()
    (app / "package.json").write_text(json.dumps({"name": "app", "private": True, "type": "module"}))
    p = subprocess.run([NPM, "install", "--offline", "--no-audit", "--no-fund", str(tmp_path / packed["filename"])],
                       cwd=app, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    esm = ("import { Artifacts, ArtifactsError, VERSION } from '@tonbo/artifacts';"
           "const a = new Artifacts({ apiKey: 'tbo_x', baseUrl: 'http://127.0.0.1:1' });"
           "console.log(typeof a.platform.createMountTicket, ArtifactsError.name, VERSION);")
    cjs = ("const { Artifacts, VERSION } = require('@tonbo/artifacts');"
           "console.log(typeof new Artifacts({ apiKey: 'tbo_x' }).workspaces.delete, VERSION);")
    for args, expected in ((["--input-type=module", "-e", esm], f"function ArtifactsError {packed['version']}"),
                           (["-e", cjs], f"function {packed['version']}")):
        p = subprocess.run([NODE, *args], cwd=app, capture_output=True, text=True, timeout=60)
        assert p.returncode == 0 and p.stdout.strip() == expected, p.stdout + p.stderr
