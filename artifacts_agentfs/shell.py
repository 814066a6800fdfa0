"""The ``bash`` tool: a shell command in a sandbox on the workspace, for agents whose host
enables it.

Code execution is off unless the agent host turns it on: ``AgentFS(vol, executor=Executor(vol))``
(``artifacts_fuse.exec``), ``python -m artifacts_agentfs.mcp_server --bash`` or
``artifacts mcp serve <ws> --bash``. Without an executor the tool is not listed, and a call to
it fails with EPERM — not every deployment wants agents to run code.

The command runs as ``bash -c <command>`` in ``/workspace`` (the workspace, read-write), with
no network, a scrubbed environment and the limits of ``artifacts_fuse.exec.policy``; ``mode:
"transaction"`` runs it on a private copy-on-write view committed only on exit 0 (and only if the
files it changed were not changed meanwhile). Output is bounded per stream (``max_output``) with a
``truncated`` flag per stream; the result lists the files created, changed and deleted.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from typing import Any, Protocol

from artifacts_agentfs.errors import invalid
from artifacts_core.errors import PermissionDenied

#: The tool's own defaults, tighter than the CLI's: a model waits for the answer (60 s) and reads
#: all of it (64 KiB per stream is ~16k tokens).
DEFAULT_TIMEOUT = 60
MAX_TIMEOUT = 1800
DEFAULT_OUTPUT = 64 << 10
MAX_OUTPUT = 1 << 20
#: Longest command string and stdin accepted (a script pasted inline is fine; data goes in files).
MAX_COMMAND = 256 << 10
MAX_STDIN = 8 << 20
SHELL = "/bin/bash"


class RunResult(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


class Executor(Protocol):
    """What the tool needs of a sandbox (``artifacts_fuse.exec.Executor`` is one; the agent API
    imports no other frontend)."""

    def run(self, argv: Sequence[str], *, stdin: str | None = ..., timeout: float | None = ...,
            max_output: int | None = ..., isolated: bool = ...) -> RunResult: ...


def run_bash(executor: Executor | None, command: str, *, stdin: str | None = None, timeout: int | None = None,
             max_output: int | None = None, mode: str | None = None) -> dict:
    if executor is None:
        raise PermissionDenied("the bash tool is not enabled on this host", errno=errno.EPERM,
                               hint="code execution is off by default; the agent host enables it")
    if not isinstance(command, str) or not command.strip():
        raise invalid("command must be a non-empty string")
    if len(command.encode()) > MAX_COMMAND or "\0" in command:
        raise invalid(f"command must be at most {MAX_COMMAND} bytes, without NUL")
    if stdin is not None and len(stdin.encode()) > MAX_STDIN:
        raise invalid(f"stdin must be at most {MAX_STDIN} bytes", hint="write large input to a file first")
    timeout = DEFAULT_TIMEOUT if timeout is None else timeout
    if not 1 <= timeout <= MAX_TIMEOUT:
        raise invalid(f"timeout must be 1..{MAX_TIMEOUT} seconds")
    max_output = DEFAULT_OUTPUT if max_output is None else max_output
    if not 0 <= max_output <= MAX_OUTPUT:
        raise invalid(f"max_output must be 0..{MAX_OUTPUT} bytes")
    if mode not in (None, "shared", "transaction"):
        raise invalid("mode must be 'shared' or 'transaction'")
    result = executor.run([SHELL, "-c", command], stdin=stdin, timeout=float(timeout), max_output=max_output,
                          isolated=mode == "transaction")
    return result.to_dict()
