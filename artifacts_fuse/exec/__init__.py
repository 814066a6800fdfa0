"""Run commands in a sandbox on a workspace: ``artifacts exec``, ``vol.exec`` and the agent
``bash`` tool (docs/exec.md).

``Executor(vol)`` owns a warm FUSE mount of the workspace and runs each command in a bubblewrap
sandbox (new user/mount/PID/IPC/UTS/network namespaces, no capabilities, seccomp, read-only
system, private /tmp, scrubbed environment, resource limits, wall-clock timeout) with the mount
bound at ``/workspace``; a run is either shared (its writes land at once; the result lists what
changed) or a transaction (an overlay; committed on exit 0 unless it conflicts).

This package is a frontend: it uses the core and the FUSE frontend's public ``mount`` /
``unmount``; the core reaches it only through the ``artifacts.exec`` entry point.
"""

from artifacts_fuse.exec.errors import SandboxError, SandboxUnavailable
from artifacts_fuse.exec.policy import DEFAULT_LIMITS, Limits
from artifacts_fuse.exec.runner import ExecResult, Executor

__all__ = ["DEFAULT_LIMITS", "ExecResult", "Executor", "Limits", "SandboxError", "SandboxUnavailable"]
