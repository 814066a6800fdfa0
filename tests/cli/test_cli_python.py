"""The Python entry points with nothing but the command's login on the host.

A real local stack (``artifacts up --port 0`` under temporary XDG directories, its account named
``alice`` through ``LOGNAME``) and fresh Python processes, as a user's script would run:

- the README's ```` ```python ```` blocks run as written — the first two (``open_workspace``, an
  ``artifacts://alice/demo/…`` URL through fsspec) on the stack after ``artifacts workspace create
  demo``; the low-level one on a Redis with AOF and the SeaweedFS of the test session, its two
  documented placeholders ``META = …`` and ``STORAGE = …`` replaced by their URLs and the S3 keys
  exported, as its text says;
- ``artifacts://handle/workspace/path`` in fsspec: write, read, list, a read-only session that
  refuses writes, and clear errors for no login, an unknown workspace, a URL without a workspace;
- ``Artifacts()`` (the SDK) speaks for the saved login and the saved orchestrator URL, the
  environment first, as the CLI does.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli_local import cli_env, run

from artifacts_core.servers import RedisServer

ROOT = Path(__file__).resolve().parents[2]  # the checkout
PYTHON = sys.executable
HANDLE = "alice"


def python(env: dict, code: str, *args: str, code_expected: int | None = 0) -> subprocess.CompletedProcess:
    p = subprocess.run([PYTHON, "-c", code, *args], env=env, capture_output=True, text=True, timeout=120,
                       cwd=str(ROOT))
    if code_expected is not None:
        assert p.returncode == code_expected, (p.stdout, p.stderr)
    return p


def readme_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    base = tmp_path_factory.mktemp("py")
    env = cli_env(base, LOGNAME=HANDLE, USER=HANDLE)
    info = json.loads(run(env, "--format", "json", "up", "--port", "0").stdout)
    assert info["handle"] == HANDLE
    yield {"env": env, "base": base, "url": info["orchestrator_url"]}
    run(env, "down", code=None)


# -- the README ------------------------------------------------------------------------------------

@pytest.mark.redis
@pytest.mark.s3
@pytest.mark.slow
def test_readme_python_blocks_run_on_the_local_stack(stack):
    env = stack["env"]
    run(env, "-q", "workspace", "create", "demo")
    stack_blocks = [b for b in readme_blocks() if "META = " not in b]
    assert len(stack_blocks) == 2
    outputs = [python(env, block).stdout for block in stack_blocks]
    assert "['today.md'] 6" in outputs[0]  # open_workspace: written and listed
    assert outputs[1] == "hello\n\n"  # the same file through an artifacts:// URL
    again = python(env, stack_blocks[0]).stdout
    assert "['today.md'] 12" in again


@pytest.mark.redis
@pytest.mark.s3
@pytest.mark.slow
def test_readme_low_level_block_on_its_own_redis_and_s3(tmp_path, s3_server):
    (block,) = [b for b in readme_blocks() if "META = " in b]
    redis = RedisServer.start(tmp_path / "redis", appendonly=True)  # the README asks for AOF
    try:
        storage = f"s3://artifacts-test/readme?endpoint={s3_server.endpoint}"
        code, n = re.subn(r'^META = ".*"$', f"META = {redis.url!r}", block, flags=re.M)
        code, m = re.subn(r'^STORAGE = ".*"$', f"STORAGE = {storage!r}", code, flags=re.M)
        assert n == m == 1
        env = cli_env(tmp_path, ARTIFACTS_S3_ACCESS_KEY_ID=s3_server.access_key,
                      ARTIFACTS_S3_SECRET_ACCESS_KEY=s3_server.secret_key)
        assert python(env, code).stdout == "b'hello\\n'\n"
        assert python(env, code).stdout == "b'hello\\n'\n"  # "once; re-running is safe"
    finally:
        redis.stop()


# -- artifacts:// URLs -----------------------------------------------------------------------------

@pytest.mark.redis
@pytest.mark.s3
@pytest.mark.slow
def test_fsspec_urls_with_nothing_but_the_login(stack):
    env = stack["env"]
    run(env, "-q", "workspace", "create", "tables")
    write = ("import fsspec\n"
             "with fsspec.open('artifacts://alice/tables/in/data.csv', 'w') as f:\n"
             "    f.write('a,b\\n1,2\\n')\n")
    python(env, write)
    read = ("import fsspec\n"
            "fs, path = fsspec.core.url_to_fs('artifacts://alice/tables/in')\n"
            "print(fs.ls(path, detail=False))\n"
            "print(fs.cat('artifacts://alice/tables/in/data.csv').decode(), end='')\n"
            "print(fsspec.open('artifacts://alice/tables/in/data.csv').open().read())\n")
    out = python(env, read).stdout.splitlines()
    assert out == ["['/alice/tables/in/data.csv']", "a,b", "1,2", "b'a,b\\n1,2\\n'"]
    # read_only asks for an ro session: reads work, writes are refused (EROFS or EACCES).
    ro = ("import fsspec\n"
          "fs = fsspec.filesystem('artifacts', read_only=True)\n"
          "print(fs.cat_file('alice/tables/in/data.csv'))\n"
          "try:\n"
          "    fs.pipe_file('alice/tables/in/new.csv', b'x')\n"
          "except OSError as e:\n"
          "    print('refused', e.errno in (30, 13))\n")
    assert python(env, ro).stdout.splitlines() == ["b'a,b\\n1,2\\n'", "refused True"]
    # No session outlives the process: each one was revoked at exit.
    sessions = ("from artifacts_orchestrator.client import Artifacts\n"
                "print(len(Artifacts().sessions.list('tables').sessions))\n")
    assert python(env, sessions).stdout == "0\n"
    p = python(env, "import fsspec; fsspec.open('artifacts://alice/nope/x.csv').open()", code_expected=1)
    assert "cannot open workspace alice/nope: workspace_not_found" in p.stderr
    assert "artifacts workspace list" in p.stderr
    p = python(env, "import fsspec; fsspec.open('artifacts://alice').open()", code_expected=1)
    assert "artifacts://<handle>/<workspace>/<path>" in p.stderr


def test_fsspec_url_without_a_login_says_what_to_run(tmp_path):
    env = cli_env(tmp_path)
    p = python(env, "import fsspec; fsspec.open('artifacts://root/ws/data.csv').open()", code_expected=1)
    last = p.stderr.strip().splitlines()[-1]
    assert "TypeError" not in p.stderr and "meta_url" not in p.stderr
    assert last.startswith("artifacts_cli.connect.ConnectError: cannot open workspace root/ws: not logged in")
    assert "artifacts login" in last and "artifacts up" in last


# -- the SDK ---------------------------------------------------------------------------------------

@pytest.mark.redis
@pytest.mark.s3
@pytest.mark.slow
def test_sdk_uses_the_cli_login_and_orchestrator(stack):
    code = ("from artifacts_orchestrator.client import Artifacts\n"
            "api = Artifacts()\n"
            "print(api.base_url, api.whoami().account.handle)\n")
    assert python(stack["env"], code).stdout.split() == [stack["url"], HANDLE]


def test_sdk_chain_env_then_saved_credentials(tmp_path):
    cfg = tmp_path / "config" / "tonbo" / "artifacts"
    cfg.mkdir(parents=True)
    saved_key = "tbo_" + "s" * 32
    (cfg / "credentials.json").write_text(json.dumps({"api_key": saved_key, "orchestrator_url": "http://127.0.0.1:9999/",
                                                      "handle": "alice"}))
    code = "from artifacts_orchestrator.client import Artifacts as A; a = A(); print(a.base_url, a._api_key)"
    env = cli_env(tmp_path)
    assert python(env, code).stdout.split() == ["http://127.0.0.1:9999", saved_key]
    env_key = "tbo_" + "e" * 32
    over = python({**env, "TONBO_API_KEY": env_key, "ARTIFACTS_ORCHESTRATOR_URL": "http://127.0.0.1:7777"}, code)
    assert over.stdout.split() == ["http://127.0.0.1:7777", env_key]
    explicit = "from artifacts_orchestrator.client import Artifacts as A; a = A('', base_url='http://h:1'); " \
               "print(a.base_url, repr(a._api_key))"
    assert python(env, explicit).stdout.split() == ["http://h:1", "''"]
