"""A pids cgroup per run, for runners that are root.

Why: the kernel never applies RLIMIT_NPROC to processes whose real uid is host root
(``kernel/fork.c`` exempts INIT_USER), and a root runner's sandbox runs as host uid 0 behind its
user namespace (it must, to write the workspace's root-owned files through the mount). So for a
root runner the process limit is a pids cgroup: the launcher shell joins it before it execs
bubblewrap, so every process of the run is counted from the first fork; on the way out every
task left in it is killed and the group removed. cgroup v1 (a ``pids`` hierarchy) and v2 (the
``pids`` controller enabled at the top) are both handled; where neither is writable a root run is
refused (``SandboxUnavailable``) rather than run without a process bound.

Non-root runners do not need it: RLIMIT_NPROC, set inside the sandbox's user namespace, counts
only the sandbox's processes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid

from artifacts_fuse.exec.errors import SandboxUnavailable

V1_ROOT = "/sys/fs/cgroup/pids"
V2_ROOT = "/sys/fs/cgroup"
GROUP = "artifacts-exec"
#: How long ``kill_all`` keeps sweeping a group for tasks forked while it killed.
KILL_WAIT = 5.0


def _base() -> tuple[str, str]:
    """(directory under which run groups go, "v1"|"v2")."""
    if os.path.isfile(os.path.join(V1_ROOT, "cgroup.procs")):
        return os.path.join(V1_ROOT, GROUP), "v1"
    controllers = os.path.join(V2_ROOT, "cgroup.controllers")
    if os.path.isfile(controllers):
        with open(controllers) as f:
            if "pids" in f.read().split():
                return os.path.join(V2_ROOT, GROUP), "v2"
    raise SandboxUnavailable("no pids cgroup controller is available, and a root runner needs one to bound "
                             "the sandbox's process count (the kernel exempts host root from RLIMIT_NPROC)",
                             hint="run the sandbox as a non-root user, or mount the pids controller")


class PidsGroup:
    """One run's pids cgroup: ``procs_file`` is what the launcher writes its pid into."""

    def __init__(self, max_tasks: int) -> None:
        base, version = _base()
        self.version = version
        try:
            os.makedirs(base, exist_ok=True)
            if version == "v2":
                with open(os.path.join(V2_ROOT, "cgroup.subtree_control"), "w") as f:
                    f.write("+pids")
                with open(os.path.join(base, "cgroup.subtree_control"), "w") as f:
                    f.write("+pids")
            self.path = os.path.join(base, uuid.uuid4().hex[:16])
            os.mkdir(self.path)
            with open(os.path.join(self.path, "pids.max"), "w") as f:
                f.write(str(max_tasks))
        except OSError as e:
            raise SandboxUnavailable(f"cannot create a pids cgroup under {base}: {e.strerror}",
                                     hint="a root runner needs a writable pids cgroup; or run as a "
                                          "non-root user") from e
        self.procs_file = os.path.join(self.path, "cgroup.procs")

    def pids(self) -> list[int]:
        try:
            with open(self.procs_file) as f:
                return [int(x) for x in f.read().split()]
        except OSError:
            return []

    def kill_all(self) -> None:
        deadline = time.monotonic() + KILL_WAIT
        if self.version == "v2" and os.path.exists(os.path.join(self.path, "cgroup.kill")):
            with contextlib.suppress(OSError), open(os.path.join(self.path, "cgroup.kill"), "w") as f:
                f.write("1")
        while time.monotonic() < deadline:
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.01)

    def remove(self) -> None:
        self.kill_all()
        for _ in range(100):  # the group empties once the killed tasks are reaped
            try:
                os.rmdir(self.path)
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.01)


def needed() -> bool:
    """A pids cgroup is needed when the runner's real uid is host root."""
    return os.getuid() == 0
