"""The sandbox's errors: every one names what is missing or wrong and what to do about it.

``SandboxUnavailable`` means the host cannot give the isolation a run needs (no bubblewrap, no
unprivileged user namespaces, no FUSE, no overlayfs, no way to bound the process count): the run
is refused — there is no unsandboxed fallback. ``SandboxError`` is a sandbox that could be
built but failed to start this command (a bad working directory, a bind that vanished).
"""

from __future__ import annotations

import errno

from artifacts_core.errors import ArtifactsError


class SandboxUnavailable(ArtifactsError):
    """The kernel or the host refuses an isolation feature the sandbox needs (fail closed)."""

    default_errno = errno.ENOSYS


class SandboxError(ArtifactsError):
    """The sandbox could not start the command."""

    default_errno = errno.EIO
