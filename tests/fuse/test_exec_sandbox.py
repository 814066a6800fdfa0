"""The sandbox on the real local stack: a real workspace (redis-server, SeaweedFS), a real FUSE
warm mount, real bubblewrap sandboxes running real programs (docs/exec.md).

Proves, each with a real command: python, git and a shell pipeline work on the workspace and the
result lists what they changed; a fork bomb is stopped by the process limit; a command past its
timeout is killed with its whole tree; the network is unreachable (the host's Redis included)
unless allowed; /etc/shadow, the host's home, other mounts and the runner's secrets are out of
reach; escapes through /proc, symlinks and ``..`` lead nowhere; the process is unprivileged; a
transaction commits on success, nothing on failure, timeout or conflict; concurrent runs on one
workspace; the sandbox works for a non-root runner; and a host that refuses user namespaces gets
a clear error, never an unsandboxed run.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
from fuse_helpers import new_workspace, wait_for

from artifacts_core.volume import open_volume
from artifacts_fuse.exec import Executor, Limits, SandboxUnavailable, sandbox
from artifacts_fuse.exec.process import TIMEOUT_EXIT

pytestmark = [pytest.mark.redis, pytest.mark.s3, pytest.mark.slow]

SECRET = "sk-test-very-secret-value-4711"


@pytest.fixture(scope="module")
def workspace(redis_server, s3_server, tmp_path_factory):
    """A formatted workspace and its settings (module-wide)."""
    base = tmp_path_factory.mktemp("exec")
    settings = new_workspace(redis_server.url, s3_server, str(base / "cache"))
    return settings, base


@pytest.fixture(scope="module")
def vol(workspace):
    settings, _ = workspace
    saved = {k: os.environ.get(k) for k in settings.env}
    os.environ.update(settings.env)
    v = open_volume(settings.meta_url, settings.storage_url, key_prefix=settings.key_prefix, require_aof=False,
                    config=settings.config)
    yield v
    v.close()
    for k, val in saved.items():
        if val is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = val


@pytest.fixture(scope="module")
def ex(vol, workspace):
    _, base = workspace
    e = Executor(vol, work_dir=str(base / "work"), limits=Limits(timeout=60))
    yield e
    e.close()
    assert not os.listdir(base / "work") or all(not p.startswith("mnt-") for p in os.listdir(base / "work"))


def sh(ex, script: str, **kw):
    return ex.run(["/bin/sh", "-c", script], **kw)


def test_python_writes_a_file_and_the_result_lists_it(ex, vol):
    r = ex.run(["python3", "-c", "open('py/out.txt','w').write('from python\\n') if __import__('os').makedirs("
                "'py', exist_ok=True) is None else 0; print('done')"])
    assert r.exit_code == 0, r.stderr
    assert r.stdout == b"done\n" and not r.stdout_truncated
    assert vol.read_bytes("py/out.txt") == b"from python\n"
    assert r.created == ["py/", "py/out.txt"] and r.changed == [] and r.deleted == []


def test_shell_pipeline_sorts_through_the_mount(ex, vol):
    vol.makedirs("pipe", exist_ok=True)
    vol.write_bytes("pipe/a", b"pear\napple\nfig\n")
    r = sh(ex, "cat a | sort > b", cwd="pipe")
    assert r.exit_code == 0, r.stderr
    assert vol.read_bytes("pipe/b") == b"apple\nfig\npear\n"
    assert r.created == ["pipe/b"]


def test_git_init_add_commit(ex, vol):
    vol.makedirs("repo", exist_ok=True)
    vol.write_bytes("repo/README.md", b"# hello\n")
    r = sh(ex, "git init -q && git add README.md && git -c user.name=a -c user.email=a@b commit -qm first "
               "&& git log --oneline | wc -l && git status --porcelain", cwd="repo")
    assert r.exit_code == 0, r.stderr
    assert r.stdout == b"1\n"
    assert vol.isdir("repo/.git/objects")
    assert "repo/.git/HEAD" in r.created


def test_the_command_sees_what_was_written_a_moment_before(ex, vol):
    for i in range(3):  # the warm mount keeps no kernel cache: each write shows at once
        vol.write_bytes("fresh.txt", f"v{i}".encode() * (i + 1))
        assert sh(ex, "cat fresh.txt").stdout == f"v{i}".encode() * (i + 1)


def test_unprivileged_inside(ex):
    r = sh(ex, "id -u; id -g; grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status; "
               "unshare -U true 2>/dev/null && echo userns-ok; mount -t tmpfs x /tmp 2>/dev/null && echo mount-ok; "
               "touch /usr/x 2>/dev/null && echo usr-writable; touch /etc/x 2>/dev/null && echo etc-writable;"
               "python3 -c 'import ctypes; l=ctypes.CDLL(None, use_errno=True); "
               "print(\"keyctl\", l.syscall(250,0,0,0,0), ctypes.get_errno())'")
    lines = r.stdout.decode().splitlines()
    assert lines[:2] == ["1000", "1000"]
    assert "CapEff:\t0000000000000000" in lines and "CapBnd:\t0000000000000000" in lines
    assert "NoNewPrivs:\t1" in lines and "Seccomp:\t2" in lines
    for bad in ("userns-ok", "mount-ok", "usr-writable", "etc-writable"):
        assert bad not in lines
    assert "keyctl -1 1" in lines  # EPERM from the seccomp filter


def test_fork_bomb_is_stopped_by_the_process_limit(ex):
    # A fork loop: the limit makes fork fail with EAGAIN well before the host notices.
    r = ex.run(["python3", "-c", "import os, time\nn = 0\ntry:\n    while True:\n        if os.fork() == 0:\n"
                "            time.sleep(60); os._exit(0)\n        n += 1\nexcept OSError as e:\n"
                "    print(n, e.errno)"], limits=Limits(processes=40, timeout=60))
    n, code = r.stdout.split()
    assert int(code) == 11 and 20 <= int(n) < 40, r.stdout  # EAGAIN
    assert r.duration < 30  # the sleeping children died with the command, not after their 60 s
    # The classic bash bomb: bounded, then killed with its whole tree by the timeout.
    r = sh(ex, "bomb() { bomb | bomb & }; bomb; sleep 2", limits=Limits(processes=40, timeout=30))
    assert b"Cannot fork" in r.stderr  # the limit bites
    assert r.duration < 30  # and every bomb process died with the command


def _sandbox_processes(marker: str) -> list[int]:
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{pid}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    out.append(int(pid))
    return out


def test_timeout_kills_the_whole_tree(ex):
    marker = "987.654"
    r = sh(ex, f"(setsid sleep {marker} &) ; sleep {marker} & sleep {marker}", timeout=1)
    assert r.timed_out and r.exit_code == TIMEOUT_EXIT
    assert 0.9 < r.duration < 20
    wait_for(lambda: not _sandbox_processes(marker), 10, "every sleep of the run to be gone")


def test_background_processes_end_with_the_command(ex):
    marker = "876.543"
    r = sh(ex, f"nohup sleep {marker} >/dev/null 2>&1 & echo started")
    assert r.exit_code == 0 and r.stdout == b"started\n"
    wait_for(lambda: not _sandbox_processes(marker), 10, "the background sleep to be gone")


def test_network_is_refused_unless_allowed(ex, redis_server):
    port = redis_server.port
    probe = ("import socket, sys\ns = socket.socket()\ns.settimeout(5)\ntry:\n"
             f"    s.connect(('127.0.0.1', {port})); s.sendall(b'PING\\r\\n'); print(s.recv(100))\n"
             "except OSError as e:\n    print('refused', e.errno)")
    r = ex.run(["python3", "-c", probe])
    assert r.stdout.startswith(b"refused"), r.stdout  # the host's Redis is out of reach
    r = sh(ex, "cat /sys/class/net/*/operstate 2>/dev/null; ls /sys 2>&1 | head -1")
    assert b"up" not in r.stdout.split()
    r = ex.run(["python3", "-c", probe], network=True)  # the documented allow-all switch
    assert r.stdout.startswith(b"b'-NOAUTH") or r.stdout.startswith(b"b'+PONG"), r.stdout


def test_host_secrets_and_other_paths_are_out_of_reach(ex, workspace, monkeypatch):
    _, base = workspace
    monkeypatch.setenv("TONBO_API_KEY", SECRET)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    home = os.path.expanduser("~")
    r = sh(ex, f"cat /etc/shadow; ls {home}; ls /root; ls /home; ls {base}; ls /work; ls /run; ls /var/lib;"
               "cat /etc/ssl/private/* ; echo END")
    assert r.stdout.endswith(b"END\n")
    assert b"root:" not in r.stdout and r.stdout.strip() == b"END"
    assert r.stderr.count(b"No such file or directory") >= 8
    # The environment is scrubbed: nothing of the runner's reaches any process of the sandbox.
    r = sh(ex, "env; cat /proc/*/environ /proc/*/cmdline 2>/dev/null | tr '\\0' '\\n'")
    s3_key = os.environ["ARTIFACTS_S3_SECRET_ACCESS_KEY"]
    for secret in (SECRET, s3_key, "ARTIFACTS_S3", "TONBO_API_KEY", "redis://"):
        assert secret.encode() not in r.stdout, secret
    assert b"HOME=/tmp" in r.stdout and b"USER=sandbox" in r.stdout


def test_escapes_through_proc_symlinks_and_dotdot_lead_nowhere(ex, vol):
    vol.makedirs("esc", exist_ok=True)
    r = sh(ex, "ls /proc | grep -c '^[0-9]'; cat /proc/1/root/etc/shadow; ls /proc/1/root/root;"
               "ln -s /etc/shadow s1; cat s1; ln -s /proc/self/root r1; ls r1/root r1/work;"
               "ln -s ../../../../../../etc/shadow s2; cat s2;"
               "cat ../../../../etc/shadow; ls ../../../../root; cd /workspace/../../..; ls work root; "
               "cat /proc/self/mountinfo | grep -c fuse; echo END", cwd="esc")
    out = r.stdout.decode()
    assert out.endswith("END\n")
    nprocs = int(out.splitlines()[0])
    assert nprocs <= 6, out  # only the sandbox's own processes are visible
    assert "root:" not in out
    assert r.stderr.count(b"No such file or directory") >= 7, r.stderr
    assert out.splitlines()[-2] == "1"  # one FUSE mount visible: this workspace, no other
    # The links were made in the workspace, verbatim; only the sandbox resolved them.
    assert vol.readlink("esc/s1") == "/etc/shadow"


def test_output_is_bounded_with_a_flag(ex):
    r = ex.run(["python3", "-c", "import sys; sys.stdout.write('x' * 300000); sys.stderr.write('e' * 10)"],
               max_output=1000)
    assert r.exit_code == 0
    assert r.stdout == b"x" * 1000 and r.stdout_truncated
    assert r.stderr == b"e" * 10 and not r.stderr_truncated


def test_stdin_and_exit_code(ex):
    r = ex.run(["/bin/sh", "-c", "tr a-z A-Z; exit 7"], stdin=b"hello")
    assert r.stdout == b"HELLO" and r.exit_code == 7


def test_transaction_commits_on_success(ex, vol):
    vol.makedirs("txn", exist_ok=True)
    vol.write_bytes("txn/keep.txt", b"old\n")
    vol.write_bytes("txn/gone.txt", b"bye\n")
    vol.write_bytes("txn/read.txt", b"just read\n")
    r = sh(ex, "cat read.txt >/dev/null; echo new >> keep.txt; rm gone.txt; mkdir -p d/e; echo x > d/e/f; "
               "printf '#!/bin/sh\\necho hi\\n' > run.sh; chmod 755 run.sh; ln -s keep.txt link",
           cwd="txn", isolated=True)
    assert r.exit_code == 0 and r.committed is True, (r.stderr, r.commit_error, r.conflicts)
    assert r.changed == ["txn/keep.txt"]
    assert r.deleted == ["txn/gone.txt"]
    assert r.created == ["txn/d/", "txn/d/e/", "txn/d/e/f", "txn/link", "txn/run.sh"]
    assert vol.read_bytes("txn/keep.txt") == b"old\nnew\n"
    assert not vol.exists("txn/gone.txt")
    assert vol.read_bytes("txn/d/e/f") == b"x\n"
    assert vol.stat("txn/run.sh").st_mode & 0o777 == 0o755
    assert vol.readlink("txn/link") == "keep.txt"
    assert sh(ex, "./run.sh", cwd="txn").stdout == b"hi\n"


def test_transaction_that_fails_or_times_out_commits_nothing(ex, vol):
    vol.makedirs("txf", exist_ok=True)
    vol.write_bytes("txf/a", b"a\n")
    r = sh(ex, "echo changed > a; echo new > b; exit 1", cwd="txf", isolated=True)
    assert r.exit_code == 1 and r.committed is False
    assert r.changed == ["txf/a"] and r.created == ["txf/b"]  # the diff is still returned
    r = sh(ex, "echo changed > a; sleep 100", cwd="txf", isolated=True, timeout=1)
    assert r.timed_out and r.committed is False
    assert vol.read_bytes("txf/a") == b"a\n" and not vol.exists("txf/b")
    # While it runs, nothing of it shows in the workspace.
    assert sorted(vol.listdir("txf")) == ["a"]


def _run_in_thread(fn):
    box: dict = {}

    def target():
        try:
            box["result"] = fn()
        except BaseException as e:  # surfaced by the test
            box["error"] = e

    t = threading.Thread(target=target)
    t.start()
    return t, box


def test_transaction_that_conflicts_commits_nothing(ex, vol):
    vol.makedirs("txc", exist_ok=True)
    vol.write_bytes("txc/a.txt", b"base\n")
    vol.write_bytes("txc/flag", b"wait\n")  # exists from the start: the overlay reads it through
    started = threading.Event()

    def seen(stream, data):
        if b"started" in data:
            started.set()

    t, box = _run_in_thread(lambda: sh(ex, "echo mine > a.txt; echo mine > b.txt; echo started; "
                                           "until grep -q go flag; do sleep 0.02; done", cwd="txc",
                                       isolated=True, on_output=seen))
    assert started.wait(60)
    vol.write_bytes("txc/a.txt", b"theirs\n")  # another writer changes a file the run changed
    vol.write_bytes("txc/flag", b"go\n")
    t.join(60)
    assert "error" not in box, box
    r = box["result"]
    assert r.exit_code == 0 and r.committed is False
    assert [c["path"] for c in r.conflicts] == ["txc/a.txt"]
    assert r.changed == ["txc/a.txt"] and r.created == ["txc/b.txt"]  # the diff, returned
    assert vol.read_bytes("txc/a.txt") == b"theirs\n"
    assert not vol.exists("txc/b.txt")  # nothing committed, not even the file without conflict


def test_concurrent_runs_on_one_workspace(ex, vol):
    vol.makedirs("conc", exist_ok=True)
    runs = [_run_in_thread(lambda i=i: sh(ex, f"for k in 1 2 3; do echo {i}-$k >> log{i}; done; cat log{i}",
                                          cwd="conc")) for i in range(4)]
    for t, _ in runs:
        t.join(120)
    for i, (_, box) in enumerate(runs):
        assert box["result"].exit_code == 0, box
        assert vol.read_bytes(f"conc/log{i}") == f"{i}-1\n{i}-2\n{i}-3\n".encode()
    # Two transactions on disjoint files both commit; two on one file: exactly one wins.
    vol.write_bytes("conc/shared", b"0\n")
    vol.write_bytes("conc/flag", b"wait\n")
    started = [threading.Event() for _ in range(2)]
    txns = [_run_in_thread(lambda i=i: sh(
        ex, f"echo {i} > own{i}; echo {i} > shared; echo started; until grep -q go flag; do sleep 0.02; done",
        cwd="conc", isolated=True, on_output=lambda s, d, i=i: started[i].set())) for i in range(2)]
    assert all(e.wait(60) for e in started)
    vol.write_bytes("conc/flag", b"go\n")
    for t, _ in txns:
        t.join(120)
    results = [box["result"] for _, box in txns]
    assert sorted(str(r.committed) for r in results) in (["False", "True"], ["True", "partial"])
    winner = next(i for i, r in enumerate(results) if r.committed is True)
    assert vol.read_bytes("conc/shared") == f"{winner}\n".encode()
    assert vol.read_bytes(f"conc/own{winner}") == f"{winner}\n".encode()


def test_vol_exec_finds_the_sandbox_and_close_unmounts(workspace, tmp_path, monkeypatch):
    settings, _ = workspace
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    v = open_volume(settings.meta_url, settings.storage_url, key_prefix=settings.key_prefix, require_aof=False,
                    config=settings.config)
    try:
        r = v.exec(["/bin/sh", "-c", "echo via-vol > viavol.txt"])
        assert r.exit_code == 0 and r.created == ["viavol.txt"]
        mp = v._executor.mountpoint()
        assert os.path.ismount(mp)
    finally:
        v.close()
    assert not os.path.exists(mp) or not os.path.ismount(mp)


def test_a_non_root_runner_gets_the_same_sandbox(tmp_path):
    """The sandbox layer as uid 1000: user namespaces, RLIMIT_NPROC (no cgroup) and the jail."""
    if os.getuid() != 0:
        pytest.skip("needs root to switch to another uid")
    import pathlib
    import tempfile

    ws = pathlib.Path(tempfile.mkdtemp(prefix="artifacts-nonroot-"))
    os.chmod(ws, 0o755)
    os.chown(ws, 1000, 1000)
    script = ("id -u; cat /etc/shadow 2>/dev/null || echo no-shadow; echo hi > made; python3 -c \""
              "import os, time\nn = 0\ntry:\n    while True:\n        if os.fork() == 0:\n"
              "            time.sleep(30); os._exit(0)\n        n += 1\nexcept OSError as e:\n    print(n, e.errno)\"")
    cmd = sandbox.build(str(ws), ["/bin/sh", "-c", script], Limits(processes=30))
    try:
        res = subprocess.run(["setpriv", "--reuid", "1000", "--regid", "1000", "--clear-groups", *cmd.argv],
                             pass_fds=cmd.fds, capture_output=True, timeout=120, env={"PATH": "/usr/bin:/bin"})
    finally:
        cmd.close()
        os.close(cmd.status_r)
    lines = res.stdout.decode().splitlines()
    assert res.returncode == 0, res.stderr
    assert lines[0] == "1000" and lines[1] == "no-shadow"
    n, code = lines[2].split()
    assert code == "11" and int(n) < 30
    assert (ws / "made").stat().st_uid == 1000
    import shutil

    shutil.rmtree(ws)


def test_a_host_without_user_namespaces_gets_a_clear_error_never_an_unsandboxed_run(tmp_path):
    """A real refusal: the probe runs inside a namespace where new user namespaces are disabled."""
    code = ("from artifacts_fuse.exec import sandbox, SandboxUnavailable\n"
            "try:\n    sandbox.probe()\nexcept SandboxUnavailable as e:\n    print('REFUSED', e)\n"
            "else:\n    print('RAN')")
    res = subprocess.run(["bwrap", "--bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-user",
                          "--disable-userns", "--", sys.executable, "-c", code],
                         capture_output=True, text=True, timeout=60, cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert res.stdout.startswith("REFUSED"), res.stdout + res.stderr
    assert "namespace" in res.stdout


def test_missing_bubblewrap_is_named(monkeypatch):
    monkeypatch.setattr(sandbox.shutil, "which", lambda *a, **k: None)
    with pytest.raises(SandboxUnavailable, match="bubblewrap"):
        sandbox.bwrap_path()


def test_the_host_network_switch_is_explicit(ex):
    with socket.socket() as s:  # a listener on the host's loopback, reached only with network=True
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        probe = (f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), 5); print('reached')\n"
                 "except OSError as e:\n    print('refused')")
        assert ex.run(["python3", "-c", probe]).stdout == b"refused\n"
        assert ex.run(["python3", "-c", probe], network=True).stdout == b"reached\n"
    time.sleep(0)  # nothing to wait for: the listener closes with the block


def test_the_agent_bash_tool(ex, vol):
    import json

    from artifacts_agentfs import AgentFS, tools

    fs = AgentFS(vol, executor=ex)
    args = {p.name: None for p in tools.BASH.params}  # OpenAI strict mode: nulls for the optional ones
    args["command"] = "mkdir -p tool && cd tool && echo made > f.txt && cat f.txt && echo oops >&2; exit 3"
    res = fs.call("bash", json.dumps(args))
    assert res["ok"], res
    out = res["result"]
    assert out["exit_code"] == 3 and out["stdout"] == "made\n" and out["stderr"] == "oops\n"
    assert out["created"] == ["tool/", "tool/f.txt"] and out["mode"] == "shared"
    assert not out["stdout_truncated"] and out["duration_ms"] > 0
    res = fs.call("bash", {"command": "echo t > tool/t.txt; false", "mode": "transaction"})
    assert res["ok"] and res["result"]["committed"] is False and not vol.exists("tool/t.txt")
    res = fs.call("bash", {"command": "cat", "stdin": "piped", "timeout": 5, "max_output": 3})
    assert res["result"]["stdout"] == "pip" and res["result"]["stdout_truncated"]
    res = fs.call("bash", {"command": "sleep 30", "timeout": 1})
    assert res["result"]["timed_out"] and res["result"]["exit_code"] == 124
    for bad in ({"command": ""}, {"command": "true", "timeout": 0}, {"command": "true", "mode": "x"},
                {"command": "true", "max_output": -1}):
        assert fs.call("bash", bad)["error"]["code"] == "EINVAL", bad
