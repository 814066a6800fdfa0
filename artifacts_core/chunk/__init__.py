"""Chunk store: slices cut into framed, checksummed, compressed blocks; caches; readahead."""
