"""Artifacts core: the importable VFS over Redis metadata and S3 block data.

Layers (arrows point down): ``vfs`` -> ``chunk`` and ``meta`` -> ``objects``. The public surface
(DESIGN.md §9)::

    import artifacts_core
    artifacts_core.format_volume(meta_url, storage_url, name, key_prefix=...)
    vol = artifacts_core.open_volume(meta_url, key_prefix=...)
    with vol.open("notes/today.md", "a", encoding="utf-8") as f:
        f.write("hello\\n")
    vol.close()
"""

__version__ = "0.1.0"

__all__ = ["Volume", "format_volume", "open_volume"]


def __getattr__(name: str):
    # Imported lazily: `import artifacts_core` stays cheap for tools that need only the errors.
    if name in __all__:
        from artifacts_core import volume

        return getattr(volume, name)
    raise AttributeError(f"module 'artifacts_core' has no attribute {name!r}")
