"""What a run may use: the limits and switches of one sandboxed command, with their defaults.

``Limits`` is a frozen dataclass handed to every layer (the bwrap command line, the process
runner, the agent tool). Each default says why it is what it is; callers narrow or widen them per
run (``artifacts exec --timeout``, the ``bash`` tool's ``timeout`` / ``max_output``), within the
``MAX_*`` ceilings an agent cannot exceed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

#: Ceilings on what one call may ask for (agents choose within them): one hour of wall clock and
#: 64 MiB of captured output per stream.
MAX_TIMEOUT = 3600.0
MAX_OUTPUT = 64 << 20


@dataclass(frozen=True)
class Limits:
    #: Wall clock (s) before the whole process tree is killed: long enough for a test suite or a
    #: package build, short enough that a hung agent command does not hold a workspace all day.
    timeout: float = 300.0
    #: CPU seconds per process (RLIMIT_CPU): a busy loop is stopped even inside the timeout.
    cpu_seconds: int = 600
    #: Address space per process (RLIMIT_AS): 4 GiB fits Python, git, compilers and numpy on the
    #: 24 GiB machines here; runtimes that reserve huge virtual ranges (the JVM, Go) may need more.
    memory_bytes: int = 4 << 30
    #: Processes in the sandbox at once (RLIMIT_NPROC in the sandbox's user namespace, or the pids
    #: cgroup when the runner is root): plenty for make -j and a shell pipeline; stops fork bombs.
    processes: int = 256
    #: Largest file the command may write (RLIMIT_FSIZE), also bounds /tmp growth per file.
    file_bytes: int = 16 << 30
    #: Open files per process (RLIMIT_NOFILE).
    open_files: int = 4096
    #: Captured bytes per stream (stdout, stderr); the rest is read and dropped, ``truncated`` set.
    max_output: int = 1 << 20
    #: Size of the private /tmp (a tmpfs, counted in memory).
    tmp_bytes: int = 1 << 30
    #: False: a network namespace with only a loopback device (nothing outside is reachable).
    #: True: the host's network, as is — documented as "allow all"; there is no filtering.
    network: bool = False

    def with_(self, **changes) -> Limits:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def check(self) -> Limits:
        if not 0 < self.timeout <= MAX_TIMEOUT:
            raise ValueError(f"timeout must be in (0, {MAX_TIMEOUT:.0f}] seconds, not {self.timeout}")
        if not 0 <= self.max_output <= MAX_OUTPUT:
            raise ValueError(f"max_output must be in [0, {MAX_OUTPUT}] bytes, not {self.max_output}")
        for name in ("cpu_seconds", "memory_bytes", "processes", "file_bytes", "open_files", "tmp_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        return self


DEFAULT_LIMITS = Limits()
