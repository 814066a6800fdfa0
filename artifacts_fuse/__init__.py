"""FUSE frontend on libfuse 3's low-level API (ctypes): mounts a workspace over the VFS inode API.

``mount(settings, mountpoint)`` starts a background mount and returns once it is live;
``unmount(mountpoint)`` ends it gracefully. See ``docs/fuse.md`` and ``docs/SEMANTICS.md``."""

from artifacts_fuse.daemon import MountSettings
from artifacts_fuse.mount import Mount, MountError, mount, unmount
from artifacts_fuse.mountinfo import is_mounted

__all__ = ["Mount", "MountError", "MountSettings", "is_mounted", "mount", "unmount"]
