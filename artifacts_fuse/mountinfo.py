"""Where mounts are: the kernel's mount table and the supervisors' state files.

``mount_entry`` reads ``/proc/self/mountinfo`` (the authority on what is mounted where: a stale
FUSE mount whose process died is still listed); ``state_file`` names the JSON file in which a
mount's supervisor (``daemon.py``) records its pid and its child's, under
``$XDG_STATE_HOME/tonbo/artifacts/mounts``, for ``mount.unmount`` to find it. Both the mounting
side (``mount.py``) and the supervisor and child (``daemon.py``) use them.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from artifacts_core.config import xdg_dir


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (``\\040``)."""
    return field.encode().decode("unicode_escape").encode("latin-1").decode("utf-8", "surrogateescape")


def mount_entry(mountpoint: str) -> dict[str, str] | None:
    """The ``/proc/self/mountinfo`` entry whose mount point is ``mountpoint`` (the last one)."""
    found = None
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            if _unescape(fields[4]) == mountpoint:
                found = {"fstype": fields[sep + 1], "source": _unescape(fields[sep + 2]),
                         "options": fields[5], "id": fields[0]}
    return found


def mounts_of_type(fstype: str = "fuse.artifacts") -> list[dict[str, str]]:
    """Every ``/proc/self/mountinfo`` entry of ``fstype`` (Artifacts mounts by default), each as
    ``mount_entry`` gives it, with its ``mountpoint``."""
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            if fields[sep + 1] == fstype:
                found.append({"mountpoint": _unescape(fields[4]), "fstype": fstype,
                              "source": _unescape(fields[sep + 2]), "options": fields[5], "id": fields[0]})
    return found


def is_mounted(mountpoint: str) -> bool:
    return mount_entry(os.path.abspath(mountpoint)) is not None


def state_file(mountpoint: str) -> Path:
    key = hashlib.sha256(os.path.abspath(mountpoint).encode()).hexdigest()[:16]
    return xdg_dir("state") / "mounts" / f"{key}.json"
