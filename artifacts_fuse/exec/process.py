"""Running one sandboxed command: launch, bounded capture, wall-clock timeout, exit status.

The launch chain (each step ``exec``s the next, so the child's pid is bubblewrap's in the end):

    sh (joins the run's pids cgroup, root runners only)
      -> [unshare + mount -t overlay, transactions only: overlay.py]
      -> bwrap (namespaces, binds, seccomp)           -> pid 1 of the sandbox (bwrap's reaper)
      -> prlimit (limits)  -> the command

Output: stdout and stderr are read as they come (``selectors``), the first ``max_output`` bytes of
each kept, the rest read and dropped (so the command never blocks on a full pipe) and the stream
marked truncated. ``on_output(stream, bytes)`` sees what is kept, for callers that stream it.

Timeout: at the deadline the whole tree is killed — SIGKILL to bubblewrap, whose death kills the
sandbox's pid 1 (``--die-with-parent``), and the death of a PID namespace's pid 1 kills every
process in it, daemonised or not; the pids cgroup (root runners) is swept as well. A command's
background processes also end when the command itself exits (bwrap's pid 1 exits with it).

Whether the sandbox started is told by bwrap's ``--json-status-fd``: a ``child-pid`` record means
the command ran; without one, bwrap failed while setting up and its stderr is the reason
(``SandboxError``), which is never confused with the command's own exit status.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from artifacts_fuse.exec.errors import SandboxError
from artifacts_fuse.exec.sandbox import Command, explain_failure

#: Exit status reported when the wall-clock timeout killed the run (as GNU ``timeout``).
TIMEOUT_EXIT = 124
_READ = 65536


@dataclass
class Completed:
    exit_code: int
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool
    stderr_truncated: bool
    timed_out: bool
    duration: float


class _Capture:
    def __init__(self, cap: int, name: str, on_output: Callable[[str, bytes], None] | None) -> None:
        self.cap, self.name, self.on_output = cap, name, on_output
        self.buf = bytearray()
        self.truncated = False

    def feed(self, data: bytes) -> None:
        room = self.cap - len(self.buf)
        if len(data) > room:
            self.truncated = True
            data = data[:max(room, 0)]
        if data:
            self.buf += data
            if self.on_output is not None:
                self.on_output(self.name, data)


def _write_stdin(pipe, data: bytes) -> None:
    with contextlib.suppress(BrokenPipeError, OSError):
        pipe.write(data)
    with contextlib.suppress(BrokenPipeError, OSError):
        pipe.close()


def run(command: Command, *, prefix: list[str], env: dict[str, str], stdin: bytes | None, timeout: float,
        max_output: int, on_output: Callable[[str, bytes], None] | None = None,
        kill_extra: Callable[[], None] | None = None) -> Completed:
    """Run ``prefix + command.argv`` (the prefix is the launch chain before bwrap)."""
    start = time.monotonic()
    try:
        proc = subprocess.Popen([*prefix, *command.argv], stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=command.fds,
                                env=env, start_new_session=True, close_fds=True)
    except OSError as e:
        os.close(command.status_r)
        raise SandboxError(f"cannot start the sandbox: {e}") from e
    finally:
        command.close()
    assert proc.stdout is not None and proc.stderr is not None  # both are PIPE
    if stdin:
        threading.Thread(target=_write_stdin, args=(proc.stdin, stdin), daemon=True).start()
    out = _Capture(max_output, "stdout", on_output)
    err = _Capture(max_output, "stderr", on_output)
    status = bytearray()
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, out)
    sel.register(proc.stderr, selectors.EVENT_READ, err)
    status_file = os.fdopen(command.status_r, "rb", buffering=0)
    sel.register(status_file, selectors.EVENT_READ, status)
    deadline = start + timeout
    timed_out = False
    try:
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                _kill(proc, kill_extra)
                deadline = float("inf")  # drain what the dead tree left in the pipes
                continue
            for key, _ in sel.select(min(left, 1.0)):
                data = os.read(key.fd, _READ)
                if not data:
                    sel.unregister(key.fileobj)
                    continue
                if key.data is status:
                    status += data
                else:
                    key.data.feed(data)
        left = max(deadline - time.monotonic(), 0.0)
        try:
            rc = proc.wait(left if left != float("inf") else None)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill(proc, kill_extra)
            rc = proc.wait()
    finally:
        sel.close()
        status_file.close()
        proc.stdout.close()
        proc.stderr.close()
        if proc.poll() is None:
            _kill(proc, kill_extra)
            proc.wait()
    duration = time.monotonic() - start
    records = _status_records(bytes(status))
    if not any("child-pid" in r for r in records) and not timed_out:
        raise SandboxError(f"the sandbox did not start: {explain_failure(err.buf.decode(errors='replace'))}")
    if timed_out:
        rc = TIMEOUT_EXIT
    else:
        codes = [r["exit-code"] for r in records if "exit-code" in r]
        rc = codes[-1] if codes else (128 - rc if rc < 0 else rc)
    return Completed(rc, bytes(out.buf), bytes(err.buf), out.truncated, err.truncated, timed_out, duration)


def _kill(proc: subprocess.Popen, kill_extra: Callable[[], None] | None) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGKILL)  # bwrap: its death takes the sandbox's pid 1, then all
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # the launch chain, if it had not reached bwrap yet
    if kill_extra is not None:
        kill_extra()


def _status_records(data: bytes) -> list[dict]:
    """bwrap writes one JSON object per line-ish record; parse them leniently."""
    records = []
    dec = json.JSONDecoder()
    text = data.decode(errors="replace")
    i = 0
    while i < len(text):
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            break
        try:
            obj, i = dec.raw_decode(text, i)
        except ValueError:
            break
        if isinstance(obj, dict):
            records.append(obj)
    return records
