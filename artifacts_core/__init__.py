"""Artifacts core: the importable VFS over Redis metadata and S3 block data.

Layers (arrows point down): ``vfs`` -> ``chunk`` and ``meta`` -> ``objects``.
"""

__version__ = "0.1.0"
