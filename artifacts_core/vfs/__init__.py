"""The VFS: file handles, write buffers, read views and the path API over chunk + meta."""
